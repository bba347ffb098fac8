"""`rnnkit train` and `rnnkit eval` end to end through Typer's CliRunner."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.runs.loaded import load

TINY = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 80, "max_len": 30},
    "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4},
    "train": {"batch_size": 16, "max_steps": 6, "eval_every": 3, "checkpoint_every": 3, "device": "cpu"},
}


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def _config(tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_train_then_eval_json_prints_one_object_with_bpc(tmp_path, runner):
    result = runner.invoke(app, ["train", str(_config(tmp_path, "one")), "--set", "train.lr=0.02"])
    assert result.exit_code == 0, result.output
    assert "best val bpc" in result.stderr and "runs/one" in result.stderr
    assert (tmp_path / "runs" / "one" / "last" / "model.safetensors").is_file()

    result = runner.invoke(app, ["eval", "--json"])  # default: the most recent run under runs/
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    # the validation bpc training recorded for the weights evaluated, measured again
    best = load(tmp_path / "runs" / "one", device="cpu")
    assert record["split"] == "val" and record["step"] == best.step
    assert record["bpc"] == pytest.approx(best.metrics["bpc"], rel=1e-6)
    assert record["perplexity"] == pytest.approx(2 ** record["bpc"], rel=1e-9)


def test_eval_several_runs_prints_one_line_each(tmp_path, runner):
    for name in ("a", "b"):
        assert runner.invoke(app, ["train", str(_config(tmp_path, name)), "--quiet"]).exit_code == 0
    result = runner.invoke(app, ["eval", "runs/a", "runs/b", "--json", "--split", "test", "--which", "last"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["run"] for r in records] == ["runs/a", "runs/b"] and all(r["step"] == 6 for r in records)
    table = runner.invoke(app, ["eval", "runs/a"])
    assert table.exit_code == 0 and "bpc" in table.stdout


def test_quiet_train_prints_nothing_and_resume_continues(tmp_path, runner):
    config = _config(tmp_path, "q")
    result = runner.invoke(app, ["train", str(config), "--quiet"])
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
    again = runner.invoke(app, ["train", str(config), "--quiet"])
    assert again.exit_code == 1 and "--resume" in again.stderr and "Traceback" not in again.output
    longer = runner.invoke(app, ["train", str(config), "--quiet", "--resume", "--set", "train.max_steps=9"])
    assert longer.exit_code == 0, longer.output
    assert json.loads((tmp_path / "runs" / "q" / "last" / "state.json").read_text())["step"] == 9


def test_eval_without_runs_is_one_clear_line(tmp_path, runner):
    result = runner.invoke(app, ["eval", "--json"])
    assert result.exit_code == 1 and "no run found" in result.stderr and result.stdout == ""
