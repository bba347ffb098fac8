"""Fine-tuning: a new run that starts from another run's weights (`rnnkit train CONFIG --init-from RUN`).

The other run must be of the same task with the same architecture (the model keys below), and its artifacts
(a language model's vocabulary, a classifier's classes, a forecaster's normaliser...) those of the data the
config prepares. Only the weights are taken: the optimizer, schedule and step start afresh at 0.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from rnnkit.data.vocab import describe_char
from rnnkit.errors import CheckpointError, UsageError
from rnnkit.runs.checkpoint import MODEL_FILE, load_model_state
from rnnkit.runs.loaded import LoadedRun, load

# Model keys that decide the weights' shapes or what they compute; the others (dropout, backend, forget_bias:
# an initial value) may differ from the run fine-tuned.
ARCHITECTURE_KEYS = ("cell", "hidden_size", "num_layers", "embedding_dim", "nonlinearity", "bias", "bidirectional",
                     "forecaster")


def load_init_run(path: str | Path, cfg) -> LoadedRun:
    """The run to start from (its best weights, else its last), checked against the config's task and model
    before any data is prepared: UsageError naming the task or the model key that differs."""
    try:
        run = load(path, which="best", device="cpu")
    except CheckpointError as err:
        raise UsageError(f"--init-from: {err}") from None
    if run.cfg.task != cfg.task:
        raise UsageError(f"--init-from {path}: a run of task {run.cfg.task}, and this config trains task {cfg.task}; "
                         f"start from a run of task {cfg.task}")
    for key in ARCHITECTURE_KEYS:
        theirs, ours = getattr(run.cfg.model, key), getattr(cfg.model, key)
        if theirs != ours:
            raise UsageError(f"--init-from {path}: model.{key} is {theirs!r} in that run and {ours!r} here; "
                             f"fine-tuning keeps the architecture (set model.{key}: {theirs!r})")
    return run


def start_from(run: LoadedRun, task, model: nn.Module) -> None:
    """Copy the run's weights into `model` once the task's data is ready: UsageError when the artifacts differ
    (for a language model, the characters only one vocabulary has)."""
    if run.cfg.task == "lm":
        check_same_vocabulary(run, task.vocab)
    else:
        try:
            task.check_artifacts(run.path)
        except CheckpointError as err:
            raise UsageError(f"--init-from {run.path}: {err}") from None
    load_model_state(model, run.model.state_dict(), run.path / run.which / MODEL_FILE)


def check_same_vocabulary(run: LoadedRun, vocab) -> None:
    if run.vocab == vocab:
        return
    theirs, ours = set(run.vocab.chars), set(vocab.chars)
    parts = [f"{label} {', '.join(describe_char(c) for c in sorted(chars)[:8])}" + (" ..." if len(chars) > 8 else "")
             for label, chars in (("only in that run:", theirs - ours), ("only in this data:", ours - theirs)) if chars]
    differ = "; ".join(parts) or "the same characters in another order"
    raise UsageError(f"--init-from {run.path}: the vocabulary differs ({differ}); fine-tuning needs the same "
                     f"characters: prepare this data with the same data.charset and data.lowercase, or pick a run "
                     f"trained on the same characters")
