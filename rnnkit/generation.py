"""Text generation from a trained language model: prompt handling and options around `rnnkit.decoding`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnkit.config import GenerateConfig
from rnnkit.data.vocab import EOS
from rnnkit.decoding import DecodeOptions, decode
from rnnkit.errors import UsageError, VocabularyError

# `--max-len` beyond this is a typo, not a wish: a char model of any size would run for hours.
MAX_GENERATE_LEN = 100_000
# Likewise for `--num` and `--beam`: each sequence or beam is a row of every decoder tensor.
MAX_GENERATE_ROWS = 10_000

# The options that choose the decoding mode. Named on the command line, they set aside the run's defaults
# that would clash with them: `--greedy` on a run whose config samples at T=0.8 is greedy, not an error.
SAMPLING_OPTIONS = ("temperature", "top_k", "nucleus")
NEUTRAL = {"greedy": False, "beam": 1, "temperature": 1.0, "top_k": None, "nucleus": None}
SETS_ASIDE = {
    "greedy": ("beam", *SAMPLING_OPTIONS),  # --greedy: plain argmax, whatever the config samples with
    "beam": ("greedy", *SAMPLING_OPTIONS),  # --beam K alone: plain beam search
    **{name: ("greedy",) for name in SAMPLING_OPTIONS},  # --nucleus P: sampling (or beam sample with a beam)
}


@dataclass
class Sample:
    """One generated sequence, as printed by `rnnkit generate --json`."""

    text: str
    log_prob: float
    length: int
    finished: bool


def merge_options(defaults: GenerateConfig, overrides: dict) -> GenerateConfig:
    """The run's `generate:` section with the command-line options that were given (not None).

    Options given on the command line choose the mode; the run's defaults fill in the rest, except those
    that would clash with the mode asked for (SETS_ASIDE), which fall back to neutral values.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    merged = {}
    for name in given:
        if name == "greedy" and not given[name]:
            continue  # --no-greedy sets nothing aside
        for other in SETS_ASIDE.get(name, ()):
            merged[other] = NEUTRAL[other]
    merged.update(given)
    result = dataclasses.replace(defaults, **merged)
    if "num" not in given:  # the run's `num` shrinks to what the mode asked for can return
        if result.greedy:
            result.num = 1
        elif result.beam > 1:
            result.num = min(result.num, result.beam)
    return result


def decode_options(cfg: GenerateConfig) -> DecodeOptions:
    """Translate the config's vocabulary (nucleus, fixed_length) into the decoder's (top_p, stop_at_eos)."""
    if cfg.max_len < 1:
        raise UsageError(f"--max-len must be at least 1, got {cfg.max_len}")
    if cfg.max_len > MAX_GENERATE_LEN:
        raise UsageError(f"--max-len: {cfg.max_len} is more than the {MAX_GENERATE_LEN} characters allowed")
    for option, value in (("--num", cfg.num), ("--beam", cfg.beam)):
        if value > MAX_GENERATE_ROWS:
            raise UsageError(f"{option}: {value} is more than the {MAX_GENERATE_ROWS} sequences allowed at once")
    options = DecodeOptions(
        greedy=cfg.greedy, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.nucleus,
        beam=cfg.beam, length_penalty=cfg.length_penalty, no_repeat_ngram=cfg.no_repeat_ngram,
        num=cfg.num, max_len=cfg.max_len, min_len=cfg.min_len, stop_at_eos=not cfg.fixed_length,
        repetition_penalty=cfg.repetition_penalty,
    )
    options.validate()
    return options


def encode_prompt(vocab, prompt: str, replace_unknown: str | None) -> tuple[list[int], list[str]]:
    """Prompt characters as ids; unknown ones are an error unless `replace_unknown` names a stand-in.

    Returns the ids and a list of human-readable replacements made (empty when none).
    """
    if replace_unknown is None:
        return vocab.encode(prompt), []
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


@torch.no_grad()
def generate(model, vocab, prompt_ids: list[int], options: DecodeOptions, seed: int,
             device: torch.device) -> list[Sample]:
    """Read the prompt, then decode; texts exclude the prompt.

    Sentences were trained with EOS as their start symbol, so the model reads EOS + prompt: an empty
    prompt starts a fresh sentence, and the last prompt character is the first input of the decoder.
    """
    model.eval()
    tokens = [EOS] + prompt_ids
    state = None
    if len(tokens) > 1:
        context = torch.tensor(tokens[:-1], dtype=torch.long, device=device).unsqueeze(1)  # (T, 1)
        _, state = model(context)
    generator = torch.Generator(device=device).manual_seed(seed)
    hypotheses = decode(model.step, tokens[-1], state, EOS, options, generator=generator)
    return [Sample(text=vocab.decode(h.tokens), log_prob=float(h.log_prob), length=len(h.tokens),
                   finished=bool(h.finished)) for h in hypotheses]


@dataclass
class Generation:
    """What `generate_from_run` produced and how."""

    samples: list[Sample]
    options: GenerateConfig  # the options actually used (run defaults + command line)
    prompt: str  # the prompt as the model read it (after any --replace-unknown)
    replacements: list[str]  # human-readable notes, one per replaced prompt character


def generate_from_run(run_dir: Path, overrides: dict, *, which: str = "best", device: str = "auto",
                      replace_unknown: str | None = None) -> Generation:
    """Load a run, merge its `generate:` defaults with `overrides`, and generate."""
    from rnnkit.checkpoint import load_for_inference, pick_device

    torch_device = pick_device(device)
    cfg, vocab, model = load_for_inference(run_dir, which=which, device=torch_device)
    if cfg.task != "lm":
        raise UsageError(f"{run_dir}: generate needs a language model (task: lm), this run is task: {cfg.task}")
    used = merge_options(cfg.generate, overrides)
    options = decode_options(used)
    try:
        prompt_ids, replaced = encode_prompt(vocab, used.prompt, replace_unknown)
    except VocabularyError as err:
        raise VocabularyError(f"--prompt: {err} (pass --replace-unknown CHAR to substitute it)") from None
    samples = generate(model, vocab, prompt_ids, options, used.seed, torch_device)
    return Generation(samples, used, vocab.decode(prompt_ids), replaced)
