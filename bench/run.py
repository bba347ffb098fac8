"""rnnkit's benchmark suite: one command, one table of ratios against torch.nn, and a JSON file.

    python bench/run.py [--quick] [--json FILE] [--device cpu|cuda] [--sections train,decode,e2e]

Everything is measured side by side in this one process (interleaved repeats; the fastest repeat counts,
since other load on a shared machine only ever adds time), on CPU or a CUDA GPU with the same command:
  train   one training step (forward + backward + SGD) of an embedding (64) -> one recurrent layer -> loss,
          for LSTM, GRU and RNN at (B, T, H) in (32,100,256) (64,100,512) (128,256,512) (64,100,1024):
          torch.nn (oneDNN / cuDNN) against rnnkit's `reference` and `fused` backends, and on CUDA
          `fused+graph` (compiled pointwise steps, the whole step captured as a CUDA graph); with peak
          and saved-for-backward memory (bench_train_step.py)
  decode  characters per second of greedy (batch 1) and beam-5 decoding of a 2-layer H=512 LSTM LM:
          torch.nn.LSTM called once per step against CharLM.step (bench_decoding.py)
  e2e     `prepare` throughput on the real corpus, and chars/s of the training loop of
          configs/trump_lstm.yaml with each backend against the same model on torch.nn.LSTM
          (bench_end_to_end.py)
Ratios are torch.nn time / rnnkit time (or rnnkit throughput / torch.nn throughput): higher is better,
1.00 is parity. `--quick` runs the smallest shape and shorter decodes (a couple of minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench modules
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # rnnkit from this checkout

import bench_decoding  # noqa: E402
import bench_end_to_end  # noqa: E402
import bench_train_step  # noqa: E402

SECTIONS = ("train", "decode", "e2e")
DECODE_METHODS = {"greedy": "greedy, batch 1", "beam 5": "beam 5"}


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


def _ratio(value: float | None) -> str:
    return f"{value:5.2f}" if value is not None else "    -"


def train_rows(rows: list[dict]) -> list[tuple]:
    """(section, case, torch.nn figure, x reference, x fused, x fused+graph, note) per measured shape."""
    out = []
    for r in rows:
        base = r["torch"]["ms"]
        ratio = {v: base / r[v]["ms"] if v in r else None for v in ("reference", "fused", "fused+graph")}
        saved = "/".join(f"{r[v]['saved_mb']:.0f}" for v in ("torch", "reference", "fused"))
        peak = "/".join(f"{r[v]['peak_mb']:.0f}" for v in ("torch", "reference", "fused"))
        tf32 = "" if r.get("tf32") is None else f" tf32={'on' if r['tf32'] else 'off'}"
        case = f"{r['kind']} B={r['B']} T={r['T']} H={r['H']}{tf32}"
        out.append(("train", case, f"{base:8.1f} ms", ratio["reference"], ratio["fused"], ratio["fused+graph"],
                    f"MB saved {saved}, peak {peak} (torch/ref/fused)"))
    return out


def decode_rows(results: dict) -> list[tuple]:
    out = []
    base = results["torch.nn.LSTM"]
    ours = results.get("rnnkit CharLM")
    off = results.get("torch.nn.LSTM, oneDNN off")
    for method, label in DECODE_METHODS.items():
        note = "CharLM.step (either backend)"
        if off is not None:
            note += f"; torch.nn with oneDNN off: {off[method]:,.0f} chars/s"
        ratio = ours[method] / base[method] if ours else None
        out.append(("decode", label, f"{base[method]:8,.0f} c/s", None, ratio, None, note))
    return out


def e2e_rows(results: dict) -> list[tuple]:
    t, prep = results["train"], results["prepare"]
    return [
        ("e2e", f"train {results['config']}", f"{t['torch']:8,.0f} c/s", t["reference"] / t["torch"],
         t["fused"] / t["torch"], None, f"rnnkit train loop, {results['steps']} steps, best of {results['rounds']}"),
        ("e2e", "prepare trump", f"{prep['chars_per_s']:8,.0f} c/s", None, None, None,
         f"rnnkit only: {prep['characters']:,} characters in {prep['seconds']:.2f} s"),
    ]


def print_table(rows: list[tuple], header: str) -> None:
    print("\n" + header)
    print(f"{'section':<7} {'case':<30} {'torch.nn':>13} | {'x ref':>5} {'x fused':>7} {'x graph':>7} | note")
    for section, case, base, ref, fused, graph, note in rows:
        print(f"{section:<7} {case:<30} {base:>13} | {_ratio(ref)} {_ratio(fused):>7} {_ratio(graph):>7} | {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smallest shape, short decodes, short training")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--kinds", default="lstm,gru,rnn", help="train section: comma-separated cells")
    parser.add_argument("--shapes", default=None, help="train section: indices into (B,T,H) "
                        + str(bench_train_step.SHAPES) + ", e.g. 0,1")
    parser.add_argument("--repeats", type=int, default=None, help="train section: timed steps per variant")
    parser.add_argument("--warmup", type=int, default=None, help="train section: untimed steps per variant")
    parser.add_argument("--tf32", choices=["off", "on", "both"], default="off", help="CUDA only (both sides)")
    args = parser.parse_args()
    device = torch.device(args.device)
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    cuda = device.type == "cuda"
    meta = {
        "torch": torch.__version__, "device": str(device), "cpu_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "quick": args.quick,
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "tf32": args.tf32 if cuda else None, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average_start": _load(),  # other processes on the machine skew the ratios: say how busy it was
    }
    print(json.dumps(meta))
    if not cuda:
        print("no CUDA device: the GPU rows (fused+graph: compiled pointwise steps + CUDA graph capture) are "
              "skipped; run the same command on a GPU machine for them")
    rows, results = [], {"meta": meta}
    if "train" in sections:
        shapes = bench_train_step.SHAPES[:1] if args.quick else bench_train_step.SHAPES
        if args.shapes:
            shapes = [bench_train_step.SHAPES[int(i)] for i in args.shapes.split(",")]
        tf32 = {"off": [False], "on": [True], "both": [False, True]}[args.tf32] if cuda else [False]
        warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
        repeats = args.repeats or (3 if args.quick else 5)
        train = bench_train_step.run_table(device, args.kinds.split(","), shapes, warmup=warmup, repeats=repeats,
                                           tf32_settings=tf32, graphs=cuda)
        results["train"] = train
        rows += train_rows(train)
    if "decode" in sections:
        length, repeats = (60, 3) if args.quick else (200, 5)
        decode = bench_decoding.run_decoding(device, length, repeats, echo=False)
        results["decode"] = decode
        rows += decode_rows(decode)
    if "e2e" in sections:
        steps, rounds = (10, 1) if args.quick else (30, 2)
        e2e = bench_end_to_end.run_end_to_end(steps=steps, rounds=rounds, device=device.type, echo=False)
        results["e2e"] = e2e
        rows += e2e_rows(e2e)
    meta["load_average_end"] = _load()
    print(f"load average (1 min) at start {meta['load_average_start']}, at end {meta['load_average_end']} "
          f"on {os.cpu_count()} CPUs")
    print_table(rows, f"ratio = torch.nn time / rnnkit time, higher is better ({device}, {meta['cpu_threads']} "
                      f"CPU threads{', ' + meta['gpu'] if cuda else ''}; c/s = characters per second)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
