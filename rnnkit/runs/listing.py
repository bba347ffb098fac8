"""`rnnkit runs`: what each run folder under a directory holds, read without loading any weights."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from safetensors import safe_open

from rnnkit.errors import CheckpointError
from rnnkit.runs.checkpoint import MODEL_FILE, STATE_FILE, checkpoint_dir
from rnnkit.runs.folder import last_activity, read_status, run_config, run_folders
from rnnkit.runs.lock import holder

# The metric `best` is chosen by, shown per task (lower is better for all but accuracy).
HEADLINE = {"lm": "bpc", "classify": "accuracy", "forecast": "loss"}


def describe_runs(runs_dir: str | Path) -> list[dict]:
    """One plain record per run folder under `runs_dir`, most recently changed first."""
    return [describe_run(run) for run in reversed(run_folders(runs_dir))]


def describe_run(run: Path) -> dict:
    """name, task, cell, layers, hidden, parameters, step, max_steps, best metric, status, bytes, changed."""
    record: dict = {"name": run.name, "path": str(run)}
    try:
        cfg = run_config(run)
    except CheckpointError as err:
        return {**record, "status": "damaged", "error": str(err), "bytes": _size(run), "changed": _changed(run)}
    state = _state(run, "last")
    best = _state(run, "best")
    metric = HEADLINE.get(cfg.task, "loss")
    best_metrics = best.get("best_metrics") or state.get("best_metrics") or {}
    record.update(task=cfg.task, cell=cfg.model.cell, layers=cfg.model.num_layers, hidden=cfg.model.hidden_size,
                  parameters=_parameters(run), step=state.get("step"), max_steps=cfg.train.max_steps,
                  metric=metric, best=best_metrics.get(metric), best_step=best.get("best_step", state.get("best_step")),
                  status=_status(run, cfg, state), bytes=_size(run), changed=_changed(run))
    return record


def _state(run: Path, which: str) -> dict:
    try:
        return json.loads((checkpoint_dir(run, which) / STATE_FILE).read_text(encoding="utf-8"))
    except (CheckpointError, OSError, ValueError):
        return {}


def _parameters(run: Path) -> int | None:
    """Numbers in model.safetensors, from its header alone (no tensor is read)."""
    for which in ("last", "best"):
        try:
            with safe_open(str(checkpoint_dir(run, which) / MODEL_FILE), framework="pt", device="cpu") as handle:
                total = 0
                for key in handle.keys():  # noqa: SIM118 (not a dict)
                    count = 1
                    for size in handle.get_slice(key).get_shape():
                        count *= size
                    total += count
                return total
        except Exception:  # missing or damaged: try the other checkpoint
            continue
    return None


def _status(run: Path, cfg, state: dict) -> str:
    """training while a `train` holds the lock; otherwise what status.json says, corrected by the facts: a
    session that was killed (no chance to say so) left "training" behind and is interrupted."""
    if holder(run) is not None:
        return "training"
    said = read_status(run).get("status")
    if said in ("finished", "failed", "interrupted"):
        return said
    if not state:
        return "failed" if said is None else "interrupted"  # nothing saved
    return "finished" if int(state.get("step", 0)) >= cfg.train.max_steps else "interrupted"


def _size(run: Path) -> int:
    total = 0
    for path in run.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:  # removed by a concurrent save
            continue
    return total


def _changed(run: Path) -> str:
    return datetime.datetime.fromtimestamp(last_activity(run)).isoformat(timespec="seconds")
