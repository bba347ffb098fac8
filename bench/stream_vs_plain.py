"""Side by side in one process: `rnnkit train` in stream mode against the plain PyTorch character LSTM of
bench/plain_char_lstm.py, on the same file, the same ids, the same hyperparameters and number of steps.

    python bench/stream_vs_plain.py [--corpus PATH] [--steps 300] [--hidden 256] [--threads 2] [--device cpu]

The corpus (default: the raw Trump speeches at ../shared/data/trump_speeches/speeches.txt; skipped with a
message when absent) is prepared once by rnnkit (data.mode: stream: layout kept, contiguous splits); the plain
model trains on rnnkit's own train and validation ids. Both: embedding 32, one LSTM layer, windows of 100
characters over 32 contiguous rows with the state carried, Adam at 2e-3, gradient norm clipped to 5, no
dropout, torch.nn's initialisation (rnnkit's model.forget_bias: 0), seed 0.

The two train in lockstep (the plain model takes its step inside rnnkit's on_step hook), so that both meet the
same load on a shared machine. Validation bits per character: rnnkit's is `rnnkit eval`'s (rows warmed up by a
window: one pass over the split to 1e-3), the plain script's one pass over the split. Characters per second:
each step timed on its own, steps 2 to N-1 (not the first, nor rnnkit's last, which holds its final evaluation
and checkpoint); rnnkit's own figure (`rnnkit train`'s, start-up to the end, evaluation included) is printed too.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # rnnkit from this checkout
sys.path.insert(0, str(ROOT / "bench"))

import plain_char_lstm  # noqa: E402

from rnnkit.config import config_from_dict  # noqa: E402
from rnnkit.data import load_prepared, prepare_corpus  # noqa: E402
from rnnkit.runs.loaded import load  # noqa: E402
from rnnkit.training import train  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "trump_speeches" / "speeches.txt"
WINDOW, BATCH, EMBEDDING, LR, CLIP = 100, 32, 32, 2e-3, 5.0


def rnnkit_config(corpus: Path, steps: int, hidden: int, device: str) -> dict:
    return {
        "task": "lm",
        "data": {"source": "speeches_raw", "path": str(corpus), "mode": "stream", "window": WINDOW,
                 "val_fraction": 0.05, "test_fraction": 0.05},
        "model": {"cell": "lstm", "hidden_size": hidden, "embedding_dim": EMBEDDING, "dropout": 0.0,
                  "forget_bias": 0.0},
        "train": {"batch_size": BATCH, "lr": LR, "optimizer": "adam", "clip_grad_norm": CLIP, "max_steps": steps,
                  "eval_every": steps, "checkpoint_every": steps, "histogram_every": 0, "seed": 0, "device": device},
    }


def side_by_side(corpus: Path, work: Path, steps: int, hidden: int, device: str) -> dict:
    """Train both in lockstep: after each rnnkit step (its on_step hook) the plain model takes its step, so that
    the two meet the same load on a shared machine; each step is timed on its own."""
    cfg = config_from_dict(rnnkit_config(corpus, steps, hidden, device))
    prepared = load_prepared(prepare_corpus(cfg.data, root=work / "data"))
    plain = plain_char_lstm.Trainer(prepared.split("train").stream(), len(prepared.vocab), hidden=hidden,
                                    embedding=EMBEDDING, window=WINDOW, batch=BATCH, lr=LR, clip=CLIP, device=device)
    entered, left, plain_seconds = [], [], []

    def plain_step(trainer) -> None:
        entered.append(time.perf_counter())
        plain.step()
        left.append(time.perf_counter())
        plain_seconds.append(left[-1] - entered[-1])

    result = train(cfg, quiet=True, run_dir=work / "rnnkit", data_root=work / "data", on_step=plain_step)
    # Steps 2 .. N-1: not the first (start-up) nor the last (rnnkit's final evaluation and checkpoint).
    ours = sum(entered[k] - left[k - 1] for k in range(1, steps - 1))
    theirs = sum(plain_seconds[1:steps - 1])
    chars = (steps - 2) * WINDOW * BATCH
    loaded = load(work / "rnnkit", which="last", device=device, data_root=work / "data")
    val_ids = prepared.split("val").stream()
    return {"rnnkit": {"val_bpc": loaded.evaluate("val")["bpc"], "chars_per_s": chars / ours,
                       "reported_chars_per_s": result.chars_per_sec},
            "plain": {"val_bpc": plain_char_lstm.evaluate(plain.model, val_ids, 1, WINDOW, device),
                      "chars_per_s": chars / theirs}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the CPU cores to use)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not args.corpus.is_file():
        print(f"skipped: {args.corpus} not found (give --corpus PATH)")
        return
    torch.set_num_threads(args.threads)
    if args.steps < 3:
        parser.error("--steps must be at least 3 (the first and last steps are not timed)")
    with tempfile.TemporaryDirectory() as tmp:
        figures = side_by_side(args.corpus, Path(tmp), args.steps, args.hidden, args.device)
    ours, plain = figures["rnnkit"], figures["plain"]
    print(f"{args.corpus.name}, {args.steps} steps of {BATCH} rows x {WINDOW} characters, LSTM {args.hidden}, "
          f"{args.device}, {args.threads} thread(s)")
    print(f"  plain PyTorch: val bpc {plain['val_bpc']:.4f}  {plain['chars_per_s']:9,.0f} chars/s")
    print(f"  rnnkit stream: val bpc {ours['val_bpc']:.4f}  {ours['chars_per_s']:9,.0f} chars/s "
          f"(rnnkit train reports {ours['reported_chars_per_s']:,.0f}, the plain steps and evaluation included)")
    print(f"  rnnkit - plain: {ours['val_bpc'] - plain['val_bpc']:+.4f} bpc; speed ratio rnnkit / plain "
          f"x{ours['chars_per_s'] / plain['chars_per_s']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({**figures, "steps": args.steps, "hidden": args.hidden,
                                         "threads": args.threads, "device": args.device}, indent=1))


if __name__ == "__main__":
    main()
