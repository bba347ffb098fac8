"""Sweeps: a grid of config values times seeds, each point an ordinary run folder under runs/<name>/; points
trained, resumed or skipped (runner.py), their TensorBoard hparams (hparams.py) and the seed-aggregated table
(summary.py)."""

from rnnkit.sweeps.runner import Outcome, plan_threads, run_sweep
from rnnkit.sweeps.spec import Point, Sweep, load_sweep, parse_grid, sweep_files
from rnnkit.sweeps.summary import sweep_summary

__all__ = ["Outcome", "Point", "Sweep", "load_sweep", "parse_grid", "plan_threads", "run_sweep", "sweep_files",
           "sweep_summary"]
