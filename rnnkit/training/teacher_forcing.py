"""Scheduled sampling (Bengio et al. 2015): how often the true previous symbol is fed, and the feeding itself.

Training starts with teacher forcing (the network reads the true previous symbol) and moves towards free
running (it reads its own previous prediction) as the probability `p` of feeding the truth decays:

    constant         p(step) = teacher_forcing
    linear           from teacher_forcing down to teacher_forcing_min over teacher_forcing_steps steps
    inverse_sigmoid  min + (start - min) * k / (k + exp(s / k)), Bengio et al.'s decay, with k chosen so
                     that the decay is halfway at s = teacher_forcing_steps / 2 (k ln k = steps / 2)

where s = step - teacher_forcing_delay: the decaying schedules first hold p = 1 (pure teacher forcing, the
one-pass forward) for teacher_forcing_delay steps, "start with teacher forcing, then switch".

Any task that feeds its outputs back (the character LM, multi-step forecasting) asks the schedule for
`probability(step)` and, at each time step, calls `mix_inputs(truth, prediction, p)` (rnnkit/models/feedback.py):
one coin per sequence of the batch decides which of the two it reads. The decision is not differentiated (as in
the paper), and
the draws come from the global RNG during training, so a resumed run repeats them exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnnkit.models.feedback import FEEDS

SCHEDULES = ("constant", "linear", "inverse_sigmoid")


def _inverse_sigmoid_k(steps: int) -> float:
    """The k >= 1 with k ln k = steps / 2 (bisection: k ln k is increasing for k >= 1)."""
    target = steps / 2
    low, high = 1.0, max(2.0, target + 1.0)
    for _ in range(100):
        mid = (low + high) / 2
        if mid * math.log(mid) < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


@dataclass(frozen=True)
class TeacherForcingSchedule:
    """The probability of feeding the true previous symbol, as a function of the optimizer step."""

    start: float = 1.0  # train.teacher_forcing
    kind: str = "constant"  # train.teacher_forcing_schedule: constant, linear or inverse_sigmoid
    end: float = 0.0  # train.teacher_forcing_min (linear and inverse_sigmoid)
    steps: int = 1000  # train.teacher_forcing_steps
    delay: int = 0  # train.teacher_forcing_delay: steps of pure teacher forcing before the decay
    feed: str = "sample"  # train.teacher_forcing_feed: what is fed instead of the truth

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"teacher forcing schedule must be one of {', '.join(SCHEDULES)}, not {self.kind!r}")
        if self.feed not in FEEDS:
            raise ValueError(f"teacher forcing feed must be one of {', '.join(FEEDS)}, not {self.feed!r}")
        if not (0.0 <= self.end <= 1.0 and 0.0 <= self.start <= 1.0) or self.steps < 1 or self.delay < 0:
            raise ValueError("teacher forcing probabilities must lie in [0, 1], steps be positive, delay >= 0")

    @classmethod
    def from_config(cls, train_cfg) -> TeacherForcingSchedule:
        """From the `train:` section (train.teacher_forcing, _schedule, _min, _steps, _delay, _feed)."""
        return cls(start=train_cfg.teacher_forcing, kind=train_cfg.teacher_forcing_schedule,
                   end=train_cfg.teacher_forcing_min, steps=train_cfg.teacher_forcing_steps,
                   delay=train_cfg.teacher_forcing_delay, feed=train_cfg.teacher_forcing_feed)

    @property
    def always(self) -> bool:
        """True for pure teacher forcing: callers keep their one-pass forward (no per-step loop)."""
        return self.kind == "constant" and self.start >= 1.0

    def probability(self, step: int) -> float:
        """p(step) in [0, 1]: the chance that a sequence reads the true previous symbol at this step."""
        if self.kind == "constant":
            return self.start
        if step < self.delay:
            return 1.0
        step -= self.delay
        if self.kind == "linear":
            progress = min(step / self.steps, 1.0)
            return self.start + (self.end - self.start) * progress
        k = _inverse_sigmoid_k(self.steps)
        exponent = step / k
        decay = 0.0 if exponent > 700 else k / (k + math.exp(exponent))  # exp overflows beyond ~709
        return self.end + (self.start - self.end) * decay
