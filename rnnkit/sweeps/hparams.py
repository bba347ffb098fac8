"""TensorBoard's hparams view of a sweep: each finished point writes its grid values and best validation metrics
to `<run>/tb/hparams/`, so `tensorboard --logdir runs/NAME` lists the points in one table (HPARAMS tab)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from rnnkit.runs.checkpoint import STATE_FILE, checkpoint_dir

HPARAMS_DIR = Path("tb") / "hparams"
METRIC_PREFIX = "hparam/val_"  # tags of their own: the run's `val/...` curves are not mixed in


def best_val_metrics(run: Path) -> dict[str, float]:
    """The validation metrics of the run's best checkpoint ({} before any evaluation)."""
    for which in ("best", "last"):
        try:
            state = json.loads((checkpoint_dir(run, which) / STATE_FILE).read_text(encoding="utf-8"))
        except Exception:  # missing or damaged: try the other one
            continue
        metrics = state.get("best_metrics") or {}
        return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    return {}


def has_hparams(run: Path) -> bool:
    return (run / HPARAMS_DIR).is_dir()


def write_hparams(run: Path, values: dict[str, Any], domains: dict[str, list] | None = None) -> Path | None:
    """Write the point's values (dotted keys) and its best validation metrics; replaces an earlier write.
    Returns the folder, or None when the run has no metrics to show."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    metrics = {f"{METRIC_PREFIX}{k}": v for k, v in best_val_metrics(run).items()}
    if not metrics:
        return None
    folder = run / HPARAMS_DIR
    shutil.rmtree(folder, ignore_errors=True)
    shown = {key: _scalar(value) for key, value in values.items()}
    discrete = {key: [_scalar(v) for v in vals] for key, vals in (domains or {}).items()
                if all(isinstance(_scalar(v), str) for v in vals)}  # strings get a filter with every value
    experiment, start, end = hparams(shown, metrics, discrete or None)
    with SummaryWriter(log_dir=str(folder)) as writer:
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value)
    return folder


def _scalar(value: Any) -> Any:
    """What the hparams plugin takes: bool, int, float, str; anything else as text."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)
