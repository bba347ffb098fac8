"""`rnnkit eval`: metrics of trained runs on a split (loss in nats/char, bits per character, perplexity)."""

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
) -> None:
    """Report trained runs' loss (nats/char), bits per character and perplexity on a split."""
    from rnnkit.checkpoint import resolve_run
    from rnnkit.evaluation import evaluate_run

    folders = [resolve_run(run) for run in runs] if runs else [resolve_run(None)]
    results = [evaluate_run(folder, split=split, which=which, device=device) for folder in folders]
    if as_json:
        for record in results:
            print(json.dumps(record), flush=True)
        return
    table = Table(title=f"evaluation on {split}")
    for column in ("run", "checkpoint", "step", "loss (nats/char)", "bpc", "perplexity"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for r in results:
        table.add_row(r["run"], r["which"], str(r["step"]), f"{r['loss']:.4f}", f"{r['bpc']:.4f}",
                      f"{r['perplexity']:.3f}")
    out_console.print(table)
