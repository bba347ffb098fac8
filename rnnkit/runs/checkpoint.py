"""Checkpoints of a run: `last/` and `best/`, each a folder of safetensors files plus state.json.

    model.safetensors      the model's state_dict (metadata: format, task, step)
    optimizer.safetensors  optimizer, scheduler and gradient-scaler state: tensors here, structure as JSON metadata
    rng.safetensors        torch CPU/CUDA generator states, numpy and python key arrays
    carried.safetensors    the recurrent state carried to the next batch (data.mode: stream), every row; absent
                           when no state is carried
    state.json             format_version, step, epoch, batch_in_epoch, best/last metrics, RNG metadata

Nothing is pickled. A checkpoint folder is written with `rnnkit.io.atomic_folder`: filled in a temporary
sibling, then swapped in with two renames, the old copy deleted last. A crash between the two renames leaves
no `last/` but a complete `.last.old-*/`, which `checkpoint_dir` falls back to (and the next save promotes or
cleans up), so at every instant one complete checkpoint is reachable under the name `last`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rnnkit.errors import CheckpointError
from rnnkit.io.atomic import atomic_folder, atomic_write_json, old_copies
from rnnkit.io.tensors import FORMAT_NAME, flatten_state, load_safetensors, save_safetensors, short, unflatten_state
from rnnkit.runs.rng import rng_state, set_rng_state

FORMAT_VERSION = 1
WHICH = ("last", "best")
CARRIED_FILE = "carried.safetensors"
MODEL_FILE, OPTIM_FILE, RNG_FILE, STATE_FILE = "model.safetensors", "optimizer.safetensors", "rng.safetensors", \
    "state.json"
READ_ATTEMPTS = 20  # reads of a checkpoint that a concurrent save keeps replacing
DAMAGE_CONFIRMATIONS = 3  # failed reads of an unchanged folder that make it damaged for good


@dataclass
class Checkpoint:
    """One loaded checkpoint folder (`last/` or `best/`)."""

    folder: Path
    model: dict[str, torch.Tensor]
    state: dict  # state.json
    optimizer: dict | None = None  # optimizer state_dict, ready for load_state_dict
    scheduler: dict | None = None
    scaler: dict | None = None  # the fp16 gradient scaler's state_dict (None when there was none)
    rng_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    carried: dict[str, torch.Tensor] = field(default_factory=dict)  # carried.safetensors (stream training)
    model_step: int | None = None  # the step in model.safetensors' metadata (matches state.json's)

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))

    @property
    def which(self) -> str:
        """"last" or "best", also for the `.last.old-<pid>` copy that a crash in mid-swap leaves."""
        return self.folder.name.lstrip(".").split(".old-")[0]

    @property
    def metrics(self) -> dict | None:
        """The validation metrics of these weights (`best`), or the last ones measured (`last`)."""
        return self.state.get("best_metrics") if self.which == "best" else self.state.get("metrics")

    def restore_rng(self) -> None:
        set_rng_state(self.rng_tensors, self.state.get("rng", {}))


def save_checkpoint(run_dir: str | Path, which: str, *, model: torch.nn.Module, state: dict,
                    optimizer: torch.optim.Optimizer | None = None, scheduler_state: dict | None = None,
                    scaler_state: dict | None = None, task: str = "lm",
                    carried: dict[str, torch.Tensor] | None = None) -> Path:
    """Write checkpoint `which` (last or best) of `run_dir` atomically (see the module docstring).

    `state` holds step, epoch and metrics (JSON-able); RNG states are captured here. `carried`: the recurrent
    state the next batch starts from (rnnkit.training.carried), when training carries one.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, not {which!r}")
    step = str(state.get("step", 0))
    version = str(FORMAT_VERSION)
    with atomic_folder(Path(run_dir) / which) as tmp:
        save_safetensors(tmp / MODEL_FILE, dict(model.state_dict()),
                         {"format_version": version, "task": task, "step": step})
        if optimizer is not None:
            structure, tensors = flatten_state({"optimizer": optimizer.state_dict(), "scaler": scaler_state},
                                               "optimizer")
            save_safetensors(tmp / OPTIM_FILE, tensors, {"format_version": version, "step": step,
                                                         "optimizer": json.dumps(structure),
                                                         "scheduler": json.dumps(scheduler_state)})
        rng_tensors, rng_meta = rng_state()
        save_safetensors(tmp / RNG_FILE, rng_tensors, {"format_version": version})
        if carried:
            save_safetensors(tmp / CARRIED_FILE, carried, {"format_version": version, "step": step})
        atomic_write_json(tmp / STATE_FILE, {"format_version": FORMAT_VERSION, "format": FORMAT_NAME, "task": task,
                                             **state, "rng": rng_meta,
                                             "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return Path(run_dir) / which


def checkpoint_dir(run_dir: str | Path, which: str = "last") -> Path:
    """The folder of checkpoint `which`, or a complete `.which.old-*` copy left by a crash mid-swap."""
    target = Path(run_dir) / which
    if target.is_dir():
        return target
    olds = old_copies(target)
    if olds:
        return olds[-1]
    raise CheckpointError(f"{run_dir}: no '{which}' checkpoint (has this run saved one yet?)")


def has_checkpoint(run_dir: str | Path, which: str = "last") -> bool:
    try:
        checkpoint_dir(run_dir, which)
    except CheckpointError:
        return False
    return True


def read_state(folder: Path) -> dict:
    """state.json of a checkpoint folder, with its format version checked."""
    path = folder / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable ({short(err)}); the checkpoint is corrupt") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not an rnnkit checkpoint")
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{folder}: checkpoint format {version!r} was written by a newer rnnkit (this one "
                              f"reads up to {FORMAT_VERSION}); upgrade rnnkit to load it")
    return state


def load_checkpoint(run_dir: str | Path, which: str = "last", *, with_optimizer: bool = True) -> Checkpoint:
    """Load checkpoint `which` of a run folder; CheckpointError for anything missing, corrupt or foreign.

    A `train` running in another process may swap the folder in while it is read (`eval` during training):
    the read is retried until one folder was read whole, so the files returned are from one save.
    """
    failure, unchanged_failures = None, 0
    for _ in range(READ_ATTEMPTS):
        folder = checkpoint_dir(run_dir, which)
        before = _identity(folder)
        try:
            ckpt = _read_checkpoint(folder, with_optimizer)
        except CheckpointError as err:
            # Replaced under our feet, or a `.which.old-*` copy that a save in progress deletes once its new
            # folder is in: read again. The identity check alone is not proof of damage: a save loop can
            # reuse a deleted folder's inode within one tick of the (coarse) ctime clock, so damage counts
            # as confirmed after the same folder failed three reads.
            unchanged = _identity(folder) == before and folder.name == which
            unchanged_failures = unchanged_failures + 1 if unchanged else 0
            if unchanged_failures >= DAMAGE_CONFIRMATIONS:
                raise
            failure = err
            time.sleep(0.005)
            continue
        if _identity(folder) == before and ckpt.model_step in (None, ckpt.step):
            return ckpt
    if failure is not None:
        raise failure
    raise CheckpointError(f"{Path(run_dir) / which}: changed {READ_ATTEMPTS} times while being read; is a "
                          f"training process saving it in a tight loop? Try again")


def _identity(folder: Path) -> tuple[int, int] | None:
    """Which directory `folder` names now: a swap (rename) gives another inode or at least another ctime."""
    try:
        stat = os.stat(folder)
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_ctime_ns


def _read_checkpoint(folder: Path, with_optimizer: bool) -> Checkpoint:
    state = read_state(folder)
    model, meta = load_safetensors(folder / MODEL_FILE)
    ckpt = Checkpoint(folder, model, state)
    if "step" in meta:
        ckpt.model_step = int(meta["step"])
    if with_optimizer:
        tensors, meta = load_safetensors(folder / OPTIM_FILE)
        try:
            saved = unflatten_state(json.loads(meta["optimizer"]), tensors)
            if isinstance(saved, dict) and set(saved) == {"optimizer", "scaler"}:
                ckpt.optimizer, ckpt.scaler = saved["optimizer"], saved["scaler"]
            else:  # written before the scaler was saved: the optimizer's state alone
                ckpt.optimizer = saved
            ckpt.scheduler = json.loads(meta.get("scheduler", "null"))
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{folder / OPTIM_FILE}: damaged optimizer structure ({short(err)})") from None
        ckpt.rng_tensors, _ = load_safetensors(folder / RNG_FILE)
        if (folder / CARRIED_FILE).is_file():
            ckpt.carried, _ = load_safetensors(folder / CARRIED_FILE)
    return ckpt


def load_model_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str | Path) -> None:
    """Copy checkpoint tensors into `model`, naming missing, unexpected and mis-shaped entries."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tuple(expected[k].shape) != tuple(tensors[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}")
        if wrong:
            parts.append("shape of " + ", ".join(f"{k} {tuple(tensors[k].shape)} vs {tuple(expected[k].shape)}"
                                                  for k in wrong[:3]))
        raise CheckpointError(f"{where}: the weights do not fit the model of config.yaml ({'; '.join(parts)}); "
                              f"the model config or vocabulary differs from the one trained")
    model.load_state_dict(tensors)
