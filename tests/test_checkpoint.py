"""Checkpoints: atomic writes under simulated crashes, clear errors for damaged or foreign files, run folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

from rnnkit.errors import CheckpointError, TrainingError
from rnnkit.io.atomic import atomic_write_text
from rnnkit.io.tensors import flatten_state, unflatten_state
from rnnkit.runs import checkpoint as ck
from rnnkit.runs.folder import resolve_run
from rnnkit.runs.lock import LOCK_FILE, RunLock


def _model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def _save(run, step: int, model=None, optimizer=None):
    if model is None:
        model, optimizer = _model_and_optimizer(step)
    ck.save_checkpoint(run, "last", model=model, state={"step": step, "epoch": 0, "batch_in_epoch": step},
                       optimizer=optimizer, scheduler_state={"plateau_factor": 1.0})
    return model, optimizer


def test_round_trip_restores_model_optimizer_and_rng(tmp_path):
    model, optimizer = _model_and_optimizer()
    torch.manual_seed(123)
    _save(tmp_path, 7, model, optimizer)
    expected_draw = torch.rand(3)
    ckpt = ck.load_checkpoint(tmp_path, "last")
    assert ckpt.step == 7 and ckpt.scheduler == {"plateau_factor": 1.0}
    fresh, fresh_opt = _model_and_optimizer(seed=99)
    ck.load_model_state(fresh, ckpt.model, "test")
    fresh_opt.load_state_dict(ckpt.optimizer)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    saved, restored = optimizer.state_dict(), fresh_opt.state_dict()
    assert saved["param_groups"] == restored["param_groups"]
    for key in saved["state"]:
        for name, value in saved["state"][key].items():
            assert torch.equal(value, restored["state"][key][name])
    ckpt.restore_rng()
    assert torch.equal(torch.rand(3), expected_draw)


def test_flatten_keeps_int_keys_tuples_and_tensors():
    state = {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"betas": (0.9, 0.99), "params": [0]}]}
    structure, tensors = flatten_state(state)
    back = unflatten_state(json.loads(json.dumps(structure)), tensors)
    assert list(back["state"]) == [0] and back["param_groups"][0]["betas"] == (0.9, 0.99)
    assert torch.equal(back["state"][0]["step"], torch.tensor(3.0))


def _save_crashing_at_rename(tmp_path, monkeypatch, step: int, crashes) -> None:
    """Save `step` with os.replace raising where crashes(src, dst) is true, as a crash at that rename would."""
    real_replace = os.replace

    def crash(src, dst):
        if crashes(str(src), str(dst)):
            raise OSError("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        _save(tmp_path, step)
    monkeypatch.setattr(ck.os, "replace", real_replace)


def test_crash_while_writing_a_file_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _save(tmp_path, 1)
    _save_crashing_at_rename(tmp_path, monkeypatch, 2, lambda src, dst: src.endswith(".tmp-" + str(os.getpid()))
                             and "optimizer" in dst)
    assert ck.load_checkpoint(tmp_path, "last").step == 1
    _save(tmp_path, 3)  # the next save cleans the half-written folder up
    assert ck.load_checkpoint(tmp_path, "last").step == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_crash_between_the_two_renames_falls_back_to_the_old_copy(tmp_path, monkeypatch):
    _save(tmp_path, 1)
    _save_crashing_at_rename(tmp_path, monkeypatch, 2, lambda src, dst: os.path.basename(dst) == "last")
    assert not (tmp_path / "last").exists()
    assert ck.load_checkpoint(tmp_path, "last").step == 1  # the complete .last.old-* copy
    _save(tmp_path, 3)
    assert ck.load_checkpoint(tmp_path, "last").step == 3


KILLER = """
import sys, torch
from rnnkit.runs import checkpoint as ck
model = torch.nn.Linear(256, 256)
opt = torch.optim.Adam(model.parameters())
step = 0
while True:
    step += 1
    ck.save_checkpoint(sys.argv[1], "last", model=model, state={"step": step, "epoch": 0, "batch_in_epoch": 0},
                       optimizer=opt)
    print(step, flush=True)
"""


def test_sigkill_at_any_instant_leaves_a_loadable_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", KILLER, str(run)], stdout=subprocess.PIPE)
    assert proc.stdout.readline()  # at least one checkpoint is complete
    time.sleep(0.137)  # then kill it mid-save (each save takes a few ms, most of them inside a write)
    proc.kill()
    proc.wait()
    assert ck.load_checkpoint(run, "last").step >= 1


@pytest.mark.parametrize("damage", ["missing", "truncated", "zeroed", "foreign", "garbage"])
def test_damaged_files_raise_checkpoint_error(tmp_path, damage):
    _save(tmp_path, 1)
    path = tmp_path / "last" / ck.MODEL_FILE
    data = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "zeroed":
        path.write_bytes(bytes(len(data)))
    elif damage == "foreign":
        save_file({"weight": torch.zeros(2)}, str(path))  # valid safetensors, but not rnnkit's
    else:
        path.write_bytes(b"PK\x03\x04 this is a zip file, not safetensors")
    with pytest.raises(CheckpointError, match=str(path.name)):
        ck.load_checkpoint(tmp_path, "last")


def test_newer_format_version_is_refused(tmp_path):
    _save(tmp_path, 1)
    state_path = tmp_path / "last" / ck.STATE_FILE
    state = json.loads(state_path.read_text())
    state["format_version"] = ck.FORMAT_VERSION + 1
    state_path.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="newer rnnkit"):
        ck.load_checkpoint(tmp_path, "last")


def test_weights_that_do_not_fit_name_the_mismatch(tmp_path):
    _save(tmp_path, 1)
    ckpt = ck.load_checkpoint(tmp_path, "last")
    other = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    with pytest.raises(CheckpointError, match=r"0.weight \(4, 3\) vs \(5, 3\)"):
        ck.load_model_state(other, ckpt.model, "model.safetensors")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no 'last' checkpoint"):
        ck.load_checkpoint(tmp_path, "last")


def test_resolve_run_picks_the_most_recent_run(tmp_path):
    with pytest.raises(CheckpointError, match="no run found"):
        resolve_run(None, tmp_path)
    for name in ("old", "new"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text("task: lm\n")
        time.sleep(0.02)
    os.utime(tmp_path / "old", (time.time() - 100, time.time() - 100))
    assert resolve_run(None, tmp_path) == tmp_path / "new"
    assert resolve_run(str(tmp_path / "old")) == tmp_path / "old"
    with pytest.raises(CheckpointError, match="no such run folder"):
        resolve_run(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not an rnnkit run folder"):
        resolve_run(str(tmp_path / "empty"))


def test_run_lock_refuses_a_second_holder(tmp_path):
    with RunLock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(TrainingError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()  # free again once released


def test_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "config.yaml"
    atomic_write_text(target, "old")
    monkeypatch.setattr(ck.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_a_checkpoint_knows_which_it_is_also_as_a_crash_copy(tmp_path):
    for name, which in (("last", "last"), ("best", "best"), (".last.old-4242", "last"), (".best.old-7", "best")):
        assert ck.Checkpoint(tmp_path / name, {}, {"step": 3}).which == which
