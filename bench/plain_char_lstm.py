"""A plain PyTorch character LSTM the char-rnn way (nn.Embedding + nn.LSTM + nn.Linear, contiguous windows,
state carried across batches, Adam, gradient clipping): the baseline bench/stream_vs_plain.py holds rnnkit to.

    python bench/plain_char_lstm.py FILE [--steps 500] [--hidden 256] [--window 100] [--batch 32]

Standalone, it reads FILE as UTF-8, takes every distinct character as the vocabulary and splits the text by
position (the first 90% to train, the next 5% to validate). The side-by-side runner calls `train` instead
with rnnkit's own prepared streams, so that both read exactly the same ids.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, embedding: int, hidden: int, layers: int):
        super().__init__()
        self.embed, self.lstm = nn.Embedding(vocab, embedding), nn.LSTM(embedding, hidden, layers)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):  # x (T, B) -> logits (T, B, V), state
        y, state = self.lstm(self.embed(x), state)
        return self.out(y), state


def rows(ids: torch.Tensor, batch: int) -> torch.Tensor:
    """(N,) -> (N // batch, batch): the stream cut into `batch` contiguous rows, read in parallel."""
    n = ids.numel() // batch
    return ids[:n * batch].long().view(batch, n).t().contiguous()


def detach(state):
    return tuple(s.detach() for s in state)


@torch.no_grad()
def evaluate(model, ids: torch.Tensor, batch: int, window: int, device) -> float:
    """Bits per character of a stream cut into `batch` rows, state carried window after window (batch 1: one
    pass over the whole stream, every character but the first scored)."""
    model.eval()
    data, state, nats, count = rows(ids, batch).to(device), None, 0.0, 0
    for i in range(0, data.shape[0] - 1, window):
        x, y = data[i:i + window], data[i + 1:i + 1 + window]
        logits, state = model(x[:len(y)], state)
        nats += float(nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
        count += y.numel()
    model.train()
    return nats / count / math.log(2)


class Trainer:
    """Truncated BPTT over `batch` contiguous rows of the training ids: `step()` trains on the next window."""

    def __init__(self, train_ids, vocab: int, *, hidden=256, layers=1, embedding=32, window=100, batch=32, lr=2e-3,
                 clip=5.0, seed=0, device="cpu"):
        torch.manual_seed(seed)
        self.model = CharLSTM(vocab, embedding, hidden, layers).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.data, self.state, self.i = rows(train_ids, batch).to(device), None, 0
        self.window, self.batch, self.clip, self.device = window, batch, clip, device

    def step(self) -> float:
        if self.i + 1 >= self.data.shape[0]:  # a new epoch starts from a zero state
            self.state, self.i = None, 0
        x, y = self.data[self.i:self.i + self.window], self.data[self.i + 1:self.i + 1 + self.window]
        logits, state = self.model(x[:len(y)], self.state)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.state, self.i = detach(state), self.i + len(y)
        return loss.item()


def train(train_ids, val_ids, vocab: int, *, steps: int, **hyper) -> dict:
    """Train for `steps` windows; returns {"val_bpc" (one pass over val_ids), "chars_per_s", "seconds"}."""
    trainer = Trainer(train_ids, vocab, **hyper)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    seconds = time.perf_counter() - start
    return {"val_bpc": evaluate(trainer.model, val_ids, 1, trainer.window, trainer.device),
            "chars_per_s": steps * trainer.window * trainer.batch / seconds, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    for name, default in (("steps", 500), ("hidden", 256), ("window", 100), ("batch", 32)):
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    text = open(args.file, encoding="utf-8").read()
    index = {c: i for i, c in enumerate(sorted(set(text)))}
    ids = torch.tensor([index[c] for c in text])
    n_train, n_val = int(len(ids) * 0.9), int(len(ids) * 0.05)
    result = train(ids[:n_train], ids[n_train:n_train + n_val], len(index), steps=args.steps, hidden=args.hidden,
                   window=args.window, batch=args.batch)
    print(f"val bpc {result['val_bpc']:.4f}, {result['chars_per_s']:,.0f} chars/s over {result['seconds']:.1f} s")


if __name__ == "__main__":
    main()
