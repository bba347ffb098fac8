"""`rnnkit generate`: decode text from a trained language model."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import typer

from rnnkit.cli.app import command, err_console, out_console

PROMPT = "> "  # shown before each line of an --interactive session when standard input is a terminal


def write(text: str) -> None:
    """Text on stdout at once (--stream, --interactive): flushed, so each character shows as it comes."""
    sys.stdout.write(text)
    sys.stdout.flush()


def read_line() -> str | None:
    """The next line typed (without its newline), None at the end of input."""
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401  line editing and history for input()
        except ImportError:
            pass
        try:
            return input(PROMPT)
        except EOFError:
            write("\n")
            return None
    line = sys.stdin.readline()
    return line.rstrip("\r\n") if line else None


def interrupted() -> typer.Exit:
    """Ctrl-C while text streams: end the line, so that what was generated stays on screen, and exit 130."""
    write("\n")
    err_console.print("interrupted", markup=False)
    return typer.Exit(130)


def stream(loaded, request) -> None:
    """--stream: the prompt, then each character as it is generated (beam search: the best sequence once final)."""
    from rnnkit.generation.generate import generate_request

    prompt = loaded.vocab.decode(request.prompt_ids)
    write(prompt)
    try:
        result = generate_request(loaded, request, on_text=write)
        text = result.samples[0].text if result.samples else ""
        if request.decode.beam > 1:
            write(text)
        if not (prompt + text).endswith("\n"):  # a stop string "\n" has ended the line already
            write("\n")
    except KeyboardInterrupt:
        raise interrupted() from None


def interactive(session) -> None:
    """--interactive: read lines until the end of input; each is a :command or text the model continues."""
    from rnnkit.errors import UsageError, VocabularyError

    err_console.print(f"{session.run.path}: {session.describe()}; type a line and the model continues it, "
                      f":help for commands, end of input (Ctrl-D) to finish", markup=False, soft_wrap=True)
    try:
        while (line := read_line()) is not None:
            if line.startswith(":") and not line.startswith("::"):
                try:
                    err_console.print(session.command(line), markup=False, soft_wrap=True)
                except UsageError as err:
                    err_console.print(f"error: {err}", markup=False, soft_wrap=True)
                continue
            try:
                sample = session.turn(line[1:] if line.startswith("::") else line, on_text=write)
            except (UsageError, VocabularyError) as err:
                err_console.print(f"error: {err}", markup=False, soft_wrap=True)
                continue
            if session.options.beam > 1:
                write(sample.text)
            if not sample.text.endswith("\n"):  # one line per answer, even an empty one
                write("\n")
    except KeyboardInterrupt:
        raise interrupted() from None


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
    early_stopping: str | None = typer.Option(None, "--early-stopping", metavar="never|true|false",
                                              help="When beam search stops, as Hugging Face's early_stopping: "
                                              "never (default: once no live beam can win), true (once K "
                                              "hypotheses have ended), false (HF's default heuristic)."),
    no_repeat_ngram: int | None = typer.Option(None, "--no-repeat-ngram", help="Forbid repeating n-grams of size N."),
    repetition_penalty: float | None = typer.Option(None, "--repetition-penalty",
                                                    help="Above 1, make already generated characters less likely "
                                                    "(their logits divided by it if positive, multiplied if "
                                                    "negative, as Hugging Face does)."),
    penalise_prompt: bool | None = typer.Option(None, "--penalise-prompt/--no-penalise-prompt",
                                                help="--repetition-penalty and --no-repeat-ngram also count the "
                                                "prompt's characters, as Hugging Face does (default: only "
                                                "generated ones)."),
    fixed_length: bool | None = typer.Option(None, "--fixed-length/--until-eos",
                                             help="Generate exactly --max-len characters, never stopping at EOS."),
    replace_unknown: str | None = typer.Option(None, "--replace-unknown",
                                               help="Replace prompt characters outside the vocabulary by this one."),
    which: str = typer.Option("best", "--which", help="Checkpoint to load: best or last."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per sequence on stdout, nothing else."),
    streaming: bool = typer.Option(False, "--stream", help="Print the prompt, then each character as it is "
                                   "generated (beam search: the best sequence once it is final); one sequence."),
    session: bool = typer.Option(False, "--interactive", "-i",
                                 help="A session: the model reads each line typed and continues it, keeping its "
                                 "state between lines; :help lists the commands (:reset, :temperature T...)."),
) -> None:
    """Generate text from a trained language model: greedy, sampling (temperature, top-k, nucleus),
    beam search, or beam search with sampling. Defaults come from the run's `generate:` section; the
    options you type choose the mode (`--greedy` sets aside the run's sampling defaults, `--beam K` alone
    is plain beam search, `--beam K --nucleus P` samples the beams). A model trained on a character stream
    (data.mode: stream) never generates EOS: it runs to --max-len or a --stop string, and an empty prompt
    starts it at a newline."""
    from rnnkit.cli.tables import samples_table
    from rnnkit.errors import UsageError
    from rnnkit.generation.generate import generate_request, make_request, read_prompt_file, unescape
    from rnnkit.generation.options import describe
    from rnnkit.runs.loaded import load

    if as_json and (streaming or session):
        raise UsageError(f"--json and {'--stream' if streaming else '--interactive'}: choose one")
    if streaming and session:
        raise UsageError("--stream and --interactive: --interactive already streams; drop --stream")
    if prompt_file is not None:
        if prompt is not None:
            raise UsageError("--prompt and --prompt-file: give one of them")
        prompt = read_prompt_file(prompt_file)
    if session and prompt is not None:
        raise UsageError("--interactive reads its prompts from standard input, one per line; drop --prompt")
    stops = tuple(unescape(s) for s in stop or ())
    overrides = dict(prompt=prompt, max_len=max_len, min_len=min_len, num=num, seed=seed, greedy=greedy,
                     temperature=temperature, top_k=top_k, nucleus=nucleus, beam=beam,
                     length_penalty=length_penalty, early_stopping=early_stopping, no_repeat_ngram=no_repeat_ngram,
                     fixed_length=fixed_length, repetition_penalty=repetition_penalty,
                     penalise_prompt=penalise_prompt)
    loaded = load(run, which=which, device=device)
    if session:
        from rnnkit.generation.interactive import Session

        return interactive(Session(loaded, overrides, replace_unknown=replace_unknown, stop=stops))
    request = make_request(loaded, overrides, replace_unknown, stops, one=streaming)
    for note in request.replacements:
        err_console.print(f"replaced prompt character {note}", markup=False)
    stopping = "".join(f", stop at {s!r}" for s in request.stop)
    if streaming:
        err_console.print(f"{loaded.path}: {describe(request.options)}{stopping}", markup=False, soft_wrap=True)
        return stream(loaded, request)
    result = generate_request(loaded, request)
    if as_json:
        for sample in result.samples:
            record = {**dataclasses.asdict(sample), "prompt": result.prompt, "run": str(loaded.path),
                      "options": {**dataclasses.asdict(result.options), "stop": list(result.stop)}}
            print(json.dumps(record, ensure_ascii=False))
        return
    start = f", starting after {result.start!r}" if result.start else ""
    err_console.print(f"{loaded.path}: {describe(result.options)}{stopping}{start}", markup=False, soft_wrap=True)
    out_console.print(samples_table(result.prompt, result.samples))
