"""Sequence classification (`task: classify`): which metro station a window of flows comes from, or which
language a few characters are in. Many-to-one: cross-entropy on the class decoded from the last state."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.errors import CheckpointError, DataError, UsageError
from rnnkit.tasks.artifacts import check_same, normaliser_dict, read_task_json, write_task_json

VOCAB_FILE = "vocab.json"
REPORT_BATCH = 512


class ClassifyTask:
    """Station (metro, metro-synthetic) or language (langid) from a sequence: a Task (rnnkit/tasks/base.py) whose
    batches are LabelledBatch (rnnkit/data/batch_types.py)."""

    name = "classify"
    unit = "time steps"  # what the trainer counts per second: input time steps read

    def __init__(self, cfg, data_root: str | Path | None = None):
        self.cfg, self.data_root = cfg, data_root
        self.data = None
        self.info: dict = {}

    # --- data and artifacts -------------------------------------------------------------------

    def setup(self) -> ClassifyTask:
        from rnnkit.data import prepare_corpus
        from rnnkit.data.labelled import StationWindows, TextSamples
        from rnnkit.data.langid import load_langid
        from rnnkit.data.metro_source import is_metro, load_metro

        source = self.cfg.data.source
        if not (is_metro(source) or source == "langid"):
            raise UsageError(f"task: classify reads data.source metro, metro-synthetic or langid, not {source!r}")
        folder = prepare_corpus(self.cfg.data, root=self.data_root)
        if is_metro(source):
            self.data = StationWindows(self.cfg.data, *load_metro(folder))
        else:
            self.data = TextSamples(self.cfg.data, *load_langid(folder))
        self.info = self._info()
        return self

    def _info(self) -> dict:
        d = self.data
        info = {"kind": d.kind, "classes": d.class_names, "input_size": d.input_size, "vocab_size": d.vocab_size}
        if d.kind == "metro":
            info.update(normaliser_dict(d.normaliser))
        return info

    @classmethod
    def from_run(cls, cfg, run_dir: str | Path) -> ClassifyTask:
        task = cls(cfg)
        task.info = read_task_json(Path(run_dir))
        return task

    def save_artifacts(self, run_dir: Path) -> None:
        write_task_json(run_dir, self.info)
        if self.data.kind == "text":
            self.data.vocab.save(Path(run_dir) / VOCAB_FILE)

    def check_artifacts(self, run_dir: Path) -> None:
        """The run's task.json and, for text, its whole vocabulary (not only its size) must match the data."""
        check_same(Path(run_dir), read_task_json(Path(run_dir)), self.info)
        if self.data is not None and self.data.kind == "text":
            from rnnkit.data.vocab import Vocab

            try:
                saved = Vocab.load(Path(run_dir) / VOCAB_FILE)
            except DataError as err:
                raise CheckpointError(f"{err} (the run folder is incomplete or damaged)") from None
            if saved != self.data.vocab:
                raise CheckpointError(f"{run_dir}: the prepared data has another vocabulary than the run's "
                                      f"{VOCAB_FILE} ({saved.difference(self.data.vocab, 'in the run', 'in the data')})"
                                      f"; use the same data settings")

    @property
    def class_names(self) -> list[str]:
        return self.info["classes"]

    def num_sequences(self, split: str) -> int:
        return self.data.num_items(split)

    def batches(self, split: str, batch_size: int, seed: int, shuffle: bool, num_replicas: int = 1, rank: int = 0,
                length: int | None = None):
        """Batches (inputs (T, B, F) or (T, B), labels (B,), lengths (B,)); `length` fixes T (evaluation)."""
        return self.data.batches(split, batch_size, seed, shuffle, num_replicas, rank, length=length)

    # --- model, loss, metrics -----------------------------------------------------------------

    def build_model(self) -> nn.Module:
        from rnnkit.models.heads import SequenceClassifier

        return SequenceClassifier(self.cfg.model, len(self.class_names), input_size=self.info["input_size"],
                                  vocab_size=self.info["vocab_size"])

    @staticmethod
    def _logits(model: nn.Module, batch, device: torch.device) -> tuple[Tensor, Tensor]:
        inputs, labels, lengths = batch.to(device)
        ragged = bool((lengths != inputs.shape[0]).any())  # all full length: skip the masking work
        return model(inputs, lengths if ragged else None).float(), labels  # (B, C), (B,)

    def loss(self, model: nn.Module, batch, device: torch.device) -> tuple[Tensor, Tensor, int]:
        """(summed cross-entropy over the batch's sequences, their count, time steps read)."""
        logits, labels = self._logits(model, batch, device)
        count = torch.tensor(float(len(labels)), device=device)
        return F.cross_entropy(logits, labels, reduction="sum"), count, int(batch.lengths.sum())

    @torch.no_grad()
    def eval_sums(self, model: nn.Module, batch, device: torch.device) -> dict[str, float]:
        logits, labels = self._logits(model, batch, device)
        return {"loss_sum": float(F.cross_entropy(logits, labels, reduction="sum")), "count": float(len(labels)),
                "correct": float((logits.argmax(-1) == labels).sum())}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """loss (nats per sequence), accuracy and the 0-1 error."""
        n = max(sums["count"], 1.0)
        accuracy = sums.get("correct", 0.0) / n
        return {"loss": sums["loss_sum"] / n, "accuracy": accuracy, "error": 1.0 - accuracy}

    def samples(self, model: nn.Module, device: torch.device, n: int = 3, seed: int = 0, **_) -> list[str]:
        return []

    # --- the evaluation report ----------------------------------------------------------------

    @torch.no_grad()
    def predictions(self, model: nn.Module, split: str, batch_size: int, device: torch.device,
                    length: int | None = None) -> tuple[Tensor, Tensor]:
        """(predicted, true) class ids (N,) over every sequence of the split (at window `length`)."""
        preds, trues = [], []
        for batch in self.batches(split, batch_size, 0, False, length=length):
            logits, labels = self._logits(model, batch, device)
            preds.append(logits.argmax(-1).cpu())
            trues.append(labels.cpu())
        if not preds:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        return torch.cat(preds), torch.cat(trues)

    def report(self, model: nn.Module, split: str, batch_size: int, device: torch.device) -> dict:
        """Confusion matrix, per-class accuracy and accuracy against the window length on `split`."""
        from rnnkit.evaluation.metrics import accuracy, confusion_matrix, per_class_accuracy

        was_training = model.training
        model.eval()
        batch_size = max(batch_size, REPORT_BATCH)  # inference only: large batches, few Python loops
        try:
            pred, true = self.predictions(model, split, batch_size, device)
            confusion = confusion_matrix(pred, true, len(self.class_names))
            by_length = []
            for length in self.data.report_lengths():
                p, t = self.predictions(model, split, batch_size, device, length=length)
                if len(t):
                    by_length.append({"length": length, "accuracy": accuracy(confusion_matrix(
                        p, t, len(self.class_names))), "sequences": len(t)})
        finally:
            model.train(was_training)
        return {"classes": self.class_names, "confusion": confusion.tolist(),
                "per_class_accuracy": {name: None if acc != acc else acc  # nan (no example) is no JSON
                                       for name, acc in zip(self.class_names, per_class_accuracy(confusion),
                                                            strict=True)},
                "accuracy_by_length": by_length, "window": self.cfg.data.window if self.data.kind == "metro"
                else None}
