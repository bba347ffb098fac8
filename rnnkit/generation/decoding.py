"""Batched decoding for recurrent language models: greedy, sampling (temperature, top-k, nucleus), beam, beam sample."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from rnnkit.errors import UsageError

__all__ = [
    "DecodeOptions", "Hypothesis", "decode", "greedy_decode", "sample_decode", "beam_search", "beam_sample",
    "expand_state", "select_state", "apply_temperature", "top_k_filter", "top_p_filter",
    "block_repeated_ngrams", "apply_repetition_penalty",
]

# A recurrent state: None (zeros), one tensor, or a tuple such as an LSTM's (h, c); batch on dim 1.
State = Tensor | tuple[Tensor, ...] | None
# tokens (N,) long, state -> (logits (N, V), state). Logits are the model's unnormalised scores: the decoders
# take their log_softmax as the model's log-probabilities (log-probabilities are valid logits too).
StepFn = Callable[[Tensor, State], tuple[Tensor, State]]
# Called once per generated position by greedy and sampling decoding: tokens (N,) chosen, emitted (N,) bool
# (the rows whose text the token joins: not EOS, not a row that had already ended).
OnStep = Callable[[Tensor, Tensor], None]

NEG_INF = float("-inf")
EARLY_STOPPING = ("never", "true", "false")  # Hugging Face's early_stopping "never", True and False


@dataclass
class DecodeOptions:
    """How to decode; field names follow the decoder, messages follow the `rnnkit generate` options."""

    greedy: bool = False  # always take the most probable token
    temperature: float = 1.0  # divide log-probs by this before sampling
    top_k: int | None = None  # sample among the k most probable tokens
    top_p: float | None = None  # nucleus: sample from the smallest set holding this much probability
    beam: int = 1  # beam width (1 = no beam search)
    length_penalty: float = 1.0  # finished beams score sum log-prob / length ** this
    early_stopping: str = "never"  # when beam search stops: see EARLY_STOPPING and _beam_loop
    no_repeat_ngram: int = 0  # forbid repeating any generated n-gram of this size (0 = off)
    num: int = 1  # sequences to return
    max_len: int = 200  # most tokens to generate, EOS included
    min_len: int = 0  # EOS is forbidden until this many tokens have been generated
    stop_at_eos: bool = True  # False: EOS is never emitted; max_len tokens come out unless a stop sequence ends
    repetition_penalty: float = 1.0  # HF's rule on seen tokens: logits > 0 divided by this, < 0 multiplied
    stop: tuple[tuple[int, ...], ...] = ()  # token sequences that end a sequence once generated (kept in it)
    suppress: tuple[int, ...] = ()  # tokens never generated (HF's suppress_tokens), e.g. a padding id
    penalise_prompt: bool = False  # repetition penalty and n-gram blocking also count the decoder's `context`

    @property
    def samples(self) -> bool:
        """True when a sampling processor (temperature, top-k, nucleus) is asked for."""
        return self.temperature != 1.0 or self.top_k is not None or self.top_p is not None

    def validate(self) -> None:
        """Raise one UsageError naming every impossible value or combination (one line, `; `-separated)."""
        problems = []
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            problems.append(f"--temperature must be a positive number, got {self.temperature} "
                            "(use --greedy for argmax decoding)")
        if self.top_k is not None and self.top_k < 1:
            problems.append(f"--top-k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            problems.append(f"--nucleus must be in (0, 1], got {self.top_p}")
        if self.beam < 1:
            problems.append(f"--beam must be at least 1, got {self.beam}")
        if self.num < 1:
            problems.append(f"--num must be at least 1, got {self.num}")
        if self.max_len < 0:
            problems.append(f"--max-len must be at least 0, got {self.max_len}")
        if self.min_len < 0:
            problems.append(f"--min-len must be at least 0, got {self.min_len}")
        elif self.max_len >= 0 and self.min_len > self.max_len:
            problems.append(f"--min-len ({self.min_len}) cannot exceed --max-len ({self.max_len})")
        if self.no_repeat_ngram < 0:
            problems.append(f"--no-repeat-ngram must be at least 0 (0 = off), got {self.no_repeat_ngram}")
        if not (self.repetition_penalty > 0 and math.isfinite(self.repetition_penalty)):
            problems.append(f"--repetition-penalty must be a positive number, got {self.repetition_penalty}")
        if not math.isfinite(self.length_penalty):
            problems.append(f"--length-penalty must be a finite number, got {self.length_penalty}")
        elif self.length_penalty != 1.0 and self.beam == 1:
            problems.append("--length-penalty only applies to beam search: add --beam K with K > 1")
        if self.early_stopping not in EARLY_STOPPING:
            problems.append(f"--early-stopping must be one of {', '.join(EARLY_STOPPING)}, got {self.early_stopping!r}")
        elif self.early_stopping != "never" and self.beam == 1:
            problems.append("--early-stopping only applies to beam search: add --beam K with K > 1")
        if self.greedy:
            if self.beam > 1:
                problems.append("--greedy cannot be combined with --beam > 1 (beam search with K=1 is greedy)")
            sampling = [name for name, used in (("--temperature", self.temperature != 1.0),
                                                ("--top-k", self.top_k is not None),
                                                ("--nucleus", self.top_p is not None)) if used]
            if sampling:
                problems.append(f"--greedy cannot be combined with {', '.join(sampling)} (sampling options)")
            if self.num > 1:
                problems.append(f"--num {self.num} with --greedy would return one sequence {self.num} times; "
                                "use sampling or --beam")
        if any(len(sequence) == 0 for sequence in self.stop):
            problems.append("--stop must not be empty")
        if self.beam > 1 and self.num > self.beam:
            problems.append(f"--num ({self.num}) cannot exceed --beam ({self.beam}) in beam search")
        if problems:
            raise UsageError("; ".join(problems))


@dataclass
class Hypothesis:
    """One decoded sequence."""

    tokens: list[int] = field(default_factory=list)  # generated tokens, EOS excluded, a stop sequence included
    log_prob: float = 0.0  # the model's own (unprocessed) log-probability of tokens (+ EOS when finished)
    score: float = 0.0  # what ranked it: log_prob for greedy/sampling; for beam search the sum of the processed
    # log-probs (repetition penalty, temperature...) / length ** length_penalty, length counting EOS
    finished: bool = False  # ended with EOS
    stopped: bool = False  # ended with one of options.stop (its tokens are the last of `tokens`)


# --- state helpers --------------------------------------------------------------------------------------

def expand_state(state: State, n: int) -> State:
    """Repeat each batch row n times: tensors (L, B, H) -> (L, B*n, H); row b becomes rows b*n .. b*n+n-1."""
    if state is None or n == 1:
        return state
    if isinstance(state, Tensor):
        return state.repeat_interleave(n, dim=1)
    return tuple(s.repeat_interleave(n, dim=1) for s in state)


def select_state(state: State, idx: Tensor) -> State:
    """Rows `idx` (M,) long of each state tensor (L, B, H) -> (L, M, H): one index_select per tensor."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.index_select(1, idx)
    return tuple(s.index_select(1, idx) for s in state)


def _state_device(state: State) -> torch.device | None:
    if state is None:
        return None
    return state.device if isinstance(state, Tensor) else state[0].device


# --- processors: (N, V) scores in (logits or log-probs), (N, V) scores out; forbidden tokens get -inf ------------

def apply_temperature(log_probs: Tensor, temperature: float) -> Tensor:
    """(N, V) -> (N, V) divided by `temperature` (not renormalised: softmax does that when sampling)."""
    return log_probs if temperature == 1.0 else log_probs / temperature


def top_k_filter(log_probs: Tensor, k: int) -> Tensor:
    """(N, V) -> (N, V) keeping exactly the k highest entries per row (ties broken by torch.topk), -inf elsewhere."""
    if k >= log_probs.shape[-1]:
        return log_probs
    values, idx = log_probs.topk(k, dim=-1)  # (N, k)
    return torch.full_like(log_probs, NEG_INF).scatter(-1, idx, values)


def top_p_filter(log_probs: Tensor, p: float) -> Tensor:
    """Nucleus filter (N, V) -> (N, V): keep the smallest set of most probable tokens whose probability
    (softmax of the row) sums to >= p; the top token is always kept; the others get -inf.

    A token is kept when the mass of the tokens strictly more probable than it is still < p.
    """
    if p >= 1.0:
        return log_probs
    sorted_scores, order = log_probs.sort(dim=-1, descending=True)  # (N, V)
    cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    # Mass before each token, computed as a shifted cumsum rather than cum - prob to avoid rounding drift.
    before = torch.nn.functional.pad(cum[..., :-1], (1, 0))
    remove_sorted = before >= p
    remove_sorted[..., 0] = False
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)  # back to vocabulary order
    return log_probs.masked_fill(remove, NEG_INF)


def block_repeated_ngrams(log_probs: Tensor, history: Tensor, n: int) -> Tensor:
    """Forbid (-inf) every token that would repeat an n-gram already in `history`.

    log_probs (N, V); history (N, T) long, the tokens generated so far by each row. n = 1 forbids every
    token already generated.
    """
    num_rows, t = history.shape
    if n < 1 or t < n:
        return log_probs
    windows = history.unfold(1, n, 1)  # (N, T-n+1, n): every n-gram so far
    if n == 1:
        match = torch.ones(windows.shape[:2], dtype=torch.bool, device=history.device)
    else:
        # An n-gram whose first n-1 tokens equal the last n-1 generated ones bans its last token.
        match = (windows[..., :-1] == history[:, t - n + 1:].unsqueeze(1)).all(-1)  # (N, T-n+1)
    # scatter_add (not scatter) so that a False never overwrites a True for a repeated next token.
    hits = torch.zeros_like(log_probs).scatter_add_(1, windows[..., -1], match.to(log_probs.dtype))
    return log_probs.masked_fill(hits > 0, NEG_INF)


def apply_repetition_penalty(scores: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """(N, V) scores, seen (N, V) bool -> (N, V): each seen token's score divided by `penalty` when positive,
    multiplied by it when negative (Keskar et al. 2019, Hugging Face's RepetitionPenaltyLogitsProcessor).

    Greedy and sampling decoding apply it to the model's logits, beam search to log-probabilities (all <= 0,
    so there it multiplies), as Hugging Face does. penalty > 1 discourages repeats, < 1 encourages them.
    """
    if penalty == 1.0:
        return scores
    return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)


# --- shared per-step machinery ----------------------------------------------------------------------------

class _Constraints:
    """The processors that forbid or discourage tokens (HF's logits processors, in HF's order: repetition
    penalty, n-gram blocking, EOS before min_len, suppressed tokens), with the per-row memory they need:
    the tokens so far (N, P + max_len) for n-gram blocking and a seen mask (N, V) for the repetition penalty.
    Only what the options use is kept, so plain decoding pays nothing for them.

    With options.penalise_prompt, `context` (P tokens, the prompt) counts as already generated for both, as
    HF counts its input_ids; otherwise they look at generated tokens only.
    """

    def __init__(self, options: DecodeOptions, eos_id: int, rows: int, device: torch.device,
                 context: Sequence[int] = ()):
        self.options = options
        context = context if options.penalise_prompt else ()
        self.context = torch.tensor(list(context), dtype=torch.long, device=device)  # (P,)
        self.offset = len(context)
        banned = ([] if options.stop_at_eos else [eos_id]) + list(options.suppress)
        self.banned = torch.tensor(banned, dtype=torch.long, device=device) if banned else None
        self.eos = torch.tensor([eos_id], device=device)
        self.history = None
        if options.no_repeat_ngram:
            self.history = torch.zeros((rows, self.offset + options.max_len), dtype=torch.long, device=device)
            self.history[:, :self.offset] = self.context
        self.seen: Tensor | None = None  # allocated at the first step, once V is known

    def __call__(self, scores: Tensor, t: int) -> Tensor:
        """scores (N, V) of step t (0-based: t tokens generated so far) -> constrained scores (N, V)."""
        opt = self.options
        if opt.repetition_penalty != 1.0:
            if self.seen is None:
                self.seen = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
                self.seen[:, self.context] = True
            scores = apply_repetition_penalty(scores, self.seen, opt.repetition_penalty)
        if self.history is not None:
            scores = block_repeated_ngrams(scores, self.history[:, :self.offset + t], opt.no_repeat_ngram)
        if opt.stop_at_eos and t < opt.min_len:
            scores = scores.index_fill(1, self.eos, NEG_INF)
        if self.banned is not None:
            scores = scores.index_fill(1, self.banned, NEG_INF)
        return scores

    def record(self, tokens: Tensor, t: int, parents: Tensor | None = None) -> None:
        """Remember tokens (N,) chosen at step t; `parents` (N,) reorders the rows first (beam search)."""
        if self.history is not None:
            if parents is not None:
                self.history = self.history.index_select(0, parents)
            self.history[:, self.offset + t] = tokens
        if self.seen is not None:
            if parents is not None:
                self.seen = self.seen.index_select(0, parents)
            self.seen.scatter_(1, tokens.unsqueeze(1), True)


class _StopMatcher:
    """Which rows end with one of the stop sequences once a token is added (HF's stop_strings, on token ids).

    Keeps each row's last m - 1 generated tokens (m = the longest sequence), -1 before the first generated
    token: only generated tokens can match, never the prompt.
    """

    def __init__(self, stops: tuple[tuple[int, ...], ...], rows: int, device: torch.device):
        self.stops = [torch.tensor(s, dtype=torch.long, device=device) for s in stops]
        width = max(len(s) for s in stops) - 1
        self.tail = torch.full((rows, width), -1, dtype=torch.long, device=device)  # (N, m-1)

    def _extended(self, tokens: Tensor, parents: Tensor | None) -> Tensor:
        tail = self.tail if parents is None else self.tail.index_select(0, parents)
        return torch.cat([tail, tokens.unsqueeze(1)], dim=1)  # (M, m)

    def ends(self, tokens: Tensor, parents: Tensor | None = None) -> Tensor:
        """(M,) bool: row parents[i] (row i when None) followed by tokens[i] (M,) ends with a stop sequence."""
        seq = self._extended(tokens, parents)
        hit = torch.zeros(seq.shape[0], dtype=torch.bool, device=seq.device)
        for stop in self.stops:
            hit |= (seq[:, seq.shape[1] - len(stop):] == stop).all(-1)
        return hit

    def record(self, tokens: Tensor, parents: Tensor | None = None) -> None:
        """Append tokens (N,) to the rows (reordered by `parents` first, as in beam search)."""
        self.tail = self._extended(tokens, parents)[:, 1:]


def _warp(scores: Tensor, options: DecodeOptions) -> Tensor:
    """HF's sampling warpers in HF's order: temperature, then top-k, then top-p. (N, V) -> (N, V)."""
    scores = apply_temperature(scores, options.temperature)
    if options.top_k is not None:
        scores = top_k_filter(scores, options.top_k)
    if options.top_p is not None:
        scores = top_p_filter(scores, options.top_p)
    return scores


FEW_ROWS = 16  # up to this many rows, log-softmax runs row by row on a multi-threaded CPU (see _log_softmax)


def _log_softmax(logits: Tensor) -> Tensor:
    """logits (N, V) -> log_softmax over V. On a CPU with several threads, row by row: torch splits any N > 1
    rows over its threads, and waking a second thread for a few rows of a vocabulary costs more than the rows
    (on a loaded machine, milliseconds: beam 5 went 10x slower than greedy). Row by row gives the same numbers.
    Many rows (sampling `--num 512`) are worth the threads, and a Python loop over them is not."""
    if 1 < logits.shape[0] <= FEW_ROWS and logits.device.type == "cpu" and torch.get_num_threads() > 1:
        return torch.stack([row.log_softmax(-1) for row in logits.unbind(0)])
    return logits.log_softmax(-1)


def _to_host(*tensors: Tensor) -> list[list]:
    """Each (n_i,) tensor as a list of Python numbers (integers come back as floats on an accelerator): on a CPU
    one tolist() each, elsewhere one float64 cat and one transfer (exact for these indices and values)."""
    if tensors[0].device.type == "cpu":
        return [t.tolist() for t in tensors]
    flat = torch.cat(tensors).tolist()  # mixed dtypes promote to float64
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.shape[0]])
        start += t.shape[0]
    return out


def _resolve_device(state: State, generator: torch.Generator | None, device) -> torch.device:
    """Where the decoder's tensors live: `device`, else the state's, else the generator's, else CPU."""
    if device is not None:
        return torch.device(device)
    return _state_device(state) or (generator.device if generator is not None else torch.device("cpu"))


def _empty(options: DecodeOptions) -> list[Hypothesis]:
    return [Hypothesis() for _ in range(options.num)]


# --- greedy and ancestral sampling --------------------------------------------------------------------------

def _token_loop(step: StepFn, first_token: int, state: State, eos_id: int, options: DecodeOptions, rows: int,
                pick: Callable[[Tensor], Tensor], device: torch.device, context: Sequence[int],
                on_step: OnStep | None) -> list[Hypothesis]:
    """Advance `rows` independent sequences together, one step call per position; `pick` maps the
    constrained logits (N, V) to the next tokens (N,). As in HF's greedy search and sampling, the processors
    act on the logits; the log-probabilities reported are the log_softmax of the unprocessed logits."""
    tokens = torch.full((rows,), first_token, dtype=torch.long, device=device)
    state = expand_state(state, rows)
    constraints = _Constraints(options, eos_id, rows, device, context)
    out = torch.zeros((rows, options.max_len), dtype=torch.long, device=device)  # (N, T) generated tokens
    log_prob = torch.zeros(rows, dtype=torch.float64, device=device)
    length = torch.zeros(rows, dtype=torch.long, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    stopped = torch.zeros(rows, dtype=torch.bool, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    stops = _StopMatcher(options.stop, rows, device) if options.stop else None
    # With EOS forbidden and nothing that can block every token or stop a row, no row can stop early: skip the sync.
    can_stop = options.stop_at_eos or options.no_repeat_ngram > 0 or stops is not None
    for t in range(options.max_len):
        logits, state = step(tokens, state)  # (N, V)
        log_probs = _log_softmax(logits)
        scores = constraints(logits, t)
        active = ~done
        if options.no_repeat_ngram:
            # A row whose every token is blocked stops here, unfinished; give it dummy scores to pick from.
            blocked = torch.isneginf(scores).all(-1)  # (N,)
            scores = scores.masked_fill(blocked.unsqueeze(1), 0.0)
            active &= ~blocked
            done |= blocked
        tokens = pick(scores)  # (N,)
        is_eos = tokens == eos_id
        token_lp = log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1).to(torch.float64)
        log_prob += torch.where(active, token_lp, torch.zeros_like(token_lp))
        finished |= active & is_eos
        length += active & ~is_eos
        done |= is_eos
        out[:, t] = tokens
        constraints.record(tokens, t)
        if on_step is not None:
            on_step(tokens, active & ~is_eos)
        if stops is not None:
            hit = active & ~is_eos & stops.ends(tokens)  # the stop sequence's tokens were counted in `length`
            stops.record(tokens)
            stopped |= hit
            done |= hit
        if can_stop and bool(done.all()):  # the one host sync per step
            break
    out_l, length_l, finished_l, lp_l = out.tolist(), length.tolist(), finished.tolist(), log_prob.tolist()
    stopped_l = stopped.tolist()
    return [Hypothesis(tokens=out_l[i][:length_l[i]], log_prob=lp_l[i], score=lp_l[i], finished=finished_l[i],
                       stopped=stopped_l[i]) for i in range(rows)]


@torch.no_grad()
def greedy_decode(step: StepFn, first_token: int, state: State, eos_id: int, options: DecodeOptions,
                  generator: torch.Generator | None = None, *, device=None, context: Sequence[int] = (),
                  on_step: OnStep | None = None) -> list[Hypothesis]:
    """Take the token of the highest logit (after repetition penalty, n-gram blocking, EOS rules) at every step.

    step: tokens (N,) -> logits (N, V); state: batch 1 (or None). Returns one Hypothesis whose score is
    its log_prob. `generator` is unused (uniform signature). `context`, `on_step`: see `decode`.
    """
    if options.max_len == 0:
        return _empty(options)[:1]
    device = _resolve_device(state, generator, device)
    return _token_loop(step, first_token, state, eos_id, options, 1, lambda s: s.argmax(-1), device, context,
                       on_step)


@torch.no_grad()
def sample_decode(step: StepFn, first_token: int, state: State, eos_id: int, options: DecodeOptions,
                  generator: torch.Generator | None = None, *, device=None, context: Sequence[int] = (),
                  on_step: OnStep | None = None) -> list[Hypothesis]:
    """Draw `options.num` independent samples, all advancing in one step call (batch N = num) per position.

    Per step, on the logits as in HF: repetition penalty, n-gram blocking, EOS rules, then temperature, top-k
    and top-p, then one multinomial draw per row from the softmax of what is left. Returns num Hypotheses in
    draw order, each scored by its (unprocessed) log_prob. `context`, `on_step`: see `decode`.
    """
    if options.max_len == 0:
        return _empty(options)
    device = _resolve_device(state, generator, device)

    def pick(scores: Tensor) -> Tensor:
        probs = _warp(scores, options).softmax(-1)  # (N, V)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _token_loop(step, first_token, state, eos_id, options, options.num, pick, device, context, on_step)


# --- beam search and beam sample -----------------------------------------------------------------------------

def _final_length_bound(score: float, t: int, options: DecodeOptions) -> float:
    """Best normalised score a live beam of running score `score` (<= 0), t+1 tokens long, can still reach:
    later tokens only lower the sum, so the best is at the longest length when length_penalty > 0, else at
    the shortest (t+2). This is HF's early_stopping="never" bound, exact rather than heuristic."""
    length = options.max_len if options.length_penalty > 0 else t + 2
    return score / length ** options.length_penalty


def _search_is_over(best_live: float, worst_ended: float, t: int, options: DecodeOptions) -> bool:
    """Whether beam search stops after step t, once K hypotheses have ended (the worst scoring `worst_ended`);
    `best_live`: the running score of the best live beam (t+1 tokens). By options.early_stopping, as HF's:
      "true"   at once (HF early_stopping=True);
      "false"  when the best live beam, scored at its current length, cannot beat the worst ended one: HF's
               default heuristic (with length_penalty > 0 a longer continuation might still have);
      "never"  when no live beam can beat it at any length it could reach (an exact bound, HF's "never").
    """
    if options.early_stopping == "true":
        return True
    if options.early_stopping == "false":
        return best_live / (t + 1) ** options.length_penalty <= worst_ended
    return _final_length_bound(best_live, t, options) <= worst_ended


def _beam_loop(step: StepFn, first_token: int, state: State, eos_id: int, options: DecodeOptions,
               generator: torch.Generator | None, device: torch.device, sample: bool,
               context: Sequence[int]) -> list[Hypothesis]:
    k, max_len, penalty = options.beam, options.max_len, options.length_penalty
    tokens = torch.full((k,), first_token, dtype=torch.long, device=device)
    state = expand_state(state, k)
    constraints = _Constraints(options, eos_id, k, device, context)
    stops = _StopMatcher(options.stop, k, device) if options.stop else None
    # The K copies start identical; only beam 0 is live or the first step would fill the beam with duplicates.
    scores = torch.full((k,), NEG_INF, device=device)
    scores[0] = 0.0  # (K,) running processed score
    raw = [0.0] * k  # the model's own log-prob of each beam, summed on the host (float64, as torch's would be)
    parents, chosen = [], []  # per step, on the host: each live beam's parent beam and last token
    pool: list[tuple] = []  # (score, log_prob, t, parent, token, finished (EOS), stopped (a stop sequence))
    for t in range(max_len):
        logits, state = step(tokens, state)  # (K, V)
        log_probs = _log_softmax(logits)  # as HF's beam search, the processors act on log-probabilities
        vocab = log_probs.shape[1]
        step_scores = constraints(log_probs, t)
        if sample:
            step_scores = _warp(step_scores, options)
        total = (scores.unsqueeze(1) + step_scores).view(-1)  # (K*V,) running score of every continuation
        n_cand = min(2 * k, total.numel())  # 2K: even if K of them end in EOS, K live ones remain
        if sample:
            # Gumbel-top-k: the n_cand largest of score + Gumbel noise are n_cand draws without replacement
            # from softmax(total), in draw order (what torch.multinomial(replacement=False) returns).
            noise = torch.empty_like(total).exponential_(generator=generator).clamp_min_(1e-30).log_()
            cand = (total - noise).topk(n_cand).indices
            cand_scores = total.index_select(0, cand)  # (2K,)
        else:
            cand_scores, cand = total.topk(n_cand)  # best first
        parent, token = cand // vocab, cand % vocab
        # A candidate ends with EOS or with a stop sequence (which it keeps); the others can live on.
        ends = token == eos_id if stops is None else (token == eos_id) | stops.ends(token, parent)  # (2K,)
        # Live beams: the K best candidates that do not end, by running score (for beam sample, among the drawn).
        live_scores, live = cand_scores.masked_fill(ends, NEG_INF).topk(k)
        live_parent, live_token = parent.index_select(0, live), token.index_select(0, live)
        c_score, c_lp, c_index, live_host, live_host_scores, *c_ends = _to_host(
            cand_scores, log_probs.view(-1).index_select(0, cand), cand, live, live_scores,
            *([] if stops is None else [ends]))
        c_parent, c_token = zip(*(divmod(int(c), vocab) for c in c_index), strict=True)
        c_raw = [raw[p] + lp for p, lp in zip(c_parent, c_lp, strict=True)]  # (2K,) the model's own log-probs
        live_host = [int(i) for i in live_host]
        parents.append([c_parent[i] for i in live_host])
        chosen.append([c_token[i] for i in live_host])
        best_live = live_host_scores[0]
        c_ends = [tok == eos_id for tok in c_token] if stops is None else c_ends[0]
        m = min(k, len(c_index))  # ended hypotheses only come from the first K candidates, as in HF
        last = t == max_len - 1
        for r in range(m):
            eos = c_token[r] == eos_id
            if (c_ends[r] or last) and c_score[r] > NEG_INF:
                # length = tokens scored, EOS included: HF's (cur_len + 1 - prompt_len).
                entry = (c_score[r] / (t + 1) ** penalty, c_raw[r], t, c_parent[r], c_token[r], eos,
                         bool(c_ends[r]) and not eos)
                if len(pool) < k:
                    pool.append(entry)
                else:
                    worst = min(range(k), key=lambda i: pool[i][0])
                    if entry[0] > pool[worst][0]:
                        pool[worst] = entry
        if last or best_live == NEG_INF:
            break
        if len(pool) == k and _search_is_over(best_live, min(e[0] for e in pool), t, options):
            break
        scores, raw, tokens = live_scores, [c_raw[i] for i in live_host], live_token
        state = select_state(state, live_parent)  # the one reorder per step
        constraints.record(live_token, t, live_parent)
        if stops is not None:
            stops.record(live_token, live_parent)
    pool.sort(key=lambda e: e[0], reverse=True)
    return [Hypothesis(tokens=_backtrack(parents, chosen, t, p) + ([] if eos else [tok]), log_prob=lp,
                       score=score, finished=eos, stopped=stop)
            for score, lp, t, p, tok, eos, stop in pool[:options.num]]


def _backtrack(parents: list[list[int]], chosen: list[list[int]], t: int, beam: int) -> list[int]:
    """Tokens of live beam `beam` after step t-1, following the back-pointers."""
    out = []
    for s in range(t - 1, -1, -1):
        out.append(chosen[s][beam])
        beam = parents[s][beam]
    return out[::-1]


@torch.no_grad()
def beam_search(step: StepFn, first_token: int, state: State, eos_id: int, options: DecodeOptions,
                generator: torch.Generator | None = None, *, device=None,
                context: Sequence[int] = ()) -> list[Hypothesis]:
    """Beam search of width K = options.beam, as Hugging Face's `num_beams` (no sampling).

    The K beams advance in one step call (N = K) per position and are reordered with one select_state.
    Per step: the log_softmax of the logits, constrained (repetition penalty, n-gram blocking, EOS rules),
    plus the running beam scores give K*V continuations; of the 2K best, those ending in EOS and ranked in
    the first K become ended hypotheses, and the K best not ending in EOS are the next beams. At max_len the
    first K candidates all end (unfinished unless EOS). A candidate completing one of options.stop ends like
    one ending in EOS, keeping the stop tokens (`stopped`). Ended hypotheses are scored
    sum / length**length_penalty, length counting EOS; the K best are kept, and by default the search stops
    once no live beam can beat the worst of them (exact bound, HF's early_stopping="never"); "true" and
    "false" stop sooner, as HF's early_stopping=True and False (`_search_is_over`). Returns the `num` best,
    best first (fewer only when the constraints leave fewer sequences). log_prob is the model's own score of
    each returned text.
    `context`: see `decode`.
    """
    if options.max_len == 0:
        return _empty(options)
    return _beam_loop(step, first_token, state, eos_id, options, generator,
                      _resolve_device(state, generator, device), False, context)


@torch.no_grad()
def beam_sample(step: StepFn, first_token: int, state: State, eos_id: int, options: DecodeOptions,
                generator: torch.Generator | None = None, *, device=None,
                context: Sequence[int] = ()) -> list[Hypothesis]:
    """Beam search with sampling (HF `num_beams > 1, do_sample=True`), the course's beam search + nucleus.

    Exactly as beam_search (`context` too), except for how the 2K candidates are found each step: each beam's
    constrained log-probs go through temperature (divided, not renormalised), top-k and top-p (the nucleus of each
    beam's own distribution; the rest get -inf), the running beam scores are added, and 2K candidates are
    drawn without replacement from the softmax over the flattened K x V scores (so only in-nucleus
    continuations can be drawn). Ended hypotheses come from EOS candidates among the first K *drawn*; the
    next beams are the K best drawn non-EOS candidates by running score. Running scores, and hence `score`,
    are sums of the processed values (e.g. log-probs / temperature); `log_prob` stays the model's own.
    With a tiny temperature this becomes beam_search; with a tiny nucleus it becomes greedy decoding.
    """
    if options.max_len == 0:
        return _empty(options)
    return _beam_loop(step, first_token, state, eos_id, options, generator,
                      _resolve_device(state, generator, device), True, context)


def decode(step: StepFn, first_token: int, state: State, eos_id: int, options: DecodeOptions,
           generator: torch.Generator | None = None, *, device=None, context: Sequence[int] = (),
           on_step: OnStep | None = None) -> list[Hypothesis]:
    """Validate `options` and decode with the method they ask for.

    step(tokens (N,) long, state) -> (logits (N, V), state), state tensors with the batch on dim 1.
    first_token: the last prompt token (EOS when the prompt is empty); state: after the rest of the prompt,
    batch 1, or None for zeros. beam > 1: beam_sample if temperature/top-k/nucleus is set, else beam_search;
    beam = 1: greedy_decode if greedy, else sample_decode. All randomness comes from `generator`.
    Tensors are made on `device`, else the state's device, else the generator's, else CPU.
    A sequence whose generated tokens end with one of options.stop ends there (`stopped`, the stop tokens kept);
    the prompt never counts towards a stop sequence.
    context: the prompt's tokens (first_token included; not a start symbol such as EOS). With
    options.penalise_prompt the repetition penalty and n-gram blocking count them as if generated, as HF counts
    its input_ids; otherwise (default) only generated tokens count.
    on_step: greedy and sampling call it after each position with the tokens chosen (N,) and which rows
    emitted them (N,) bool, for streaming; it costs one host sync per position. Beam search never calls it:
    its hypotheses are only final when it returns.
    """
    options.validate()
    if options.beam > 1:
        method = beam_sample if options.samples else beam_search
        return method(step, first_token, state, eos_id, options, generator, device=device, context=context)
    method = greedy_decode if options.greedy else sample_decode
    return method(step, first_token, state, eos_id, options, generator, device=device, context=context,
                  on_step=on_step)
