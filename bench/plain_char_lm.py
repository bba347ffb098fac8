"""The plain PyTorch character LSTM a user would write for windows and for padded sentences: the baseline
bench/train_vs_plain.py holds `rnnkit train` to (bench/plain_char_lstm.py is the stream-mode one).

nn.Embedding -> dropout -> nn.LSTM -> dropout -> nn.Linear, Adam, gradient norm clipping, cross-entropy:
- windows: the split's character stream cut into windows of W + 1 characters (consecutive windows share one),
  shuffled each epoch, B windows per batch, every position scored;
- sentences: each sentence read as EOS + sentence and scored on sentence + EOS, padded per batch (batches of
  similar lengths: shuffled, sorted by length 50 batches at a time), padding ignored by the loss
  (`ignore_index`); the LSTM runs over the padding too, which cannot change the scored positions (it comes
  after them), so no packing is needed.
It reads rnnkit's prepared ids (PAD = 0, EOS = 1), so that both train on exactly the same data.
"""

from __future__ import annotations

import torch
from torch import nn

PAD, EOS = 0, 1
POOL = 50  # batches sorted by length together


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, embedding: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.embed, self.lstm = nn.Embedding(vocab, embedding), nn.LSTM(embedding, hidden, layers)
        self.drop, self.out = nn.Dropout(dropout), nn.Linear(hidden, vocab)

    def forward(self, x):  # x (T, B) -> logits (T, B, V)
        y, _ = self.lstm(self.drop(self.embed(x)))
        return self.out(self.drop(y))


class Trainer:
    """`step()` trains on the next batch (a new shuffled epoch when one runs out) and returns the characters
    it scored."""

    def __init__(self, vocab: int, *, hidden=256, layers=1, embedding=32, dropout=0.1, batch=32, lr=2e-3,
                 clip=5.0, seed=0, device="cpu"):
        torch.manual_seed(seed)
        self.model = CharLSTM(vocab, embedding, hidden, layers, dropout).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.batch, self.clip, self.device = batch, clip, device
        self.gen = torch.Generator().manual_seed(seed)
        self.batches: list = []

    def next_batch(self):
        raise NotImplementedError

    def step(self) -> int:
        if not self.batches:
            self.batches = self.epoch()
        x, y = (t.to(self.device) for t in self.next_batch())
        loss = nn.functional.cross_entropy(self.model(x).flatten(0, 1), y.flatten(), ignore_index=PAD)
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        return int((y != PAD).sum())


class WindowTrainer(Trainer):
    def __init__(self, stream: torch.Tensor, vocab: int, window: int = 100, **hyper):
        super().__init__(vocab, **hyper)
        n = (stream.numel() - 1) // window
        self.windows = stream[: n * window + 1].unfold(0, window + 1, window)  # (n, W + 1), a view

    def epoch(self) -> list:
        return list(torch.randperm(len(self.windows), generator=self.gen).split(self.batch))

    def next_batch(self):
        w = self.windows[self.batches.pop()].t()  # (W + 1, B)
        return w[:-1], w[1:]


class SentenceTrainer(Trainer):
    def __init__(self, sentences: list[torch.Tensor], vocab: int, **hyper):
        super().__init__(vocab, **hyper)
        self.sentences = sentences
        self.lengths = torch.tensor([len(s) for s in sentences])

    def epoch(self) -> list:
        order = torch.randperm(len(self.sentences), generator=self.gen)
        pools = [p[self.lengths[p].argsort()] for p in order.split(self.batch * POOL)]
        batches = [b for p in pools for b in p.split(self.batch)]
        return [batches[i] for i in torch.randperm(len(batches), generator=self.gen)]

    def next_batch(self):
        chosen = [self.sentences[i] for i in self.batches.pop().tolist()]
        eos = torch.tensor([EOS])
        targets = nn.utils.rnn.pad_sequence([torch.cat([s, eos]) for s in chosen], padding_value=PAD)  # (L, B)
        inputs = nn.utils.rnn.pad_sequence([torch.cat([eos, s]) for s in chosen], padding_value=PAD)
        return inputs, targets
