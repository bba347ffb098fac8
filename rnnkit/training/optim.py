"""The one place optimizers and learning-rate schedules are built (registries keyed by the config's names)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from rnnkit.errors import CheckpointError, ConfigError

# name -> builder(params, train_cfg): the keys are the values `train.optimizer` accepts.
OPTIMIZERS: dict[str, Callable] = {
    "adam": lambda params, t: torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay),
    "adamw": lambda params, t: torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay),
    "sgd": lambda params, t: torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay),
    "rmsprop": lambda params, t: torch.optim.RMSprop(params, lr=t.lr, momentum=t.momentum,
                                                     weight_decay=t.weight_decay),
}


def build_optimizer(train_cfg, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    try:
        builder = OPTIMIZERS[train_cfg.optimizer]
    except KeyError:
        raise ConfigError(f"train.optimizer: {train_cfg.optimizer!r} is not one of {', '.join(OPTIMIZERS)}") from None
    return builder(list(params), train_cfg)


def _constant(step: int, s: Schedule) -> float:
    return 1.0


def _cosine(step: int, s: Schedule) -> float:
    span = max(1, s.max_steps - s.warmup)
    progress = min(1.0, max(0.0, (step - s.warmup) / span))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _step_decay(step: int, s: Schedule) -> float:
    return s.gamma ** (max(0, step - s.warmup) // s.step_size)


def _plateau(step: int, s: Schedule) -> float:
    return s.plateau_factor  # changed by `observe` after validation passes, not by the step count


# name -> factor(step, schedule) multiplying train.lr after warm-up: the values `train.schedule` accepts.
SCHEDULES: dict[str, Callable[[int, Schedule], float]] = {
    "none": _constant, "cosine": _cosine, "step": _step_decay, "plateau": _plateau,
}


class Schedule:
    """Linear warm-up, then one of SCHEDULES; the state is a few numbers (JSON in the checkpoint).

    Written by hand rather than with torch.optim.lr_scheduler so that warm-up combines with every kind,
    reduce-on-plateau included, and the state holds no functions.
    """

    def __init__(self, train_cfg):
        if train_cfg.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule: {train_cfg.schedule!r} is not one of {', '.join(SCHEDULES)}")
        self.kind, self.base_lr = train_cfg.schedule, train_cfg.lr
        self.warmup, self.max_steps = train_cfg.warmup_steps, train_cfg.max_steps
        self.step_size, self.gamma = train_cfg.step_size, train_cfg.gamma
        # Not in the config yet: evaluations without improvement before a plateau decay.
        self.patience = int(getattr(train_cfg, "plateau_patience", 2))
        self.plateau_factor, self.plateau_best, self.plateau_bad = 1.0, math.inf, 0

    def factor(self, step: int) -> float:
        """LR multiplier for the optimizer step that follows `step` completed steps."""
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        return warm * SCHEDULES[self.kind](step, self)

    def lr(self, step: int) -> float:
        return self.base_lr * self.factor(step)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def observe(self, val_loss: float) -> None:
        """Reduce on plateau: multiply by gamma after `patience` evaluations without improvement."""
        if self.kind != "plateau":
            return
        if val_loss < self.plateau_best - 1e-4 * abs(self.plateau_best if math.isfinite(self.plateau_best) else 0):
            self.plateau_best, self.plateau_bad = val_loss, 0
        else:
            self.plateau_bad += 1
            if self.plateau_bad > self.patience:
                self.plateau_factor *= self.gamma
                self.plateau_bad = 0

    def state_dict(self) -> dict:
        best = self.plateau_best if math.isfinite(self.plateau_best) else None
        return {"kind": self.kind, "plateau_factor": self.plateau_factor, "plateau_best": best,
                "plateau_bad": self.plateau_bad}

    def load_state_dict(self, state: dict | None) -> None:
        if not state:
            return
        if not isinstance(state, dict) or "plateau_factor" not in state:
            raise CheckpointError("the checkpoint's scheduler state is damaged")
        self.plateau_factor = float(state["plateau_factor"])
        best = state.get("plateau_best")
        self.plateau_best = math.inf if best is None else float(best)
        self.plateau_bad = int(state.get("plateau_bad", 0))
