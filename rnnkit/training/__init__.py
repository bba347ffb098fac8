"""Training: the loop (`train`), optimizers and schedules, progress and TensorBoard, torchrun support."""

from rnnkit.training.loop import Trainer, TrainResult, train
from rnnkit.training.optim import OPTIMIZERS, SCHEDULES, Schedule, build_optimizer

__all__ = ["train", "TrainResult", "Trainer", "OPTIMIZERS", "SCHEDULES", "Schedule",
           "build_optimizer"]
