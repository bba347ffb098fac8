"""Stream language models (data.mode: stream): the state carried across batches matters and is learned with,
the layout of the text is learned and generated, resume continues exactly, evaluation equals one pass."""

from __future__ import annotations

import os
import random
import re
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rnnkit.config import config_from_dict, load_config
from rnnkit.evaluation.split import split_sums
from rnnkit.generation.decoding import DecodeOptions
from rnnkit.generation.generate import generate
from rnnkit.runs.checkpoint import load_checkpoint
from rnnkit.runs.loaded import load
from rnnkit.training import train


def stream_cfg(tmp_path, corpus, window=32, **train_overrides):
    train_section = {"batch_size": 8, "max_steps": 30, "eval_every": 10, "checkpoint_every": 100, "log_every": 5,
                     "histogram_every": 0, "seed": 0, "lr": 0.02, "device": "cpu"}
    train_section.update(train_overrides)
    return config_from_dict({
        "task": "lm",
        "data": {"source": "text", "path": str(corpus), "mode": "stream", "window": window, "val_fraction": 0.1,
                 "test_fraction": 0.05},
        "model": {"cell": "lstm", "hidden_size": 24, "embedding_dim": 8},
        "train": train_section,
        "run": {"name": "stream", "dir": str(tmp_path / "runs")},
    })


def run(cfg, tmp_path, name, **kwargs):
    return train(cfg, quiet=True, run_dir=tmp_path / name, data_root=tmp_path / "data", **kwargs)


@pytest.fixture
def key_corpus(tmp_path):
    """Lines `K abcdefghijklmnopqrst K`: the second K repeats the first, 21 characters back."""
    rng = random.Random(0)
    lines = []
    for _ in range(1500):
        key = rng.choice("xy")
        lines.append(f"{key}abcdefghijklmnopqrst{key}\n")
    path = tmp_path / "keys.txt"
    path.write_text("".join(lines))
    return path


def test_the_carried_state_is_what_predicts_a_character_more_than_a_window_back(tmp_path, key_corpus):
    cfg = stream_cfg(tmp_path, key_corpus, window=48, max_steps=250, eval_every=250)
    result = run(cfg, tmp_path, "keys")
    loaded = load(tmp_path / "keys", device="cpu", data_root=tmp_path / "data")
    # Score the validation split in windows of 16 characters: the key is 21 back, always more than one window.
    loaded.cfg.data.window = 16
    task = loaded.data()
    carried = split_sums(task, loaded.model, "val", 4, loaded.device)
    cold = {"loss_sum": 0.0, "count": 0.0}
    with torch.no_grad():
        for batch in task.batches("val", 4, seed=0, shuffle=False):
            sums, _ = task.eval_sums_carried(loaded.model, batch, loaded.device, None)  # every window from zeros
            cold = {k: cold[k] + sums[k] for k in cold}
    assert carried["count"] == cold["count"] > 0
    with_state, without = carried["loss_sum"] / carried["count"], cold["loss_sum"] / cold["count"]
    # A line holds one unpredictable bit (ln 2 / 23 = 0.030 nats per character) when the key is remembered.
    assert with_state < 0.08 and without > 2 * with_state, (with_state, without)
    assert result.best_metrics["loss"] == pytest.approx(with_state, abs=2e-3)  # window 16 or 48: the same pass


def test_evaluation_in_rows_equals_one_pass_over_the_split(tmp_path, key_corpus):
    cfg = stream_cfg(tmp_path, key_corpus, window=24, max_steps=40)
    run(cfg, tmp_path, "rows")
    loaded = load(tmp_path / "rows", device="cpu", data_root=tmp_path / "data")
    task = loaded.data()
    stream = task.corpus.split("val").stream().long()
    with torch.no_grad():
        logits, _ = loaded.model(stream[:-1].unsqueeze(1))  # one row, the whole split
        one_pass = float(torch.nn.functional.cross_entropy(logits[:, 0], stream[1:]))
    for rows in (1, 8):
        sums = split_sums(task, loaded.model, "val", rows, loaded.device)
        assert sums["count"] == len(stream) - 1
        assert sums["loss_sum"] / sums["count"] == pytest.approx(one_pass, abs=1e-3)


def test_the_layout_is_learned_and_generated(tmp_path):
    blocks = []
    for i in range(400):
        blocks.append(f"def f{i % 10}(x):\n    if x:\n        return {i % 10}\n    return x\n\n")
    corpus = tmp_path / "code.py"
    corpus.write_text("".join(blocks))
    cfg = stream_cfg(tmp_path, corpus, window=40, max_steps=300, eval_every=300, lr=0.03)
    run(cfg, tmp_path, "code")
    loaded = load(tmp_path / "code", device="cpu")
    prompt = loaded.vocab.encode("def f3(x):\n")
    [sample] = generate(loaded.model, loaded.vocab, prompt, DecodeOptions(greedy=True, max_len=60), 0,
                        loaded.device, stream=True)
    # Line breaks, indentation of 4 and 8 and the empty line between functions, as in the corpus.
    assert re.match(r"    if x:\n        return \d\n    return x\n\ndef f\d\(x\):\n    if", sample.text), sample.text


def test_an_interrupted_and_resumed_stream_run_ends_with_the_same_weights(tmp_path):
    # 30 steps of 8 rows x 32 characters over ~2,900 training characters: about 11 steps an epoch, so the
    # resume point, the epoch boundaries and their offsets all matter; dropout draws from the restored RNG.
    rng = random.Random(1)
    corpus = tmp_path / "small.txt"
    corpus.write_text("".join(f"{k}abcdefghijklmnopqrst{k}\n" for k in rng.choices("xy", k=150)))
    cfg = stream_cfg(tmp_path, corpus, max_steps=30, checkpoint_every=7)
    cfg.model.dropout = 0.1
    straight = run(cfg, tmp_path, "straight")
    assert straight.epoch >= 2

    def interrupt_at_11(trainer):
        if trainer.step == 11:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path, "resumed", on_step=interrupt_at_11)
    ckpt = load_checkpoint(tmp_path / "resumed", "last")
    assert ckpt.step == 11 and set(ckpt.carried) == {"state.0", "state.1"}  # the LSTM's (h, c), every row
    assert ckpt.carried["state.0"].shape == (1, 8, 24)
    resumed = run(cfg, tmp_path, "resumed", resume=True)
    assert resumed.losses == pytest.approx(straight.losses[11:], abs=1e-6)
    a, b = load_file(str(tmp_path / "straight" / "last" / "model.safetensors")), load_file(
        str(tmp_path / "resumed" / "last" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


TINY = ["model.hidden_size=16", "model.num_layers=1", "model.embedding_dim=8", "train.batch_size=4",
        "train.max_steps=3", "train.eval_every=3", "train.eval_batches=2", "train.checkpoint_every=3",
        "train.histogram_every=0", "train.device=cpu", "train.warmup_steps=1"]
SPEECHES = Path(__file__).resolve().parents[2] / "shared" / "data" / "trump_speeches" / "speeches.txt"


def test_the_code_preset_trains_on_a_folder_of_python(tmp_path):
    # code_lstm as shipped but on rnnkit's own source (the standard library takes a minute to prepare) and tiny
    package = Path(__file__).resolve().parents[1] / "rnnkit"
    cfg = load_config("code_lstm", [*TINY, "data.source=rnnkitsrc", f"data.path={package}", "data.glob=*.py"])
    result = run(cfg, tmp_path, "code")
    assert result.steps == 3 and 0 < result.best_metrics["bpc"] < 8
    corpus = load(tmp_path / "code", device="cpu", data_root=tmp_path / "data").data().corpus
    assert corpus.mode == "stream" and corpus.manifest["source"]["files"] > 50


@pytest.mark.realdata
def test_the_trump_stream_preset_trains_on_the_raw_speeches(tmp_path):
    if not SPEECHES.is_file():
        pytest.skip("../shared/data is not beside the checkout")
    cfg = load_config("trump_stream", [*TINY, f"data.path={SPEECHES}"])
    result = run(cfg, tmp_path, "speeches")
    assert result.steps == 3 and 0 < result.best_metrics["bpc"] < 8


def test_inspect_grads_reads_a_stream_run_in_windows_of_its_own_corpus(tmp_path, key_corpus, monkeypatch):
    from rnnkit.diagnostics.targets import inspect_target

    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    run(stream_cfg(tmp_path, key_corpus, max_steps=2, eval_every=2), tmp_path, "grads")
    report, loaded = inspect_target(str(tmp_path / "grads"), length=12, batches=1)
    assert loaded.cfg.data.mode == "stream" and loaded.cfg.data.window == 12  # not re-prepared as sentences
    assert report is not None
