"""docs/course.md cannot rot: every `$ rnnkit ...` command of the walkthrough runs, and what it prints agrees
with the excerpt the page quotes.

The walkthrough's commands are run in order (later ones use the runs earlier ones trained) through the
real CLI, with the training budget cut to a few steps and generation counts cut to a few samples. They
read the shared data sets, so that test is a real-data test that skips when ../shared is absent.

Small settings change most figures, so each command is checked against its quoted output (CHECKS below,
at least one per command) on what they leave alone:
- figures of the data, not of the model: what `prepare` counted, the test split's sizes per class and per
  window length, the forecasting baselines, the untrained models' gradients (a tolerance covers the shorter
  windows), the spectra of the fresh weights;
- properties the quoted output states: the rows and columns of each table, the decoding each command names,
  the throughput unit, best-first beam results, bpc = loss / ln 2, accuracy = diagonal / class total.
The relations are checked on the page's own figures too, without the data (test_quoted_figures_agree).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnkit.cli import app

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WALKTHROUGH = ROOT / "docs" / "course.md"

# What "small settings" means for each verb: options appended, and numeric options capped.
SMALL_TRAIN = ["--set", "train.max_steps=3", "--set", "train.eval_every=3", "--set", "train.checkpoint_every=3",
               "--set", "train.eval_batches=1", "--set", "train.histogram_every=3", "--set", "train.log_every=1",
               "--set", "train.device=cpu"]
CAPS = {"--generate": 2, "--references": 5, "--max-len": 30, "--num": 2, "--batches": 1, "--length": 40}


# ---------------------------------------------------------------- the page


def walkthrough(text: str) -> list[tuple[str, str]]:
    """(command, the output quoted under it) for each `$ rnnkit ...` line of the console blocks, in order."""
    pairs = []
    for block in re.findall(r"^```console\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        for part in re.split(r"^(?=\$ rnnkit )", block, flags=re.MULTILINE):
            if part.startswith("$ rnnkit "):
                command, _, output = part.partition("\n")
                pairs.append((command[2:], output))
    return pairs


def walkthrough_commands(text: str) -> list[str]:
    """The `$ rnnkit ...` lines of the document's console blocks, in order."""
    return [command for command, _ in walkthrough(text)]


def small(command: str) -> list[str]:
    """The command's arguments with a small budget."""
    args = shlex.split(command)[1:]
    for index, arg in enumerate(args[:-1]):
        if arg in CAPS and args[index + 1].isdigit():
            args[index + 1] = str(min(int(args[index + 1]), CAPS[arg]))
    if args[0] == "train":
        args += SMALL_TRAIN
    if "--plot" in args:  # keep the picture out of the document's folder
        args[args.index("--plot") + 1] = "plot.png"
    return args


def option(args: list[str], name: str, default: str | None = None) -> str | None:
    return args[args.index(name) + 1] if name in args else default


# ---------------------------------------------------------------- reading rich tables


def number(text: str) -> float:
    return float(text.replace(",", "").rstrip("%"))


def rows(text: str, cells: int | None = None, boxed: bool = True) -> list[list[str]]:
    """Rows of the tables in `text` with `cells` cells if given: boxed (│ a │ b │) or open on the left
    (a │ b, as the confusion matrix). Continuation lines of a wrapped row (an empty first cell) are left out."""
    out = []
    for line in text.splitlines():
        if "│" not in line or line.strip().startswith("│") != boxed:
            continue
        parts = [part.strip() for part in line.split("│")]
        if boxed:
            parts = parts[1:-1]
        if parts and parts[0] and (cells is None or len(parts) == cells):
            out.append(parts)
    return out


def sections(text: str, pattern: str) -> dict[str, str]:
    """The text after each match of `pattern` (group 1 names it) up to the next match."""
    matches = list(re.finditer(pattern, text, flags=re.MULTILINE))
    return {m.group(1): text[m.start():(matches[i + 1].start() if i + 1 < len(matches) else len(text))]
            for i, m in enumerate(matches)}


def same_keys(page: dict, out: dict, what: str) -> None:
    assert list(out) == list(page), f"{what}: {list(out)} printed, the page shows {list(page)}"


# ---------------------------------------------------------------- checks, one kind of output each


def check_prepare(page: str, out: str, command: str) -> None:
    """What the cleaning counted and the vocabulary do not depend on any setting: the same lines."""
    shown = [" ".join(line.split()) for line in page.splitlines()
             if line.split()[:1] and line.split()[0] in ("characters", "removed", "vocabulary")]
    printed = {" ".join(line.split()) for line in out.splitlines()}
    assert len(shown) >= 3 and all(line in printed for line in shown), shown


def check_train(page: str, out: str, command: str) -> None:
    """The throughput unit, the summary's rows, the run folder and parameter count, why it stopped; samples."""
    unit = r"loss [\d.]+ [\d,]+ (.+?/s)"
    assert re.search(unit, out).group(1) == re.search(unit, page).group(1)
    assert "training summary" in page and "training summary" in out
    summary = {r[0]: r[1] for r in rows(page, 2)}
    printed = {r[0]: r[1] for r in rows(out, 2)}
    if summary:  # else an excerpt without the table
        same_keys(summary, printed, "summary rows")
        assert printed["run folder"] == summary["run folder"] and printed["parameters"] == summary["parameters"]
        assert "stopped: max_steps" in summary["steps"] and "stopped: max_steps" in printed["steps"]
    assert ("sample 1:" in out) == ("sample 1:" in page)


CLASSIFY = r"^\s*(runs/\S+): classification on"


def classification(text: str) -> dict:
    """Per run: test sequences, (length, sequences) of the length table, class totals; checks acc = diag/total."""
    result = {}
    for run, body in sections(text, CLASSIFY).items():
        (sequences, loss, accuracy, error), = [r for r in rows(body, 4) if r[0].isdigit()]
        assert number(accuracy) + number(error) == pytest.approx(1.0, abs=1e-4)
        confusion = rows(body, boxed=False)
        totals = []
        for k, (_, acc, *counts) in enumerate(confusion):
            counts = [int(c) for c in counts]
            totals.append(sum(counts))
            assert counts[k] / sum(counts) == pytest.approx(number(acc), abs=6e-4), (run, confusion[k])
        assert sum(totals) == int(sequences)
        lengths = [(int(r[0]), int(r[1])) for r in rows(body, 3) if r[0].isdigit()]
        result[run] = {"sequences": int(sequences), "class totals": totals, "lengths": lengths}
    return result


def check_classify_eval(page: str, out: str, command: str) -> None:
    shown, printed = classification(page), classification(out)
    same_keys(shown, printed, "runs")
    assert printed == shown


FORECAST = r"^\s*(runs/\S+): forecast on"


def forecasts(text: str) -> dict:
    """Per run: windows scored, and per horizon the two baselines' MAE, RMSE, MAPE."""
    result = {}
    for run, body in sections(text, FORECAST).items():
        windows = int(re.search(r"\((\d+) windows", body).group(1))
        baselines = {r[0]: [number(x) for cell in r[2:] for x in cell.split("/")]
                     for r in rows(body, 4) if r[0].endswith("min")}
        result[run] = (windows, baselines)
    return result


def check_forecast_eval(page: str, out: str, command: str) -> None:
    """The naive baselines read no model: the same figures, on the same windows."""
    shown, printed = forecasts(page), forecasts(out)
    same_keys(shown, printed, "runs")
    for run, (windows, baselines) in shown.items():
        assert printed[run][0] == windows, run
        same_keys(baselines, printed[run][1], f"{run} horizons")
        for horizon, figures in baselines.items():
            assert printed[run][1][horizon] == pytest.approx(figures, abs=0.011), (run, horizon)


def language_model(text: str) -> dict[str, tuple[str, float]]:
    """The LM table: run -> (checkpoint, loss), checking bpc = loss / ln 2 and perplexity = exp(loss)."""
    result = {}
    for run, checkpoint, _step, loss, bpc, perplexity in (r for r in rows(text, 6) if r[0].startswith("runs/")):
        assert number(bpc) == pytest.approx(number(loss) / math.log(2), abs=2e-4), run
        assert number(perplexity) == pytest.approx(math.exp(number(loss)), rel=2e-3), run
        result[run] = (checkpoint, number(loss))
    return result


def check_lm_eval(page: str, out: str, command: str) -> None:
    shown, printed = language_model(page), language_model(out)
    same_keys(shown, printed, "runs")
    assert [c for c, _ in printed.values()] == [c for c, _ in shown.values()]


def check_free_running(page: str, out: str, command: str) -> None:
    """The teacher-forced column is the evaluation's loss; one row per run."""
    for text in (page, out):
        losses = language_model(text)
        columns = {r[0]: r[1:] for r in rows(text, 4) if r[0].startswith("runs/")}
        same_keys(losses, columns, "free-running rows")
        for run, (forced, greedy, sampled) in columns.items():
            assert number(forced.split()[0]) == pytest.approx(losses[run][1], abs=1e-4), run
            assert all(re.fullmatch(r"[\d.]+ \([\d.]+\)", cell) for cell in (greedy, sampled)), run


def decoding_table(text: str) -> dict[str, list[str]]:
    return {r[0]: r[1:] for r in rows(text, 10) if r[0] != "decoding"}


def check_generated_text(page: str, out: str, command: str) -> None:
    """The same decoding methods on the same references; deterministic decoders repeat one sentence."""
    shown, printed = decoding_table(page), decoding_table(out)
    same_keys(shown, printed, "decoding methods")
    samples = r"(\d+) samples per method, BLEU/chrF against (\d+)\s+test"
    (n_page, refs_page), (n_out, refs_out) = (re.search(samples, t).groups() for t in (page, out))
    assert (int(n_out), refs_out) == (min(int(n_page), CAPS["--generate"]), refs_page)
    for method in ("greedy", "beam 5"):
        if method in shown:
            assert shown[method][4] == printed[method][4] == "100.0", method  # self-BLEU


def generated(text: str) -> list[tuple[str, float, int]]:
    """Rows of a generate table: (text, log p, len), the text joined over its wrapped lines."""
    found = []
    for parts in (line.split("│") for line in text.splitlines() if line.startswith("│")):
        cells = [part.strip() for part in parts[1:-1]]
        if len(cells) == 4 and cells[0].isdigit():
            found.append([cells[1], number(cells[2]), int(cells[3])])
        elif len(cells) == 4 and not cells[0] and found:
            found[-1][0] += " " + cells[1]
    return [tuple(row) for row in found]


def check_generate(page: str, out: str, command: str) -> None:
    """The decoding named, how many sequences, their lengths, and beam search's best-first order."""
    named = re.search(r"^(runs/\S+: .+)$", page, flags=re.MULTILINE).group(1).strip()
    assert named in [line.strip() for line in out.splitlines()], named
    for table, args in ((generated(page), shlex.split(command)), (generated(out), small(command))):
        assert len(table) == int(option(args, "--num", "1"))
        assert all(log_p < 0 for _, log_p, _ in table)
        limit = option(args, "--max-len")
        if limit is not None:
            assert all(n <= int(limit) for _, _, n in table)
            if "--fixed-length" in args:
                assert all(n == int(limit) for _, _, n in table)
        if "--beam" in args and "--nucleus" not in args:  # best first by log p / length, EOS counted
            scores = [log_p / (n + (0 if text.endswith("…") else 1)) for text, log_p, n in table]
            assert scores == sorted(scores, reverse=True), table


GRADS = (r"^(\S+): (rnn|gru|lstm) (\d+x\d+), loss at (\w+), (\d+)\s+batch\(es\)\s+of\s+up\s+to\s+(\d+)\s+steps,"
         r"\s+loss\s+([\d.]+)")


def gradient_reports(text: str) -> dict[str, dict]:
    result = {}
    for body in sections(text, GRADS).values():
        label, cell, size, loss_at, batches, steps, loss = re.match(GRADS, body).groups()
        layers = {r[0]: r[1:] for r in rows(body, 6) if r[0].startswith("layer")}
        gates = [r[0] for r in rows(body, 7) if r[0].startswith("layer")]
        spectra = {r[0]: (r[2], r[3]) for r in rows(body, 4) if r[0].startswith("weight_hh")}
        clip = re.search(r"global grad norm \(clip at ([\d.]+)\)", body).group(1)
        result[label] = {"model": (cell, size, loss_at, int(batches), clip), "steps": int(steps),
                         "loss": float(loss), "layers": layers, "gates": gates, "spectra": spectra}
    return result


def check_inspect_grads(page: str, out: str, command: str) -> None:
    """Same models and batches; the untrained ones also the same loss, decay per step, verdict and spectra."""
    shown, printed = gradient_reports(page), gradient_reports(out)
    same_keys(shown, printed, "inspected models")
    fresh = "runs/" not in command  # configs: freshly initialised weights, the same as the page's
    for label, report in shown.items():
        got = printed[label]
        assert got["model"] == report["model"] and got["steps"] == min(report["steps"], CAPS["--length"])
        assert set(report["gates"]) <= set(got["gates"]) and set(report["spectra"]) <= set(got["spectra"])
        if fresh:  # the same initial weights: windows of 40 instead of 150 steps move the fit a little
            assert got["loss"] == pytest.approx(report["loss"], abs=0.01), label
            for layer, (verdict, _, factor, _, _) in report["layers"].items():
                assert got["layers"][layer][0] == verdict and number(got["layers"][layer][2]) == pytest.approx(
                    number(factor), abs=0.05), (label, layer)
            for matrix, spectrum in report["spectra"].items():
                assert got["spectra"][matrix] == spectrum, (label, matrix)


# Every command of the page matches at least one pattern (test_every_command_has_a_check).
CHECKS: list[tuple[str, Callable[[str, str, str], None]]] = [
    (r"^rnnkit prepare ", check_prepare),
    (r"^rnnkit train ", check_train),
    (r"^rnnkit eval runs/(langid|metro_classify)", check_classify_eval),
    (r"^rnnkit eval runs/metro_(forecast|seq2seq)", check_forecast_eval),
    (r"^rnnkit eval runs/trump", check_lm_eval),
    (r"^rnnkit eval runs/trump.* --free-running", check_free_running),
    (r"^rnnkit eval runs/trump.* --generate", check_generated_text),
    (r"^rnnkit generate ", check_generate),
    (r"^rnnkit inspect-grads ", check_inspect_grads),
]


def checks_for(command: str) -> list[Callable]:
    return [check for pattern, check in CHECKS if re.search(pattern, command)]


# ---------------------------------------------------------------- tests


def test_the_walkthrough_has_commands():
    assert len(walkthrough_commands(WALKTHROUGH.read_text(encoding="utf-8"))) >= 15


def test_every_command_has_a_check_and_a_quoted_output():
    for command, output in walkthrough(WALKTHROUGH.read_text(encoding="utf-8")):
        assert checks_for(command), f"no check in tests/test_course.py for: {command}"
        assert output.strip(), f"no output quoted under: {command}"


def test_quoted_figures_agree():
    """The relations the checks use hold on the page's own figures (no data needed)."""
    text = WALKTHROUGH.read_text(encoding="utf-8")
    classified = forecast = lm = 0
    for command, output in walkthrough(text):
        classified += len(classification(output))
        forecast += len(forecasts(output))
        lm += len(language_model(output))
        if "--free-running" in command:
            check_free_running(output, output, command)
    assert classified >= 4 and forecast >= 4 and lm >= 5


@pytest.mark.realdata
def test_every_walkthrough_command_runs(tmp_path, monkeypatch):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not beside the checkout")
    # a checkout with ../shared beside it, as the page assumes: the configs name ../shared/data/... too
    checkout = tmp_path / "rnnkit"
    checkout.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)
    (checkout / "configs").symlink_to(ROOT / "configs")
    (checkout / "tests").symlink_to(ROOT / "tests")  # configs/langid.yaml reads the sample files there
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")  # rich reads it on every print: no wrapped table rows
    runner = CliRunner()
    for command, quoted in walkthrough(WALKTHROUGH.read_text(encoding="utf-8")):
        args = small(command)
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{command}\n{result.output}"
        for check in checks_for(command):
            try:
                check(quoted, result.stdout + result.stderr, command)
            except AssertionError as err:
                raise AssertionError(f"{command}: {check.__name__}: {err}\n{result.output}") from None
