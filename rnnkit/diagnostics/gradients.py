"""Gradient diagnostics behind `inspect-grads`: dL/dh_t through time, parameter norms, gates, spectra.

The gradient-through-time profile
---------------------------------
For every recurrent layer (and direction) we take the hidden states h_t the layer really computed
(`record_hidden`, see `models/layers.py`) and ask autograd for the TOTAL dL/dh_t: what reaches h_t
through the output at t and through every later step of the recurrence. The profile is indexed by the
*distance* d = (length - 1) - t of the step from the end of its sequence, so that sequences of different
lengths line up at the loss.

- `loss_at="last"` (default): L = cross-entropy of each sequence's last real step, averaged over the
  batch. dL/dh_t is then purely the signal that travelled d steps back: the course's ||prod W^T D_t||.
- `loss_at="all"`: L = the training objective (mean over every real step). Each h_t also receives its
  own step's loss, so the profile shows what the optimiser sees, not the pure long-range decay; a
  vanishing network looks flat there. Use "last" to diagnose.

Averaging: at each distance, the norm ||dL/dh_t[b]||_2 over the hidden units is taken per sequence and
the *arithmetic mean over the sequences* (of every batch) is reported. A mean of per-sequence norms (not
the norm of the mean gradient) does not let gradients of different sequences cancel, and is the quantity
gradient clipping and the course's bound talk about.

The decay rate is a least-squares fit of log10(norm) against d over [0, span]: `step_factor` = 10**slope
is the factor the gradient is multiplied by per step further back (< 1 shrinking), with its R². `span`
is the farthest distance still covered by at least a quarter of the sequences (all of them for windows),
so that a few long sentences do not decide the verdict. `attenuation` = norm at the loss (d = 0) over
norm at d = span: "first step of backpropagation over last step"; 1e6 means six orders of magnitude lost.

Verdict (see `VANISHING_ORDERS`, `STEP_FACTOR_LOW`, ...): vanishing when the gradient loses at least
3 orders of magnitude over the span, or when the fit shows a sustained (R² >= 0.8, span >= 10) per-step
factor <= 0.9, i.e. at least ~4.6 orders lost per 100 steps; exploding symmetrically (gains 3 orders, or
factor >= 1.1); stable otherwise. Three orders of magnitude is where a gradient signal is drowned by the
O(1) contributions of nearby steps in a summed loss; the per-step rule catches short sequences whose span
is too short to accumulate three orders but whose trend would within about 70 steps.

Computations run on a float64 copy of the model by default: a vanishing Elman profile reaches 1e-40
within ~150 steps, below float32's normal range, and the caller's model is left untouched.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.errors import UsageError

# ---------------------------------------------------------------- verdict thresholds (documented above)

VANISHING_ORDERS = 3.0  # attenuation >= 10**3 over the span -> vanishing
EXPLODING_ORDERS = -3.0  # attenuation <= 10**-3 (a gain of 1000x) -> exploding
STEP_FACTOR_LOW = 0.9  # sustained per-step factor at or below this -> vanishing
STEP_FACTOR_HIGH = 1.1  # sustained per-step factor at or above this -> exploding
MIN_R2 = 0.8  # a fit is "sustained" when it explains this much of the log-norm's variance...
MIN_FIT_SPAN = 10  # ...over at least this many steps
MIN_COVERAGE = 0.25  # a distance enters the fit when this fraction of the sequences reaches it
SATURATION = (0.05, 0.95)  # a sigmoid gate value outside this interval is saturated
TOP_SINGULAR = 3  # singular values reported per matrix
HISTOGRAM_CAP = 200_000  # gate values kept per gate for TensorBoard histograms

# Gate kinds: sigmoid gates lie in (0, 1); tanh ones in (-1, 1) and are judged on (a + 1) / 2, so that
# "saturated" means the same distance from the asymptotes; relu "saturation" is a dead unit (a == 0).
GATE_KINDS = {
    "input": "sigmoid", "forget": "sigmoid", "output": "sigmoid", "reset": "sigmoid", "update": "sigmoid",
    "cell": "tanh", "candidate": "tanh",
}
GATE_BLOCKS = {"rnn": ("all",), "gru": ("reset", "update", "candidate"),
               "lstm": ("input", "forget", "cell", "output")}


# ---------------------------------------------------------------- losses per task


@dataclass
class StepLosses:
    """What a task's loss function returns for one batch."""

    values: Tensor  # (T, B) loss of each step of each sequence (anything on steps without a loss)
    lengths: Tensor  # (B,) real steps of each sequence; step lengths-1 is the "last" one
    objective: Tensor  # scalar: what training minimises (its gradient is what gets clipped)


def lm_step_losses(model: nn.Module, batch) -> StepLosses:
    """Next-character cross-entropy; batch = (inputs (T, B), targets (T, B), lengths (B,))."""
    inputs, targets, lengths = batch
    logits, _ = model(inputs, lengths=lengths)  # (T, B, V)
    T, B, V = logits.shape
    values = F.cross_entropy(logits.reshape(T * B, V), targets.reshape(T * B), reduction="none").view(T, B)
    mask = torch.arange(T, device=lengths.device)[:, None] < lengths[None, :]  # (T, B)
    objective = (values * mask).sum() / mask.sum().clamp(min=1)
    return StepLosses(values, lengths, objective)


# A classifier or forecaster plugs in here: a function (model, batch) -> StepLosses whose model has its
# recurrent layer as `.rnn`. A classifier puts its loss on step lengths-1 and any value elsewhere.
TASK_LOSSES: dict[str, Callable[[nn.Module, object], StepLosses]] = {"lm": lm_step_losses}


# ---------------------------------------------------------------- report


@dataclass
class LayerProfile:
    """||dL/dh_t|| of one layer (and direction) by distance from the loss, with its fit and verdict."""

    name: str  # "layer0", "layer1.reverse"
    norms: list[float]  # index d = distance from the end of the sequence; mean of per-sequence norms
    counts: list[int]  # sequences that reached each distance
    span: int  # farthest distance used by the fit and the attenuation
    norm_at_loss: float  # d = 0
    norm_far: float  # d = span
    attenuation: float | None  # norm_at_loss / norm_far; None when norm_far underflowed to 0
    step_factor: float | None  # 10 ** slope of log10(norm) against d: change per step back in time
    fit_r2: float | None
    verdict: str  # vanishing, stable, exploding, or undetermined (span < 2)
    evidence: str


@dataclass
class ParamGrad:
    """Gradient norm of one parameter under the training objective (before clipping)."""

    name: str
    shape: list[int]
    norm: float  # mean over batches
    max: float


@dataclass
class ClipStats:
    """Global gradient norm (all parameters) before and after clip_grad_norm_(max_norm), per batch."""

    max_norm: float  # 0 = no clipping configured
    before_mean: float
    before_max: float
    after_mean: float
    after_max: float
    clipped_batches: int
    batches: int


@dataclass
class GateStats:
    """Activation statistics of one gate over every real step, sequence and unit."""

    name: str  # "layer0.forget"
    kind: str  # sigmoid, tanh, relu
    mean: float
    std: float
    frac_low: float  # below 0.05 (tanh: (a+1)/2 below 0.05; relu: exactly 0)
    frac_high: float  # above 0.95 (tanh: (a+1)/2 above 0.95; relu: unused, 0)
    saturated: float  # frac_low + frac_high


@dataclass
class Spectrum:
    """Spectral radius and largest singular values of a recurrent matrix (or one gate's H x H block)."""

    name: str  # "weight_hh_l0" (whole) or "weight_hh_l0.forget" (block)
    shape: list[int]
    spectral_radius: float | None  # max |eigenvalue|; None for the non-square whole of a gated cell
    singular_values: list[float]


@dataclass
class GradReport:
    """Everything inspect-grads measures on one model; `to_json` / `from_json` for scripts."""

    label: str
    cell: str
    num_layers: int
    hidden_size: int
    loss_at: str
    batches: int
    seq_len: int  # longest sequence seen
    loss: float  # mean training objective over the batches
    layers: list[LayerProfile]
    params: list[ParamGrad]
    clip: ClipStats
    gates: list[GateStats]
    spectra: list[Spectrum]
    # For TensorBoard histograms only (not in JSON): mean gradient per parameter, gate values.
    samples: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> dict:
        data = dataclasses.asdict(dataclasses.replace(self, samples={}))
        del data["samples"]
        data["ratios"] = {p.name: p.attenuation for p in self.layers}  # the headline numbers
        return _finite(data)

    @classmethod
    def from_json(cls, data: dict) -> GradReport:
        data = {k: v for k, v in data.items() if k != "ratios"}
        data["layers"] = [LayerProfile(**p) for p in data["layers"]]
        data["params"] = [ParamGrad(**p) for p in data["params"]]
        data["clip"] = ClipStats(**data["clip"])
        data["gates"] = [GateStats(**g) for g in data["gates"]]
        data["spectra"] = [Spectrum(**s) for s in data["spectra"]]
        return cls(**data)


def _finite(value):
    """NaN and infinities -> None, recursively: strict JSON has no spelling for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# ---------------------------------------------------------------- pieces, testable on their own


def fit_decay(norms: list[float], span: int) -> tuple[float | None, float | None]:
    """Least-squares fit of log10(norm) against d in [0, span] -> (10 ** slope, R²); zeros are skipped."""
    points = [(d, math.log10(n)) for d, n in enumerate(norms[:span + 1]) if n > 0 and math.isfinite(n)]
    if len(points) < 2:
        return None, None
    xs = torch.tensor([p[0] for p in points], dtype=torch.float64)
    ys = torch.tensor([p[1] for p in points], dtype=torch.float64)
    xc, yc = xs - xs.mean(), ys - ys.mean()
    slope = float((xc * yc).sum() / (xc * xc).sum())
    ss_tot = float((yc * yc).sum())
    ss_res = float(((yc - slope * xc) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0  # a perfectly flat profile is perfectly fitted
    return 10.0 ** slope, r2


def judge(norm_at_loss: float, norm_far: float, span: int, step_factor: float | None,
          r2: float | None) -> tuple[str, str]:
    """(verdict, evidence) from the attenuation over the span and the fitted per-step factor."""
    if span < 2:
        return "undetermined", f"only {span + 1} step(s) before the loss: nothing to measure"
    if norm_far <= 0:
        orders = math.inf
    elif norm_at_loss <= 0:
        orders = -math.inf
    else:
        orders = math.log10(norm_at_loss / norm_far)
    sustained = step_factor is not None and r2 is not None and r2 >= MIN_R2 and span >= MIN_FIT_SPAN
    fit = "no fit" if step_factor is None else f"x{step_factor:.3g}/step (R² {r2:.2f})"
    where = f"{norm_far:.2e} at {span} steps back vs {norm_at_loss:.2e} at the loss"
    lost = "underflow to 0" if math.isinf(orders) else f"{orders:+.1f} orders"
    evidence = f"{where} ({lost}); fit {fit}"
    if orders >= VANISHING_ORDERS:
        return "vanishing", evidence + f"; lost >= {VANISHING_ORDERS:g} orders"
    if orders <= EXPLODING_ORDERS:
        return "exploding", evidence + f"; grew >= {-EXPLODING_ORDERS:g} orders"
    if sustained and step_factor <= STEP_FACTOR_LOW:
        return "vanishing", evidence + f"; sustained factor <= {STEP_FACTOR_LOW}"
    if sustained and step_factor >= STEP_FACTOR_HIGH:
        return "exploding", evidence + f"; sustained factor >= {STEP_FACTOR_HIGH}"
    return "stable", evidence


def layer_profile(name: str, sums: Tensor, counts: Tensor) -> LayerProfile:
    """Summarise accumulated per-distance sums of norms and sequence counts (both (D,))."""
    reached = counts > 0
    last = int(reached.nonzero().max()) if reached.any() else 0
    norms = (sums[:last + 1] / counts[:last + 1].clamp(min=1)).tolist()
    covered = (counts >= MIN_COVERAGE * counts[0].clamp(min=1)).nonzero()
    span = int(covered.max()) if len(covered) else 0
    step_factor, r2 = fit_decay(norms, span)
    near, far = norms[0], norms[span]
    verdict, evidence = judge(near, far, span, step_factor, r2)
    attenuation = near / far if far > 0 else None
    return LayerProfile(name, norms, counts[:last + 1].long().tolist(), span, near, far, attenuation,
                        step_factor, r2, verdict, evidence)


def spectra_of(recurrent: nn.Module, cell: str) -> list[Spectrum]:
    """Spectral radius and top singular values of every weight_hh, whole and per gate block."""
    blocks = GATE_BLOCKS.get(cell, ("all",))
    out = []
    for pname, w in recurrent.named_parameters():
        if not pname.startswith("weight_hh"):
            continue
        w = w.detach().double().cpu()  # (G*H, H)
        H = w.shape[1]
        out.append(matrix_spectrum(pname, w))
        if len(blocks) > 1:
            for k, gate in enumerate(blocks):
                out.append(matrix_spectrum(f"{pname}.{gate}", w[k * H:(k + 1) * H]))  # (H, H)
    return out


def matrix_spectrum(name: str, w: Tensor) -> Spectrum:
    """Spectrum of one matrix: max |eigenvalue| when square, and its TOP_SINGULAR largest singular values."""
    radius = float(torch.linalg.eigvals(w).abs().max()) if w.shape[0] == w.shape[1] else None
    sv = torch.linalg.svdvals(w)[:TOP_SINGULAR].tolist()
    return Spectrum(name, list(w.shape), radius, sv)


def gate_stats(name: str, values: Tensor, kind: str) -> GateStats:
    """Statistics of a flat tensor of gate activations (already restricted to real steps)."""
    v = values.double()
    if v.numel() == 0:
        return GateStats(name, kind, math.nan, math.nan, math.nan, math.nan, math.nan)
    low, high = SATURATION
    if kind == "relu":
        frac_low, frac_high = float((v <= 0).double().mean()), 0.0
    else:
        u = (v + 1) / 2 if kind == "tanh" else v  # tanh values judged on the same (0, 1) scale
        frac_low, frac_high = float((u < low).double().mean()), float((u > high).double().mean())
    return GateStats(name, kind, float(v.mean()), float(v.std()) if v.numel() > 1 else 0.0,
                     frac_low, frac_high, frac_low + frac_high)


def _gate_kind(gate_key: str, nonlinearity: str) -> tuple[str, str]:
    """("layer0.preactivation" -> activation kind and display name); Elman pre-activations become h."""
    base = gate_key.split(".")[1]
    if base == "preactivation":
        return nonlinearity, gate_key.replace("preactivation", "activation")
    return GATE_KINDS.get(base, "sigmoid"), gate_key


# ---------------------------------------------------------------- the measurement


def find_recurrent(model: nn.Module) -> nn.Module:
    """The recurrent stack of a model: `.rnn`, else its first submodule with `record_hidden`."""
    rnn = getattr(model, "rnn", None)
    if rnn is not None and hasattr(rnn, "record_hidden"):
        return rnn
    for module in model.modules():
        if hasattr(module, "record_hidden"):
            return module
    raise UsageError("inspect-grads: the model has no rnnkit recurrent layer (RNN, GRU or LSTM)")


def _to(batch, device):
    return tuple(b.to(device) if isinstance(b, Tensor) else b for b in batch)


def _profile_grads(hidden: dict[str, list], loss: Tensor, retain: bool) -> dict[str, Tensor]:
    """dL/dh_t for every recorded layer: {"layer0": (T, B, H)}, zeros where autograd found no path."""
    names = list(hidden)
    flat = [h for name in names for h in hidden[name]]
    grads = torch.autograd.grad(loss, flat, retain_graph=retain, allow_unused=True)
    out, i = {}, 0
    for name in names:
        n = len(hidden[name])
        out[name] = torch.stack([torch.zeros_like(h) if g is None else g
                                 for h, g in zip(hidden[name], grads[i:i + n], strict=True)])  # (T, B, H)
        i += n
    return out


def _accumulate_distances(grads: Tensor, lengths: Tensor, sums: Tensor, counts: Tensor) -> None:
    """Add per-sequence norms of grads (T, B, H) into sums/counts indexed by d = lengths-1-t."""
    T = grads.shape[0]
    norms = grads.norm(dim=-1)  # (T, B)
    t = torch.arange(T, device=grads.device)[:, None]
    dist = lengths[None, :].to(grads.device) - 1 - t  # (T, B)
    real = dist >= 0
    sums.index_add_(0, dist[real].cpu(), norms[real].double().cpu())
    counts.index_add_(0, dist[real].cpu(), torch.ones(int(real.sum()), dtype=torch.float64))


def gradient_profile(model: nn.Module, batches: Iterable, loss_at: str = "last", clip: float = 0.0,
                     task: str = "lm", label: str = "model", dtype: torch.dtype | None = torch.float64,
                     max_len: int | None = None) -> GradReport:
    """Measure the gradient diagnostics of `model` on `batches` (see the module docstring).

    batches: what the task's loss function takes (lm: (inputs (T, B), targets (T, B), lengths (B,))).
    loss_at: "last" (loss of each sequence's last step) or "all" (the training objective).
    clip: the configured max global norm (0 = none) for the before/after clipping figures.
    dtype: run on a copy in this dtype (None = the model's own); the caller's model is not modified.
    """
    if loss_at not in ("last", "all"):
        raise UsageError(f"--loss-at: {loss_at!r} is not one of last, all")
    if task not in TASK_LOSSES:
        raise UsageError(f"inspect-grads: no gradient diagnostics for task {task!r} "
                         f"(available: {', '.join(TASK_LOSSES)})")
    step_losses = TASK_LOSSES[task]
    model = copy.deepcopy(model)
    if dtype is not None:
        model = model.to(dtype)
    model.eval()  # no dropout: the profile should not depend on a random mask
    device = next(model.parameters()).device
    rnn = find_recurrent(model)
    cell = getattr(model, "cell", type(rnn).__name__.lower())
    nonlinearity = getattr(rnn, "nonlinearity", "tanh")
    rnn.record_hidden, rnn.record_gates = True, True
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    sums: dict[str, Tensor] = {}
    counts: dict[str, Tensor] = {}
    pnorms: dict[str, list[float]] = {n: [] for n, _ in params}
    grad_sum = {n: torch.zeros_like(p) for n, p in params}
    before, after, losses = [], [], []
    gate_values: dict[str, list[Tensor]] = {}
    seq_len, n_batches = 0, 0
    for batch in batches:
        batch = _to(batch, device)
        model.zero_grad(set_to_none=True)
        out = step_losses(model, batch)
        lengths = out.lengths.to(device)
        T = out.values.shape[0]
        seq_len = max(seq_len, T)
        if loss_at == "last":
            idx = (lengths - 1).clamp(min=0)
            profile_loss = out.values.gather(0, idx[None, :]).mean()  # (1, B) -> scalar
        else:
            profile_loss = out.objective
        grads = _profile_grads(rnn.last_hidden, profile_loss, retain=True)
        size = max_len or T
        for name, g in grads.items():
            if name not in sums:
                sums[name] = torch.zeros(size, dtype=torch.float64)
                counts[name] = torch.zeros(size, dtype=torch.float64)
            if T > sums[name].numel():  # a longer batch than any before: grow the accumulators
                grow = T - sums[name].numel()
                sums[name] = torch.cat([sums[name], torch.zeros(grow, dtype=torch.float64)])
                counts[name] = torch.cat([counts[name], torch.zeros(grow, dtype=torch.float64)])
            _accumulate_distances(g.detach(), lengths, sums[name], counts[name])

        # Parameter gradients of the training objective: what the optimiser would clip and apply.
        out.objective.backward()
        losses.append(float(out.objective.detach()))
        for n, p in params:
            g = torch.zeros_like(p) if p.grad is None else p.grad
            pnorms[n].append(float(g.norm()))
            grad_sum[n] += g
        total = torch.nn.utils.clip_grad_norm_([p for _, p in params], clip if clip > 0 else math.inf)
        before.append(float(total))
        after.append(math.sqrt(sum(float(p.grad.norm()) ** 2 for _, p in params if p.grad is not None)))

        mask = torch.arange(T, device=device)[:, None] < lengths[None, :]  # (T, B)
        for key, g in rnn.last_gates.items():
            gate_values.setdefault(key, []).append(g[mask].flatten().cpu())  # real steps only
        rnn.last_hidden, rnn.last_gates = {}, {}  # free the graph before the next batch
        n_batches += 1
    if n_batches == 0:
        raise UsageError("inspect-grads: no batches to measure (the split is empty?)")

    layers = [layer_profile(name, sums[name], counts[name]) for name in sums]
    param_grads = [ParamGrad(n, list(p.shape), sum(pnorms[n]) / n_batches, max(pnorms[n])) for n, p in params]
    clipped = sum(b > clip for b in before) if clip > 0 else 0
    clip_stats = ClipStats(float(clip), sum(before) / n_batches, max(before), sum(after) / n_batches, max(after),
                           clipped, n_batches)
    gates, samples = [], {}
    for key, chunks in gate_values.items():
        values = torch.cat(chunks)
        kind, shown = _gate_kind(key, nonlinearity)
        if kind in ("tanh", "relu") and shown != key:  # Elman: judge h = f(pre), not the pre-activation
            values = torch.tanh(values) if kind == "tanh" else torch.relu(values)
        gates.append(gate_stats(shown, values, kind))
        samples[f"gates/{shown}"] = values[:: max(1, values.numel() // HISTOGRAM_CAP)].float()  # strided subsample
    for n, _ in params:
        samples[f"grad/{n}"] = (grad_sum[n] / n_batches).detach().float().cpu()
    return GradReport(label=label, cell=cell, num_layers=rnn.num_layers, hidden_size=rnn.hidden_size,
                      loss_at=loss_at, batches=n_batches, seq_len=seq_len, loss=sum(losses) / n_batches,
                      layers=layers, params=param_grads, clip=clip_stats, gates=gates,
                      spectra=spectra_of(rnn, cell), samples=samples)
