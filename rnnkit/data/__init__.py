"""Data: vocabulary, cleaning, sources and downloads, corpus inputs (file, folder, standard input), prepared
datasets (sentences, or one stream: rnnkit/data/stream.py), and LM batching."""

# Imported for their side effect: they register the metro, metro-synthetic and langid sources.
from rnnkit.data import langid as _langid  # noqa: F401
from rnnkit.data import metro_source as _metro_source  # noqa: F401
from rnnkit.data.cleaning import CleaningReport, clean_text
from rnnkit.data.datasets import (
    BucketBatchSampler,
    LMBatches,
    SentenceDataset,
    StreamBatches,
    WindowDataset,
    lm_batches,
    pad_collate_fn,
)
from rnnkit.data.prepare import (
    PreparedCorpus,
    PrepareSummary,
    SplitView,
    load_prepared,
    prepare_corpus,
    prepare_with_summary,
)
from rnnkit.data.reber import generate_embedded_reber, penultimate_accuracy, penultimate_hits
from rnnkit.data.sources import SOURCES, Source, register
from rnnkit.data.stream import StreamSplit
from rnnkit.data.vocab import EOS, PAD, Vocab

__all__ = [
    "EOS", "PAD", "SOURCES", "BucketBatchSampler", "CleaningReport", "LMBatches", "PrepareSummary",
    "PreparedCorpus", "SentenceDataset", "Source", "SplitView", "StreamBatches", "StreamSplit", "Vocab",
    "WindowDataset", "clean_text",
    "generate_embedded_reber", "lm_batches", "load_prepared", "pad_collate_fn", "penultimate_accuracy",
    "penultimate_hits", "prepare_corpus", "prepare_with_summary", "register",
]
