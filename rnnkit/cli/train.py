"""`rnnkit train`: train a model from a YAML config."""

from __future__ import annotations

from pathlib import Path

import typer

from rnnkit.cli.app import command, err_console


@command("train", "rnnkit train quickstart --set train.max_steps=200")
def train(
    config: Path = typer.Argument(..., help="YAML config file, or the name of a shipped preset (rnnkit configs); "
                                            "a file that exists wins."),
    overrides: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                                        help="Override a config value, e.g. --set train.lr=0.001 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run from its 'last' checkpoint, exactly."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, summary or samples (for scripts)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run folder (default: <run.dir>/<run.name>)."),
    init_from: Path | None = typer.Option(None, "--init-from", metavar="RUN",
                                          help="Start from the weights of another run (fine-tuning): same task, "
                                               "model and vocabulary; fresh optimizer, step 0."),
) -> None:
    """Train a model from a YAML config; under torchrun, with DistributedDataParallel.
    Ctrl-C saves the 'last' checkpoint; --resume continues from it; --init-from RUN fine-tunes another run."""
    from rnnkit.cli.tables import summary_table
    from rnnkit.config import load_config
    from rnnkit.training import train as run_training

    cfg = load_config(config, overrides)
    result = run_training(cfg, resume=resume, quiet=quiet, run_dir=run_dir, init_from=init_from)
    if quiet:
        return
    err_console.print(summary_table(result))
    for index, sample in enumerate(result.samples, 1):
        err_console.print(f"sample {index}: {sample!r}", markup=False)
