"""Decoding semantics of Hugging Face's generate(): the repetition penalty on logits (Keskar et al.), beam search's
early_stopping never/true/false, the prompt counted by the penalties (--penalise-prompt). The pure decoders are
checked against HF's documented rules re-implemented here one token at a time, and against `transformers` itself
when it is installed (it is not a dependency: those tests skip without it)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from test_decoding import EOS, TableModel, gen

from rnnkit.errors import UsageError
from rnnkit.generation.decoding import DecodeOptions, apply_repetition_penalty, beam_search, decode

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


class LoopModel:
    """A confident bigram "model" whose greedy output loops 2 3 4 2 3 4 ...: after token x, cycle[x] has logit
    4.0 and token 5 logit 3.5 (token 5 is followed by 2). Dividing a seen token's logit 4.0 by 1.3 drops it
    below 3.5; multiplying its log-probability (about -0.5) by 1.3 leaves it the most likely."""

    vocab = 7
    cycle = {1: 2, 2: 3, 3: 4, 4: 2, 5: 2, 6: 2}

    def logits(self, token: int) -> torch.Tensor:
        row = torch.zeros(self.vocab, dtype=torch.float64)
        row[EOS] = -5.0
        row[self.cycle[token]] = 4.0
        row[5] = max(float(row[5]), 3.5)
        return row

    def step(self, tokens, state):
        return torch.stack([self.logits(int(t)) for t in tokens]), state

    def log_prob_step(self, tokens, state):
        """The same model giving log-probabilities: what rnnkit penalised before it followed HF."""
        logits, state = self.step(tokens, state)
        return logits.log_softmax(-1), state


def hf_greedy(model, first: int, max_len: int, penalty: float, prompt=()) -> list[int]:
    """HF's greedy search with RepetitionPenaltyLogitsProcessor, one token at a time: every token of input_ids
    (the prompt, when given, and what was generated) has its logit divided by the penalty when positive,
    multiplied by it when negative; then argmax."""
    out, token = [], first
    for _ in range(max_len):
        logits = model.logits(token).tolist()
        for seen in set(prompt) | set(out):
            logits[seen] = logits[seen] / penalty if logits[seen] > 0 else logits[seen] * penalty
        token = max(range(len(logits)), key=logits.__getitem__)
        if token == EOS:
            break
        out.append(token)
    return out


def test_the_repetition_penalty_divides_positive_logits_and_multiplies_negative_ones():
    scores = torch.tensor([[2.0, -2.0, 0.0, 3.0]])
    seen = torch.tensor([[True, True, True, False]])
    assert apply_repetition_penalty(scores, seen, 2.0).tolist() == [[1.0, -4.0, 0.0, 3.0]]
    assert apply_repetition_penalty(scores, seen, 0.5).tolist() == [[4.0, -1.0, 0.0, 3.0]]


def test_a_repetition_penalty_of_1_3_breaks_a_greedy_loop_as_hf_does():
    model, options = LoopModel(), dict(greedy=True, max_len=12)
    plain = decode(model.step, 1, None, EOS, DecodeOptions(**options))[0].tokens
    assert plain == [2, 3, 4] * 4  # the loop
    penalised = decode(model.step, 1, None, EOS, DecodeOptions(repetition_penalty=1.3, **options))[0].tokens
    assert penalised == hf_greedy(model, 1, 12, 1.3) and penalised[:4] == [2, 3, 4, 5]
    # The old rule (the penalty on log-probabilities) left the loop alone: the "barely acts".
    on_log_probs = decode(model.log_prob_step, 1, None, EOS, DecodeOptions(repetition_penalty=1.3, **options))
    assert on_log_probs[0].tokens == plain


def test_penalise_prompt_counts_the_prompts_tokens():
    model, prompt = LoopModel(), [3, 4, 2]
    options = dict(greedy=True, max_len=12, repetition_penalty=1.3)
    generated_only = decode(model.step, 2, None, EOS, DecodeOptions(**options), context=prompt)[0].tokens
    counted = decode(model.step, 2, None, EOS, DecodeOptions(penalise_prompt=True, **options),
                     context=prompt)[0].tokens
    assert generated_only == hf_greedy(model, 2, 12, 1.3)
    assert counted == hf_greedy(model, 2, 12, 1.3, prompt) and counted[0] == 5  # 3 was in the prompt
    assert counted != generated_only


def test_penalise_prompt_blocks_the_prompts_ngrams():
    model, prompt = LoopModel(), [2, 3, 4, 2]  # the next greedy pair (2, 3) is one of the prompt's bigrams
    options = dict(greedy=True, max_len=6, no_repeat_ngram=2)
    assert decode(model.step, 2, None, EOS, DecodeOptions(**options), context=prompt)[0].tokens[:1] == [3]
    counted = decode(model.step, 2, None, EOS, DecodeOptions(penalise_prompt=True, **options), context=prompt)
    assert counted[0].tokens[:1] == [5]


# --- early stopping ------------------------------------------------------------------------------------------

def hf_beam_search(model, first: int, k: int, max_len: int, length_penalty: float, early_stopping):
    """HF's _beam_search (transformers 4.50+), unbatched: per step the 2K best continuations of the K running
    beams; those among the first K that end (EOS, or max_len) join the K best finished, scored
    sum / generated_length ** length_penalty; the K best not ending run on. It stops when K are finished and
    early_stopping is True, or when no running beam's best possible score beats the worst finished one, that
    score taken at the current length (False; "never" with length_penalty <= 0) or at max_len ("never").
    Returns [(score, tokens, ended with EOS)] best first."""
    running = [(0.0, [], None)]  # (sum of log-probs, tokens, state)
    finished = []
    for t in range(max_len):
        candidates = []
        for total, tokens, state in running:
            log_probs, new_state = model.step(torch.tensor([tokens[-1] if tokens else first]), state)
            candidates += [(total + float(lp), tokens + [v], new_state) for v, lp in enumerate(log_probs[0])]
        candidates.sort(key=lambda c: c[0], reverse=True)
        top = candidates[:2 * k]
        for total, tokens, _ in top[:k]:
            if tokens[-1] == EOS or t == max_len - 1:
                eos = tokens[-1] == EOS
                finished.append((total / (t + 1) ** length_penalty, tokens[:-1] if eos else tokens, eos))
        finished = sorted(finished, key=lambda f: f[0], reverse=True)[:k]
        running = [c for c in top if c[1][-1] != EOS][:k]
        if t == max_len - 1 or len(finished) < k:
            continue
        if early_stopping is True:
            break
        length = max_len if early_stopping == "never" and length_penalty > 0 else t + 1
        if running[0][0] / length ** length_penalty <= finished[-1][0]:
            break
    return finished


HF_MODES = {"never": "never", "true": True, "false": False}


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("early_stopping", ["never", "true", "false"])
@pytest.mark.parametrize("seed", range(4))
def test_beam_search_stops_as_hf_for_each_early_stopping(seed, early_stopping, length_penalty):
    model = TableModel(vocab=5, seed=seed, eos_bias=1.5)
    options = DecodeOptions(beam=3, num=3, max_len=8, length_penalty=length_penalty, early_stopping=early_stopping)
    hyps = beam_search(model.step, 1, None, EOS, options)
    expected = hf_beam_search(model, 1, 3, 8, length_penalty, HF_MODES[early_stopping])
    assert [(h.tokens, h.finished) for h in hyps] == [(tokens, eos) for _, tokens, eos in expected]
    assert [h.score for h in hyps] == pytest.approx([score for score, _, _ in expected], abs=1e-9)


def test_the_early_stopping_modes_differ():
    """On the models of the test above, true and false stop sooner than never and return other hypotheses,
    never better ones: the search they stop is the start of never's, whose finished list only improves."""
    results = {}
    for mode in ("never", "true", "false"):
        options = DecodeOptions(beam=3, num=3, max_len=8, length_penalty=2.0, early_stopping=mode)
        results[mode] = [beam_search(TableModel(vocab=5, seed=seed, eos_bias=1.5).step, 1, None, EOS, options)
                         for seed in range(4)]
    for mode in ("true", "false"):
        pairs = list(zip(results[mode], results["never"], strict=True))
        assert any([h.tokens for h in a] != [h.tokens for h in b] for a, b in pairs)
        assert all(a[0].score <= b[0].score + 1e-12 for a, b in pairs)


def test_early_stopping_is_checked():
    with pytest.raises(UsageError, match="--early-stopping must be one of never, true, false"):
        DecodeOptions(beam=2, early_stopping="sometimes").validate()
    with pytest.raises(UsageError, match="--early-stopping only applies to beam search"):
        DecodeOptions(early_stopping="true").validate()


def test_sampling_stream_callback_sees_what_is_returned():
    model, seen = TableModel(vocab=5, seed=2), []
    hyps = decode(model.step, 1, None, EOS, DecodeOptions(max_len=30), gen(4),
                  on_step=lambda tokens, emitted: seen.extend(tokens[emitted].tolist()))
    assert seen == hyps[0].tokens and len(seen) > 3


# --- against transformers itself -------------------------------------------------------------------------------

CHARS = "abcdef"
LM_EOS, PAD = 1, 0  # rnnkit's vocabulary ids (the table models above use 0 for EOS)


def tiny_lm(seed: int):
    """An untrained CharLM (float64, weights scaled up so that it is confident and loops), eval mode."""
    from rnnkit.models import CharLM

    torch.manual_seed(seed)
    lm = CharLM(len(CHARS) + 2, cell="lstm", hidden_size=8, embedding_dim=4).double().eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.mul_(3.0)
    return lm


def hf_model(lm):
    """`lm` behind Hugging Face's GenerationMixin: forward(input_ids (B, T)) runs the LM over EOS + input_ids
    (its start symbol, as rnnkit reads a prompt) and returns the logits after each input id (B, T, V). No
    cache: every step reruns the sequence, which a tiny model affords."""
    from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import CausalLMOutput

    class Config(PretrainedConfig):
        model_type = "rnnkit_charlm_test"

    class Wrapped(PreTrainedModel, GenerationMixin):
        config_class = Config
        main_input_name = "input_ids"

        def __init__(self, config):
            super().__init__(config)
            self.lm = lm
            self.post_init()

        def _init_weights(self, module):
            pass  # keep the LM's weights

        def forward(self, input_ids, **kwargs):
            start = torch.full((input_ids.shape[0], 1), LM_EOS, dtype=torch.long)
            logits, _ = self.lm(torch.cat([start, input_ids], 1).t())  # (T+1, B, V)
            return CausalLMOutput(logits=logits[1:].transpose(0, 1))  # after each input id: (B, T, V)

    config = Config(vocab_size=len(CHARS) + 2, eos_token_id=LM_EOS, pad_token_id=PAD, bos_token_id=LM_EOS)
    return Wrapped(config).eval()


def rnnkit_generate(lm, prompt: str, **options):
    """rnnkit's decoding of `prompt` (its ids, EOS first as a start symbol) with `options`: [(tokens, Sample)]."""
    from rnnkit.data.vocab import Vocab
    from rnnkit.generation.generate import generate

    vocab = Vocab(CHARS)
    samples = generate(lm, vocab, vocab.encode(prompt), DecodeOptions(**options), 0, torch.device("cpu"))
    return [(vocab.encode(s.text), s) for s in samples]


def hf_generate(lm, prompt: str, **kwargs):
    """HF's generate() on the wrapped LM: the generated ids (EOS dropped) and, for beam search, the scores."""
    from rnnkit.data.vocab import Vocab

    ids = torch.tensor([Vocab(CHARS).encode(prompt)])
    out = hf_model(lm).generate(ids, attention_mask=torch.ones_like(ids), use_cache=False, suppress_tokens=[PAD],
                                return_dict_in_generate=True, output_scores=True, **kwargs)
    texts = [[t for t in row[ids.shape[1]:].tolist() if t not in (LM_EOS, PAD)] for row in out.sequences]
    return texts, getattr(out, "sequences_scores", None)


needs_transformers = pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers is not installed (not a "
                                        "dependency of rnnkit)")


@needs_transformers
def test_greedy_repetition_penalty_equals_transformers():
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    lm, prompt = tiny_lm(2), "bd"
    plain = rnnkit_generate(lm, prompt, greedy=True, max_len=20)[0][0]
    counted = rnnkit_generate(lm, prompt, greedy=True, max_len=20, repetition_penalty=1.3, penalise_prompt=True)
    generated_only = rnnkit_generate(lm, prompt, greedy=True, max_len=20, repetition_penalty=1.3)
    assert len({tuple(plain), tuple(counted[0][0]), tuple(generated_only[0][0])}) == 3  # each can fail alone
    # HF's own rule: input_ids hold the prompt.
    theirs, _ = hf_generate(lm, prompt, do_sample=False, max_new_tokens=20, repetition_penalty=1.3)
    assert counted[0][0] == theirs[0]
    # HF's processor told to skip the prompt's positions.
    skip = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.3, prompt_ignore_length=len(prompt))])
    theirs, _ = hf_generate(lm, prompt, do_sample=False, max_new_tokens=20, logits_processor=skip)
    assert generated_only[0][0] == theirs[0]


@needs_transformers
def test_no_repeat_ngram_with_the_prompt_equals_transformers():
    lm, prompt = tiny_lm(5), "abcab"
    counted = rnnkit_generate(lm, prompt, greedy=True, max_len=20, no_repeat_ngram=2, penalise_prompt=True)[0][0]
    assert counted != rnnkit_generate(lm, prompt, greedy=True, max_len=20, no_repeat_ngram=2)[0][0]
    theirs, _ = hf_generate(lm, prompt, do_sample=False, max_new_tokens=20, no_repeat_ngram_size=2)
    assert counted == theirs[0]


@needs_transformers
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("early_stopping", ["never", "true", "false"])
def test_beam_search_equals_transformers(early_stopping, length_penalty):
    lm, prompt = tiny_lm(2), "ab"
    ours = rnnkit_generate(lm, prompt, beam=4, num=4, max_len=12, length_penalty=length_penalty,
                           early_stopping=early_stopping, repetition_penalty=1.3, penalise_prompt=True)
    theirs, scores = hf_generate(lm, prompt, do_sample=False, num_beams=4, num_return_sequences=4,
                                 max_new_tokens=12, length_penalty=length_penalty,
                                 early_stopping=HF_MODES[early_stopping], repetition_penalty=1.3)
    assert [tokens for tokens, _ in ours] == theirs
    assert [s.score for _, s in ours] == pytest.approx(scores.tolist(), abs=1e-5)
