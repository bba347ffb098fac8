"""Bad input through the real CLI entry point: one `error:` line, exit 2 (usage/config) or 1 (runtime), no
traceback, and nothing written or changed on disk. One parametrized case per bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from rnnkit.cli import main
from rnnkit.training import train

TINY = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 80, "max_len": 30},
    "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4},
    "train": {"batch_size": 16, "max_steps": 4, "eval_every": 2, "checkpoint_every": 2, "device": "cpu"},
}
SENTENCES = "The cat sat on the mat. A dog ran far away! Is it raining now? Yes it is.\n"


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def rnnkit(capsys, *args) -> Outcome:
    """Run the console-script entry point in-process; an exception escaping it fails the test as it should."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    out, err = capsys.readouterr()
    return Outcome(code, out, err)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256) and every folder (-> 'dir')."""
    files = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        files[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return files


# ---------------------------------------------------------------- a trained run shared by the cases

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """runs/tiny: TINY trained for 4 steps (last and best), data prepared under the same folder."""
    root = tmp_path_factory.mktemp("trained")
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(TINY))
    from rnnkit.config import load_config

    train(load_config(cfg_path), quiet=True, run_dir=root / "runs" / "tiny", data_root=root / "data")
    return root


@pytest.fixture
def env(tmp_path, monkeypatch, trained):
    """A fresh working folder holding a copy of the trained run, TINY as tiny.yaml, a small corpus."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    shutil.copytree(trained / "data", tmp_path / "data")
    shutil.copytree(trained / "runs", tmp_path / "runs")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "corpus.txt").write_text(SENTENCES * 20)
    return tmp_path


RUN = Path("runs/tiny")


def config(tmp: Path, edit: Callable[[dict], object] | None = None, text: str | bytes | None = None) -> Path:
    """bad.yaml: TINY edited in place by `edit`, or the literal `text`."""
    path = tmp / "bad.yaml"
    if text is not None:
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
        return path
    data = json.loads(json.dumps(TINY))
    edit(data)
    path.write_text(yaml.safe_dump(data))
    return path


def corpus(tmp: Path, data: bytes, extra: dict | None = None) -> Path:
    """A config training on the corpus `data` (written to own.txt)."""
    (tmp / "own.txt").write_bytes(data)
    return config(tmp, lambda c: c.update(data={"source": "own", "path": "own.txt", **(extra or {})}))


def _write(folder: Path, data: bytes, name: str = "own.txt") -> Path:
    (folder / name).write_bytes(data)
    return folder / name


def put(path: Path, data: bytes | str) -> None:
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def edit_yaml(path: Path, edit: Callable[[dict], object]) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))


def foreign_safetensors(path: Path) -> None:
    save_file({"weight": torch.zeros(3)}, str(path))


@dataclass
class Case:
    """argv(tmp) prepares the bad input in the working folder and returns the command line."""

    id: str
    argv: Callable[[Path], list]
    code: int
    message: str  # a fragment the one error line must contain
    setup: Callable[[pytest.MonkeyPatch], object] | None = None  # environment the case needs


def _set(key, value):
    """An edit of TINY: set `section.name` to `value`."""
    section, name = key.split(".")
    return lambda c: c.setdefault(section, {}).__setitem__(name, value)


CONFIG_CASES = [
    Case("unknown-top-level-key", lambda t: ["train", config(t, lambda c: c.update(modle={}))], 2,
         "modle: unknown key; did you mean model?"),
    Case("unknown-data-key", lambda t: ["train", config(t, _set("data.sorce", "reber"))], 2,
         "data.sorce: unknown key; did you mean data.source?"),
    Case("unknown-model-key", lambda t: ["train", config(t, _set("model.hiden_size", 8))], 2,
         "model.hiden_size: unknown key; did you mean model.hidden_size?"),
    Case("unknown-train-key", lambda t: ["train", config(t, _set("train.bach_size", 8))], 2,
         "train.bach_size: unknown key; did you mean train.batch_size?"),
    Case("unknown-generate-key", lambda t: ["train", config(t, _set("generate.temprature", 1))], 2,
         "generate.temprature: unknown key; did you mean generate.temperature?"),
    Case("unknown-run-key", lambda t: ["train", config(t, _set("run.nmae", "x"))], 2,
         "run.nmae: unknown key; did you mean run.name?"),
    Case("key-under-a-value", lambda t: ["train", config(t, _set("model.cell", {"kind": "gru"}))], 2,
         "model.cell: expected a string, got {'kind': 'gru'}"),
    Case("wrong-type-int", lambda t: ["train", config(t, _set("model.hidden_size", "big"))], 2,
         "model.hidden_size: expected an integer, got 'big'"),
    Case("wrong-type-bool", lambda t: ["train", config(t, _set("data.lowercase", 3))], 2,
         "data.lowercase: expected true or false, got 3"),
    Case("wrong-type-float", lambda t: ["train", config(t, _set("train.lr", [0.1]))], 2,
         "train.lr: expected a number, got [0.1]"),
    Case("non-finite-float", lambda t: ["train", config(t, _set("train.lr", float("nan")))], 2,
         "train.lr: expected a finite number"),
    Case("infinite-float", lambda t: ["train", config(t, _set("train.clip_grad_norm", float("inf")))], 2,
         "train.clip_grad_norm: expected a finite number"),
    Case("not-a-choice", lambda t: ["train", config(t, _set("model.cell", "transformer"))], 2,
         "model.cell: 'transformer' is not one of rnn, gru, lstm"),
    Case("zero-hidden-size", lambda t: ["train", config(t, _set("model.hidden_size", 0))], 2,
         "model.hidden_size: 0 must be >= 1"),
    Case("negative-hidden-size", lambda t: ["train", config(t, _set("model.hidden_size", -8))], 2,
         "model.hidden_size: -8 must be >= 1"),
    Case("zero-batch-size", lambda t: ["train", config(t, _set("train.batch_size", 0))], 2,
         "train.batch_size: 0 must be >= 1"),
    Case("negative-layers", lambda t: ["train", config(t, _set("model.num_layers", -1))], 2,
         "model.num_layers: -1 must be >= 1"),
    Case("zero-max-steps", lambda t: ["train", config(t, _set("train.max_steps", 0))], 2,
         "train.max_steps: 0 must be >= 1"),
    Case("zero-lr", lambda t: ["train", config(t, _set("train.lr", 0))], 2, "train.lr: 0.0 must be > 0"),
    Case("negative-embedding", lambda t: ["train", config(t, _set("model.embedding_dim", -1))], 2,
         "model.embedding_dim: -1 must be >= 0"),
    Case("dropout-one", lambda t: ["train", config(t, _set("model.dropout", 1.0))], 2,
         "model.dropout: 1.0 must be < 1.0"),
    Case("dropout-negative", lambda t: ["train", config(t, _set("model.dropout", -0.1))], 2,
         "model.dropout: -0.1 must be >= 0.0"),
    Case("every-problem-at-once", lambda t: ["train", config(t, lambda c: c["model"].update(
        hidden_size=0, dropout=2, cel="gru"))], 2,
         "model.cel: unknown key; did you mean model.cell?; model.dropout: 2.0 must be < 1.0; "
         "model.hidden_size: 0 must be >= 1"),
    Case("section-not-a-mapping", lambda t: ["train", config(t, lambda c: c.update(model=5))], 2,
         "model: expected a mapping of keys to values, got 5"),
    Case("yaml-list", lambda t: ["train", config(t, text="- a\n- b\n")], 2,
         "expected a mapping of sections (task, data, model, train, generate, run), got list"),
    Case("yaml-scalar", lambda t: ["train", config(t, text="hello\n")], 2,
         "expected a mapping of sections (task, data, model, train, generate, run), got str"),
    Case("empty-file", lambda t: ["train", config(t, text="")], 2, "the file is empty"),
    Case("comments-only", lambda t: ["train", config(t, text="# nothing here\n\n")], 2, "the file is empty"),
    Case("binary-file", lambda t: ["train", config(t, text=bytes(range(256)))], 2,
         "not a text file (expected YAML)"),
    Case("invalid-yaml", lambda t: ["train", config(t, text="model: [1, 2\n")], 2, "not valid YAML at line 2"),
    Case("missing-config", lambda t: ["train", "nope.yaml"], 2, "nope.yaml: no such config file"),
    Case("brackets-are-not-markup", lambda t: ["train", "[exp].yaml"], 2, "error: [exp].yaml: no such config file"),
    Case("config-is-a-folder", lambda t: ["train", "runs"], 2, "runs: is a folder, expected a YAML config file"),
    Case("cross-field-nonlinearity", lambda t: ["train", config(t, lambda c: c["model"].update(
        nonlinearity="relu"))], 2, "model.nonlinearity: only applies to model.cell: rnn"),
    Case("cross-field-bidirectional-lm", lambda t: ["train", config(t, _set("model.bidirectional", True))], 2,
         "model.bidirectional: only task: classify can read the future"),
    Case("cross-field-min-max-len", lambda t: ["train", config(t, _set("data.min_len", 50))], 2,
         "data.min_len: 50 is larger than data.max_len 30"),
    Case("cross-field-fractions", lambda t: ["train", config(t, lambda c: c["data"].update(
        val_fraction=0.5, test_fraction=0.45))], 2, "must leave at least 10% for training"),
    Case("empty-run-name", lambda t: ["train", config(t, _set("run.name", ""))], 2,
         "run.name: '' must not be empty and names one folder under run.dir"),
    Case("run-name-a-path", lambda t: ["train", "tiny.yaml", "--set", "run.name=../elsewhere"], 2,
         "run.name: '../elsewhere' must not be empty and names one folder under run.dir"),
    Case("run-dir-is-a-file", lambda t: ["train", "tiny.yaml", "--run-dir", "corpus.txt"], 1,
         "corpus.txt: cannot create the run folder (File exists)"),
    # 360 TB: more than any address space, so the allocation fails at once whatever the overcommit policy.
    Case("model-too-large-for-memory", lambda t: ["train", "tiny.yaml", "--set", f"model.embedding_dim={10**13}",
                                                  "--set", "run.name=huge"], 1, "out of memory ([enforce fail"),
    Case("set-without-equals", lambda t: ["train", "tiny.yaml", "--set", "train.lr"], 2,
         "--set 'train.lr': expected section.key=value"),
    Case("set-empty-key", lambda t: ["train", "tiny.yaml", "--set", "=3"], 2, "expected section.key=value"),
    Case("set-empty-part", lambda t: ["train", "tiny.yaml", "--set", "train..lr=3"], 2,
         "expected section.key=value"),
    Case("set-unknown-key", lambda t: ["train", "tiny.yaml", "--set", "train.lrr=0.1"], 2,
         "train.lrr: unknown key; did you mean train.lr?"),
    Case("set-into-a-value", lambda t: ["train", "tiny.yaml", "--set", "task.x=1"], 2, "task is not a section"),
    Case("set-bad-value", lambda t: ["train", "tiny.yaml", "--set", "train.lr=abc"], 2,
         "train.lr: expected a number, got 'abc'"),
    Case("set-bad-choice", lambda t: ["train", "tiny.yaml", "--set", "model.cell=transformer"], 2,
         "'transformer' is not one of rnn, gru, lstm"),
    Case("set-unparsable-yaml", lambda t: ["train", "tiny.yaml", "--set", "model.hidden_size=[8"], 2,
         "model.hidden_size: expected an integer, got '[8'"),
]

DATA_CASES = [
    Case("corpus-missing", lambda t: ["train", config(t, lambda c: c.update(
        data={"source": "own", "path": "missing.txt"}))], 1, "missing.txt: no such file"),
    Case("corpus-folder-matches-nothing", lambda t: ["train", config(t, lambda c: c.update(
        data={"source": "own", "path": "runs", "glob": "*.txt"}))], 1, "runs: no file name matches '*.txt'"),
    Case("corpus-glob-on-a-file", lambda t: ["train", config(t, lambda c: c.update(
        data={"source": "own", "path": "corpus.txt", "glob": "*.txt"}))], 2,
         "--glob / data.glob: selects files in a folder, and corpus.txt is not a folder"),
    Case("corpus-empty", lambda t: ["train", corpus(t, b"")], 1, "own.txt: the corpus is empty"),
    Case("corpus-whitespace", lambda t: ["train", corpus(t, b" \n\n\t \n")], 1, "own.txt: the corpus is empty"),
    Case("corpus-binary", lambda t: ["train", corpus(t, bytes(range(256)) * 10)], 1,
         "looks binary (NUL byte at offset 0)"),
    Case("corpus-not-utf8", lambda t: ["train", corpus(t, "caf\xe9 cr\xe8me br\xfbl\xe9e. ".encode("latin-1") * 50)],
         1, "not UTF-8 text (first invalid byte at offset 3)"),
    Case("corpus-only-short-sentences", lambda t: ["train", corpus(t, b"a. b. c. d.\n", {"min_len": 5})], 1,
         "no sentence of 5..300 characters after cleaning"),
    Case("corpus-too-large", lambda t: ["train", corpus(t, SENTENCES.encode() * 100)], 1,
         "bytes is more than the 1,000 allowed (set RNNKIT_MAX_CORPUS_BYTES",
         lambda mp: mp.setenv("RNNKIT_MAX_CORPUS_BYTES", "1000")),
    Case("corpus-larger-than-memory", lambda t: ["prepare", "own", "--from", _write(t, SENTENCES.encode() * 1400)],
         1, "own.txt: 103,600 bytes would need about 2.4 MB of memory to prepare as sentences and 1.0 MB is available",
         lambda mp: mp.setattr("rnnkit.data.sources.available_memory", lambda: 1024**2)),
    Case("max-corpus-bytes-not-a-number", lambda t: ["prepare", "own", "--from", "corpus.txt"], 2,
         "RNNKIT_MAX_CORPUS_BYTES: expected a number of bytes, got 'lots'",
         lambda mp: mp.setenv("RNNKIT_MAX_CORPUS_BYTES", "lots")),
    Case("corpus-sentence-too-long", lambda t: ["train", corpus(t, b"x" * 5000 + b".\n" + SENTENCES.encode(),
                                                               {"too_long": "error"})], 1,
         "sentence 1 has 5,001 characters, more than data.max_len 300 (data.too_long: error)"),
    Case("unknown-source", lambda t: ["train", config(t, _set("data.source", "nosuch"))], 2,
         "unknown source 'nosuch'"),
    Case("prepare-missing-file", lambda t: ["prepare", "own", "--from", "missing.txt"], 1,
         "missing.txt: no such file"),
    Case("prepare-bad-name", lambda t: ["prepare", "../up", "--from", "corpus.txt"], 2,
         "dataset name '../up': use letters, digits"),
    Case("prepare-unknown-source", lambda t: ["prepare", "nosuch"], 2, "unknown source 'nosuch'"),
    Case("prepare-bad-charset", lambda t: ["prepare", "own", "--from", "corpus.txt", "--charset", "ebcdic"], 2,
         "data.charset: 'ebcdic' is not one of ascii, unicode"),
    Case("prepare-zero-max-len", lambda t: ["prepare", "own", "--from", "corpus.txt", "--max-len", "0"], 2,
         "data.max_len: 0 must be >= 1"),
]


def _damage(relative: str, action: Callable[[Path], object]):
    def argv_for(verb: list[str]):
        def build(tmp: Path) -> list:
            action(tmp / RUN / relative)
            return verb
        return build
    return argv_for


EVAL = ["eval", RUN]
GENERATE = ["generate", RUN, "--max-len", "5"]
RESUME = ["train", "tiny.yaml", "--resume", "--run-dir", RUN, "--set", "train.max_steps=6"]

CHECKPOINT_CASES = [
    Case("model-truncated", _damage("best/model.safetensors", lambda p: put(p, p.read_bytes()[:100]))(EVAL), 1,
         "not a readable safetensors file"),
    Case("model-zeroed", _damage("best/model.safetensors", lambda p: put(p, bytes(p.stat().st_size)))(GENERATE), 1,
         "not a readable safetensors file"),
    Case("model-tiny", _damage("best/model.safetensors", lambda p: put(p, b"abc"))(EVAL), 1,
         "truncated (3 bytes); the checkpoint is corrupt"),
    Case("model-foreign", _damage("best/model.safetensors", foreign_safetensors)(GENERATE), 1,
         "not written by rnnkit"),
    Case("model-missing", _damage("best/model.safetensors", Path.unlink)(EVAL), 1,
         "missing; the checkpoint is incomplete"),
    Case("last-model-zeroed-resume", _damage("last/model.safetensors", lambda p: put(p, bytes(500)))(RESUME), 1,
         "not a readable safetensors file"),
    Case("optimizer-truncated-resume", _damage("last/optimizer.safetensors",
                                               lambda p: put(p, p.read_bytes()[:-7]))(RESUME), 1,
         "optimizer.safetensors: not a readable safetensors file"),
    Case("state-json-garbage", _damage("best/state.json", lambda p: put(p, "{not json"))(EVAL), 1,
         "state.json: unreadable"),
    Case("state-json-foreign", _damage("best/state.json", lambda p: put(p, "[1, 2]"))(GENERATE), 1,
         "state.json: not an rnnkit checkpoint"),
    Case("newer-format", _damage("best/state.json", lambda p: edit_json(p, format_version=99))(EVAL), 1,
         "checkpoint format 99 was written by a newer rnnkit"),
    Case("newer-format-resume", _damage("last/state.json", lambda p: edit_json(p, format_version=2))(RESUME), 1,
         "checkpoint format 2 was written by a newer rnnkit"),
    Case("config-does-not-match-weights", _damage("config.yaml", lambda p: edit_yaml(
        p, lambda c: c["model"].update(hidden_size=16)))(GENERATE), 1,
         "the weights do not fit the model of config.yaml"),
    Case("vocabulary-does-not-match", _damage("vocab.json", lambda p: edit_json(
        p, chars=json.loads(p.read_text())["chars"] + ["~"]))(EVAL), 1,
         "the model config or vocabulary differs from the one trained"),
    Case("vocabulary-missing", _damage("vocab.json", Path.unlink)(GENERATE), 1,
         "no such vocabulary file (the run folder is incomplete or damaged)"),
    Case("vocabulary-garbage", _damage("vocab.json", lambda p: put(p, "\x00\x01"))(GENERATE), 1,
         "cannot read the vocabulary"),
    Case("config-yaml-missing", _damage("config.yaml", Path.unlink)(EVAL), 1,
         "not an rnnkit run folder (no config.yaml)"),
    Case("config-yaml-newer", _damage("config.yaml", lambda p: edit_yaml(
        p, lambda c: c["model"].update(attention=True)))(EVAL), 1,
         "model.attention: unknown key"),
    Case("no-checkpoint-yet", _damage("", lambda p: [shutil.rmtree(p / w) for w in ("last", "best")])(EVAL), 1,
         "no 'last' checkpoint (has this run saved one yet?)"),
    Case("run-folder-missing", lambda t: ["generate", "runs/nope"], 1, "runs/nope: no such run folder"),
    Case("resume-nothing", lambda t: ["train", "tiny.yaml", "--resume", "--set", "run.name=fresh"], 1,
         "nothing to resume (no 'last' checkpoint); drop --resume"),
    Case("train-over-a-trained-run", lambda t: ["train", "tiny.yaml"], 1,
         "runs/tiny: already holds a trained run; pass --resume"),
    Case("resume-with-another-model", lambda t: [*RESUME, "--set", "model.hidden_size=16"], 2,
         "cannot resume, the config differs from the run's config.yaml (model.hidden_size: 8 -> 16)"),
    Case("resume-with-another-optimizer", lambda t: [*RESUME, "--set", "train.optimizer=sgd"], 2,
         "cannot resume, the config differs from the run's config.yaml (train.optimizer: 'adam' -> 'sgd')"),
    # The saved position in the epoch (batches consumed) means other batches under another batch size or seed.
    Case("resume-with-another-batch-size", lambda t: [*RESUME, "--set", "train.batch_size=4"], 2,
         "cannot resume, the config differs from the run's config.yaml (train.batch_size: 16 -> 4)"),
    Case("resume-with-another-seed", lambda t: [*RESUME, "--set", "train.seed=99"], 2,
         "(train.seed: 0 -> 99)"),
    Case("eval-bad-split", lambda t: ["eval", RUN, "--split", "dev"], 2, "--split: 'dev' is not one of"),
    Case("eval-bad-which", lambda t: ["eval", RUN, "--which", "middle"], 2, "--which: 'middle' is not one of"),
]

GENERATE_CASES = [
    Case("prompt-outside-vocabulary", lambda t: [*GENERATE, "--prompt", "BTZ"], 2,
         "--prompt: character 'Z' (U+005A) at position 2 is not in the vocabulary"),
    Case("prompt-unicode", lambda t: [*GENERATE, "--prompt", "B\u00e9"], 2, "(U+00E9) at position 1"),
    Case("max-len-zero", lambda t: [*GENERATE[:2], "--max-len", "0"], 2, "--max-len: 0 must be >= 1"),
    Case("max-len-huge", lambda t: [*GENERATE[:2], "--max-len", str(10**9)], 2,
         "--max-len: 1000000000 must be <= 100000"),
    Case("max-len-negative", lambda t: [*GENERATE[:2], "--max-len", "-3"], 2, "--max-len: -3 must be >= 1"),
    Case("max-len-not-a-number", lambda t: [*GENERATE[:2], "--max-len", "abc"], 2,
         "Invalid value for '--max-len'"),
    Case("temperature-zero", lambda t: [*GENERATE, "--temperature", "0"], 2,
         "--temperature: 0.0 must be > 0.0"),
    Case("temperature-negative", lambda t: [*GENERATE, "--temperature", "-1"], 2, "--temperature: -1.0 must be > 0.0"),
    Case("temperature-nan", lambda t: [*GENERATE, "--temperature", "nan"], 2, "--temperature must be a positive"),
    Case("temperature-inf", lambda t: [*GENERATE, "--temperature", "inf"], 2, "--temperature must be a positive"),
    Case("top-k-zero", lambda t: [*GENERATE, "--top-k", "0"], 2, "--top-k: 0 must be >= 1"),
    Case("nucleus-zero", lambda t: [*GENERATE, "--nucleus", "0"], 2, "--nucleus: 0.0 must be > 0.0"),
    Case("nucleus-above-one", lambda t: [*GENERATE, "--top-p", "1.5"], 2, "--nucleus: 1.5 must be <= 1.0"),
    Case("num-huge", lambda t: [*GENERATE, "--num", str(10**9)], 2,
         "--num: 1000000000 must be <= 10000"),
    Case("beam-huge", lambda t: [*GENERATE, "--beam", str(10**8)], 2,
         "--beam: 100000000 must be <= 10000"),
    Case("beam-zero", lambda t: [*GENERATE, "--beam", "0"], 2, "--beam: 0 must be >= 1"),
    Case("num-zero", lambda t: [*GENERATE, "--num", "0"], 2, "--num: 0 must be >= 1"),
    Case("greedy-and-beam", lambda t: [*GENERATE, "--greedy", "--beam", "3"], 2,
         "--greedy cannot be combined with --beam > 1"),
    Case("greedy-and-sampling", lambda t: [*GENERATE, "--greedy", "--temperature", "0.5", "--top-k", "3"], 2,
         "--greedy cannot be combined with --temperature, --top-k (sampling options)"),
    Case("greedy-and-num", lambda t: [*GENERATE, "--greedy", "--num", "3"], 2,
         "--num 3 with --greedy would return one sequence 3 times"),
    Case("num-above-beam", lambda t: [*GENERATE, "--beam", "3", "--num", "5"], 2,
         "--num (5) cannot exceed --beam (3) in beam search"),
    Case("min-len-above-max-len", lambda t: [*GENERATE[:2], "--max-len", "5", "--min-len", "10"], 2,
         "--min-len (10) cannot exceed --max-len (5)"),
    Case("min-len-negative", lambda t: [*GENERATE, "--min-len", "-1"], 2, "--min-len: -1 must be >= 0"),
    Case("length-penalty-without-beam", lambda t: [*GENERATE, "--length-penalty", "0.5"], 2,
         "--length-penalty only applies to beam search"),
    Case("length-penalty-nan", lambda t: [*GENERATE, "--beam", "2", "--length-penalty", "nan"], 2,
         "--length-penalty must be a finite number"),
    Case("no-repeat-ngram-negative", lambda t: [*GENERATE, "--no-repeat-ngram", "-1"], 2,
         "--no-repeat-ngram: -1 must be >= 0"),
    Case("repetition-penalty-zero", lambda t: [*GENERATE, "--repetition-penalty", "0"], 2,
         "--repetition-penalty: 0.0 must be > 0.0"),
    Case("replace-unknown-two-chars", lambda t: [*GENERATE, "--prompt", "Z", "--replace-unknown", "ab"], 2,
         "--replace-unknown: 'ab' must be one character of the vocabulary"),
    Case("replace-unknown-outside", lambda t: [*GENERATE, "--prompt", "Z", "--replace-unknown", "Q"], 2,
         "--replace-unknown: 'Q' must be one character of the vocabulary"),
    Case("which-unknown", lambda t: [*GENERATE, "--which", "middle"], 2, "--which: 'middle' is not one of"),
    Case("several-problems-at-once", lambda t: [*GENERATE, "--top-k", "0", "--beam", "0"], 2,
         "--top-k: 0 must be >= 1; --beam: 0 must be >= 1"),
]

USAGE_CASES = [
    Case("unknown-verb", lambda t: ["trian"], 2, "No such command 'trian'"),
    Case("unknown-option", lambda t: ["train", "tiny.yaml", "--frobnicate"], 2,
         "No such option: --frobnicate (see 'rnnkit train --help')"),
    Case("missing-argument", lambda t: ["train"], 2, "Missing argument 'config'"),
    Case("inspect-grads-bad-loss-at", lambda t: ["inspect-grads", RUN, "--loss-at", "middle"], 2,
         "--loss-at: 'middle' is not one of last, all"),
    Case("inspect-grads-bad-split", lambda t: ["inspect-grads", RUN, "--split", "dev"], 2,
         "--split: 'dev' is not one of train, val, test"),
]

CASES = CONFIG_CASES + DATA_CASES + CHECKPOINT_CASES + GENERATE_CASES + USAGE_CASES


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_an_exit_code_and_no_change(case, env, capsys, monkeypatch):
    if case.setup is not None:
        case.setup(monkeypatch)
    argv = case.argv(env)
    before = snapshot(env)
    result = rnnkit(capsys, *argv)
    assert "Traceback" not in result.out + result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.err
    assert result.err.rstrip().splitlines()[-1] == errors[0], result.err  # the error line comes last
    assert case.message in errors[0]
    assert result.code == case.code, result.err
    assert result.out == ""
    after = snapshot(env)
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    assert not changed, f"the failed command changed {changed}"


def test_no_cuda_is_a_usage_error(env, capsys):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    before = snapshot(env)
    for argv in (["train", "tiny.yaml", "--set", "train.device=cuda", "--set", "run.name=gpu"],
                 ["eval", RUN, "--device", "cuda"], [*GENERATE, "--device", "cuda"]):
        result = rnnkit(capsys, *argv)
        assert result.code == 2 and result.err.startswith("error: device 'cuda': no CUDA device"), result.err
    assert snapshot(env) == before


# ---------------------------------------------------------------- inputs that are odd but fine

def test_empty_prompt_starts_a_fresh_sentence(env, capsys):
    result = rnnkit(capsys, *GENERATE, "--prompt", "", "--json", "--seed", "1")
    assert result.code == 0, result.err
    assert json.loads(result.out.splitlines()[0])["prompt"] == ""


def test_corpus_shorter_than_one_batch_trains_with_a_smaller_batch_and_says_so(env, capsys):
    path = corpus(env, SENTENCES.encode() * 2, {"val_fraction": 0.0, "test_fraction": 0.0})
    result = rnnkit(capsys, "train", path, "--set", "train.batch_size=32")
    assert result.code == 0, result.err
    assert ("note: the train split has only 8 sequences: batches of 8 instead of train.batch_size 32"
            in " ".join(result.err.split()))


def _prepare_rows(path: Path, **data) -> dict[str, str]:
    from rnnkit.config import config_from_dict
    from rnnkit.data.prepare import prepare_with_summary

    cfg = config_from_dict({"data": {"source": "own", "path": str(path), **data}})
    return dict(prepare_with_summary(cfg.data, name="own").rows())


def test_a_few_invalid_utf8_bytes_are_removed_and_reported(env):
    rows = _prepare_rows(_write(env, SENTENCES.encode() * 20 + b"caf\xe9.\n"))
    assert rows["removed"] == "1: invalid UTF-8 byte 1"
    assert rows["invalid UTF-8"].startswith("first bad byte at offset 1,483")


def _one_20mb_line(folder: Path) -> Path:
    text = (b"abc de " * 3_000_000)[:20_000_000]  # no sentence end, no line break: one 20 MB sentence
    return _write(folder, text + b"\n" + SENTENCES.encode() * 3)


def test_a_corpus_that_is_one_20mb_line_is_split_at_max_len(env, capsys):
    result = rnnkit(capsys, "prepare", "own", "--from", _one_20mb_line(env), "--max-len", "300")
    assert result.code == 0, result.err
    assert "1 long sentences cut into pieces" in result.out


def test_a_sentence_longer_than_max_len_is_dropped_when_configured(env):
    rows = _prepare_rows(_one_20mb_line(env), too_long="drop")
    assert "1 longer than max_len (20,000,000 chars)" in rows["dropped"]
