"""`rnnkit train CONFIG --init-from RUN` through the real CLI: weights taken, optimizer and step fresh; another
vocabulary, architecture or task is one line, exit 2, and no run folder."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.runs.checkpoint import load_checkpoint

runner = CliRunner()


@pytest.fixture
def base(tmp_path, monkeypatch):
    """A trained stream LM at runs/base, and a function writing configs that differ from its own."""
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    corpus = tmp_path / "text.txt"
    corpus.write_text("".join(f"{k}abcdefgh{k}\n" for k in "xyxxyyxy" * 30))
    config = {"task": "lm", "data": {"source": "text", "path": str(corpus), "mode": "stream", "window": 16},
              "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4},
              "train": {"batch_size": 4, "max_steps": 6, "eval_every": 3, "checkpoint_every": 3, "device": "cpu",
                        "histogram_every": 0},
              "run": {"dir": str(tmp_path / "runs")}}

    def write(name, **sections):
        merged = {key: ({**value, **sections.get(key, {})} if isinstance(value, dict) else sections.get(key, value))
                  for key, value in config.items()}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(merged))
        return path

    result = runner.invoke(app, ["train", str(write("base")), "--quiet"])
    assert result.exit_code == 0, result.output
    return tmp_path, write


def test_a_new_run_starts_from_the_weights_with_a_fresh_optimizer(base):
    tmp_path, write = base
    result = runner.invoke(app, ["train", str(write("tuned", train={"lr": 1e-12, "max_steps": 1})), "--init-from",
                                 str(tmp_path / "runs" / "base")])
    assert result.exit_code == 0, result.output
    assert "initialised from" in result.output and "step 6" in " ".join(result.output.split())
    before = load_file(str(tmp_path / "runs" / "base" / "best" / "model.safetensors"))
    after = load_file(str(tmp_path / "runs" / "tuned" / "last" / "model.safetensors"))
    for key in before:  # one step with lr 1e-12 leaves the weights as they were loaded
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=1e-8)
    ckpt = load_checkpoint(tmp_path / "runs" / "tuned", "last")
    assert ckpt.step == 1 and ckpt.state["init_from"]["run"].endswith("base")
    assert int(ckpt.optimizer["state"][0]["step"]) == 1  # Adam's state began at this run's step 0


@pytest.mark.parametrize(("sections", "extra", "message"), [
    ({"model": {"hidden_size": 16}}, [], "model.hidden_size is 8 in that run and 16 here"),
    ({"model": {"cell": "lstm"}}, [], "model.cell is 'gru' in that run and 'lstm' here"),
    ({"task": "classify", "data": {"source": "langid", "mode": "sentences", "classes": "a=a.txt,b=b.txt"},
      "model": {"embedding_dim": 4}}, [], "a run of task lm, and this config trains task classify"),
    ({}, ["--resume"], "--init-from starts a new run"),
])
def test_what_cannot_be_fine_tuned_is_one_line_and_exit_2(base, sections, extra, message):
    tmp_path, write = base
    result = runner.invoke(app, ["train", str(write("other", **sections)), "--init-from",
                                 str(tmp_path / "runs" / "base"), *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "runs" / "other").exists()


def test_another_vocabulary_names_the_characters_that_differ(base):
    tmp_path, write = base
    corpus = tmp_path / "other.txt"
    corpus.write_text("".join(f"{k}abcdefgh{k}\n" for k in "xzxxzzxz" * 30))  # z instead of y
    result = runner.invoke(app, ["train", str(write("other", data={"path": str(corpus)})), "--init-from",
                                 str(tmp_path / "runs" / "base")])
    assert result.exit_code == 2
    shown = " ".join(result.output.split())
    assert "only in that run: 'y' (U+0079); only in this data: 'z' (U+007A)" in shown, shown
    assert not (tmp_path / "runs" / "other").exists()
    status = tmp_path / "runs" / "base" / "status.json"
    assert not status.exists() or json.loads(status.read_text())  # the run fine-tuned from is untouched
