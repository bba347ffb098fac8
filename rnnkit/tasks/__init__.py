"""The task registry: one entry per `task:` value. What a task provides is the Task protocol in base.py."""

from __future__ import annotations

from rnnkit.errors import UsageError
from rnnkit.tasks.classify import ClassifyTask
from rnnkit.tasks.forecast import ForecastTask
from rnnkit.tasks.lm import LanguageModelTask

TASKS: dict[str, type] = {"lm": LanguageModelTask, "classify": ClassifyTask, "forecast": ForecastTask}


def get_task(name: str) -> type:
    """The task class registered under `name`."""
    try:
        return TASKS[name]
    except KeyError:
        raise UsageError(f"task: {name!r} cannot be trained yet; available: {', '.join(TASKS)}") from None


__all__ = ["TASKS", "get_task", "ClassifyTask", "ForecastTask", "LanguageModelTask"]
