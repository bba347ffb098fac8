"""Strict config loading: every problem collected, named by dotted key, did-you-mean suggestions."""

import pytest
import yaml

from rnnkit.config import (
    Config,
    apply_overrides,
    config_from_dict,
    describe_fields,
    load_config,
    parse_override,
    save_config,
)
from rnnkit.errors import ConfigError


def write(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_defaults_and_overrides(tmp_path):
    path = write(tmp_path, {"model": {"cell": "gru", "hidden_size": 16}})
    cfg = load_config(path, ["train.lr=0.01", "model.num_layers=2"])
    assert cfg.model.cell == "gru" and cfg.model.hidden_size == 16 and cfg.model.num_layers == 2
    assert cfg.train.lr == 0.01
    assert cfg.train.batch_size == Config().train.batch_size
    assert cfg.run.name == "cfg"  # defaults to the file's stem


def test_misspelled_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, {"model": {"hiden_size": 64}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert "model.hiden_size: unknown key; did you mean model.hidden_size?" in message


def test_every_problem_is_collected(tmp_path):
    path = write(tmp_path, {"modle": {}, "model": {"dropout": 1.0, "hidden_size": 0, "cell": "lsmt"},
                            "train": {"lr": "abc", "device": "tpu"}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    for expected in ("modle: unknown key; did you mean model?", "model.dropout: 1.0 must be < 1.0",
                     "model.hidden_size: 0 must be >= 1", "model.cell: 'lsmt' is not one of rnn, gru, lstm",
                     "train.lr: expected a number, got 'abc'", "train.device: 'tpu' is not one of"):
        assert expected in message


def test_set_override_is_validated_like_the_file(tmp_path):
    path = write(tmp_path, {"task": "lm"})
    with pytest.raises(ConfigError, match=r": --set train\.lr: expected a number, got 'abc'"):
        load_config(path, ["train.lr=abc"])
    path.write_text("task: lm\ntrain: {lr: -1}\n")
    with pytest.raises(ConfigError, match=r"\.yaml: train\.lr: -1\.0 must be > 0"):  # the file's own value
        load_config(path, ["train.batch_size=4"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(path, ["train.lr"])
    with pytest.raises(ConfigError, match="model.hidden: unknown key; did you mean model.hidden_size"):
        load_config(path, ["model.hidden=3"])


@pytest.mark.parametrize("text, expected", [
    ("", "the file is empty"),
    ("- a\n- b\n", "expected a mapping of sections"),
    ("model: [1, 2\n", "not valid YAML"),
    ("model: 3\n", "model: expected a mapping"),
])
def test_files_that_are_not_configs(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_binary_and_missing_files(tmp_path):
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\x00\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not a text file"):
        load_config(binary)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_types_are_strict_but_forgiving_where_yaml_is_odd():
    cfg = config_from_dict({"train": {"lr": "1e-3", "max_steps": 10.0}})  # PyYAML reads 1e-3 as a string
    assert cfg.train.lr == 1e-3 and cfg.train.max_steps == 10
    with pytest.raises(ConfigError, match="train.max_steps: expected an integer, got 10.5"):
        config_from_dict({"train": {"max_steps": 10.5}})
    with pytest.raises(ConfigError, match="model.bias: expected true or false"):
        config_from_dict({"model": {"bias": 1}})
    with pytest.raises(ConfigError, match="train.lr: expected a number, got True"):
        config_from_dict({"train": {"lr": True}})
    assert config_from_dict({"generate": {"top_k": None}}).generate.top_k is None


def test_cross_field_conflicts_use_the_keys_users_type():
    with pytest.raises(ConfigError, match="model.nonlinearity: only applies to model.cell: rnn"):
        config_from_dict({"model": {"cell": "lstm", "nonlinearity": "relu"}})
    with pytest.raises(ConfigError, match="generate.greedy: cannot be combined with generate.beam"):
        config_from_dict({"generate": {"greedy": True, "beam": 3}})


def test_parse_override_reads_yaml_values():
    assert parse_override("model.cell=gru") == (["model", "cell"], "gru")
    assert parse_override("train.lr=3e-4") == (["train", "lr"], "3e-4")
    assert parse_override("generate.top_k=null") == (["generate", "top_k"], None)
    assert apply_overrides({"model": {"cell": "rnn"}}, ["model.cell=gru"]) == {"model": {"cell": "gru"}}
    with pytest.raises(ConfigError, match="is not a section"):
        apply_overrides({"task": "lm"}, ["task.x=1"])


def test_saved_config_loads_back_identically(tmp_path):
    cfg = config_from_dict({"model": {"cell": "gru"}, "generate": {"nucleus": 0.9}, "run": {"name": "x"}})
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_every_field_is_documented():
    rows = describe_fields()
    assert len(rows) > 40
    assert all(doc for _, _, doc in rows)


def test_stream_mode_refuses_settings_that_do_not_apply_to_it():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"task": "lm", "data": {"mode": "stream", "max_len": 80, "split_seed": 3},
                          "train": {"teacher_forcing": 0.5}})
    message = str(err.value)
    for expected in ("data.max_len: only applies to sentences", "data.split_seed: only applies to sentences",
                     "train.teacher_forcing: data.mode: stream trains teacher forced"):
        assert expected in message
    with pytest.raises(ConfigError, match="data.mode: stream only applies to task: lm"):
        config_from_dict({"task": "classify", "data": {"source": "langid", "mode": "stream"}})
    assert config_from_dict({"data": {"mode": "stream", "window": 64}}).data.mode == "stream"
