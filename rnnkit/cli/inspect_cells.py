"""`rnnkit inspect-cells`: what each unit of a trained network does, character by character, in one HTML page."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import typer

from rnnkit.cli.app import command, err_console, out_console
from rnnkit.errors import UsageError


@command("inspect-cells", "rnnkit inspect-cells runs/code_lstm --text mymodule.py --html cells.html\n\n"
                          "    rnnkit inspect-cells runs/trump_stream --split val --max-chars 5000 --html cells.html "
                          "--png top.png --json cells.json")
def inspect_cells(
    run: Path | None = typer.Argument(None, help="Run folder of a language model or a text classifier; default: "
                                                 "the most recent run."),
    text: str | None = typer.Option(None, "--text", metavar="FILE", help="A UTF-8 text file to read (- reads "
                                    "standard input)."),
    prompt: str | None = typer.Option(None, "--prompt", metavar="TEXT", help="The text to read, given here."),
    split: str | None = typer.Option(None, "--split", metavar="train|val|test",
                                     help="A split of the run's own data (the default: val)."),
    html: Path | None = typer.Option(None, "--html", metavar="OUT.html", help="Write the page (one self-contained "
                                     "file that opens offline)."),
    as_json: str | None = typer.Option(None, "--json", metavar="OUT.json", help="Write the same data as JSON "
                                       "(- for standard output): activations of the --units quantities, top-5 "
                                       "or class probabilities, surprisal, ranking, saturation."),
    png: Path | None = typer.Option(None, "--png", metavar="OUT.png", help="Draw a heat map of the top-ranked "
                                    "units over the first characters (needs matplotlib: pip install "
                                    "'rnnkit[plot]')."),
    units: str = typer.Option("all", "--units", metavar="LIST", help="Quantities whose every unit goes into the "
                              "page and the JSON, comma-separated: all, h, c, gates, a gate (forget, update...), "
                              "each optionally after layerN. (layer1.c), or a layer (layer0). Ranked units are "
                              "always in the page."),
    top_units: int = typer.Option(10, "--top-units", help="Units listed per text property."),
    max_chars: int = typer.Option(20000, "--max-chars", help="Read at most this many characters of the text."),
    max_mb: float = typer.Option(48.0, "--max-mb", help="Size limit of the page's activations in MB; beyond "
                                 "it, gates and then c are left out (the page says which)."),
    replace_unknown: str | None = typer.Option(None, "--replace-unknown", metavar="C",
                                               help="Read characters outside the vocabulary as C (else they are "
                                                    "an error)."),
    which: str = typer.Option("best", "--which", help="Checkpoint to load: best or last."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto (one character at a time: the CPU "
                               "is usually the faster)."),
) -> None:
    """Read a text with a trained model and show what every unit does (after Karpathy, Johnson and Fei-Fei
    2015): the text coloured by any unit of h, c or a gate of any layer, chosen in the page; on hover, the
    top-5 next characters with their probabilities and the surprisal of the true one (a classifier: the class
    probabilities after each character); the units ranked by their correlation with simple properties of the
    text (inside quotes or brackets, position in the line, after a newline, vowel or consonant, indentation),
    each clickable; and each gate's saturation per unit as a scatter plot.

    The text meets the model as its data.mode says (stream: one sequence, the state carried; sentences: each
    line from a zero state), and keeps its layout: newlines show in the page."""
    from rnnkit.diagnostics.cells import check_text_model, quantity_names, select_quantities
    from rnnkit.diagnostics.cells import inspect_cells as measure
    from rnnkit.runs.loaded import load

    given = [name for name, value in (("--text", text), ("--prompt", prompt), ("--split", split)) if value is not None]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)}: give one source of text")
    if html is None and as_json is None and png is None:
        raise UsageError("nothing to write: give --html OUT.html, --json OUT.json (- for standard output) or "
                         "--png OUT.png")
    if html is not None:
        from rnnkit.diagnostics.cells_html import check_page_options

        check_page_options(html, max_mb)
    if png is not None:
        from rnnkit.diagnostics.cells_plot import check_png

        check_png(png)
    selectors = [item.strip() for item in units.split(",") if item.strip()]
    loaded = load(run, which=which, device=device)
    check_text_model(loaded)
    select_quantities(quantity_names(loaded.model), selectors, loaded.cfg.model.cell)  # a mistake before the work
    body, note, where = _text(loaded, text, prompt, split, max_chars)
    report = measure(loaded, body, replace_unknown=replace_unknown, top_units=top_units, where=where)
    if note:
        report.notes.insert(0, note)
    for line in report.notes:
        err_console.print(line, markup=False, soft_wrap=True)
    if html is not None:
        from rnnkit.diagnostics.cells_html import write_page

        page = write_page(report, html, selectors, max_mb)
        dropped = f"; left out for --max-mb: {', '.join(page.dropped)}" if page.dropped else ""
        err_console.print(f"page written to {page.path} ({page.bytes / 1e6:.2f} MB, {len(report.text)} characters, "
                          f"{page.seconds:.2f} s{dropped})", markup=False, soft_wrap=True)
    if png is not None:
        from rnnkit.diagnostics.cells_plot import plot_heatmap

        err_console.print(f"heat map written to {plot_heatmap(report, png)}", markup=False)
    if as_json is not None:
        _write_json(report, selectors, as_json)
    if as_json != "-":
        out_console.print(_table(report))


def _text(loaded, text: str | None, prompt: str | None, split: str | None, max_chars: int):
    """(the text, a note when it was cut, how messages name it)."""
    from rnnkit.diagnostics.cells import cut, read_text, text_of_split

    if prompt is not None:
        return (*cut(prompt, max_chars, "--prompt"), "--prompt")
    if text is not None:
        source = sys.stdin.buffer if text == "-" else Path(text)
        return (*read_text(source, max_chars, text), text)
    name = split or "val"
    return (*cut(text_of_split(loaded, name), max_chars, f"the {name} split"), f"the {name} split")


def _write_json(report, selectors: list[str], target: str) -> None:
    if target == "-":
        report.write_json(sys.stdout, selectors)
        return
    from rnnkit.io.atomic import atomic_file

    path = Path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as handle:
            stream = io.TextIOWrapper(handle, encoding="utf-8")
            report.write_json(stream, selectors)
            stream.flush()
            stream.detach()  # atomic_file closes the file itself
    except OSError as err:
        raise UsageError(f"--json {path}: cannot write ({err.strerror or err})") from None
    err_console.print(f"JSON written to {path}", markup=False)


def _table(report):
    from rich.table import Table

    table = Table(title=f"{report.run}: units that follow a property of the text (Pearson r, "
                        f"{int(report.read.sum())} characters)")
    for name, justify in (("property", "left"), ("1st", "left"), ("2nd", "left"), ("3rd", "left")):
        table.add_column(name, justify=justify)
    for name, ranked in report.ranking.items():
        cells = [f"{u.quantity}[{u.unit}] {u.r:+.2f}" for u in ranked[:3]]
        table.add_row(name, *(cells or ["constant over the text"]), *[""] * (3 - max(len(cells), 1)))
    return table
