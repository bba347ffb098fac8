"""Seed aggregation (`eval --group-by`, the end of `rnnkit sweep`): the numbers equal a hand computation over the
runs' own `eval --json` records."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.errors import UsageError
from rnnkit.evaluation.aggregate import aggregate, record_metrics

LM = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 80, "max_len": 30},
    "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4},
    "train": {"batch_size": 16, "max_steps": 6, "eval_every": 3, "checkpoint_every": 3, "device": "cpu"},
}
FORECAST = {
    "task": "forecast",
    "data": {"source": "metro-synthetic", "stations": 4},
    "model": {"cell": "gru", "hidden_size": 8},
    "train": {"batch_size": 16, "max_steps": 6, "eval_every": 3, "checkpoint_every": 3, "device": "cpu"},
}


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    for name, cfg in (("lm", LM), ("forecast", FORECAST)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return CliRunner()


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.strip().splitlines()]


def _hand(records: list[dict], metric_of) -> dict:
    values = [metric_of(r) for r in records]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values), "n": len(values)}


def _check_rows(rows: list[dict], records: list[dict], key: str, metrics: dict) -> None:
    """Every metric of every row against mean/stdev computed here from the runs' own records."""
    assert sum(row["n"] for row in rows) == len(records)
    for row in rows:
        mine = [r for r in records if r["run"] in row["runs"]]
        assert len(mine) == row["n"] == 2 and all(f"{key}={row['group'][f'model.{key}']}," in r["run"]
                                                  for r in mine)
        assert set(row["metrics"]) == set(metrics)
        for name, metric_of in metrics.items():
            hand = _hand(mine, metric_of)
            got = row["metrics"][name]
            assert got["n"] == 2 and got["mean"] == pytest.approx(hand["mean"], rel=1e-12), name
            assert got["std"] == pytest.approx(hand["std"], rel=1e-9, abs=1e-15), name


def test_lm_sweep_and_eval_group_by_equal_a_hand_computation_over_eval_json(runner):
    sweep = runner.invoke(app, ["sweep", "lm.yaml", "--grid", "model.cell=rnn,gru", "--seeds", "2", "--name", "agg",
                                "--split", "test", "--json", "-q"])
    assert sweep.exit_code == 0, sweep.output
    runs = [f"runs/agg/cell={c},seed={s}" for c in ("rnn", "gru") for s in (0, 1)]
    single = runner.invoke(app, ["eval", *runs, "--split", "test", "--json"])
    assert single.exit_code == 0, single.output
    records = _lines(single.stdout)
    grouped = runner.invoke(app, ["eval", *runs, "--split", "test", "--json", "--group-by", "model.cell"])
    assert grouped.exit_code == 0, grouped.output
    rows = _lines(grouped.stdout)
    assert [r["group"] for r in rows] == [{"model.cell": "rnn"}, {"model.cell": "gru"}]
    metrics = {name: (lambda r, name=name: r[name]) for name in ("loss", "bpc", "perplexity", "penultimate_acc")}
    _check_rows(rows, records, "cell", metrics)
    # the best row is the lower mean bpc, and only it
    best = min(rows, key=lambda r: r["metrics"]["bpc"]["mean"])
    assert [r["best"] for r in rows] == [r is best for r in rows] and rows[0]["best_by"] == "bpc"
    # the sweep printed the same rows at its end
    assert _lines(sweep.stdout) == rows


def test_forecast_rows_have_every_horizon_each_equal_to_a_hand_computation(runner):
    sweep = runner.invoke(app, ["sweep", "forecast.yaml", "--grid", "model.forecaster=direct,seq2seq", "--seeds",
                                "2", "--name", "fc", "-q"])
    assert sweep.exit_code == 0, sweep.output
    for heading in ("MAE on val", "RMSE on val", "MAPE on val", "15 min", "60 min", "* best mae"):
        assert heading in sweep.stdout, heading
    single = runner.invoke(app, ["eval", "runs/fc/forecaster=direct,seed=0", "runs/fc/forecaster=direct,seed=1",
                                 "runs/fc/forecaster=seq2seq,seed=0", "runs/fc/forecaster=seq2seq,seed=1",
                                 "--split", "test", "--json"])
    records = _lines(single.stdout)
    grouped = runner.invoke(app, ["eval", *(r["run"] for r in records), "--split", "test", "--json", "--group-by",
                                  "model.forecaster"])
    assert grouped.exit_code == 0, grouped.output
    rows = _lines(grouped.stdout)
    metrics = {"loss": lambda r: r["loss"]}
    for measure in ("mae", "rmse", "mape"):
        metrics[measure] = lambda r, m=measure: r[m]
        for k, minutes in enumerate((15, 30, 45, 60)):
            metrics[f"{measure}_{minutes}min"] = lambda r, m=measure, k=k: r["horizons"][k][m]
    _check_rows(rows, records, "forecaster", metrics)
    assert sum(r["best"] for r in rows) == 1
    assert min(rows, key=lambda r: r["metrics"]["mae"]["mean"])["best"]


def test_eval_group_by_a_table_and_an_unknown_key(runner):
    assert runner.invoke(app, ["sweep", "lm.yaml", "--seeds", "2", "--name", "one", "-q"]).exit_code == 0
    table = runner.invoke(app, ["eval", "runs/one/seed=0", "runs/one/seed=1", "--group-by", "model.cell"])
    assert table.exit_code == 0, table.output
    assert "mean ± std over seeds" in table.stdout and "* best bpc (lower is better)" in table.stdout
    bad = runner.invoke(app, ["eval", "runs/one/seed=0", "--group-by", "model.cel"])
    assert bad.exit_code == 2 and "--group-by model.cel: unknown key; did you mean model.cell?" in bad.stderr


def _record(run: str, task: str = "lm", **metrics) -> dict:
    return {"run": run, "task": task, "split": "val", "which": "best", "step": 10, "characters": 99, **metrics}


def test_aggregate_rules_single_runs_direction_and_mixed_records():
    records = [_record("a", "classify", loss=1.0, accuracy=0.5, error=0.5),
               _record("b", "classify", loss=2.0, accuracy=0.75, error=0.25),
               _record("c", "classify", loss=3.0, accuracy=0.25, error=0.75)]
    summary = aggregate(records, [{"k": 1}, {"k": 1}, {"k": 2}])
    first, second = summary["rows"]
    assert first["metrics"]["accuracy"] == {"mean": 0.625, "std": pytest.approx(math.sqrt(0.03125)), "n": 2}
    assert second["metrics"]["accuracy"] == {"mean": 0.25, "std": None, "n": 1}  # one run: no spread
    assert first["best"] and not second["best"] and summary["higher_is_better"]  # accuracy: higher is better
    assert "step" not in first["metrics"] and "characters" not in first["metrics"]
    with pytest.raises(UsageError, match="mix tasks"):
        aggregate([_record("a"), _record("b", "forecast")], [{}, {}])


def test_a_diverged_seed_makes_its_group_nan_and_never_best():
    records = [_record("a", bpc=1.0), _record("b", bpc=float("nan")), _record("c", bpc=2.0)]
    summary = aggregate(records, [{"k": 1}, {"k": 1}, {"k": 2}])
    assert math.isnan(summary["rows"][0]["metrics"]["bpc"]["mean"])
    assert [r["best"] for r in summary["rows"]] == [False, True]


def test_record_metrics_flattens_the_horizons():
    record = _record("a", "forecast", loss=0.5, mae=2.0, windows=7, horizons=[
        {"horizon": 1, "minutes": 15, "mae": 1.0, "rmse": 2.0, "mape": 3.0}])
    assert record_metrics(record) == {"loss": 0.5, "mae": 2.0, "mae_15min": 1.0, "rmse_15min": 2.0,
                                      "mape_15min": 3.0}
