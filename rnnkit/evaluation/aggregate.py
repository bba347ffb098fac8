"""Eval records of several runs grouped by config values (a sweep's points over their seeds): each metric's mean,
sample standard deviation and count per group, and the best group. Plain data; rnnkit/cli/tables.py renders it.

The records are what `rnnkit eval --json` prints (rnnkit.evaluation.split.evaluate_loaded); a forecast record's
per-horizon rows become `mae_15min`, `rmse_15min`, `mape_15min`, ... next to the averages.
"""

from __future__ import annotations

import difflib
import math
import statistics
from typing import Any

from rnnkit.config import Config, describe_fields
from rnnkit.errors import UsageError

NOT_METRICS = ("step", "items", "characters", "windows")  # counts in a record, the same for every seed
HORIZON_METRICS = ("mae", "rmse", "mape")
# The metric the best group is chosen by, and whether higher is better.
BEST_BY = {"lm": ("bpc", False), "classify": ("accuracy", True), "forecast": ("mae", False)}


def check_group_keys(keys: list[str] | tuple[str, ...]) -> None:
    """Raise UsageError naming each `--group-by` key that is not a dotted config key."""
    known = [key for key, _, _ in describe_fields()]
    problems = []
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            problems.append(f"--group-by {key}: unknown key" + (f"; did you mean {close[0]}?" if close else
                                                                 "; use a dotted config key such as model.cell"))
    if problems:
        raise UsageError("; ".join(problems))


def group_values(cfg: Config, keys: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """{dotted key: the run's value} for the `--group-by` keys."""
    check_group_keys(keys)
    values = {}
    for key in keys:
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part)
        values[key] = node
    return values


def record_metrics(record: dict) -> dict[str, float]:
    """The metrics of one eval record: its top-level numbers (loss, bpc, accuracy, mae...) and, for a forecast,
    MAE/RMSE/MAPE of each horizon as `mae_15min`..."""
    out = {key: float(value) for key, value in record.items()
           if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in NOT_METRICS}
    for row in record.get("horizons", []):
        for key in HORIZON_METRICS:
            out[f"{key}_{row['minutes']}min"] = float(row[key])
    return out


def summarise(values: list[float]) -> dict[str, float | int | None]:
    """mean, sample standard deviation (n - 1; None for a single value) and n."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) != len(values):  # one diverged seed makes the group's mean meaningless: say so
        return {"mean": math.nan, "std": None, "n": len(values)}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def aggregate(records: list[dict], groups: list[dict[str, Any]], best_by: str | None = None) -> dict:
    """Group `records[i]` by `groups[i]` (its config values): {"task", "split", "group_by", "best_by",
    "higher_is_better", "rows": [{"group", "n", "runs", "metrics": {name: {"mean", "std", "n"}}, "best"}]}.

    Rows keep the order in which their groups first appear. The best row has the best mean of `best_by`
    (default: bpc for lm, accuracy for classify, mae for forecast). Raises UsageError for records of
    different tasks or splits, or no records.
    """
    if not records:
        raise UsageError("nothing to aggregate: no eval records")
    if len(records) != len(groups):
        raise ValueError("one group per record")
    for field in ("task", "split"):
        found = list(dict.fromkeys(r[field] for r in records))
        if len(found) > 1:
            raise UsageError(f"--group-by: the runs mix {field}s ({', '.join(found)}); aggregate one at a time")
    task = records[0]["task"]
    metric, higher = BEST_BY.get(task, ("loss", False))
    if best_by is not None:
        metric, higher = best_by, best_by in ("accuracy",)
    rows: dict[tuple, dict] = {}
    for record, group in zip(records, groups, strict=True):
        key = tuple((k, repr(v)) for k, v in group.items())
        row = rows.setdefault(key, {"group": dict(group), "runs": [], "values": {}})
        row["runs"].append(record["run"])
        for name, value in record_metrics(record).items():
            row["values"].setdefault(name, []).append(value)
    out = [{"group": row["group"], "n": len(row["runs"]), "runs": row["runs"],
            "metrics": {name: summarise(values) for name, values in row["values"].items()}, "best": False}
           for row in rows.values()]
    scored = [(row["metrics"][metric]["mean"], index) for index, row in enumerate(out)
              if metric in row["metrics"] and math.isfinite(row["metrics"][metric]["mean"])]
    if scored:
        best = max(scored, key=lambda p: (p[0], -p[1])) if higher else min(scored)  # a tie: the first row
        out[best[1]]["best"] = True
    return {"task": task, "split": records[0]["split"], "group_by": list(groups[0]), "best_by": metric,
            "higher_is_better": higher, "rows": out}
