"""`rnnkit generate --interactive`: a session in which the model reads each line typed and continues it, its
recurrent state kept from turn to turn, with `:commands` that change the decoding options in between."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence

import torch

from rnnkit.config import GenerateConfig
from rnnkit.data.vocab import EOS
from rnnkit.errors import UsageError
from rnnkit.generation.decoding import Hypothesis
from rnnkit.generation.generate import (
    OnText,
    Sample,
    continue_from,
    encode_prompt,
    make_request,
    read,
    start_tokens,
    stream_options,
    to_samples,
)
from rnnkit.generation.options import decode_options, describe, flag, merge_options

# The `generate:` keys a `:command` can change, as typed (`:top-k 5`; `:nucleus` is also `:top-p`).
SETTABLE = ("temperature", "top_k", "nucleus", "greedy", "beam", "length_penalty", "early_stopping", "max_len",
            "min_len", "no_repeat_ngram", "repetition_penalty", "penalise_prompt", "seed")
ALIASES = {"top_p": "nucleus"}
TRUE, FALSE, NONE = ("on", "true", "yes", "1"), ("off", "false", "no", "0"), ("none", "off", "null")
HELP = """commands (a line that is not a command is read by the model, which continues it):
  :reset                 forget what the model has read (a fresh state)
  :temperature T         sampling temperature (> 0); :top-k K, :nucleus P (:top-p), "off" removes them
  :greedy [on|off]       always take the most probable character
  :beam K                beam search of width K (1 = off); :length-penalty, :early-stopping never|true|false
  :max-len N, :min-len N, :no-repeat-ngram N, :repetition-penalty R, :penalise-prompt on|off
  :seed N                reseed the sampler
  :help                  this list and the current settings
a line starting with :: is read without its first colon; end of input (Ctrl-D) ends the session"""


def _parse(name: str, text: str):
    """The value of `:name text` for GenerateConfig field `name`, typed; UsageError naming the command."""
    hint = typing.get_type_hints(GenerateConfig)[name]
    optional = type(None) in typing.get_args(hint)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    word = text.strip().lower()
    if kind is bool:
        if word in TRUE or not word:
            return True
        if word in FALSE:
            return False
        raise UsageError(f":{name.replace('_', '-')}: expected on or off, got {text.strip()!r}")
    if optional and word in NONE:
        return None
    if kind is str:
        return word
    try:
        return kind(text.strip())
    except ValueError:
        raise UsageError(f":{name.replace('_', '-')}: expected {'an integer' if kind is int else 'a number'}, "
                         f"got {text.strip()!r}") from None


def _colons(err: UsageError) -> UsageError:
    """A message about command-line options (--top-k), reworded for the session's commands (:top-k)."""
    return UsageError(str(err).replace("--", ":"))


class Session:
    """The model's state and the decoding options between turns.

    What the model has read is kept as `state` (after everything but the last token) and `pending` (the last
    token, read at the start of the next turn): after a turn that ended with EOS the next line starts a new
    sentence with the state carried over, as EOS + prompt starts one in `rnnkit generate`.
    """

    def __init__(self, run, overrides: dict, replace_unknown: str | None = None, stop: Sequence[str] = ()):
        request = make_request(run, {**overrides, "prompt": ""}, replace_unknown, stop, one=True)
        self.run, self.options, self.replace_unknown = run, request.options, replace_unknown
        self.stop = request.decode.stop
        self.generator = torch.Generator(device=run.device).manual_seed(self.options.seed)
        self.state = None
        self.pending: int | None = None  # None: nothing read yet

    def reset(self) -> None:
        """Forget what the model has read: the next line is read from a zero state."""
        self.state, self.pending = None, None

    def describe(self) -> str:
        return describe(self.options) + "".join(f", stop at {self.run.vocab.decode(s)!r}" for s in self.stop)

    def set(self, name: str, text: str) -> str:
        """`:name text`: change one decoding option (checked, as its `generate` option); returns the new settings."""
        key = ALIASES.get(name.replace("-", "_"), name.replace("-", "_"))
        if key not in SETTABLE:
            raise UsageError(f":{name}: unknown command; :help lists them")
        value = _parse(key, text)
        try:
            options = merge_options(self.options, {key: value})
            if self.run.cfg.data.mode == "stream":
                options = stream_options(options, {key: value})
            options = dataclasses.replace(options, num=1)
            dataclasses.replace(decode_options(options), stop=self.stop).validate()
        except UsageError as err:
            raise _colons(err) from None
        self.options = options
        if key == "seed":
            self.generator.manual_seed(value)
        shown = "off" if value is None or value is False else "on" if value is True else value
        return f"{flag(key)[2:]} {shown}: {self.describe()}"

    def command(self, line: str) -> str:
        """Run a `:command` line; returns what to tell the user. UsageError for a wrong one (the session goes on)."""
        name, _, rest = line[1:].strip().partition(" ")
        if name == "reset":
            self.reset()
            return "reset: the model starts afresh"
        if name == "help":
            return f"{HELP}\nnow: {self.describe()}"
        return self.set(name, rest)

    @torch.no_grad()
    def turn(self, line: str, on_text: OnText | None = None) -> Sample:
        """The model reads `line` after what it has read so far, then continues it until EOS, a stop string or
        max_len; on_text receives the characters as they are generated (greedy and sampling)."""
        run = self.run
        ids, _ = encode_prompt(run.vocab, line, self.replace_unknown)
        stream_model = run.cfg.data.mode == "stream"
        tokens = start_tokens(run.vocab, ids, stream_model) if self.pending is None else [self.pending, *ids]
        state = read(run.model, tokens[:-1], self.state, run.device)
        options = dataclasses.replace(decode_options(self.options), stop=self.stop)
        if stream_model:
            options = dataclasses.replace(options, stop_at_eos=False)
        found = continue_from(run.model, run.vocab, tokens[-1], state, options, self.generator, run.device, ids,
                              on_text)
        best = found[0] if found else Hypothesis()  # beam search finds none when every character is blocked
        produced = [tokens[-1], *best.tokens] + ([EOS] if best.finished else [])
        self.state = read(run.model, produced[:-1], state, run.device)
        self.pending = produced[-1]
        return to_samples(run.vocab, [best], self.stop)[0]
