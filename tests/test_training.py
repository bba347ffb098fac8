"""The training loop: exact resume, NaN stop, TensorBoard content, early stopping, run-folder rules."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from rnnkit.config import config_from_dict
from rnnkit.errors import CheckpointError, TrainingError, UsageError
from rnnkit.runs.checkpoint import load_checkpoint
from rnnkit.tasks import LanguageModelTask
from rnnkit.training import Schedule, train


def tiny_cfg(tmp_path, cell="lstm", **train_overrides):
    train_section = {"batch_size": 16, "max_steps": 12, "eval_every": 4, "checkpoint_every": 100,
                     "log_every": 1, "histogram_every": 0, "seed": 3, "lr": 0.01, "device": "cpu"}
    train_section.update(train_overrides)
    return config_from_dict({
        "task": "lm",
        "data": {"source": "reber", "num_samples": 100, "max_len": 30},
        "model": {"cell": cell, "hidden_size": 8, "embedding_dim": 4, "dropout": 0.2},
        "train": train_section,
        "run": {"name": "tiny", "dir": str(tmp_path / "runs")},
    })


def run(cfg, tmp_path, name, **kwargs):
    return train(cfg, quiet=True, run_dir=tmp_path / name, data_root=tmp_path / "data", **kwargs)


def weights(run_dir, which="last"):
    return load_file(str(run_dir / which / "model.safetensors"))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, cell):
    # Dropout, warm-up + cosine and two epoch boundaries: every piece of state must come back.
    cfg = tiny_cfg(tmp_path, cell, schedule="cosine", warmup_steps=3)
    straight = run(cfg, tmp_path, "straight")

    def interrupt_at_5(trainer):
        if trainer.step == 5:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does: the loop saves `last`, then stops

    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path, "resumed", on_step=interrupt_at_5)
    assert load_checkpoint(tmp_path / "resumed", "last").step == 5
    resumed = run(cfg, tmp_path, "resumed", resume=True)
    assert resumed.steps == straight.steps == 12
    assert resumed.losses == pytest.approx(straight.losses[5:], abs=1e-6)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    assert straight.best_step == resumed.best_step


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_loss, calls = LanguageModelTask.loss, []

    def poisoned(self, model, batch, device):
        loss_sum, count, chars = real_loss(self, model, batch, device)
        calls.append(1)
        return (loss_sum * math.nan if len(calls) == 7 else loss_sum), count, chars

    monkeypatch.setattr(LanguageModelTask, "loss", poisoned)
    cfg = tiny_cfg(tmp_path, checkpoint_every=3, eval_every=100)
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step 7.*step 6\) is kept"):
        run(cfg, tmp_path, "nan")
    ckpt = load_checkpoint(tmp_path / "nan", "last")
    assert ckpt.step == 6 and all(torch.isfinite(t).all() for t in ckpt.model.values())


def test_tensorboard_has_scalars_gradient_and_gate_histograms_and_samples(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(tiny_cfg(tmp_path, histogram_every=4), tmp_path, "tb")
    events = EventAccumulator(str(tmp_path / "tb" / "tb"), size_guidance={"histograms": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/bpc", "train/lr", "train/grad_norm", "val/loss", "val/bpc"} <= set(tags["scalars"])
    histograms = set(tags["histograms"])
    assert "grad/rnn.weight_hh_l0" in histograms and "grad/decoder.weight" in histograms
    for gate in ("input", "forget", "output"):
        assert any(t.startswith("gates/") and gate in t for t in histograms), (gate, histograms)
    assert any("samples" in t for t in tags["tensors"])


def test_gru_gates_are_recorded(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(tiny_cfg(tmp_path, "gru", histogram_every=4, max_steps=4), tmp_path, "gru")
    events = EventAccumulator(str(tmp_path / "gru" / "tb"), size_guidance={"histograms": 0})
    events.Reload()
    gates = [t for t in events.Tags()["histograms"] if t.startswith("gates/")]
    assert any("update" in t for t in gates) and any("reset" in t for t in gates)


def test_early_stopping_after_evaluations_without_improvement(tmp_path, monkeypatch):
    monkeypatch.setattr(LanguageModelTask, "metrics", lambda self, sums: {"loss": 1.0, "bpc": 1.4, "perplexity": 2.7})
    result = run(tiny_cfg(tmp_path, eval_every=2, early_stopping=2, max_steps=50), tmp_path, "early")
    assert result.stopped == "early_stopping" and result.steps == 6 and result.best_step == 2
    assert load_checkpoint(tmp_path / "early", "best").step == 2


def test_run_folder_has_the_layout_and_no_pickle(tmp_path):
    run(tiny_cfg(tmp_path, max_steps=4), tmp_path, "layout")
    folder = tmp_path / "layout"
    for name in ("config.yaml", "vocab.json", "last/model.safetensors", "last/optimizer.safetensors",
                 "last/rng.safetensors", "last/state.json", "best/model.safetensors"):
        assert (folder / name).is_file(), name
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        assert path.suffix not in (".pt", ".pth", ".pkl", ".pickle", ".bin"), path
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:  # parses as safetensors, not a pickle
                assert handle.metadata()["format"] == "rnnkit"
        elif not path.name.startswith("events.out.tfevents"):
            path.read_text(encoding="utf-8")  # config.yaml, vocab.json, state.json, run.lock: plain text


def test_existing_run_needs_resume_and_resume_needs_a_run(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=2)
    run(cfg, tmp_path, "twice")
    with pytest.raises(TrainingError, match="--resume"):
        run(cfg, tmp_path, "twice")
    with pytest.raises(CheckpointError, match="nothing to resume"):
        run(cfg, tmp_path, "fresh", resume=True)
    changed = tiny_cfg(tmp_path, max_steps=2)
    changed.model.hidden_size = 12
    with pytest.raises(UsageError, match="model.hidden_size: 8 -> 12"):  # exit 2: a usage mistake
        run(changed, tmp_path, "twice", resume=True)
    longer = tiny_cfg(tmp_path, max_steps=3)  # train settings may change on resume
    assert run(longer, tmp_path, "twice", resume=True).steps == 3


def test_small_corpus_trains_with_a_smaller_batch_and_says_so(tmp_path):
    result = run(tiny_cfg(tmp_path, batch_size=512, max_steps=2), tmp_path, "small")
    assert result.steps == 2 and any("batches of" in note for note in result.notes)


def test_schedules():
    def cfg(**kw):
        return tiny_cfg(__import__("pathlib").Path("/tmp"), lr=1.0, max_steps=100, **kw).train

    warm = Schedule(cfg(warmup_steps=10))
    assert warm.lr(0) == pytest.approx(0.1) and warm.lr(9) == 1.0 and warm.lr(50) == 1.0
    cosine = Schedule(cfg(schedule="cosine"))
    assert cosine.lr(0) == 1.0 and cosine.lr(50) == pytest.approx(0.5) and cosine.lr(100) == pytest.approx(0.0)
    step = Schedule(cfg(schedule="step", step_size=10, gamma=0.5))
    assert step.lr(9) == 1.0 and step.lr(10) == 0.5 and step.lr(25) == 0.25
    plateau = Schedule(cfg(schedule="plateau", gamma=0.5))
    for loss in (1.0, 1.0, 1.0, 1.0):
        plateau.observe(loss)
    assert plateau.lr(0) == 0.5
    again = Schedule(cfg(schedule="plateau", gamma=0.5))
    again.load_state_dict(plateau.state_dict())
    assert again.lr(0) == 0.5 and again.plateau_best == 1.0
