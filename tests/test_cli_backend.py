"""`--set model.backend=...` end to end: `rnnkit train` with fused and reference layers ends on the same weights."""

from __future__ import annotations

import pytest
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from rnnkit.cli import app

TINY = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 80, "max_len": 30},  # padded sentences: masks in play
    "model": {"cell": "lstm", "hidden_size": 8, "embedding_dim": 4, "num_layers": 2, "dropout": 0.1},
    "train": {"batch_size": 16, "max_steps": 5, "eval_every": 5, "checkpoint_every": 5, "histogram_every": 0,
              "lr": 0.02, "device": "cpu"},
}


def test_train_with_each_backend_gives_the_same_model(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    runner = CliRunner()
    for backend in ("fused", "reference"):
        args = ["train", str(config), "--quiet", "--set", f"model.backend={backend}", "--set", f"run.name={backend}"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        saved = yaml.safe_load((tmp_path / "runs" / backend / "config.yaml").read_text())
        assert saved["model"]["backend"] == backend
    fused, reference = (load_file(str(tmp_path / "runs" / b / "last" / "model.safetensors"))
                        for b in ("fused", "reference"))
    assert fused.keys() == reference.keys()
    for name, value in reference.items():
        assert (fused[name] - value).abs().max().item() < 1e-4, name


def test_fused_backend_with_mixed_precision_is_refused(tmp_path):
    from rnnkit.config import config_from_dict
    from rnnkit.errors import ConfigError

    with pytest.raises(ConfigError, match="model.backend"):
        config_from_dict({"model": {"backend": "fused"}, "train": {"precision": "bf16"}})
