"""The sweep files kept in configs/sweeps/: each loads, every point validates and is its base config with the
values the file names; the preset listing is unchanged by them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.config import load_config
from rnnkit.presets import PRESET_DIR, preset_names
from rnnkit.sweeps import load_sweep, sweep_files
from rnnkit.sweeps.spec import SEED_KEY, is_axis

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))


def test_the_course_comparisons_are_there_and_shipped_beside_the_presets():
    assert {p.stem for p in SWEEPS} >= {"cells_trump", "clipping_rnn", "scheduled_sampling_trump",
                                        "metro_direct_vs_seq2seq"}
    assert [p.name for p in sweep_files()] == [p.name for p in SWEEPS]  # rnnkit/configs/sweeps: the same files


def _flat(cfg) -> dict:
    return {f"{section}.{key}": value for section, values in cfg.to_dict().items() if isinstance(values, dict)
            for key, value in values.items()}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_a_sweep_file_loads_and_each_point_is_its_base_with_the_values_it_names(path):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert path.read_text(encoding="utf-8").startswith("# ")  # says what it compares, as a preset does
    sweep = load_sweep(path)
    assert sweep.name == path.stem == raw["sweep"]["name"]
    points = sweep.points()
    grid = raw["sweep"]["grid"]
    expected = 1
    for values in grid.values():
        expected *= len(values)
    assert len(points) == expected * raw["sweep"].get("seeds", 1)
    base = _flat(load_config(path.parent / raw["sweep"]["base"]))
    for section, values in raw.items():
        if section != "sweep":
            base.update({f"{section}.{key}": value for key, value in values.items()})
    for point in points:
        changed = {key: value for key, value in _flat(point.cfg).items() if base[key] != value}
        named = {SEED_KEY: point.values[SEED_KEY], "run.name": point.name}
        for key, values in grid.items():
            named.update(values[point.values[key]] if is_axis(key) else {key: point.values[key]})
        assert changed == {key: value for key, value in named.items() if base[key] != value}, point.name


def test_the_metro_sweep_gives_seq2seq_its_scheduled_sampling_and_direct_none():
    points = load_sweep(ROOT / "configs/sweeps/metro_direct_vs_seq2seq.yaml").points()
    schedules = {(p.cfg.model.forecaster, p.cfg.train.teacher_forcing_schedule) for p in points}
    assert schedules == {("direct", "constant"), ("seq2seq", "inverse_sigmoid")}


def test_sweeps_are_not_presets_and_run_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "sweeps" not in preset_names() and not set(preset_names()) & {p.stem for p in SWEEPS}
    runner = CliRunner()
    listing = runner.invoke(app, ["configs", "--json"])
    assert listing.exit_code == 0
    assert {json.loads(line)["name"] for line in listing.stdout.splitlines()} == set(preset_names())
    assert all(Path(json.loads(line)["path"]).parent == PRESET_DIR for line in listing.stdout.splitlines())
    dry = runner.invoke(app, ["sweep", "clipping_rnn", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert [json.loads(line)["name"] for line in dry.stdout.splitlines()][:2] == [
        "clip_grad_norm=0.0,seed=0", "clip_grad_norm=0.0,seed=1"]
    assert not (tmp_path / "runs").exists()  # a dry run makes no folder


def test_the_shipped_metro_ensemble_is_the_point_the_weekday_fold_chose():
    """README "Metro forecasting": configs/metro_forecast_ensemble.yaml is metro_weekdays' batch64_station64 variant
    trained on all training days (fold paper), so the sweep's test runs are runs of the shipped config."""
    points = {p.name: p.cfg for p in load_sweep(ROOT / "configs/sweeps/metro_weekdays.yaml").points()}
    chosen, shipped = points["variant=batch64_station64,fold=paper,seed=0"], load_config(
        ROOT / "configs" / "metro_forecast_ensemble.yaml")
    assert {k: v for k, v in _flat(chosen).items() if k != "run.name"} == {
        k: v for k, v in _flat(shipped).items() if k != "run.name"}
