"""The training loop: one task, one optimizer, checkpoints, evaluation, early stopping, exact resume, DDP.

Exact resume: a checkpoint holds the model, optimizer and schedule, the step, the epoch and how many of its
batches were consumed (the batch order is a pure function of (seed, epoch)), and every RNG state, all taken
at a step boundary. Evaluation and the TensorBoard samples draw from no global RNG, so a run interrupted
and resumed follows exactly the path of an uninterrupted one.

Stateful tasks (rnnkit.tasks.base.CarriesState: a stream LM, truncated BPTT) get each batch's initial
recurrent state and return its final one, which the loop detaches and passes to the next batch; every epoch
starts from zeros. `last` saves the carried state of every process's rows, so resume continues exactly.
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rnnkit.errors import CheckpointError, Terminated, TrainingError, UsageError
from rnnkit.evaluation.split import split_sums
from rnnkit.models import RecordsGates, lengths_to_mask
from rnnkit.runs.checkpoint import has_checkpoint, load_checkpoint, load_model_state, save_checkpoint
from rnnkit.runs.folder import check_resumable, run_config, write_run_config, write_status
from rnnkit.runs.lock import RunLock
from rnnkit.tasks import get_task
from rnnkit.tasks.base import CarriesState
from rnnkit.training import carried
from rnnkit.training.distributed import (
    DistEnv,
    all_reduce_,
    all_reduce_dict,
    barrier,
    device_for,
    init_distributed,
    shutdown,
)
from rnnkit.training.init_from import load_init_run, start_from
from rnnkit.training.monitor import ProgressBar, TensorBoard, console
from rnnkit.training.optim import Schedule, build_optimizer
from rnnkit.training.teacher_forcing import TeacherForcingSchedule

NUM_SAMPLES = 3  # sentences sampled for TensorBoard and the end of the run
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # finish the step, save `last`, exit (130 / 143)


@dataclass
class TrainResult:
    """What a training session did (returned on rank 0 and the others alike)."""

    run_dir: Path
    steps: int = 0
    epoch: int = 0
    stopped: str = "max_steps"  # max_steps | early_stopping
    best_step: int | None = None
    best_metrics: dict | None = None
    last_metrics: dict | None = None
    seconds: float = 0.0
    chars_per_sec: float = 0.0  # input steps per second: characters for the LM (the task's `unit`)
    unit: str = "char"
    parameters: int = 0  # trainable numbers in the model
    losses: list[float] = field(default_factory=list)  # training loss of each step of this session
    samples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def train(cfg, *, resume: bool = False, quiet: bool = False, run_dir: str | Path | None = None,
          data_root: str | Path | None = None, on_step: Callable | None = None,
          init_from: str | Path | None = None) -> TrainResult:
    """Train `cfg` into `run_dir` (default `<run.dir>/<run.name>`); `--resume` continues from `last`;
    `init_from` (a run folder) starts a new run from that run's weights (rnnkit.training.init_from).

    Under torchrun (WORLD_SIZE > 1) each process trains on its shard of every global batch with
    DistributedDataParallel; only rank 0 writes. `on_step(trainer)` runs after every step (tests, hooks).
    Raises TrainingError on a non-finite loss, KeyboardInterrupt after saving `last` on Ctrl-C.
    """
    env = init_distributed(cfg.train.device)
    try:
        trainer = Trainer(cfg, env, resume=resume, quiet=quiet, run_dir=run_dir, data_root=data_root,
                          on_step=on_step, init_from=init_from)
        return trainer.run()
    finally:
        shutdown(env)


class Trainer:
    """One training session; its attributes are the loop's state (see `checkpoint_state`)."""

    def __init__(self, cfg, env: DistEnv, *, resume: bool, quiet: bool, run_dir, data_root, on_step,
                 init_from=None):
        self.cfg, self.env, self.resume, self.quiet, self.on_step = cfg, env, resume, quiet, on_step
        self.t = cfg.train
        self.run_dir = Path(run_dir) if run_dir is not None else Path(cfg.run.dir) / str(cfg.run.name)
        self.device = device_for(env, self.t.device)
        self.result = TrainResult(self.run_dir)
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best_loss: float | None = None
        self.bad_evals = 0
        self.saved_step: int | None = None
        self.interrupted, self.signal = False, None  # set by on_signal
        self.carry = False  # the task carries the recurrent state across batches (set in setup)
        self.state = None  # the state carried into the next training batch (None = zeros)
        self.lock: RunLock | None = None
        self.started = False  # set once setup has created or restored the run: from then on status.json tells
        self.data_root = data_root
        self.init_from = init_from  # a run folder whose weights a new run starts from (fine-tuning)
        if init_from is not None and resume:
            raise UsageError("--init-from starts a new run from another run's weights; --resume continues this "
                             "run from its own: use one or the other")
        self.init_source: dict | None = None  # which weights those were, kept in every checkpoint's state

    # ---------------------------------------------------------------- setup

    def note(self, message: str) -> None:
        self.result.notes.append(message)
        if self.env.is_main and not self.quiet:
            console.print(f"[yellow]note:[/] {message}")

    def check_folder(self) -> None:
        exists = has_checkpoint(self.run_dir, "last")
        if self.resume and not exists:
            raise CheckpointError(f"{self.run_dir}: nothing to resume (no 'last' checkpoint); drop --resume to "
                                  f"start a new run")
        if not self.resume and exists:
            raise TrainingError(f"{self.run_dir}: already holds a trained run; pass --resume to continue it, "
                                f"--set run.name=NEW to start another, or delete the folder")
        if self.resume:
            check_resumable(run_config(self.run_dir), self.cfg, self.run_dir)

    def setup(self) -> None:
        if self.env.is_main:
            self.lock = RunLock(self.run_dir).acquire()
        self.check_folder()
        init_run = self.load_init_run()
        self.task = get_task(self.cfg.task)(self.cfg, self.data_root)
        self.result.unit = self.task.unit
        self.carry = isinstance(self.task, CarriesState) and self.task.carries_state
        if self.env.is_main:  # rank 0 prepares the data once; the others then load the cached folder
            self.task.setup()
        barrier(self.env)
        if not self.env.is_main:
            self.task.setup()
        if self.resume:
            self.task.check_artifacts(self.run_dir)
        torch.manual_seed(self.t.seed)
        random.seed(self.t.seed)
        np.random.seed(self.t.seed % 2**32)
        self.model = self.task.build_model().to(self.device)
        if init_run is not None:
            self.start_from(init_run)
        self.result.parameters = sum(p.numel() for p in self.model.parameters())
        self.optimizer = build_optimizer(self.t, self.model.parameters())
        self.schedule = Schedule(self.t)
        self.teacher_forcing = TeacherForcingSchedule.from_config(self.t)
        self.batch_size = self.pick_batch_size()
        self.setup_precision()
        if self.resume:
            self.restore()
        elif self.env.is_main:
            self.start_folder()
        self.net = self.model
        if self.env.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.loader = self.task.batches("train", self.batch_size, seed=self.t.seed, shuffle=True,
                                        num_replicas=self.env.world, rank=self.env.rank)
        self.schedule.apply(self.optimizer, self.step)
        self.started = True

    def load_init_run(self):
        """--init-from: the run to start from, checked against the config before any data is prepared."""
        return None if self.init_from is None else load_init_run(self.init_from, self.cfg)

    def start_from(self, run) -> None:
        start_from(run, self.task, self.model)
        self.init_source = {"run": str(run.path), "which": run.which, "step": run.step}
        self.note(f"initialised from {run.path} ({run.which} checkpoint, step {run.step}); the optimizer and the "
                  f"step start afresh")

    def pick_batch_size(self) -> int:
        """train.batch_size, or fewer when the train split has fewer sequences (said, not silent)."""
        size, world = self.t.batch_size, self.env.world
        available = self.task.num_sequences("train")
        if available < size:
            size = max(world, available - available % world)
            self.note(f"the train split has only {available} sequences: batches of {size} instead of "
                      f"train.batch_size {self.t.batch_size}")
        if available < world:
            raise UsageError(f"the train split has {available} sequences for {world} processes; use fewer")
        if size % world:
            raise UsageError(f"train.batch_size: {size} is not a multiple of the {world} processes")
        return size

    def setup_precision(self) -> None:
        precision = self.t.precision
        self.autocast_dtype = None
        self.scaler = None
        if precision == "fp32":
            return
        if self.device.type != "cuda":
            self.note(f"train.precision: {precision} autocast applies on CUDA only; training in fp32 on "
                      f"{self.device.type}")
            return
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        if precision == "fp16":  # fp16 gradients underflow without loss scaling; bf16 does not need it
            self.scaler = torch.amp.GradScaler("cuda")

    def start_folder(self) -> None:
        """A fresh run: config.yaml and the task's artifacts; stale TensorBoard events of a run that never
        saved a checkpoint are removed so that curves do not mix."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.run_dir / "tb", ignore_errors=True)
        self.write_config()
        self.task.save_artifacts(self.run_dir)

    def write_config(self) -> None:
        write_run_config(self.run_dir, self.cfg)

    def restore(self) -> None:
        """Model, optimizer, schedule, counters and RNG states from `last`."""
        ckpt = load_checkpoint(self.run_dir, "last")
        load_model_state(self.model, ckpt.model, ckpt.folder / "model.safetensors")
        try:
            self.optimizer.load_state_dict(ckpt.optimizer)
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"{ckpt.folder}: the optimizer state does not fit train.optimizer "
                                  f"{self.t.optimizer!r} ({err}); resume with the optimizer it was trained with"
                                  ) from None
        self.schedule.load_state_dict(ckpt.scheduler)
        if self.scaler is not None and ckpt.scaler:
            self.scaler.load_state_dict(ckpt.scaler)  # the fp16 loss scale it had reached, not the initial 2**16
        s = ckpt.state
        saved_world = int(s.get("world_size", 1))
        if saved_world != self.env.world:
            raise UsageError(f"{self.run_dir}: cannot resume with {self.env.world} process(es), the run was trained "
                             f"with {saved_world} (world size; the saved position in the epoch counts global "
                             f"batches of that many shards); resume under the same torchrun --nproc-per-node")
        self.step, self.epoch, self.batch_in_epoch = int(s["step"]), int(s["epoch"]), int(s["batch_in_epoch"])
        self.best_loss, self.bad_evals = s.get("best_loss"), int(s.get("bad_evals", 0))
        self.result.best_step, self.result.best_metrics = s.get("best_step"), s.get("best_metrics")
        self.result.last_metrics = s.get("metrics")
        self.init_source = s.get("init_from")
        self.saved_step = self.step
        if self.carry:
            self.state = carried.from_checkpoint(ckpt.carried, self.env, self.device)
        ckpt.restore_rng()
        if self.env.is_main:
            self.write_config()  # train settings may have changed (e.g. a longer train.max_steps)
        if self.step >= self.t.max_steps:
            self.note(f"the run is already at step {self.step} >= train.max_steps {self.t.max_steps}; raise "
                      f"it with --set train.max_steps=N to train further")

    # ---------------------------------------------------------------- checkpoints and evaluation

    def checkpoint_state(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "best_loss": self.best_loss, "best_step": self.result.best_step,
                "best_metrics": self.result.best_metrics, "bad_evals": self.bad_evals,
                "metrics": self.result.last_metrics, "world_size": self.env.world, "init_from": self.init_source}

    def save(self, which: str) -> None:
        # Every process takes part in gathering the carried state; only rank 0 writes.
        state = carried.checkpoint_tensors(self.state, self.env) if self.carry and which == "last" else None
        if self.env.is_main:
            save_checkpoint(self.run_dir, which, model=self.model, state=self.checkpoint_state(),
                            optimizer=self.optimizer, scheduler_state=self.schedule.state_dict(),
                            scaler_state=self.scaler.state_dict() if self.scaler else None, task=self.cfg.task,
                            carried=state)
        if which == "last":
            self.saved_step = self.step

    def evaluate(self) -> dict | None:
        """Validation metrics summed over all processes; None when the val split is empty."""
        sums = split_sums(self.task, self.model, "val", self.batch_size, self.device, self.t.eval_batches,
                          num_replicas=self.env.world, rank=self.env.rank)
        sums = all_reduce_dict(sums, self.env, self.device)
        if not sums["count"]:
            return None
        return self.task.metrics(sums)

    def after_eval(self, metrics: dict) -> bool:
        """Track the best model, log, step the plateau schedule; True when early stopping says stop."""
        self.result.last_metrics = metrics
        self.tb.scalars({f"val/{k}": v for k, v in metrics.items() if math.isfinite(v)}, self.step)
        self.schedule.observe(metrics["loss"])
        if self.best_loss is None or metrics["loss"] < self.best_loss:
            self.best_loss, self.bad_evals = metrics["loss"], 0
            self.result.best_step, self.result.best_metrics = self.step, metrics
            self.save("best")
        else:
            self.bad_evals += 1
        if self.env.is_main and self.tb.writer is not None:
            self.tb.text("samples", self.task.samples(self.model, self.device, NUM_SAMPLES, seed=self.step), self.step)
        return bool(self.t.early_stopping) and self.bad_evals >= self.t.early_stopping

    # ---------------------------------------------------------------- one step

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, batch) -> tuple[float, float, float]:
        """Forward, backward, clip, update. Returns (loss per item, grad norm before clipping, input steps read
        by all processes: characters for the LM, the throughput shown)."""
        record = self.tb.writer is not None and self.t.histogram_every and (self.step + 1) % self.t.histogram_every == 0
        self.net.train()
        # Gates are recorded by a one-pass forward only (scheduled sampling runs one step at a time).
        if record and isinstance(self.model, RecordsGates) and self.teacher_forcing.always:
            self.model.record_gates(True)
        with self.autocast():
            if self.carry:
                loss_sum, count, steps_read, state = self.task.loss_carried(self.net, batch, self.device, self.state)
                self.state = carried.detach(state)
            else:
                loss_sum, count, steps_read = self.task.loss(self.net, batch, self.device, **self.loss_options())
        totals = all_reduce_(torch.stack([loss_sum.detach().double(), count.double()]), self.env)
        global_sum, global_count = totals.tolist()
        loss = global_sum / max(global_count, 1.0)
        if not math.isfinite(loss):
            self.fail_non_finite("loss", loss)
        # Sum / global count, times world: DDP averages the gradients over processes, so each process's
        # share comes out as sum_r(grad of loss_sum_r) / global_count, the gradient of one process.
        objective = loss_sum * (self.env.world / max(global_count, 1.0))
        (self.scaler.scale(objective) if self.scaler else objective).backward()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if record:
            self.log_histograms(batch)
        limit = self.t.clip_grad_norm if self.t.clip_grad_norm > 0 else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit))
        if not math.isfinite(norm) and self.scaler is None:
            self.fail_non_finite("gradient norm", norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.batch_in_epoch += 1
        self.schedule.apply(self.optimizer, self.step)
        return loss, norm, steps_read * self.env.world  # shards are equal up to the last batch

    def loss_options(self) -> dict:
        """Scheduled sampling: the probability of this step, passed only when it is not pure teacher forcing
        (tasks that never feed their outputs back do not take it; the config refuses it for them)."""
        if self.teacher_forcing.always:
            return {}
        return {"teacher_forcing": self.teacher_forcing.probability(self.step)}

    def log_histograms(self, batch) -> None:
        self.tb.gradients(self.model, self.step + 1)
        if isinstance(self.model, RecordsGates):
            gates = self.model.gate_activations()
            mask = lengths_to_mask(batch.lengths, batch[0].shape[0])  # (T, B): real steps only
            self.tb.gates(gates, mask, self.step + 1)
            self.model.record_gates(False)

    def fail_non_finite(self, what: str, value: float) -> None:
        kept = (f"{self.run_dir / 'last'} (step {self.saved_step}) is kept" if self.saved_step is not None
                else "no checkpoint had been saved yet")
        raise TrainingError(f"non-finite {what} ({value}) at step {self.step + 1}: training stopped and {kept}; "
                            f"lower train.lr or set train.clip_grad_norm (now {self.t.clip_grad_norm})")

    # ---------------------------------------------------------------- the loop

    def set_status(self, status: str, **details) -> None:
        """status.json for `rnnkit runs`, once this session owns a started run folder (rank 0 only)."""
        if self.env.is_main and self.started:  # a session refused in setup leaves the folder as it was
            write_status(self.run_dir, status, **details)

    def on_signal(self, signum, frame) -> None:
        """Ctrl-C (SIGINT) or SIGTERM: finish the step, save `last`, stop (see `loop`)."""
        if self.interrupted:  # a second signal: stop now, without waiting for the step to finish
            raise self.stop_exception()
        self.interrupted, self.signal = True, signum

    def stop_exception(self) -> KeyboardInterrupt:
        return Terminated() if self.signal == signal.SIGTERM else KeyboardInterrupt()

    def run(self) -> TrainResult:
        handler_installed, previous = False, None
        self.tb = TensorBoard(None)
        self.bar = ProgressBar(0, 0, False, "")
        try:
            self.setup()
            if self.env.is_main:
                self.tb = TensorBoard(self.run_dir / "tb", purge_step=self.step if self.resume else None)
            if threading.current_thread() is threading.main_thread():
                previous = {sig: signal.signal(sig, self.on_signal) for sig in STOP_SIGNALS}
                handler_installed = True
            self.bar = ProgressBar(self.t.max_steps, self.step, self.env.is_main and not self.quiet,
                                   f"{self.cfg.run.name or self.run_dir.name}", self.result.unit, self.t.log_every)
            self.set_status("training")
            self.loop()
            self.finish()
            self.set_status("finished", stopped=self.result.stopped, step=self.step)
        except KeyboardInterrupt:
            self.set_status("interrupted", step=self.step)
            raise
        except Exception as err:
            self.set_status("failed", error=" ".join(str(err).split())[:300] or type(err).__name__, step=self.step)
            raise
        finally:
            if handler_installed:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            self.bar.stop()
            self.tb.close()
            if self.lock is not None:
                self.lock.release()
        return self.result

    def loop(self) -> None:
        start, chars, window_losses = time.perf_counter(), 0.0, []
        stop = self.step >= self.t.max_steps
        while not stop:
            self.loader.set_epoch(self.epoch, self.batch_in_epoch)
            if self.batch_in_epoch == 0:
                self.state = None  # an epoch's rows start from a zero state (a resumed one from the saved state)
            consumed = 0
            for batch in self.loader:
                consumed += 1
                loss, norm, count = self.train_step(batch)
                chars += count
                window_losses.append(loss)
                self.result.losses.append(loss)
                cps = chars / max(time.perf_counter() - start, 1e-9)
                self.bar.update(self.step, loss, cps)
                if self.step % self.t.log_every == 0:
                    mean = sum(window_losses) / len(window_losses)
                    window_losses = []
                    self.tb.scalars({"train/loss": mean, "train/bpc": mean / math.log(2),
                                     "train/lr": self.optimizer.param_groups[0]["lr"], "train/grad_norm": norm,
                                     "train/chars_per_sec": cps}, self.step)
                    if not self.teacher_forcing.always:  # the probability the step just taken used
                        self.tb.scalars({"train/teacher_forcing": self.teacher_forcing.probability(self.step - 1)},
                                        self.step)
                done = self.step >= self.t.max_steps
                if self.step % self.t.eval_every == 0 or done:
                    metrics = self.evaluate()
                    if metrics is not None and self.after_eval(metrics):
                        self.result.stopped, done = "early_stopping", True
                if self.step % self.t.checkpoint_every == 0 or done:
                    self.save("last")
                if self.on_step is not None:
                    self.on_step(self)
                if self.interrupt_requested():
                    self.save("last")
                    what = "terminated (SIGTERM)" if self.signal == signal.SIGTERM else "interrupted"
                    self.bar.print(f"{what}: saved {self.run_dir / 'last'} at step {self.step}; continue "
                                   f"with --resume")
                    raise self.stop_exception()
                if done:
                    stop = True
                    break
            else:
                if consumed == 0 and self.batch_in_epoch == 0:
                    raise TrainingError("the train split gives no batch at all; use a larger corpus")
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self.result.seconds = time.perf_counter() - start
        self.result.chars_per_sec = chars / max(self.result.seconds, 1e-9)

    def interrupt_requested(self) -> bool:
        """Ctrl-C on any process stops all of them at the same step (the flag is summed over processes)."""
        if not self.env.enabled:
            return self.interrupted
        flag = all_reduce_(torch.tensor([float(self.interrupted)], device=self.device), self.env)
        return bool(flag.item())

    def finish(self) -> None:
        """After the loop: a run without validation data keeps its final model as `best` too."""
        self.result.steps, self.result.epoch = self.step, self.epoch
        if self.result.best_metrics is None and self.step > 0:
            self.save("best")
        if self.env.is_main and not self.quiet:
            self.result.samples = self.task.samples(self.model, self.device, NUM_SAMPLES, seed=self.cfg.generate.seed)
        self.tb.flush()
