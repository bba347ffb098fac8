"""Benchmark: one training step (forward + backward + SGD) of rnnkit's recurrent layers against torch.nn.

One command, CPU or CUDA alike:

    python bench/bench_train_step.py [--quick] [--kinds lstm,gru,rnn] [--shapes 0,1] [--repeats N]
                                     [--device cpu|cuda] [--threads N] [--clock wall|cpu] [--tf32 off|on|both]
                                     [--json out.json]

Model: embedding (vocab 100 -> 64) -> one recurrent layer -> a fixed linear read-out of the outputs.
Variants, with identical weights, measured side by side in the same process (warm-up, then interleaved
repeats; the table shows the fastest repeat, robust to other load on a shared machine, the JSON the median too):
  torch      torch.nn.LSTM/GRU/RNN (oneDNN on CPU, cuDNN on CUDA)
  reference  rnnkit.models.LSTM/GRU/RNN(backend="reference"): the readable loop, autograd per op
  fused      backend="fused" on the Python Functions of fused.py (the compiled kernels switched off)
  compiled   (CPU, when they build) backend="fused" on the compiled kernels (rnnkit/models/extension)
  fused+graph (CUDA only) fused with compiled pointwise steps, the whole step captured as a CUDA graph
`auto` is not timed apart: each row names the variant backend="auto" takes there (`LSTM.path`).
Printed ratios are torch time / variant time (higher is better, 1.0 = parity). `--clock cpu` times with the
process's CPU time (user + system) in place of the wall clock: with `--threads 1` it leaves out the time other
processes hold the core, the steadiest figure on a shared machine.
Memory: on CUDA the peak of torch.cuda.max_memory_allocated during a step; on CPU the peak RSS growth during
a step (Linux: VmHWM after resetting it through /proc/self/clear_refs; else ru_maxrss), in a child process
whose allocator returns what is freed (see PEAK_ENV), with the compiled variant's buffer pool emptied first.
`saved` = bytes kept for backward (autograd saved tensors, by storage). Shapes are (B, T, H); `--quick` runs
the smallest only. On CUDA, `--tf32` sets torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
to the same value for both sides (`both` runs the table twice); the header says which.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from rnnkit.models import LAYERS, extension, fused  # noqa: E402

SHAPES = [(32, 100, 256), (64, 100, 512), (128, 256, 512), (64, 100, 1024)]  # (B, T, H)
EMBED, VOCAB = 64, 100
TORCH_CLASS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


# --- Models ---------------------------------------------------------------------------------------


class Net(nn.Module):
    """Embedding -> recurrent layer -> dot product with a fixed read-out (the loss)."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.rnn = rnn

    def forward(self, tokens, readout):
        out, _ = self.rnn(self.embed(tokens))  # (T, B, H)
        return (out * readout).mean()


def build(kind: str, hidden: int, device, compiled: bool = False) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    nets = {"torch": Net(TORCH_CLASS[kind](EMBED, hidden))}
    for backend in ("reference", "fused") + (("compiled",) if compiled else ()):
        nets[backend] = Net(LAYERS[kind](EMBED, hidden, backend="fused" if backend == "compiled" else backend))
    for net in nets.values():
        net.load_state_dict(nets["torch"].state_dict())
    return {name: net.to(device) for name, net in nets.items()}


def auto_variant(kind: str, hidden: int, tokens, device) -> str:
    """The variant that backend "auto" runs for this input: reference, fused (Python) or compiled."""
    layer = LAYERS[kind](EMBED, hidden).to(device)
    x = torch.zeros(*tokens.shape, EMBED, device=device)
    return {"reference": "reference", "python fused": "fused", "compiled": "compiled"}[layer.path(x)]


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # process CPU time: every thread, user + system


# --- Measuring ------------------------------------------------------------------------------------


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(net, tokens, readout, python_fused: bool = False):
    """One SGD step; python_fused: with the compiled kernels switched off (the Python fused Functions)."""
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)

    def step():
        with extension.disabled() if python_fused else contextlib.nullcontext():
            opt.zero_grad(set_to_none=True)
            loss = net(tokens, readout)
            loss.backward()
            opt.step()
        return loss

    return step


def make_graphed_step(net, tokens, readout):
    from rnnkit.models.cuda_graphs import GraphedStep

    opt = torch.optim.SGD(net.parameters(), lr=1e-3)

    def step(tok, ro):
        opt.zero_grad(set_to_none=True)
        loss = net(tok, ro)
        loss.backward()
        opt.step()
        return loss

    graphed = GraphedStep(step)
    return lambda: graphed(tokens, readout)


def _rss_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_memory_mb(step, device, compiled: bool = False) -> float:
    """Peak memory growth during one step, MB (see the module docstring for the method)."""
    if compiled:
        torch.ops.rnnkit_cpu.pool_release(-1)  # the buffers it keeps between steps count as the step's
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = _rss_kb("VmRSS")
        step()
        return (_rss_kb("VmHWM") - before) / 1024
    except (OSError, TypeError):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


# glibc keeps freed memory for reuse, so that RSS growth misses allocations that reuse it (and the compiled
# kernels keep their large buffers between steps on purpose). The CPU peaks are therefore measured in a child
# process in which every allocation of 64 KB or more is a mapping of its own, returned to the system when
# freed, after a warm-up step; the compiled variant's pool is emptied first, so that its buffers count.
PEAK_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def cpu_peaks(kind: str, shape) -> dict[str, float]:
    """{variant: peak MB} of one step for kind at shape (B, T, H), from a child process (see PEAK_ENV)."""
    env = {**os.environ, **PEAK_ENV, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    spec = f"{kind}:{','.join(map(str, shape))}"
    done = subprocess.run([sys.executable, __file__, "--peaks", spec], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.splitlines()[-1])


def peaks_child(spec: str) -> None:
    kind, dims = spec.split(":")
    B, T, H = (int(v) for v in dims.split(","))
    device = torch.device("cpu")
    nets = build(kind, H, device, extension.load())
    gen = torch.Generator().manual_seed(1)
    tokens, readout = torch.randint(0, VOCAB, (T, B), generator=gen), torch.randn(T, B, H, generator=gen)
    peaks = {}
    for name, net in nets.items():
        step = make_step(net, tokens, readout, python_fused=name == "fused")
        step()
        peaks[name] = peak_memory_mb(step, device, compiled=name == "compiled")
    print(json.dumps(peaks))


def saved_mb(net, tokens, readout, python_fused: bool = False) -> float:
    """Bytes autograd keeps for backward (unique storages), MB: the activation memory of a step."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            extension.disabled() if python_fused else contextlib.nullcontext():
        loss = net(tokens, readout)
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    del loss
    return sum(n for ptr, n in storages.items() if ptr not in params) / 2**20


def bench_shape(kind, shape, device, warmup, repeats, graphs, clock: str = "wall") -> dict:
    B, T, H = shape
    now = CLOCKS[clock]
    compiled = device.type == "cpu" and extension.load()
    nets = build(kind, H, device, compiled)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (T, B), generator=gen).to(device)
    readout = torch.randn(T, B, H, generator=gen).to(device)
    steps = {name: make_step(net, tokens, readout, python_fused=name == "fused") for name, net in nets.items()}
    if graphs:
        fused.compile_pointwise(True)
        g_net = build(kind, H, device)["fused"]
        steps["fused+graph"] = make_graphed_step(g_net, tokens, readout)
        nets["fused+graph"] = g_net
    times = {name: [] for name in steps}
    for step in steps.values():
        for _ in range(warmup):
            step()
    sync(device)
    for _ in range(repeats):  # interleaved, so that slow drifts hit every variant alike
        for name, step in steps.items():
            sync(device)
            start = now()
            step()
            sync(device)
            times[name].append(now() - start)
    row = {"kind": kind, "B": B, "T": T, "H": H, "clock": clock, "auto": auto_variant(kind, H, tokens, device)}
    peaks = cpu_peaks(kind, shape) if device.type == "cpu" else {}
    for name, step in steps.items():
        row[name] = {
            "ms": min(times[name]) * 1e3,  # other load only ever adds time: the fastest repeat is the cleanest
            "median_ms": statistics.median(times[name]) * 1e3,
            "max_ms": max(times[name]) * 1e3,
            "peak_mb": peaks[name] if name in peaks else peak_memory_mb(step, device),
            "saved_mb": saved_mb(nets[name], tokens, readout, name == "fused") if name != "fused+graph" else None,
        }
    if graphs:
        fused.compile_pointwise(False)
    return row


def print_row(row: dict) -> None:
    base = row["torch"]["ms"]
    cells = [f"{row['kind']:>4} {row['B']:>4} {row['T']:>4} {row['H']:>5} auto={row['auto']}"]
    for name in [k for k in row if isinstance(row[k], dict)]:
        r = row[name]
        saved = f"{r['saved_mb']:6.1f}" if r["saved_mb"] is not None else "     -"
        cells.append(f"{name}: {r['ms']:8.1f} ms x{base / r['ms']:4.2f} peak {r['peak_mb']:6.1f} saved {saved}")
    print(" | ".join(cells), flush=True)


def run_table(device, kinds, shapes, warmup: int, repeats: int, tf32_settings=(False,), graphs: bool = False,
              echo: bool = True, clock: str = "wall") -> list[dict]:
    """Rows of `bench_shape` for every (tf32 setting, kind, shape); `echo` prints each as it comes."""
    results = []
    for tf32 in tf32_settings:
        if device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
            if echo:
                print(f"cudnn.allow_tf32 = cuda.matmul.allow_tf32 = {tf32} (both sides)")
        if echo:
            print("kind    B    T     H | variant: best ms, x = torch time / variant time, peak/saved MB")
        for kind in kinds:
            for shape in shapes:
                row = bench_shape(kind, shape, device, warmup, repeats, graphs, clock)
                row["tf32"] = tf32 if device.type == "cuda" else None
                if echo:
                    print_row(row)
                results.append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--kinds", default="lstm,gru,rnn", help="comma-separated: lstm, gru, rnn")
    parser.add_argument("--shapes", default=None, help="indices into (B,T,H) " + str(SHAPES) + ", e.g. 0,1")
    parser.add_argument("--quick", action="store_true", help="smallest shape only, few repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per variant (interleaved)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tf32", choices=["off", "on", "both"], default="both", help="CUDA only")
    parser.add_argument("--no-graphs", action="store_true", help="CUDA: skip the fused+graph variant")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall time or process CPU time")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--peaks", default=None, help=argparse.SUPPRESS)  # the child of cpu_peaks: KIND:B,T,H
    args = parser.parse_args()
    if args.peaks:
        return peaks_child(args.peaks)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = [SHAPES[0]] if args.quick else SHAPES
    if args.shapes:
        shapes = [SHAPES[int(i)] for i in args.shapes.split(",")]
    repeats = args.repeats or (3 if args.quick else 7)
    tf32_settings = [False]
    if device.type == "cuda":
        tf32_settings = {"off": [False], "on": [True], "both": [False, True]}[args.tf32]
    graphs = device.type == "cuda" and not args.no_graphs
    meta = {
        "torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "embed": EMBED, "vocab": VOCAB, "repeats": repeats,
        "clock": args.clock,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }
    print(json.dumps(meta))
    results = run_table(device, args.kinds.split(","), shapes, args.warmup, repeats, tf32_settings, graphs,
                        clock=args.clock)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
