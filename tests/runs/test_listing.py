"""`rnnkit runs`: one row per run with its status, read without loading weights."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.runs.listing import describe_runs
from rnnkit.runs.loaded import load
from rnnkit.runs.lock import RunLock, holder
from rnnkit.tasks import LanguageModelTask

TINY = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 80, "max_len": 30},
    "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4},
    "train": {"batch_size": 16, "max_steps": 4, "eval_every": 2, "checkpoint_every": 2, "device": "cpu"},
}


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return CliRunner()


def _train(runner, *sets):
    args = ["train", "tiny.yaml", "--quiet"] + [x for s in sets for x in ("--set", s)]
    return runner.invoke(app, args)


def test_runs_lists_finished_interrupted_and_failed_runs_newest_first(tmp_path, runner, monkeypatch):
    assert _train(runner, "run.name=done").exit_code == 0
    time.sleep(0.05)
    assert _train(runner, "run.name=short", "train.max_steps=2").exit_code == 0
    (tmp_path / "runs" / "short" / "config.yaml").write_text(  # as if stopped at step 2 of 4
        (tmp_path / "runs" / "short" / "config.yaml").read_text().replace("max_steps: 2", "max_steps: 4"))
    (tmp_path / "runs" / "short" / "status.json").unlink()  # killed: no status was written
    time.sleep(0.05)
    real_loss = LanguageModelTask.loss
    monkeypatch.setattr(LanguageModelTask, "loss", lambda self, *a: (lambda s, c, n: (s * math.nan, c, n))(
        *real_loss(self, *a)))  # a diverging run: the first loss is NaN
    bad = _train(runner, "run.name=nan")
    monkeypatch.setattr(LanguageModelTask, "loss", real_loss)
    assert bad.exit_code == 1 and "non-finite" in bad.stderr
    result = runner.invoke(app, ["runs", "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in records] == ["nan", "short", "done"]
    status = {r["name"]: r["status"] for r in records}
    assert status == {"nan": "failed", "short": "interrupted", "done": "finished"}
    done = records[2]
    # GRU, embedding 4, hidden 8, 9 ids (7 Reber symbols + PAD + EOS): every parameter counted from the header
    v, e, h = 9, 4, 8
    assert done["parameters"] == v * e + 3 * h * (e + h) + 2 * 3 * h + h * v + v
    assert (done["task"], done["cell"], done["layers"], done["hidden"], done["step"], done["max_steps"]) == \
        ("lm", "gru", 1, 8, 4, 4)
    best = load(tmp_path / "runs" / "done", which="best", device="cpu")
    assert done["metric"] == "bpc" and done["best"] == best.metrics["bpc"] and done["best_step"] == best.step
    assert done["bytes"] == sum(p.stat().st_size for p in (tmp_path / "runs" / "done").rglob("*") if p.is_file())
    table = runner.invoke(app, ["runs"], env={"COLUMNS": "160"})
    assert table.exit_code == 0 and "3 run(s) in runs" in table.stdout and "finished" in table.stdout


def test_a_run_being_trained_is_training(tmp_path, runner):
    assert _train(runner, "run.name=live").exit_code == 0
    script = (f"import sys, time; sys.path[:0] = {sys.path!r}\n"
              "from rnnkit.runs.lock import RunLock\n"
              f"lock = RunLock({str(tmp_path / 'runs' / 'live')!r}).acquire(); print('locked', flush=True); "
              "time.sleep(30)")
    other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        assert holder(tmp_path / "runs" / "live") == other.pid
        assert describe_runs(tmp_path / "runs")[0]["status"] == "training"
    finally:
        other.kill()
        other.wait()
    assert holder(tmp_path / "runs" / "live") is None
    with RunLock(tmp_path / "runs" / "live"):
        pass  # free again


def test_runs_of_a_missing_folder_is_one_line(runner):
    result = runner.invoke(app, ["runs", "nowhere"])
    assert result.exit_code == 2 and "nowhere: no such folder" in result.stderr
