"""`rnnkit export`: a trained run as plain torch.nn modules (or ONNX) that load without rnnkit."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rnnkit.cli.app import command, out_console


@command("export", "rnnkit export runs/quickstart --to torch export/ && python -c 'import json; "
                   "print(json.load(open(\"export/model.json\"))[\"modules\"])'")
def export(
    run: Path = typer.Argument(..., help="Run folder to export."),
    out: Path = typer.Argument(..., help="Folder to write (created whole, or not at all)."),
    to: str = typer.Option("torch", "--to", help="torch: torch.nn modules in model.safetensors; onnx: model.onnx "
                           "(needs the onnx package). Both with model.json describing them."),
    force: bool = typer.Option(False, "--force", help="Replace OUT when it is an earlier export."),
    which: str = typer.Option("best", "--which", help="Checkpoint to export: best or last."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object describing what was written, nothing "
                                 "else."),
) -> None:
    """Write a run's model as plain torch.nn modules: Embedding (language models and text classifiers),
    RNN/GRU/LSTM and Linear, their weights in safetensors and model.json saying how to rebuild and call them
    (the vocabulary with its PAD and EOS ids, how text is fed, class names, normalisation). README.md shows the
    lines of plain PyTorch that load them. Before writing, the modules are checked against rnnkit's model."""
    from rnnkit.export import export_run
    from rnnkit.runs.loaded import load

    loaded = load(run, which=which, device="cpu")
    record = export_run(loaded, to, out, force=force)
    if as_json:
        print(json.dumps(record), flush=True)
        return
    modules = ("torch.nn " if to == "torch" else "ONNX graph of torch.nn ") + " + ".join(record["modules"].values())
    out_console.print(f"wrote {out}/ ({', '.join(record['files'])}): {modules}, {record['parameters']:,} "
                      f"parameters, from {record['run']} ({record['which']}, step {record['step']}); outputs "
                      f"match rnnkit's within {record['max_abs_diff']:.1e}", markup=False, soft_wrap=True)
