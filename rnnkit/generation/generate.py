"""Text generation from a language model: the prompt read, then a decoder of `rnnkit.generation.decoding`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnkit.config import GenerateConfig
from rnnkit.data.vocab import EOS, PAD, describe_char
from rnnkit.errors import DataError, UsageError, VocabularyError
from rnnkit.generation.decoding import DecodeOptions, Hypothesis, State, decode
from rnnkit.generation.options import decode_options, merge_options
from rnnkit.io.reading import open_binary

# Receives each generated character as it is chosen (greedy and sampling): `--stream` prints them.
OnText = Callable[[str], None]

# What a stream model reads when the prompt is empty, in order of preference: the start of a line, else a space.
STREAM_STARTS = ("\n", " ")
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


@dataclass
class Sample:
    """One generated sequence, as printed by `rnnkit generate --json`."""

    text: str  # the generated characters, prompt and EOS excluded, a stop string included
    log_prob: float  # the model's log-probability of them (and of EOS when it ended with EOS)
    score: float  # what ranked it: log_prob, except in beam search (processed sum / length ** length_penalty)
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
def read(model, tokens: Sequence[int], state: State, device: torch.device) -> State:
    """The model's state after it reads `tokens` from `state` (None = zeros); no tokens: `state` as it is."""
    if not tokens:
        return state
    _, state = model(torch.tensor(list(tokens), dtype=torch.long, device=device).unsqueeze(1), state)  # (T, 1)
    return state


@torch.no_grad()
def continue_from(model, vocab, first_token: int, state: State, options: DecodeOptions,
                  generator: torch.Generator, device: torch.device, prompt_ids: Sequence[int] = (),
                  on_text: OnText | None = None) -> list[Hypothesis]:
    """Decode from a model that has read everything before `first_token` (its `state`): the decoder steps on
    the model's logits (`step_logits`) and never generates PAD. prompt_ids: what the repetition penalty and
    n-gram blocking count with options.penalise_prompt. on_text: see OnText (one sequence only)."""
    options = dataclasses.replace(options, suppress=(PAD,))
    on_step = None
    if on_text is not None:
        def on_step(tokens, emitted):
            if bool(emitted[0]):
                on_text(vocab.decode([int(tokens[0])]))
    return decode(model.step_logits, first_token, state, EOS, options, generator=generator, device=device,
                  context=prompt_ids, on_step=on_step)


def to_samples(vocab, hypotheses: list[Hypothesis], stop: Sequence[tuple[int, ...]]) -> list[Sample]:
    """Decoded hypotheses as Samples (texts, the stop string each ended with)."""
    stops = [vocab.decode(s) for s in stop]
    samples = []
    for h in hypotheses:
        text = vocab.decode(h.tokens)
        ended = next((s for s in stops if text.endswith(s)), None) if h.stopped else None
        samples.append(Sample(text=text, log_prob=float(h.log_prob), score=float(h.score), length=len(h.tokens),
                              finished=bool(h.finished or h.stopped), stop=ended))
    return samples


@torch.no_grad()
def generate(model, vocab, prompt_ids: list[int], options: DecodeOptions, seed: int, device: torch.device, *,
             stream: bool = False, on_text: OnText | None = None) -> list[Sample]:
    """Read the prompt (see `start_tokens`), then decode; texts exclude the prompt.

    stream: the model was trained on a character stream (data.mode: stream): it never reads or emits EOS, so
    EOS is forbidden like PAD and a sample runs to options.max_len or one of options.stop.
    on_text: called with each character as it is generated (greedy or sampling of one sequence; beam search
    never calls it). It does not change what is generated.
    """
    model.eval()
    if stream:
        options = dataclasses.replace(options, stop_at_eos=False)
    if on_text is not None and options.beam == 1 and options.num > 1:
        raise UsageError(f"--num {options.num}: streaming shows one sequence as it is generated; use --num 1")
    tokens = start_tokens(vocab, prompt_ids, stream)
    state = read(model, tokens[:-1], None, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    hypotheses = continue_from(model, vocab, tokens[-1], state, options, generator, device, prompt_ids, on_text)
    return to_samples(vocab, hypotheses, options.stop)


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


@dataclass
class Request:
    """A checked request to generate from a loaded run: the options used, the prompt as the model reads it."""

    options: GenerateConfig  # run defaults + command line, checked
    decode: DecodeOptions  # the same, for the decoder (stop strings as ids)
    prompt_ids: list[int]
    replacements: list[str]  # human-readable notes, one per replaced prompt character
    stop: tuple[str, ...]
    stream_model: bool  # the run is a stream model (data.mode: stream): no EOS


def make_request(run, overrides: dict, replace_unknown: str | None = None, stop: Sequence[str] = (), *,
                 one: bool = False) -> Request:
    """Check what `generate` is asked to do with a loaded run (rnnkit.runs.loaded.LoadedRun): its `generate:`
    defaults merged with `overrides` (generate config keys; None = not given); `stop`: strings that end a
    sample. one: exactly one sequence is wanted (--stream, --interactive): the run's `num` is set aside, a
    --num above 1 is refused."""
    if run.cfg.task != "lm":
        raise UsageError(f"{run.path}: generate needs a language model (task: lm), this run is task: {run.cfg.task}")
    stream = run.cfg.data.mode == "stream"
    used = merge_options(run.cfg.generate, overrides)
    if one:
        if (overrides.get("num") or 1) > 1:
            raise UsageError(f"--num {overrides['num']}: --stream and --interactive show one sequence; "
                             f"drop --num (or --stream and --interactive for {overrides['num']} sequences)")
        used = dataclasses.replace(used, num=1)
    if stream:
        used = stream_options(used, overrides)
    prompt_ids, replaced = encode_prompt(run.vocab, used.prompt, replace_unknown)
    options = dataclasses.replace(decode_options(used), stop=encode_stops(run.vocab, stop))
    options.validate()
    return Request(used, options, prompt_ids, replaced, tuple(stop), stream)


def generate_request(run, request: Request, on_text: OnText | None = None) -> Generation:
    """Generate what `request` asks for from the loaded run; on_text: see `generate`."""
    samples = generate(run.model, run.vocab, request.prompt_ids, request.decode, request.options.seed, run.device,
                       stream=request.stream_model, on_text=on_text)
    empty_stream = request.stream_model and not request.prompt_ids
    start = run.vocab.decode(start_tokens(run.vocab, [], True)) if empty_stream else ""
    return Generation(samples, request.options, run.vocab.decode(request.prompt_ids), request.replacements,
                      request.stop, start)


def generate_from_loaded(run, overrides: dict, replace_unknown: str | None = None,
                         stop: Sequence[str] = ()) -> Generation:
    """Generate from a loaded run: `make_request` then `generate_request`."""
    return generate_request(run, make_request(run, overrides, replace_unknown, stop))
