"""Terminal rendering of `inspect-grads` reports: rich tables with sparklines of ||dL/dh_t|| through time."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from rnnkit.diagnostics.gradients import GradReport, LayerProfile

BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 60  # fits one screen line next to the layer name
VERDICT_STYLE = {"vanishing": "bold blue", "exploding": "bold red", "stable": "bold green", "undetermined": "dim"}


# ---------------------------------------------------------------- sparklines


def log_range(reports: list[GradReport]) -> tuple[float, float]:
    """(lo, hi) of log10 of every positive norm: one scale for all sparklines, so lines compare."""
    logs = [math.log10(n) for r in reports for p in r.layers for n in p.norms if n > 0]
    return (min(logs), max(logs)) if logs else (0.0, 1.0)


def sparkline(profile: LayerProfile, lo: float, hi: float, width: int = SPARK_WIDTH) -> str:
    """log10 ||dL/dh_t|| in time order (left: first step, right: the loss), resampled to `width` columns.

    A norm that underflowed to 0 is drawn as a space.
    """
    norms = list(reversed(profile.norms[:profile.span + 1]))  # distance -> time order
    if not norms:
        return ""
    n = len(norms)
    width = min(width, n)
    cols = [norms[min(n - 1, i * n // width)] for i in range(width)]  # nearest step, no averaging
    scale = (len(BARS) - 1) / (hi - lo) if hi > lo else 0.0
    return "".join(" " if v <= 0 else BARS[round((math.log10(v) - lo) * scale)] for v in cols)


def _g(value: float | None, fmt: str = ".3g") -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


# ---------------------------------------------------------------- terminal


def render(report: GradReport, console: Console, scale: tuple[float, float]) -> None:
    """Print one report: profile (sparkline, fit, verdict), clipping, parameter norms, gates, spectra."""
    lo, hi = scale
    title = (f"{report.label}: {report.cell} {report.num_layers}x{report.hidden_size}, loss at {report.loss_at}, "
             f"{report.batches} batch(es) of up to {report.seq_len} steps, loss {report.loss:.3f}")
    table = Table(title=title, title_justify="left")
    for name in ("layer", "verdict", "loss/far", "x/step", "R²", "span"):
        table.add_column(name, justify="left" if name in ("layer", "verdict") else "right")
    for p in report.layers:
        style = VERDICT_STYLE.get(p.verdict, "")
        ratio = "underflow" if p.attenuation is None else f"{p.attenuation:.2e}"
        table.add_row(p.name, f"[{style}]{p.verdict}[/]", ratio, _g(p.step_factor), _g(p.fit_r2, ".2f"),
                      str(p.span))
    console.print(table)
    # The sparkline gets its own line, as wide as the terminal allows, on the scale shared by all targets.
    console.print(f"  log10 ||dL/dh_t|| from t = 0 (left) to the loss (right), scale 1e{lo:.0f} .. 1e{hi:.0f}",
                  markup=False, highlight=False)
    for p in report.layers:
        width = max(10, min(SPARK_WIDTH, console.width - len(p.name) - 6))
        console.print(f"  {p.name}  {sparkline(p, lo, hi, width)}", markup=False, highlight=False, soft_wrap=True)
    for p in report.layers:
        console.print(f"  {p.name}: {p.evidence}", markup=False, highlight=False, soft_wrap=True)
    c = report.clip
    limit = f"clip at {c.max_norm:g}" if c.max_norm > 0 else "no clipping configured"
    console.print(f"  global grad norm ({limit}): before {c.before_mean:.3g} (max {c.before_max:.3g}), "
                  f"after {c.after_mean:.3g} (max {c.after_max:.3g}); clipped {c.clipped_batches}/{c.batches} "
                  f"batches", markup=False, highlight=False, soft_wrap=True)
    console.print(_params_table(report))
    if report.gates:
        console.print(_gates_table(report))
    console.print(_spectra_table(report))


def _params_table(report: GradReport) -> Table:
    table = Table(title="parameter gradient norms (training objective, before clipping)", title_justify="left")
    for name, justify in (("parameter", "left"), ("shape", "left"), ("mean", "right"), ("max", "right")):
        table.add_column(name, justify=justify)
    for p in report.params:
        table.add_row(p.name, "x".join(map(str, p.shape)), f"{p.norm:.3g}", f"{p.max:.3g}")
    return table


def _gates_table(report: GradReport) -> Table:
    table = Table(title="gates (real steps only; saturated = outside [0.05, 0.95], tanh on (a+1)/2, "
                        "relu: dead)", title_justify="left")
    for name in ("gate", "kind", "mean", "std", "low", "high", "saturated"):
        table.add_column(name, justify="left" if name in ("gate", "kind") else "right")
    for g in report.gates:
        table.add_row(g.name, g.kind, _g(g.mean), _g(g.std), _g(g.frac_low, ".1%"), _g(g.frac_high, ".1%"),
                      _g(g.saturated, ".1%"))
    return table


def _spectra_table(report: GradReport) -> Table:
    table = Table(title="recurrent matrices (spectral radius = max |eigenvalue|)", title_justify="left")
    for name in ("matrix", "shape", "radius", "top singular values"):
        table.add_column(name, justify="right" if name == "radius" else "left")
    for s in report.spectra:
        table.add_row(s.name, "x".join(map(str, s.shape)), _g(s.spectral_radius),
                      ", ".join(f"{v:.3g}" for v in s.singular_values))
    return table


# ---------------------------------------------------------------- PNG
