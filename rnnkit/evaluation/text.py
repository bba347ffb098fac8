"""Metrics of generated text: diversity (distinct-n, self-BLEU), ends (EOS rate, length), closeness to held-out
text (BLEU, chrF against test sentences).

Pure functions over lists of strings. BLEU and chrF come from sacrebleu (the `metrics` extra), imported only
when asked for. Unconditional samples have no reference of their own, so, as in Texygen (Zhu et al. 2018),
each sample is scored against *all* the reference sentences (multi-reference corpus BLEU; chrF keeps the
best-matching reference per sample): a sample scores high when its n-grams occur anywhere in held-out
text. The score grows with the number of references, so compare numbers made with the same references.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rnnkit.errors import RnnkitError

DISTINCT_ORDERS = (1, 2, 3, 4)


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError:
        raise RnnkitError("BLEU and chrF need sacrebleu, which is not installed: pip install 'rnnkit[metrics]' "
                          "(or pip install sacrebleu)") from None
    return sacrebleu


def words(text: str) -> list[str]:
    """Whitespace tokens: the unit of distinct-n (Li et al. 2016 count word n-grams)."""
    return text.split()


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct word n-grams / all word n-grams over every sample (Li et al. 2016); 0.0 when there are none.

    1.0: no n-gram is ever repeated, within or across samples; near 0: the samples repeat themselves.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    grams = [tuple(tokens[i:i + n]) for tokens in map(words, texts) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def self_bleu(texts: Sequence[str]) -> float:
    """Corpus BLEU of each sample against all the other samples (Zhu et al. 2018), 0..100.

    High = the samples resemble each other (little diversity); identical samples give 100. NaN for fewer
    than two samples.
    """
    if len(texts) < 2:
        return math.nan
    sacrebleu = _sacrebleu()
    # Reference stream j holds sample j for every segment but its own (None: sacrebleu's "no reference").
    streams = [[text if i != j else None for i in range(len(texts))] for j, text in enumerate(texts)]
    return float(sacrebleu.metrics.BLEU().corpus_score(list(texts), streams).score)


def reference_scores(texts: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """{"bleu", "chrf"} (0..100) of the samples, each against all `references`; NaN without references."""
    if not texts or not references:
        return {"bleu": math.nan, "chrf": math.nan}
    sacrebleu = _sacrebleu()
    streams = [[ref] * len(texts) for ref in references]  # every sample sees every reference
    bleu = sacrebleu.metrics.BLEU().corpus_score(list(texts), streams).score
    chrf = sacrebleu.metrics.CHRF().corpus_score(list(texts), streams).score
    return {"bleu": float(bleu), "chrf": float(chrf)}


def text_metrics(texts: Sequence[str], finished: Sequence[bool], references: Sequence[str] = ()) -> dict:
    """Every generated-text metric of a set of samples.

    texts: the samples (EOS excluded); finished: whether each ended with EOS (else it hit the length limit);
    references: held-out sentences for BLEU/chrF (empty: those two are NaN).
    Returns {"samples", "unique", "distinct_1".."distinct_4", "self_bleu", "eos_rate", "mean_length",
    "bleu", "chrf", "references"}; None where a metric is undefined (self-BLEU of one sample, BLEU without
    references).
    """
    if len(texts) != len(finished):
        raise ValueError(f"{len(texts)} texts but {len(finished)} finished flags")
    out: dict = {"samples": len(texts), "unique": len(set(texts))}
    out.update({f"distinct_{n}": distinct_n(texts, n) for n in DISTINCT_ORDERS})
    out["self_bleu"] = self_bleu(texts)
    out["eos_rate"] = sum(map(bool, finished)) / len(texts) if texts else math.nan
    out["mean_length"] = sum(map(len, texts)) / len(texts) if texts else math.nan
    out.update(reference_scores(texts, references))
    out["references"] = len(references)
    # None, not NaN, for what is undefined (one sample, no reference): JSON has no NaN.
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}
