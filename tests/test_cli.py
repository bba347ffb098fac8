"""The CLI shell: verbs, version, and user mistakes ending in one line without a traceback."""

import re

import yaml
from typer.testing import CliRunner

from rnnkit import __version__
from rnnkit.cli import app

runner = CliRunner()
VERBS = ("prepare", "train", "eval", "generate", "inspect-grads")


def test_help_lists_the_five_verbs():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in VERBS:
        assert re.search(rf"\b{verb}\b", result.output)


def test_each_verb_has_help_with_an_example():
    for verb in VERBS:
        result = runner.invoke(app, [verb, "--help"])
        assert result.exit_code == 0, result.output
        assert f"rnnkit {verb}" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_misspelled_config_key_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"model": {"hiden_size": 64}}))
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    assert "model.hiden_size" in result.output and "model.hidden_size" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_bad_set_value_exits_2_naming_the_key(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("task: lm\n")
    result = runner.invoke(app, ["train", str(path), "--set", "train.lr=abc"])
    assert result.exit_code == 2
    assert "train.lr" in result.output and "Traceback" not in result.output
