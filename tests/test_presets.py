"""Shipped presets through the real CLI: `rnnkit configs` lists them, `copy` writes one out, every verb that takes a
config finds one by name (a file that exists wins), and a wheel installed in a fresh venv carries them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.config import load_config
from rnnkit.presets import PRESET_DIR, preset_names, presets

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
NAMES = ["code_lstm", "langid", "metro_classify", "metro_forecast", "metro_forecast_ensemble", "metro_forecast_tuned",
         "quickstart", "trump_gru", "trump_lstm", "trump_rnn", "trump_stream"]
TINY = ["--set", "train.max_steps=2", "--set", "train.eval_every=2", "--set", "train.checkpoint_every=2",
        "--set", "data.num_samples=100", "--quiet"]


def test_every_preset_opens_with_a_one_line_description():
    assert preset_names() == NAMES
    for preset in presets():
        first = preset.path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# ") and preset.description == first[2:].strip()
        assert 20 <= len(preset.description) <= 120, preset.name


def test_configs_and_copy_have_help_with_an_example():
    for args, example in ((["configs"], "rnnkit configs && rnnkit train quickstart"),
                          (["configs", "copy"], "rnnkit configs copy quickstart my.yaml")):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and example in result.output, result.output
    assert "configs" in runner.invoke(app, ["--help"]).output


def test_configs_lists_every_preset_with_its_description():
    result = runner.invoke(app, ["configs"])
    assert result.exit_code == 0, result.output
    for preset in presets():
        assert preset.name in result.stdout
    assert "embedded Reber" in result.stdout and "Hangzhou metro" in result.stdout


def test_configs_json_is_one_object_per_line():
    result = runner.invoke(app, ["configs", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["name"] for row in rows] == NAMES
    quickstart = rows[NAMES.index("quickstart")]
    assert quickstart["description"].startswith("Quickstart: an LSTM")
    assert Path(quickstart["path"]).read_bytes() == (ROOT / "configs" / "quickstart.yaml").read_bytes()


def test_copy_writes_the_preset_and_refuses_to_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = (PRESET_DIR / "quickstart.yaml").read_bytes()
    first = runner.invoke(app, ["configs", "copy", "quickstart"])
    assert first.exit_code == 0, first.output
    assert (tmp_path / "quickstart.yaml").read_bytes() == source
    assert "rnnkit train quickstart.yaml" in first.output

    (tmp_path / "quickstart.yaml").write_text("# my edits\n")
    again = runner.invoke(app, ["configs", "copy", "quickstart"])
    assert again.exit_code == 2 and "quickstart.yaml: already exists; pass --force" in again.output
    assert (tmp_path / "quickstart.yaml").read_text() == "# my edits\n"
    forced = runner.invoke(app, ["configs", "copy", "quickstart", "--force"])
    assert forced.exit_code == 0 and (tmp_path / "quickstart.yaml").read_bytes() == source


def test_copy_to_a_file_or_into_a_folder(tmp_path):
    named = runner.invoke(app, ["configs", "copy", "trump_gru", str(tmp_path / "mine.yaml")])
    assert named.exit_code == 0, named.output
    assert load_config(tmp_path / "mine.yaml").model.cell == "gru"
    (tmp_path / "sub").mkdir()
    into = runner.invoke(app, ["configs", "copy", "langid", str(tmp_path / "sub")])
    assert into.exit_code == 0, into.output
    assert (tmp_path / "sub" / "langid.yaml").read_bytes() == (PRESET_DIR / "langid.yaml").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["configs", "copy", "quikstart"], "quikstart: no such preset (did you mean the preset quickstart?); presets: "
                                       + ", ".join(NAMES)),
    (["configs", "copy", "quickstart", "no/such/folder/x.yaml"], "no/such/folder: no such folder"),
    (["train", "quikstart"], "quikstart: no such config file or preset (did you mean the preset quickstart?)"),
    (["train", "configs/nope.yaml"], "configs/nope.yaml: no such config file or preset; presets: "
                                     + ", ".join(NAMES)),
    (["inspect-grads", "quikstart.yaml"], "quikstart.yaml: no such config file or preset (did you mean"),
])
def test_unknown_names_are_one_line_errors_listing_the_presets(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert len(result.output.strip().splitlines()) <= 3 and "Traceback" not in result.output  # one wrapped line
    assert list(tmp_path.iterdir()) == []


def test_inspect_grads_names_run_folders_configs_and_presets_when_nothing_matches(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["inspect-grads", "nope"])
    assert result.exit_code == 1
    assert "nope: no such run folder, config file or preset; presets: " + ", ".join(NAMES) in " ".join(
        result.output.split())


def test_train_finds_a_preset_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "quickstart", *TINY])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "runs" / "quickstart" / "config.yaml").read_text())
    assert saved["model"]["cell"] == "lstm" and saved["model"]["hidden_size"] == 32  # the preset's values
    assert saved["train"]["max_steps"] == 2


def test_a_file_that_exists_wins_over_the_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart").write_text("model:\n  hiden_size: 8\n")
    result = runner.invoke(app, ["train", "quickstart"])
    assert result.exit_code == 2
    assert "quickstart: model.hiden_size: unknown key" in " ".join(result.output.split())


def test_inspect_grads_takes_a_preset_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["inspect-grads", "quickstart", "--batches", "1", "--set", "data.num_samples=100",
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["target"] == "quickstart" and (report["cell"], report["hidden_size"]) == ("lstm", 32)


def test_a_preset_error_names_the_preset_not_the_installed_path():
    from rnnkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^preset quickstart: --set train\.lr"):
        load_config("quickstart", ["train.lr=abc"])


def _site_packages(env: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))


def test_the_built_wheel_trains_the_quickstart_from_an_empty_folder(tmp_path):
    """`pip install` of the wheel in a fresh venv, then `rnnkit train quickstart` elsewhere: no checkout needed."""
    source = tmp_path / "src"  # build from a copy: the build writes build/ and *.egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "configs", source / "configs")
    shutil.copytree(ROOT / "rnnkit", source / "rnnkit", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    run = dict(check=True, capture_output=True, text=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(dist), str(source)], cwd=tmp_path, **run)
    wheel = next(dist.glob("rnnkit-*.whl"))

    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], **run)
    # torch and the other dependencies come from this environment (appended to sys.path after the venv's own
    # site-packages, so the rnnkit imported is the wheel's); .pth files in it are not run, so no editable hook.
    (_site_packages(env) / "_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    clean["OMP_NUM_THREADS"] = "1"
    where = subprocess.run([str(python), "-c", "import rnnkit; print(rnnkit.__file__)"], cwd=empty, env=clean, **run)
    assert Path(where.stdout.strip()).resolve().is_relative_to(env.resolve())

    rnnkit = env / ("Scripts/rnnkit.exe" if os.name == "nt" else "bin/rnnkit")
    listed = subprocess.run([str(rnnkit), "configs", "--json"], cwd=empty, env=clean, **run)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [row["name"] for row in rows] == NAMES
    assert all(Path(row["path"]).resolve().is_relative_to(env.resolve()) for row in rows)

    trained = subprocess.run([str(rnnkit), "train", "quickstart", *TINY], cwd=empty, env=clean,
                             capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr
    assert (empty / "runs" / "quickstart" / "last").is_dir()
    assert yaml.safe_load((empty / "runs" / "quickstart" / "config.yaml").read_text())["model"]["cell"] == "lstm"


def test_the_readme_shows_the_real_listing(monkeypatch):
    from rnnkit.cli.app import out_console

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = readme.split("$ rnnkit configs\n", 1)[1].split("```", 1)[0].rstrip("\n")
    monkeypatch.setattr(out_console, "width", 80)  # as printed to a file or pipe (the console reads COLUMNS once)
    result = runner.invoke(app, ["configs"])
    assert result.exit_code == 0, result.output
    assert shown == "\n".join(line.rstrip() for line in result.stdout.rstrip("\n").splitlines())
