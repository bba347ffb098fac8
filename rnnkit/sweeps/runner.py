"""Running a sweep: each point trained, resumed from its `last` or skipped when finished; one at a time in this
process, or J at once in `rnnkit train` subprocesses with the cores shared between them. A point that fails is
reported and the sweep goes on; Ctrl-C stops every running point after it has saved `last`, so the same
command started again finishes only what is missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rnnkit.errors import RnnkitError, UsageError
from rnnkit.runs.checkpoint import has_checkpoint
from rnnkit.runs.folder import check_resumable, is_run, read_status, run_config
from rnnkit.runs.listing import describe_run
from rnnkit.sweeps.hparams import has_hparams, write_hparams
from rnnkit.sweeps.spec import Point, Sweep

WORKER = [sys.executable, "-m", "rnnkit"]  # what a parallel point runs (`... train CONFIG --run-dir ...`)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
LOG_FILE = "train.log"  # a subprocess's output, in its run folder
STOP_WAIT_S = 120.0  # how long Ctrl-C waits for a subprocess to save `last` before killing it


@dataclass
class Outcome:
    """What became of one point. action: train (from scratch), resume (from `last`), skip (finished before),
    busy (another process trains it), refuse (its folder holds another config, or is damaged).
    status: finished, failed or interrupted (busy and refused points are failed)."""

    point: Point
    path: Path
    action: str
    status: str = "pending"
    error: str | None = None
    seconds: float = 0.0
    threads: int | None = None  # torch threads of a subprocess (None: this process's)

    @property
    def done(self) -> bool:
        return self.status == "finished"


@dataclass
class ThreadPlan:
    """How many points run at once and the threads each gets (jobs x threads <= cores)."""

    jobs: int
    threads: int
    cores: int
    notes: list[str] = field(default_factory=list)


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def plan_threads(jobs: int, cores: int | None = None, environ: dict | None = None) -> ThreadPlan:
    """J jobs share the cores: each gets cores // J threads (at least 1), never more than OMP_NUM_THREADS
    when the environment sets it; J above the cores is lowered to the cores, with a note."""
    cores = cores or available_cores()
    environ = os.environ if environ is None else environ
    notes = []
    if jobs > cores:
        notes.append(f"--jobs {jobs}: only {cores} cores, so {cores} points run at once")
        jobs = cores
    threads = max(1, cores // jobs)
    limit = environ.get("OMP_NUM_THREADS", "")
    if limit.isdigit() and 0 < int(limit) < threads:
        threads = int(limit)
    return ThreadPlan(jobs, threads, cores, notes)


def check_folder(sweep: Sweep) -> None:
    """The sweep's folder holds run folders; it must not be a run folder itself (`--name quickstart`)."""
    if is_run(sweep.folder):
        raise UsageError(f"{sweep.folder}: is a run folder, not a sweep's; choose another --name")


def plan_point(point: Point, path: Path) -> tuple[str, str | None]:
    """(action, why): what the sweep does with a point whose run folder is `path` (see Outcome)."""
    if not is_run(path):
        return "train", None
    record = describe_run(path)  # the status `rnnkit runs` shows: lock, status.json and the checkpoint
    status = record["status"]
    if status == "damaged":
        return "refuse", record["error"]
    if status == "training":
        return "busy", f"{path}: being trained by another process; let it finish, then run the sweep again"
    if not has_checkpoint(path, "last"):
        return "train", None  # a start that never saved: start again
    try:
        check_resumable(run_config(path), point.cfg, path)
    except UsageError as err:
        return "refuse", f"{err} (delete the folder or sweep under another --name)"
    if status == "finished":
        stopped = read_status(path).get("stopped")
        if stopped == "early_stopping" or (record["step"] or 0) >= point.cfg.train.max_steps:
            return "skip", None
    return "resume", None


def run_sweep(sweep: Sweep, *, quiet: bool = True, data_root: str | Path | None = None,
              on_event: Callable[[str, Outcome], None] | None = None, on_step: Callable | None = None,
              cores: int | None = None) -> list[Outcome]:
    """Train every point of `sweep` that is not finished; return one Outcome per point, in order.

    jobs 1: in this process (rnnkit.training.train; `on_step` is passed to it, a test hook). jobs > 1: in
    subprocesses with OMP_NUM_THREADS set by plan_threads. on_event("start" | "done", outcome) reports
    progress. KeyboardInterrupt propagates after the running points saved `last`.
    """
    points = sweep.points()
    check_folder(sweep)
    sweep.folder.mkdir(parents=True, exist_ok=True)
    emit = on_event or (lambda kind, outcome: None)
    outcomes, todo = [], []
    for point in points:
        path = sweep.folder / point.name
        action, why = plan_point(point, path)
        outcome = Outcome(point, path, action)
        outcomes.append(outcome)
        if action == "skip":
            outcome.status = "finished"
            emit("done", outcome)
            _hparams(sweep, outcome, only_missing=True)
        elif action in ("busy", "refuse"):
            outcome.status, outcome.error = "failed", why
            emit("done", outcome)
        else:
            todo.append(outcome)
    plan = plan_threads(sweep.jobs, cores)
    if plan.jobs <= 1 or len(todo) <= 1:
        for outcome in todo:
            _train_here(outcome, quiet, data_root, on_step, emit)
            _hparams(sweep, outcome)
    else:
        _prepare_data(todo, data_root)
        _run_parallel(sweep, todo, plan, data_root, emit)
    return outcomes


def _train_here(outcome: Outcome, quiet: bool, data_root, on_step, emit) -> None:
    from rnnkit.training import train

    emit("start", outcome)
    started = time.perf_counter()
    try:
        train(outcome.point.cfg, resume=outcome.action == "resume", quiet=quiet, run_dir=outcome.path,
              data_root=data_root, on_step=on_step)
    except KeyboardInterrupt:
        outcome.status, outcome.seconds = "interrupted", time.perf_counter() - started
        emit("done", outcome)
        raise
    except RnnkitError as err:
        outcome.status, outcome.error = "failed", " ".join(str(err).split())
    except Exception as err:  # a bug in one point must not cost the others: report it, go on
        outcome.status, outcome.error = "failed", f"{type(err).__name__}: {' '.join(str(err).split())}"
    else:
        outcome.status = "finished"
    outcome.seconds = time.perf_counter() - started
    emit("done", outcome)


def _hparams(sweep: Sweep, outcome: Outcome, only_missing: bool = False) -> None:
    if outcome.done and not (only_missing and has_hparams(outcome.path)):
        write_hparams(outcome.path, outcome.point.values, sweep.grid)


def _prepare_data(todo: list[Outcome], data_root) -> None:
    """Prepare each distinct data section once here, so that parallel points do not all prepare it at once."""
    from rnnkit.tasks import get_task

    seen = set()
    for outcome in todo:
        cfg = outcome.point.cfg
        key = repr((cfg.task, cfg.data))
        if key not in seen:
            seen.add(key)
            try:
                get_task(cfg.task)(cfg, data_root).setup()
            except RnnkitError:
                pass  # the point itself reports it


def _worker_command(config: Path, outcome: Outcome) -> list[str]:
    command = [*WORKER, "train", str(config), "--run-dir", str(outcome.path), "--quiet"]
    return command + (["--resume"] if outcome.action == "resume" else [])


def _run_parallel(sweep: Sweep, todo: list[Outcome], plan: ThreadPlan, data_root, emit) -> None:
    env = {**os.environ, **{name: str(plan.threads) for name in THREAD_VARIABLES}}
    if data_root is not None:
        env["RNNKIT_DATA"] = str(data_root)
    waiting = list(todo)
    running: dict[subprocess.Popen, tuple[Outcome, float]] = {}
    with tempfile.TemporaryDirectory(prefix="rnnkit-sweep-") as scratch:
        try:
            while waiting or running:
                while waiting and len(running) < plan.jobs:
                    outcome = waiting.pop(0)
                    running[_start(outcome, Path(scratch), env, plan.threads)] = (outcome, time.perf_counter())
                    emit("start", outcome)
                for proc in [p for p in running if p.poll() is not None]:
                    outcome, started = running.pop(proc)
                    _finish(outcome, proc.returncode, time.perf_counter() - started)
                    emit("done", outcome)
                    _hparams(sweep, outcome)
                time.sleep(0.05)
        except KeyboardInterrupt:
            _stop(running, emit)
            raise


def _start(outcome: Outcome, scratch: Path, env: dict, threads: int) -> subprocess.Popen:
    config = scratch / f"{outcome.point.name}.yaml"
    config.write_text(yaml.safe_dump(outcome.point.cfg.to_dict(), sort_keys=False), encoding="utf-8")
    outcome.path.mkdir(parents=True, exist_ok=True)
    outcome.threads = threads
    with open(outcome.path / LOG_FILE, "ab") as log:
        log.write(f"$ OMP_NUM_THREADS={threads} {' '.join(_worker_command(config, outcome))}\n".encode())
        log.flush()
        # A session of its own: a terminal's Ctrl-C reaches the sweep only, which then stops each point once.
        return subprocess.Popen(_worker_command(config, outcome), env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=os.name == "posix")


def _finish(outcome: Outcome, code: int, seconds: float) -> None:
    outcome.seconds = seconds
    if code == 0:
        outcome.status = "finished"
        return
    if code in (130, 143):  # Ctrl-C or SIGTERM: the point saved `last`
        outcome.status = "interrupted"
        return
    outcome.status = "failed"
    outcome.error = f"exit {code}: {_last_error(outcome.path / LOG_FILE)} (log: {outcome.path / LOG_FILE})"


def _last_error(log: Path) -> str:
    """The `error: ...` line rnnkit printed, else the log's last line."""
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "no log"
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["no output"])[-1].removeprefix("error:").strip()


def _stop(running: dict, emit) -> None:
    """Ctrl-C: one SIGINT to each running point (it finishes its step and saves `last`), then wait for them."""
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_WAIT_S
    for proc, (outcome, started) in running.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _finish(outcome, proc.returncode, time.perf_counter() - started)
        emit("done", outcome)
