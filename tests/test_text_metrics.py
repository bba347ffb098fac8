"""Generated-text metrics: distinct-n, self-BLEU, BLEU/chrF against references, and `rnnkit eval --generate`."""

from __future__ import annotations

import builtins
import json
import math

import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.data.vocab import EOS
from rnnkit.errors import RnnkitError
from rnnkit.evaluation.generated import DECODERS, reference_sentences
from rnnkit.evaluation.text import distinct_n, reference_scores, self_bleu, text_metrics
from rnnkit.generation.options import describe
from rnnkit.runs.loaded import load


def test_distinct_n_counts_word_ngrams_over_all_samples():
    texts = ["the cat sat", "the cat ran"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # the, cat, sat, ran out of 6 words
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # "the cat" twice
    assert distinct_n(texts, 3) == 1.0
    assert distinct_n(texts, 4) == 0.0  # no 4-gram at all
    assert distinct_n(["a a a a"], 1) == 0.25


def test_self_bleu_is_100_for_copies_and_low_for_unrelated_samples():
    assert self_bleu(["we will make it great again"] * 3) == pytest.approx(100.0)
    varied = ["we will build a wall", "the economy is a disaster", "nobody knows more than me"]
    assert self_bleu(varied) < 10.0
    assert self_bleu(["only one"]) != self_bleu(["only one"])  # NaN: undefined for one sample


def test_reference_scores_reward_samples_found_in_the_references():
    references = ["we are going to win so much", "the economy is a total disaster", "believe me folks"]
    close = reference_scores(["the economy is a total disaster"], references)
    far = reference_scores(["xq zzv wpp"], references)
    assert close["bleu"] == pytest.approx(100.0) and close["chrf"] == pytest.approx(100.0)
    assert far["bleu"] < 5 and far["chrf"] < close["chrf"]


def test_text_metrics_row_and_undefined_values_are_none():
    row = text_metrics(["a b c", "a b c", "d e"], [True, True, False], references=[])
    assert row["samples"] == 3 and row["unique"] == 2
    assert row["eos_rate"] == pytest.approx(2 / 3) and row["mean_length"] == pytest.approx(13 / 3)
    assert row["bleu"] is None and row["chrf"] is None and row["references"] == 0
    json.dumps(row, allow_nan=False)
    assert text_metrics(["x"], [False])["self_bleu"] is None


def test_missing_sacrebleu_says_how_to_install_it(monkeypatch):
    real_import = builtins.__import__

    def no_sacrebleu(name, *args, **kwargs):
        if name.startswith("sacrebleu"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sacrebleu)
    with pytest.raises(RnnkitError, match=r"pip install 'rnnkit\[metrics\]'"):
        self_bleu(["a b", "c d"])
    assert distinct_n(["a b"], 1) == 1.0  # what needs no sacrebleu still works


def test_decoders_of_the_comparison_are_described():
    from rnnkit.config import GenerateConfig
    from rnnkit.generation.options import NEUTRAL

    names = [describe(GenerateConfig(**{**NEUTRAL, **settings})) for settings in DECODERS.values()]
    assert names == ["greedy", "sampling, T=0.8", "sampling, top-k 10", "sampling, nucleus 0.95", "beam 5",
                     "beam 5 + nucleus 0.95"]


# ---------------------------------------------------------------- end to end on a tiny run

TINY = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 80, "max_len": 30},
    "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4},
    "train": {"batch_size": 16, "max_steps": 4, "eval_every": 4, "checkpoint_every": 4, "device": "cpu"},
    "generate": {"temperature": 0.8, "max_len": 30},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    runner = CliRunner(env={"RNNKIT_DATA": str(root / "data")})
    result = runner.invoke(app, ["train", str(config), "--quiet", "--set", f"run.dir={root / 'runs'}"])
    assert result.exit_code == 0, result.output
    return runner, root / "runs" / "tiny"


def test_eval_generate_reports_text_metrics_with_the_runs_decoding(tiny_run):
    runner, run = tiny_run
    result = runner.invoke(app, ["eval", str(run), "--generate", "6", "--references", "20", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    # eval measures the checkpoint's validation bpc again: the figure training recorded for those weights
    assert record["bpc"] == pytest.approx(load(run, device="cpu").metrics["bpc"], rel=1e-6)
    (row,) = record["generation"]
    assert row["decoding"] == "sampling, T=0.8" and row["samples"] == 6
    assert 0 < row["references"] <= 20  # the test split of this tiny corpus has fewer sentences
    # The same 6 samples as `rnnkit generate` decodes with the run's settings, scored here against the first
    # 20 test sentences: every figure of the row is the metric of those samples.
    generated = runner.invoke(app, ["generate", str(run), "--num", "6", "--json"])
    assert generated.exit_code == 0, generated.output
    samples = [json.loads(line) for line in generated.stdout.splitlines()]
    references = reference_sentences(load(run, device="cpu", data_root=run.parent.parent / "data").data(), 20)
    expected = text_metrics([s["text"] for s in samples], [s["finished"] for s in samples], references)
    assert expected["self_bleu"] is not None and expected["bleu"] is not None  # defined: 6 samples, references
    assert {key: row[key] for key in expected} == pytest.approx(expected)


def test_eval_compare_decoding_and_free_running_in_tables(tiny_run):
    runner, run = tiny_run
    result = runner.invoke(app, ["eval", str(run), "--compare-decoding", "--generate", "3", "--references", "10",
                                 "--free-running"])
    assert result.exit_code == 0, result.output
    for name in DECODERS:
        assert name in result.stdout, name
    assert "free-running loss" in result.stdout and "self-BLEU" in result.stdout
    result = runner.invoke(app, ["eval", str(run), str(run), "--free-running"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("free-running loss") == 1  # one table, a row per run
    result = runner.invoke(app, ["eval", str(run), "--compare-decoding", "--generate", "3", "--references", "0",
                                 "--free-running", "--json"])
    record = json.loads(result.stdout)
    rows = {r["decoding"]: r for r in record["generation"]}
    assert list(rows) == list(DECODERS)
    assert rows["greedy"]["unique"] == 1 and rows["beam 5"]["unique"] == 1  # deterministic: one sentence
    assert rows["greedy"]["bleu"] is None  # --references 0
    free = record["free_running"]
    assert set(free) == {"free_running_greedy", "free_running_sample"}
    assert free["free_running_greedy"]["loss"] == pytest.approx(_greedy_free_running_loss(run), rel=1e-5)
    assert free["free_running_sample"]["bpc"] == pytest.approx(free["free_running_sample"]["loss"] / math.log(2))


def _greedy_free_running_loss(run) -> float:
    """Nats per character of the validation sentences when the model, after EOS, reads only its own most likely
    character (PAD never) and is scored on the true one, EOS included: one sentence at a time, by hand."""
    loaded = load(run, device="cpu", data_root=run.parent.parent / "data")
    sentences = loaded.data().corpus.split("val")
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(sentences)):
            targets = [int(t) for t in sentences[i]] + [EOS]
            token, state = torch.tensor([EOS]), None
            for target in targets:
                log_probs, state = loaded.model.step(token, state)  # (1, V), PAD at -inf
                total -= float(log_probs[0, target])
                token = log_probs.argmax(-1)
            count += len(targets)
    return total / count
