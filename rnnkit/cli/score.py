"""`rnnkit score`: bits per character and perplexity of any text under a trained language model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer

from rnnkit.cli.app import command, err_console, out_console
from rnnkit.evaluation.score import CHUNK_CHARS


@command("score", "for f in chapters/*.txt; do rnnkit score runs/trump_lstm \"$f\" --json; done")
def score(
    run: Path = typer.Argument(..., help="Run folder of a language model."),
    files: list[str] | None = typer.Argument(None, help="UTF-8 text files to score; - (or none) reads standard "
                                             "input."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file on stdout, nothing else."),
    per_char: bool = typer.Option(False, "--per-char", help="Also give each character's surprisal in bits."),
    replace_unknown: str | None = typer.Option(None, "--replace-unknown", metavar="C",
                                               help="Score characters outside the vocabulary as C (else they are "
                                                    "an error)."),
    clean: bool = typer.Option(False, "--clean", help="Clean the text first as prepare cleaned the run's corpus "
                               "(data.charset, data.lowercase: mojibake repaired, line ends as LF, typographic "
                               "characters in ASCII), layout kept."),
    chunk_chars: int = typer.Option(CHUNK_CHARS, "--chunk-chars", help="Characters per model call: memory is "
                                    "bounded by this, whatever the length of the text."),
    which: str = typer.Option("best", "--which", help="Checkpoint to load: best or last."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Score text under a language model: bits per character, perplexity and the number of characters scored,
    the model's state carried through the whole text (read in chunks, so any length fits in memory).

    How text meets the model follows its data.mode. stream: the first character is read as context, every
    following one is scored. sentences: each line is a sentence read from EOS, its newline scored as EOS.
    windows: newlines are EOS, and the text is cut into data.window windows as training and eval cut it.
    The score of a run's own validation text equals `rnnkit eval`'s validation bits per character. The text
    is scored as given; --clean first cleans it as the run's corpus was cleaned.
    """
    from rnnkit.evaluation.score import score_source
    from rnnkit.runs.loaded import load

    loaded = load(run, which=which, device=device)  # loaded once for every file
    rows = []
    for name in files or ["-"]:
        source = typer.get_binary_stream("stdin") if name == "-" else Path(name)
        result = score_source(loaded, source, where=name, per_char=per_char, replace_unknown=replace_unknown,
                              clean=clean, chunk_chars=chunk_chars)
        if _changed(result):
            mapped, removed = sum(result.cleaning["mapped"].values()), sum(result.cleaning["removed"].values())
            err_console.print(f"{name}: cleaned as the run's data: {mapped} character(s) mapped, {removed} "
                              f"removed", markup=False, soft_wrap=True)
        if result.replaced:
            err_console.print(f"{name}: {result.replaced} character(s) outside the vocabulary scored as "
                              f"{replace_unknown!r}", markup=False, soft_wrap=True)
        record = {"file": name, "run": str(loaded.path), "which": loaded.which, "step": loaded.step,
                  "mode": loaded.cfg.data.mode, **dataclasses.asdict(result)}
        if not per_char:
            del record["per_char"]
        if not clean:
            del record["cleaning"]
        if as_json:
            print(json.dumps(record, ensure_ascii=False), flush=True)
            continue
        if per_char:
            _print_per_char(name, result.per_char)
        rows.append(record)
    if rows:
        out_console.print(_table(rows))


def _changed(result) -> bool:
    return bool(result.cleaning and (result.cleaning["mapped"] or result.cleaning["removed"]))


def _print_per_char(name: str, per_char: list) -> None:
    """One line per character: offset, the character (quoted, so that a newline shows), bits (- when only read)."""
    print(f"# {name}: offset, character, surprisal in bits")
    for offset, (char, bits) in enumerate(per_char):
        print(f"{offset}\t{char!r}\t{'-' if bits is None else f'{bits:.3f}'}")


def _table(rows: list[dict]):
    from rich.table import Table

    table = Table(title=f"{rows[0]['run']} ({rows[0]['which']}, step {rows[0]['step']}, data.mode "
                        f"{rows[0]['mode']})")
    for name, justify in (("file", "left"), ("characters", "right"), ("bpc", "right"), ("perplexity", "right")):
        table.add_column(name, justify=justify)
    for row in rows:
        table.add_row(row["file"], str(row["characters"]), f"{row['bpc']:.4f}", f"{row['perplexity']:.3f}")
    return table
