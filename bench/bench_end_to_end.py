"""End to end on the real corpus: `prepare` throughput, and characters per second of the training loop of
configs/trump_lstm.yaml with each rnnkit backend against the same model built on torch.nn.LSTM.

    python bench/bench_end_to_end.py [--corpus PATH] [--steps N] [--rounds R] [--device cpu|cuda]

The training figures are what `rnnkit train` itself reports (TrainResult.chars_per_sec: real characters,
padding excluded, over the loop's wall time, the final evaluation and checkpoint included), for a short
run of the shipped config (max_steps N; eval_batches 1; no histograms). The torch.nn variant is CharLM
with its recurrent layer swapped for `PackedLSTM`, an nn.LSTM that takes the lengths the way a torch
user would (pack_padded_sequence), parameter names unchanged, so the same loop trains and saves it.
Variants alternate over R rounds; the best round of each is kept (shared machines only slow things down).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from rnnkit.config import load_config  # noqa: E402
from rnnkit.data.prepare import prepare_with_summary  # noqa: E402
from rnnkit.tasks.lm import LanguageModelTask  # noqa: E402
from rnnkit.training import train  # noqa: E402

CONFIG = ROOT / "configs" / "trump_lstm.yaml"
CORPUS = ROOT.parent / "shared" / "data" / "trump_speeches" / "speeches.txt"
VARIANTS = ("torch", "reference", "fused")


class PackedLSTM(nn.LSTM):
    """torch.nn.LSTM with rnnkit's call signature `(x, state, lengths)`, lengths through packing."""

    def forward(self, x, state=None, lengths=None):  # noqa: D102 - signature of rnnkit's layers
        if lengths is None:
            return super().forward(x, state)
        packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        out, state = super().forward(packed, state)
        out, _ = pad_packed_sequence(out, total_length=x.shape[0])  # (T, B, H), zero padding
        return out, state

    # What CharLM.step needs (the trainer draws samples at each evaluation): an identity "projection"
    # and one nn.LSTM call per step.
    def project_input(self, x):
        return x

    def step_projected(self, x, state=None):
        return super().forward(x.unsqueeze(0), state)[1]

    def _weights(self, layer, direction):
        return tuple(getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def prepare_throughput(corpus: Path, data_root: Path, rounds: int = 2) -> dict:
    """Characters read per second by `prepare` (clean, split, vocabulary, encode, write), best of rounds."""
    cfg = load_config(CONFIG, [f"data.path={corpus}"])
    best = None
    for _ in range(rounds):
        summary = prepare_with_summary(cfg.data, root=data_root, force=True)
        best = summary.seconds if best is None else min(best, summary.seconds)
    chars = len(corpus.read_text(encoding="utf-8", errors="replace"))
    return {"corpus": str(corpus), "characters": chars, "seconds": best, "chars_per_s": chars / best}


@contextlib.contextmanager
def torch_lstm_model():
    """Make the LM task build CharLM on PackedLSTM (same parameters and initial weights)."""
    original = LanguageModelTask.build_model

    def build_model(task):
        model = original(task)
        old = model.rnn
        dropout = old.dropout if old.num_layers > 1 else 0.0  # between layers only, as rnnkit's
        model.rnn = PackedLSTM(old.input_size, old.hidden_size, old.num_layers, bias=old.bias, dropout=dropout)
        model.rnn.load_state_dict(old.state_dict())
        return model

    LanguageModelTask.build_model = build_model
    try:
        yield
    finally:
        LanguageModelTask.build_model = original


def train_chars_per_s(variant: str, corpus: Path, data_root: Path, work: Path, steps: int, device: str) -> float:
    overrides = [f"data.path={corpus}", f"train.max_steps={steps}", "train.eval_batches=1",
                 "train.histogram_every=0", f"train.device={device}",
                 f"model.backend={'auto' if variant == 'torch' else variant}"]
    cfg = load_config(CONFIG, overrides)
    swap = torch_lstm_model() if variant == "torch" else contextlib.nullcontext()
    with swap:
        result = train(cfg, quiet=True, run_dir=work / f"{variant}-{len(list(work.iterdir()))}", data_root=data_root)
    return result.chars_per_sec


def run_end_to_end(corpus: Path = CORPUS, steps: int = 30, rounds: int = 2, device: str = "cpu",
                   echo: bool = True) -> dict:
    """{"prepare": {...}, "train": {variant: chars/s}} (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_root, work = tmp / "data", tmp / "runs"
        work.mkdir()
        prep = prepare_throughput(corpus, data_root)
        if echo:
            print(f"prepare {corpus.name}: {prep['characters']:,} characters in {prep['seconds']:.2f} s "
                  f"= {prep['chars_per_s']:,.0f} chars/s")
        best = {v: 0.0 for v in VARIANTS}
        for _ in range(rounds):
            for variant in VARIANTS:
                best[variant] = max(best[variant], train_chars_per_s(variant, corpus, data_root, work, steps, device))
    if echo:
        for variant, cps in best.items():
            print(f"train {CONFIG.name} {variant:>9}: {cps:8,.0f} chars/s  x{cps / best['torch']:.2f} of torch.nn")
    return {"prepare": prep, "train": best, "steps": steps, "rounds": rounds, "config": CONFIG.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per variant (best kept)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    run_end_to_end(args.corpus, args.steps, args.rounds, args.device)


if __name__ == "__main__":
    main()
