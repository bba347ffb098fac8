"""`rnnkit eval`: metrics of trained runs on a split, as the run's task defines them."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from rnnkit.cli.app import command, out_console


@command("eval", "rnnkit eval runs/trump_lstm --split test --json")
def evaluate(
    runs: list[Path] | None = typer.Argument(None, help="Run folders (default: the most recent run under runs/)."),
    split: str = typer.Option("val", "--split", help="val or test (or train)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per run on stdout, nothing else."),
    which: str = typer.Option("best", "--which", help="Checkpoint to evaluate: best or last."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    generate: int = typer.Option(0, "--generate", metavar="N", help="Also generate N samples with the run's "
                                 "decoding settings: distinct-1..4, self-BLEU, EOS rate, mean length, BLEU/chrF "
                                 "against test sentences (needs sacrebleu, the metrics extra)."),
    compare_decoding: bool = typer.Option(False, "--compare-decoding", help="Generate with greedy, sampling "
                                          "T=0.8, top-k 10, nucleus 0.95, beam 5 and beam 5 + nucleus 0.95 and "
                                          "compare them in one table (N from --generate, default 50)."),
    free_running: bool = typer.Option(False, "--free-running", help="Also report the loss when the model "
                                      "reads its own predictions instead of the text (greedy and sampled feed)."),
    references: int = typer.Option(200, "--references", help="Test sentences BLEU/chrF compare against."),
) -> None:
    """Report trained runs' metrics on a split: loss, bits per character and perplexity (lm); accuracy,
    per-class accuracy, confusion matrix and accuracy by window length (classify); MAE/RMSE/MAPE per horizon
    next to naive baselines (forecast)."""
    from rnnkit.checkpoint import resolve_run
    from rnnkit.evaluation import evaluate_run

    folders = [resolve_run(run) for run in runs] if runs else [resolve_run(None)]
    results = [evaluate_run(folder, split=split, which=which, device=device) for folder in folders]
    if generate or compare_decoding or free_running:
        from rnnkit.generation_eval import add_text_metrics

        for record in results:
            add_text_metrics(record, n=generate, compare=compare_decoding, free_running=free_running,
                             references=references, which=which, device=device)
    if as_json:
        for record in results:
            print(json.dumps(record), flush=True)
        return
    if any(r.get("task", "lm") != "lm" for r in results):  # classify, forecast: the task prints its report
        from rnnkit.tasks import get_task

        for r in results:
            for part in get_task(r["task"]).tables(r):
                out_console.print(part)
        return
    table = Table(title=f"evaluation on {split}")
    for column in ("run", "checkpoint", "step", "loss (nats/char)", "bpc", "perplexity"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for r in results:
        table.add_row(r["run"], r["which"], str(r["step"]), f"{r['loss']:.4f}", f"{r['bpc']:.4f}",
                      f"{r['perplexity']:.3f}")
    out_console.print(table)
    if generate or compare_decoding or free_running:
        from rnnkit.generation_eval import text_tables

        for part in text_tables(results):
            out_console.print(part)
