"""Micro-benchmark: forward+backward time of rnnkit's LSTM layer relative to torch.nn.LSTM.

Run as `python bench/bench_cells.py [--repeats N] [--device cpu|cuda] [--backend auto|reference|fused]`.
Both layers run side by side in the same process on the same inputs (input size 64, T=100, one layer);
each time is the median of several repeats after a warm-up. Ratio = rnnkit time / torch.nn time (lower
is better, 1.0 = parity). Absolute times drift between machines; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from rnnkit.models import LSTM

INPUT_SIZE, T = 64, 100
SHAPES = [(256, 32), (256, 64), (512, 32), (512, 64)]  # (hidden, batch)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fwd_bwd(module: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> float:
    """Median seconds of one forward + backward of `module` on x (T, B, D)."""
    times = []
    for i in range(warmup + repeats):
        module.zero_grad(set_to_none=True)
        _sync(x.device)
        start = time.perf_counter()
        out, _ = module(x)
        out.sum().backward()
        _sync(x.device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(device: torch.device, warmup: int, repeats: int, backend: str = "auto") -> list[tuple[int, int, float, float]]:
    """Rows (hidden, batch, rnnkit seconds, torch.nn seconds)."""
    rows = []
    for hidden, batch in SHAPES:
        torch.manual_seed(0)
        reference = nn.LSTM(INPUT_SIZE, hidden).to(device)
        ours = LSTM.from_torch(reference, backend=backend)
        x = torch.randn(T, batch, INPUT_SIZE, device=device, requires_grad=True)
        # Alternate the two so that slow drifts (thermal, other load) hit both alike.
        t_ours, t_ref = [], []
        for _ in range(3):
            t_ours.append(time_fwd_bwd(ours, x, warmup, repeats))
            t_ref.append(time_fwd_bwd(reference, x, warmup, repeats))
        rows.append((hidden, batch, statistics.median(t_ours), statistics.median(t_ref)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per round (3 rounds)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before each round")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default="auto", choices=["auto", "reference", "fused"], help="rnnkit's backend")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"LSTM 1 layer, input {INPUT_SIZE}, T={T}, fp32, forward+backward, backend {args.backend}")
    if device.type == "cuda":
        print(f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
              f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}")
    print(f"{'hidden':>6} {'batch':>5} {'rnnkit ms':>10} {'nn.LSTM ms':>10} {'ratio':>6}")
    for hidden, batch, ours, ref in run(device, args.warmup, args.repeats, args.backend):
        print(f"{hidden:>6} {batch:>5} {ours * 1e3:>10.1f} {ref * 1e3:>10.1f} {ours / ref:>6.2f}")


if __name__ == "__main__":
    main()
