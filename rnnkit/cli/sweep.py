"""`rnnkit sweep`: a grid of config values times seeds, one run folder per point, then the seed-aggregated table."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from rnnkit.cli.app import command, err_console, out_console


def show_summary(summary: dict, as_json: bool) -> None:
    """An aggregate (rnnkit.evaluation.aggregate) as tables, or as one JSON object per row on stdout."""
    from rnnkit.cli.tables import aggregate_tables

    if as_json:
        meta = {key: summary[key] for key in ("task", "split", "group_by", "best_by", "higher_is_better")}
        for row in summary["rows"]:
            print(json.dumps({**meta, **row}), flush=True)
        return
    for table in aggregate_tables(summary):
        out_console.print(table)


def _event(kind: str, outcome, total: int, index: dict) -> None:
    """One stderr line per point started and per point done."""
    if kind == "start":
        verb = "resuming from last" if outcome.action == "resume" else "training"
        threads = f" ({outcome.threads} thread{'s' if outcome.threads > 1 else ''})" if outcome.threads else ""
        err_console.print(f"[{index[outcome.point.name]}/{total}] {outcome.point.name}: {verb}{threads}", markup=False)
        return
    if outcome.action == "skip":
        said = "finished before, skipped"
    elif outcome.status == "finished":
        said = f"finished in {outcome.seconds:.1f} s"
    elif outcome.status == "interrupted":
        said = "interrupted ('last' saved; the same command resumes it)"
    else:
        said = f"{outcome.status}: {outcome.error}"
    err_console.print(f"[{index[outcome.point.name]}/{total}] {outcome.point.name}: {said}", markup=False,
                      soft_wrap=True)


def _dry_run(sweep, points, as_json: bool) -> None:
    from rnnkit.sweeps.runner import check_folder, plan_point, plan_threads

    check_folder(sweep)
    plan = plan_threads(sweep.jobs)
    rows = []
    for point in points:
        action, why = plan_point(point, sweep.folder / point.name)
        rows.append({"name": point.name, "path": str(sweep.folder / point.name), "action": action, "why": why,
                     "values": point.values})
    if as_json:
        for row in rows:
            print(json.dumps(row), flush=True)
        return
    how = (f"{plan.jobs} at once, {plan.threads} thread{'s' if plan.threads > 1 else ''} each" if plan.jobs > 1
           else "one at a time")
    table = Table(title=f"{len(points)} points in {sweep.folder} ({how})", title_justify="left")
    for column in ("point", "would", *sweep.keys):
        table.add_column(column, overflow="fold")
    for row, point in zip(rows, points, strict=True):
        action = row["action"] + (f" ({row['why']})" if row["why"] else "")
        table.add_row(row["name"], action, *(str(point.values[key]) for key in sweep.keys))
    out_console.print(table)
    for note in plan.notes:
        err_console.print(f"note: {note}", markup=False)


@command("sweep", "rnnkit sweep quickstart --grid model.cell=rnn,gru,lstm --seeds 3 --jobs 2")
def sweep(
    config: Path = typer.Argument(..., help="Config file or preset (as `train` takes it), or a sweep file: a config "
                                            "with a `sweep:` section (configs/sweeps/, also by name)."),
    grids: list[str] = typer.Option([], "--grid", "-g", metavar="KEY=V1,V2,...",
                                    help="A dotted config key and its values, e.g. --grid model.cell=rnn,gru "
                                         "(repeatable: every combination is a point)."),
    seeds: int | None = typer.Option(None, "--seeds", help="Train each point with train.seed 0..N-1 (default 1, "
                                                           "or the file's sweep.seeds)."),
    name: str | None = typer.Option(None, "--name", help="Folder under run.dir holding the points (default: the "
                                                         "sweep file's name, or CONFIG_sweep)."),
    jobs: int | None = typer.Option(None, "--jobs", "-j", help="Points trained at once, in subprocesses sharing the "
                                                               "cores (default 1: in this process)."),
    overrides: list[str] = typer.Option([], "--set", "-s", metavar="KEY=VALUE",
                                        help="Override a config value for every point (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the points and what each would do; train nothing."),
    split: str = typer.Option("val", "--split", help="Split the final table evaluates (val, test or train)."),
    as_json: bool = typer.Option(False, "--json", help="The final table (or the --dry-run list) as one JSON object "
                                                       "per row on stdout; progress stays on stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar while a point trains."),
) -> None:
    """Train a grid of configs times seeds, one run folder per point under <run.dir>/NAME/ (cell=gru,seed=1);
    finished points are skipped and interrupted ones resumed, so the same command continues a stopped sweep.
    A failed point is reported and the others go on (exit 1 at the end). Ends with the points' metrics on
    --split, mean ± std over seeds; `tensorboard --logdir runs/NAME` shows them in its HPARAMS tab."""
    from rnnkit.sweeps import load_sweep, run_sweep, sweep_summary

    spec = load_sweep(config, grids=grids, seeds=seeds, name=name, jobs=jobs, overrides=overrides)
    points = spec.points()
    if dry_run:
        _dry_run(spec, points, as_json)
        return
    from rnnkit.sweeps.runner import plan_threads

    for note in plan_threads(spec.jobs).notes:
        err_console.print(f"note: {note}", markup=False)
    index = {point.name: k for k, point in enumerate(points, 1)}
    outcomes = run_sweep(spec, quiet=quiet or spec.jobs > 1,
                         on_event=lambda kind, outcome: _event(kind, outcome, len(points), index))
    summary = sweep_summary(outcomes, split=split)
    if summary is not None:
        show_summary(summary, as_json)
    failed = [o for o in outcomes if not o.done]
    done = len(outcomes) - len(failed)
    err_console.print(f"{spec.folder}: {done} of {len(outcomes)} points finished"
                      + (f", {len(failed)} not: {', '.join(o.point.name for o in failed)}" if failed else ""),
                      markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
