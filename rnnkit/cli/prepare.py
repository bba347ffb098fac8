"""`rnnkit prepare`: fetch, clean, encode and split a corpus once."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rnnkit.cli.app import command, out_console
from rnnkit.config import config_from_dict


@command("prepare", "rnnkit prepare trump --from ../shared/data/trump_speeches/speeches.txt\n\n"
                    "    rnnkit prepare mycode --from src/ --glob '*.py' --mode stream\n\n"
                    "    rnnkit prepare metro --from ../shared/data/hzmetro/hzdataset.pch\n\n"
                    "    rnnkit prepare langid --class fr=fr.txt --class en=en.txt --charset unicode")
def prepare(
    name: str = typer.Argument(..., help="A registered source (trump, reber, ...) or any name for your own "
                                         "corpus given with --from."),
    source: str | None = typer.Option(None, "--from", metavar="PATH_OR_URL",
                                      help="A text file, a folder of text files, an http(s)/file URL, or - for "
                                           "standard input, used instead of the source's download."),
    glob: str | None = typer.Option(None, "--glob", metavar="PATTERN",
                                    help="--from a folder: read the files whose name matches, e.g. '*.py' (default: "
                                         "every file); files that are not UTF-8 text are skipped and counted."),
    exclude: str | None = typer.Option(None, "--exclude", metavar="PATTERNS",
                                       help="--from a folder: skip files and folders whose name matches one of these "
                                            "comma-separated patterns, e.g. site-packages,test."),
    charset: str | None = typer.Option(None, "--charset", metavar="ascii|unicode",
                                       help="Characters kept after cleaning (default ascii)."),
    lowercase: bool = typer.Option(False, "--lowercase", help="Lower-case the text."),
    min_len: int | None = typer.Option(None, "--min-len", help="Drop (and count) shorter sentences (default 2)."),
    max_len: int | None = typer.Option(None, "--max-len", help="Cut longer sentences (default 300)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the train/val/test split (default 0)."),
    classes: list[str] = typer.Option([], "--class", metavar="LABEL=PATH",
                                      help="langid: a labelled text file, e.g. --class fr=fr.txt (repeat per class)."),
    mode: str | None = typer.Option(None, "--mode", metavar="sentences|windows|stream",
                                    help="stream: keep the text whole, layout included, for a stream LM (data.mode: "
                                         "stream); langid: one sample per line, or windows of --window characters."),
    window: int | None = typer.Option(None, "--window", help="langid: characters per window (--mode windows)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the same settings were prepared before."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Data folder (default $RNNKIT_DATA or ./data)."),
) -> None:
    """Fetch, clean, encode and split a corpus once; the same settings later reuse the prepared folder."""
    # Imported here so that `rnnkit --help` does not load torch and safetensors.
    from rnnkit.data.prepare import prepare_with_summary

    given = {"source": name, "path": source, "glob": glob, "exclude": exclude, "charset": charset,
             "lowercase": lowercase or None, "min_len": min_len, "max_len": max_len, "split_seed": seed,
             "classes": ",".join(classes) or None, "mode": mode, "window": window}
    cfg = config_from_dict({"data": {k: v for k, v in given.items() if v is not None}}, "command line")
    summary = prepare_with_summary(cfg.data, root=data_dir, name=name, force=force)
    table = Table(title=f"prepared {summary.name} in {summary.seconds:.2f} s", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, value in summary.rows():
        table.add_row(label, value)
    out_console.print(table)
