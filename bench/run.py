"""rnnkit's benchmark suite: one command, every ratio against torch.nn and plain PyTorch, and a JSON file.

    python bench/run.py [--quick] [--json FILE] [--device cpu|cuda] [--sections build,train,decode,e2e]
                        [--threads N] [--clock wall|cpu]

Everything is measured side by side in this one process (interleaved repeats; the fastest repeat counts,
since other load on a shared machine only ever adds time), on CPU or a CUDA GPU with the same command:
  build   seconds to build the compiled CPU kernels from scratch (a child process, an empty cache folder)
  train   one training step (forward + backward + SGD) of an embedding (64) -> one recurrent layer -> loss,
          for LSTM, GRU and RNN at (B, T, H) in (32,100,256) (64,100,512) (128,256,512) (64,100,1024):
          torch.nn (oneDNN / cuDNN) against rnnkit's `reference` loop, the Python `fused` Functions, the
          `compiled` kernels (CPU) and on CUDA `fused+graph`; which of them backend `auto` takes; peak memory
          (bench_train_step.py)
  decode  characters per second of greedy (batch 1) and beam-5 decoding of a 2-layer H=512 LSTM LM: torch.nn.LSTM
          called once per step against CharLM.step; greedy as a fraction of memory bandwidth / weight bytes
          per step, and beam 5's cost per character in greedy characters (bench_decoding.py)
  e2e     `rnnkit train` (configs/trump_lstm.yaml, backend auto) in lockstep with the plain PyTorch script a user
          would write, same data, model and optimizer, for data.mode windows, sentences and stream
          (train_vs_plain.py, in a fresh process); `prepare` throughput on the real corpus
Ratios are torch.nn (or plain PyTorch) time / rnnkit time: higher is better, 1.00 is parity. `--clock cpu`
times the train section with process CPU time (with `--threads 1`, the steadiest on a shared machine).
`--quick` runs the smallest shape, shorter decodes and trainings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench modules
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # rnnkit from this checkout

import bench_decoding  # noqa: E402
import bench_end_to_end  # noqa: E402
import bench_train_step  # noqa: E402
import train_vs_plain  # noqa: E402

from rnnkit.models import extension  # noqa: E402

SECTIONS = ("build", "train", "decode", "e2e")
TRAIN_VARIANTS = ("reference", "fused", "compiled", "fused+graph")


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


def build_seconds() -> dict:
    """A from-scratch build of the compiled kernels, timed in a child process with an empty cache folder."""
    with tempfile.TemporaryDirectory() as folder:
        code = ("from rnnkit.models.extension import build\nimport json\nok = build.load()\n"
                "print(json.dumps({'built': ok, **{k: build.status()[k] for k in ('build_seconds', 'reason')}}))")
        env = {**os.environ, "RNNKIT_EXTENSION_DIR": folder}
        env.pop("RNNKIT_NO_EXTENSION", None)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1])
        result = json.loads(done.stdout.splitlines()[-1]) if done.returncode == 0 else {"built": False,
                                                                                      "reason": done.stderr[-300:]}
        result["process_seconds"] = time.perf_counter() - start
    return result


def e2e_in_child(steps: int, device: str) -> dict:
    """train_vs_plain.py in a fresh process, as a user runs either script: after the train section's large
    steps, glibc's allocator in this process reuses freed memory for torch.nn's buffers (no page faults),
    which made the plain script 1.3x faster here than it runs on its own."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "e2e.json"
        cmd = [sys.executable, str(Path(train_vs_plain.__file__)), "--steps", str(steps), "--device", device,
               "--threads", str(torch.get_num_threads()), "--json", str(out)]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text()) if out.exists() else {}


def train_lines(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        base = r["torch"]["ms"]
        ratios = " ".join(f"{v} {base / r[v]['ms']:4.2f}" for v in TRAIN_VARIANTS if v in r)
        auto = base / r[r["auto"]]["ms"]
        peaks = "/".join(f"{r[v]['peak_mb']:.0f}" for v in ("torch", *TRAIN_VARIANTS) if v in r and r[v]["peak_mb"]
                         is not None)
        worst = max(r[v]["max_ms"] / r[v]["ms"] for v in ("torch", *TRAIN_VARIANTS) if v in r)
        tf32 = "" if r.get("tf32") is None else f" tf32={'on' if r['tf32'] else 'off'}"
        names = "/".join(v for v in TRAIN_VARIANTS if v in r)
        lines.append(f"train  {r['kind']:>4} B={r['B']:<3} T={r['T']:<3} H={r['H']:<4}{tf32} torch {base:8.1f} ms | "
                     f"{ratios} | auto={r['auto']} {auto:4.2f} | peak MB torch/{names} {peaks} | slowest repeat "
                     f"{worst:.2f}x the fastest")
    return lines


def decode_lines(results: dict) -> list[str]:
    base, ours = results["torch.nn.LSTM"], results.get("rnnkit CharLM")
    lines = []
    for method in ("greedy", "beam 5"):
        ratio = f"{ours[method] / base[method]:4.2f}" if ours else "-"
        lines.append(f"decode {method:<7} torch.nn.LSTM {base[method]:8,.0f} c/s | CharLM {ours[method]:8,.0f} c/s "
                     f"x{ratio}" if ours else f"decode {method} torch.nn.LSTM {base[method]:,.0f} c/s")
    limit = bench_decoding.physical_limit(results)
    if limit:
        lines.append(f"decode limit   copy bandwidth {limit['bandwidth_gb_s']:.1f} GB/s / {limit['weight_mb']:.1f} MB "
                     f"of weights per step = {limit['bound_chars_per_s']:,.0f} c/s: greedy at "
                     f"{limit['greedy_fraction']:.2f} of it; beam 5 costs {limit['beam_vs_greedy']:.2f}x greedy per "
                     f"character")
    return lines


def e2e_lines(results: dict) -> list[str]:
    lines = [f"e2e    {mode:<9} rnnkit train {r['rnnkit']:8,.0f} c/s | plain PyTorch {r['plain']:8,.0f} c/s | "
             f"x{r['ratio']:4.2f}" for mode, r in results.get("modes", {}).items()]
    prep = results.get("prepare")
    if prep:
        lines.append(f"e2e    prepare   {prep['chars_per_s']:10,.0f} c/s ({prep['characters']:,} characters in "
                     f"{prep['seconds']:.2f} s)")
    return lines


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
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--clock", choices=sorted(bench_train_step.CLOCKS), default="wall",
                        help="train section: wall time or process CPU time")
    parser.add_argument("--steps", type=int, default=None, help="e2e section: training steps per mode")
    parser.add_argument("--tf32", choices=["off", "on", "both"], default="off", help="CUDA only (both sides)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    cuda = device.type == "cuda"
    meta = {
        "torch": torch.__version__, "device": str(device), "cpu_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "quick": args.quick,
        "clock": args.clock, "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "tf32": args.tf32 if cuda else None, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "compiled_kernels": extension.load() if not cuda else None,
        "load_average_start": _load(),  # other processes on the machine skew the ratios: say how busy it was
    }
    print(json.dumps(meta))
    if not cuda:
        print("no CUDA device: the GPU rows (fused+graph: compiled pointwise steps + CUDA graph capture) are "
              "skipped; run the same command on a GPU machine for them")
    lines, results = [], {"meta": meta}
    if "build" in sections and not cuda:
        results["build"] = build_seconds()
        b = results["build"]
        lines.append(f"build  compiled kernels from scratch: {b.get('build_seconds') or 0:.1f} s (the process "
                     f"{b['process_seconds']:.1f} s)" if b["built"] else f"build  failed: {b.get('reason')}")
        print(lines[-1], flush=True)
    if "train" in sections:
        shapes = bench_train_step.SHAPES[:1] if args.quick else bench_train_step.SHAPES
        if args.shapes:
            shapes = [bench_train_step.SHAPES[int(i)] for i in args.shapes.split(",")]
        tf32 = {"off": [False], "on": [True], "both": [False, True]}[args.tf32] if cuda else [False]
        warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
        repeats = args.repeats or (3 if args.quick else 5)
        train = bench_train_step.run_table(device, args.kinds.split(","), shapes, warmup=warmup, repeats=repeats,
                                           tf32_settings=tf32, graphs=cuda, clock=args.clock)
        results["train"] = train
        lines += train_lines(train)
    if "decode" in sections:
        length, repeats = (60, 3) if args.quick else (200, 5)
        decode = bench_decoding.run_decoding(device, length, repeats, echo=False)
        results["decode"] = decode
        results["decode_limit"] = bench_decoding.physical_limit(decode)
        lines += decode_lines(decode)
        print("\n".join(decode_lines(decode)), flush=True)
    if "e2e" in sections:
        steps = args.steps or (30 if args.quick else 120)
        e2e = {"modes": e2e_in_child(steps, device.type), "steps": steps}
        if bench_end_to_end.CORPUS.is_file():
            with tempfile.TemporaryDirectory() as tmp:
                e2e["prepare"] = bench_end_to_end.prepare_throughput(bench_end_to_end.CORPUS, Path(tmp))
        results["e2e"] = e2e
        lines += e2e_lines(e2e)
    meta["load_average_end"] = _load()
    print(f"\nload average (1 min) at start {meta['load_average_start']}, at end {meta['load_average_end']} on "
          f"{os.cpu_count()} CPUs; torch {torch.__version__}, {meta['cpu_threads']} CPU threads, {args.clock} clock"
          f"{', ' + meta['gpu'] if cuda else ''}")
    print("ratio = torch.nn (or plain PyTorch) time / rnnkit time, higher is better; c/s = characters per second")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
