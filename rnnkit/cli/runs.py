"""`rnnkit runs`: the run folders under a directory, newest first."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rnnkit.cli.app import command, out_console


@command("runs", "rnnkit runs runs/ --json | jq -r 'select(.status==\"finished\") | .name'")
def runs(
    folder: Path = typer.Argument(Path("runs"), help="Folder holding run folders (default: runs)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per run on stdout, nothing else."),
) -> None:
    """List the runs in a folder: task, cell, layers x hidden, parameters, step of max_steps, best validation
    metric, status (training, finished, interrupted, failed), size on disk and last change, newest first."""
    from rnnkit.cli.tables import runs_table
    from rnnkit.errors import UsageError
    from rnnkit.runs.listing import describe_runs

    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder; name the folder that holds your run folders")
    records = describe_runs(folder)
    if as_json:
        for record in records:
            print(json.dumps(record), flush=True)
        return
    out_console.print(runs_table(folder, records))
