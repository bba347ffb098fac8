"""A trained run, loaded once: the object every command that uses a run works on, and rnnkit's Python API.

    >>> import rnnkit
    >>> run = rnnkit.load("runs/quickstart")          # best checkpoint, on CUDA when there is one
    >>> run.step, run.metrics["bpc"]
    >>> run.generate(prompt="The ", num=3, temperature=0.8)   # list of Sample(text, log_prob, length, finished)
    >>> run.evaluate("test")                          # the record `rnnkit eval --json` prints
    >>> run.score("Any text.\n").bpc                  # TextScore(characters, bits, loss, bpc, perplexity...)

The config, the task's artifacts and the checkpoint are read in one consistent read: the step and metrics
reported belong to the weights in `model`, even while a `train` in another process keeps saving. The data is
prepared (or found in the cache) only when something asks for it (`run.data()`), once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit.config import Config
from rnnkit.device import pick_device
from rnnkit.errors import CheckpointError, UsageError
from rnnkit.runs.checkpoint import MODEL_FILE, WHICH, has_checkpoint, load_checkpoint, load_model_state
from rnnkit.runs.folder import resolve_run, run_config
from rnnkit.tasks import get_task
from rnnkit.tasks.base import Task


@dataclass
class LoadedRun:
    """A run folder's config, task and model (eval mode, on `device`), and which checkpoint they come from."""

    path: Path
    cfg: Config
    task: Task  # with the run's artifacts (vocabulary, class names...), no data
    model: nn.Module
    device: torch.device
    which: str  # "best" or "last": the checkpoint actually loaded
    step: int  # the training step of these weights
    metrics: dict | None  # their validation metrics as recorded by training (None before any evaluation)
    data_root: str | Path | None = None
    _data: Task | None = field(default=None, repr=False)

    @property
    def vocab(self):
        """The character vocabulary of a language model (None for tasks without one)."""
        return getattr(self.task, "vocab", None)

    def data(self) -> Task:
        """The task with its data prepared as the run's config says, checked against the run's artifacts.

        Prepared once per LoadedRun; every evaluation of the run shares it.
        """
        if self._data is None:
            task = get_task(self.cfg.task)(self.cfg, self.data_root).setup()
            task.check_artifacts(self.path)
            self._data = task
        return self._data

    def evaluate(self, split: str = "val", batch_size: int | None = None) -> dict:
        """Metrics on a split: the record `rnnkit eval --json` prints (see rnnkit.evaluation.split)."""
        from rnnkit.evaluation.split import evaluate_loaded

        return evaluate_loaded(self, split, batch_size)

    def generate(self, prompt: str = "", stop: Sequence[str] = (), **options: Any) -> list:
        """Samples of a language model; options are the `generate:` config keys (temperature, beam, num...),
        with the run's own `generate:` section as defaults; `stop`: strings that end a sample (kept in it).
        Returns a list of rnnkit.generation.generate.Sample."""
        from rnnkit.generation.generate import generate_from_loaded

        return generate_from_loaded(self, {"prompt": prompt, **options}, stop=tuple(stop)).samples

    def score(self, text: str, per_char: bool = False, replace_unknown: str | None = None, clean: bool = False):
        """Bits per character, perplexity and count of the characters of `text` under a language model, the state
        carried through it as `rnnkit score` does (same options). Returns rnnkit.evaluation.score.TextScore."""
        from rnnkit.evaluation.score import score_text

        return score_text(self, text, per_char=per_char, replace_unknown=replace_unknown, clean=clean)

    def predict(self, inputs=None, **options: Any):
        """A classifier's Prediction of a text (a list of them for a list of texts), or a forecaster's Forecast
        from a file, from counts with slot=, or from split=, day=, slot=; options as `rnnkit predict`
        (top, replace_unknown...). See rnnkit.inference.predict."""
        from rnnkit.inference.predict import predict

        return predict(self, inputs, **options)


def load(run: str | Path | None = None, which: str = "best", device: str | torch.device = "auto", *,
         runs_dir: str | Path = "runs", data_root: str | Path | None = None) -> LoadedRun:
    """Load a trained run: `run` is its folder (None: the most recent run under `runs_dir`).

    which: "best" (falls back to "last" when the run never evaluated) or "last". device: auto, cpu, cuda.
    Raises CheckpointError (missing, corrupt, foreign files) or UsageError (bad which or device).
    """
    if which not in WHICH:
        raise UsageError(f"--which: {which!r} is not one of {', '.join(WHICH)}")
    path = resolve_run(run, runs_dir)
    torch_device = pick_device(device)
    cfg = run_config(path)
    task = get_task(cfg.task).from_run(cfg, path)
    if which == "best" and not has_checkpoint(path, "best"):
        which = "last"
    ckpt = load_checkpoint(path, which, with_optimizer=False)
    if ckpt.state.get("task", cfg.task) != cfg.task:
        raise CheckpointError(f"{ckpt.folder}: a checkpoint of task {ckpt.state.get('task')!r} in a run of "
                              f"task {cfg.task!r}")
    model = task.build_model()
    load_model_state(model, ckpt.model, ckpt.folder / MODEL_FILE)
    model.to(torch_device).eval()
    return LoadedRun(path, cfg, task, model, torch_device, ckpt.which, ckpt.step, ckpt.metrics, data_root)
