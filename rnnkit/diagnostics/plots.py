"""Gradient reports as files: a matplotlib PNG of the profiles, TensorBoard events."""

from __future__ import annotations

import math
from pathlib import Path

from rnnkit.diagnostics.figures import pyplot, save_figure
from rnnkit.diagnostics.gradients import GradReport
from rnnkit.errors import UsageError


def plot_profiles(reports: list[GradReport], path: str | Path) -> Path:
    """Write a PNG: ||dL/dh_t|| (log scale) against distance from the loss, one line per target and layer."""
    plt = pyplot("--plot")

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"--plot {path}: expected a .png file name")
    fig, ax = plt.subplots(figsize=(8, 5))
    for report in reports:
        for p in report.layers:
            layer = f" {p.name}" if report.num_layers > 1 or "." in p.name else ""
            name = report.label if report.label == report.cell else f"{report.label} ({report.cell})"
            ratio = "underflow" if p.attenuation is None else f"{p.attenuation:.1e}"
            points = [(d, n) for d, n in enumerate(p.norms) if n > 0]  # log axis: skip underflow
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=f"{name}{layer}: {p.verdict}, loss/far {ratio}")
    ax.set_yscale("log")
    ax.set_xlabel("distance from the loss (steps back in time)")
    ax.set_ylabel("mean ||dL/dh_t||")
    loss_at = {r.loss_at for r in reports}
    what = "loss at the last step" if loss_at == {"last"} else "loss summed over steps"
    ax.set_title(f"gradient through time ({what})")
    ax.grid(True, which="major", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    return save_figure(fig, path, "--plot", dpi=120)


# ---------------------------------------------------------------- TensorBoard


def write_tensorboard(report: GradReport, logdir: str | Path) -> Path:
    """Scalars (the profile, one point per distance; clipping norms) and histograms (gradients, gates)."""
    from torch.utils.tensorboard import SummaryWriter

    logdir = Path(logdir)
    writer = SummaryWriter(log_dir=str(logdir))
    try:
        for p in report.layers:
            for d, n in enumerate(p.norms):
                if n > 0:  # TensorBoard charts linear values: log10 keeps decades readable
                    writer.add_scalar(f"grad_through_time/{p.name}/log10_norm", math.log10(n), d)
                    writer.add_scalar(f"grad_through_time/{p.name}/norm", n, d)
        writer.add_scalar("clip/global_norm_before", report.clip.before_mean, 0)
        writer.add_scalar("clip/global_norm_after", report.clip.after_mean, 0)
        for tag, values in report.samples.items():
            if values.numel():
                writer.add_histogram(tag, values.flatten(), 0)
    finally:
        writer.close()
    return logdir
