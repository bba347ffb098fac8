"""Exporting a trained run out of rnnkit: plain torch.nn modules in safetensors (`torch`), or ONNX (`onnx`).

Either way OUT is a folder written whole or not at all (rnnkit.io.atomic.atomic_folder) holding model.json, the
description that rebuilds the modules (torch_nn.py), next to the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from rnnkit.errors import UsageError
from rnnkit.export.torch_nn import FORMAT, PlainModel, largest_difference, plain_model
from rnnkit.io.atomic import atomic_folder, atomic_write_json
from rnnkit.io.tensors import save_safetensors

SPEC_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
TARGETS = ("torch", "onnx")
TOLERANCE = 1e-4  # largest difference from rnnkit's outputs allowed on the probe batch (float32 sees ~1e-6)


def export_run(loaded, to: str, out: str | Path, force: bool = False) -> dict:
    """Write `loaded` (a rnnkit.runs.loaded.LoadedRun) into the folder `out` and return what was written.

    to: "torch" (model.safetensors + model.json) or "onnx" (model.onnx + model.json; needs the onnx package).
    An existing `out` is replaced only with `force`, and only when it is an earlier export or empty.
    The exported modules are compared with rnnkit's model on a random batch before anything is written.
    """
    if to not in TARGETS:
        raise UsageError(f"--to: {to!r} is not one of {', '.join(TARGETS)}")
    out = Path(out)
    check_target(out, Path(loaded.path), force)
    plain = plain_model(loaded)
    difference = largest_difference(loaded, plain)
    if not difference <= TOLERANCE:  # also catches NaN
        raise UsageError(f"export: the torch.nn modules differ from rnnkit's model by {difference:.3g} "
                         f"(more than {TOLERANCE:g}); nothing was written")
    with atomic_folder(out) as tmp:
        if to == "torch":
            save_safetensors(tmp / WEIGHTS_FILE, plain.tensors, {"export": FORMAT})
        else:
            from rnnkit.export.onnx import write_onnx

            write_onnx(plain, tmp / ONNX_FILE)
        atomic_write_json(tmp / SPEC_FILE, {**plain.spec, "files": _files(to)})
    return _record(plain, to, out, difference)


def check_target(out: Path, run: Path, force: bool) -> None:
    """UsageError unless writing the folder `out` loses nothing the user did not ask to replace."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder; name a new folder for the export")
    resolved = out.resolve()
    if resolved == run.resolve() or resolved in run.resolve().parents:
        raise UsageError(f"{out}: holds the run itself; name another folder for the export")
    if not force:
        raise UsageError(f"{out}: already exists; pass --force to replace it")
    if any(out.iterdir()) and not _is_export(out / SPEC_FILE):
        raise UsageError(f"{out}: is not an earlier export (no {SPEC_FILE} of format {FORMAT}); --force only "
                         f"replaces an export or an empty folder, name a new folder")


def _is_export(spec_file: Path) -> bool:
    try:
        return json.loads(spec_file.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _files(to: str) -> dict:
    return {"weights": WEIGHTS_FILE if to == "torch" else ONNX_FILE, "description": SPEC_FILE}


def _record(plain: PlainModel, to: str, out: Path, difference: float) -> dict:
    """What `rnnkit export --json` prints."""
    return {"out": str(out), "to": to, **plain.spec["source"], "task": plain.spec["task"],
            "files": {name: (out / name).stat().st_size for name in _files(to).values()},
            "modules": {name: m["type"] for name, m in plain.spec["modules"].items()},
            "parameters": plain.parameters, "max_abs_diff": difference}
