"""`rnnkit generate`: decode text from a trained language model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer

from rnnkit.cli.app import command, err_console, out_console


@command("generate", "rnnkit generate runs/trump_lstm --beam 5 --nucleus 0.95")
def generate(
    run: Path | None = typer.Argument(None, help="Run folder (default: the most recent run under runs/)."),
    prompt: str | None = typer.Option(None, "--prompt", "-p", help="Text the model reads first."),
    prompt_file: Path | None = typer.Option(None, "--prompt-file", help="Read the prompt from this UTF-8 file, "
                                            "newlines and indentation kept."),
    max_len: int | None = typer.Option(None, "--max-len", help="Most characters to generate (a stream model "
                                       "continues across lines up to this many)."),
    stop: list[str] | None = typer.Option(None, "--stop", metavar="STRING",
                                          help="End a sample when it has generated this string (kept in the text; "
                                          "repeatable; \\n, \\t and \\\\ are read as newline, tab and "
                                          "backslash)."),
    min_len: int | None = typer.Option(None, "--min-len", help="Fewest characters before EOS may end a sample."),
    num: int | None = typer.Option(None, "--num", "-n", help="Sequences to return (the N best for beam search)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the sampler."),
    greedy: bool | None = typer.Option(None, "--greedy/--no-greedy", help="Always take the most probable character."),
    temperature: float | None = typer.Option(None, "--temperature", "-t", help="Divide logits by this (> 0)."),
    top_k: int | None = typer.Option(None, "--top-k", help="Sample among the k most probable characters."),
    nucleus: float | None = typer.Option(None, "--nucleus", "--top-p", help="Nucleus (top-p) mass in (0, 1]."),
    beam: int | None = typer.Option(None, "--beam", "-b", help="Beam width; with sampling options: beam sample."),
    length_penalty: float | None = typer.Option(None, "--length-penalty",
                                                help="Finished beams score log-prob / length ** this."),
    no_repeat_ngram: int | None = typer.Option(None, "--no-repeat-ngram", help="Forbid repeating n-grams of size N."),
    repetition_penalty: float | None = typer.Option(None, "--repetition-penalty",
                                                    help="Above 1, make already generated characters less likely."),
    fixed_length: bool | None = typer.Option(None, "--fixed-length/--until-eos",
                                             help="Generate exactly --max-len characters, never stopping at EOS."),
    replace_unknown: str | None = typer.Option(None, "--replace-unknown",
                                               help="Replace prompt characters outside the vocabulary by this one."),
    which: str = typer.Option("best", "--which", help="Checkpoint to load: best or last."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per sequence on stdout, nothing else."),
) -> None:
    """Generate text from a trained language model: greedy, sampling (temperature, top-k, nucleus),
    beam search, or beam search with sampling. Defaults come from the run's `generate:` section; the
    options you type choose the mode (`--greedy` sets aside the run's sampling defaults, `--beam K` alone
    is plain beam search, `--beam K --nucleus P` samples the beams). A model trained on a character stream
    (data.mode: stream) never generates EOS: it runs to --max-len or a --stop string, and an empty prompt
    starts it at a newline."""
    from rnnkit.cli.tables import samples_table
    from rnnkit.errors import UsageError
    from rnnkit.generation.generate import generate_from_loaded, read_prompt_file, unescape
    from rnnkit.generation.options import describe
    from rnnkit.runs.loaded import load

    if prompt_file is not None:
        if prompt is not None:
            raise UsageError("--prompt and --prompt-file: give one of them")
        prompt = read_prompt_file(prompt_file)
    stops = tuple(unescape(s) for s in stop or ())
    overrides = dict(prompt=prompt, max_len=max_len, min_len=min_len, num=num, seed=seed, greedy=greedy,
                     temperature=temperature, top_k=top_k, nucleus=nucleus, beam=beam,
                     length_penalty=length_penalty, no_repeat_ngram=no_repeat_ngram, fixed_length=fixed_length,
                     repetition_penalty=repetition_penalty)
    loaded = load(run, which=which, device=device)
    result = generate_from_loaded(loaded, overrides, replace_unknown=replace_unknown, stop=stops)
    for note in result.replacements:
        err_console.print(f"replaced prompt character {note}", markup=False)
    if as_json:
        for sample in result.samples:
            record = {**dataclasses.asdict(sample), "prompt": result.prompt, "run": str(loaded.path),
                      "options": {**dataclasses.asdict(result.options), "stop": list(result.stop)}}
            print(json.dumps(record, ensure_ascii=False))
        return
    stopping = "".join(f", stop at {s!r}" for s in result.stop)
    start = f", starting after {result.start!r}" if result.start else ""
    err_console.print(f"{loaded.path}: {describe(result.options)}{stopping}{start}", markup=False, soft_wrap=True)
    out_console.print(samples_table(result.prompt, result.samples))
