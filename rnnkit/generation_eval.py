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
from pathlib import Path

import torch

from rnnkit.config import GenerateConfig
from rnnkit.errors import UsageError

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
NEUTRAL = {"greedy": False, "beam": 1, "temperature": 1.0, "top_k": None, "nucleus": None, "num": 1}
DEFAULT_SAMPLES = 50
DEFAULT_REFERENCES = 200
FEEDS = ("greedy", "sample")


def describe(cfg: GenerateConfig) -> str:
    """The decoding method of a `generate:` section in words, e.g. 'sampling, T=0.8, nucleus 0.95'."""
    if cfg.greedy:
        return "greedy"
    warps = [f"T={cfg.temperature:g}"] if cfg.temperature != 1.0 else []
    warps += [f"top-k {cfg.top_k}"] if cfg.top_k is not None else []
    warps += [f"nucleus {cfg.nucleus:g}"] if cfg.nucleus is not None else []
    if cfg.beam > 1:
        return f"beam {cfg.beam}" + (" + " + ", ".join(warps) if warps else "")
    return ", ".join(["sampling", *warps])


def generate_samples(model, vocab, gen: GenerateConfig, n: int, device: torch.device) -> tuple[list[str], list[bool]]:
    """n samples (texts, ended-with-EOS flags) decoded with `gen`, from its prompt.

    Sampling: one batched decode of n rows. Beam sample: n decodes with seeds seed..seed+n-1, the best beam
    of each. Greedy and beam search are deterministic: one decode, repeated n times (so that diversity
    metrics say what they are: one sentence).
    """
    from rnnkit.generation import decode_options, encode_prompt, generate

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
    from rnnkit.text_metrics import text_metrics

    start = time.perf_counter()
    texts, finished = generate_samples(model, vocab, gen, n, device)
    seconds = time.perf_counter() - start
    row = {"decoding": name or describe(gen), "options": {k: getattr(gen, k) for k in
                                                        ("greedy", "temperature", "top_k", "nucleus", "beam",
                                                         "max_len", "seed")}}
    row.update(text_metrics(texts, finished, references))
    row.update(seconds=seconds, examples=texts[:2])
    return row


def generation_metrics(run_dir: str | Path, n: int, *, compare: bool = False, which: str = "best",
                       device: str = "auto", references: int = DEFAULT_REFERENCES,
                       data_root: str | Path | None = None) -> list[dict]:
    """Generated-text metrics of a run: one row with its own `generate:` settings, or (compare) one per
    method of DECODERS. BLEU/chrF use the first `references` sentences of the test split (0: none)."""
    from rnnkit.checkpoint import load_for_inference, pick_device
    from rnnkit.tasks import get_task

    if references < 0:
        raise UsageError(f"--references: expected 0 or more sentences, got {references}")
    torch_device = pick_device(device)
    cfg, vocab, model = load_for_inference(Path(run_dir), which=which, device=torch_device)
    if cfg.task != "lm":
        raise UsageError(f"{run_dir}: --generate and --compare-decoding need a language model (task: lm), this "
                         f"run is task: {cfg.task}")
    refs: list[str] = []
    if references:
        task = get_task(cfg.task)(cfg, data_root).setup()
        task.check_artifacts(Path(run_dir))
        refs = reference_sentences(task, references)
    if not compare:
        from rnnkit.generation import merge_options

        return [decoding_report(model, vocab, merge_options(cfg.generate, {}), n, refs, torch_device)]
    neutral = dataclasses.replace(cfg.generate, **NEUTRAL)
    return [decoding_report(model, vocab, dataclasses.replace(neutral, **settings), n, refs, torch_device, name)
            for name, settings in DECODERS.items()]


def free_running_metrics(run_dir: str | Path, split: str = "val", *, which: str = "best", device: str = "auto",
                         batch_size: int | None = None, max_batches: int = 0, seed: int = 0,
                         data_root: str | Path | None = None) -> dict:
    """Free-running loss of a run on `split` for each feed: {"free_running_greedy": {"loss", "bpc",
    "perplexity"}, "free_running_sample": {...}} (see the module docstring for the definition)."""
    from rnnkit.checkpoint import load_for_inference, pick_device
    from rnnkit.tasks import get_task

    torch_device = pick_device(device)
    cfg, _, model = load_for_inference(Path(run_dir), which=which, device=torch_device)
    task = get_task(cfg.task)(cfg, data_root).setup()
    if not hasattr(task, "free_running_sums"):
        hint = (" (a forecast run's metrics already are free running: its decoder reads its own forecasts)"
                if cfg.task == "forecast" else "")
        raise UsageError(f"{run_dir}: --free-running compares teacher-forced and free-running loss of a language "
                         f"model (task: lm); this run is task: {cfg.task}{hint}")
    task.check_artifacts(Path(run_dir))
    out = {}
    for feed in FEEDS:
        generator = torch.Generator(device=torch_device).manual_seed(seed)
        totals = {"loss_sum": 0.0, "count": 0.0}
        batches = task.batches(split, batch_size or cfg.train.batch_size, seed=0, shuffle=False)
        for index, batch in enumerate(batches):
            if max_batches and index >= max_batches:
                break
            for key, value in task.free_running_sums(model, batch, torch_device, feed, generator).items():
                totals[key] += value
        if not totals["count"]:
            raise UsageError(f"{run_dir}: the {split} split is empty; evaluate another --split")
        metrics = task.metrics(totals)
        out[f"free_running_{feed}"] = {k: metrics[k] for k in ("loss", "bpc", "perplexity")}
    return out


def add_text_metrics(record: dict, *, n: int = 0, compare: bool = False, free_running: bool = False,
                     references: int = DEFAULT_REFERENCES, which: str = "best", device: str = "auto") -> dict:
    """Extend an `evaluate_run` record: "generation" (rows of `generation_metrics`, n samples each; n = 0
    with compare uses DEFAULT_SAMPLES) and "free_running" (`free_running_metrics` on the record's split)."""
    if n or compare:
        record["generation"] = generation_metrics(record["run"], n or DEFAULT_SAMPLES, compare=compare,
                                                  which=which, device=device, references=references)
    if free_running:
        record["free_running"] = free_running_metrics(record["run"], record["split"], which=which, device=device)
    return record


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"  # undefined (no reference, one sample): "-"


def text_tables(records: list[dict]) -> list:
    """Rich tables of what `add_text_metrics` added to the records: one free-running table with a row per
    run, then each run's generation tables (an empty list when it added nothing)."""
    from rich.table import Table

    tables = []
    running = [r for r in records if "free_running" in r]
    if running:
        table = Table(title=f"teacher-forced vs free-running loss on {running[0]['split']} (nats/char; bpc)")
        for column in ("run", "teacher forced", "free running (greedy)", "free running (sampled)"):
            table.add_column(column, justify="left" if column == "run" else "right")
        for record in running:
            feeds = record["free_running"]
            cells = [f"{m['loss']:.4f} ({m['bpc']:.3f})" for m in
                     (record, feeds["free_running_greedy"], feeds["free_running_sample"])]
            table.add_row(record["run"], *cells)
        tables.append(table)
    for record in records:
        tables += _generation_tables(record)
    return tables


def _generation_tables(record: dict) -> list:
    from rich.table import Table

    tables = []
    rows = record.get("generation")
    if rows:
        first = rows[0]
        table = Table(title=f"{record['run']}, generated text: {first['samples']} samples per method, "
                            f"BLEU/chrF against {first['references']} test sentences",
                      caption="d-n: distinct word n-grams / all; sBLEU: self-BLEU; EOS: share ending with EOS; "
                              "len: mean characters")
        for column in ("decoding", "d-1", "d-2", "d-3", "d-4", "sBLEU", "EOS", "len", "BLEU", "chrF"):
            table.add_column(column, justify="left" if column == "decoding" else "right")
        for r in rows:
            table.add_row(r["decoding"], *(_number(r[f"distinct_{k}"], 2) for k in (1, 2, 3, 4)),
                          _number(r["self_bleu"], 1), _number(r["eos_rate"], 2), _number(r["mean_length"], 0),
                          _number(r["bleu"], 1), _number(r["chrf"], 1))
        examples = Table(title="first sample of each method (unique: distinct samples; s: seconds)")
        for column in ("decoding", "unique", "s", "first sample"):
            examples.add_column(column, overflow="fold", justify="right" if column in ("unique", "s") else "left")
        for r in rows:
            examples.add_row(r["decoding"], str(r["unique"]), f"{r['seconds']:.1f}",
                             repr(r["examples"][0]) if r["examples"] else "")
        tables += [table, examples]
    return tables
