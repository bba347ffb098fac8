"""Run folders and checkpoints: safetensors tensors plus JSON/YAML metadata, atomic writes, clear load errors.

Layout of a run folder `runs/<name>/`:

    config.yaml          the resolved config (every field, defaults included)
    vocab.json           the task's artifacts (the LM's character vocabulary)
    run.lock             PID of the `rnnkit train` that holds the folder (flock'ed while it runs)
    last/  best/         two complete checkpoints, each:
        model.safetensors      the model's state_dict (metadata: format, task, step)
        optimizer.safetensors  optimizer + scheduler state: tensors here, their structure as JSON metadata
        rng.safetensors        torch CPU/CUDA generator states, numpy and python key arrays
        state.json             format_version, step, epoch, batch_in_epoch, best/last metrics, RNG metadata
    tb/                  TensorBoard event files

Nothing is pickled. Every file is written to a temporary file in the same folder, flushed, fsync'ed and
renamed over its target (`os.replace` is atomic on POSIX). A checkpoint folder is swapped in three steps:

    1. write every file into `.last.tmp-<pid>/` (a crash here leaves `last/` untouched);
    2. rename `last/` -> `.last.old-<pid>/`, then `.last.tmp-<pid>/` -> `last/`;
    3. delete `.last.old-<pid>/`.

A crash between the two renames of step 2 leaves no `last/` but a complete `.last.old-*/`, which
`checkpoint_dir` falls back to (and the next save cleans up), so at every instant one complete
checkpoint is reachable under the name `last`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors_bytes

from rnnkit.config import Config, config_from_dict, read_yaml
from rnnkit.errors import CheckpointError, ConfigError, TrainingError, UsageError

FORMAT_VERSION = 1
FORMAT_NAME = "rnnkit"
WHICH = ("last", "best")
MODEL_FILE, OPTIM_FILE, RNG_FILE, STATE_FILE = "model.safetensors", "optimizer.safetensors", "rng.safetensors", \
    "state.json"
LOCK_FILE = "run.lock"
READ_ATTEMPTS = 20  # reads of a checkpoint that a concurrent save keeps replacing
# Config sections that must not change when a run is resumed: they decide the model and its data.
FROZEN_SECTIONS = ("task", "model", "data")


# ---------------------------------------------------------------- atomic writes

def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: the directory entry itself must reach the disk."""
    with contextlib.suppress(OSError):  # some filesystems refuse to open or fsync folders
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def save_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Atomically write tensors (made contiguous, on CPU) with string metadata."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save_tensors_bytes(tensors, metadata={"format": FORMAT_NAME, **metadata}))


def load_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of an rnnkit safetensors file; CheckpointError for anything else."""
    path = Path(path)
    try:
        size = path.stat().st_size  # one stat: a concurrent save may remove the file between two
    except OSError:
        size = None
    if size is None or not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
    if size < 8:
        raise CheckpointError(f"{path}: truncated ({size} bytes); the checkpoint is corrupt")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except Exception as err:  # safetensors raises its own error types for every kind of damage
        raise CheckpointError(f"{path}: not a readable safetensors file ({_short(err)}); the checkpoint is "
                              f"truncated or corrupt") from None
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not written by rnnkit (no 'format: {FORMAT_NAME}' metadata)")
    return tensors, metadata


def _short(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 120 else text[:117] + "..."


# ---------------------------------------------------------------- nested state <-> (tensors, JSON)

def flatten_state(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state (dicts, lists, tuples, numbers, tensors) into JSON-able structure + tensors.

    Tensors become {"__tensor__": key}. Dicts become {"__dict__": [[key, value], ...]} so that the
    optimizer's integer parameter ids come back as integers; tuples keep their type.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value
            return {"__tensor__": path}
        if isinstance(value, dict):
            return {"__dict__": [[k, walk(v, f"{path}.{k}")] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(value)]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store {type(value).__name__} at {path} without pickling")

    return walk(obj, prefix), tensors


def unflatten_state(structure: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten_state`."""
    if isinstance(structure, dict):
        if "__tensor__" in structure:
            return tensors[structure["__tensor__"]]
        if "__dict__" in structure:
            return {k: unflatten_state(v, tensors) for k, v in structure["__dict__"]}
        if "__tuple__" in structure:
            return tuple(unflatten_state(v, tensors) for v in structure["__tuple__"])
    if isinstance(structure, list):
        return [unflatten_state(v, tensors) for v in structure]
    return structure


# ---------------------------------------------------------------- RNG states

def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """Every RNG the training loop may draw from: (tensors for safetensors, JSON-able rest)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss = random.getstate()
    tensors["python_state"] = torch.tensor(internal, dtype=torch.int64)  # 625 ints: kept out of state.json
    meta = {"python": [version, gauss], "numpy": [kind, int(pos), int(has_gauss), float(cached)]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Restore what `rng_state` captured (CUDA states only for devices that exist here)."""
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            if f"torch_cuda_{index}" in tensors:
                torch.cuda.set_rng_state(tensors[f"torch_cuda_{index}"], index)
    if "numpy" in meta and "numpy_keys" in tensors:
        kind, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    if "python" in meta and "python_state" in tensors:
        version, gauss = meta["python"]
        random.setstate((version, tuple(tensors["python_state"].tolist()), gauss))


# ---------------------------------------------------------------- checkpoints

@dataclass
class Checkpoint:
    """One loaded checkpoint folder (`last/` or `best/`)."""

    folder: Path
    model: dict[str, torch.Tensor]
    state: dict  # state.json
    optimizer: dict | None = None  # optimizer state_dict, ready for load_state_dict
    scheduler: dict | None = None
    rng_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    model_step: int | None = None  # the step in model.safetensors' metadata (matches state.json's)

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))

    @property
    def which(self) -> str:
        """"last" or "best", also for the `.last.old-<pid>` copy that a crash in mid-swap leaves."""
        return self.folder.name.lstrip(".").split(".old-")[0]

    def restore_rng(self) -> None:
        set_rng_state(self.rng_tensors, self.state.get("rng", {}))


def save_checkpoint(run_dir: str | Path, which: str, *, model: torch.nn.Module, state: dict,
                    optimizer: torch.optim.Optimizer | None = None, scheduler_state: dict | None = None,
                    task: str = "lm") -> Path:
    """Write checkpoint `which` (last or best) of `run_dir` atomically (see the module docstring).

    `state` holds step, epoch and metrics (JSON-able); RNG states are captured here.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, not {which!r}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _cleanup_leftovers(run_dir, which)
    tmp = run_dir / f".{which}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    step = str(state.get("step", 0))
    save_safetensors(tmp / MODEL_FILE, dict(model.state_dict()),
                     {"format_version": str(FORMAT_VERSION), "task": task, "step": step})
    if optimizer is not None:
        structure, tensors = flatten_state(optimizer.state_dict(), "optimizer")
        save_safetensors(tmp / OPTIM_FILE, tensors, {"format_version": str(FORMAT_VERSION), "step": step,
                                                     "optimizer": json.dumps(structure),
                                                     "scheduler": json.dumps(scheduler_state)})
    rng_tensors, rng_meta = rng_state()
    save_safetensors(tmp / RNG_FILE, rng_tensors, {"format_version": str(FORMAT_VERSION)})
    atomic_write_json(tmp / STATE_FILE, {"format_version": FORMAT_VERSION, "format": FORMAT_NAME, "task": task,
                                         **state, "rng": rng_meta, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    _fsync_dir(tmp)
    _swap_in(run_dir, which, tmp)
    return run_dir / which


def _swap_in(run_dir: Path, which: str, tmp: Path) -> None:
    """Replace `run_dir/which` by the complete folder `tmp` (two renames; see the module docstring)."""
    target = run_dir / which
    old = run_dir / f".{which}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_dir(run_dir)
    shutil.rmtree(old, ignore_errors=True)


def _cleanup_leftovers(run_dir: Path, which: str) -> None:
    """Remove half-written temporary folders and, once `which/` exists, stale `.old` copies."""
    for tmp in run_dir.glob(f".{which}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    if (run_dir / which).is_dir():
        for old in run_dir.glob(f".{which}.old-*"):
            shutil.rmtree(old, ignore_errors=True)
    else:
        # A crash between the two renames: promote the complete old copy back to its name.
        olds = sorted(run_dir.glob(f".{which}.old-*"), key=lambda p: p.stat().st_mtime)
        if olds:
            os.replace(olds[-1], run_dir / which)


def checkpoint_dir(run_dir: str | Path, which: str = "last") -> Path:
    """The folder of checkpoint `which`, or a complete `.which.old-*` copy left by a crash mid-swap."""
    run_dir = Path(run_dir)
    target = run_dir / which
    if target.is_dir():
        return target
    olds = sorted(run_dir.glob(f".{which}.old-*"), key=_mtime)
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
        raise CheckpointError(f"{path}: unreadable ({_short(err)}); the checkpoint is corrupt") from None
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
    failure = None
    for _ in range(READ_ATTEMPTS):
        folder = checkpoint_dir(run_dir, which)
        before = _identity(folder)
        try:
            ckpt = _read_checkpoint(folder, with_optimizer)
        except CheckpointError as err:
            if _identity(folder) == before and folder.name == which:
                raise  # damaged for good, not replaced under our feet
            # replaced, or a `.which.old-*` copy, which a save in progress deletes once its new folder is in
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
            ckpt.optimizer = unflatten_state(json.loads(meta["optimizer"]), tensors)
            ckpt.scheduler = json.loads(meta.get("scheduler", "null"))
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{folder / OPTIM_FILE}: damaged optimizer structure ({_short(err)})") from None
        ckpt.rng_tensors, _ = load_safetensors(folder / RNG_FILE)
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


# ---------------------------------------------------------------- run folders

def run_config(run_dir: str | Path) -> Config:
    """The resolved config.yaml of a run folder."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not an rnnkit run folder (no config.yaml)")
    try:
        return config_from_dict(read_yaml(path), str(path))
    except ConfigError as err:
        raise CheckpointError(f"{err} (config.yaml of a run written by another rnnkit version?)") from None


def check_resumable(saved: Config, current: Config, run_dir: Path) -> None:
    """Refuse to resume when the task, model or data sections or train.optimizer changed (other train settings
    may change)."""
    saved_d, current_d = saved.to_dict(), current.to_dict()
    changed = []
    for section in FROZEN_SECTIONS:
        a, b = saved_d[section], current_d[section]
        if isinstance(a, dict):
            changed += [f"{section}.{k}: {a[k]!r} -> {b.get(k)!r}" for k in a if a[k] != b.get(k)]
        elif a != b:
            changed.append(f"{section}: {a!r} -> {b!r}")
    if saved.train.optimizer != current.train.optimizer:  # its state has another layout
        changed.append(f"train.optimizer: {saved.train.optimizer!r} -> {current.train.optimizer!r}")
    if changed:
        raise CheckpointError(f"{run_dir}: cannot resume, the config differs from the run's config.yaml "
                              f"({'; '.join(changed[:5])}); undo the change or start a new run (run.name)")


def resolve_run(path: str | Path | None, runs_dir: str | Path = "runs") -> Path:
    """A run folder: `path` if given, else the most recently modified run under `runs_dir`."""
    if path is not None and str(path) != "":
        run = Path(path)
        if not run.is_dir():
            raise CheckpointError(f"{run}: no such run folder")
        if not (run / "config.yaml").is_file():
            raise CheckpointError(f"{run}: not an rnnkit run folder (no config.yaml)")
        return run
    runs_dir = Path(runs_dir)
    candidates = [p for p in runs_dir.glob("*") if (p / "config.yaml").is_file()] if runs_dir.is_dir() else []
    if not candidates:
        raise CheckpointError(f"no run found under {runs_dir}/; train one first (rnnkit train "
                              f"configs/quickstart.yaml) or name the run folder")
    return max(candidates, key=_last_activity)


def _last_activity(run: Path) -> float:
    return max(_mtime(path) for path in (run, *(run / which / STATE_FILE for which in WHICH)))


def _mtime(path: Path) -> float:
    """Modification time, 0 for a path that is gone (a concurrent save renames and deletes folders)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def pick_device(device: str = "auto") -> torch.device:
    """`auto` -> CUDA when present, else CPU; `cuda` without a GPU is a UsageError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r}: no CUDA device is available here; use cpu or auto")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UsageError(f"device {device!r}: expected auto, cpu or cuda") from None


def load_for_inference(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """(cfg, vocab, model in eval mode on `device`) of a run; `best` falls back to `last` if none exists.

    vocab is whatever the task stores (the LM's Vocab); None for tasks without one.
    """
    return load_with_checkpoint(run_dir, which, device)[:3]


def load_with_checkpoint(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """`load_for_inference` plus the Checkpoint the weights came from (its state: step, metrics), read in
    the same consistent read, so a step reported beside metrics is the step of those weights."""
    from rnnkit.tasks import get_task

    if which not in WHICH:
        raise UsageError(f"--which: {which!r} is not one of {', '.join(WHICH)}")
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    task = get_task(cfg.task).from_run(cfg, run_dir)
    if which == "best" and not has_checkpoint(run_dir, "best"):
        which = "last"
    ckpt = load_checkpoint(run_dir, which, with_optimizer=False)
    if ckpt.state.get("task", cfg.task) != cfg.task:
        raise CheckpointError(f"{ckpt.folder}: a checkpoint of task {ckpt.state.get('task')!r} in a run of "
                              f"task {cfg.task!r}")
    model = task.build_model()
    load_model_state(model, ckpt.model, ckpt.folder / MODEL_FILE)
    device = device if isinstance(device, torch.device) else pick_device(device)
    model.to(device).eval()
    return cfg, getattr(task, "vocab", None), model, ckpt


# ---------------------------------------------------------------- run lock

class RunLock:
    """An exclusive lock on a run folder (fcntl.flock on `run.lock`, which holds the holder's PID).

    The kernel drops the lock when the process dies, so a crashed run never leaves the folder locked. A
    session that created the folder and failed before writing anything into it removes the folder again.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.handle = None
        self.created: Path | None = None  # the outermost folder this lock created (removed again if unused)

    def acquire(self) -> RunLock:
        folder = self.path.parent
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for _ in range(10):  # a holder that removes its unused folder races with us: try again
            try:
                folder.mkdir(parents=True, exist_ok=True)
                handle = open(self.path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
            except FileNotFoundError:
                continue
            except OSError as err:
                raise TrainingError(f"{folder}: cannot create the run folder ({err.strerror}); choose another "
                                    f"run.dir or --run-dir") from None
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise TrainingError(f"{folder}: in use by another rnnkit train (pid {holder}); wait for it "
                                    f"to finish or choose another run.name") from None
            if self._still_linked(handle):
                break
            handle.close()  # we locked a run.lock its previous holder had just removed
        else:
            raise TrainingError(f"{folder}: could not lock {LOCK_FILE}; is another rnnkit train starting there?")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        self.created = missing[-1] if missing else None
        return self

    def _still_linked(self, handle) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self.handle is None:
            return
        with contextlib.suppress(OSError):
            self.handle.seek(0)
            self.handle.truncate()
            if self.created is not None and [p.name for p in self.path.parent.iterdir()] == [LOCK_FILE]:
                self._remove_unused_folders()  # still holding the lock: nobody else is using the folder
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()
        self.handle = None

    def _remove_unused_folders(self) -> None:
        self.path.unlink()
        folder = self.path.parent
        while True:
            folder.rmdir()  # an OSError (not empty) stops here, leaving the outer folders
            if folder == self.created:
                return
            folder = folder.parent

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
