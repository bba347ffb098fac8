"""Scheduled sampling: the schedules, the per-sequence coin, and what the language model is actually fed."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit.config import config_from_dict
from rnnkit.data.datasets import sentence_batch
from rnnkit.data.vocab import PAD
from rnnkit.errors import ConfigError
from rnnkit.models import CharLM, masked_cross_entropy
from rnnkit.models.feedback import mix_inputs, pick_tokens
from rnnkit.tasks import LanguageModelTask
from rnnkit.tasks.lm import scheduled_forward
from rnnkit.training.teacher_forcing import TeacherForcingSchedule

VOCAB = 9


def batch(seed=0, sizes=(7, 4, 6)):
    g = torch.Generator().manual_seed(seed)
    sentences = [torch.randint(2, VOCAB, (n,), generator=g) for n in sizes]
    return sentence_batch(sentences)  # inputs (T, B), targets (T, B), lengths (B,)


def tiny_lm(seed=0):
    torch.manual_seed(seed)
    return CharLM(VOCAB, cell="lstm", hidden_size=8, embedding_dim=4, num_layers=2).eval()


def lm_cfg(**train):
    return config_from_dict({"task": "lm", "model": {"hidden_size": 8}, "train": train})


# ---------------------------------------------------------------- schedules

def test_constant_linear_and_inverse_sigmoid_schedules():
    assert TeacherForcingSchedule().always and TeacherForcingSchedule().probability(10**6) == 1.0
    assert not TeacherForcingSchedule(start=0.5).always
    linear = TeacherForcingSchedule(start=1.0, kind="linear", end=0.2, steps=100)
    assert [linear.probability(s) for s in (0, 50, 100, 500)] == pytest.approx([1.0, 0.6, 0.2, 0.2])
    inv = TeacherForcingSchedule(start=1.0, kind="inverse_sigmoid", end=0.0, steps=1000)
    values = [inv.probability(s) for s in range(0, 3000, 50)]
    assert all(a > b for a, b in zip(values[:-1], values[1:], strict=True))  # strictly decreasing
    assert values[0] > 0.98 and values[-1] < 1e-6
    assert inv.probability(500) == pytest.approx(0.5, abs=1e-6)  # halfway at steps / 2
    assert TeacherForcingSchedule(kind="inverse_sigmoid", steps=1).probability(10**9) == 0.0  # no overflow
    delayed = TeacherForcingSchedule(start=1.0, kind="linear", end=0.0, steps=10, delay=100)
    assert [delayed.probability(s) for s in (0, 99, 100, 105, 110)] == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.0])


def test_schedule_comes_from_the_train_section_and_is_validated():
    cfg = lm_cfg(teacher_forcing_schedule="linear", teacher_forcing_min=0.25, teacher_forcing_steps=10,
                 teacher_forcing_feed="greedy")
    schedule = TeacherForcingSchedule.from_config(cfg.train)
    assert (schedule.kind, schedule.end, schedule.steps, schedule.feed) == ("linear", 0.25, 10, "greedy")
    with pytest.raises(ConfigError, match="teacher_forcing_min: 0.9 is larger than train.teacher_forcing 0.5"):
        lm_cfg(teacher_forcing=0.5, teacher_forcing_schedule="linear", teacher_forcing_min=0.9)
    with pytest.raises(ConfigError, match="only task: lm or forecast"):
        config_from_dict({"task": "classify", "train": {"teacher_forcing": 0.5}})
    with pytest.raises(ConfigError, match="teacher_forcing_schedule: 'cosine' is not one of"):
        lm_cfg(teacher_forcing_schedule="cosine")


def test_mix_inputs_flips_one_coin_per_sequence():
    truth, prediction = torch.zeros(1000, 3), torch.ones(1000, 3)  # forecasting-shaped (B, D)
    assert mix_inputs(truth, prediction, 1.0) is truth
    assert torch.equal(mix_inputs(truth, prediction, 0.0), prediction)
    mixed = mix_inputs(truth, prediction, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(mixed.min(dim=1).values, mixed.max(dim=1).values)  # whole rows, never mixed within
    assert mixed[:, 0].mean().item() == pytest.approx(0.7, abs=0.05)  # prediction read 70% of the time
    with pytest.raises(ValueError, match="differ in shape"):
        mix_inputs(truth, prediction[:, :2], 0.5)


def test_pick_tokens_never_picks_the_forbidden_symbol():
    logits = torch.zeros(4, 5)
    logits[:, PAD] = 10.0
    assert (pick_tokens(logits, "greedy", forbidden=PAD) != PAD).all()
    sampled = pick_tokens(logits.repeat(50, 1), "sample", torch.Generator().manual_seed(0), forbidden=PAD)
    assert (sampled != PAD).all()


# ---------------------------------------------------------------- what the model reads

def test_probability_one_is_todays_teacher_forced_loss():
    model, (inputs, targets, lengths) = tiny_lm(), batch()
    task = LanguageModelTask(lm_cfg())
    today, count, _ = task.loss(model, (inputs, targets, lengths), torch.device("cpu"))
    same, _, _ = task.loss(model, (inputs, targets, lengths), torch.device("cpu"), teacher_forcing=1.0)
    assert torch.equal(today, same)  # the same one-pass code path
    logits, read = scheduled_forward(model, inputs, 1.0, "sample")
    assert torch.equal(read, inputs)  # every step read the truth
    looped = masked_cross_entropy(logits, targets, lengths, reduction="sum")
    torch.testing.assert_close(looped, today, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("feed", ["greedy", "sample"])
def test_probability_zero_feeds_the_model_its_own_predictions(feed):
    model, (inputs, targets, lengths) = tiny_lm(), batch()
    generator = torch.Generator().manual_seed(1)
    logits, read = scheduled_forward(model, inputs, 0.0, feed, generator)
    assert torch.equal(read[0], inputs[0])  # the start symbol is always given
    assert not torch.equal(read, inputs)  # then the text is the model's, not the corpus's
    if feed == "greedy":
        masked = logits.clone()
        masked[..., PAD] = -math.inf
        assert torch.equal(read[1:], masked[:-1].argmax(-1))  # step t+1 read the argmax of step t
    assert (read[1:] != PAD).all()
    # Reading `read` teacher-forced gives the same logits: that is exactly what the model was fed.
    replay, _ = model(read)
    torch.testing.assert_close(logits, replay, rtol=1e-5, atol=1e-5)
    free = masked_cross_entropy(logits, targets, lengths, reduction="sum")
    forced = masked_cross_entropy(model(inputs, lengths=lengths)[0], targets, lengths, reduction="sum")
    assert not torch.allclose(free, forced)


def test_free_running_sums_score_the_true_text_under_the_models_own_inputs():
    model, data = tiny_lm(), batch()
    task = LanguageModelTask(lm_cfg())
    sums = task.free_running_sums(model, data, torch.device("cpu"), "greedy")
    assert sums["count"] == float(data[2].sum())
    logits, _ = scheduled_forward(model, data[0], 0.0, "greedy")
    expected = masked_cross_entropy(logits, data[1], data[2], reduction="sum")
    assert sums["loss_sum"] == pytest.approx(float(expected.detach()), rel=1e-6)


# ---------------------------------------------------------------- in the training loop

def test_scheduled_training_logs_the_probability_and_resumes_exactly(tmp_path):
    import os
    import signal

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rnnkit.training import train

    cfg = config_from_dict({
        "task": "lm",
        "data": {"source": "reber", "num_samples": 60, "max_len": 20},
        "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4, "dropout": 0.1},
        "train": {"batch_size": 8, "max_steps": 6, "eval_every": 3, "checkpoint_every": 100, "log_every": 1,
                  "histogram_every": 2, "seed": 1, "device": "cpu", "teacher_forcing_schedule": "linear",
                  "teacher_forcing_steps": 4, "teacher_forcing_min": 0.0},
    })

    def run(name, **kwargs):
        return train(cfg, quiet=True, run_dir=tmp_path / name, data_root=tmp_path / "data", **kwargs)

    straight = run("straight")
    events = EventAccumulator(str(tmp_path / "straight" / "tb"))
    events.Reload()
    logged = [e.value for e in events.Scalars("train/teacher_forcing")]
    assert logged == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0, 0.0])  # p of steps 1..6

    def interrupt_at_3(trainer):
        if trainer.step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run("resumed", on_step=interrupt_at_3)
    resumed = run("resumed", resume=True)
    assert resumed.losses == pytest.approx(straight.losses[3:], abs=1e-6)


def test_delayed_schedule_trains_exactly_like_teacher_forcing_until_the_decay(tmp_path):
    from rnnkit.training import train

    def cfg(**tf):
        return config_from_dict({
            "task": "lm", "data": {"source": "reber", "num_samples": 60, "max_len": 20},
            "model": {"cell": "lstm", "hidden_size": 8, "embedding_dim": 4, "dropout": 0.1},
            "train": {"batch_size": 8, "max_steps": 5, "eval_every": 100, "histogram_every": 0, "seed": 2,
                      "device": "cpu", **tf}})

    forced = train(cfg(), quiet=True, run_dir=tmp_path / "tf", data_root=tmp_path / "data")
    delayed = train(cfg(teacher_forcing_schedule="linear", teacher_forcing_delay=3, teacher_forcing_steps=2),
                    quiet=True, run_dir=tmp_path / "ss", data_root=tmp_path / "data")
    assert delayed.losses[:4] == forced.losses[:4]  # p = 1 up to step 3 (0-based): the same fast path
    assert delayed.losses[4] != forced.losses[4]  # p = 0.5 at the fifth step
