"""Batching: padding and EOS placement, LM inputs/targets, windows, the bucketing sampler and its shards."""

import itertools

import pytest
import torch

from rnnkit.config import DataConfig
from rnnkit.data.datasets import BucketBatchSampler, WindowDataset, lm_batches, pad_collate_fn, sentence_batch
from rnnkit.data.prepare import load_prepared, prepare_corpus
from rnnkit.data.reber import penultimate_accuracy, penultimate_hits
from rnnkit.data.vocab import EOS, PAD
from rnnkit.errors import UsageError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    path = root / "numbers.txt"
    # distinct sentences of varied lengths, so that "lost or duplicated" can be checked by text
    path.write_text("".join(f"Sentence {i}{' and more' * (i % 7)}. " for i in range(300)), encoding="utf-8")
    return load_prepared(prepare_corpus(DataConfig(source="numbers", path=str(path)), root=root))


def test_pad_collate_appends_eos_and_pads():
    padded, lengths = pad_collate_fn([torch.tensor([5, 6, 7]), torch.tensor([8])])
    assert padded.shape == (4, 2) and lengths.tolist() == [4, 2]
    assert padded[:, 0].tolist() == [5, 6, 7, EOS]
    assert padded[:, 1].tolist() == [8, EOS, PAD, PAD]


def test_sentence_batch_starts_with_eos_and_shifts():
    inputs, targets, lengths = sentence_batch([torch.tensor([5, 6, 7]), torch.tensor([8])])
    assert inputs[:, 0].tolist() == [EOS, 5, 6, 7]
    assert inputs[:, 1].tolist() == [EOS, 8, PAD, PAD]  # the sentence's EOS is a target, never an input
    assert targets[:, 1].tolist() == [8, EOS, PAD, PAD]
    assert lengths.tolist() == [4, 2]


def test_no_sentence_lost_or_duplicated_across_splits(corpus):
    texts = [corpus.vocab.decode(view[i]) for view in corpus.splits.values() for i in range(len(view))]
    expected = [f"Sentence {i}{' and more' * (i % 7)}." for i in range(300)]
    assert len(texts) == len(set(texts)) == 300 and set(texts) == set(expected)
    assert all(len(corpus.split(name)) > 0 for name in ("train", "val", "test"))


def test_lm_batches_cover_the_split_once_per_epoch(corpus):
    batches = lm_batches(corpus, "train", DataConfig(), batch_size=16, seed=0, shuffle=True)
    batches.set_epoch(2)
    seen = []
    for inputs, targets, lengths in batches:
        assert inputs.shape == targets.shape and inputs.shape[1] == lengths.numel()
        assert inputs.dtype == targets.dtype == lengths.dtype == torch.long
        assert targets.shape[0] == int(lengths.max())
        for b in range(lengths.numel()):
            n = int(lengths[b])
            assert targets[n - 1, b] == EOS and (targets[n:, b] == PAD).all()
            assert inputs[0, b] == EOS and torch.equal(inputs[1:n, b], targets[:n - 1, b])
            seen.append(corpus.vocab.decode(targets[:, b]))
    train = corpus.split("train")
    assert sorted(seen) == sorted(corpus.vocab.decode(train[i]) for i in range(len(train)))
    assert len(list(batches)) == len(batches)


def test_windows_mode(corpus):
    cfg = DataConfig(mode="windows", window=10)
    stream = corpus.split("train").stream()
    assert (stream == EOS).sum() == len(corpus.split("train")) and stream[-1] == EOS
    batches = lm_batches(corpus, "train", cfg, batch_size=4, seed=0, shuffle=False)
    inputs, targets, lengths = next(iter(batches))
    assert inputs.shape == targets.shape == (10, 4) and lengths.tolist() == [10] * 4
    assert torch.equal(inputs[1:], targets[:-1])
    assert torch.equal(inputs[:, 0], stream[:10]) and torch.equal(targets[:, 0], stream[1:11])
    windows = WindowDataset(torch.arange(23), 10)
    assert len(windows) == 2 and windows[1].tolist() == list(range(10, 21))


def test_empty_val_split_gives_zero_batches(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("One sentence. Two sentences. Three.", encoding="utf-8")
    loaded = load_prepared(prepare_corpus(DataConfig(source="c", path=str(path), val_fraction=0.0), root=tmp_path))
    assert len(lm_batches(loaded, "val", DataConfig(), 4, 0, False)) == 0


# ---------------------------------------------------------------- the bucketing sampler

LENGTHS = torch.randint(1, 200, (1003,), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("shuffle", [True, False])
def test_sampler_covers_every_index_once(shuffle):
    sampler = BucketBatchSampler(LENGTHS, 32, seed=1, shuffle=shuffle)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 32
    assert sorted(itertools.chain(*batches)) == list(range(1003))


def test_sampler_is_a_function_of_seed_and_epoch():
    sampler = BucketBatchSampler(LENGTHS, 32, seed=1)
    sampler.set_epoch(3)
    first = list(sampler)
    assert list(sampler) == first
    again = BucketBatchSampler(LENGTHS, 32, seed=1)
    again.set_epoch(3)
    assert list(again) == first
    again.set_epoch(4)
    assert list(again) != first
    again.set_epoch(3, skip_batches=5)
    assert list(again) == first[5:] and len(again) == len(first) - 5


def test_sampler_buckets_by_length():
    def waste(batches):
        return sum(int(LENGTHS[b].max()) * len(b) - int(LENGTHS[b].sum()) for b in batches)

    bucketed = list(BucketBatchSampler(LENGTHS, 32, seed=0))
    shuffled = torch.randperm(1003, generator=torch.Generator().manual_seed(0)).split(32)
    assert waste(bucketed) * 5 < waste([b.tolist() for b in shuffled])


def test_sampler_drop_last():
    sampler = BucketBatchSampler(LENGTHS, 32, seed=0, drop_last=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 31 and all(len(b) == 32 for b in batches)


@pytest.mark.parametrize("n", [1003, 1025, 1024])
def test_ddp_shards_are_disjoint_and_make_the_global_batch(n):
    lengths = LENGTHS.repeat(2)[:n]
    whole = BucketBatchSampler(lengths, 32, seed=7)
    whole.set_epoch(1)
    ranks = [BucketBatchSampler(lengths, 32, seed=7, num_replicas=4, rank=r) for r in range(4)]
    for sampler in ranks:
        sampler.set_epoch(1)
    per_rank = [list(s) for s in ranks]
    assert len({len(p) for p in per_rank}) == 1 and len(per_rank[0]) == len(ranks[0])
    global_batches = ranks[0].global_batches()
    assert len(global_batches) == len(per_rank[0])
    for step, global_batch in enumerate(global_batches):
        shards = [p[step] for p in per_rank]
        assert all(shards) and list(itertools.chain(*shards)) == global_batch.tolist()
    # the same batches as one process sees, minus a final batch too small to shard
    single = [b.tolist() for b in whole.global_batches() if len(b) >= 4]
    assert [b.tolist() for b in global_batches] == single
    with pytest.raises(UsageError, match="multiple"):
        BucketBatchSampler(lengths, 30, num_replicas=4)


# ---------------------------------------------------------------- the Reber metric

def test_penultimate_accuracy():
    inputs, targets, lengths = sentence_batch([torch.tensor([2, 3, 4, 5, 6, 3, 7]), torch.tensor([2, 4, 5, 4, 7])])
    assert penultimate_hits(targets, targets, lengths) == (2, 2)
    wrong = targets.clone()
    wrong[5, 0] = 4  # the penultimate symbol of the first string
    assert penultimate_accuracy(wrong, targets, lengths) == 0.5
    logits = torch.nn.functional.one_hot(targets, 9).float()  # (T, B, V)
    assert penultimate_accuracy(logits, targets, lengths) == 1.0
