"""rnnkit sweep: points and their names, sweep files, threads per job, skipping and resuming, failures, --dry-run,
subprocess jobs, TensorBoard hparams."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.errors import ConfigError, UsageError
from rnnkit.sweeps import load_sweep, parse_grid, plan_threads, run_sweep
from rnnkit.sweeps import runner as sweep_runner

TINY = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 80, "max_len": 30},
    "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4},
    "train": {"batch_size": 16, "max_steps": 6, "eval_every": 3, "checkpoint_every": 3, "device": "cpu"},
}


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return tmp_path


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.strip().splitlines()]


# ---------------------------------------------------------------- points, names, files


def test_grid_times_seeds_gives_named_points_with_their_values(here):
    sweep = load_sweep("tiny.yaml", grids=["model.cell=rnn,lstm", "train.lr=0.01,1e-3"], seeds=2)
    points = sweep.points()
    assert sweep.name == "tiny_sweep" and sweep.folder == Path("runs/tiny_sweep")
    assert [p.name for p in points[:3]] == ["cell=rnn,lr=0.01,seed=0", "cell=rnn,lr=0.01,seed=1",
                                            "cell=rnn,lr=1e-3,seed=0"]
    assert len(points) == 8 and len({p.name for p in points}) == 8
    last = points[-1]
    assert last.values == {"model.cell": "lstm", "train.lr": 1e-3, "train.seed": 1}
    assert (last.cfg.model.cell, last.cfg.train.lr, last.cfg.train.seed) == ("lstm", 1e-3, 1)
    assert last.cfg.model.hidden_size == 8 and last.cfg.run.name == last.name  # the rest is the base's


def test_keys_whose_last_parts_clash_keep_their_full_name_and_unsafe_characters_are_replaced(here):
    sweep = load_sweep("tiny.yaml", grids=["data.max_len=30,40", "generate.max_len=20", "data.exclude=a/b"])
    names = [p.name for p in sweep.points()]
    assert names[0] == "data.max_len=30,generate.max_len=20,exclude=a_b,seed=0"


def test_a_sweep_file_merges_its_sections_onto_its_base(here):
    (here / "sweeps").mkdir()
    (here / "sweeps" / "cells.yaml").write_text(
        "sweep:\n  base: ../tiny.yaml\n  grid:\n    model.cell: [rnn, gru]\n  seeds: 2\n  jobs: 2\n"
        "train:\n  max_steps: 4\n")
    sweep = load_sweep("sweeps/cells.yaml")
    assert (sweep.name, sweep.seeds, sweep.jobs, sweep.grid) == ("cells", 2, 2, {"model.cell": ["rnn", "gru"]})
    points = sweep.points()
    assert [p.name for p in points] == ["cell=rnn,seed=0", "cell=rnn,seed=1", "cell=gru,seed=0", "cell=gru,seed=1"]
    assert all(p.cfg.train.max_steps == 4 and p.cfg.train.batch_size == 16 for p in points)
    # the command line replaces the file's values of a key, seeds and name
    again = load_sweep("sweeps/cells.yaml", grids=["model.cell=lstm"], seeds=1, name="other")
    assert [p.name for p in again.points()] == ["cell=lstm,seed=0"] and again.folder == Path("runs/other")


def test_a_sweep_file_is_checked_strictly(here):
    bad = here / "bad.yaml"
    bad.write_text("sweep:\n  base: ../nowhere.yaml\n  grids: {}\n")
    with pytest.raises(ConfigError, match=r"sweep.grids: unknown key; did you mean sweep.grid\?"):
        load_sweep(bad)
    bad.write_text("sweep:\n  base: nosuchpreset\n")
    with pytest.raises(ConfigError, match="sweep.base 'nosuchpreset': no such preset"):
        load_sweep(bad)
    bad.write_text("sweep:\n  base: quickstart\n  grid: {model.cell: [rnn]}\nmodel:\n  hiden_size: 8\n")
    with pytest.raises(ConfigError, match=r"model.hiden_size: unknown key; did you mean model.hidden_size\?"):
        load_sweep(bad).points()


@pytest.mark.parametrize(("grids", "options", "message"), [
    (["model.cel=rnn"], {}, r"grid model.cel: unknown key; did you mean model.cell\?"),
    (["model.cell=rnn,rnn"], {}, "grid model.cell: a value is listed twice"),
    (["train.seed=1,2"], {"seeds": 3}, "seeds: 3 with train.seed in the grid"),
    (["run.name=a,b"], {}, "grid run.name: the sweep names the run folders"),
    ([], {"seeds": 0}, "seeds: 0 must be an integer >= 1"),
    ([], {"jobs": 0}, "jobs: 0 must be an integer >= 1"),
    ([], {"name": "a/b"}, "name: 'a/b' must name one folder"),
])
def test_bad_grids_and_options_are_one_clear_error(here, grids, options, message):
    with pytest.raises(UsageError, match=message):
        load_sweep("tiny.yaml", grids=grids, **options)


def test_parse_grid_reads_yaml_values_and_refuses_a_missing_list():
    assert parse_grid("train.lr=0.1,1e-3") == ("train.lr", [0.1, "1e-3"], ["0.1", "1e-3"])  # 1e-3: the field
    assert parse_grid("model.bias=true,false")[1] == [True, False]                               # converts it
    for text in ("model.cell", "model.cell=", "=rnn", "model.cell=rnn,,gru"):
        with pytest.raises(UsageError, match="expected KEY=V1,V2"):
            parse_grid(text)


def test_a_value_out_of_range_names_the_points_that_have_it(here):
    sweep = load_sweep("tiny.yaml", grids=["train.lr=-1,0.1"])
    with pytest.raises(ConfigError, match=r"train.lr: -1.0 must be > 0.0 \(point lr=-1,seed=0\)"):
        sweep.points()


# ---------------------------------------------------------------- threads per job


@pytest.mark.parametrize(("jobs", "cores", "env", "expected"), [
    (2, 2, {}, (2, 1)), (2, 4, {}, (2, 2)), (3, 8, {}, (3, 2)), (1, 4, {}, (1, 4)),
    (2, 8, {"OMP_NUM_THREADS": "1"}, (2, 1)),  # never more than the environment allows
    (4, 2, {}, (2, 1)),                         # more jobs than cores: as many as the cores
])
def test_jobs_share_the_cores_without_oversubscribing(jobs, cores, env, expected):
    plan = plan_threads(jobs, cores, env)
    assert (plan.jobs, plan.threads) == expected
    assert plan.jobs * plan.threads <= cores
    assert bool(plan.notes) == (jobs > cores)


# ---------------------------------------------------------------- running: skip, resume, interrupt, fail


def _final_weights(run: Path) -> dict:
    return load_file(str(run / "last" / "model.safetensors"))


def test_an_interrupted_sweep_started_again_trains_only_the_missing_points(here):
    sweep = load_sweep("tiny.yaml", grids=["model.cell=rnn,gru"], seeds=2, name="cut")
    started = {}  # point -> the first step each session took

    def interrupt_second_point(trainer):  # what Ctrl-C does: finish the step, save `last`, stop
        started.setdefault(trainer.run_dir.name, trainer.step)
        if trainer.run_dir.name == "cell=rnn,seed=1" and trainer.step == 4:
            trainer.interrupted = True

    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, on_step=interrupt_second_point)
    assert started == {"cell=rnn,seed=0": 1, "cell=rnn,seed=1": 1}
    assert not (here / "runs/cut/cell=gru,seed=0").exists()

    started.clear()
    outcomes = run_sweep(sweep, on_step=lambda t: started.setdefault(t.run_dir.name, t.step))
    assert [(o.point.name, o.action, o.status) for o in outcomes] == [
        ("cell=rnn,seed=0", "skip", "finished"), ("cell=rnn,seed=1", "resume", "finished"),
        ("cell=gru,seed=0", "train", "finished"), ("cell=gru,seed=1", "train", "finished")]
    # the interrupted point went on from its `last` (step 4), the finished one was not touched
    assert started == {"cell=rnn,seed=1": 5, "cell=gru,seed=0": 1, "cell=gru,seed=1": 1}
    # ... exactly: the same weights as a sweep that was never interrupted
    whole = run_sweep(load_sweep("tiny.yaml", grids=["model.cell=rnn,gru"], seeds=2, name="whole"))
    for a, b in zip(outcomes, whole, strict=True):
        left, right = _final_weights(a.path), _final_weights(b.path)
        assert all(torch.equal(left[k], right[k]) for k in left), a.point.name
    # seeds differ: the two seeds of a cell did not train the same model
    first, second = _final_weights(whole[0].path), _final_weights(whole[1].path)
    assert not all(torch.equal(first[k], second[k]) for k in first)
    assert [o.action for o in run_sweep(sweep)] == ["skip"] * 4


def test_a_longer_max_steps_resumes_finished_points(here):
    sweep = load_sweep("tiny.yaml", seeds=1, name="grow")
    assert [o.action for o in run_sweep(sweep)] == ["train"]
    longer = load_sweep("tiny.yaml", seeds=1, name="grow", overrides=["train.max_steps=9"])
    outcomes = run_sweep(longer)
    assert [(o.action, o.status) for o in outcomes] == [("resume", "finished")]
    assert json.loads((outcomes[0].path / "last" / "state.json").read_text())["step"] == 9


def test_a_failed_point_is_reported_and_the_sweep_goes_on(here):
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--grid", "data.source=reber,nosuchcorpus", "--name", "f",
                                 "-q", "--json"])
    assert result.exit_code == 1, result.output
    assert "[2/2] source=nosuchcorpus,seed=0: failed: " in result.stderr
    assert "runs/f: 1 of 2 points finished, 1 not: source=nosuchcorpus,seed=0" in result.stderr
    rows = _json_lines(result.stdout)  # the table of the points that finished
    assert [(r["group"], r["n"]) for r in rows] == [({"data.source": "reber"}, 1)]
    assert "Traceback" not in result.output


def test_a_finished_folder_of_another_config_is_refused_not_reused(here):
    run_sweep(load_sweep("tiny.yaml", name="clash"))
    changed = load_sweep("tiny.yaml", name="clash", overrides=["model.hidden_size=16"])
    (outcome,) = run_sweep(changed)
    assert (outcome.action, outcome.status) == ("refuse", "failed")
    assert "model.hidden_size: 8 -> 16" in outcome.error and "--name" in outcome.error


def test_dry_run_lists_the_points_and_what_each_would_do_and_trains_nothing(here):
    runner = CliRunner()
    run_sweep(load_sweep("tiny.yaml", grids=["model.cell=rnn,gru"], name="dry"), )
    (here / "runs/dry/cell=gru,seed=0/status.json").write_text('{"status": "interrupted"}')
    result = runner.invoke(app, ["sweep", "tiny.yaml", "--grid", "model.cell=rnn,gru,lstm", "--name", "dry",
                                 "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    rows = _json_lines(result.stdout)
    assert [(r["name"], r["action"]) for r in rows] == [
        ("cell=rnn,seed=0", "skip"), ("cell=gru,seed=0", "resume"), ("cell=lstm,seed=0", "train")]
    assert rows[2]["values"] == {"model.cell": "lstm", "train.seed": 0}
    assert not (here / "runs/dry/cell=lstm,seed=0").exists()
    table = runner.invoke(app, ["sweep", "tiny.yaml", "--grid", "model.cell=rnn,gru,lstm", "--name", "dry",
                                "--dry-run", "--jobs", "2"])
    assert table.exit_code == 0 and "cell=lstm,seed=0" in table.stdout and "2 at once" in table.stdout


# ---------------------------------------------------------------- subprocesses


def test_jobs_run_in_subprocesses_each_with_its_share_of_the_threads(here, monkeypatch):
    # The worker reports torch's own thread count before it trains: what the job really got.
    monkeypatch.setattr(sweep_runner, "WORKER", [
        sys.executable, "-c", "import sys, torch; print('torch threads', torch.get_num_threads()); "
                              "from rnnkit.cli import main; main(sys.argv[1:])"])
    monkeypatch.setattr(sweep_runner, "available_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    sweep = load_sweep("tiny.yaml", grids=["model.cell=rnn,gru"], jobs=2, name="par")
    events = []
    outcomes = run_sweep(sweep, on_event=lambda kind, o: events.append((kind, o.point.name)))
    assert [(o.status, o.threads) for o in outcomes] == [("finished", 2), ("finished", 2)]
    # both started before either finished: they ran at once
    assert [kind for kind, _ in events[:2]] == ["start", "start"]
    for outcome in outcomes:
        log = (outcome.path / "train.log").read_text()
        assert "torch threads 2" in log and "OMP_NUM_THREADS=2" in log
    # a subprocess trains what this process would have trained
    serial = run_sweep(load_sweep("tiny.yaml", grids=["model.cell=rnn,gru"], name="serial"))
    for a, b in zip(outcomes, serial, strict=True):
        left, right = _final_weights(a.path), _final_weights(b.path)
        assert all(torch.equal(left[k], right[k]) for k in left)


def test_a_failing_subprocess_point_reports_rnnkits_error_line(here):
    sweep = load_sweep("tiny.yaml", grids=["data.source=nosuchcorpus,othercorpus"], jobs=2, name="pf")
    outcomes = run_sweep(sweep, cores=2)
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert outcomes[0].error.startswith("exit 2: unknown source 'nosuchcorpus'")  # rnnkit's one error line
    assert outcomes[1].error.startswith("exit 2: unknown source 'othercorpus'")
    assert "log: runs/pf/source=nosuchcorpus,seed=0/train.log" in outcomes[0].error


# ---------------------------------------------------------------- TensorBoard


def test_each_finished_point_writes_its_values_and_metrics_for_the_hparams_view(here):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    (outcome,) = run_sweep(load_sweep("tiny.yaml", grids=["model.cell=lstm"], name="hp"))
    folder = outcome.path / "tb" / "hparams"
    (events,) = folder.glob("events.out.tfevents.*")
    hparams, scalars = {}, {}
    for event in EventFileLoader(str(events)).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "hparams":
                data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    hparams = {k: v.string_value or v.number_value for k, v in
                               data.session_start_info.hparams.items()}
            elif value.HasField("tensor"):
                scalars[value.tag] = float(value.tensor.float_val[0])
    assert hparams == {"model.cell": "lstm", "train.seed": 0.0}
    best = json.loads((outcome.path / "best" / "state.json").read_text())["best_metrics"]
    assert scalars["hparam/val_bpc"] == pytest.approx(best["bpc"], rel=1e-6)


def test_a_named_axis_sets_its_keys_together_and_is_checked(here):
    (here / "axis.yaml").write_text(
        "sweep:\n  base: tiny.yaml\n  grid:\n    feeding:\n      forced: {train.teacher_forcing_schedule: constant}\n"
        "      sampled: {train.teacher_forcing_schedule: linear, train.teacher_forcing_min: 0.5}\n")
    points = load_sweep("axis.yaml").points()
    assert [(p.name, p.values["feeding"]) for p in points] == [("feeding=forced,seed=0", "forced"),
                                                               ("feeding=sampled,seed=0", "sampled")]
    assert (points[1].cfg.train.teacher_forcing_schedule, points[1].cfg.train.teacher_forcing_min) == ("linear", 0.5)
    # --grid AXIS=LABEL picks labels of the file's axis (same folder names: finished points are found)
    picked = load_sweep("axis.yaml", grids=["feeding=sampled"], seeds=2).points()
    assert [p.name for p in picked] == ["feeding=sampled,seed=0", "feeding=sampled,seed=1"]
    assert picked[0].cfg == points[1].cfg
    with pytest.raises(UsageError, match="samples not a label of the named axis feeding"):
        load_sweep("axis.yaml", grids=["feeding=samples"])
    (here / "axis.yaml").write_text("sweep:\n  base: tiny.yaml\n  grid:\n    feeding:\n"
                                    "      a: {train.teacher_forcing_schedul: linear}\n    cell: [rnn]\n")
    with pytest.raises(UsageError) as err:
        load_sweep("axis.yaml")
    assert "grid feeding.a: train.teacher_forcing_schedul: not a key a named axis can set; did you mean " \
           "train.teacher_forcing_schedule?" in str(err.value)
    assert "grid cell: a named axis (no dot) maps labels to keys" in str(err.value)


@pytest.mark.slow
def test_ctrl_c_on_a_parallel_sweep_saves_each_running_point_and_the_same_command_finishes_the_rest(here):
    import signal
    import subprocess
    import time

    command = [sys.executable, "-m", "rnnkit", "sweep", "tiny.yaml", "--grid", "model.cell=rnn,gru,lstm", "--jobs",
               "2", "--name", "cc", "--set", "train.max_steps=1500", "--set", "train.checkpoint_every=10",
               "--set", "train.eval_every=1000"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    states = [here / f"runs/cc/cell={c},seed=0/last/state.json" for c in ("rnn", "gru")]
    deadline = time.monotonic() + 120
    while not all(s.is_file() for s in states) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends the sweep
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    steps = [json.loads(s.read_text())["step"] for s in states]
    assert all(0 < step < 1500 for step in steps), steps
    assert "cell=rnn,seed=0: interrupted ('last' saved" in err
    assert not (here / "runs/cc/cell=lstm,seed=0").exists()

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "cell=rnn,seed=0: resuming from last" in again.stderr and "cell=lstm,seed=0: training" in again.stderr
    for cell in ("rnn", "gru", "lstm"):
        assert json.loads((here / f"runs/cc/cell={cell},seed=0/last/state.json").read_text())["step"] == 1500
    sessions = [line for line in (here / "runs/cc/cell=rnn,seed=0/train.log").read_text().splitlines()
                if line.startswith("$ OMP_NUM_THREADS=1 ")]
    assert len(sessions) == 2 and "--resume" not in sessions[0] and sessions[1].endswith("--quiet --resume")


def test_a_sweep_named_like_a_run_folder_is_refused(here):
    (here / "runs/host").mkdir(parents=True)
    (here / "runs/host/config.yaml").write_text("task: lm\n")  # `rnnkit train` made runs/host
    with pytest.raises(UsageError, match="runs/host: is a run folder, not a sweep's; choose another --name"):
        run_sweep(load_sweep("tiny.yaml", name="host"))
