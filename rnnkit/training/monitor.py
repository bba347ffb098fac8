"""What a run shows while it trains: a progress bar (or plain lines) on stderr, TensorBoard scalars, histograms
and text. The final summary table is rendered by the CLI (rnnkit/cli/tables.py)."""

from __future__ import annotations

import contextlib
import datetime
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

# stderr keeps stdout free for machine-readable output; a fresh Console follows sys.stderr redirections.
console = Console(stderr=True, highlight=False)


class ProgressBar:
    """Step, loss, input steps per second (characters for the LM) and ETA; does nothing when disabled (quiet,
    or not rank 0).

    In a terminal: a live bar. Otherwise (stderr to a log file, a batch job): one plain line every
    `every` steps and at the last step, which a log keeps and `tail -f` shows.
    """

    def __init__(self, total: int, start: int, enabled: bool, title: str, unit: str = "char", every: int = 100):
        self.progress = None
        self.plain = enabled and not console.is_terminal
        self.total, self.title, self.unit, self.every = total, title, unit, max(1, every)
        self.started, self.start_step = time.perf_counter(), start
        if not enabled or self.plain:
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn(f"{{task.fields[cps]}} {unit}/s"),
            TimeRemainingColumn(), console=console, transient=False,
        )
        self.task = self.progress.add_task(title, total=total, completed=start, loss="-", cps="-")
        self.progress.start()

    def update(self, step: int, loss: float, chars_per_sec: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=f"{loss:.4f}", cps=f"{chars_per_sec:,.0f}")
        elif self.plain and (step % self.every == 0 or step == self.total):
            console.print(self.line(step, loss, chars_per_sec), markup=False, highlight=False, soft_wrap=True)

    def line(self, step: int, loss: float, chars_per_sec: float) -> str:
        """`quickstart step 300/1500 loss 0.6931 12,345 char/s eta 0:00:42`: the plain progress line."""
        done = step - self.start_step
        rate = done / max(time.perf_counter() - self.started, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        return (f"{self.title} step {step}/{self.total} loss {loss:.4f} {chars_per_sec:,.0f} {self.unit}/s "
                f"eta {datetime.timedelta(seconds=round(eta))}")

    def print(self, message: str) -> None:
        if self.progress is not None:
            self.progress.console.print(message)
        elif self.plain:
            console.print(message, markup=False, highlight=False)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class TensorBoard:
    """Scalars, histograms of gradients and gate activations, and text samples in `<run>/tb/`."""

    def __init__(self, folder: Path | None, purge_step: int | None = None):
        self.writer = None
        if folder is not None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a crashed session wrote after the checkpoint we resume from.
            self.writer = SummaryWriter(str(folder), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def gradients(self, model: nn.Module, step: int) -> None:
        """Histogram of every parameter's gradient (called before clipping)."""
        if self.writer is None:
            return
        for name, param in model.named_parameters():
            if param.grad is not None:
                self.writer.add_histogram(f"grad/{name}", param.grad.detach().float().cpu(), step)

    def gates(self, gates: dict[str, torch.Tensor], mask: torch.Tensor | None, step: int) -> None:
        """Histogram of each gate's activations on real (unpadded) steps; gates are (T, B, H), mask (T, B)."""
        if self.writer is None:
            return
        for name, values in gates.items():
            if mask is not None and values.shape[:2] == mask.shape:
                values = values[mask.to(values.device)]  # (N real steps, H)
            self.writer.add_histogram(f"gates/{name}", values.detach().float().cpu(), step)

    def text(self, tag: str, lines: list[str], step: int) -> None:
        if self.writer is not None and lines:
            # Markdown: a code block keeps spaces and characters such as * and _ as they are.
            body = "\n\n".join(f"    {line}" for line in lines)
            self.writer.add_text(tag, body, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None
