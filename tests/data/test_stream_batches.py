"""StreamBatches: rows that continue from batch to batch, per-process rows, evaluation scoring each target once."""

from __future__ import annotations

import torch

from rnnkit.data.datasets import StreamBatches
from rnnkit.data.vocab import PAD

STREAM = torch.arange(2, 1000, dtype=torch.int64).remainder(250).add(2).to(torch.uint8)  # ids 2..251, no PAD


def test_training_rows_continue_from_one_batch_to_the_next():
    batches = StreamBatches(STREAM, window=10, rows=4, seed=1, shuffle=True)
    for epoch in (0, 1, 2):
        batches.set_epoch(epoch)
        offset = batches.offset()
        row_len = (len(STREAM) - offset) // 4
        got = list(batches)
        assert len(got) == len(batches) == -(-(row_len - 1) // 10)
        for b in range(4):
            inputs = torch.cat([batch.inputs[:, b] for batch in got])
            targets = torch.cat([batch.targets[:, b] for batch in got])
            start = offset + b * row_len
            assert torch.equal(inputs, STREAM[start:start + row_len - 1].long())  # row b, in order
            assert torch.equal(targets, STREAM[start + 1:start + row_len].long())  # one character later
        assert all(batch.inputs.shape[1] == 4 and int(batch.lengths[0]) == batch.inputs.shape[0] for batch in got)
    offsets = set()
    for epoch in range(6):
        batches.set_epoch(epoch)
        offsets.add(batches.offset())
    assert len(offsets) > 1 and all(0 <= o < 10 for o in offsets)  # the cut points move between epochs


def test_each_process_gets_its_own_rows_of_the_same_batches():
    whole = StreamBatches(STREAM, window=7, rows=4, seed=0, shuffle=True)
    halves = [StreamBatches(STREAM, window=7, rows=4, seed=0, shuffle=True, num_replicas=2, rank=r) for r in (0, 1)]
    for batch, left, right in zip(whole, *halves, strict=True):
        assert torch.equal(batch.inputs, torch.cat([left.inputs, right.inputs], dim=1))
    resumed = StreamBatches(STREAM, window=7, rows=4, seed=0, shuffle=True)
    resumed.set_epoch(0, skip_batches=3)
    assert torch.equal(next(iter(resumed)).inputs, list(whole)[3].inputs)


def test_evaluation_scores_every_character_but_the_first_exactly_once():
    n = 301
    for rows, replicas in ((1, 1), (4, 1), (6, 2)):
        scored = []
        for rank in range(replicas):
            batches = StreamBatches(STREAM[:n], window=16, rows=rows, shuffle=False, num_replicas=replicas, rank=rank)
            per_row: dict[int, list[int]] = {}
            for batch in batches:
                for b in range(batch.inputs.shape[1]):
                    real = batch.targets[:, b] != PAD
                    per_row.setdefault(b, []).extend(batch.targets[real, b].tolist())
                    # what the row reads is the stream itself, warm-up included
                    length = int(batch.lengths[b])
                    assert (batch.inputs[length:, b] == PAD).all()
            for b in sorted(per_row):
                scored.extend(per_row[b])
        assert scored == STREAM[1:n].tolist(), (rows, replicas)
