"""A trained model as plain torch.nn modules (Embedding, RNN/GRU/LSTM, Linear) and the JSON that rebuilds them.

rnnkit's layers carry torch.nn's parameter names and gate order (`rnnkit.models.layers`), so the export is a
copy of tensors under the names an `nn.ModuleDict` of the described modules expects:

    modules = nn.ModuleDict({name: getattr(nn, m["type"])(**m["args"]) for name, m in spec["modules"].items()})
    modules.load_state_dict(safetensors.torch.load_file("model.safetensors"))

The one-hot language model (`model.embedding_dim: 0`) becomes an nn.Embedding holding `input_proj.weight`
transposed: one_hot(x) @ W.T is row x of W.T. `plain_forward` is how the modules are called per task; the
description says it in words for readers without rnnkit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.data.vocab import EOS, PAD, SPECIALS
from rnnkit.errors import UsageError
from rnnkit.models.heads import Forecaster, SequenceClassifier
from rnnkit.models.lm import CharLM

FORMAT = "rnnkit-torch-export"
FORMAT_VERSION = 1
SUPPORTED = ("task: lm (CharLM), task: classify (SequenceClassifier) and task: forecast with model.forecaster: "
             "direct (Forecaster)")
PROBE_STEPS, PROBE_BATCH = 7, 3  # the random batch on which the export is compared with rnnkit's model


@dataclass
class PlainModel:
    """The export in memory: what model.json says, the rebuilt torch.nn modules and their tensors."""

    spec: dict
    modules: nn.ModuleDict  # eval mode, on the CPU
    tensors: dict[str, Tensor]  # modules' state_dict, contiguous CPU tensors

    @property
    def parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())


def plain_parts(model: nn.Module) -> dict[str, nn.Module]:
    """The model's parts as torch.nn modules holding its weights, in the order data flows through them.

    Raises UsageError for a model that is not one embedding (or none) + one recurrent stack + one linear layer.
    """
    if not isinstance(model, (CharLM, SequenceClassifier, Forecaster)):
        raise UsageError(f"export: a {type(model).__name__} cannot be written as plain torch.nn modules; "
                         f"supported: {SUPPORTED}")
    if isinstance(model, Forecaster) and (model.skip is not None or model.stations is not None):
        key = "model.input_skip adds a linear map" if model.skip is not None else "model.station_hidden adds a network"
        raise UsageError(f"export: {key} of the inputs beside the recurrent stack, which plain torch.nn modules in "
                         f"sequence cannot express; supported: {SUPPORTED}")
    parts: dict[str, nn.Module] = {}
    if hasattr(model, "embedding"):
        parts["embedding"] = model.embedding
    elif isinstance(model, CharLM):  # one-hot input: the Linear's columns are the embedding's rows
        parts["embedding"] = nn.Embedding.from_pretrained(model.input_proj.weight.detach().t(), freeze=False)
    parts["rnn"] = model.rnn.to_torch()
    parts["decoder"] = model.decoder
    return parts


def module_spec(module: nn.Module) -> dict:
    """{"type": the torch.nn class name, "args": its constructor's arguments}: `getattr(nn, type)(**args)`."""
    if isinstance(module, nn.Embedding):
        args = {"num_embeddings": module.num_embeddings, "embedding_dim": module.embedding_dim}
    elif isinstance(module, nn.Linear):
        args = {"in_features": module.in_features, "out_features": module.out_features,
                "bias": module.bias is not None}
    elif isinstance(module, nn.RNNBase):
        args = {"input_size": module.input_size, "hidden_size": module.hidden_size,
                "num_layers": module.num_layers, "bias": module.bias, "bidirectional": module.bidirectional}
        if isinstance(module, nn.RNN):
            args["nonlinearity"] = module.nonlinearity
    else:
        raise TypeError(f"no export spec for {type(module).__name__}")
    return {"type": type(module).__name__, "args": args}


def build_modules(specs: dict[str, dict]) -> nn.ModuleDict:
    """The modules model.json describes, freshly initialised (load the tensors next)."""
    return nn.ModuleDict({name: getattr(nn, m["type"])(**m["args"]) for name, m in specs.items()})


def plain_model(loaded) -> PlainModel:
    """A loaded run (rnnkit.runs.loaded.LoadedRun) as plain torch.nn modules with its description.

    The modules are rebuilt from the description alone, then given the tensors, as a user of the files would.
    """
    parts = plain_parts(loaded.model)
    specs = {name: module_spec(part) for name, part in parts.items()}
    tensors = {f"{name}.{key}": value.detach().to("cpu").contiguous()
               for name, part in parts.items() for key, value in part.state_dict().items()}
    modules = build_modules(specs)
    modules.load_state_dict(tensors)  # strict: the names the description implies are exactly the tensors
    spec = {"format": FORMAT, "format_version": FORMAT_VERSION, "task": loaded.cfg.task,
            "source": {"run": str(loaded.path), "which": loaded.which, "step": loaded.step},
            "modules": specs, **_task_description(loaded)}
    return PlainModel(spec, modules.eval(), tensors)


# --- what the inputs and outputs mean, per task ------------------------------------------------------------------

def _task_description(loaded) -> dict:
    model = loaded.model
    if isinstance(model, CharLM):
        return {"vocab": _vocab(loaded.vocab), "inputs": _lm_inputs(loaded.cfg.data),
                "outputs": "logits (T, B, V): log_softmax over V at step t is log p(character t+1 | characters "
                           "up to t); rnnkit's decoders never emit PAD (they set its log-probability to -inf)"}
    if isinstance(model, SequenceClassifier):
        return _classifier_description(loaded)
    return _forecaster_description(loaded)


def _vocab(vocab) -> dict:
    return {"pad": PAD, "eos": EOS, "first_char_id": len(SPECIALS), "chars": list(vocab.chars)}


def _lm_inputs(data_cfg) -> dict:
    """How rnnkit feeds text to a language model trained with this data.mode (see rnnkit.evaluation.score)."""
    how = {
        "sentences": "one sentence per sequence, read from a zero state with EOS as its first input; the model "
                     "predicts the sentence then EOS (a newline ends a sentence)",
        "windows": "sentences joined by EOS (a newline is EOS), cut into windows of window + 1 characters "
                   "overlapping by one, each read from a zero state; the first character is context only",
        "stream": "one character stream (a newline is a character, there is no EOS); the first character is read "
                  "from a zero state as context, the state is carried through the whole text",
    }[data_cfg.mode]
    inputs = {"tokens": "(T, B) long, time-major: character ids", "data_mode": data_cfg.mode,
              "start": "eos" if data_cfg.mode == "sentences" else None,
              "newline": "char" if data_cfg.mode == "stream" else "eos", "how": how}
    if data_cfg.mode == "windows":
        inputs["window"] = data_cfg.window
    return inputs


def _classifier_description(loaded) -> dict:
    info, model = loaded.task.info, loaded.model
    dirs = model.rnn.num_directions
    out = {"classes": list(info["classes"]),
           "outputs": f"logits (B, C) = decoder(the top layer's final h_n, {dirs} direction(s) concatenated, "
                      f"forward first); with padding, pack the batch (pack_padded_sequence) so that each "
                      f"sequence stops at its own last step, as rnnkit does"}
    if info["kind"] == "text":
        from rnnkit.data.vocab import Vocab
        from rnnkit.tasks.classify import VOCAB_FILE

        out["vocab"] = _vocab(Vocab.load(loaded.path / VOCAB_FILE))
        out["inputs"] = {"tokens": "(T, B) long, time-major: the character ids of a line, without start or end "
                                   "symbol"}
    else:
        out["inputs"] = {"x": f"(T, B, {info['input_size']}) float, time-major: one station's flows per "
                              f"quarter-hour, z-scored with normaliser mean and std (station, flow)"}
        out["normaliser"] = {"mean": info["mean"], "std": info["std"], "per": loaded.cfg.data.normalise}
    return out


def _forecaster_description(loaded) -> dict:
    from rnnkit.tasks.forecast import extra_features

    info, d = loaded.task.info, loaded.cfg.data
    n = info["stations"] * info["flows"]
    x = (f"(T, B, {n + extra_features(d, n)}) float, time-major: per quarter-hour the {info['stations']} stations x "
         f"{info['flows']} flows, z-scored with normaliser mean and std, flattened station-major")
    if d.time_features:
        x += (", then sin and cos of angle = (5.5 + slot / 4) * 2 * pi / 24 (slot 0 = 05:30, one per "
              "quarter-hour)")
    if d.day_features:
        x += f", then 1.0 on a Saturday, a Sunday or a holiday ({d.days_off or 'none listed'}), else 0.0"
    if d.profile_features:
        kinds = 2 if d.profile_by == "day_type" else 1
        holidays = d.days_off or "none listed"
        which = "[0]" if kinds == 1 else f"[1 on a Saturday, a Sunday or a holiday ({holidays}), else 0]"
        x += (f", then the {n} values of profile{which} at slot + 1, profile ({kinds}, 73, {n}) being the training "
              f"days' average counts at each quarter-hour" + (" (working days, days off)" if kinds == 2 else "") +
              ", z-scored like the counts")
    return {"horizon": d.horizon, "history": d.history, "stations": info["stations"], "flows": info["flows"],
            "time_features": d.time_features, "day_features": d.day_features,
            **({"profile": info["profile"]} if d.profile_features else {}),
            "normaliser": {"mean": info["mean"], "std": info["std"], "per": d.normalise},
            "inputs": {"x": x},
            "outputs": f"forecasts (T, B, {d.horizon}, {n}) = decoder(rnn outputs) viewed (T, B, horizon, "
                       f"stations * flows){_BASES[loaded.cfg.model.forecast_base]}: after each step t, the next "
                       f"{d.horizon} steps in z-scores (counts = z * std + mean); the forecast of a window is row "
                       f"T - 1"}


_BASES = {  # model.forecast_base: what rnnkit adds to the decoder's output
    "none": "",
    "last_value": " + the z-scored values read at step t, at every horizon k",
    "profile": " + the z-scored profile (as in the inputs) at slot + k for horizon k = 1..horizon",
}


# --- calling the modules, and checking them against rnnkit ---------------------------------------------------------

def plain_forward(modules: nn.ModuleDict, spec: dict, x: Tensor) -> Tensor:
    """The exported modules on a batch, as model.json describes: LM logits (T, B, V), classifier logits (B, C),
    forecasts (T, B, K, N)."""
    if "embedding" in modules:
        x = modules["embedding"](x)  # (T, B, E)
    out, state = modules["rnn"](x)  # (T, B, H * dirs)
    if spec["task"] == "lm":
        return modules["decoder"](out)  # (T, B, V)
    if spec["task"] == "classify":
        h = state[0] if isinstance(state, tuple) else state  # (L * dirs, B, H)
        dirs = 2 if spec["modules"]["rnn"]["args"]["bidirectional"] else 1
        return modules["decoder"](torch.cat(list(h[-dirs:]), dim=-1))  # (B, dirs * H) -> (B, C)
    y = modules["decoder"](out)  # (T, B, K * N)
    return y.view(*y.shape[:2], spec["horizon"], -1)  # (T, B, K, N)


def probe_batch(model: nn.Module, spec: dict, seed: int = 0) -> Tensor:
    """A random batch of PROBE_STEPS x PROBE_BATCH inputs of the kind the model reads (ids or floats)."""
    generator = torch.Generator().manual_seed(seed)
    if "embedding" in spec["modules"]:
        vocab_size = spec["modules"]["embedding"]["args"]["num_embeddings"]
        return torch.randint(EOS, vocab_size, (PROBE_STEPS, PROBE_BATCH), generator=generator)  # (T, B)
    size = spec["modules"]["rnn"]["args"]["input_size"]
    return torch.randn(PROBE_STEPS, PROBE_BATCH, size, generator=generator)  # (T, B, D)


def rnnkit_forward(model: nn.Module, x: Tensor) -> Tensor:
    """rnnkit's own model on the same batch, in the layout of `plain_forward`."""
    out = model(x)
    return out[0] if isinstance(out, tuple) else out  # CharLM returns (logits, state)


@torch.no_grad()
def largest_difference(loaded, plain: PlainModel) -> float:
    """Largest absolute difference between rnnkit's outputs and the exported modules' on a random batch."""
    model = loaded.model
    x = probe_batch(model, plain.spec)
    ours = rnnkit_forward(model, x.to(loaded.device)).float().cpu()
    theirs = plain_forward(plain.modules, plain.spec, x).float()
    return float((ours - theirs).abs().max())
