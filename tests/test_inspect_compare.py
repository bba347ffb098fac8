"""`inspect-grads --compare KEY=V1,V2`: one target inspected once per value; `--set` still reaches every target."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.diagnostics.targets import check_distinct, compare_variants
from rnnkit.errors import UsageError

FAST = ["--length", "30", "--batches", "1"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_config(folder, name, cell="lstm", **train):
    cfg = {"task": "lm", "data": {"source": "reber", "num_samples": 200},
           "model": {"cell": cell, "hidden_size": 16, "embedding_dim": 8},
           "train": {"batch_size": 8, "max_steps": 2, "eval_every": 2, "checkpoint_every": 2, "eval_batches": 1,
                     "histogram_every": 0, "device": "cpu", **train},
           "run": {"name": name}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def records(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_compare_inspects_one_config_once_per_cell_with_different_profiles(workdir):
    config = write_config(workdir, "tiny")
    out = records(CliRunner().invoke(app, ["inspect-grads", config, "--compare", "model.cell=rnn,lstm", *FAST,
                                           "--json", "--tensorboard"]))
    assert [r["label"] for r in out] == ["tiny model.cell=rnn", "tiny model.cell=lstm"]
    assert [r["cell"] for r in out] == ["rnn", "lstm"]
    assert [r["compare"] for r in out] == [{"model.cell": "rnn"}, {"model.cell": "lstm"}]
    rnn, lstm = (r["layers"][0] for r in out)
    assert rnn["norms"] != lstm["norms"]
    assert rnn["attenuation"] > 100 * lstm["attenuation"]  # the Elman RNN loses far more over 30 steps
    shapes = [{p["name"]: p["shape"] for p in r["params"]}["rnn.weight_hh_l0"] for r in out]
    assert shapes == [[16, 16], [64, 16]]  # the LSTM's four gates
    events = workdir / "runs" / "inspect-grads" / "tiny"
    assert (events / "model.cell=rnn").is_dir() and (events / "model.cell=lstm").is_dir()


def test_compare_labels_the_table_and_the_plot(workdir):
    pytest.importorskip("matplotlib")
    config = write_config(workdir, "tiny")
    result = CliRunner().invoke(app, ["inspect-grads", config, "--compare", "model.cell=rnn,gru", *FAST,
                                      "--plot", "cmp.png"])
    assert result.exit_code == 0, result.output
    assert "tiny model.cell=rnn: rnn 1x16" in result.stdout and "tiny model.cell=gru: gru 1x16" in result.stdout
    assert (workdir / "cmp.png").stat().st_size > 0


def test_several_compare_keys_give_every_combination_in_order(workdir):
    config = write_config(workdir, "tiny")
    out = records(CliRunner().invoke(app, ["inspect-grads", config, "--compare", "model.cell=rnn,lstm",
                                           "--compare", "model.hidden_size=4,8", *FAST, "--json"]))
    assert [(r["cell"], r["hidden_size"]) for r in out] == [("rnn", 4), ("rnn", 8), ("lstm", 4), ("lstm", 8)]


def test_set_still_reaches_every_target(workdir):
    configs = [write_config(workdir, "a", cell="rnn"), write_config(workdir, "b", cell="lstm")]
    out = records(CliRunner().invoke(app, ["inspect-grads", *configs, "--set", "model.hidden_size=4", *FAST,
                                           "--json"]))
    assert [(r["label"], r["cell"], r["hidden_size"]) for r in out] == [("a", "rnn", 4), ("b", "lstm", 4)]
    assert [r["compare"] for r in out] == [{}, {}]


def test_the_same_target_twice_is_refused_with_a_pointer_to_compare(workdir):
    """The README's old comparison: --set reached both copies, so it inspected the same Elman RNN twice."""
    config = write_config(workdir, "tiny")
    result = CliRunner().invoke(app, ["inspect-grads", config, "--set", "model.cell=rnn", config, *FAST])
    assert result.exit_code == 2
    assert "given twice" in result.stderr and "--compare model.cell=rnn,lstm" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("options", "message"), [
    (["--compare", "model.cell"], "--compare 'model.cell': expected section.key=value1,value2"),
    (["--compare", "model.cell=rnn,,lstm"], "an empty value"),
    (["--compare", "model.cell=rnn,rnn"], "--compare model.cell: the value 'rnn' is given twice"),
    (["--compare", "model.cell=rnn", "--compare", "model.cell=lstm"], "--compare model.cell: given twice"),
    (["--compare", "model.cell=rnn,lstm", "--set", "model.cell=gru"], "--compare model.cell and --set model.cell"),
    (["--compare", "model.cell=rnn,elman"], "--compare model.cell: 'elman' is not one of rnn, gru, lstm"),
    (["--compare", "model.cel=rnn,lstm"], "--compare model.cel: unknown key; did you mean model.cell?"),
])
def test_bad_compare_options_exit_2_with_one_line(workdir, options, message):
    config = write_config(workdir, "tiny")
    result = CliRunner().invoke(app, ["inspect-grads", config, *options, *FAST])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_compare_on_a_trained_run(workdir):
    config = write_config(workdir, "tiny", clip_grad_norm=5.0)
    trained = CliRunner().invoke(app, ["train", config, "--quiet"])
    assert trained.exit_code == 0, trained.output
    out = records(CliRunner().invoke(app, ["inspect-grads", "runs/tiny", "--compare",
                                           "train.clip_grad_norm=0.001,5", *FAST, "--json"]))
    assert [r["label"] for r in out] == ["tiny train.clip_grad_norm=0.001", "tiny train.clip_grad_norm=5"]
    tight, loose = (r["clip"] for r in out)
    assert tight["clipped_batches"] == 1 and tight["after_max"] == pytest.approx(0.001, rel=1e-3)
    assert loose["clipped_batches"] == 0
    refused = CliRunner().invoke(app, ["inspect-grads", "runs/tiny", "--compare", "model.cell=rnn,lstm", *FAST])
    assert refused.exit_code == 2 and "--compare model.*: a trained run's weights fix its model" in refused.stderr


def test_compare_variants_and_check_distinct():
    assert compare_variants() == [()]
    assert compare_variants(["model.cell=rnn,lstm", "train.lr=0.1,0.01"], ["train.seed=1"]) == [
        ("model.cell=rnn", "train.lr=0.1"), ("model.cell=rnn", "train.lr=0.01"),
        ("model.cell=lstm", "train.lr=0.1"), ("model.cell=lstm", "train.lr=0.01")]
    check_distinct(["a.yaml", "b.yaml", None])
    with pytest.raises(UsageError, match="the most recent run is given twice"):
        check_distinct([None, None])
