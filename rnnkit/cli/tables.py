"""Rich tables of what the library returns as plain data: `eval` records, generated samples, text metrics.

The library never renders; the verbs in this package print what these functions build.
"""

from __future__ import annotations

from rich.table import Table

from rnnkit.tasks.forecast import BASELINES


def lm_tables(records: list[dict]) -> list:
    """One table for language-model `eval` records: loss, bpc and perplexity per run."""
    table = Table(title=f"evaluation on {records[0]['split']}")
    for column in ("run", "checkpoint", "step", "loss (nats/char)", "bpc", "perplexity"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for r in records:
        table.add_row(r["run"], r["which"], str(r["step"]), f"{r['loss']:.4f}", f"{r['bpc']:.4f}",
                      f"{r['perplexity']:.3f}")
    return [table]


def classify_tables(record: dict) -> list:
    """Rich tables of an `eval` record: summary, per-class accuracy with the confusion matrix, by length."""
    head = Table(title=f"{record['run']}: classification on {record['split']} ({record['which']}, "
                       f"step {record['step']})")
    for column in ("sequences", "loss", "accuracy", "0-1 error"):
        head.add_column(column, justify="right")
    head.add_row(str(record["items"]), f"{record['loss']:.4f}", f"{record['accuracy']:.4f}",
                 f"{record['error']:.4f}")
    classes = record["classes"]
    confusion = Table(title="per-class accuracy and confusion matrix (rows: true class, columns: predicted "
                            "class number)", show_edge=False, padding=(0, 1))
    confusion.add_column("class", no_wrap=True)
    confusion.add_column("acc.", justify="right", no_wrap=True)
    for k in range(len(classes)):
        confusion.add_column(str(k), justify="right", no_wrap=True)
    for k, name in enumerate(classes):
        acc = record["per_class_accuracy"][name]
        label = name if name.endswith(f" {k}") else f"{k} {name}"  # "station 3" already says 3
        confusion.add_row(label, "-" if acc is None else f"{acc:.3f}", *(str(n) for n in record["confusion"][k]))
    lengths = Table(title="accuracy against the test window length")
    for column in ("length", "sequences", "accuracy"):
        lengths.add_column(column, justify="right")
    for row in record["accuracy_by_length"]:
        lengths.add_row(str(row["length"]), str(row["sequences"]), f"{row['accuracy']:.4f}")
    return [head, confusion, lengths]


def forecast_tables(record: dict) -> list:
    """One rich table: per horizon, the model's MAE/RMSE/MAPE next to the two baselines'."""
    table = Table(title=f"{record['run']}: forecast on {record['split']} ({record['windows']} windows, "
                        f"{record['which']}, step {record['step']}); MAE / RMSE / MAPE on counts, zeros masked")
    table.add_column("horizon", justify="right")
    for label in ("model", *BASELINES.values()):
        table.add_column(label, justify="right")
    for k, row in enumerate(record["horizons"]):
        cells = [row, *(record["baselines"][b][k] for b in BASELINES)]
        table.add_row(f"{row['minutes']} min", *(f"{c['mae']:.2f} / {c['rmse']:.2f} / {c['mape']:.2f}%"
                                                  for c in cells))
    return [table]


def samples_table(prompt: str, samples: list) -> Table:
    """`rnnkit generate`'s table: prompt + text, log-probability and length of each sample."""
    table = Table(show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("text (prompt + generated; … = stopped at --max-len)")
    table.add_column("log p", justify="right")
    table.add_column("len", justify="right")
    for index, sample in enumerate(samples, 1):
        ending = "" if sample.finished else " …"
        table.add_row(str(index), prompt + sample.text + ending, f"{sample.log_prob:.2f}", str(sample.length))
    return table


def summary_table(result) -> Table:
    """The end-of-run table: best validation loss and bpc, time, where the run lives."""
    table = Table(title="training summary", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("run folder", str(result.run_dir))
    table.add_row("parameters", f"{result.parameters:,}")
    table.add_row("steps", f"{result.steps} (epoch {result.epoch}, stopped: {result.stopped})")
    best = result.best_metrics or {}
    if best:
        unit = " nats/char" if "bpc" in best else ""  # classify: nats per sequence; forecast: normalised scale
        table.add_row("best val loss", f"{best['loss']:.4f}{unit} at step {result.best_step}")
        for key in ("accuracy", "mae", "rmse", "mape"):  # classify and forecast tasks
            if key in best:
                table.add_row(f"best val {key}", f"{best[key]:.4f}")
        if "bpc" in best:
            table.add_row("best val bpc", f"{best['bpc']:.4f}")
        if "penultimate_acc" in best:
            table.add_row("penultimate acc", f"{best['penultimate_acc']:.3f}")
    table.add_row("time", f"{result.seconds:.1f} s ({result.chars_per_sec:,.0f} {result.unit}/s)")
    return table



def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def runs_table(folder, records: list[dict]) -> Table:
    """`rnnkit runs`: one row per run, newest first."""
    table = Table(title=f"{len(records)} run(s) in {folder}")
    for column in ("run", "task", "model", "params", "step", "best val", "status", "size", "changed"):
        table.add_column(column, justify="right" if column in ("params", "step", "size") else "left", overflow="fold")
    for r in records:
        if r["status"] == "damaged":
            table.add_row(r["name"], "-", "-", "-", "-", "-", "[red]damaged[/]", _bytes(r["bytes"]), r["changed"])
            continue
        best = "-" if r["best"] is None else f"{r['metric']} {r['best']:.4f}"
        step = "-" if r["step"] is None else f"{r['step']}/{r['max_steps']}"
        params = "-" if r["parameters"] is None else f"{r['parameters']:,}"
        table.add_row(r["name"], r["task"], f"{r['cell']} {r['layers']}x{r['hidden']}", params, step, best,
                      r["status"], _bytes(r["bytes"]), r["changed"].replace("T", " ")[:16])
    return table


EVAL_TABLES = {"classify": classify_tables, "forecast": forecast_tables}  # lm: lm_tables, one table for all runs


def eval_tables(records: list[dict]) -> list:
    """Every table of `rnnkit eval`: the task tables of each record, then text metrics where asked for."""
    lm = [r for r in records if r["task"] == "lm"]
    tables = lm_tables(lm) if lm else []
    for record in records:
        if record["task"] in EVAL_TABLES:
            tables += EVAL_TABLES[record["task"]](record)
    return tables + text_tables(records)


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"  # undefined (no reference, one sample): "-"


def text_tables(records: list[dict]) -> list:
    """Rich tables of what `add_text_metrics` added to the records: one free-running table with a row per
    run, then each run's generation tables (an empty list when it added nothing)."""
    tables = []
    running = [r for r in records if "free_running" in r]
    if running:
        table = Table(title=f"teacher-forced vs free-running loss on {running[0]['split']} (nats/char; bpc)")
        for column in ("run", "teacher forced", "free running (greedy)", "free running (sampled)"):
            table.add_column(column, justify="left" if column == "run" else "right")
        for record in running:
            feeds = record["free_running"]
            cells = [f"{m['loss']:.4f} ({m['bpc']:.3f})" for m in
                     (record, feeds["free_running_greedy"], feeds["free_running_sample"])]
            table.add_row(record["run"], *cells)
        tables.append(table)
    for record in records:
        tables += _generation_tables(record)
    return tables


def _generation_tables(record: dict) -> list:
    tables = []
    rows = record.get("generation")
    if rows:
        first = rows[0]
        table = Table(title=f"{record['run']}, generated text: {first['samples']} samples per method, "
                            f"BLEU/chrF against {first['references']} test sentences",
                      caption="d-n: distinct word n-grams / all; sBLEU: self-BLEU; EOS: share ending with EOS; "
                              "len: mean characters")
        for column in ("decoding", "d-1", "d-2", "d-3", "d-4", "sBLEU", "EOS", "len", "BLEU", "chrF"):
            table.add_column(column, justify="left" if column == "decoding" else "right")
        for r in rows:
            table.add_row(r["decoding"], *(_number(r[f"distinct_{k}"], 2) for k in (1, 2, 3, 4)),
                          _number(r["self_bleu"], 1), _number(r["eos_rate"], 2), _number(r["mean_length"], 0),
                          _number(r["bleu"], 1), _number(r["chrf"], 1))
        examples = Table(title="first sample of each method (unique: distinct samples; s: seconds)")
        for column in ("decoding", "unique", "s", "first sample"):
            examples.add_column(column, overflow="fold", justify="right" if column in ("unique", "s") else "left")
        for r in rows:
            examples.add_row(r["decoding"], str(r["unique"]), f"{r['seconds']:.1f}",
                             repr(r["examples"][0]) if r["examples"] else "")
        tables += [table, examples]
    return tables


def _mean_std(summary: dict | None, digits: int) -> str:
    """`1.2345 ± 0.0123` (a single value: `1.2345 ± -`)."""
    if summary is None:
        return "-"
    std = "-" if summary["std"] is None else f"{summary['std']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} ± {std}"


def _metric_columns(summary: dict) -> list[tuple[str, list[str]]]:
    """(title, metric names) of each aggregate table: a forecast gets one table per error measure with a
    column per horizon; other tasks one table of every metric."""
    names = list(dict.fromkeys(name for row in summary["rows"] for name in row["metrics"]))
    if summary["task"] != "forecast":
        return [("", names)]
    tables = []
    for measure in ("mae", "rmse", "mape"):
        tables.append((measure.upper(), [measure] + [n for n in names if n.startswith(f"{measure}_")]))
    return tables


def aggregate_tables(summary: dict) -> list:
    """`eval --group-by` and the end of `rnnkit sweep`: one row per group, mean ± standard deviation over its
    runs (seeds) and their number; the best row (by summary['best_by']) starred."""
    digits = 2 if summary["task"] == "forecast" else 4
    keys = summary["group_by"]
    better = "higher" if summary["higher_is_better"] else "lower"
    tables = []
    for title, names in _metric_columns(summary):
        heading = f"{title + ' ' if title else ''}on {summary['split']}: mean ± std over seeds"
        table = Table(title=heading, caption=f"* best {summary['best_by']} ({better} is better)",
                      title_justify="left")
        table.add_column("")
        for key in keys or ["runs"]:
            table.add_column(key)
        table.add_column("n", justify="right")
        for name in names:  # a forecast's columns: all (the mean over horizons), 15 min, 30 min...
            label = name if not title else "all" if name == title.lower() else name.split("_", 1)[1][:-3] + " min"
            table.add_column(label, justify="right")
        for row in summary["rows"]:
            group = [str(row["group"][key]) for key in keys] or ["all"]
            cells = [_mean_std(row["metrics"].get(name), digits) for name in names]
            table.add_row("*" if row["best"] else "", *group, str(row["n"]), *cells,
                          style="bold" if row["best"] else None)
        tables.append(table)
    return tables
