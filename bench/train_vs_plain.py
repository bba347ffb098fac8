"""Side by side in one process: `rnnkit train` against the plain PyTorch character LSTM a user would write, for
data.mode windows, sentences and stream, on the same prepared ids, model, optimizer and batch size.

    python bench/train_vs_plain.py [--modes windows,sentences,stream] [--steps 120] [--threads N] [--json F]

rnnkit trains configs/trump_lstm.yaml (embedding 32, one LSTM of 256, dropout 0.1, Adam 2e-3, clipping at 5,
batches of 32) on the Trump speeches (../shared/data/trump_speeches/speeches.txt; skipped when absent), with
model.backend auto, evaluation and checkpoints only at the end; the plain trainers (bench/plain_char_lm.py for
windows of 100 and padded sentences, bench/plain_char_lstm.py for the stream, see bench/stream_vs_plain.py)
read rnnkit's prepared ids. The two train in lockstep, the plain model taking its step inside rnnkit's on_step
hook, so that both meet the same load; each step is timed on its own, steps 2 to N-1 (not the first, nor
rnnkit's last, which holds its final evaluation and checkpoint). Characters per second count the characters
scored (sentences: EOS included, padding not).
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

import plain_char_lm  # noqa: E402
import stream_vs_plain  # noqa: E402

from rnnkit.config import load_config  # noqa: E402
from rnnkit.data import load_prepared, prepare_corpus  # noqa: E402
from rnnkit.training import train  # noqa: E402

CONFIG = ROOT / "configs" / "trump_lstm.yaml"
CORPUS = ROOT.parent / "shared" / "data" / "trump_speeches" / "speeches.txt"
MODES = ("windows", "sentences", "stream")
WINDOW = 100


def rnnkit_config(mode: str, corpus: Path, steps: int, device: str):
    return load_config(CONFIG, [f"data.path={corpus}", f"data.mode={mode}", f"data.window={WINDOW}",
                                f"train.max_steps={steps}", f"train.eval_every={steps}",
                                f"train.checkpoint_every={steps}", "train.histogram_every=0", "train.eval_batches=1",
                                f"train.device={device}", "run.name=bench"])


def plain_trainer(mode: str, prepared, cfg, device: str):
    m, t = cfg.model, cfg.train
    hyper = {"hidden": m.hidden_size, "layers": m.num_layers, "embedding": m.embedding_dim, "dropout": m.dropout,
             "batch": t.batch_size, "lr": t.lr, "clip": t.clip_grad_norm, "device": device}
    split = prepared.split("train")
    if mode == "windows":
        return plain_char_lm.WindowTrainer(split.stream(), len(prepared.vocab), window=WINDOW, **hyper)
    return plain_char_lm.SentenceTrainer([split[i] for i in range(len(split))], len(prepared.vocab), **hyper)


def side_by_side(mode: str, corpus: Path, work: Path, steps: int, device: str) -> dict:
    """chars/s of both, trained in lockstep (windows and sentences; stream: bench/stream_vs_plain.py)."""
    if mode == "stream":
        figures = stream_vs_plain.side_by_side(corpus, work, steps, 256, device)
        return {"rnnkit": figures["rnnkit"]["chars_per_s"], "plain": figures["plain"]["chars_per_s"]}
    cfg = rnnkit_config(mode, corpus, steps, device)
    prepared = load_prepared(prepare_corpus(cfg.data, root=work / "data"))
    plain = plain_trainer(mode, prepared, cfg, device)
    entered, left, plain_seconds, plain_chars, ours_chars = [], [], [], [], []

    def counted(loss):
        def wrapper(*args, **kwargs):
            out = loss(*args, **kwargs)
            ours_chars.append(out[2])
            return out
        return wrapper

    def plain_step(trainer) -> None:
        entered.append(time.perf_counter())
        if len(entered) == 1:
            trainer.task.loss = counted(trainer.task.loss)  # the characters of rnnkit's steps 2 ..
        plain_chars.append(plain.step())
        left.append(time.perf_counter())
        plain_seconds.append(left[-1] - entered[-1])

    train(cfg, quiet=True, run_dir=work / f"rnnkit-{mode}", data_root=work / "data", on_step=plain_step)
    ours = sum(entered[k] - left[k - 1] for k in range(1, steps - 1))
    theirs = sum(plain_seconds[1:steps - 1])
    return {"rnnkit": sum(ours_chars[:steps - 2]) / ours, "plain": sum(plain_chars[1:steps - 1]) / theirs}


def run(modes=MODES, steps: int = 120, device: str = "cpu", corpus: Path = CORPUS, echo: bool = True) -> dict:
    """{mode: {"rnnkit": chars/s, "plain": chars/s, "ratio": rnnkit / plain}} (empty without the corpus)."""
    if not corpus.is_file():
        if echo:
            print(f"skipped: {corpus} not found")
        return {}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            figures = side_by_side(mode, corpus, Path(tmp), steps, device)
            figures["ratio"] = figures["rnnkit"] / figures["plain"]
            results[mode] = figures
            if echo:
                print(f"{mode:>9}: rnnkit {figures['rnnkit']:9,.0f} chars/s, plain PyTorch {figures['plain']:9,.0f} "
                      f"chars/s: x{figures['ratio']:.2f}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.steps < 3:
        parser.error("--steps must be at least 3 (the first and last steps are not timed)")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(args.modes.split(","), args.steps, args.device, args.corpus)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
