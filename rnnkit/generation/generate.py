"""Text generation from a language model: the prompt read, then a decoder of `rnnkit.generation.decoding`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnkit.config import GenerateConfig
from rnnkit.data.vocab import EOS, describe_char
from rnnkit.errors import DataError, UsageError, VocabularyError
from rnnkit.generation.decoding import DecodeOptions, decode
from rnnkit.generation.options import decode_options, merge_options
from rnnkit.io.reading import open_binary

# What a stream model reads when the prompt is empty, in order of preference: the start of a line, else a space.
STREAM_STARTS = ("\n", " ")
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


@dataclass
class Sample:
    """One generated sequence, as printed by `rnnkit generate --json`."""

    text: str  # the generated characters, prompt and EOS excluded, a stop string included
    log_prob: float  # the model's log-probability of them (and of EOS when it ended with EOS)
    length: int  # characters generated
    finished: bool  # ended on its own: with EOS, or with a stop string (else it was cut at max_len)
    stop: str | None = None  # the stop string it ended with (None: EOS or max_len)


def encode_prompt(vocab, prompt: str, replace_unknown: str | None) -> tuple[list[int], list[str]]:
    """Prompt characters as ids; unknown ones are an error unless `replace_unknown` names a stand-in.

    Returns the ids and a list of human-readable replacements made (empty when none).
    """
    if replace_unknown is None:
        try:
            return vocab.encode(prompt), []
        except VocabularyError as err:
            raise VocabularyError(f"--prompt: {err} (pass --replace-unknown CHAR to substitute it)") from None
    if len(replace_unknown) != 1 or not vocab.contains(replace_unknown):
        raise UsageError(f"--replace-unknown: {replace_unknown!r} must be one character of the vocabulary")
    replaced, chars = [], []
    for position, char in enumerate(prompt):
        if vocab.contains(char):
            chars.append(char)
        else:
            replaced.append(f"{char!r} (U+{ord(char):04X}) at position {position} -> {replace_unknown!r}")
            chars.append(replace_unknown)
    return vocab.encode("".join(chars)), replaced


def unescape(text: str) -> str:
    r"""`--stop` values as typed: \n, \t, \r and \\ become newline, tab, carriage return and a backslash."""
    out, chars = [], iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            out.append(ESCAPES.get(following, "\\" + following))
        else:
            out.append(char)
    return "".join(out)


def encode_stops(vocab, stops: Sequence[str]) -> tuple[tuple[int, ...], ...]:
    """Stop strings as id sequences; one the model cannot generate (a character outside its vocabulary, which
    for sentence models includes the newline: EOS ends their samples) is a UsageError naming it."""
    encoded = []
    for stop in stops:
        if not stop:
            raise UsageError("--stop: the stop string is empty")
        unknown = [char for char in stop if not vocab.contains(char)]
        if unknown:
            raise UsageError(f"--stop {stop!r}: {describe_char(unknown[0])} is not in the model's vocabulary, so "
                             f"the model can never generate it")
        encoded.append(tuple(vocab.encode(stop)))
    return tuple(encoded)


def start_tokens(vocab, prompt_ids: list[int], stream: bool) -> list[int]:
    """What the model reads before it generates: at least one token, the last of which is the decoder's first input.

    Sentence and windows models read EOS + prompt (EOS is the start symbol they were trained with), so an empty
    prompt starts a fresh sentence. Stream models have no EOS: they read the prompt from a zero state, like the
    start of a training row; an empty prompt reads a newline (the start of a line), or a space when the
    vocabulary has no newline.
    """
    if not stream:
        return [EOS] + prompt_ids
    if prompt_ids:
        return prompt_ids
    for char in STREAM_STARTS:
        if vocab.contains(char):
            return vocab.encode(char)
    raise UsageError("--prompt: this stream model's vocabulary has neither a newline nor a space to start from; "
                     "give a --prompt or --prompt-file")


@torch.no_grad()
def generate(model, vocab, prompt_ids: list[int], options: DecodeOptions, seed: int, device: torch.device, *,
             stream: bool = False) -> list[Sample]:
    """Read the prompt (see `start_tokens`), then decode; texts exclude the prompt.

    stream: the model was trained on a character stream (data.mode: stream): it never reads or emits EOS, so
    EOS is forbidden like PAD and a sample runs to options.max_len or one of options.stop.
    """
    model.eval()
    if stream:
        options = dataclasses.replace(options, stop_at_eos=False)
    tokens = start_tokens(vocab, prompt_ids, stream)
    state = None
    if len(tokens) > 1:
        context = torch.tensor(tokens[:-1], dtype=torch.long, device=device).unsqueeze(1)  # (T, 1)
        _, state = model(context)
    generator = torch.Generator(device=device).manual_seed(seed)
    hypotheses = decode(model.step, tokens[-1], state, EOS, options, generator=generator)
    stops = [vocab.decode(stop) for stop in options.stop]
    samples = []
    for h in hypotheses:
        text = vocab.decode(h.tokens)
        stop = next((s for s in stops if text.endswith(s)), None) if h.stopped else None
        samples.append(Sample(text=text, log_prob=float(h.log_prob), length=len(h.tokens),
                              finished=bool(h.finished or h.stopped), stop=stop))
    return samples


def read_prompt_file(path: str | Path) -> str:
    """The text of a `--prompt-file`, exactly as written (newlines and indentation kept); DataError when it is
    missing or not UTF-8 text."""
    try:
        with open_binary(path, "file", DataError, "a text file") as handle:
            data = handle.read()
    except DataError as err:
        raise DataError(f"--prompt-file {err}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"--prompt-file {path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                        f"{err.start})") from None


@dataclass
class Generation:
    """What `generate_from_loaded` produced and how."""

    samples: list[Sample]
    options: GenerateConfig  # the options actually used (run defaults + command line)
    prompt: str  # the prompt as the model read it (after any --replace-unknown)
    replacements: list[str]  # human-readable notes, one per replaced prompt character
    stop: tuple[str, ...] = ()  # the stop strings
    start: str = ""  # what a stream model read before an empty prompt (a newline or a space), else ""


def stream_options(used: GenerateConfig, overrides: dict) -> GenerateConfig:
    """A stream model's options: fixed_length (it has no EOS); --until-eos and --min-len have nothing to act on."""
    if overrides.get("fixed_length") is False:
        raise UsageError("--until-eos: a stream model has no EOS; a sample runs to --max-len or a --stop string")
    if used.min_len:
        raise UsageError(f"--min-len: {used.min_len} holds back EOS, which a stream model never generates; "
                         f"use --max-len and --stop")
    return dataclasses.replace(used, fixed_length=True)


def generate_from_loaded(run, overrides: dict, replace_unknown: str | None = None,
                         stop: Sequence[str] = ()) -> Generation:
    """Generate from a loaded run (rnnkit.runs.loaded.LoadedRun): its `generate:` defaults merged with
    `overrides` (generate config keys; None = not given); `stop`: strings that end a sample (kept in its text)."""
    if run.cfg.task != "lm":
        raise UsageError(f"{run.path}: generate needs a language model (task: lm), this run is task: {run.cfg.task}")
    stream = run.cfg.data.mode == "stream"
    used = merge_options(run.cfg.generate, overrides)
    if stream:
        used = stream_options(used, overrides)
    prompt_ids, replaced = encode_prompt(run.vocab, used.prompt, replace_unknown)
    options = dataclasses.replace(decode_options(used), stop=encode_stops(run.vocab, stop))
    samples = generate(run.model, run.vocab, prompt_ids, options, used.seed, run.device, stream=stream)
    start = run.vocab.decode(start_tokens(run.vocab, [], True)) if stream and not prompt_ids else ""
    return Generation(samples, used, run.vocab.decode(prompt_ids), replaced, tuple(stop), start)
