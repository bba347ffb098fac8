"""The table at the end of a sweep: its finished points evaluated on a split and grouped by their grid values
(seeds aggregated, rnnkit.evaluation.aggregate)."""

from __future__ import annotations

from pathlib import Path

from rnnkit.evaluation.aggregate import aggregate
from rnnkit.sweeps.runner import Outcome
from rnnkit.sweeps.spec import SEED_KEY


def sweep_summary(outcomes: list[Outcome], split: str = "val", which: str = "best", device: str = "auto",
                  data_root: str | Path | None = None) -> dict | None:
    """rnnkit.evaluation.aggregate.aggregate of the finished points, one row per grid point; None when no point
    has finished."""
    from rnnkit.runs.loaded import load

    records, groups = [], []
    for outcome in outcomes:
        if not outcome.done:
            continue
        run = load(outcome.path, which=which, device=device, data_root=data_root)
        records.append(run.evaluate(split))
        groups.append({key: value for key, value in outcome.point.values.items() if key != SEED_KEY})
    return aggregate(records, groups) if records else None
