"""Character language modelling (`task: lm`): maximum likelihood on padded sentences, teacher forced or with
scheduled sampling (the model reads its own previous prediction with probability 1 - train.teacher_forcing);
in data.mode: stream, on the rows of one character stream with the state carried across batches (truncated
backpropagation through time, see `rnnkit.data.datasets.StreamBatches` and `CarriesState`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.errors import CheckpointError, DataError, UsageError

VOCAB_FILE = "vocab.json"


class LanguageModelTask:
    """Next-character prediction: inputs = EOS + sentence, targets = sentence + EOS, padding masked out; in
    stream mode, windows of a stream whose state carries over (`carries_state`, the CarriesState protocol)."""

    name = "lm"
    unit = "char"  # what the trainer counts per second: characters read

    def __init__(self, cfg, data_root: str | Path | None = None):
        self.cfg, self.data_root = cfg, data_root
        self.corpus = None
        self.vocab = None

    # --- data and artifacts -------------------------------------------------------------------

    def setup(self) -> LanguageModelTask:
        """Prepare the corpus (cached by its settings) and load it."""
        from rnnkit.data import load_prepared, prepare_corpus

        folder = prepare_corpus(self.cfg.data, root=self.data_root)
        self.corpus = load_prepared(folder)
        self.vocab = self.corpus.vocab
        return self

    @classmethod
    def from_run(cls, cfg, run_dir: str | Path) -> LanguageModelTask:
        """The task with the run's saved vocabulary and no data (inference)."""
        task = cls(cfg)
        task.vocab = cls._load_vocab(Path(run_dir))
        return task

    @staticmethod
    def _load_vocab(run_dir: Path):
        from rnnkit.data import Vocab

        try:
            return Vocab.load(run_dir / VOCAB_FILE)
        except DataError as err:
            raise CheckpointError(f"{err} (the run folder is incomplete or damaged)") from None

    def save_artifacts(self, run_dir: Path) -> None:
        self.vocab.save(Path(run_dir) / VOCAB_FILE)

    def check_artifacts(self, run_dir: Path) -> None:
        saved = self._load_vocab(run_dir)
        if saved != self.vocab:
            raise CheckpointError(f"{run_dir}: the prepared corpus has another vocabulary than the run's vocab.json "
                                  f"({saved.difference(self.vocab, 'in the run', 'in the data')}); use the same data")

    @property
    def carries_state(self) -> bool:
        """True in data.mode: stream: each batch continues the previous one (see CarriesState)."""
        return self.cfg.data.mode == "stream"

    def num_sequences(self, split: str) -> int:
        """Sentences or windows; in stream mode, how many rows of at least one window the split holds."""
        from rnnkit.data import lm_batches
        from rnnkit.data.datasets import stream_rows

        if self.carries_state:
            return stream_rows(len(self.corpus.split(split)), self.cfg.data.window)
        return len(lm_batches(self.corpus, split, self.cfg.data, 1, 0, False).dataset)

    def batches(self, split: str, batch_size: int, seed: int, shuffle: bool, num_replicas: int = 1, rank: int = 0):
        """Batches (inputs (T, B), targets (T, B), lengths (B,)); the order is a function of (seed, epoch)."""
        from rnnkit.data import lm_batches

        return lm_batches(self.corpus, split, self.cfg.data, batch_size, seed, shuffle,
                          num_replicas=num_replicas, rank=rank)

    # --- model, loss, metrics -----------------------------------------------------------------

    def build_model(self) -> nn.Module:
        from rnnkit.models import CharLM

        return CharLM.from_config(self.cfg.model, len(self.vocab))

    def loss(self, model: nn.Module, batch, device: torch.device,
             teacher_forcing: float = 1.0) -> tuple[Tensor, Tensor, int]:
        """(summed nats over real characters, their count, characters read) of one batch.

        teacher_forcing: probability that a sequence reads the true previous character at each step (the
        trainer passes the schedule's value); 1 keeps the one-pass forward, below 1 steps one character
        at a time and feeds the model's own prediction (train.teacher_forcing_feed) otherwise.
        """
        from rnnkit.models import masked_cross_entropy

        inputs, targets, lengths = (t.to(device, non_blocking=True) for t in batch)
        if teacher_forcing >= 1.0:
            logits, _ = model(inputs, lengths=lengths)  # (T, B, V)
        else:
            logits, _ = scheduled_forward(model, inputs, teacher_forcing, self.cfg.train.teacher_forcing_feed)
        # float(): under autocast the logits may be half precision; the loss is summed in fp32.
        loss_sum = masked_cross_entropy(logits.float(), targets, lengths, reduction="sum")
        count = lengths.sum()
        return loss_sum, count, int(count)

    def loss_carried(self, model: nn.Module, batch, device: torch.device, state) -> tuple[Tensor, Tensor, int, object]:
        """Stream mode: (summed nats over the scored characters, their count, characters read, final state) of
        one window read from `state` (None = zeros). Targets PAD are not scored (an evaluation row's warm-up,
        the padding after a row's end)."""
        from rnnkit.data.vocab import PAD
        from rnnkit.models import masked_cross_entropy

        inputs, targets = batch.inputs.to(device, non_blocking=True), batch.targets.to(device, non_blocking=True)
        logits, state = model(inputs, state)  # (T, B, V): every step is read, the state runs on
        mask = targets != PAD  # (T, B)
        loss_sum = masked_cross_entropy(logits.float(), targets, mask=mask, reduction="sum")
        return loss_sum, mask.sum(), int(batch.lengths.sum()), state

    @torch.no_grad()
    def eval_sums_carried(self, model: nn.Module, batch, device: torch.device, state) -> tuple[dict, object]:
        """Stream mode: summed loss and count of the scored characters of one window, and the final state."""
        loss_sum, count, _, state = self.loss_carried(model, batch, device, state)
        return {"loss_sum": float(loss_sum), "count": float(count)}, state

    @torch.no_grad()
    def eval_sums(self, model: nn.Module, batch, device: torch.device) -> dict[str, float]:
        """Summed loss and counts of one batch (plus penultimate-symbol hits on Reber strings)."""
        from rnnkit.models import masked_cross_entropy

        inputs, targets, lengths = (t.to(device) for t in batch)
        logits, _ = model(inputs, lengths=lengths)
        sums = {"loss_sum": float(masked_cross_entropy(logits.float(), targets, lengths, reduction="sum")),
                "count": float(lengths.sum())}
        if self.cfg.data.source == "reber" and self.cfg.data.mode == "sentences":
            from rnnkit.data import penultimate_hits

            correct, total = penultimate_hits(logits, targets, lengths)
            sums.update(penultimate_correct=float(correct), penultimate_total=float(total))
        return sums

    @torch.no_grad()
    def free_running_sums(self, model: nn.Module, batch, device: torch.device, feed: str,
                          generator: torch.Generator | None = None) -> dict[str, float]:
        """Summed loss and count of one batch when the model reads only its own predictions.

        Free running: after the start symbol the model is never shown the true text; at each step it reads
        its previous prediction (argmax for feed "greedy", a sample for "sample") and is scored on the true
        next character. The gap to the teacher-forced loss measures exposure bias.
        """
        from rnnkit.models import masked_cross_entropy

        if self.carries_state:
            raise UsageError("--free-running: not available for a stream model (data.mode: stream) yet; its windows "
                             "continue one another, and free running would restart each from its own guesses")
        inputs, targets, lengths = (t.to(device) for t in batch)
        logits, _ = scheduled_forward(model, inputs, 0.0, feed, generator)
        return {"loss_sum": float(masked_cross_entropy(logits.float(), targets, lengths, reduction="sum")),
                "count": float(lengths.sum())}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """loss (nats/char), bpc, perplexity (and penultimate_acc on Reber) from summed counts."""
        from rnnkit.evaluation.metrics import bits_per_char, perplexity

        loss = sums["loss_sum"] / max(sums["count"], 1.0)
        out = {"loss": loss, "bpc": bits_per_char(loss), "perplexity": perplexity(loss)}
        if sums.get("penultimate_total"):
            out["penultimate_acc"] = sums["penultimate_correct"] / sums["penultimate_total"]
        return out

    def samples(self, model: nn.Module, device: torch.device, n: int = 3, seed: int = 0,
                temperature: float = 0.8, max_len: int = 200) -> list[str]:
        """A few sentences (stream mode: max_len characters) sampled from scratch (a private generator: the
        training RNG is not touched)."""
        from rnnkit.generation.decoding import DecodeOptions
        from rnnkit.generation.generate import generate

        was_training = model.training
        options = DecodeOptions(temperature=temperature, num=n, max_len=max_len)
        try:
            return [s.text for s in generate(model, self.vocab, [], options, seed, device, stream=self.carries_state)]
        finally:
            model.train(was_training)


def scheduled_forward(model: nn.Module, inputs: Tensor, p: float, feed: str,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Run the LM one character at a time, reading the true input with probability p, else its own guess.

    inputs (T, B) long, starting with the start symbol (always read). At step t > 0 each sequence reads
    inputs[t] with probability p, else the character picked from its step t-1 logits (`pick_tokens`,
    PAD excluded). Returns (logits (T, B, V), the characters actually read (T, B)). With p = 1 the logits
    equal those of `model(inputs)` on every real step. Steps beyond a sequence's length read something
    too, but their logits are masked out of any loss.
    """
    from rnnkit.data.vocab import PAD
    from rnnkit.models.feedback import mix_inputs, pick_tokens

    state, steps, read = None, [], []
    prediction = None
    for t, truth in enumerate(inputs.unbind(0)):
        token = truth if prediction is None else mix_inputs(truth, prediction, p, generator)
        logits, state = model(token.unsqueeze(0), state)  # (1, B, V)
        steps.append(logits[0])
        read.append(token)
        if t + 1 < inputs.shape[0]:
            prediction = pick_tokens(logits[0], feed, generator, forbidden=PAD)  # (B,)
    return torch.stack(steps), torch.stack(read)  # (T, B, V), (T, B)
