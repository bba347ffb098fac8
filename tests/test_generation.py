"""`rnnkit generate`: option merging, prompt handling, and the command end to end on a tiny trained run."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import train_run, working_folder
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.config import GenerateConfig
from rnnkit.data.vocab import EOS
from rnnkit.errors import UsageError
from rnnkit.generation.decoding import select_state
from rnnkit.generation.options import decode_options, merge_options
from rnnkit.runs.loaded import load

TINY = {
    "task": "lm",
    "data": {"source": "reber", "num_samples": 80, "max_len": 30},
    "model": {"cell": "lstm", "hidden_size": 8, "embedding_dim": 4},
    "train": {"batch_size": 16, "max_steps": 20, "eval_every": 10, "checkpoint_every": 10, "device": "cpu",
              "lr": 0.02},
    "generate": {"temperature": 0.8, "num": 3, "max_len": 25},
}


# --- option merging --------------------------------------------------------------------------------------

def test_greedy_on_the_command_line_sets_aside_the_runs_sampling_defaults():
    run = GenerateConfig(temperature=0.8, nucleus=0.9, num=3)
    used = merge_options(run, {"greedy": True})
    assert used.greedy and used.temperature == 1.0 and used.nucleus is None and used.num == 1
    decode_options(used)  # valid: no clash with options the user did not type


def test_beam_alone_is_plain_beam_search_and_num_shrinks_to_the_beam():
    used = merge_options(GenerateConfig(temperature=0.8, top_k=5, num=8), {"beam": 3})
    assert (used.beam, used.temperature, used.top_k, used.num) == (3, 1.0, None, 3)


def test_a_sampling_option_keeps_the_runs_beam_for_beam_sampling():
    used = merge_options(GenerateConfig(beam=4, greedy=False, temperature=0.7), {"nucleus": 0.95})
    assert (used.beam, used.nucleus, used.temperature) == (4, 0.95, 0.7)


def test_clashes_the_user_typed_are_still_errors():
    with pytest.raises(UsageError, match="--greedy cannot be combined with --beam"):
        decode_options(merge_options(GenerateConfig(), {"greedy": True, "beam": 5})).validate()


@pytest.mark.parametrize("max_len, message", [(0, "--max-len: 0 must be >= 1"),
                                              (10**9, "--max-len: 1000000000 must be <= 100000")])
def test_max_len_out_of_range_is_a_usage_error_with_the_configs_limits(max_len, message):
    with pytest.raises(UsageError, match=message):
        merge_options(GenerateConfig(), {"max_len": max_len})


# --- end to end ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny LSTM trained for 20 steps on the Reber grammar: runs/tiny under a module-wide folder."""
    with working_folder(tmp_path_factory.mktemp("generate")) as root:
        yield train_run(root, TINY)


def _generate(run, *args):
    return CliRunner().invoke(app, ["generate", str(run), *args])


def _json_lines(result):
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.strip().splitlines()]


def _model_log_prob(run, prompt: str, text: str, finished: bool) -> float:
    """Teacher-forced log-probability of `text` (+ EOS when finished) after EOS + prompt."""
    loaded = load(run, device="cpu")
    vocab, model = loaded.vocab, loaded.model
    ids = [EOS] + vocab.encode(prompt) + vocab.encode(text) + ([EOS] if finished else [])
    tokens = torch.tensor(ids).unsqueeze(1)  # (T, 1)
    with torch.no_grad():
        logits, _ = model(tokens[:-1])
    log_probs = logits.log_softmax(-1)[:, 0]  # (T-1, V)
    start = len(prompt)  # predictions of the prompt itself are not counted
    targets = tokens[1:, 0]
    return float(log_probs[torch.arange(len(targets)), targets][start:].sum())


def test_json_prints_num_objects_whose_log_prob_is_the_models(trained_run):
    records = _json_lines(_generate(trained_run, "--json", "--prompt", "BT", "--seed", "1"))
    assert len(records) == 3  # the run's generate.num
    for record in records:
        assert record["prompt"] == "BT" and record["options"]["temperature"] == 0.8
        assert record["length"] == len(record["text"])
        # The reported log-probability is the model's own, untempered.
        expected = _model_log_prob(trained_run, "BT", record["text"], record["finished"])
        assert record["log_prob"] == pytest.approx(expected, abs=1e-4)


def test_same_seed_same_samples_other_seed_other_samples(trained_run):
    first = _json_lines(_generate(trained_run, "--json", "--seed", "7", "--num", "6", "--temperature", "1.5"))
    again = _json_lines(_generate(trained_run, "--json", "--seed", "7", "--num", "6", "--temperature", "1.5"))
    other = _json_lines(_generate(trained_run, "--json", "--seed", "8", "--num", "6", "--temperature", "1.5"))
    texts = [r["text"] for r in first]
    assert texts == [r["text"] for r in again]
    assert texts != [r["text"] for r in other]


def _scored_length(record) -> int:
    """Tokens beam search divides by: the characters, plus EOS when the sequence ended with it."""
    return record["length"] + int(record["finished"] and record["stop"] is None)


def _every_sequence(run, max_len: int) -> list[tuple[float, str, bool]]:
    """Every sequence the decoder can produce from an empty prompt, by brute force: (log-prob, text, finished),
    most likely first. A sequence ends with EOS, or unfinished after max_len characters."""
    loaded = load(run, device="cpu")
    model, vocab = loaded.model, loaded.vocab
    tokens, state = torch.tensor([EOS]), None
    prefixes, log_p = [[]], torch.zeros(1, dtype=torch.float64)
    ended = []
    with torch.no_grad():
        for _ in range(max_len):
            step, state = model.step(tokens, state)  # (N, V); PAD is -inf
            step = step.double()
            ended += [(float(log_p[i] + step[i, EOS]), vocab.decode(p), True) for i, p in enumerate(prefixes)]
            rows, ids = torch.nonzero(torch.isfinite(step) & (torch.arange(step.shape[1]) != EOS), as_tuple=True)
            log_p = log_p[rows] + step[rows, ids]
            prefixes = [prefixes[r] + [i] for r, i in zip(rows.tolist(), ids.tolist(), strict=True)]
            tokens, state = ids, select_state(state, rows)
    ended += [(float(lp), vocab.decode(p), False) for lp, p in zip(log_p, prefixes, strict=True)]
    return sorted(ended, reverse=True)


@pytest.mark.parametrize("length_penalty", [0.0, 0.3, 0.5])
def test_beam_hypotheses_come_best_score_first(trained_run, length_penalty):
    beams = _json_lines(_generate(trained_run, "--json", "--beam", "6", "--num", "6", "--max-len", "4",
                                  "--length-penalty", str(length_penalty)))
    assert len(beams) == 6 and len({(r["text"], r["finished"]) for r in beams}) == 6
    # Ended with EOS after 0 or 1 characters, or cut after 4: with a penalty > 0, not the log-probability order.
    assert len({_scored_length(r) for r in beams}) > 1
    # The ranking score of beam search: the log-probability (no sampling option here, so no processing) over
    # the scored length ** length_penalty; the running scores are float32, hence the tolerance.
    scores = [r["log_prob"] / _scored_length(r) ** length_penalty for r in beams]
    assert all(a >= b - 1e-5 for a, b in zip(scores, scores[1:], strict=False)), scores
    for r in beams:
        assert r["log_prob"] == pytest.approx(_model_log_prob(trained_run, "", r["text"], r["finished"]), abs=1e-4)


def test_beam_returns_the_best_first_and_beats_greedy(trained_run):
    # Built so that beam search must be exact: 9 ids of which PAD is never generated, so before the last of
    # 3 steps there are at most 7 * 8 = 56 candidates, fewer than the beam of 81; every one of them is kept or
    # ended, and the last step ends the best 81. With --length-penalty 0 the score is the log-probability,
    # so the 4 returned are the 4 most likely sequences of all, and the first is at least as likely as greedy's.
    assert len(load(trained_run, device="cpu").vocab) == 9
    beams = _json_lines(_generate(trained_run, "--json", "--beam", "81", "--num", "4", "--max-len", "3",
                                  "--length-penalty", "0"))
    (greedy,) = _json_lines(_generate(trained_run, "--json", "--greedy", "--max-len", "3"))
    every = _every_sequence(trained_run, 3)
    assert len(every) == 1 + 7 + 7 * 7 + 7 ** 3  # ended with EOS after 0, 1, 2 characters, or 3 characters
    assert [(r["text"], r["finished"]) for r in beams] == [(text, finished) for _, text, finished in every[:4]]
    assert [r["log_prob"] for r in beams] == pytest.approx([lp for lp, _, _ in every[:4]], abs=1e-5)
    by_text = {(text, finished): lp for lp, text, finished in every}
    assert greedy["log_prob"] == pytest.approx(by_text[greedy["text"], greedy["finished"]], abs=1e-5)
    assert beams[0]["log_prob"] >= greedy["log_prob"] - 1e-6


def test_fixed_length_generates_exactly_max_len(trained_run):
    records = _json_lines(_generate(trained_run, "--json", "--fixed-length", "--max-len", "17"))
    assert all(r["length"] == 17 and not r["finished"] for r in records)


def test_unknown_prompt_character_names_it_and_its_position(trained_run):
    result = _generate(trained_run, "--prompt", "BTq")
    assert result.exit_code == 2
    assert "'q'" in result.output and "position 2" in result.output and "Traceback" not in result.output


def test_replace_unknown_reports_the_replacement(trained_run):
    result = _generate(trained_run, "--prompt", "BTq", "--replace-unknown", "B", "--json")
    records = _json_lines(result)
    assert records[0]["prompt"] == "BTB"
    assert "'q' (U+0071) at position 2 -> 'B'" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--greedy", "--beam", "5"], "--greedy cannot be combined with --beam"),
    (["--nucleus", "1.5"], "--nucleus: 1.5 must be <= 1.0"),
    (["--temperature", "0"], "--temperature: 0.0 must be > 0.0"),
    (["--top-k", "0"], "--top-k: 0 must be >= 1"),
    (["--beam", "0"], "--beam: 0 must be >= 1"),
    (["--max-len", "0"], "--max-len: 0 must be >= 1"),
    (["--beam", "2", "--num", "3"], "--num (3) cannot exceed --beam (2)"),
])
def test_impossible_options_exit_2_with_one_line(trained_run, args, message):
    result = _generate(trained_run, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_run_folder_is_a_clean_error(tmp_path):
    result = _generate(tmp_path / "nope")
    assert result.exit_code == 1 and "no such run folder" in result.output
