"""Property tests of the config loader and `--set` parsing: any input gives a valid Config or one ConfigError."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit.config import Config, apply_overrides, config_from_dict, describe_fields, load_config, save_config
from rnnkit.errors import ConfigError

FIELDS = [key for key, _, _ in describe_fields()]  # "model.hidden_size", ..., "task"
SECTIONS = [f.name for f in dataclasses.fields(Config)]
NAMES = sorted({part for key in FIELDS for part in key.split(".")})
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

keys = st.one_of(st.sampled_from(NAMES), st.text(max_size=12), st.integers(), st.none(), st.booleans())
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.sampled_from(["lstm", "gru", "rnn", "1e-3", "nan", ".inf", "adam", "split", "", "  "]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=8)
sections = st.dictionaries(st.sampled_from(NAMES) | keys, values, max_size=5)
documents = st.one_of(st.dictionaries(st.sampled_from(SECTIONS) | keys, st.one_of(sections, values), max_size=6),
                      values)


def accepted(build) -> Config | None:
    """The Config `build()` returns, None for a ConfigError; any other exception fails the test."""
    try:
        cfg = build()
    except ConfigError as err:
        assert str(err)  # a message to print, naming the problem
        return None
    assert isinstance(cfg, Config)
    return cfg


def check_valid(cfg: Config) -> None:
    """An accepted config holds only finite numbers and round-trips through its YAML."""
    for section in dataclasses.asdict(cfg).values():
        for value in section.values() if isinstance(section, dict) else [section]:
            assert not isinstance(value, float) or math.isfinite(value)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        save_config(cfg, path)  # what a run folder keeps
        assert config_from_dict(yaml.safe_load(path.read_text()), str(path)) == cfg


@SETTINGS
@given(documents)
def test_any_mapping_is_a_config_or_a_config_error(raw):
    cfg = accepted(lambda: config_from_dict(raw, "generated"))
    if cfg is not None:
        check_valid(cfg)


@SETTINGS
@given(st.lists(st.one_of(st.text(max_size=30),
                          st.builds(lambda k, v: f"{k}={v}", st.sampled_from(FIELDS), st.text(max_size=12)),
                          st.builds(lambda k, v: f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}",
                                    st.sampled_from(FIELDS), scalars)),
                max_size=4))
def test_any_set_overrides_give_a_config_or_a_config_error(overrides):
    raw = {"model": {"cell": "gru"}, "task": "lm"}
    cfg = accepted(lambda: config_from_dict(apply_overrides(raw, overrides), "command line"))
    if cfg is not None:
        check_valid(cfg)


@SETTINGS
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 documents.map(lambda d: yaml.safe_dump(d, sort_keys=False).encode())))
def test_any_file_is_a_config_or_a_config_error(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "any.yaml"
        path.write_bytes(data)
        cfg = accepted(lambda: load_config(path))
    if cfg is not None:
        check_valid(cfg)
