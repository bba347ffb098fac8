"""`rnnkit export` through the real CLI: plain torch.nn modules rebuilt from model.json + model.safetensors alone
give rnnkit's outputs (the README's PyTorch lines included), for every supported kind of run; refusals; atomicity."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import train_run, working_folder
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.runs.loaded import load

ROOT = Path(__file__).resolve().parents[1]
LANGID = ROOT / "tests" / "data" / "langid"
TRAIN = {"batch_size": 16, "max_steps": 4, "eval_every": 4, "checkpoint_every": 4, "device": "cpu",
         "histogram_every": 0, "lr": 0.02}
REBER = {"source": "reber", "num_samples": 200, "max_len": 30}
METRO = {"source": "metro-synthetic", "stations": 3, "val_days": 1}
CONFIGS = {
    "lm": {"task": "lm", "data": REBER, "model": {"cell": "lstm", "hidden_size": 8, "embedding_dim": 4,
                                                  "num_layers": 2},
           "train": {**TRAIN, "max_steps": 20, "eval_every": 10, "checkpoint_every": 10}},
    "onehot": {"task": "lm", "data": {**REBER, "mode": "windows", "window": 12},
               "model": {"cell": "rnn", "nonlinearity": "relu", "hidden_size": 8, "embedding_dim": 0}, "train": TRAIN},
    "langid": {"task": "classify", "data": {"source": "langid", "charset": "unicode", "val_fraction": 0.1,
                                            "test_fraction": 0.2,
                                            "classes": f"fr={LANGID / 'fr.txt'},en={LANGID / 'en.txt'}"},
               "model": {"cell": "lstm", "hidden_size": 8, "embedding_dim": 4, "bidirectional": True}, "train": TRAIN},
    "station": {"task": "classify", "data": {**METRO, "window": 12, "normalise": "flow"},
                "model": {"cell": "gru", "hidden_size": 8}, "train": TRAIN},
    "forecast": {"task": "forecast", "data": {**METRO, "history": 4, "horizon": 3, "time_features": True},
                 "model": {"cell": "gru", "hidden_size": 8, "num_layers": 2}, "train": TRAIN},
    "seq2seq": {"task": "forecast", "data": {**METRO, "history": 4, "horizon": 3},
                "model": {"cell": "gru", "hidden_size": 8, "forecaster": "seq2seq"}, "train": TRAIN},
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A folder with runs/<name> for every config above, each trained a few steps."""
    with working_folder(tmp_path_factory.mktemp("export")) as folder:
        for name, config in CONFIGS.items():
            train_run(folder, config, name)
        yield folder


def _export(*args):
    return CliRunner().invoke(app, ["export", *map(str, args)])


def _exported(run: str, out: str, *args) -> dict:
    result = _export(f"runs/{run}", out, "--json", *args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def _rebuild(out) -> tuple[dict, nn.ModuleDict]:
    """The modules from the two files, with nothing but torch (as a user without rnnkit would)."""
    spec = json.loads((Path(out) / "model.json").read_text(encoding="utf-8"))
    net = nn.ModuleDict({name: getattr(nn, m["type"])(**m["args"]) for name, m in spec["modules"].items()})
    net.load_state_dict(load_file(Path(out) / "model.safetensors"))
    return spec, net.eval()


def test_the_readme_lines_reproduce_rnnkit_log_probabilities(root, capsys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### export\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "rnnkit" not in code  # plain PyTorch only
    record = _exported("lm", "export")
    assert record["task"] == "lm" and record["which"] == "best" and record["step"] == 20
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)

    run = load("runs/lm", device="cpu")
    tokens = namespace["tokens"]
    assert tokens[0, 0].item() == 1 and tokens.shape[1] == 1  # EOS first, time-major
    with torch.no_grad():
        expected = torch.log_softmax(run.model(tokens)[0], dim=-1)  # (T, 1, V)
    assert torch.allclose(namespace["log_probs"], expected, atol=1e-5, rtol=0)
    printed = float(capsys.readouterr().out.strip().rsplit("=", 1)[1])
    score = run.score(namespace["text"] + "\n")  # the line read from EOS, its newline scored as EOS
    assert printed == pytest.approx(-score.bits * math.log(2), abs=1e-4)


def _rnnkit_and_plain(run, spec, net, x, lengths=None):
    """The same batch through rnnkit's model and through the rebuilt modules, called as model.json says."""
    with torch.no_grad():
        ours = run.model(x, lengths=lengths)
        ours = ours[0] if isinstance(ours, tuple) else ours
        inputs = net["embedding"](x) if "embedding" in net else x
        if lengths is not None:
            inputs = pack_padded_sequence(inputs, lengths, enforce_sorted=False)
        out, state = net["rnn"](inputs)
        if spec["task"] == "classify":
            h = state[0] if isinstance(state, tuple) else state  # (L * dirs, B, H)
            dirs = 2 if spec["modules"]["rnn"]["args"]["bidirectional"] else 1
            theirs = net["decoder"](torch.cat(list(h[-dirs:]), dim=-1))  # (B, C)
        else:
            y = net["decoder"](out)
            theirs = y if spec["task"] == "lm" else y.view(*y.shape[:2], spec["horizon"], -1)
    return ours, theirs


@pytest.mark.parametrize("name, modules", [
    ("lm", ["Embedding", "LSTM", "Linear"]),
    ("onehot", ["Embedding", "RNN", "Linear"]),
    ("langid", ["Embedding", "LSTM", "Linear"]),
    ("station", ["GRU", "Linear"]),
    ("forecast", ["GRU", "Linear"]),
])
def test_every_supported_kind_rebuilds_from_the_files_alone(root, name, modules):
    record = _exported(name, f"out_{name}")
    assert list(record["modules"].values()) == modules and record["max_abs_diff"] < 1e-5
    assert record["files"] == {f: (root / f"out_{name}" / f).stat().st_size
                               for f in ("model.safetensors", "model.json")}
    spec, net = _rebuild(f"out_{name}")
    run = load(f"runs/{name}", device="cpu")
    assert record["parameters"] == sum(p.numel() for p in run.model.parameters())
    generator = torch.Generator().manual_seed(7)
    T, B = 9, 4  # not the probe batch export checked itself on
    if "vocab" in spec:
        vocab = json.loads((root / "runs" / name / "vocab.json").read_text(encoding="utf-8"))
        assert spec["vocab"]["chars"] == vocab["chars"] and (spec["vocab"]["pad"], spec["vocab"]["eos"]) == (0, 1)
        x = torch.randint(2, spec["modules"]["embedding"]["args"]["num_embeddings"], (T, B), generator=generator)
    else:
        x = torch.randn(T, B, spec["modules"]["rnn"]["args"]["input_size"], generator=generator)
    ours, theirs = _rnnkit_and_plain(run, spec, net, x)
    assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    if spec["task"] == "classify":  # ragged batch: packing stops each sequence where rnnkit's lengths do
        lengths = torch.tensor([9, 3, 6, 1])
        ours, theirs = _rnnkit_and_plain(run, spec, net, x, lengths)
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)


def test_the_description_says_how_inputs_are_fed_and_what_comes_out(root):
    lm, onehot = _rebuild("out_lm")[0], _rebuild("out_onehot")[0]
    assert (lm["inputs"]["data_mode"], lm["inputs"]["start"], lm["inputs"]["newline"]) == ("sentences", "eos", "eos")
    assert (onehot["inputs"]["data_mode"], onehot["inputs"]["start"], onehot["inputs"]["window"]) == \
        ("windows", None, 12)
    assert onehot["modules"]["rnn"]["args"]["nonlinearity"] == "relu"
    assert _rebuild("out_langid")[0]["classes"] == ["fr", "en"]
    task = json.loads((root / "runs" / "forecast" / "task.json").read_text())
    forecast = _rebuild("out_forecast")[0]
    assert forecast["normaliser"]["mean"] == task["mean"] and forecast["normaliser"]["std"] == task["std"]
    assert (forecast["horizon"], forecast["stations"], forecast["flows"]) == (3, 3, 2)
    assert forecast["modules"]["rnn"]["args"]["input_size"] == 3 * 2 + 2  # values, then sin and cos of the hour
    assert forecast["source"] == {"run": "runs/forecast", "which": "best", "step": 4}


def test_the_one_hot_input_layer_becomes_an_embedding_of_its_columns(root):
    _exported("onehot", "out_onehot2")
    tensors = load_file("out_onehot2/model.safetensors")
    run = load("runs/onehot", device="cpu")
    assert torch.equal(tensors["embedding.weight"], run.model.input_proj.weight.detach().t())
    assert torch.equal(tensors["rnn.weight_hh_l0"], run.model.rnn.weight_hh_l0.detach())


def test_out_is_replaced_only_with_force_and_only_when_it_is_an_export(root):
    _exported("lm", "again")
    before = (root / "again" / "model.json").read_bytes()
    refused = _export("runs/lm", "again")
    assert refused.exit_code == 2 and "--force" in refused.stderr and refused.stdout == ""
    assert (root / "again" / "model.json").read_bytes() == before
    record = _exported("lm", "again", "--force", "--which", "last")
    assert record["which"] == "last" and _rebuild("again")[0]["source"]["which"] == "last"

    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("keep me")
    refused = _export("runs/lm", "mine", "--force")
    assert refused.exit_code == 2 and "not an earlier export" in refused.stderr
    assert (root / "mine" / "notes.txt").read_text() == "keep me" and len(list((root / "mine").iterdir())) == 1
    for target in ("runs/lm", "runs", "."):  # the run itself, or a folder holding it
        refused = _export("runs/lm", target, "--force")
        assert refused.exit_code == 2 and "holds the run" in refused.stderr
    assert (root / "runs" / "lm" / "config.yaml").is_file()
    (root / "afile").write_text("x")
    assert _export("runs/lm", "afile", "--force").exit_code == 2 and (root / "afile").read_text() == "x"


def test_unsupported_runs_and_targets_are_one_line(root):
    refused = _export("runs/seq2seq", "s2s")
    assert refused.exit_code == 2 and "Seq2SeqForecaster" in refused.stderr and "supported:" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (root / "s2s").exists()
    refused = _export("runs/lm", "k", "--to", "keras")
    assert refused.exit_code == 2 and "--to" in refused.stderr and not (root / "k").exists()


def test_a_failure_while_writing_leaves_the_earlier_export(root, monkeypatch):
    _exported("lm", "safe")
    before = {p.name: p.read_bytes() for p in (root / "safe").iterdir()}

    def half_written(path, tensors, metadata):
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr("rnnkit.export.save_safetensors", half_written)
    result = _export("runs/lm", "safe", "--force")
    assert result.exit_code != 0 and isinstance(result.exception, OSError)
    assert {p.name: p.read_bytes() for p in (root / "safe").iterdir()} == before
    assert not list(root.glob(".safe.*"))  # no temporary folder left beside it


def test_human_output_names_what_was_written(root):
    result = _export("runs/forecast", "human")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("wrote human/ (model.safetensors, model.json): torch.nn GRU + Linear")
    assert "runs/forecast (best, step 4)" in result.stdout


HAS_ONNX = importlib.util.find_spec("onnx") is not None


@pytest.mark.skipif(HAS_ONNX, reason="the onnx package is installed")
def test_onnx_without_the_package_is_one_clear_line(root):
    refused = _export("runs/lm", "o", "--to", "onnx")
    assert refused.exit_code == 2 and "pip install onnx" in refused.stderr and not (root / "o").exists()


@pytest.mark.skipif(not HAS_ONNX, reason="needs the onnx package (not an rnnkit dependency)")
@pytest.mark.parametrize("name", ["lm", "langid", "forecast"])
def test_onnx_graph_checks_and_runs_at_other_lengths(root, name):
    import onnx

    record = _exported(name, f"onnx_{name}", "--to", "onnx")
    assert set(record["files"]) == {"model.onnx", "model.json"}
    graph = onnx.load(str(root / f"onnx_{name}" / "model.onnx"))
    onnx.checker.check_model(graph)
    runtime = pytest.importorskip("onnxruntime")
    run = load(f"runs/{name}", device="cpu")
    spec = json.loads((root / f"onnx_{name}" / "model.json").read_text())
    x = (torch.randint(2, 9, (13, 5)) if "embedding" in spec["modules"]
         else torch.randn(13, 5, spec["modules"]["rnn"]["args"]["input_size"]))
    session = runtime.InferenceSession(str(root / f"onnx_{name}" / "model.onnx"))
    (y,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        ours = run.model(x)
    ours = ours[0] if isinstance(ours, tuple) else ours
    assert torch.allclose(torch.from_numpy(y), ours, atol=1e-5, rtol=0)
