"""The README's speed table, in Markdown, from one or two `bench/run.py --json` files (the second run's ratios
are shown after the first's).

    python bench/speed_table.py bench.json [bench2.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn": "Elman RNN"}


def ratio(row: dict, variant: str) -> float | None:
    return row["torch"]["ms"] / row[variant]["ms"] if variant in row else None


def fmt(*values) -> str:
    return " / ".join("-" if v is None else f"{v:.2f}" for v in values)


def train_table(runs: list[dict]) -> list[str]:
    first = runs[0]["train"]
    shapes = list(dict.fromkeys((r["B"], r["T"], r["H"]) for r in first))
    lines = ["| cell, (B, T, H) = | " + " | ".join(f"({b},{t},{h})" for b, t, h in shapes) + " |",
             "|---" * (len(shapes) + 1) + "|"]
    for kind, name in CELLS.items():
        rows = [{(r["B"], r["T"], r["H"]): r for r in run["train"] if r["kind"] == kind} for run in runs]
        if not rows[0]:
            continue
        auto = [fmt(*(ratio(by[s], by[s]["auto"]) for by in rows if s in by)) for s in shapes]
        lines.append(f"| {name}: auto ({rows[0][shapes[0]]['auto']}){', two runs' if len(runs) > 1 else ''} | "
                     + " | ".join(auto) + " |")
        others = [fmt(ratio(rows[0][s], "reference"), ratio(rows[0][s], "fused")) for s in shapes]
        lines.append(f"| {name}: reference / Python fused | " + " | ".join(others) + " |")
        peaks = [(rows[0][s][rows[0][s]["auto"]]["peak_mb"], rows[0][s]["torch"]["peak_mb"]) for s in shapes]
        cells = " | ".join(f"{a:.0f} / {t:.0f}" for a, t in peaks)
        lines.append(f"| {name}: peak MB, auto / torch.nn | {cells} |")
    return lines


def other_lines(runs: list[dict]) -> list[str]:
    lines = []
    limits = [run["decode_limit"] for run in runs if run.get("decode_limit")]
    if limits:
        bounds = [f"{d['bandwidth_gb_s']:.0f} GB/s / {d['weight_mb']:.1f} MB = {d['bound_chars_per_s']:,.0f}"
                  for d in limits]
        versus = [r["decode"]["rnnkit CharLM"]["greedy"] / r["decode"]["torch.nn.LSTM"]["greedy"]
                  for r in runs if r.get("decode")]
        lines.append("- Decoding (2-layer 512 LSTM, batch 1): greedy at "
                     + ", ".join(f"{d['greedy_fraction']:.2f}" for d in limits)
                     + " of memory bandwidth / weight bytes per step (" + ", ".join(bounds)
                     + " characters/s); beam 5 costs " + ", ".join(f"{d['beam_vs_greedy']:.2f}" for d in limits)
                     + "x greedy per character; greedy against torch.nn.LSTM called once per step: x"
                     + ", ".join(f"{v:.1f}" for v in versus) + ".")
    e2e = [run["e2e"]["modes"] for run in runs if run.get("e2e", {}).get("modes")]
    if e2e:
        parts = [f"{mode} " + ", ".join(f"{m[mode]['ratio']:.2f}" for m in e2e if mode in m) for mode in e2e[0]]
        lines.append("- `rnnkit train` (configs/trump_lstm.yaml) / the plain PyTorch script, characters per second: "
                     + "; ".join(parts) + ".")
    builds = [run["build"] for run in runs if run.get("build", {}).get("built")]
    if builds:
        lines.append("- Building the compiled kernels from scratch: "
                     + ", ".join(f"{b['build_seconds']:.0f} s" for b in builds) + ".")
    return lines


def main() -> None:
    runs = [json.loads(Path(p).read_text()) for p in sys.argv[1:]]
    if not runs:
        sys.exit(__doc__)
    meta = runs[0]["meta"]
    when = ", ".join(run["meta"]["started"][:16].replace("T", " ") for run in runs)
    print(f"Measured {when} on a {meta['cpus']}-CPU {meta['machine']} (torch {meta['torch']}, "
          f"{meta['cpu_threads']} thread(s), {meta['clock']} clock; load average "
          + ", ".join(f"{r['meta']['load_average_start']}-{r['meta']['load_average_end']}" for r in runs) + "):\n")
    print("\n".join(train_table(runs)))
    print()
    print("\n".join(other_lines(runs)))


if __name__ == "__main__":
    main()
