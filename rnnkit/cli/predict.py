"""`rnnkit predict`: a trained run on new inputs: the language of text lines, or a forecast from counts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from rnnkit.cli.app import command, err_console, fail, out_console


@command("predict", "cat lines.txt | rnnkit predict runs/langid --top 2 --json | head")
def predict(
    run: Path = typer.Argument(..., help="Run folder: a language identification or a forecasting run."),
    texts: list[str] | None = typer.Argument(None, help="Texts to classify, one input each (default: the lines of "
                                             "--input, or of standard input)."),
    input_file: str | None = typer.Option(None, "--input", "-i", metavar="FILE", help="Classifier: a text file, one "
                                          "input per line (- = standard input). Forecaster: the last data.history "
                                          "quarter-hours as CSV (time,s0_in,s0_out,...), .npz or .safetensors."),
    top: int = typer.Option(1, "--top", metavar="K", help="Classifier: the K most probable labels."),
    replace_unknown: str | None = typer.Option(None, "--replace-unknown", metavar="C", help="Classifier: read "
                                               "characters outside the vocabulary as C (else the line is an error)."),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout: one object per input line (classifier), "
                                 "one object (forecaster)."),
    from_split: str | None = typer.Option(None, "--from-split", metavar="SPLIT", help="Forecaster: forecast a "
                                          "window of the prepared data (val, test, train), next to the truth."),
    day: int | None = typer.Option(None, "--day", metavar="D", help="With --from-split: the day of the split, 0..."),
    slot: str | None = typer.Option(None, "--slot", metavar="S", help="With --from-split: the last quarter-hour "
                                    "read, HH:MM or slot 0..72 (0 = 05:30)."),
    date: str | None = typer.Option(None, "--date", metavar="YYYY-MM-DD", help="With --input, for a forecaster "
                                    "trained with data.day_features: the day of the counts (weekend or holiday?)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Classifier: lines per model call at most (fewer when "
                                   "the input pauses: each answer comes as soon as its line is read)."),
    which: str = typer.Option("best", "--which", help="Checkpoint to load: best or last."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Predict with a trained run.

    Language identification (task: classify, data.source langid): each TEXT, or each line of --input FILE or of
    standard input, gets its most probable label and probability (--top K: K labels), in input order, each
    answer written as soon as its line is read. The whole line is read, whatever its length. An empty line or a
    character outside the vocabulary gets an error record and the stream goes on; the exit code is then 1.

    Forecasting (task: forecast): --input FILE holds the last data.history quarter-hours of every station, the
    output is the forecast of each horizon in counts (CSV, or --json); a run trained with data.day_features
    also needs --date, the day of those counts. --from-split test --day D --slot S
    forecasts a window of the prepared data and prints it next to the truth.
    """
    from rnnkit.inference.predict import TEXT, prediction_kind
    from rnnkit.runs.loaded import load

    loaded = load(run, which=which, device=device)
    if prediction_kind(loaded) == TEXT:
        if from_split is not None or day is not None or slot is not None or date is not None:
            raise fail("--from-split, --day, --slot and --date: forecasting runs only; a classifier reads text")
        if texts and input_file is not None:
            raise fail("give texts as arguments or --input FILE, not both")
        source = texts if texts else (input_file or "-")
        if source == "-" and sys.stdin.isatty():
            err_console.print("reading lines from the terminal (Ctrl-D ends)", markup=False)
        _classify(loaded, source, top, replace_unknown, as_json, batch_size)
        return
    if texts or input_file == "-":
        raise fail(f"{loaded.path}: a forecasting run reads --input FILE (CSV, .npz, .safetensors) or --from-split, "
                   f"not text arguments or standard input")
    result = loaded.predict(input_file, top=top, replace_unknown=replace_unknown, slot=slot, split=from_split,
                            day=day, date=date)
    if as_json:
        print(json.dumps({"run": str(loaded.path), "which": loaded.which, "step": loaded.step, **result.to_dict()}))
    elif result.truth is not None:
        out_console.print(_truth_table(loaded, result))
    else:
        _write_csv(result)


def _classify(loaded, source, top: int, replace_unknown: str | None, as_json: bool, batch_size: int) -> None:
    """Write each batch's answers as soon as it is classified; exit 1 at the end if a line failed."""
    from rnnkit.inference.classify import TextClassifier
    from rnnkit.inference.lines import line_batches

    classifier = TextClassifier(loaded, top, replace_unknown)
    failed, first_error, total = 0, None, 0
    try:
        for lines in line_batches(source, batch_size):
            out = []
            for text, p in zip(lines, classifier.classify(lines, total + 1), strict=True):
                if p.error is not None:
                    failed += 1
                    first_error = first_error or f"line {p.line}: {p.error}"
                out.append(json.dumps(p.to_dict(top > 1), ensure_ascii=False) if as_json else _plain(p, text))
            total += len(lines)
            sys.stdout.write("\n".join(out) + "\n")
            sys.stdout.flush()
    except BrokenPipeError:  # the reader is gone (`| head`): stop quietly
        _silence_stdout()
        return
    if failed:
        err_console.print(f"{failed:,} of {total:,} line(s) could not be classified (first: {first_error})",
                          markup=False, soft_wrap=True)
        raise typer.Exit(1)


def _plain(p, text: str) -> str:
    """`label<TAB>probability` (K pairs with --top K), then the text; `error<TAB>message<TAB>text`."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # a byte that is not UTF-8: U+FFFD
    if p.error is not None:
        return f"error\t{p.error}\t{text}"
    return "\t".join(f"{t.label}\t{t.probability:.3f}" for t in p.top) + f"\t{text}"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush meets no closed pipe (no BrokenPipe noise)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (tests)
        pass


def _write_csv(result) -> None:
    print(",".join(["time", "minutes", *result.columns]))
    for time, minutes, row in zip(result.times, result.minutes, result.counts, strict=True):
        print(",".join([time, str(minutes), *(f"{v:.2f}" for v in row)]))


def _truth_table(loaded, result):
    from rich.table import Table

    table = Table(title=f"{loaded.path}: {result.split} day {result.day}, forecast after {result.last} (counts)")
    table.add_column("station")
    table.add_column("flow")
    for time in result.times:
        table.add_column(f"{time}", justify="right")
        table.add_column("truth", justify="right", style="dim")
    for n, column in enumerate(result.columns):
        station, flow = column.split("_")
        cells = []
        for k in range(len(result.times)):
            cells += [f"{result.counts[k][n]:.1f}", f"{result.truth[k][n]:.0f}"]
        table.add_row(station[1:], flow, *cells)
    return table
