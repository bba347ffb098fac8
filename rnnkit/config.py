"""Typed run configuration: one dataclass per YAML section, strict loading, `--set` overrides.

A YAML file only overrides the defaults below. Loading compares every key with the dataclass fields and
collects *all* problems (unknown keys with a did-you-mean, wrong types, out-of-range values, cross-field
conflicts) before raising one `ConfigError` that names the file and the dotted keys.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rnnkit.errors import ConfigError
from rnnkit.io.atomic import atomic_write_text
from rnnkit.io.reading import open_binary
from rnnkit.presets import resolve_config

TASKS = ("lm", "classify", "forecast")


def option(default: Any, doc: str, *, choices: tuple | None = None, low: float | None = None,
           high: float | None = None, low_open: bool = False, high_open: bool = False) -> Any:
    """A config field: its default, a one-line doc, and the values it accepts.

    `low`/`high` bound numbers (inclusive unless `low_open`/`high_open`); `choices` lists allowed values.
    """
    meta = {"doc": doc, "choices": choices, "low": low, "high": high,
            "low_open": low_open, "high_open": high_open}
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    """Where the data comes from and how it is cut into sequences."""

    source: str = option("reber", "registered source (reber, trump, pystdlib, metro, langid) or any name for a "
                                  "plain-text corpus given with data.path")
    path: str | None = option(None, "local file, folder of text files, http(s)/file URL used instead of the source's "
                                    "download, or - for the corpus prepared from standard input under this name")
    glob: str | None = option(None, "data.path is a folder: read the files whose name matches (default: every file; "
                                    "pystdlib: *.py)")
    exclude: str | None = option(None, "data.path is a folder: skip files and folders whose name matches one of "
                                       "these comma-separated patterns (e.g. site-packages,test)")
    charset: str = option("ascii", "character set kept after cleaning", choices=("ascii", "unicode"))
    lowercase: bool = option(False, "lower-case the text before building the vocabulary")
    mode: str = option("sentences", "LM sequences: padded sentences ending in EOS, fixed-length windows, or the "
                                    "corpus as one character stream (layout kept, state carried across batches)",
                       choices=("sentences", "windows", "stream"))
    min_len: int = option(2, "sentences shorter than this (characters) are dropped and counted", low=1)
    max_len: int = option(300, "longest sentence (characters) kept whole", low=1)
    too_long: str = option("split", "what to do with a longer sentence",
                           choices=("split", "drop", "error"))
    window: int = option(100, "window length (characters) in windows mode; in stream mode the characters "
                              "backpropagated through (truncated BPTT)", low=2)
    val_fraction: float = option(0.05, "fraction of sentences for validation (stream: of characters, after the "
                                       "training text)", low=0.0, high=0.5)
    test_fraction: float = option(0.05, "fraction of sentences for the test split (stream: of characters, at the "
                                        "end)", low=0.0, high=0.5)
    split_seed: int = option(0, "seed of the train/val/test split", low=0)
    num_samples: int = option(4000, "how many sequences a generated source (reber) makes", low=10, high=10_000_000)
    stations: int = option(0, "metro: keep the first N stations (0 = all); classify predicts which one", low=0)
    flows: str = option("both", "metro: inflow only, or inflow and outflow", choices=("in", "both"))
    normalise: str = option("station", "metro z-score statistics, fitted on the training days only: per station "
                                       "and flow, or per flow over all stations", choices=("station", "flow"))
    val_days: int = option(2, "metro: first days of the file's test tensor used for validation (PVCGN: 2)",
                           low=0)
    holdout_days: int = option(0, "metro: validate on the last N training days instead (0 = on data.val_days), left "
                                  "out of training, statistics and profiles; the test days do not change",
                               low=0)
    min_window: int = option(0, "classify: each training batch draws its length in min_window..window "
                                "(0 = always data.window)", low=0)
    history: int = option(4, "forecast: past quarter-hours read (PVCGN: 4)", low=1, high=72)
    horizon: int = option(4, "forecast: future quarter-hours predicted, 1..horizon (PVCGN: 4)", low=1, high=72)
    time_features: bool = option(True, "forecast: add the slot's time of day (sin, cos) to every input step")
    day_features: bool = option(False, "forecast: add a day-off flag (1 on Saturdays, Sundays and data.days_off) to "
                                       "every input step; needs data.first_date")
    profile_features: bool = option(False, "forecast: add every station's average flows over the training days at "
                                           "the quarter-hour forecast next (the daily profile, z-scored) to every "
                                           "input step")
    profile_by: str = option("all", "forecast: the days data.profile_features averages: all training days, or one "
                                    "profile per day type (working days, days off as data.day_features tells them; "
                                    "each day reads its own type's; needs data.first_date)",
                             choices=("all", "day_type"))
    first_date: str | None = option(None, "metro: the date (YYYY-MM-DD) of the file's first training day; its test "
                                          "days follow the last training day (HZMetro: 2019-01-01)")
    days_off: str = option("", "metro: public holidays, comma-separated YYYY-MM-DD dates, off like a Sunday "
                               "(HZMetro: 2019-01-01)")
    classes: str | None = option(None, "langid: comma-separated label=path pairs, e.g. fr=fr.txt,en=en.txt")


@dataclass
class ModelConfig:
    """The recurrent network."""

    cell: str = option("lstm", "recurrent cell", choices=("rnn", "gru", "lstm"))
    hidden_size: int = option(128, "hidden units per layer and direction", low=1)
    num_layers: int = option(1, "stacked recurrent layers", low=1, high=16)
    dropout: float = option(0.0, "dropout between layers and before the decoder", low=0.0, high=1.0,
                            high_open=True)
    embedding_dim: int = option(32, "embedding size; 0 = one-hot input followed by a linear layer", low=0)
    nonlinearity: str = option("tanh", "Elman RNN activation (model.cell: rnn only)", choices=("tanh", "relu"))
    bidirectional: bool = option(False, "read the sequence both ways (classification only)")
    bias: bool = option(True, "use bias vectors in the cells")
    forget_bias: float = option(1.0, "initial LSTM forget-gate bias (Jozefowicz et al. 2015)")
    backend: str = option("auto", "reference = readable loop, fused = fast path, auto = fused where supported",
                          choices=("auto", "reference", "fused"))
    forecaster: str = option("direct", "forecast: direct = all horizons at once after every input step; seq2seq = "
                                       "an encoder-decoder reading its own forecasts, one horizon at a time (DCRNN)",
                             choices=("direct", "seq2seq"))
    forecast_base: str = option("none", "forecast (direct): what the network's output is added to: nothing, the last "
                                        "value read (it forecasts the change), or the daily profile at each slot "
                                        "forecast (it forecasts the deviation; needs data.profile_features)",
                                choices=("none", "last_value", "profile"))
    members: int = option(1, "forecast: forecasters trained side by side from different initialisations, each on its "
                             "own error, whose forecasts are averaged (a seed ensemble in one run)", low=1, high=16)
    station_hidden: int = option(0, "forecast (direct): hidden units of a one-layer network of model.cell run on "
                                    "each station's own series, its weights shared by all stations, each station "
                                    "with a learned embedding of model.embedding_dim; its forecast is added to the "
                                    "network's (0 = none)", low=0)
    input_skip: bool = option(False, "forecast (direct): add a linear map of each step's inputs to its forecasts, "
                                     "beside the recurrent network's (LSTNet's autoregressive component)")


@dataclass
class TrainConfig:
    """The optimisation loop."""

    batch_size: int = option(32, "sequences per batch", low=1)
    lr: float = option(2e-3, "learning rate", low=0.0, low_open=True)
    optimizer: str = option("adam", "optimizer", choices=("adam", "adamw", "sgd", "rmsprop"))
    momentum: float = option(0.9, "momentum (sgd, rmsprop)", low=0.0, high=1.0, high_open=True)
    weight_decay: float = option(0.0, "weight decay", low=0.0)
    max_steps: int = option(1000, "optimizer steps to train for", low=1)
    clip_grad_norm: float = option(5.0, "clip the global gradient norm to this (0 = no clipping)", low=0.0)
    schedule: str = option("none", "learning-rate schedule",
                           choices=("none", "cosine", "step", "plateau"))
    warmup_steps: int = option(0, "linear warm-up steps before the schedule", low=0)
    step_size: int = option(1000, "steps between decays (schedule: step)", low=1)
    gamma: float = option(0.5, "decay factor (schedule: step, plateau)", low=0.0, high=1.0, low_open=True)
    early_stopping: int = option(0, "stop after this many evaluations without improvement (0 = never)", low=0)
    eval_every: int = option(200, "steps between validation passes", low=1)
    eval_batches: int = option(0, "validation batches per pass (0 = the whole split)", low=0)
    checkpoint_every: int = option(200, "steps between checkpoints", low=1)
    log_every: int = option(20, "steps between TensorBoard scalar points", low=1)
    histogram_every: int = option(200, "steps between gradient and gate histograms (0 = never)", low=0)
    teacher_forcing: float = option(1.0, "probability of feeding the true previous symbol instead of the model's "
                                         "own prediction, where any decay starts (1 = teacher forcing)",
                                    low=0.0, high=1.0)
    teacher_forcing_schedule: str = option("constant", "how that probability decays as training goes on "
                                                       "(scheduled sampling)",
                                           choices=("constant", "linear", "inverse_sigmoid"))
    teacher_forcing_min: float = option(0.0, "the probability the decay tends to (linear, inverse_sigmoid)",
                                        low=0.0, high=1.0)
    teacher_forcing_steps: int = option(1000, "linear: steps to reach teacher_forcing_min; inverse_sigmoid: "
                                              "twice the step where the decay is halfway", low=1)
    teacher_forcing_delay: int = option(0, "steps of pure teacher forcing before the decay starts", low=0)
    teacher_forcing_feed: str = option("sample", "what the model reads when not teacher forced: a sample of its "
                                                 "prediction or its argmax", choices=("sample", "greedy"))
    seed: int = option(0, "seed of initialisation, data order and dropout", low=0)
    device: str = option("auto", "where to train; auto picks CUDA when present", choices=("auto", "cpu", "cuda"))
    precision: str = option("fp32", "autocast precision on CUDA", choices=("fp32", "bf16", "fp16"))
    loss: str = option("mse", "forecast: regression loss on the normalised flows", choices=("mse", "huber"))
    huber_delta: float = option(1.0, "forecast: where the Huber loss turns from quadratic to linear", low=0.0,
                                low_open=True)
    loss_weights: str = option("equal", "forecast: every station and flow weighs the same in the loss (its z-score), "
                                        "or in proportion to its standard deviation, as in MAE/RMSE on counts, which "
                                        "busy stations dominate", choices=("equal", "station_scale"))
    supervise: str = option("all", "forecast, direct only: loss on the forecasts made after every input step, or "
                                   "after the last one only (seq2seq forecasts after the last one only)",
                            choices=("all", "last"))


@dataclass
class GenerateConfig:
    """Decoding defaults for `rnnkit generate` (each can be overridden on the command line)."""

    prompt: str = option("", "text the model reads before generating")
    # The upper bounds catch typos: a char model would run for hours, each sequence or beam is a tensor row.
    max_len: int = option(200, "most characters to generate", low=1, high=100_000)
    min_len: int = option(0, "fewest characters before EOS may end a sample", low=0)
    num: int = option(1, "sequences to return", low=1, high=10_000)
    greedy: bool = option(False, "always take the most probable character")
    temperature: float = option(1.0, "divide the logits by this before sampling", low=0.0, low_open=True)
    top_k: int | None = option(None, "sample among the k most probable characters", low=1)
    nucleus: float | None = option(None, "sample from the smallest set holding this much probability (top-p)",
                                   low=0.0, high=1.0, low_open=True)
    beam: int = option(1, "beam width (1 = no beam search)", low=1, high=10_000)
    length_penalty: float = option(1.0, "finished beams score sum log-prob / length ** this")
    early_stopping: str = option("never", "when beam search stops, as Hugging Face's early_stopping: never (once no "
                                          "live beam can beat the beam-th best ended one), true (once beam "
                                          "hypotheses have ended), false (HF's heuristic at the current length)",
                                 choices=("never", "true", "false"))
    no_repeat_ngram: int = option(0, "forbid repeating any n-gram of this size (0 = off)", low=0)
    repetition_penalty: float = option(1.0, "make already generated characters less likely (> 1) or more (< 1): "
                                            "their logits divided by this when positive, multiplied when negative",
                                       low=0.0, low_open=True)
    penalise_prompt: bool = option(False, "repetition_penalty and no_repeat_ngram also count the prompt's "
                                          "characters, as Hugging Face does (default: generated ones only)")
    fixed_length: bool = option(False, "generate exactly max_len characters and never stop at EOS")
    seed: int = option(0, "seed of the sampler", low=0)


@dataclass
class RunConfig:
    """Where the run lives."""

    name: str | None = option(None, "run folder name under run.dir (default: the config file's name)")
    dir: str = option("runs", "folder holding the run folders")


@dataclass
class Config:
    """A whole rnnkit configuration."""

    task: str = option("lm", "what the model learns", choices=TASKS)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def teacher_forcing_problems(cfg: Config) -> list[str]:
    """Scheduled sampling only applies to tasks that feed their outputs back, and decays downwards."""
    t, problems = cfg.train, []
    scheduled = t.teacher_forcing < 1.0 or t.teacher_forcing_schedule != "constant"
    if scheduled and cfg.task not in ("lm", "forecast"):
        problems.append(f"train.teacher_forcing: only task: lm or forecast feed their predictions back (this is "
                        f"task: {cfg.task}); use 1.0 with teacher_forcing_schedule: constant")
    if scheduled and cfg.task == "forecast" and cfg.model.forecaster == "direct":
        problems.append("train.teacher_forcing: the direct forecaster (model.forecaster: direct) never reads its own "
                        "predictions; use model.forecaster: seq2seq, or 1.0 with teacher_forcing_schedule: constant")
    if t.teacher_forcing_schedule != "constant" and t.teacher_forcing_min > t.teacher_forcing:
        problems.append(f"train.teacher_forcing_min: {t.teacher_forcing_min} is larger than train.teacher_forcing "
                        f"{t.teacher_forcing}; the schedule decays from teacher_forcing to teacher_forcing_min")
    return problems


def stream_problems(cfg: Config) -> list[str]:
    """data.mode: stream is a language model over the whole text: no sentences to cut, no scheduled sampling."""
    d, problems = cfg.data, []
    if d.mode != "stream":
        return problems
    if cfg.task != "lm":
        problems.append(f"data.mode: stream only applies to task: lm (this is task: {cfg.task}); use sentences or "
                        f"windows")
    defaults = DataConfig()
    for key in ("min_len", "max_len", "too_long", "split_seed"):
        if getattr(d, key) != getattr(defaults, key):
            problems.append(f"data.{key}: only applies to sentences (data.mode: sentences or windows); a stream keeps "
                            f"the whole text in order, leave it out")
    if cfg.train.teacher_forcing < 1.0 or cfg.train.teacher_forcing_schedule != "constant":
        problems.append("train.teacher_forcing: data.mode: stream trains teacher forced; use 1.0 with "
                        "teacher_forcing_schedule: constant")
    return problems


def calendar_problems(d: DataConfig) -> list[str]:
    """The metro calendar keys: well-formed dates, and a first date wherever day features need one."""
    problems = []
    for key, text in (("first_date", d.first_date or ""), ("days_off", d.days_off)):
        for item in filter(None, (part.strip() for part in text.split(","))):
            try:
                datetime.date.fromisoformat(item)
            except ValueError:
                problems.append(f"data.{key}: {item!r} is not a date; write YYYY-MM-DD, e.g. 2019-01-01")
    if d.first_date is not None and "," in d.first_date:
        problems.append(f"data.first_date: {d.first_date!r} is one date (YYYY-MM-DD), not a list")
    if d.day_features and d.first_date is None:
        problems.append("data.day_features: needs data.first_date, the date of the first training day (YYYY-MM-DD), "
                        "to tell weekends")
    if d.profile_by == "day_type" and d.first_date is None:
        problems.append("data.profile_by: day_type needs data.first_date, the date of the first training day "
                        "(YYYY-MM-DD), to tell working days from days off")
    return problems


def cross_field_problems(cfg: Config) -> list[str]:
    """Conflicts between fields, phrased with the keys the user types."""
    problems = []
    if cfg.model.nonlinearity != "tanh" and cfg.model.cell != "rnn":
        problems.append(f"model.nonlinearity: only applies to model.cell: rnn (got cell {cfg.model.cell!r})")
    if cfg.model.bidirectional and cfg.task != "classify":
        problems.append("model.bidirectional: only task: classify can read the future; use false")
    if cfg.model.forecast_base != "none" and (cfg.task != "forecast" or cfg.model.forecaster != "direct"):
        problems.append("model.forecast_base: only applies to task: forecast with model.forecaster: direct (the "
                        "seq2seq decoder reads its own forecasts back); use none")
    if cfg.model.forecast_base == "profile" and not cfg.data.profile_features:
        problems.append("model.forecast_base: profile needs data.profile_features: true (the profile it starts from)")
    if cfg.model.input_skip and (cfg.task != "forecast" or cfg.model.forecaster != "direct"):
        problems.append("model.input_skip: only applies to task: forecast with model.forecaster: direct; use false")
    if cfg.model.station_hidden and (cfg.task != "forecast" or cfg.model.forecaster != "direct"):
        problems.append("model.station_hidden: only applies to task: forecast with model.forecaster: direct; use 0")
    if cfg.model.station_hidden and cfg.model.embedding_dim == 0:
        problems.append("model.station_hidden: needs model.embedding_dim > 0, the size of the station embedding")
    if cfg.train.loss_weights != "equal" and cfg.task != "forecast":
        problems.append(f"train.loss_weights: only applies to task: forecast (this is task: {cfg.task}); leave it out")
    if cfg.model.members > 1 and cfg.task != "forecast":
        problems.append(f"model.members: only applies to task: forecast (this is task: {cfg.task}); leave it out")
    if cfg.model.forecaster != "direct" and cfg.task != "forecast":
        problems.append(f"model.forecaster: only applies to task: forecast (this is task: {cfg.task}); leave it out")
    problems += teacher_forcing_problems(cfg)
    if cfg.data.val_fraction + cfg.data.test_fraction >= 0.9:
        problems.append("data.val_fraction + data.test_fraction: must leave at least 10% for training")
    if cfg.data.min_window > cfg.data.window:
        problems.append(f"data.min_window: {cfg.data.min_window} is larger than data.window {cfg.data.window}")
    if cfg.task == "forecast" and cfg.data.history + cfg.data.horizon > 73:
        problems.append(f"data.history + data.horizon: {cfg.data.history + cfg.data.horizon} slots do not fit in "
                        f"one day of 73 quarter-hours")
    problems += stream_problems(cfg)
    problems += calendar_problems(cfg.data)
    for key in ("day_features", "profile_features"):
        if getattr(cfg.data, key) and cfg.task != "forecast":
            problems.append(f"data.{key}: only applies to task: forecast (this is task: {cfg.task}); leave it out")
    if cfg.data.profile_by != "all" and not cfg.data.profile_features:
        problems.append(f"data.profile_by: {cfg.data.profile_by} only applies with data.profile_features: true")
    if cfg.data.min_len > cfg.data.max_len:
        problems.append(f"data.min_len: {cfg.data.min_len} is larger than data.max_len {cfg.data.max_len}")
    if cfg.generate.min_len > cfg.generate.max_len:
        problems.append(f"generate.min_len: {cfg.generate.min_len} is larger than generate.max_len "
                        f"{cfg.generate.max_len}")
    if cfg.generate.greedy and cfg.generate.beam > 1:
        problems.append("generate.greedy: cannot be combined with generate.beam > 1")
    if cfg.generate.num > cfg.generate.beam > 1:
        problems.append(f"generate.num: {cfg.generate.num} is more than generate.beam {cfg.generate.beam}")
    if cfg.model.backend == "fused" and cfg.train.precision != "fp32":
        problems.append(f"model.backend: fused has no mixed-precision (autocast) path, and train.precision is "
                        f"{cfg.train.precision}; use model.backend: auto (fused where it can run) or reference")
    name = cfg.run.name
    if name is not None and (name.strip() in ("", ".", "..") or "/" in name or "\x00" in name):
        problems.append(f"run.name: {_show(name)} must not be empty and names one folder under run.dir "
                        f"(no '/', not '.' or '..')")
    return problems


# ---------------------------------------------------------------- strict conversion of YAML values

def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if args:
        return " or ".join(names[a] for a in args) + " or null"
    return names[tp]


def _convert(value: Any, tp: Any, choices: tuple | None = None) -> Any:
    """Convert a YAML value to the field type `tp`, or raise ValueError with what was expected.

    A YAML boolean is the string true/false for a string field whose choices include that word
    (generate.early_stopping: true)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(value, inner, choices)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            converted = float(value) if abs(value) < 1e308 else float("inf")  # float(10**400) overflows
            if not math.isfinite(converted):  # .nan / .inf pass every range check: refuse them here
                raise ValueError(f"expected a finite number, got {_show(value)}")
            return converted
        if isinstance(value, str):
            # PyYAML reads `1e-3` (no dot) as a string; accept any spelling float() accepts.
            try:
                converted = float(value)
            except ValueError:
                pass
            else:
                if math.isfinite(converted):
                    return converted
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, datetime.date):  # YAML reads 2019-01-01 as a date
            return value.isoformat()
        if isinstance(value, bool) and choices and str(value).lower() in choices:
            return str(value).lower()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    raise ValueError(f"expected {_type_name(tp)}, got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _range_problem(value: Any, meta: dict) -> str | None:
    if value is None:
        return None
    if meta["choices"] is not None and value not in meta["choices"]:
        return f"{_show(value)} is not one of {', '.join(map(str, meta['choices']))}"
    low, high = meta["low"], meta["high"]
    if low is not None and (value < low or (meta["low_open"] and value == low)):
        return f"{_show(value)} must be {'>' if meta['low_open'] else '>='} {low}"
    if high is not None and (value > high or (meta["high_open"] and value == high)):
        return f"{_show(value)} must be {'<' if meta['high_open'] else '<='} {high}"
    return None


def value_problems(section: Any, names: Any) -> dict[str, str]:
    """{field name: what is wrong} for the named fields of a config section whose value is out of range."""
    meta = {f.name: f.metadata for f in dataclasses.fields(section)}
    found = {name: _range_problem(getattr(section, name), meta[name]) for name in names if name in meta}
    return {name: problem for name, problem in found.items() if problem}


def _suggest(key: str, known: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(known)}"


def _build(cls: type, values: Any, prefix: str, problems: list[str]) -> Any:
    """Instantiate dataclass `cls` from a mapping, appending every problem found to `problems`."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        where = prefix.rstrip(".") or "the file"
        problems.append(f"{where}: expected a mapping of keys to values, got {_show(values)}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            problems.append(f"{dotted}: unknown key{_suggest(str(key), list(fields), prefix)}")
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{dotted}.", problems)
            continue
        try:
            converted = _convert(value, tp, fields[key].metadata.get("choices"))
        except ValueError as err:
            problems.append(f"{dotted}: {err}")
            continue
        problem = _range_problem(converted, fields[key].metadata)
        if problem:
            problems.append(f"{dotted}: {problem}")
            continue
        kwargs[key] = converted
    return cls(**kwargs)


# ---------------------------------------------------------------- public entry points

def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `section.key=value` into (["section", "key"], YAML-parsed value)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part.strip() for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. --set train.lr=0.001")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # not YAML: keep the text; the field's type check reports it if it is wrong
    return [part.strip() for part in key.split(".")], value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `--set` overrides to a raw YAML mapping (validated later with the rest)."""
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {'.'.join(path[:-1])} is not a section")
            node = child
        node[path[-1]] = value
    return raw


def config_from_dict(raw: Any, source: str = "config", overridden: set[str] | frozenset[str] = frozenset()) -> Config:
    """Validate a raw mapping into a `Config`; raise one ConfigError listing every problem.

    overridden: the dotted keys that came from `--set`; their problems say so, since the file does not
    hold the value the message talks about.
    """
    problems: list[str] = []
    cfg = _build(Config, raw, "", problems)
    if not problems:
        problems = cross_field_problems(cfg)
    if problems:
        problems = [f"--set {p}" if p.split(":", 1)[0] in overridden else p for p in problems]
        listing = "; ".join(problems)
        raise ConfigError(f"{source}: {listing}")
    return cfg


def read_yaml(path: Path) -> Any:
    """Read a YAML config file, turning unreadable or non-YAML files into ConfigError."""
    with open_binary(path, "config file", ConfigError, expected="a YAML config file") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected YAML)") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text file (expected YAML)")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping such as 'task: lm'")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (task, data, model, train, "
                          f"generate, run), got {type(raw).__name__}")
    return raw


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config file (or a shipped preset by name), apply `--set` overrides, validate strictly."""
    source = resolve_config(path)
    raw = apply_overrides(read_yaml(source), list(overrides))
    overridden = {".".join(parse_override(text)[0]) for text in overrides}
    label = str(source) if source == Path(path) else f"preset {path}"  # not the site-packages path
    cfg = config_from_dict(raw, label, overridden)
    if cfg.run.name is None:
        cfg.run.name = source.stem
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config (every field, defaults included) as YAML."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def describe_fields() -> list[tuple[str, Any, str]]:
    """(dotted key, default, doc) for every field: the config reference in the README is made from this."""
    return [(key, f.default, f.metadata["doc"]) for key, f in _all_fields()]


def _all_fields() -> list[tuple[str, dataclasses.Field]]:
    rows = []
    for section in dataclasses.fields(Config):
        tp = typing.get_type_hints(Config)[section.name]
        if dataclasses.is_dataclass(tp):
            rows.extend((f"{section.name}.{f.name}", f) for f in dataclasses.fields(tp))
        else:
            rows.append((section.name, section))
    return rows


def _allowed(meta: dict) -> str:
    """`lstm, gru, rnn` or `> 0`, `[0, 1)`: what a field accepts, as the reference table shows it."""
    if meta["choices"]:
        return ", ".join(str(choice) for choice in meta["choices"])
    low, high = meta["low"], meta["high"]
    if low is not None and high is not None:
        return f"{'(' if meta['low_open'] else '['}{low:g}, {high:g}{')' if meta['high_open'] else ']'}"
    if low is not None:
        return f"{'>' if meta['low_open'] else '>='} {low:g}"
    if high is not None:
        return f"{'<' if meta['high_open'] else '<='} {high:g}"
    return ""


def reference_markdown() -> str:
    """The config reference table of README.md; tests/test_readme.py keeps the two identical.

    Regenerate the README block with: python tests/test_readme.py
    """
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key, f in _all_fields():
        default = "" if f.default is None else f"`{f.default}`"
        rows.append(f"| `{key}` | {default} | {_allowed(f.metadata)} | {f.metadata['doc']} |")
    return "\n".join(rows)
