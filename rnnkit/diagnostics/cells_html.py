"""The inspect-cells page: one self-contained HTML file (inline CSS and JavaScript, no network, no font or
script from elsewhere) that colours a text by any unit, shows the model's guesses on hover, the unit ranking and
gate saturation. The page's stylesheet and script live in cells_page.py.

Data is packed so that 20,000 characters stay usable: each quantity's activations are quantised to int8 (unit
after unit, i.e. (H, T), so that one unit is one contiguous slice) and base64-encoded; a value v is stored as
round((v - mid) / scale * 127), with mid, scale fixed by the quantity's range (tanh: 0, 1; sigmoid: 0.5, 0.5)
or per unit (c and other unbounded values: 0 and the 99th percentile of |v| of the unit, larger values clipped
to +-127 and shown as such); -128 marks a position without a state.
Predictions are uint16 (probabilities * 65534; 65535 = none), surprisal float32. Nothing grows faster than
T x units. When the activations would pass `max_mb`, quantities are left out of the page in reverse order of
h, c, gates (the page names them); the ranked units are kept, each on its own.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnkit.diagnostics.cells import CellReport
from rnnkit.diagnostics.cells_page import CSS, JS
from rnnkit.diagnostics.cells_properties import PROPERTIES, SATURATION
from rnnkit.errors import UsageError
from rnnkit.io.atomic import atomic_write_text

FIXED_RANGES = {"tanh": (0.0, 1.0), "sigmoid": (0.5, 0.5)}  # mid, scale; others are scaled per unit
PROPERTY_HELP = {
    "in_quotes": "inside a quotation opened by \" or ' (not an apostrophe)",
    "in_brackets": "inside ( [ or { not yet closed",
    "line_position": "characters of the line read so far",
    "after_newline": "the character is a newline",
    "vowel": "vowel (1) or consonant (0); other characters left out",
    "indent": "leading spaces and tabs of the line read so far",
}
MISSING_PROB = 65535
CLIP_PERCENTILE = 99.0  # unbounded quantities: |v| beyond this percentile of the unit shows at full colour


@dataclass
class PageInfo:
    """What `write_page` wrote."""

    path: Path
    bytes: int
    seconds: float  # to pack the data and write the file
    quantities: list[str]  # whose every unit is in the page
    dropped: list[str]  # selected but left out for the size limit (their ranked units are kept)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()).decode()


def quantise(values: np.ndarray, kind: str) -> tuple[np.ndarray, float, np.ndarray]:
    """values (T, H) float, NaN where none -> (int8 (H, T), mid, scale (H,)) as the module docstring says."""
    if kind in FIXED_RANGES:
        mid, fixed = FIXED_RANGES[kind]
        scale = np.full(values.shape[1], fixed)
    else:  # c, pre-activations: a few outliers would wash the colours out, so the 99th percentile of |v| spans it
        mid = 0.0
        scale = np.zeros(values.shape[1])
        if np.isfinite(values).any():
            scale = np.nan_to_num(np.nanpercentile(np.abs(values), CLIP_PERCENTILE, axis=0), nan=0.0)
        scale = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint((values.T - mid) / scale[:, None] * 127), -127, 127)  # (H, T)
    q = np.where(np.isnan(q), -128, q)
    return q.astype(np.int8), mid, scale


def _block(values: np.ndarray, kind: str) -> dict:
    q, mid, scale = quantise(values, kind)
    return {"kind": kind, "mid": mid, "scale": [float(f"{s:.6g}") for s in scale.tolist()], "data": _b64(q)}


def _order(report: CellReport, quantities: list[str]) -> list[str]:
    """h of every layer first, then c, then the gates: the order in which quantities get room in the page."""
    def rank(name: str) -> tuple[int, int]:
        base = name.split(".")[1]
        return ({"h": 0, "c": 1}.get(base, 2), quantities.index(name))

    return sorted(quantities, key=rank)


def page_data(report: CellReport, selectors: list[str] | tuple[str, ...] | None = None,
              max_mb: float = 48.0) -> tuple[dict, list[str], list[str]]:
    """(the page's data object, quantities kept whole, quantities dropped for max_mb)."""
    if not max_mb > 0:
        raise UsageError(f"--max-mb: {max_mb} must be positive")
    T = len(report.text)
    selected = report.quantities(selectors)
    budget = max_mb * 1e6
    kept, dropped, used = [], [], 0.0
    for name in _order(report, selected):
        size = T * report.activations[name].shape[1] * 4 / 3  # base64 of int8
        if kept and used + size > budget:
            dropped.append(name)
            continue
        kept.append(name)
        used += size
    kept = [q for q in selected if q in kept]  # back to the model's order
    ranked = {(u.quantity, u.unit) for units in report.ranking.values() for u in units}
    extras = [{"quantity": q, "unit": u, **_block(report.activations[q][:, u:u + 1], report.kinds[q])}
              for q, u in sorted(ranked) if q not in kept]
    data = {
        "meta": {"run": report.run, "task": report.task, "mode": report.mode, "cell": report.cell,
                 "num_layers": report.num_layers, "hidden_size": report.hidden_size,
                 "bidirectional": report.bidirectional, "T": T, "notes": report.notes, "dropped": dropped,
                 "saturation": list(SATURATION)},
        "text": report.text,
        "read": None if report.read.all() else _b64(report.read.astype(np.uint8)),
        "quantities": [{"name": q, **_block(report.activations[q], report.kinds[q])} for q in kept],
        "extras": extras,
        "ranking": {name: [[u.quantity, u.unit, round(u.r, 4)] for u in report.ranking[name]] for name in PROPERTIES},
        "help": PROPERTY_HELP,
        "saturation": [{"quantity": s.quantity, "kind": s.kind, "left": np.round(s.left, 4).tolist(),
                        "right": np.round(s.right, 4).tolist()} for s in report.saturation],
        "lm": None, "classify": None,
    }
    if report.task == "lm":
        surprisal = report.next_surprisal.astype(np.float32)
        data["lm"] = {"symbols": report.symbols, "k": report.top_ids.shape[1],
                      "top": _b64(report.top_ids.astype(np.uint16)),
                      "probs": _b64(_probabilities(report.top_probs)), "surprisal": _b64(surprisal)}
    else:
        data["classify"] = {"classes": report.classes, "probs": _b64(_probabilities(report.class_probs))}
    return data, kept, dropped


def _probabilities(p: np.ndarray) -> np.ndarray:
    q = np.rint(np.clip(p, 0, 1) * (MISSING_PROB - 1))
    return np.where(np.isnan(q), MISSING_PROB, q).astype(np.uint16)


def render_page(data: dict) -> str:
    """The HTML text of a page from `page_data`'s object."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    payload = payload.replace("<", "\\u003c")  # no "</script>" can end the data early
    title = f"inspect-cells: {data['meta']['run']}".replace("&", "&amp;").replace("<", "&lt;")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n"
            f'<script type="application/json" id="cells-data">{payload}</script>\n'
            f"<script>{JS}</script>\n</body>\n</html>\n")


def check_page_options(path: str | Path, max_mb: float) -> None:
    """UsageError for a page name that is not .html or a size limit that is not positive."""
    if Path(path).suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--html {path}: expected a .html file name")
    if not max_mb > 0:
        raise UsageError(f"--max-mb: {max_mb} must be positive")


def write_page(report: CellReport, path: str | Path, selectors: list[str] | tuple[str, ...] | None = None,
               max_mb: float = 48.0) -> PageInfo:
    """Write the page of `report` to `path` (atomically); selectors choose the quantities (see CellReport)."""
    path = Path(path)
    check_page_options(path, max_mb)
    start = time.perf_counter()
    data, kept, dropped = page_data(report, selectors, max_mb)
    html = render_page(data)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, html)
    except OSError as err:
        raise UsageError(f"--html {path}: cannot write ({err.strerror or err})") from None
    return PageInfo(path, path.stat().st_size, time.perf_counter() - start, kept, dropped)
