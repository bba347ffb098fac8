"""Decoding speed: characters per second of greedy, sampling, beam 5 and beam 5 + nucleus on a 2-layer LSTM, and
greedy's share of the physical limit.

At batch 1 a step reads every weight once (the recurrent ones, the upper layers' input weights, the decoder;
layer 0's input is one row of a table), so characters per second cannot exceed this machine's memory
bandwidth / the weight bytes of a step. The bandwidth is measured here, STREAM's way: a copy of 256 MB (more
than any cache) counts the bytes read and written. Weights of 12 MB fit in a 32 MB L3 cache, where nothing else
competes for it: then a step can beat that bound (a fraction above 1).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from rnnkit.generation.decoding import DecodeOptions, decode

VOCAB, EMBED, HIDDEN, LAYERS = 100, 64, 512, 2
EOS = 0

METHODS = {
    "greedy": dict(greedy=True),
    "sample": dict(),
    "beam 5": dict(beam=5),
    "beam 5 + nucleus 0.95": dict(beam=5, top_p=0.95),
}


class TorchLSTM(nn.Module):
    """Embedding -> cuDNN/oneDNN nn.LSTM -> linear, with the step() the decoders expect."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMBED)
        self.rnn = nn.LSTM(EMBED, HIDDEN, LAYERS)
        self.head = nn.Linear(HIDDEN, VOCAB)

    def step(self, tokens, state=None):
        """tokens (B,) -> (log_probs (B, V), (h, c) each (L, B, H))."""
        out, state = self.rnn(self.embedding(tokens).unsqueeze(0), state)  # (1, B, H)
        return self.head(out[0]).log_softmax(-1), state


def charlm():
    """rnnkit's own CharLM when it exists and imports, else None."""
    try:
        from rnnkit.models import CharLM

        return CharLM(VOCAB, cell="lstm", hidden_size=HIDDEN, num_layers=LAYERS, embedding_dim=EMBED)
    except Exception as err:  # a model being written concurrently may not import yet
        print(f"(skipping rnnkit CharLM: {type(err).__name__}: {err})")
        return None


def copy_bandwidth(device, megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes per second of copying a buffer larger than the caches (read + write counted), best of repeats."""
    src = torch.ones(megabytes * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / best


def step_weight_bytes(model) -> int:
    """Bytes of the weights one batch-1 decoding step of CharLM reads: every recurrent layer's W_hh and biases,
    W_ih of the layers above the first (the first reads one row of its (V, 4H) input table), the decoder."""
    rnn = model.rnn
    total = sum(p.numel() * p.element_size() for name, p in rnn.named_parameters() if not name.endswith("_l0")
                or name.startswith(("weight_hh", "bias_hh")))
    return total + sum(p.numel() * p.element_size() for p in model.decoder.parameters())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def time_method(model, device, kwargs, length, repeats) -> float:
    """Seconds to generate one sequence of exactly `length` characters (EOS never stops it): the fastest
    of `repeats` runs, since other load on a shared machine only ever adds time."""
    options = DecodeOptions(max_len=length, stop_at_eos=False, **kwargs)
    step = getattr(model, "step_logits", model.step)  # what `rnnkit generate` decodes with
    times = []
    for r in range(repeats + 1):  # the first run warms up allocators and kernels
        generator = torch.Generator(device=device).manual_seed(r)
        sync(device)
        start = time.perf_counter()
        hyps = decode(step, EOS, None, EOS, options, generator, device=device)
        sync(device)
        assert len(hyps[0].tokens) == length
        if r:
            times.append(time.perf_counter() - start)
    return min(times)


def bench(name, model, device, length, repeats, mkldnn=True, echo=True) -> dict[str, float]:
    """Characters per second of each method in METHODS for `model` on `device`."""
    model = model.to(device).eval()
    # oneDNN's fused RNN kernel is slow and erratic at batch 1-5 on small CPUs, so CPU also runs without it.
    saved, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, mkldnn
    try:
        seconds = {method: time_method(model, device, kwargs, length, repeats) for method, kwargs in METHODS.items()}
    finally:
        torch.backends.mkldnn.enabled = saved
    if echo:
        print(f"\n{name} on {device} ({length} characters, best of {repeats})")
        print(f"{'method':<24}{'chars/s':>10}{'x greedy':>10}")
        for method, s in seconds.items():
            print(f"{method:<24}{length / s:>10.0f}{s / seconds['greedy']:>10.2f}")
    return {method: length / s for method, s in seconds.items()}


def run_decoding(device, length: int, repeats: int, echo: bool = True) -> dict[str, dict[str, float]]:
    """{model name: {method: chars/s}} for torch.nn.LSTM (on CPU also with oneDNN off) and rnnkit's CharLM."""
    torch.manual_seed(0)
    models = {"torch.nn.LSTM": TorchLSTM()}
    own = charlm()
    if own is not None:
        models["rnnkit CharLM"] = own
    results = {"bandwidth_bytes_per_s": copy_bandwidth(device), "threads": torch.get_num_threads()}
    if own is not None:
        results["step_weight_bytes"] = step_weight_bytes(own)
    for name, model in models.items():
        results[name] = bench(name, model, device, length, repeats, echo=echo)
        if device.type == "cpu" and isinstance(model, TorchLSTM):
            results[f"{name}, oneDNN off"] = bench(f"{name}, oneDNN off", model, device, length, repeats,
                                                   mkldnn=False, echo=echo)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--length", type=int, default=200, help="characters to generate")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; vocab {VOCAB}, embedding {EMBED}, "
          f"hidden {HIDDEN}, {LAYERS} layers, random weights, fixed-length mode")
    for device in devices:
        limit = physical_limit(run_decoding(device, args.length, args.repeats))
        if limit:
            print(f"\ncopy bandwidth {limit['bandwidth_gb_s']:.1f} GB/s, {limit['weight_mb']:.1f} MB of weights per "
                  f"step: at most {limit['bound_chars_per_s']:,.0f} characters/s; greedy reaches "
                  f"{limit['greedy_fraction']:.2f} of it; beam 5 costs {limit['beam_vs_greedy']:.2f}x greedy per "
                  f"character")


def physical_limit(results: dict) -> dict:
    """From run_decoding's results: the bandwidth bound on greedy characters/s, greedy's fraction of it, and
    what a character of beam 5 costs in greedy characters (time per character, beam / greedy)."""
    if "rnnkit CharLM" not in results:
        return {}
    bound = results["bandwidth_bytes_per_s"] / results["step_weight_bytes"]
    ours = results["rnnkit CharLM"]
    return {"bandwidth_gb_s": results["bandwidth_bytes_per_s"] / 1e9, "weight_mb": results["step_weight_bytes"] / 2**20,
            "bound_chars_per_s": bound, "greedy_fraction": ours["greedy"] / bound,
            "beam_vs_greedy": ours["greedy"] / ours["beam 5"]}


if __name__ == "__main__":
    main()
