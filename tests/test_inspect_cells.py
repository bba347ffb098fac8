"""`rnnkit inspect-cells`: per-character activations equal to the model's recorded states, a planted quote unit
ranked first, predictions aligned with `rnnkit score`, classifiers, the page (offline structure, 20,000 characters,
and in headless Chromium when it is installed), --json, --png and one-line errors (tiny runs, fixed seeds)."""

from __future__ import annotations

import base64
import builtins
import fcntl
import io
import json
import math
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.data.vocab import EOS, SPECIALS
from rnnkit.diagnostics.cells import inspect_cells, read_text, select_quantities
from rnnkit.diagnostics.cells_html import page_data, write_page
from rnnkit.diagnostics.cells_properties import correlations, rank_units, text_properties
from rnnkit.errors import DataError, UsageError
from rnnkit.runs.loaded import load

LANGID = Path(__file__).resolve().parent / "data" / "langid"
TRAIN = {"device": "cpu", "histogram_every": 0, "seed": 0, "lr": 0.03}
CODE = "".join(f'def f{i % 10}(x):\n    if x > {i % 7}:\n        return "a{i % 5}" + str([x, {i}])\n    return x\n\n'
               for i in range(300))
CONFIGS = {
    "stream": {"task": "lm", "data": {"source": "text", "path": "code.py", "mode": "stream", "window": 40,
                                      "val_fraction": 0.1, "test_fraction": 0.05},
               "model": {"cell": "lstm", "hidden_size": 16, "embedding_dim": 8, "num_layers": 2},
               "train": {**TRAIN, "batch_size": 8, "max_steps": 30, "eval_every": 30, "checkpoint_every": 30}},
    "sentences": {"task": "lm", "data": {"source": "reber", "num_samples": 200, "max_len": 30},
                  "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4},
                  "train": {**TRAIN, "batch_size": 16, "max_steps": 10, "eval_every": 10, "checkpoint_every": 10}},
    "windows": {"task": "lm", "data": {"source": "reber", "num_samples": 200, "max_len": 30, "mode": "windows",
                                       "window": 12},
                "model": {"cell": "rnn", "hidden_size": 8, "embedding_dim": 4},
                "train": {**TRAIN, "batch_size": 16, "max_steps": 10, "eval_every": 10, "checkpoint_every": 10}},
    "langid": {"task": "classify",
               "data": {"source": "langid", "classes": f"fr={LANGID / 'fr.txt'},en={LANGID / 'en.txt'}",
                        "charset": "unicode", "min_len": 10, "max_len": 40},
               "model": {"cell": "lstm", "hidden_size": 8, "embedding_dim": 4, "bidirectional": True},
               "train": {**TRAIN, "batch_size": 8, "max_steps": 10, "eval_every": 10, "checkpoint_every": 10}},
    "langid_gru": {"task": "classify",
                   "data": {"source": "langid", "classes": f"fr={LANGID / 'fr.txt'},en={LANGID / 'en.txt'}",
                            "charset": "unicode", "min_len": 10, "max_len": 40},
                   "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4, "num_layers": 2},
                   "train": {**TRAIN, "batch_size": 8, "max_steps": 10, "eval_every": 10, "checkpoint_every": 10}},
    "stations": {"task": "classify", "data": {"source": "metro-synthetic", "stations": 3, "window": 8},
                 "model": {"cell": "gru", "hidden_size": 8},
                 "train": {**TRAIN, "batch_size": 16, "max_steps": 2, "eval_every": 2, "checkpoint_every": 2}},
}
QUOTED = 'x = "one" + str(y)\nprint("two (2)", z)\n    if a:\n        return "three"\n'


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """runs/<name> for every CONFIGS entry, trained a few steps on CPU."""
    root = tmp_path_factory.mktemp("cells")
    mp = pytest.MonkeyPatch()
    mp.setenv("RNNKIT_DATA", str(root / "data"))
    mp.chdir(root)
    (root / "code.py").write_text(CODE)
    for name, config in CONFIGS.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump({**config, "run": {"name": name}}))
        result = CliRunner().invoke(app, ["train", f"{name}.yaml", "--quiet"])
        assert result.exit_code == 0, result.output
    yield root
    mp.undo()


def _cells(*args, input=None):
    return CliRunner().invoke(app, ["inspect-cells", *map(str, args)], input=input)


def _ids(run, text: str) -> torch.Tensor:
    table = {c: i for i, c in enumerate(run.vocab.chars, start=len(SPECIALS))}
    if run.cfg.data.mode != "stream":
        table["\n"] = EOS
    return torch.tensor([table[c] for c in text]).unsqueeze(1)  # (T, 1)


# --- text properties and ranking --------------------------------------------------------------------------------

def test_text_properties_by_hand():
    text = 'a "b(c" d)\n  e\'s\n'
    p = text_properties(text)
    assert p["in_quotes"].tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # the apostrophe: no quote
    assert p["in_brackets"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert p["line_position"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4, 5, 0]
    assert p["after_newline"].tolist() == [0] * 10 + [1] + [0] * 5 + [1]
    assert p["indent"].tolist() == [0] * 11 + [1, 2, 2, 2, 2, 0]
    vowel = p["vowel"]
    assert vowel[[0, 13]].tolist() == [1, 1] and vowel[[3, 5, 8, 15]].tolist() == [0, 0, 0, 0]
    assert np.isnan(vowel[[1, 2, 4, 6, 7, 9, 10, 11, 14, 16]]).all()  # not letters: left out
    single = text_properties("f'x' + r'y' + don't")["in_quotes"]
    assert single.tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]


def test_correlation_and_ranking_against_numpy():
    rng = np.random.default_rng(0)
    prop = rng.integers(0, 2, 200).astype(float)
    acts = rng.normal(size=(200, 5)).astype(np.float32)
    acts[:, 3] = prop * 2 - 1 + rng.normal(scale=0.1, size=200)  # a unit that follows the property
    acts[:, 4] = 0.5  # constant: correlates 0
    read = np.ones(200, dtype=bool)
    r = correlations(acts, prop, read)
    expected = [np.corrcoef(acts[:, k], prop)[0, 1] for k in range(4)]
    assert r[:4] == pytest.approx(expected, abs=1e-9) and r[4] == 0
    ranking = rank_units({"layer0.h": acts, "layer0.c": -acts}, {"p": prop, "flat": np.ones(200)}, read, top=3)
    assert [(u.quantity, u.unit) for u in ranking["p"][:2]] == [("layer0.h", 3), ("layer0.c", 3)]
    assert ranking["p"][1].r == pytest.approx(-ranking["p"][0].r) and ranking["flat"] == []


def test_quantity_selectors():
    names = ["layer0.h", "layer0.c", "layer0.forget", "layer0.h.reverse", "layer1.h", "layer1.forget"]
    assert select_quantities(names, ["h"], "lstm") == ["layer0.h", "layer0.h.reverse", "layer1.h"]
    assert select_quantities(names, ["layer1.forget", "c"], "lstm") == ["layer0.c", "layer1.forget"]
    assert select_quantities(names, ["gates"], "lstm") == ["layer0.forget", "layer1.forget"]
    assert select_quantities(names, ["layer1"], "lstm") == ["layer1.h", "layer1.forget"]
    with pytest.raises(UsageError, match="--units: 'layer2.h' names nothing"):
        select_quantities(names, ["layer2.h"], "lstm")


# --- the headline behaviours ------------------------------------------------------------------------------------

def _plant_quote_unit(model, quote_id: int, unit: int, k: float = 40.0) -> None:
    """Layer 0's unit `unit` becomes a quote flip-flop: on '"', c goes to +1 from <= 0 and to -1 from > 0;
    elsewhere it keeps c. Nothing else reads it, so no other unit can follow it."""
    rnn, H = model.rnn, model.rnn.hidden_size
    rows = [unit, H + unit, 2 * H + unit, 3 * H + unit]  # i, f, g, o
    with torch.no_grad():
        model.embedding.weight[:, 0] = 0.0
        model.embedding.weight[quote_id, 0] = 1.0  # input dim 0 says "a quote"
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(rnn, name)[rows] = 0.0
        rnn.weight_hh_l0[:, unit] = 0.0  # no other unit of layer 0 reads it...
        rnn.weight_ih_l1[:, unit] = 0.0  # ...nor layer 1
        rnn.weight_ih_l0[unit, 0], rnn.bias_ih_l0[unit] = k, -k / 2  # input gate open on a quote only
        rnn.weight_ih_l0[H + unit, 0], rnn.bias_ih_l0[H + unit] = -k, k / 2  # forget gate closed on a quote only
        rnn.weight_hh_l0[2 * H + unit, unit], rnn.bias_ih_l0[2 * H + unit] = -k, 0.1 * k  # g = -sign(h)
        rnn.bias_ih_l0[3 * H + unit] = k  # output gate always open


def test_a_planted_quote_unit_is_ranked_first(work):
    run = load("runs/stream", device="cpu")
    unit = 5
    _plant_quote_unit(run.model, run.vocab.chars.index('"') + len(SPECIALS), unit)
    text = CODE[CODE.index('"'):][:1500]  # from a quote: the flip-flop's zero start state never shows
    report = inspect_cells(run, text)
    top = report.ranking["in_quotes"]
    assert {(u.quantity, u.unit) for u in top[:2]} == {("layer0.c", unit), ("layer0.h", unit)}
    assert top[0].r > 0.999 and abs(top[2].r) < 0.9
    c = report.activations["layer0.c"][:, unit]
    assert np.allclose(c, 2 * report.properties["in_quotes"] - 1, atol=1e-3)  # the flip-flop works as built
    assert all(u.unit != unit or u.quantity.startswith("layer1") for u in report.ranking["in_brackets"][:1])


def test_json_activations_are_the_recorded_states(work, tmp_path):
    text = CODE[:700]
    out = tmp_path / "cells.json"
    result = _cells("runs/stream", "--prompt", text, "--json", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    run = load("runs/stream", device="cpu")
    rnn = run.model.rnn
    rnn.record_hidden = rnn.record_gates = True
    with torch.no_grad():
        logits, _ = run.model(_ids(run, text))  # one forward over the whole text, as a user would
    assert data["text"] == text and data["unread"] == [] and len(data["quantities"]) == 12
    for layer in range(2):
        recorded = {f"layer{layer}.h": torch.stack(rnn.last_hidden[f"layer{layer}"])[:, 0],
                    f"layer{layer}.c": torch.stack(rnn.last_cell[f"layer{layer}"])[:, 0],
                    **{f"layer{layer}.{g}": rnn.last_gates[f"layer{layer}.{g}"][:, 0] for g in rnn.gate_names}}
        for name, values in recorded.items():
            got = np.array(data["quantities"][name]["activations"], dtype=np.float32)
            assert got.shape == (len(text), 16)
            assert np.array_equal(got, values.numpy()), name  # exact: JSON floats read back as the same float32
        g = {name: torch.tensor(data["quantities"][f"layer{layer}.{name}"]["activations"])
             for name in ("input", "forget", "cell", "output", "c", "h")}
        c_prev = torch.cat([torch.zeros(1, 16), g["c"][:-1]])  # c is the cell state the equations say
        assert torch.allclose(g["c"], g["forget"] * c_prev + g["input"] * g["cell"], atol=1e-6)
        assert torch.allclose(g["h"], g["output"] * torch.tanh(g["c"]), atol=1e-6)
    logp = logits[:, 0].log_softmax(-1)
    logp[:, 0] = -math.inf  # PAD is never among the guesses
    top = logp.topk(5, dim=-1)
    symbols = ["<pad>", "<eos>", *run.vocab.chars]
    for i in (0, 123, len(text) - 1):
        assert [c for c, _ in data["top"][i]] == [symbols[j] for j in top.indices[i].tolist()]
        assert [p for _, p in data["top"][i]] == pytest.approx(top.values[i].exp().tolist(), rel=1e-5)
    per_char = run.score(text, per_char=True).per_char  # `rnnkit score --per-char`
    assert data["next_surprisal_bits"][-1] is None
    assert data["next_surprisal_bits"][:-1] == pytest.approx([bits for _, bits in per_char[1:]], abs=1e-4)


def test_sentences_read_each_line_from_eos_and_match_score(work):
    run = load("runs/sentences", device="cpu")
    text = "BTSSXXTVVE\nBPVVE\nBTXSE\n"
    report = inspect_cells(run, text)
    assert report.read.all() and report.symbols[EOS] == "\n"
    newlines = [i for i, c in enumerate(text) if c == "\n"]
    h = report.activations["layer0.h"]
    for i in newlines[1:]:  # every newline holds the state after EOS read from a zero state
        assert np.allclose(h[i], h[newlines[0]], atol=1e-6)
    per_char = run.score(text, per_char=True).per_char  # sentences: every character scored
    assert report.next_surprisal[:-1] == pytest.approx([bits for _, bits in per_char[1:]], abs=1e-4)
    assert sorted(report.activations) == ["layer0.candidate", "layer0.h", "layer0.reset", "layer0.update"]


def test_an_elman_windows_model_reads_newlines_as_eos_and_saturates_on_h(work):
    run = load("runs/windows", device="cpu")
    text = "BTSSXXTVVE\nBPVVE\nBTXSE\n"
    report = inspect_cells(run, text)
    assert list(report.activations) == ["layer0.h", "layer0.preactivation"]
    assert np.allclose(report.activations["layer0.h"], np.tanh(report.activations["layer0.preactivation"]),
                       atol=1e-6)
    assert [s.quantity for s in report.saturation] == ["layer0.h"]
    per_char = run.score(text, per_char=True).per_char  # windows of 12: the same within the first window
    assert report.next_surprisal[:11] == pytest.approx([bits for _, bits in per_char[1:12]], abs=1e-4)


@pytest.mark.parametrize("name", ["langid", "langid_gru"])
def test_a_classifier_gives_the_class_probabilities_of_every_prefix(work, name):
    run = load(f"runs/{name}", device="cpu")
    from rnnkit.diagnostics.cells import classifier_vocab

    vocab = classifier_vocab(run)
    text = "le chat   est\tnoir\n\nthe cat is black"
    report = inspect_cells(run, text)
    assert report.text == "le chat est noir\n\nthe cat is black"  # whitespace as training read it
    assert report.read.tolist() == [c != "\n" for c in report.text]
    assert np.isnan(report.activations["layer0.h"][~report.read]).all()
    assert np.isnan(report.class_probs[~report.read]).all()
    for line, start in (("le chat est noir", 0), ("the cat is black", 18)):
        ids = torch.tensor(vocab.encode(line))
        for n in (1, 5, len(line)):
            with torch.no_grad():
                expected = run.model(ids[:n].unsqueeze(1)).softmax(-1)[0]
            assert report.class_probs[start + n - 1] == pytest.approx(expected.tolist(), abs=1e-5)
    written = io.StringIO()
    report.write_json(written)  # what --json writes, row by row, is to_json()
    assert json.loads(written.getvalue()) == report.to_json()
    quantities = list(report.activations)
    if name == "langid":
        assert "layer0.c.reverse" in quantities and report.bidirectional
    else:
        assert quantities[:4] == ["layer0.h", "layer0.reset", "layer0.update", "layer0.candidate"]
        assert "layer1.h" in quantities


# --- the page ---------------------------------------------------------------------------------------------------

def _page_json(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="cells-data">(.*?)</script>', html, re.S)[1])


def test_the_page_is_self_contained_and_holds_the_quantised_activations(work, tmp_path):
    run = load("runs/stream", device="cpu")
    text = CODE[:500] + "</script><b>&"
    run_text = "".join(c if c in run.vocab.chars else "x" for c in text)
    report = inspect_cells(run, run_text)
    report.text = text  # what the page must show untouched, markup characters included
    info = write_page(report, tmp_path / "p.html")
    html = info.path.read_text(encoding="utf-8")
    assert html.count("</script>") == 2  # the data cannot end its script early
    for fetch in ("src=", "<link", "@import", "url(", "fetch(", "XMLHttpRequest", "https:"):
        assert fetch not in html
    data = _page_json(html)
    assert data["text"] == text and info.quantities == list(report.activations) and info.dropped == []
    for block in data["quantities"]:
        q = np.frombuffer(base64.b64decode(block["data"]), dtype=np.int8).reshape(16, len(text))  # (H, T)
        scale = np.array(block["scale"])[:, None]
        values, exact = block["mid"] + q / 127 * scale, report.activations[block["name"]].T
        close = np.abs(values - exact) <= scale / 254 * 1.001  # rounded to the nearest of 255 steps
        if block["kind"] in ("tanh", "sigmoid"):  # bounded: a fixed scale, nothing clipped
            assert close.all() and block["scale"] == [1.0 if block["kind"] == "tanh" else 0.5] * 16
        else:  # c beyond its unit's 99th percentile of |c| is clipped to the end of the scale
            clipped = np.abs(q) == 127
            assert close[~clipped].all() and (np.abs(exact) >= scale * 126.5 / 127 - 1e-6)[clipped].all()
            assert clipped.mean() < 0.02
    probs = np.frombuffer(base64.b64decode(data["lm"]["probs"]), dtype="<u2").reshape(-1, 5) / 65534
    assert probs == pytest.approx(report.top_probs, abs=2e-5)


def test_max_mb_leaves_gates_out_first_and_keeps_the_ranked_units(work):
    run = load("runs/stream", device="cpu")
    report = inspect_cells(run, CODE[:3000])
    per_quantity = 3000 * 16 * 4 / 3 / 1e6
    data, kept, dropped = page_data(report, max_mb=per_quantity * 4.5)
    assert kept == ["layer0.h", "layer0.c", "layer1.h", "layer1.c"] and len(dropped) == 8
    ranked = {(u.quantity, u.unit) for units in report.ranking.values() for u in units}
    extras = {(x["quantity"], x["unit"]) for x in data["extras"]}
    assert extras == {(q, u) for q, u in ranked if q not in kept}
    assert data["meta"]["dropped"] == dropped


def test_twenty_thousand_characters_page_size_and_time(work, tmp_path, capsys):
    run = load("runs/stream", device="cpu")
    text = (CODE * 2)[:20000]
    start = time.perf_counter()
    report = inspect_cells(run, text)
    measured = time.perf_counter() - start
    info = write_page(report, tmp_path / "big.html")
    units = sum(v.shape[1] for v in report.activations.values())  # 2 layers x 6 quantities x 16 = 192
    activation_bytes = 20000 * units * 4 / 3  # int8 in base64
    assert activation_bytes < info.bytes < activation_bytes + 20000 * 40 + 200_000  # linear: ~40 bytes/char else
    assert info.seconds < 10
    with capsys.disabled():
        print(f"\n20,000 characters, {units} units: page {info.bytes / 1e6:.2f} MB written in {info.seconds:.2f} s "
              f"(reading the text: {measured:.2f} s)")


# --- headless Chromium ------------------------------------------------------------------------------------------

class Chromium:
    """Headless Chromium over --remote-debugging-pipe (the DevTools protocol on fds 3 and 4: no port, no network)."""

    FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--remote-debugging-pipe")

    def __init__(self, binary: str, profile: Path, timeout: float = 30.0):
        to_child, self._to = os.pipe()
        self._from, from_child = os.pipe()

        def wire():  # in the child: the two pipe ends become fds 3 and 4, where Chromium expects them
            a, b = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([binary, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     preexec_fn=wire, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self.timeout, self.next_id, self.buffer, self.session = timeout, 0, b"", None

    def send(self, method: str, params: dict | None = None, browser: bool = False) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self._to, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self.next_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from], [], [], left)[0]:
                raise TimeoutError(f"{method}: no answer from Chromium in {self.timeout} s")
            chunk = os.read(self._from, 1 << 20)
            if not chunk:
                raise RuntimeError(f"{method}: Chromium closed the pipe")
            self.buffer += chunk

    def open(self, url: str, width: int = 1280, height: int = 900) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})

    def eval(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.eval(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(expression)
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to)
        os.close(self._from)


BACKGROUNDS = "Array.from(document.querySelectorAll('#text span'), s => s.style.backgroundColor)"


def check_in_chromium(page: Path, text: str, screenshot: Path, binary: str) -> dict:
    """Open the page, check its text and ranking, click another unit, hover a character; return what was seen."""
    browser = Chromium(binary, screenshot.parent / "chromium-profile")
    try:
        browser.open(page.resolve().as_uri())
        browser.wait_for("window.cellsPage && window.cellsPage.ready === true")
        shown = browser.eval("Array.from(document.querySelectorAll('#text span'), s => s.textContent).join('')")
        assert shown == text.replace("\n", "\u23ce")  # every character, newlines marked and kept
        assert browser.eval("document.getElementById('text').innerText.split('\\n').length") >= text.count("\n")
        before, label = browser.eval(BACKGROUNDS), browser.eval("window.cellsPage.current()")
        assert len(before) == len(text) and len(set(before)) > 3  # coloured, not uniform
        links = browser.eval("Array.from(document.querySelectorAll('aside li a'), a => a.textContent)")
        assert len(links) >= 10
        other = browser.eval("(() => { const a = Array.from(document.querySelectorAll('aside li a'))"
                             f".find(a => a.textContent !== {json.dumps(label)}); a.click(); "
                             "return a.textContent; })()")
        after = browser.eval(BACKGROUNDS)
        assert browser.eval("window.cellsPage.current()") == other != label
        assert sum(a != b for a, b in zip(before, after, strict=True)) > len(text) // 10  # recoloured
        browser.eval("document.querySelectorAll('#text span')[3].dispatchEvent("
                     "new MouseEvent('mouseover', {bubbles: true, clientX: 200, clientY: 200}))")
        tip = browser.eval("document.getElementById('tip').innerText")
        browser.screenshot(screenshot)
        return {"links": links, "tip": tip, "label": label, "other": other}
    finally:
        browser.close()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium (Debian's chromium) not installed")
def test_the_page_in_headless_chromium(work, tmp_path):
    text = CODE[:1200]
    page = tmp_path / "cells.html"
    result = _cells("runs/stream", "--prompt", text, "--html", page)
    assert result.exit_code == 0, result.output
    seen = check_in_chromium(page, text, tmp_path / "cells.png", shutil.which("chromium"))
    assert "next character, top 5" in seen["tip"] and "true next" in seen["tip"] and "bits" in seen["tip"]
    assert (tmp_path / "cells.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    classifier = tmp_path / "langid.html"
    assert _cells("runs/langid", "--prompt", "le chat est noir\nthe cat is black", "--html", classifier).exit_code == 0
    seen = check_in_chromium(classifier, "le chat est noir\nthe cat is black", tmp_path / "langid.png",
                             shutil.which("chromium"))
    assert "class probabilities" in seen["tip"] and "fr" in seen["tip"]


# --- the command ------------------------------------------------------------------------------------------------

def test_png_heat_map_of_the_top_units(work, tmp_path):
    pytest.importorskip("matplotlib", reason="--png needs the 'plot' extra")
    result = _cells("runs/stream", "--prompt", CODE[:400], "--png", tmp_path / "top.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "top.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "in_quotes" in result.stdout  # the ranking table


def test_png_without_matplotlib_says_how_to_install_it(work, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = _cells("runs/stream", "--prompt", "abc", "--png", tmp_path / "top.png")
    assert result.exit_code == 2 and "--png needs matplotlib: pip install 'rnnkit[plot]'" in result.output
    assert not (tmp_path / "top.png").exists()


def test_split_text_file_stdin_and_max_chars(work, tmp_path):
    result = _cells("runs/stream", "--json", "-", "--units", "layer1.c", "--max-chars", "300")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["text"]) == 300 and list(data["quantities"]) == ["layer1.c"]
    assert "the val split: the first 300 of" in data["notes"][0]
    (tmp_path / "t.py").write_text(CODE[:900])
    from_file = json.loads(_cells("runs/stream", "--text", tmp_path / "t.py", "--json", "-", "--units", "h").stdout)
    assert from_file["text"] == CODE[:900] and list(from_file["quantities"]) == ["layer0.h", "layer1.h"]
    from_stdin = json.loads(_cells("runs/stream", "--text", "-", "--json", "-", "--max-chars", "50",
                                   input=CODE[:900]).stdout)
    assert from_stdin["text"] == CODE[:50]
    first = from_file["quantities"]["layer0.h"]["activations"][:50]
    assert from_stdin["quantities"]["layer0.h"]["activations"] == first


def test_read_text_errors_and_cut(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff")
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 0xff at offset 3\)"):
        read_text(tmp_path / "bad.txt", 100, "bad.txt")
    with pytest.raises(DataError, match="no such file"):
        read_text(tmp_path / "none.txt", 100, "none.txt")
    (tmp_path / "long.txt").write_text("é" * 100_000)
    text, note = read_text(tmp_path / "long.txt", 70_000, "long.txt")
    assert text == "é" * 70_000 and "first 70000 characters" in note


@pytest.mark.parametrize(("args", "code", "fragment"), [
    (["--prompt", "abc", "--split", "val", "--html", "x.html"], 2, "--prompt and --split: give one source of text"),
    (["--prompt", "abc"], 2, "nothing to write: give --html OUT.html"),
    (["--prompt", "abc", "--units", "layer5", "--html", "x.html"], 2, "--units: 'layer5' names nothing this lstm"),
    (["--prompt", "de\u00e9f", "--html", "x.html"], 2, "1 character(s) not in the model's vocabulary: 'é' (U+00E9) "
                                                       "at position 2; pass --replace-unknown C"),
    (["--prompt", "def", "--html", "x.pdf"], 2, "--html x.pdf: expected a .html file name"),
    (["--prompt", "def", "--png", "x.svg"], 2, "--png x.svg: expected a .png file name"),
    (["--prompt", "def", "--html", "x.html", "--top-units", "0"], 2, "--top-units: 0 must be at least 1"),
    (["--prompt", "def", "--html", "x.html", "--max-mb", "0"], 2, "--max-mb: 0.0 must be positive"),
    (["--split", "dev", "--html", "x.html"], 2, "--split: 'dev' is not one of train, val, test"),
])
def test_mistakes_are_one_line(work, args, code, fragment):
    result = _cells("runs/stream", *args)
    assert result.exit_code == code and fragment in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_metro_classifier_is_refused_and_replace_unknown_is_noted(work, tmp_path):
    result = _cells("runs/stations", "--prompt", "abc", "--html", tmp_path / "x.html")
    assert result.exit_code == 2 and "inspect-cells reads text" in result.output
    result = _cells("runs/stream", "--prompt", "r\u00e9turn x", "--replace-unknown", "e", "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["text"] == "r\u00e9turn x" and any("1 character(s) outside the vocabulary read as 'e'" in n
                                                    for n in data["notes"])
