"""`task: classify` on tiny synthetic stations and on the sample language files: batches, training, eval report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.config import config_from_dict
from rnnkit.data.metro import SLOTS, save_metro, synthetic_metro
from rnnkit.errors import UsageError
from rnnkit.tasks import ClassifyTask

LANGID = Path(__file__).resolve().parents[1] / "data" / "langid"
CLASSES = f"fr={LANGID / 'fr.txt'},en={LANGID / 'en.txt'}"


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture
def metro_file(tmp_path):
    return save_metro(tmp_path / "m.npz", *synthetic_metro(train_days=3, test_days=3, stations=6, seed=0))


def _metro_cfg(path, **data):
    return {"task": "classify",
            "data": {"source": "metro", "path": str(path), "stations": 3, "val_days": 1, "window": 12,
                     "min_window": 4, "normalise": "flow", **data},
            "model": {"cell": "gru", "hidden_size": 8},
            "train": {"batch_size": 16, "max_steps": 4, "eval_every": 4, "checkpoint_every": 4, "device": "cpu",
                      "histogram_every": 0, "lr": 0.01}}


def test_training_windows_vary_in_length_between_batches_only(metro_file, tmp_path):
    task = ClassifyTask(config_from_dict(_metro_cfg(metro_file)), tmp_path).setup()
    loader = task.batches("train", 32, seed=0, shuffle=True)
    loader.set_epoch(0)
    shapes = [(x.shape, labels.tolist(), lengths.tolist()) for x, labels, lengths in loader]
    lengths = {s[0][0] for s in shapes}
    assert len(lengths) > 1 and all(4 <= n <= 12 for n in lengths)
    assert all(set(n) == {s[0]} for s, _, n in shapes)  # one length per batch
    assert all(0 <= c < 3 for _, labels, _ in shapes for c in labels) and shapes[0][0][2] == 2
    loader.set_epoch(0)
    assert [(x.shape, y.tolist()) for x, y, _ in loader] == [(s, y) for s, y, _ in shapes]  # reproducible
    inflow = ClassifyTask(config_from_dict(_metro_cfg(metro_file, flows="in")), tmp_path).setup()
    assert next(iter(inflow.batches("val", 8, 0, False)))[0].shape == (12, 8, 1)
    assert inflow.num_sequences("test") == 2 * 3 * (SLOTS - 12 + 1)


def test_metro_classify_train_and_eval_report(metro_file, tmp_path, runner):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_metro_cfg(metro_file)))
    result = runner.invoke(app, ["train", "c.yaml", "--set", "model.bidirectional=true"])
    assert result.exit_code == 0, result.output
    assert "time steps/s" in result.output and "char/s" not in result.output  # time steps read, not characters
    result = runner.invoke(app, ["eval", "runs/c", "--split", "test", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["task"] == "classify" and record["classes"] == ["station 0", "station 1", "station 2"]
    confusion = record["confusion"]
    assert len(confusion) == 3 and sum(map(sum, confusion)) == record["items"] == 2 * 3 * (SLOTS - 12 + 1)
    assert record["accuracy"] == pytest.approx(sum(confusion[k][k] for k in range(3)) / record["items"])
    assert record["error"] == pytest.approx(1 - record["accuracy"])
    lengths = [row["length"] for row in record["accuracy_by_length"]]
    assert {4, 12, SLOTS} <= set(lengths) and lengths == sorted(lengths)
    result = runner.invoke(app, ["eval", "runs/c", "--split", "test"])
    assert result.exit_code == 0 and "confusion" in result.stdout and "window" in result.stdout


def test_langid_prepare_train_eval(tmp_path, runner):
    args = ["prepare", "langid", "--class", f"fr={LANGID / 'fr.txt'}", "--class", f"en={LANGID / 'en.txt'}",
            "--charset", "unicode"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fr (40)" in result.output and "en (40)" in result.output
    cfg = {"task": "classify", "data": {"source": "langid", "classes": CLASSES, "charset": "unicode",
                                        "val_fraction": 0.1, "test_fraction": 0.2},
           "model": {"cell": "lstm", "hidden_size": 8, "embedding_dim": 4},
           "train": {"batch_size": 8, "max_steps": 4, "eval_every": 2, "checkpoint_every": 2, "device": "cpu",
                     "histogram_every": 0}}
    (tmp_path / "l.yaml").write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["train", "l.yaml", "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "l" / "vocab.json").is_file()
    result = runner.invoke(app, ["eval", "runs/l", "--split", "test", "--json"])
    record = json.loads(result.stdout)
    assert record["classes"] == ["fr", "en"] and record["items"] == 16
    assert [row["length"] for row in record["accuracy_by_length"]][:3] == [2, 4, 8]

    # Same size, other characters: the whole vocabulary is compared, not only its size.
    vocab_path = tmp_path / "runs" / "l" / "vocab.json"
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    replaced = vocab["chars"][-1]
    vocab["chars"][-1] = "\u2603"  # a snowman, in no sample file
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    result = runner.invoke(app, ["eval", "runs/l", "--json"])
    assert result.exit_code == 1
    assert "another vocabulary than the run's vocab.json (only in the run: '\u2603' (U+2603); only in the data: " \
           f"{replaced!r}" in " ".join(result.stderr.split())


@pytest.mark.parametrize("args, code, message", [
    (["--class", "fr"], 2, "--class 'fr': expected LABEL=PATH, e.g. fr=fr.txt"),
    (["--class", f"fr={LANGID / 'fr.txt'}"], 2, "1 class given; a classifier needs at least two --class LABEL=PATH"),
    (["--class", "fr=nope.txt", "--class", "en=nope2.txt"], 1, "nope.txt: no such file"),
])
def test_langid_mistakes_are_one_line(runner, args, code, message):
    result = runner.invoke(app, ["prepare", "langid", *args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code and len(lines) == 1 and message in lines[0], result.output


def test_classify_refuses_a_text_corpus(tmp_path):
    cfg = config_from_dict({"task": "classify", "data": {"source": "reber"}})
    with pytest.raises(UsageError, match="^task: classify reads data.source metro, metro-synthetic or langid, "
                                         "not 'reber'$"):
        ClassifyTask(cfg, tmp_path).setup()
