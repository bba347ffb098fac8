"""A language model judged on what it produces by itself: generated-text metrics per decoding method
(`rnnkit eval --generate N`, `--compare-decoding`) and the free-running loss (`rnnkit eval --free-running`).

Free-running loss: the cross-entropy of the true next character (nats/char, as the ordinary loss) when the
model never reads the true text: after the start symbol it reads its own previous prediction at every step,
the argmax ("greedy" feed) or a sample at temperature 1 ("sample" feed, seeded). The teacher-forced loss
conditions on the true history, the free-running one on the model's own; their gap is exposure bias, what
scheduled sampling (train.teacher_forcing) is meant to reduce.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from rnnkit.config import GenerateConfig
from rnnkit.errors import UsageError
from rnnkit.tasks.base import FreeRunning

# The comparison of `rnnkit eval --compare-decoding`: name -> generate options, applied on neutral settings
# (no temperature, top-k or nucleus of the run leaks into another method); max_len, min_len, prompt, seed,
# repetition settings and length penalty stay the run's.
DECODERS: dict[str, dict] = {
    "greedy": {"greedy": True},
    "sampling T=0.8": {"temperature": 0.8},
    "top-k 10": {"top_k": 10},
    "nucleus 0.95": {"nucleus": 0.95},
    "beam 5": {"beam": 5},
    "beam 5 + nucleus 0.95": {"beam": 5, "nucleus": 0.95},
}
DEFAULT_SAMPLES = 50
DEFAULT_REFERENCES = 200
FEEDS = ("greedy", "sample")


def generate_samples(model, vocab, gen: GenerateConfig, n: int, device: torch.device) -> tuple[list[str], list[bool]]:
    """n samples (texts, ended-with-EOS flags) decoded with `gen`, from its prompt.

    Sampling: one batched decode of n rows. Beam sample: n decodes with seeds seed..seed+n-1, the best beam
    of each. Greedy and beam search are deterministic: one decode, repeated n times (so that diversity
    metrics say what they are: one sentence).
    """
    from rnnkit.generation.generate import encode_prompt, generate
    from rnnkit.generation.options import decode_options

    if n < 1:
        raise UsageError(f"--generate: expected at least 1 sample, got {n}")
    prompt_ids, _ = encode_prompt(vocab, gen.prompt, None)
    options = decode_options(dataclasses.replace(gen, num=1))
    if options.greedy or (options.beam > 1 and not options.samples):
        best = generate(model, vocab, prompt_ids, options, gen.seed, device)[0]
        samples = [best] * n
    elif options.beam == 1:
        samples = generate(model, vocab, prompt_ids, dataclasses.replace(options, num=n), gen.seed, device)
    else:
        samples = [generate(model, vocab, prompt_ids, options, gen.seed + i, device)[0] for i in range(n)]
    return [s.text for s in samples], [s.finished for s in samples]


def reference_sentences(task, limit: int) -> list[str]:
    """The first `limit` sentences of the task's test split, as text (the split order is already shuffled)."""
    split = task.corpus.split("test")
    return [task.vocab.decode(split[i]) for i in range(min(limit, len(split)))]


def decoding_report(model, vocab, gen: GenerateConfig, n: int, references: list[str], device: torch.device,
                    name: str | None = None) -> dict:
    """One row: the decoding method, its settings, the text metrics of n samples, two examples, seconds."""
    from rnnkit.evaluation.text import text_metrics
    from rnnkit.generation.options import describe

    start = time.perf_counter()
    texts, finished = generate_samples(model, vocab, gen, n, device)
    seconds = time.perf_counter() - start
    row = {"decoding": name or describe(gen), "options": {k: getattr(gen, k) for k in
                                                        ("greedy", "temperature", "top_k", "nucleus", "beam",
                                                         "max_len", "seed")}}
    row.update(text_metrics(texts, finished, references))
    row.update(seconds=seconds, examples=texts[:2])
    return row


def generation_metrics(run, n: int, *, compare: bool = False, references: int = DEFAULT_REFERENCES) -> list[dict]:
    """Generated-text metrics of a loaded run: one row with its own `generate:` settings, or (compare) one per
    method of DECODERS. BLEU/chrF use the first `references` sentences of the test split (0: none)."""
    from rnnkit.generation.options import NEUTRAL, merge_options

    if references < 0:
        raise UsageError(f"--references: expected 0 or more sentences, got {references}")
    if run.cfg.task != "lm":
        raise UsageError(f"{run.path}: --generate and --compare-decoding need a language model (task: lm), this "
                         f"run is task: {run.cfg.task}")
    refs = reference_sentences(run.data(), references) if references else []
    if not compare:
        return [decoding_report(run.model, run.vocab, merge_options(run.cfg.generate, {}), n, refs, run.device)]
    neutral = dataclasses.replace(run.cfg.generate, **NEUTRAL, num=1)
    return [decoding_report(run.model, run.vocab, dataclasses.replace(neutral, **settings), n, refs, run.device,
                            name) for name, settings in DECODERS.items()]


def free_running_metrics(run, split: str = "val", *, batch_size: int | None = None, max_batches: int = 0,
                         seed: int = 0) -> dict:
    """Free-running loss of a loaded run on `split` for each feed: {"free_running_greedy": {"loss", "bpc",
    "perplexity"}, "free_running_sample": {...}} (see the module docstring for the definition)."""
    task = run.data()
    if not isinstance(task, FreeRunning):
        hint = (" (a forecast run's metrics already are free running: its decoder reads its own forecasts)"
                if run.cfg.task == "forecast" else "")
        raise UsageError(f"{run.path}: --free-running compares teacher-forced and free-running loss of a language "
                         f"model (task: lm); this run is task: {run.cfg.task}{hint}")
    out = {}
    for feed in FEEDS:
        generator = torch.Generator(device=run.device).manual_seed(seed)
        totals = {"loss_sum": 0.0, "count": 0.0}
        batches = task.batches(split, batch_size or run.cfg.train.batch_size, seed=0, shuffle=False)
        for index, batch in enumerate(batches):
            if max_batches and index >= max_batches:
                break
            for key, value in task.free_running_sums(run.model, batch, run.device, feed, generator).items():
                totals[key] += value
        if not totals["count"]:
            raise UsageError(f"{run.path}: the {split} split is empty; evaluate another --split")
        metrics = task.metrics(totals)
        out[f"free_running_{feed}"] = {k: metrics[k] for k in ("loss", "bpc", "perplexity")}
    return out


def add_text_metrics(run, record: dict, *, n: int = 0, compare: bool = False, free_running: bool = False,
                     references: int = DEFAULT_REFERENCES) -> dict:
    """Extend an `evaluate_loaded` record of the same loaded run: "generation" (rows of `generation_metrics`,
    n samples each; n = 0 with compare uses DEFAULT_SAMPLES) and "free_running" (on the record's split)."""
    if n or compare:
        record["generation"] = generation_metrics(run, n or DEFAULT_SAMPLES, compare=compare, references=references)
    if free_running:
        record["free_running"] = free_running_metrics(run, record["split"])
    return record
