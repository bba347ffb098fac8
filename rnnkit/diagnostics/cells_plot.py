"""inspect-cells --png: a static heat map of the top-ranked units over the first characters of the text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnkit.diagnostics.cells import CellReport
from rnnkit.diagnostics.cells_html import quantise
from rnnkit.diagnostics.figures import pyplot, save_figure
from rnnkit.errors import UsageError

PNG_CHARS = 120  # characters drawn
PNG_ROWS = 12  # units drawn at most


def check_png(path: str | Path) -> None:
    """UsageError for a name that is not .png, or saying how to install matplotlib (the `plot` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--png needs matplotlib: pip install 'rnnkit[plot]'") from None
    if Path(path).suffix.lower() != ".png":
        raise UsageError(f"--png {path}: expected a .png file name")


def heatmap_units(report: CellReport, rows: int = PNG_ROWS) -> list[tuple[str, str, int, float]]:
    """(property, quantity, unit, r): the best unit of each property first, then the runners-up, each unit once."""
    chosen, seen = [], set()
    depth = max((len(units) for units in report.ranking.values()), default=0)
    for rank in range(depth):
        for name, units in report.ranking.items():
            if rank < len(units) and (units[rank].quantity, units[rank].unit) not in seen and len(chosen) < rows:
                u = units[rank]
                seen.add((u.quantity, u.unit))
                chosen.append((name, u.quantity, u.unit, u.r))
    return chosen


def _shown(char: str) -> str:
    return {"\n": "⏎", " ": "␣", "\t": "⇥", "\r": "␍", "$": r"\$"}.get(char, char)


def plot_heatmap(report: CellReport, path: str | Path, chars: int = PNG_CHARS, rows: int = PNG_ROWS) -> Path:
    """Write a PNG: one row per top-ranked unit, one column per character of the first `chars`, coloured by the
    unit's value on its quantity's range (as the page colours it: blue low, red high)."""
    check_png(path)
    plt = pyplot("--png")

    path = Path(path)
    units = heatmap_units(report, rows)
    if not units:
        raise UsageError("--png: no unit is ranked (every property is constant over this text); use a longer text")
    n = min(chars, len(report.text))
    grid = np.zeros((len(units), n))
    for row, (_, quantity, unit, _) in enumerate(units):
        q, _, _ = quantise(report.activations[quantity][:n, unit:unit + 1], report.kinds[quantity])
        grid[row] = np.where(q[0] == -128, np.nan, q[0] / 127)
    fig, ax = plt.subplots(figsize=(max(6.0, 2.8 + n * 0.11), 1.2 + 0.32 * len(units)))
    image = ax.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks(range(n))
    ax.set_xticklabels([_shown(c) for c in report.text[:n]], fontsize=7, family="monospace")
    ax.tick_params(axis="x", length=0)
    ax.set_yticks(range(len(units)))
    ax.set_yticklabels([f"{name}: {quantity}[{unit}] r={r:+.2f}" for name, quantity, unit, r in units], fontsize=8)
    ax.set_title(f"{report.run}: top-ranked units over the first {n} characters", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01, label="value on the quantity's range")
    return save_figure(fig, path, "--png", dpi=110)
