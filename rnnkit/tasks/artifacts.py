"""The `task.json` artifact of classify/forecast runs: what inference needs besides the weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rnnkit.errors import CheckpointError
from rnnkit.io.atomic import atomic_write_json

TASK_FILE = "task.json"


def write_task_json(run_dir: Path, data: dict) -> None:
    atomic_write_json(Path(run_dir) / TASK_FILE, data)


def read_task_json(run_dir: Path) -> dict:
    path = Path(run_dir) / TASK_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (the run folder is incomplete or damaged)") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable ({type(err).__name__}); the run folder is damaged") from None


def normaliser_dict(normaliser) -> dict:
    return {"mean": normaliser.mean.tolist(), "std": normaliser.std.tolist()}


def normaliser_from(data: dict):
    from rnnkit.data.metro import Normaliser

    return Normaliser(torch.tensor(data["mean"], dtype=torch.float32), torch.tensor(data["std"], dtype=torch.float32))


def _same(key: str, saved, value) -> bool:
    if key not in ("mean", "std", "profile"):
        return saved == value
    a, b = torch.tensor(saved if saved is not None else []), torch.tensor(value)
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-5)  # floats went through JSON


def check_same(run_dir: Path, saved: dict, current: dict) -> None:
    """CheckpointError naming the first key whose value differs between the run and the current data."""
    for key, value in current.items():
        if not _same(key, saved.get(key), value):
            raise CheckpointError(f"{run_dir / TASK_FILE}: the data gives another {key} than the run was trained "
                                  f"with; evaluate or resume with the same data settings")
