"""`rnnkit inspect-grads`: where do the gradients vanish or explode?"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rnnkit.cli.app import command, err_console, out_console
from rnnkit.errors import UsageError


@command("inspect-grads", "rnnkit inspect-grads runs/rnn runs/lstm --length 100 --plot cmp.png\n\n"
                          "    rnnkit inspect-grads configs/quickstart.yaml --compare model.cell=rnn,lstm")
def inspect_grads(
    targets: list[str] | None = typer.Argument(None, metavar="[RUN | CONFIG]...",
                                               help="Run folders (trained weights), YAML configs or preset "
                                                    "names (fresh initialisation); default: the most recent run."),
    batches: int = typer.Option(4, "--batches", "-n", help="Batches to average over."),
    length: int | None = typer.Option(None, "--length", "-T",
                                      help="Use windows of T characters (data.mode windows) instead of the "
                                           "config's sequences: long-range profiles on any corpus."),
    loss_at: str = typer.Option("last", "--loss-at", metavar="last|all",
                                help="last: loss of each sequence's last step only (the pure decay); "
                                     "all: the training objective over every step."),
    split: str = typer.Option("train", "--split", metavar="train|val", help="Split the batches come from."),
    as_json: bool = typer.Option(False, "--json",
                                 help="One JSON object per target (and --compare value) on stdout, nothing else."),
    plot: Path | None = typer.Option(None, "--plot", metavar="FILE.png",
                                     help="Write ||dL/dh_t|| against distance in time, one line per target "
                                          "(and --compare value)."),
    tensorboard: bool = typer.Option(False, "--tensorboard",
                                     help="Write scalars and histograms to <run>/tb/inspect-grads "
                                          "(configs: <run.dir>/inspect-grads/<name>), in a KEY=VALUE "
                                          "subfolder per --compare value."),
    sets: list[str] | None = typer.Option(None, "--set", metavar="KEY=VALUE",
                                          help="Override a config value of every target, e.g. "
                                               "--set train.batch_size=8."),
    compare: list[str] | None = typer.Option(None, "--compare", metavar="KEY=V1,V2,...",
                                             help="Inspect each target once per value, labelled e.g. "
                                                  "'quickstart model.cell=rnn': --compare model.cell=rnn,lstm. "
                                                  "Repeat for every combination of several keys."),
    which: str = typer.Option("best", "--which", help="Checkpoint of a run: best or last."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
) -> None:
    """Backpropagate through time on real batches and report ||dL/dh_t|| per step and layer (with a
    decay fit and a vanishing / stable / exploding verdict), parameter gradient norms before and after
    clipping, gate saturation and the spectra of the recurrent matrices.

    --set changes every target alike; --compare inspects each target once per value of a key."""
    # Imported here so that `rnnkit --help` does not load torch.
    from rnnkit.cli.grads_tables import log_range, render
    from rnnkit.diagnostics.plots import plot_profiles, write_tensorboard
    from rnnkit.diagnostics.targets import check_distinct, compare_variants, inspect_target

    if loss_at not in ("last", "all"):
        raise UsageError(f"--loss-at: {loss_at!r} is not one of last, all")
    if split not in ("train", "val", "test"):
        raise UsageError(f"--split: {split!r} is not one of train, val, test")
    variants = compare_variants(compare or [], sets or [])
    check_distinct(targets or [None])
    reports = []
    for target in targets or [None]:
        for compared in variants:
            report, loaded = inspect_target(target, batches=batches, length=length, loss_at=loss_at, split=split,
                                            overrides=sets or [], which=which, device=device, compared=compared)
            reports.append(report)
            if tensorboard:
                where = write_tensorboard(report, loaded.tb_dir)
                err_console.print(f"TensorBoard events in {where}", markup=False)
            if as_json:
                settings = dict(text.split("=", 1) for text in compared)
                print(json.dumps({"target": target, "compare": settings, **report.to_json()}))
    if plot is not None:
        err_console.print(f"plot written to {plot_profiles(reports, plot)}", markup=False)
    if not as_json:
        scale = log_range(reports)
        for report in reports:
            render(report, out_console, scale)
