"""Every shipped config (the presets inside the package, linked to configs/) loads and validates, and builds
its model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from rnnkit import config
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


def test_the_tasks_a_config_accepts_are_the_registered_tasks():
    assert set(config.TASKS) == set(TASKS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_with_every_value_of_its_file(path):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg = load_config(path)
    loaded = cfg.to_dict()
    for section, values in raw.items():
        if not isinstance(values, dict):
            assert loaded[section] == values, section
            continue
        for key, value in values.items():
            assert loaded[section][key] == value, f"{section}.{key}"
    assert cfg.run.name == raw.get("run", {}).get("name", path.stem)


LM_CONFIGS = [p for p in CONFIGS if yaml.safe_load(p.read_text(encoding="utf-8")).get("task", "lm") == "lm"]


@pytest.mark.parametrize("path", LM_CONFIGS, ids=lambda p: p.name)
def test_language_model_configs_build_the_model_they_describe(path):
    from rnnkit.models import CharLM

    m = load_config(path).model
    model = CharLM.from_config(m, 100)
    # Counted by hand: an embedding table, torch's own recurrent layer of the same sizes, a linear decoder.
    recurrent = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[m.cell](
        m.embedding_dim, m.hidden_size, m.num_layers, bias=m.bias)
    expected = 100 * m.embedding_dim + sum(p.numel() for p in recurrent.parameters()) + (m.hidden_size + 1) * 100
    assert sum(p.numel() for p in model.parameters()) == expected


def test_trump_configs_differ_only_in_the_cell():
    configs = {cell: load_config(Path(CONFIGS[0]).parent / f"trump_{cell}.yaml") for cell in ("lstm", "gru", "rnn")}
    assert {c.model.cell for c in configs.values()} == {"lstm", "gru", "rnn"}
    for cfg in configs.values():
        assert cfg.data.source == "trump" and cfg.data.mode == "sentences" and cfg.model.embedding_dim > 0
        assert cfg.train.max_steps == configs["lstm"].train.max_steps
        assert cfg.train.batch_size == configs["lstm"].train.batch_size
