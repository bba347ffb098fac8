"""`rnnkit eval`: metrics of trained runs on a split, as the run's task defines them."""

from __future__ import annotations

import json
from pathlib import Path

import typer

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
    group_by: list[str] = typer.Option([], "--group-by", metavar="KEY", help="One row per value of this config key "
                                       "(repeatable), e.g. a sweep's runs/NAME/* --group-by model.cell: each metric's "
                                       "mean ± std over the group's runs (seeds) and their number, the best starred."),
) -> None:
    """Report trained runs' metrics on a split: loss, bits per character and perplexity (lm); accuracy,
    per-class accuracy, confusion matrix and accuracy by window length (classify); MAE/RMSE/MAPE per horizon
    next to naive baselines (forecast)."""
    from rnnkit.cli.sweep import show_summary
    from rnnkit.cli.tables import eval_tables
    from rnnkit.evaluation.aggregate import aggregate, check_group_keys, group_values
    from rnnkit.evaluation.generated import add_text_metrics
    from rnnkit.runs.loaded import load

    check_group_keys(group_by)  # before any run is evaluated
    results, groups = [], []
    for folder in runs or [None]:
        run = load(folder, which=which, device=device)  # one read of the checkpoint per run, data prepared once
        record = run.evaluate(split)
        if generate or compare_decoding or free_running:
            add_text_metrics(run, record, n=generate, compare=compare_decoding, free_running=free_running,
                             references=references)
        if as_json and not group_by:
            print(json.dumps(record), flush=True)  # each run's line as soon as it is ready
        results.append(record)
        groups.append(run.cfg)
    if group_by:
        show_summary(aggregate(results, [group_values(cfg, group_by) for cfg in groups]), as_json)
    elif not as_json:
        for part in eval_tables(results):
            out_console.print(part)
