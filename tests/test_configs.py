"""Every shipped config (the presets inside the package, linked to configs/) loads and validates, and builds
its model."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnkit.config import load_config
from rnnkit.presets import PRESET_DIR
from rnnkit.tasks import TASKS

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(PRESET_DIR.glob("*.yaml"))


def test_the_shipped_configs_are_there():
    names = {p.name for p in CONFIGS}
    assert {"quickstart.yaml", "trump_lstm.yaml", "trump_gru.yaml", "trump_rnn.yaml", "metro_classify.yaml",
            "metro_forecast.yaml", "langid.yaml"} <= names


def test_the_package_presets_are_the_checkout_configs_folder():
    """One copy of each preset: rnnkit/configs is a link to configs/, not a second set of files."""
    assert PRESET_DIR.is_symlink() and PRESET_DIR.resolve() == (ROOT / "configs").resolve()
    assert {p.name for p in CONFIGS} == {p.name for p in (ROOT / "configs").glob("*.yaml")}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_validates(path):
    cfg = load_config(path)
    assert cfg.task in TASKS
    assert cfg.run.name
    if cfg.task == "lm":
        from rnnkit.models import CharLM

        model = CharLM.from_config(cfg.model, 100)
        assert sum(p.numel() for p in model.parameters()) > 0


def test_trump_configs_differ_only_in_the_cell():
    configs = {cell: load_config(Path(CONFIGS[0]).parent / f"trump_{cell}.yaml") for cell in ("lstm", "gru", "rnn")}
    assert {c.model.cell for c in configs.values()} == {"lstm", "gru", "rnn"}
    for cfg in configs.values():
        assert cfg.data.source == "trump" and cfg.data.mode == "sentences" and cfg.model.embedding_dim > 0
        assert cfg.train.max_steps == configs["lstm"].train.max_steps
        assert cfg.train.batch_size == configs["lstm"].train.batch_size
