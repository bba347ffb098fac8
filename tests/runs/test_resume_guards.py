"""What a resume refuses (world size) and what it restores (the fp16 gradient scaler's state)."""

from __future__ import annotations

import json

import torch
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.runs.checkpoint import load_checkpoint, save_checkpoint

TINY = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 80, "max_len": 30},
    "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4},
    "train": {"batch_size": 16, "max_steps": 4, "eval_every": 2, "checkpoint_every": 2, "device": "cpu"},
}


def test_resume_under_another_world_size_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    runner = CliRunner()
    assert runner.invoke(app, ["train", "tiny.yaml", "--quiet"]).exit_code == 0
    state_path = tmp_path / "runs" / "tiny" / "last" / "state.json"
    state = json.loads(state_path.read_text())
    assert state["world_size"] == 1
    state_path.write_text(json.dumps({**state, "world_size": 2}))  # as if trained by torchrun on 2 processes
    result = runner.invoke(app, ["train", "tiny.yaml", "--resume", "--set", "train.max_steps=6"])
    assert result.exit_code == 2
    assert "cannot resume with 1 process(es), the run was trained with 2 (world size" in result.stderr


def test_the_gradient_scaler_state_is_saved_and_restored(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    scaler.scale(model(torch.ones(1, 3)).sum()).backward()
    scaler.step(optimizer)
    scaler.update()
    saved = scaler.state_dict()
    save_checkpoint(tmp_path, "last", model=model, state={"step": 1}, optimizer=optimizer, scaler_state=saved)
    ckpt = load_checkpoint(tmp_path, "last")
    fresh = torch.amp.GradScaler("cpu")
    fresh.load_state_dict(ckpt.scaler)
    assert fresh.state_dict() == saved and fresh.get_scale() == scaler.get_scale()
    assert set(ckpt.optimizer) == {"state", "param_groups"}


def test_a_checkpoint_without_a_scaler_loads_with_none(tmp_path):
    model = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path, "last", model=model, state={"step": 1}, optimizer=torch.optim.SGD(model.parameters(),
                                                                                                  lr=0.1))
    assert load_checkpoint(tmp_path, "last").scaler is None
