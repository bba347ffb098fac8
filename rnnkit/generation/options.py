"""Decoding options: the run's `generate:` defaults merged with what the command line asks for, checked once,
described in words, and translated into the decoder's `DecodeOptions`."""

from __future__ import annotations

import dataclasses

from rnnkit.config import GenerateConfig, value_problems
from rnnkit.errors import UsageError
from rnnkit.generation.decoding import DecodeOptions

# The options that choose the decoding mode. Named on the command line, they set aside the run's defaults
# that would clash with them: `--greedy` on a run whose config samples at T=0.8 is greedy, not an error.
SAMPLING_OPTIONS = ("temperature", "top_k", "nucleus")
# Values that switch a mode option off: plain ancestral sampling at T=1, no beam.
NEUTRAL = {"greedy": False, "beam": 1, "temperature": 1.0, "top_k": None, "nucleus": None}
SETS_ASIDE = {
    "greedy": ("beam", *SAMPLING_OPTIONS),  # --greedy: plain argmax, whatever the config samples with
    "beam": ("greedy", *SAMPLING_OPTIONS),  # --beam K alone: plain beam search
    **{name: ("greedy",) for name in SAMPLING_OPTIONS},  # --nucleus P: sampling (or beam sample with a beam)
}
# Options of beam search alone: without a beam, the run's values of those not given fall back to these defaults.
BEAM_ONLY = {"length_penalty": 1.0, "early_stopping": "never"}


def flag(name: str) -> str:
    """The command-line option of a `generate:` key: max_len -> --max-len."""
    return "--" + name.replace("_", "-")


def merge_options(defaults: GenerateConfig, overrides: dict) -> GenerateConfig:
    """The run's `generate:` section with the options that were given (not None), checked.

    Options given choose the mode; the run's defaults fill in the rest, except those that would clash with the
    mode asked for (SETS_ASIDE), which fall back to NEUTRAL. Each given value is checked against the same limits
    as the config key (one UsageError naming every problem); the decoder checks the combination.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(GenerateConfig)})
    if unknown:
        raise UsageError(f"unknown generate option(s) {', '.join(unknown)}; see rnnkit generate --help")
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
    if result.beam == 1:
        result = dataclasses.replace(result, **{k: v for k, v in BEAM_ONLY.items() if k not in given})
    problems = value_problems(result, given)
    if problems:
        raise UsageError("; ".join(f"{flag(name)}: {problem}" for name, problem in problems.items()))
    return result


def decode_options(cfg: GenerateConfig) -> DecodeOptions:
    """Translate the config's vocabulary (nucleus, fixed_length) into the decoder's (top_p, stop_at_eos)."""
    return DecodeOptions(
        greedy=cfg.greedy, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.nucleus,
        beam=cfg.beam, length_penalty=cfg.length_penalty, early_stopping=cfg.early_stopping,
        no_repeat_ngram=cfg.no_repeat_ngram, num=cfg.num, max_len=cfg.max_len, min_len=cfg.min_len,
        stop_at_eos=not cfg.fixed_length, repetition_penalty=cfg.repetition_penalty,
        penalise_prompt=cfg.penalise_prompt,
    )


def describe(cfg: GenerateConfig) -> str:
    """The decoding method in words, e.g. 'sampling, T=0.8, nucleus 0.95' or 'beam 5 + nucleus 0.95'."""
    if cfg.greedy:
        method, warps = "greedy", []
    else:
        warps = [f"T={cfg.temperature:g}"] if cfg.temperature != 1.0 else []
        warps += [f"top-k {cfg.top_k}"] if cfg.top_k is not None else []
        warps += [f"nucleus {cfg.nucleus:g}"] if cfg.nucleus is not None else []
        method = f"beam {cfg.beam}" if cfg.beam > 1 else "sampling"
    text = method + (" + " if cfg.beam > 1 else ", ") + ", ".join(warps) if warps else method
    if cfg.beam > 1 and cfg.early_stopping != "never":
        text += f", early stopping {cfg.early_stopping}"
    if cfg.repetition_penalty != 1.0:
        text += f", repetition penalty {cfg.repetition_penalty:g}"
    if cfg.no_repeat_ngram:
        text += f", no repeated {cfg.no_repeat_ngram}-grams"
    if cfg.penalise_prompt and (cfg.repetition_penalty != 1.0 or cfg.no_repeat_ngram):
        text += " (prompt counted)"
    return text
