"""`rnnkit predict` through the real CLI: a langid classifier on text lines (the same accuracy as `eval`, streamed
input, per-line errors, --top, --replace-unknown) and a forecaster on counts (the forecasts `eval` scores, input
file formats and their errors). Tiny models, fixed seeds."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.evaluation.metrics import add_sums, horizon_errors, masked_error_sums
from rnnkit.inference.forecast import column_names, slot_time
from rnnkit.runs.loaded import load

LANGID = Path(__file__).resolve().parent / "data" / "langid"
TRAIN = {"device": "cpu", "histogram_every": 0, "seed": 0}
CONFIGS = {
    "langid": {"task": "classify",
               "data": {"source": "langid", "classes": f"fr={LANGID / 'fr.txt'},en={LANGID / 'en.txt'}",
                        "charset": "unicode", "min_len": 10, "max_len": 40, "val_fraction": 0.1,
                        "test_fraction": 0.2},
               "model": {"cell": "lstm", "hidden_size": 16, "embedding_dim": 8},
               "train": {**TRAIN, "batch_size": 8, "max_steps": 60, "eval_every": 30, "checkpoint_every": 30,
                         "lr": 0.01}},
    "forecast": {"task": "forecast",
                 "data": {"source": "metro-synthetic", "stations": 3, "history": 4, "horizon": 3},
                 "model": {"cell": "gru", "hidden_size": 8},
                 "train": {**TRAIN, "batch_size": 16, "max_steps": 10, "eval_every": 5, "checkpoint_every": 5}},
    "daily": {"task": "forecast",  # reads whether the day is off (the synthetic twin's calendar starts on a Tuesday)
              "data": {"source": "metro-synthetic", "stations": 3, "history": 4, "horizon": 3, "day_features": True,
                       "first_date": "2019-01-01", "days_off": "2019-01-01", "profile_features": True},
              "model": {"cell": "gru", "hidden_size": 8},
              "train": {**TRAIN, "batch_size": 16, "max_steps": 10, "eval_every": 5, "checkpoint_every": 5}},
    "daytype": {"task": "forecast",  # reads the day's type through its profile only (data.profile_by: day_type)
                "data": {"source": "metro-synthetic", "stations": 3, "history": 4, "horizon": 3,
                         "first_date": "2019-01-01", "days_off": "2019-01-01", "profile_features": True,
                         "profile_by": "day_type"},
                "model": {"cell": "gru", "hidden_size": 8, "forecast_base": "profile"},
                "train": {**TRAIN, "batch_size": 16, "max_steps": 10, "eval_every": 5, "checkpoint_every": 5}},
    "ascii": {"task": "classify",
              "data": {"source": "langid", "classes": f"fr={LANGID / 'fr.txt'},en={LANGID / 'en.txt'}",
                       "charset": "ascii", "lowercase": True, "min_len": 10},
              "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 4},
              "train": {**TRAIN, "batch_size": 8, "max_steps": 2, "eval_every": 2, "checkpoint_every": 2}},
    "stations": {"task": "classify",
                 "data": {"source": "metro-synthetic", "stations": 3, "window": 8},
                 "model": {"cell": "gru", "hidden_size": 8},
                 "train": {**TRAIN, "batch_size": 16, "max_steps": 2, "eval_every": 2, "checkpoint_every": 2}},
}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """runs/langid (fr/en, data.max_len 40), runs/ascii (the same, lower-cased ASCII, untrained), runs/forecast
    (3 stations, 4 in, 3 out), runs/daily (the same with day and profile features), runs/daytype (a profile per day
    type, forecasting the deviation from it), runs/stations (metro classify)."""
    root = tmp_path_factory.mktemp("predict")
    mp = pytest.MonkeyPatch()
    mp.setenv("RNNKIT_DATA", str(root / "data"))
    mp.chdir(root)
    for name, config in CONFIGS.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
        result = CliRunner().invoke(app, ["train", f"{name}.yaml", "--quiet"])
        assert result.exit_code == 0, result.output
    yield root
    mp.undo()


def _predict(*args, input=None):
    return CliRunner().invoke(app, ["predict", *map(str, args)], input=input)


def _records(result, code: int = 0) -> list[dict]:
    assert result.exit_code == code, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def _one_line_error(result, code: int, *fragments: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code and len(lines) == 1, result.output
    message = lines[0]
    for fragment in fragments:
        assert fragment in message, message
    return message


def _test_lines(work) -> tuple[list[str], list[str]]:
    """The test split's samples as text lines with their labels: the lines `eval --split test` reads. The split is
    drawn per class with data.split_seed (not the last lines of each file), so it is taken from the prepared data."""
    task = load("runs/langid", device="cpu").data()
    samples, labels = task.data.splits["test"]
    return [task.data.vocab.decode(s) for s in samples], [task.class_names[i] for i in labels.tolist()]


def _python(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "rnnkit", *args], env=env, **kwargs)


# ---------------------------------------------------------------- classification


def test_predict_on_the_test_lines_gives_the_accuracy_and_confusion_of_eval(work):
    lines, truth = _test_lines(work)
    assert len(set(truth)) == 2 and max(map(len, lines)) <= 40
    (work / "test.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    records = _records(_predict("runs/langid", "--input", "test.txt", "--json"))
    assert [r["line"] for r in records] == list(range(1, len(lines) + 1))
    evaluated = _records(CliRunner().invoke(app, ["eval", "runs/langid", "--split", "test", "--json"]))[0]
    classes = evaluated["classes"]
    confusion = [[0] * len(classes) for _ in classes]
    for record, label in zip(records, truth, strict=True):
        confusion[classes.index(label)][classes.index(record["label"])] += 1
    assert confusion == evaluated["confusion"] and len({r["label"] for r in records}) == 2
    accuracy = sum(r["label"] == t for r, t in zip(records, truth, strict=True)) / len(lines)
    assert accuracy == pytest.approx(evaluated["accuracy"])
    assert all(0.5 <= r["probability"] <= 1.0 for r in records)  # two classes: the most probable has >= 1/2


def test_text_arguments_top_k_and_the_plain_output(work):
    records = _records(_predict("runs/langid", "le train est en retard", "the train is late", "--top", "5", "--json"))
    assert [r["line"] for r in records] == [1, 2]
    for record in records:
        top = record["top"]
        assert len(top) == 2  # --top 5 of two classes: both
        assert {t["label"] for t in top} == {"fr", "en"} and top[0]["label"] == record["label"]
        assert top[0]["probability"] >= top[1]["probability"]
        assert top[0]["probability"] + top[1]["probability"] == pytest.approx(1.0, abs=1e-5)
    plain = _predict("runs/langid", "le train est en retard", "--top", "2")
    assert plain.exit_code == 0, plain.output
    label, p, other, q, text = plain.stdout.rstrip("\n").split("\t")
    assert text == "le train est en retard" and {label, other} == {"fr", "en"}
    assert float(p) == pytest.approx(records[0]["probability"], abs=1e-3) and float(p) >= float(q)
    assert "top" not in _records(_predict("runs/langid", "le train", "--json"))[0]


def test_a_line_is_read_whole_whatever_the_training_length(work):
    run = load("runs/langid", device="cpu")
    lines, _ = _test_lines(work)
    long = " ".join(lines * 20)  # thousands of characters; the model trained on samples of at most 40
    assert len(long) > 2000
    whole, cut = run.predict(long), run.predict(long[:40])
    assert whole.probability != pytest.approx(cut.probability, abs=1e-6)
    from rnnkit.inference.classify import TextClassifier

    ids, _ = TextClassifier(run).encode(long)
    with torch.no_grad():
        probs = run.model(torch.tensor(ids).unsqueeze(1)).softmax(-1)[0]  # (C,): the whole line, no mask
    assert max(probs.tolist()) == pytest.approx(whole.probability, abs=1e-6)
    (work / "long.txt").write_text(f"{long}\n", encoding="utf-8")
    record = _records(_predict("runs/langid", "-i", "long.txt", "--json"))[0]
    assert record["probability"] == pytest.approx(whole.probability, abs=1e-6)


def test_lines_are_read_as_training_read_them(work):
    run = load("runs/langid", device="cpu")
    plain = run.predict("l'école est fermée")
    for variant in ("  l'école \t est   fermée  ", "l'école\u00a0est fermée\r"):  # whitespace as prepare cuts it
        assert run.predict(variant).probability == pytest.approx(plain.probability, abs=1e-6)
    # a character the vocabulary lacks is spelt as prepare spelt the corpus: here lower case, ASCII
    ascii_run = load("runs/ascii", device="cpu")
    assert ascii_run.predict("L\u2019\u00c9COLE  est Ferm\u00e9e").top == ascii_run.predict("l'ecole est fermee").top
    assert "'\u2603' (U+2603)" in ascii_run.predict("l'\u2603").error
    # data.charset unicode kept typographic quotes as they were; the corpus has none, so the model never saw one
    assert "'\u2019' (U+2019) at column 2" in run.predict("l\u2019école est fermée").error


def test_bad_lines_get_error_records_and_the_stream_goes_on(work):
    text = "le train est en retard\n\n   \nle \u2603 est là\nthe train is late\n"
    result = _predict("runs/langid", "--json", input=text)
    records = _records(result, code=1)
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5]
    assert records[1] == {"line": 2, "error": "empty line"}
    assert records[2]["error"].startswith("blank line")
    assert "'\u2603' (U+2603) at column 4" in records[3]["error"] and "--replace-unknown" in records[3]["error"]
    assert "label" in records[0] and "label" in records[4]
    assert "3 of 5 line(s) could not be classified (first: line 2: empty line)" in " ".join(result.stderr.split())

    replaced = _records(_predict("runs/langid", "--json", "--replace-unknown", "e", input="le \u2603 est là\n"))
    assert replaced[0]["replaced"] == 1
    assert replaced[0]["probability"] == pytest.approx(
        _records(_predict("runs/langid", "le e est là", "--json"))[0]["probability"], abs=1e-6)
    plain = _predict("runs/langid", input="ok ok ok\n\xff bad\n".encode("latin-1"))
    assert plain.exit_code == 1
    assert plain.stdout.splitlines()[1].startswith("error\tnot in the model's vocabulary") and \
        "byte 0xFF, which is not UTF-8" in plain.stdout


@pytest.mark.parametrize("args, code, fragment", [
    (["--replace-unknown", "\u2603"], 2, "--replace-unknown: '\u2603' must be one character of the model's"),
    (["--top", "0"], 2, "--top: 0"),
    (["--from-split", "test", "--day", "0", "--slot", "9"], 2, "forecasting runs only"),
    (["x", "--input", "f.txt"], 2, "not both"),
    (["--input", "missing.txt"], 1, "missing.txt: no such file"),
])
def test_classifier_option_mistakes_are_one_line(work, args, code, fragment):
    _one_line_error(_predict("runs/langid", *args), code, fragment)


def test_a_metro_station_classifier_is_refused_in_one_line(work):
    _one_line_error(_predict("runs/stations", "--input", "x.csv"), 2, "station classifier of metro flows",
                    "predict takes language identification runs")


def test_answers_come_before_the_input_ends(work):
    """A program that writes a line and waits for its answer gets it: output is not held until end of input."""
    proc = _python("predict", "runs/langid", "--json", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True, bufsize=1)
    answers: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [answers.put(line) for line in proc.stdout], daemon=True).start()
    try:
        for number, text in enumerate(["le train est en retard", "the train is late", ""], start=1):
            proc.stdin.write(text + "\n")
            proc.stdin.flush()
            record = json.loads(answers.get(timeout=120))  # the input is still open
            assert record["line"] == number and ("label" in record) == bool(text)
        proc.stdin.close()
        assert proc.wait(timeout=60) == 1  # the empty line failed
        assert "1 of 3 line(s)" in proc.stderr.read()
    finally:
        proc.kill()


def test_a_closed_output_pipe_ends_the_command_quietly(work):
    lines, _ = _test_lines(work)
    (work / "big.txt").write_text("".join(f"{lines[i % len(lines)]}\n" for i in range(20000)), encoding="utf-8")
    script = (f"cat big.txt | {sys.executable} -m rnnkit predict runs/langid --json 2> err.txt | head -3; "
              f"echo \"status ${{PIPESTATUS[1]}}\"")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    records = out.stdout.splitlines()
    assert [json.loads(r)["line"] for r in records[:3]] == [1, 2, 3] and records[3] == "status 0", out
    assert (work / "err.txt").read_text() == ""  # no traceback, no BrokenPipeError noise


# ---------------------------------------------------------------- forecasting


def _eval_forecasts(run, split: str = "test") -> dict[tuple[int, int], torch.Tensor]:
    """{(day, first slot): counts (K, N)}: what ForecastTask.report scores, batch by batch, for every window."""
    task, out = run.data(), {}
    with torch.no_grad():
        for batch in task.batches(split, 512, 0, False):
            counts = task.counts(task.forecast(run.model, batch, run.device)[-1])  # as report()
            for (day, first), forecast in zip(batch.windows.tolist(), counts, strict=True):
                out[day, first] = forecast
    return out


def _write_input(work, name: str, counts: torch.Tensor, last: int) -> Path:
    """counts (H, S, F) ending at slot `last` as a CSV, .npz or .safetensors input file."""
    path = work / name
    H, S, F = counts.shape
    if path.suffix == ".csv":
        rows = [",".join(["time", *column_names(S, F)])]
        rows += [",".join([slot_time(last - H + 1 + h), *(f"{v:g}" for v in counts[h].flatten().tolist())])
                 for h in range(H)]
        path.write_text("\n".join(rows) + "\n")
    elif path.suffix == ".npz":
        np.savez(path, counts=counts.numpy(), slot=np.int64(last))
    else:
        from safetensors.torch import save_file

        save_file({"counts": counts.contiguous(), "slot": torch.tensor(last)}, str(path))
    return path


def test_the_forecast_of_a_test_window_is_the_one_eval_scores(work):
    run = load("runs/forecast", device="cpu")
    scored = _eval_forecasts(run)
    day, last = 2, 30  # 13:00
    first = last - 4 + 1
    record = _records(_predict("runs/forecast", "--from-split", "test", "--day", day, "--slot", slot_time(last),
                               "--json"))[0]
    columns = column_names(3, 2)
    forecast = torch.tensor([[h["forecast"][c] for c in columns] for h in record["horizons"]])
    # The same window, read in a batch of 1 here and of 512 by eval: the compiled kernels' matrix products may
    # round differently with the batch size, so equal to float32 precision, not bit for bit.
    torch.testing.assert_close(forecast, scored[day, first], rtol=1e-5, atol=1e-4)
    truth = run.data().raw["test"][day, last + 1:last + 4].flatten(1)  # (K, N) counts
    assert torch.equal(torch.tensor([[h["truth"][c] for c in columns] for h in record["horizons"]]), truth)
    assert [h["time"] for h in record["horizons"]] == ["13:15", "13:30", "13:45"]
    assert [h["minutes"] for h in record["horizons"]] == [15, 30, 45]

    # The same counts given as a file, in each format: the same forecast (inputs built by make_batch itself).
    counts = run.data().raw["test"][day, first:last + 1]  # (H, S, F)
    for name in ("window.csv", "window.npz", "window.safetensors"):
        path = _write_input(work, name, counts, last)
        again = _records(_predict("runs/forecast", "--input", path, "--json"))[0]
        assert again["last"] == "13:00" and "truth" not in again["horizons"][0]
        again_forecast = torch.tensor([[h["forecast"][c] for c in columns] for h in again["horizons"]])
        assert torch.equal(again_forecast, forecast), name  # batch of 1 both ways: bit for bit
    csv = _predict("runs/forecast", "--input", work / "window.csv")
    header, *rows = csv.stdout.splitlines()
    assert header == "time,minutes," + ",".join(columns) and len(rows) == 3 and rows[0].startswith("13:15,15,")
    assert [float(v) for v in rows[2].split(",")[2:]] == pytest.approx(scored[day, first][2].tolist(), abs=0.006)
    table = _predict("runs/forecast", "--from-split", "test", "--day", day, "--slot", last)
    assert table.exit_code == 0 and "forecast after 13:00" in table.stdout and "truth" in table.stdout


def test_predict_over_every_test_window_reproduces_eval_mae(work):
    run = load("runs/forecast", device="cpu")
    evaluated = _records(CliRunner().invoke(app, ["eval", "runs/forecast", "--split", "test", "--json"]))[0]
    task, sums = run.data(), None
    for day, first in task.windows("test").tolist():
        f = run.predict(split="test", day=day, slot=first + 3)
        sums = add_sums(sums, masked_error_sums(torch.tensor([f.counts]), torch.tensor([f.truth])))
    mine = [row["mae"] for row in horizon_errors(sums)]
    assert mine == pytest.approx([row["mae"] for row in evaluated["horizons"]], rel=1e-5)


CSV_HEADER = "time," + ",".join(column_names(3, 2))
GOOD_ROWS = ["07:00,1,2,3,4,5,6", "07:15,1,2,3,4,5,6", "07:30,1,2,3,4,5,6", "07:45,1,2,3,4,5,6"]


@pytest.mark.parametrize("text, fragment", [
    ("time,s0_in,s0_out,s1_in,s1_out\n" + "\n".join(r[:-4] for r in GOOD_ROWS),
     "the header names 2 station(s); the run forecasts 3 (s0 .. s2)"),
    ("time,s0_in,s1_in,s2_in\n" + "\n".join(r.rsplit(",", 3)[0] for r in GOOD_ROWS),
     "the header has flow(s) in; the run reads in and out (data.flows: both)"),
    (CSV_HEADER + "\n" + "\n".join(GOOD_ROWS[:3]), "3 quarter-hour row(s); the run reads the last data.history = 4"),
    (CSV_HEADER + "\n" + "\n".join([*GOOD_ROWS[:3], "07:45,1,nan,3,4,5,6"]), "row 4, s0_out: nan is not a count"),
    (CSV_HEADER + "\n" + "\n".join([*GOOD_ROWS[:3], "07:45,1,2,-3,4,5,6"]), "row 4, s1_in: negative count -3"),
    (CSV_HEADER + "\n" + "\n".join([*GOOD_ROWS[:3], "07:50,1,2,3,4,5,6"]), "time '07:50' is not a quarter-hour"),
    (CSV_HEADER + "\n" + "\n".join([*GOOD_ROWS[:3], "08:00,1,2,3,4,5,6"]), "08:00 does not follow 07:30"),
    (CSV_HEADER + ",x\n" + "\n".join(r + ",1" for r in GOOD_ROWS), "unknown column 'x'"),
    ("s0_in,s0_out\n1,2\n", "no time column"),
    (CSV_HEADER + "\n" + "\n".join(f"{t},1,2,3,4,5,6" for t in ("22:45", "23:00", "23:15", "23:30")),
     "the last quarter-hour read is 23:30; with data.history = 4 and data.horizon = 3"),
])
def test_csv_input_mistakes_are_named_in_one_line(work, text, fragment):
    (work / "bad.csv").write_text(text + "\n")
    _one_line_error(_predict("runs/forecast", "--input", "bad.csv"), 1, "bad.csv", fragment)


@pytest.mark.parametrize("shape, slot, fragment", [
    ((4, 2, 2), 9, "counts has 2 station(s); the run reads 3"),
    ((5, 3, 2), 9, "counts has 5 quarter-hour(s) (data.history); the run reads 4"),
    ((4, 3, 1), 9, "counts has 1 flow(s) (in and out (data.flows: both)); the run reads 2"),
    ((4, 3, 2), 70, "must be 06:15 to 22:45"),
    ((4, 3, 2), 2, "the last quarter-hour read is 06:00"),
])
def test_array_input_mistakes_are_named_in_one_line(work, shape, slot, fragment):
    for suffix in (".npz", ".safetensors"):
        path = _write_input(work, f"bad{suffix}", torch.ones(shape), slot)
        _one_line_error(_predict("runs/forecast", "--input", path), 1, fragment)


def test_array_values_and_names_are_checked(work):
    counts = torch.ones(4, 3, 2)
    counts[1, 2, 0] = float("nan")
    _one_line_error(_predict("runs/forecast", "-i", _write_input(work, "nan.npz", counts, 9)), 1,
                    "1 NaN/inf value(s), first at step 1, station 2, flow in")
    counts[1, 2, 0] = -1
    _one_line_error(_predict("runs/forecast", "-i", _write_input(work, "neg.npz", counts, 9)), 1,
                    "1 negative count(s), first at step 1, station 2, flow in")
    np.savez(work / "noslot.npz", counts=np.ones((4, 3, 2)))
    _one_line_error(_predict("runs/forecast", "-i", work / "noslot.npz"), 1, "no array named slot")
    (work / "in.txt").write_text("1,2\n")
    _one_line_error(_predict("runs/forecast", "-i", work / "in.txt"), 1, "unknown input type .txt")


@pytest.mark.parametrize("args, fragment", [
    (["some text"], "not text arguments or standard input"),
    (["--input", "x.csv", "--top", "2"], "--top and --replace-unknown: language identification runs only"),
    ([], "a forecasting run reads --input FILE"),
    (["--from-split", "test", "--day", "0"], "takes --day D and --slot S"),
    (["--from-split", "test", "--day", "9", "--slot", "9"], "--day: 9 is not a day of the test split, which has 5"),
    (["--from-split", "test", "--day", "0", "--slot", "7:10"], "--slot: '7:10' is not a quarter-hour"),
    (["--from-split", "test", "--day", "0", "--slot", "23:30"], "--slot: the last quarter-hour read is 23:30"),
    (["--from-split", "dev", "--day", "0", "--slot", "9"], "--from-split: 'dev' is not one of train, val, test"),
])
def test_forecaster_option_mistakes_are_one_line(work, args, fragment):
    _one_line_error(_predict("runs/forecast", *args), 2, fragment)


@pytest.mark.parametrize("name, key", [("daily", "data.day_features: true"), ("daytype", "data.profile_by: day_type")])
def test_a_forecaster_that_reads_the_day_type_takes_the_date_of_its_counts(work, name, key):
    run = load(f"runs/{name}", device="cpu")
    assert run.data().day_off["test"].tolist() == [0.0] * 5  # Monday 2019-01-21 to Friday 25 (val: the weekend)
    counts, last = run.data().raw["test"][1, 6:10], 9  # (H, S, F): Tuesday 2019-01-22, 07:00 to 07:45
    path = _write_input(work, f"{name}.npz", counts, last)
    columns = column_names(3, 2)

    def forecast(*args) -> torch.Tensor:
        record = _records(_predict(f"runs/{name}", *args, "--json"))[0]
        return torch.tensor([[h["forecast"][c] for c in columns] for h in record["horizons"]])

    weekday = forecast("--input", path, "--date", "2019-01-22")
    torch.testing.assert_close(weekday, forecast("--from-split", "test", "--day", 1, "--slot", last))
    assert torch.equal(weekday, forecast("--input", path, "--date", "2026-12-02"))  # another Wednesday
    sunday = forecast("--input", path, "--date", "2019-01-20")
    assert not torch.equal(sunday, weekday)  # the day's type reaches the model
    assert torch.equal(sunday, forecast("--input", path, "--date", "2019-01-01"))  # data.days_off: a holiday
    _one_line_error(_predict(f"runs/{name}", "--input", path), 2,
                    f"--date: runs/{name} reads whether the day is off ({key})")
    _one_line_error(_predict(f"runs/{name}", "--input", path, "--date", "22/01/2019"), 2,
                    "--date: '22/01/2019' is not a date; write YYYY-MM-DD")
    _one_line_error(_predict("runs/forecast", "--input", path, "--date", "2019-01-22"), 2,
                    "--date: runs/forecast does not read the day (data.day_features: false, data.profile_by: all)")
    _one_line_error(_predict(f"runs/{name}", "--from-split", "test", "--day", 1, "--slot", 9, "--date", "2019-01-22"),
                    2, "--date: goes with --input")


def test_the_python_api_predicts_from_counts(work):
    run = load("runs/forecast", device="cpu")
    counts = run.data().raw["test"][0, 6:10]  # (H, S, F), last slot 9 = 07:45
    from_split = run.predict(split="test", day=0, slot="07:45")
    assert run.predict(counts, slot="07:45").counts == from_split.counts
    assert run.predict(counts.numpy(), slot=9).counts == from_split.counts
    assert from_split.last == "07:45" and from_split.times == ["08:00", "08:15", "08:30"]


def test_the_readme_python_example_runs(work, capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### predict", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code.replace("runs/metro3", "runs/forecast"), "README.md", "exec"), {})
    first, second = capsys.readouterr().out.splitlines()
    assert first.split()[0] in ("fr", "en") and first.endswith("None")
    assert second.startswith("['08:00', '08:15', '08:30'] ['s0_in', 's0_out']")
