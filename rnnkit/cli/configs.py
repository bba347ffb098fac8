"""`rnnkit configs`: the presets shipped with rnnkit; `rnnkit configs copy` writes one out to edit."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from rnnkit.cli.app import app, command, err_console, guarded, out_console
from rnnkit.presets import copy_preset, presets

configs_app = typer.Typer()  # its help is the docstring of `configs` below
app.add_typer(configs_app, name="configs")


@configs_app.callback(invoke_without_command=True)
@guarded("rnnkit configs && rnnkit train quickstart")
def configs(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per preset on stdout, nothing else."),
) -> None:
    """List the config presets shipped with rnnkit: `rnnkit train NAME` trains one, `rnnkit configs copy NAME`
    writes it out to edit."""
    if ctx.invoked_subcommand is not None:
        return
    found = presets()
    if as_json:
        for preset in found:
            print(json.dumps({"name": preset.name, "description": preset.description, "path": str(preset.path)}))
        return
    table = Table(title="presets (rnnkit train NAME)", title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("what it trains")
    for preset in found:
        table.add_row(preset.name, preset.description)
    out_console.print(table)


@command("copy", "rnnkit configs copy quickstart my.yaml && rnnkit train my.yaml", group=configs_app)
def copy(
    name: str = typer.Argument(..., help="Preset name (see `rnnkit configs`)."),
    dest: Path | None = typer.Argument(None, help="File or folder to write (default: ./NAME.yaml)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite DEST if it exists."),
) -> None:
    """Write a shipped preset to a file to edit; train it with `rnnkit train FILE`."""
    target = copy_preset(name, dest, force=force)
    err_console.print(f"wrote {target}; edit it, then: rnnkit train {target}", markup=False)
