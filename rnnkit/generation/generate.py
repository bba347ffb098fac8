"""Text generation from a language model: the prompt read, then a decoder of `rnnkit.generation.decoding`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rnnkit.config import GenerateConfig
from rnnkit.data.vocab import EOS
from rnnkit.errors import UsageError, VocabularyError
from rnnkit.generation.decoding import DecodeOptions, decode
from rnnkit.generation.options import decode_options, merge_options


@dataclass
class Sample:
    """One generated sequence, as printed by `rnnkit generate --json`."""

    text: str  # the generated characters, prompt and EOS excluded
    log_prob: float  # the model's log-probability of them (and of EOS when finished)
    length: int  # characters generated
    finished: bool  # ended with EOS (else stopped at max_len)


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
    """What `generate_from_loaded` produced and how."""

    samples: list[Sample]
    options: GenerateConfig  # the options actually used (run defaults + command line)
    prompt: str  # the prompt as the model read it (after any --replace-unknown)
    replacements: list[str]  # human-readable notes, one per replaced prompt character


def generate_from_loaded(run, overrides: dict, replace_unknown: str | None = None) -> Generation:
    """Generate from a loaded run (rnnkit.runs.loaded.LoadedRun): its `generate:` defaults merged with
    `overrides` (generate config keys; None = not given)."""
    if run.cfg.task != "lm":
        raise UsageError(f"{run.path}: generate needs a language model (task: lm), this run is task: {run.cfg.task}")
    used = merge_options(run.cfg.generate, overrides)
    prompt_ids, replaced = encode_prompt(run.vocab, used.prompt, replace_unknown)
    samples = generate(run.model, run.vocab, prompt_ids, decode_options(used), used.seed, run.device)
    return Generation(samples, used, run.vocab.decode(prompt_ids), replaced)
