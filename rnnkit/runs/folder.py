"""A run folder on disk: its config, finding the latest run, and what may change when a run is resumed.

Layout of a run folder `runs/<name>/`:

    config.yaml          the resolved config (every field, defaults included)
    vocab.json, task.json  the task's artifacts (vocabulary, class names, normaliser)
    status.json          how the last `train` session ended: training, finished, interrupted or failed
    run.lock             PID of the `rnnkit train` that holds the folder (see rnnkit/runs/lock.py)
    last/  best/         two complete checkpoints (see rnnkit/runs/checkpoint.py)
    tb/                  TensorBoard event files
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from rnnkit.config import Config, config_from_dict, read_yaml
from rnnkit.errors import CheckpointError, ConfigError, UsageError
from rnnkit.io.atomic import atomic_write_json, atomic_write_text
from rnnkit.runs.checkpoint import STATE_FILE, WHICH

CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
STATUSES = ("training", "finished", "interrupted", "failed")
# Config sections that must not change when a run is resumed: they decide the model and its data.
FROZEN_SECTIONS = ("task", "model", "data")
# Train settings that must not change either: the optimizer's state has its layout, and the saved position
# in the epoch (batches consumed) only means the same batches with the same seed and batch size.
FROZEN_TRAIN_KEYS = ("optimizer", "batch_size", "seed")


def run_config(run_dir: str | Path) -> Config:
    """The resolved config.yaml of a run folder."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not an rnnkit run folder (no {CONFIG_FILE})")
    try:
        return config_from_dict(read_yaml(path), str(path))
    except ConfigError as err:
        raise CheckpointError(f"{err} (config.yaml of a run written by another rnnkit version?)") from None


def write_run_config(run_dir: str | Path, cfg: Config) -> None:
    """config.yaml with every field, written atomically."""
    atomic_write_text(Path(run_dir) / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def check_resumable(saved: Config, current: Config, run_dir: Path) -> None:
    """Refuse to resume when the task, model or data sections or a frozen train key changed (other train
    settings, such as train.max_steps or train.lr, may change)."""
    saved_d, current_d = saved.to_dict(), current.to_dict()
    changed = []
    for section in FROZEN_SECTIONS:
        a, b = saved_d[section], current_d[section]
        if isinstance(a, dict):
            changed += [f"{section}.{k}: {a[k]!r} -> {b.get(k)!r}" for k in a if a[k] != b.get(k)]
        elif a != b:
            changed.append(f"{section}: {a!r} -> {b!r}")
    for key in FROZEN_TRAIN_KEYS:
        a, b = saved_d["train"][key], current_d["train"][key]
        if a != b:
            changed.append(f"train.{key}: {a!r} -> {b!r}")
    if changed:
        raise UsageError(f"{run_dir}: cannot resume, the config differs from the run's config.yaml "
                         f"({'; '.join(changed[:5])}); undo the change or start a new run (run.name)")


def write_status(run_dir: str | Path, status: str, **details) -> None:
    """What the last `train` session on this folder ended with (or "training" while it runs)."""
    atomic_write_json(Path(run_dir) / STATUS_FILE, {"status": status, **details,
                                                    "at": time.strftime("%Y-%m-%dT%H:%M:%S")})


def read_status(run_dir: str | Path) -> dict:
    """status.json of a run ({} when absent or unreadable: runs written before it existed)."""
    try:
        data = json.loads((Path(run_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_run(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file()


def run_folders(runs_dir: str | Path) -> list[Path]:
    """Every run folder directly under `runs_dir`, most recently active last."""
    runs_dir = Path(runs_dir)
    found = [p for p in runs_dir.glob("*") if is_run(p)] if runs_dir.is_dir() else []
    return sorted(found, key=last_activity)


def resolve_run(path: str | Path | None, runs_dir: str | Path = "runs") -> Path:
    """A run folder: `path` if given, else the most recently active run under `runs_dir`."""
    if path is not None and str(path) != "":
        run = Path(path)
        if not run.is_dir():
            raise CheckpointError(f"{run}: no such run folder")
        if not is_run(run):
            raise CheckpointError(f"{run}: not an rnnkit run folder (no {CONFIG_FILE})")
        return run
    found = run_folders(runs_dir)
    if not found:
        raise CheckpointError(f"no run found under {runs_dir}/; train one first (rnnkit train quickstart) "
                              f"or name the run folder")
    return found[-1]


def last_activity(run: Path) -> float:
    """When a run last changed: its folder or either checkpoint's state.json, whichever is newest."""
    return max(_mtime(path) for path in (run, *(run / which / STATE_FILE for which in WHICH)))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
