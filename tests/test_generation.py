"""`rnnkit generate`: option merging, prompt handling, and the command end to end on a tiny trained run."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.config import GenerateConfig
from rnnkit.data.vocab import EOS
from rnnkit.errors import UsageError
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
    root = tmp_path_factory.mktemp("generate")
    mp = pytest.MonkeyPatch()
    mp.setenv("RNNKIT_DATA", str(root / "data"))
    mp.chdir(root)
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    result = CliRunner().invoke(app, ["train", "tiny.yaml", "--quiet"])
    assert result.exit_code == 0, result.output
    yield root / "runs" / "tiny"
    mp.undo()


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


def test_beam_returns_the_best_first_and_beats_greedy(trained_run):
    beams = _json_lines(_generate(trained_run, "--json", "--beam", "4", "--num", "4", "--max-len", "25"))
    greedy = _json_lines(_generate(trained_run, "--json", "--greedy", "--max-len", "25"))
    scores = [r["log_prob"] for r in beams]
    assert len(beams) == 4 and scores == sorted(scores, reverse=True)
    if beams[0]["finished"] and greedy[0]["finished"]:
        assert beams[0]["log_prob"] >= greedy[0]["log_prob"] - 1e-6


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
