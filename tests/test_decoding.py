"""Decoding: exactness against brute-force enumeration, sampling distributions, constraints and validation."""

import itertools

import pytest
import torch

from rnnkit.errors import UsageError
from rnnkit.generation.decoding import (
    DecodeOptions,
    beam_sample,
    beam_search,
    block_repeated_ngrams,
    decode,
    expand_state,
    greedy_decode,
    sample_decode,
    select_state,
    top_k_filter,
    top_p_filter,
)

EOS = 0


class TableModel:
    """A tiny fixed random "model": h' = trans[prev, h]; log-probs = table[prev, h', step % 2].

    The state is an LSTM-like tuple (h, c) of (1, N, 1) float tensors, so a wrong beam reorder changes
    the log-probs and breaks the exactness tests.
    """

    def __init__(self, vocab=4, hidden=3, seed=0, eos_bias=0.0, device="cpu"):
        g = torch.Generator().manual_seed(seed)
        self.vocab = vocab
        self.trans = torch.randint(0, hidden, (vocab, hidden), generator=g).to(device)
        logits = torch.randn(vocab, hidden, 2, vocab, generator=g, dtype=torch.float64) * 1.5
        logits[..., EOS] += eos_bias
        self.table = logits.log_softmax(-1).to(device)
        self.device = device
        self.calls = 0

    def step(self, tokens, state):
        self.calls += 1
        n = tokens.shape[0]
        if state is None:
            h = torch.zeros(n, dtype=torch.long, device=tokens.device)
            c = torch.zeros(n, dtype=torch.long, device=tokens.device)
        else:
            h, c = state[0][0, :, 0].long(), state[1][0, :, 0].long()
        h = self.trans[tokens, h]
        log_probs = self.table[tokens, h, c % 2]  # (N, V)
        return log_probs, (h.double().view(1, n, 1), (c + 1).double().view(1, n, 1))

    def rows(self, first, tokens):
        """The model's log-prob rows (V,) before each of tokens and after the last one."""
        state, inp, out = None, torch.tensor([first], device=self.device), []
        for tok in [*tokens, None]:
            log_probs, state = self.step(inp, state)
            out.append(log_probs[0].cpu())
            if tok is not None:
                inp = torch.tensor([tok], device=self.device)
        return out

    def score(self, first, tokens, finished):
        """The model's own log-prob of tokens (+ EOS when finished)."""
        rows = self.rows(first, tokens)
        total = sum(float(rows[i][tok]) for i, tok in enumerate(tokens))
        return total + (float(rows[-1][EOS]) if finished else 0.0)


class FixedRow:
    """A "model" that always predicts the same distribution `probs` (V,)."""

    def __init__(self, probs):
        self.log_probs = torch.tensor(probs, dtype=torch.float64).log()
        self.calls = 0

    def step(self, tokens, state):
        self.calls += 1
        return self.log_probs.expand(tokens.shape[0], -1).clone(), state


def gen(seed):
    return torch.Generator().manual_seed(seed)


def has_repeated_ngram(tokens, n):
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


def brute_force(model, first, max_len, length_penalty, min_len=0, ngram=0):
    """Every sequence up to max_len, scored as beam search defines it: (score, tokens, finished)."""
    out = []
    for length in range(max_len + 1):
        for seq in itertools.product(range(1, model.vocab), repeat=length):
            seq = list(seq)
            if ngram and has_repeated_ngram(seq, ngram):
                continue
            if length < max_len and length >= min_len:
                lp = model.score(first, seq, True)
                out.append((lp / (length + 1) ** length_penalty, seq, True, lp))
            if length == max_len:
                lp = model.score(first, seq, False)
                out.append((lp / length ** length_penalty, seq, False, lp))
    return sorted(out, key=lambda e: e[0], reverse=True)


def chi2_pvalue(counts, probs):
    """Pearson chi-square goodness-of-fit p-value (regularised upper incomplete gamma; no scipy needed)."""
    counts = torch.tensor(counts, dtype=torch.float64)
    expected = torch.tensor(probs, dtype=torch.float64) * counts.sum()
    keep = expected > 0
    if bool((counts[~keep] > 0).any()):
        return 0.0
    stat = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    df = torch.tensor(float(keep.sum() - 1), dtype=torch.float64)
    return float(torch.special.gammaincc(df / 2, stat / 2))


def emitted_counts(hyps, vocab):
    """Counts of the single token each hypothesis emitted (EOS when it finished at once)."""
    counts = [0] * vocab
    for h in hyps:
        counts[h.tokens[0] if h.tokens else EOS] += 1
    return counts


# --- state helpers and processors --------------------------------------------------------------------------

def test_state_helpers_handle_none_tensor_and_tuple():
    h = torch.arange(6.0).view(1, 2, 3)
    assert expand_state(None, 3) is None and select_state(None, torch.tensor([0])) is None
    big = expand_state(h, 2)
    assert big.shape == (1, 4, 3)
    torch.testing.assert_close(big[0, :, 0], torch.tensor([0.0, 0.0, 3.0, 3.0]))
    pair = expand_state((h, h + 1), 2)
    picked = select_state(pair, torch.tensor([3, 0]))
    assert isinstance(picked, tuple) and picked[1].shape == (1, 2, 3)
    torch.testing.assert_close(picked[1][0, :, 0], torch.tensor([4.0, 1.0]))


def test_top_p_filter_keeps_the_smallest_set_and_always_the_top_token():
    log_probs = torch.tensor([[0.05, 0.4, 0.25, 0.15, 0.1, 0.05]]).log()
    kept = torch.isfinite(top_p_filter(log_probs, 0.75))[0].tolist()
    assert kept == [False, True, True, True, False, False]
    assert torch.isfinite(top_p_filter(log_probs, 0.3))[0].tolist() == [False, True] + [False] * 4
    assert torch.isfinite(top_p_filter(log_probs, 1e-9)).sum() == 1
    assert torch.equal(top_p_filter(log_probs, 1.0), log_probs)


def test_top_k_filter_keeps_exactly_k():
    log_probs = torch.randn(5, 9, generator=gen(0)).log_softmax(-1)
    out = top_k_filter(log_probs, 3)
    assert (torch.isfinite(out).sum(-1) == 3).all()
    top3 = log_probs.topk(3).indices
    assert torch.isfinite(out.gather(1, top3)).all()


def test_block_repeated_ngrams():
    log_probs = torch.zeros(3, 5)
    history = torch.tensor([[1, 2, 3, 1, 2], [1, 2, 4, 4, 1], [3, 3, 3, 3, 3]])
    banned = torch.isneginf(block_repeated_ngrams(log_probs, history, 3))
    assert banned[0].nonzero().flatten().tolist() == [3]  # "1 2 3" seen, ends in "1 2"
    assert banned[1].sum() == 0  # "4 1" never followed by anything
    assert banned[2].nonzero().flatten().tolist() == [3]
    assert torch.isneginf(block_repeated_ngrams(log_probs, history[:1], 1))[0].tolist() == [
        False, True, True, True, False]
    assert torch.equal(block_repeated_ngrams(log_probs, history[:, :2], 3), log_probs)


# --- beam search exactness ---------------------------------------------------------------------------------

@pytest.mark.parametrize("length_penalty", [1.0, 0.0, 2.0, -0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_wide_beam_finds_the_exact_best_sequences(seed, length_penalty):
    model, max_len = TableModel(vocab=4, seed=seed, eos_bias=0.5), 4
    options = DecodeOptions(beam=4 ** max_len, num=6, max_len=max_len, length_penalty=length_penalty)
    hyps = beam_search(model.step, 2, None, EOS, options)
    expected = brute_force(model, 2, max_len, length_penalty)[:6]
    assert [(h.tokens, h.finished) for h in hyps] == [(e[1], e[2]) for e in expected]
    for h, e in zip(hyps, expected, strict=True):
        assert h.score == pytest.approx(e[0], abs=1e-9)
        assert h.log_prob == pytest.approx(e[3], abs=1e-9)


@pytest.mark.parametrize(("min_len", "ngram"), [(2, 0), (0, 2), (1, 1)])
def test_wide_beam_is_exact_under_constraints(min_len, ngram):
    model, max_len = TableModel(vocab=4, seed=3, eos_bias=1.0), 4
    options = DecodeOptions(beam=4 ** max_len, num=4, max_len=max_len, min_len=min_len, no_repeat_ngram=ngram)
    hyps = beam_search(model.step, 1, None, EOS, options)
    expected = brute_force(model, 1, max_len, 1.0, min_len=min_len, ngram=ngram)[:4]
    assert [(h.tokens, h.finished) for h in hyps] == [(e[1], e[2]) for e in expected]


@pytest.mark.parametrize("seed", range(6))
def test_greedy_equals_beam_of_one(seed):
    model = TableModel(vocab=5, seed=seed, eos_bias=-1.0)
    greedy = greedy_decode(model.step, 1, None, EOS, DecodeOptions(greedy=True, max_len=12))
    beam = beam_search(model.step, 1, None, EOS, DecodeOptions(beam=1, max_len=12, length_penalty=0.0))
    assert [(h.tokens, h.finished) for h in greedy] == [(h.tokens, h.finished) for h in beam]
    assert greedy[0].log_prob == pytest.approx(beam[0].log_prob)


@pytest.mark.parametrize("kwargs", [
    dict(greedy=True), dict(), dict(temperature=0.7, top_k=3, num=4), dict(top_p=0.8, num=4),
    dict(beam=3, num=3), dict(beam=3, num=2, top_p=0.9), dict(beam=4, temperature=1.5, num=4),
    dict(num=3, repetition_penalty=1.5, no_repeat_ngram=2), dict(beam=3, repetition_penalty=2.0),
])
def test_log_prob_is_the_models_own_score(kwargs):
    model = TableModel(vocab=5, seed=4)
    options = DecodeOptions(max_len=15, **kwargs)
    hyps = decode(model.step, 3, None, EOS, options, gen(7))
    assert len(hyps) == options.num
    for h in hyps:
        assert h.log_prob == pytest.approx(model.score(3, h.tokens, h.finished), abs=1e-9)
        assert EOS not in h.tokens and len(h.tokens) <= options.max_len
        assert h.finished or len(h.tokens) == options.max_len or options.no_repeat_ngram
    if options.beam > 1:
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_batched_step_calls():
    model = TableModel(vocab=5, seed=2)
    sample_decode(model.step, 1, None, EOS, DecodeOptions(num=7, max_len=9, stop_at_eos=False), gen(0))
    assert model.calls == 9
    model.calls = 0
    beam_search(model.step, 1, None, EOS, DecodeOptions(beam=5, max_len=9, stop_at_eos=False))
    assert model.calls == 9


# --- sampling distributions ----------------------------------------------------------------------------------

PROBS = [0.05, 0.4, 0.25, 0.15, 0.1, 0.05]  # EOS first
DRAWS = 20000


def test_nucleus_sampling_matches_the_renormalised_nucleus():
    model = FixedRow(PROBS)
    hyps = sample_decode(model.step, 1, None, EOS, DecodeOptions(top_p=0.75, num=DRAWS, max_len=1), gen(0))
    assert model.calls == 1
    counts = emitted_counts(hyps, len(PROBS))
    assert counts[0] == counts[4] == counts[5] == 0  # never outside the nucleus {1, 2, 3}
    nucleus = [0, 0.5, 0.3125, 0.1875, 0, 0]
    assert chi2_pvalue(counts, nucleus) > 1e-4
    # The same test rejects the un-renormalised distribution and a nucleus one token too wide.
    assert chi2_pvalue(counts, PROBS) < 1e-12
    wider = [0, 0.4 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0.1 / 0.9, 0]
    assert chi2_pvalue(counts, wider) < 1e-12
    slightly_off = [0, 0.48, 0.32, 0.2, 0, 0]
    assert chi2_pvalue(counts, slightly_off) < 1e-4


def test_plain_sampling_and_temperature_match_their_distributions():
    model = FixedRow(PROBS)
    plain = emitted_counts(sample_decode(model.step, 1, None, EOS, DecodeOptions(num=DRAWS, max_len=1), gen(1)), 6)
    assert chi2_pvalue(plain, PROBS) > 1e-4
    hot = emitted_counts(sample_decode(model.step, 1, None, EOS,
                                       DecodeOptions(num=DRAWS, max_len=1, temperature=2.0), gen(2)), 6)
    tempered = (torch.tensor(PROBS).log() / 2.0).softmax(-1).tolist()
    assert chi2_pvalue(hot, tempered) > 1e-4
    assert chi2_pvalue(hot, PROBS) < 1e-12


def test_top_k_never_leaves_the_top_k():
    model = FixedRow(PROBS)
    counts = emitted_counts(sample_decode(model.step, 1, None, EOS,
                                          DecodeOptions(top_k=2, num=DRAWS, max_len=1), gen(3)), 6)
    assert chi2_pvalue(counts, [0, 0.4 / 0.65, 0.25 / 0.65, 0, 0, 0]) > 1e-4
    table = TableModel(vocab=6, seed=5)
    for h in sample_decode(table.step, 1, None, EOS, DecodeOptions(top_k=2, num=50, max_len=10), gen(4)):
        rows = table.rows(1, h.tokens)
        emitted = h.tokens + ([EOS] if h.finished else [])
        for row, tok in zip(rows, emitted, strict=False):
            assert tok in row.topk(2).indices.tolist()


def test_low_temperature_approaches_greedy():
    for seed in range(4):
        model = TableModel(vocab=6, seed=seed)
        greedy = greedy_decode(model.step, 2, None, EOS, DecodeOptions(greedy=True, max_len=20))[0]
        cold = sample_decode(model.step, 2, None, EOS, DecodeOptions(temperature=1e-3, num=5, max_len=20), gen(seed))
        assert all(h.tokens == greedy.tokens and h.finished == greedy.finished for h in cold)


# --- determinism and beam sample -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [dict(num=8), dict(num=8, top_p=0.9), dict(beam=4, num=4, top_p=0.95)])
def test_same_seed_same_output_different_seed_different_output(kwargs):
    model = TableModel(vocab=6, seed=6, eos_bias=-2.0)
    options = DecodeOptions(max_len=25, **kwargs)

    def run(seed):
        return [(h.tokens, h.finished) for h in decode(model.step, 1, None, EOS, options, gen(seed))]

    assert run(11) == run(11)
    assert run(11) != run(12)


@pytest.mark.parametrize("seed", range(4))
def test_beam_sample_with_tiny_temperature_is_beam_search(seed):
    model = TableModel(vocab=5, seed=seed)
    plain = beam_search(model.step, 1, None, EOS, DecodeOptions(beam=4, num=3, max_len=10))
    cold = beam_sample(model.step, 1, None, EOS, DecodeOptions(beam=4, num=3, max_len=10, temperature=1e-4),
                       gen(seed))
    # Sets, not lists: this finite-state model gives some different texts exactly the same score.
    assert {(tuple(h.tokens), h.finished) for h in cold} == {(tuple(h.tokens), h.finished) for h in plain}
    for c, p in zip(cold, plain, strict=True):
        assert c.log_prob == pytest.approx(p.log_prob)
        assert c.score == pytest.approx(p.score / 1e-4, rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_beam_sample_with_tiny_nucleus_is_greedy(seed):
    model = TableModel(vocab=5, seed=seed)
    greedy = greedy_decode(model.step, 1, None, EOS, DecodeOptions(greedy=True, max_len=10))
    tight = beam_sample(model.step, 1, None, EOS, DecodeOptions(beam=4, max_len=10, top_p=1e-6), gen(seed))
    assert [(h.tokens, h.finished) for h in tight] == [(h.tokens, h.finished) for h in greedy]


def test_beam_sample_scores_with_nucleus_only_are_normalised_log_probs():
    model = TableModel(vocab=6, seed=8)
    hyps = beam_sample(model.step, 1, None, EOS, DecodeOptions(beam=5, num=5, max_len=12, top_p=0.9,
                                                                length_penalty=0.7), gen(0))
    assert len(hyps) == 5 and len({tuple(h.tokens) for h in hyps}) == 5
    for h in hyps:
        length = len(h.tokens) + h.finished
        assert h.score == pytest.approx(h.log_prob / length ** 0.7)


# --- constraints ----------------------------------------------------------------------------------------------

ALL_MODES = [dict(greedy=True), dict(num=6), dict(num=6, top_p=0.9), dict(beam=4, num=4),
             dict(beam=4, num=4, top_k=3)]


@pytest.mark.parametrize("kwargs", ALL_MODES)
def test_min_len_holds_back_eos(kwargs):
    model = TableModel(vocab=5, seed=9, eos_bias=3.0)
    free = decode(model.step, 1, None, EOS, DecodeOptions(max_len=10, **kwargs), gen(0))
    assert any(len(h.tokens) < 3 for h in free)  # the model likes to stop early, so the test can fail
    held = decode(model.step, 1, None, EOS, DecodeOptions(max_len=10, min_len=3, **kwargs), gen(0))
    assert all(len(h.tokens) >= 3 for h in held)


@pytest.mark.parametrize("kwargs", ALL_MODES)
def test_no_repeat_ngram(kwargs):
    model = TableModel(vocab=6, seed=10)
    options = dict(max_len=20, stop_at_eos=False, **kwargs)
    free = decode(model.step, 1, None, EOS, DecodeOptions(**options), gen(0))
    assert any(has_repeated_ngram(h.tokens, 2) for h in free)
    blocked = decode(model.step, 1, None, EOS, DecodeOptions(no_repeat_ngram=2, **options), gen(0))
    assert blocked and not any(has_repeated_ngram(h.tokens, 2) for h in blocked)


@pytest.mark.parametrize("kwargs", ALL_MODES)
def test_fixed_length_mode_never_emits_eos(kwargs):
    model = TableModel(vocab=4, seed=11, eos_bias=4.0)
    hyps = decode(model.step, 1, None, EOS, DecodeOptions(max_len=13, stop_at_eos=False, **kwargs), gen(0))
    assert all(len(h.tokens) == 13 and not h.finished and EOS not in h.tokens for h in hyps)


def test_repetition_penalty_discourages_repeats():
    model = TableModel(vocab=6, seed=12, eos_bias=-3.0)
    base = dict(num=200, max_len=12, stop_at_eos=False)
    plain = decode(model.step, 1, None, EOS, DecodeOptions(**base), gen(0))
    penalised = decode(model.step, 1, None, EOS, DecodeOptions(repetition_penalty=3.0, **base), gen(0))

    def distinct(hyps):
        return sum(len(set(h.tokens)) for h in hyps)

    assert distinct(penalised) > distinct(plain)


def test_zero_max_len_returns_empty_hypotheses():
    model = TableModel()
    hyps = decode(model.step, 1, None, EOS, DecodeOptions(max_len=0, num=3), gen(0))
    assert [(h.tokens, h.finished) for h in hyps] == [([], False)] * 3 and model.calls == 0


# --- validation -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "option"), [
    (dict(greedy=True, beam=3), "--beam"),
    (dict(greedy=True, temperature=0.5), "--temperature"),
    (dict(greedy=True, top_k=5), "--top-k"),
    (dict(greedy=True, top_p=0.9), "--nucleus"),
    (dict(greedy=True, num=2), "--num"),
    (dict(top_p=0.0), "--nucleus"),
    (dict(top_p=1.5), "--nucleus"),
    (dict(temperature=0.0), "--temperature"),
    (dict(temperature=-1.0), "--temperature"),
    (dict(temperature=float("nan")), "--temperature"),
    (dict(top_k=0), "--top-k"),
    (dict(beam=0), "--beam"),
    (dict(num=0), "--num"),
    (dict(beam=3, num=4), "--num"),
    (dict(min_len=10, max_len=5), "--min-len"),
    (dict(min_len=-1), "--min-len"),
    (dict(max_len=-1), "--max-len"),
    (dict(no_repeat_ngram=-1), "--no-repeat-ngram"),
    (dict(length_penalty=2.0), "--length-penalty"),
    (dict(beam=2, length_penalty=float("inf")), "--length-penalty"),
    (dict(repetition_penalty=0.0), "--repetition-penalty"),
])
def test_validate_rejects_impossible_options(kwargs, option):
    with pytest.raises(UsageError, match=option) as err:
        DecodeOptions(**kwargs).validate()
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError):
        decode(TableModel().step, 1, None, EOS, DecodeOptions(**kwargs))


@pytest.mark.parametrize("kwargs", [
    dict(), dict(greedy=True), dict(greedy=True, repetition_penalty=1.2, no_repeat_ngram=3), dict(beam=5, num=5),
    dict(beam=5, top_p=0.9, length_penalty=0.5), dict(num=10, temperature=0.8, top_k=20, top_p=0.95),
    dict(max_len=0), dict(min_len=5, max_len=5), dict(stop_at_eos=False),
])
def test_validate_accepts_sensible_options(kwargs):
    DecodeOptions(**kwargs).validate()


def test_validate_collects_every_problem_on_one_line():
    with pytest.raises(UsageError) as err:
        DecodeOptions(top_k=0, beam=0, temperature=0.0).validate()
    message = str(err.value)
    assert all(opt in message for opt in ("--top-k", "--beam", "--temperature")) and "\n" not in message


# --- device ------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kwargs", ALL_MODES)
def test_decoding_on_cuda_matches_the_model(kwargs):
    model = TableModel(vocab=5, seed=13, device="cuda")
    options = DecodeOptions(max_len=12, no_repeat_ngram=3, repetition_penalty=1.3, **kwargs)
    hyps = decode(model.step, 1, None, EOS, options, torch.Generator(device="cuda").manual_seed(0))
    for h in hyps:
        assert h.log_prob == pytest.approx(model.score(1, h.tokens, h.finished), abs=1e-9)


# --- stop sequences (HF's stop_strings, on token ids) -----------------------------------------------------------

def first_stop_end(tokens, stops):
    """Length of the shortest prefix of tokens that ends with a stop sequence, None when there is none."""
    for end in range(1, len(tokens) + 1):
        if any(end >= len(s) and tuple(tokens[end - len(s):end]) == s for s in stops):
            return end
    return None


def brute_force_stops(model, first, max_len, stops, stop_at_eos=True):
    """Every sequence beam search can end with under stop sequences: (score, tokens, finished, stopped, lp)."""
    out = []
    for length in range(max_len + 1):
        for seq in itertools.product(range(1, model.vocab), repeat=length):
            seq = list(seq)
            end = first_stop_end(seq, stops)
            if end is not None and end < length:
                continue  # it would have stopped earlier
            if end == length and length:
                lp = model.score(first, seq, False)
                out.append((lp / length, seq, False, True, lp))
                continue
            if length < max_len and stop_at_eos:
                lp = model.score(first, seq, True)
                out.append((lp / (length + 1), seq, True, False, lp))
            if length == max_len:
                lp = model.score(first, seq, False)
                out.append((lp / length, seq, False, False, lp))
    return sorted(out, key=lambda e: e[0], reverse=True)


@pytest.mark.parametrize("stop_at_eos", [True, False])
@pytest.mark.parametrize("stops", [((2, 3),), ((3,), (1, 1, 2))])
def test_wide_beam_with_stop_sequences_is_exact(stops, stop_at_eos):
    model, max_len = TableModel(vocab=4, seed=5, eos_bias=-0.5), 4
    options = DecodeOptions(beam=4 ** max_len, num=6, max_len=max_len, stop=stops, stop_at_eos=stop_at_eos)
    hyps = beam_search(model.step, 2, None, EOS, options)
    expected = brute_force_stops(model, 2, max_len, stops, stop_at_eos)[:6]
    assert any(e[3] for e in expected)  # stop sequences matter among the best, so the test can fail
    assert [(h.tokens, h.finished, h.stopped) for h in hyps] == [(e[1], e[2], e[3]) for e in expected]
    for h, e in zip(hyps, expected, strict=True):
        assert h.score == pytest.approx(e[0], abs=1e-9) and h.log_prob == pytest.approx(e[4], abs=1e-9)


@pytest.mark.parametrize("kwargs", [dict(greedy=True), dict(num=40), dict(num=40, top_p=0.8)])
@pytest.mark.parametrize("stop_at_eos", [True, False])
def test_stopping_is_the_free_sample_cut_at_its_first_stop_sequence(kwargs, stop_at_eos):
    model, stops = TableModel(vocab=5, seed=6, eos_bias=-1.0), ((2, 3), (4, 4))
    options = dict(max_len=15, stop_at_eos=stop_at_eos, **kwargs)
    free = decode(model.step, 1, None, EOS, DecodeOptions(**options), gen(3))
    stopped = decode(model.step, 1, None, EOS, DecodeOptions(stop=stops, **options), gen(3))
    assert any(h.stopped for h in stopped)
    for f, s in zip(free, stopped, strict=True):  # rows that stopped keep drawing: the same random stream
        end = first_stop_end(f.tokens, stops)
        assert s.tokens == (f.tokens if end is None else f.tokens[:end])
        assert s.stopped == (end is not None) and s.finished == (end is None and f.finished)
        assert s.log_prob == pytest.approx(model.score(1, s.tokens, s.finished), abs=1e-9)


def test_the_prompt_never_completes_a_stop_sequence():
    model = FixedRow([0.0, 0.1, 0.9])  # token 2 always most likely
    hyps = greedy_decode(model.step, 2, None, EOS, DecodeOptions(greedy=True, max_len=5, stop=((2, 2),)))
    assert hyps[0].tokens == [2, 2] and hyps[0].stopped  # the first input (a prompt token) does not count


def test_an_empty_stop_sequence_is_rejected():
    with pytest.raises(UsageError, match="--stop must not be empty"):
        DecodeOptions(stop=((),)).validate()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_beam_search_is_the_same_on_one_thread_and_two(dtype):
    """With several CPU threads the log-softmax of a few rows runs row by row (no second thread to wake); the
    numbers, and so the hypotheses, are exactly those of one thread."""
    from rnnkit.generation.decoding import _log_softmax

    logits = (torch.randn(5, 37, generator=torch.Generator().manual_seed(3)) * 20).to(dtype)
    model = TableModel(vocab=7, hidden=3, seed=4)
    options = DecodeOptions(beam=5, max_len=9, num=5)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            assert torch.equal(_log_softmax(logits), logits.log_softmax(-1))
            results.append([vars(h) for h in beam_search(model.step, 1, None, EOS, options)])
    finally:
        torch.set_num_threads(threads)
    assert results[0] == results[1]
