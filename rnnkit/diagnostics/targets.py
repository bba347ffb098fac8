"""What `inspect-grads` inspects: a trained run or a freshly initialised model from a config (or a preset),
once per `--compare` variant, with the batches its gradients are measured on."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rnnkit.device import pick_device
from rnnkit.diagnostics.gradients import TASK_LOSSES, GradReport, gradient_profile
from rnnkit.errors import CheckpointError, ConfigError, UsageError


@dataclass
class Target:
    """A model to inspect, where it came from, and where its TensorBoard events go."""

    label: str
    cfg: object  # rnnkit.config.Config
    model: nn.Module
    vocab: object  # rnnkit.data.Vocab
    tb_dir: Path


def _is_config(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def load_target(target: str | None, overrides: list[str] | tuple[str, ...] = (), length: int | None = None,
                which: str = "best", device: str = "cpu", compared: tuple[str, ...] = ()) -> Target:
    """A trained run (folder; None = the most recent run) or a freshly initialised model (YAML config, or the
    name of a shipped preset; an existing path wins).

    length: inspect windows of this many characters (data.mode windows), whatever the config says.
    compared: one variant of `compare_variants` (`--set` texts from --compare), applied after `overrides`;
    it is named in the label ("quickstart model.cell=rnn") and in the TensorBoard folder.
    """
    from rnnkit.config import apply_overrides, config_from_dict, load_config, parse_override
    from rnnkit.models import CharLM
    from rnnkit.presets import find_preset, preset_names

    path = Path(target) if target else None
    if path is not None and not path.exists() and not _is_config(path) and find_preset(target) is None:
        raise CheckpointError(f"{path}: no such run folder, config file or preset; presets: "
                              f"{', '.join(preset_names())}")
    if path is not None and (_is_config(path) or not path.exists()):
        cfg = _named_load(lambda: load_config(path, [*overrides, *compared]), compared)
        _with_length(cfg, length)
        if cfg.task not in TASK_LOSSES:
            raise UsageError(f"{path}: inspect-grads measures task {', '.join(TASK_LOSSES)}, not task: {cfg.task}")
        vocab = _corpus(cfg).vocab
        torch.manual_seed(cfg.train.seed)  # the same fresh weights as `rnnkit train` with this config
        model = CharLM.from_config(cfg.model, len(vocab)).to(pick_device(device))
        tb_dir = Path(cfg.run.dir) / "inspect-grads" / path.stem
        return Target(_label(cfg.run.name or path.stem, compared), cfg, model, vocab, _tb_dir(tb_dir, compared))
    from rnnkit.runs.loaded import load

    if path is not None and path.is_file():
        raise UsageError(f"{path}: expected a run folder or a .yaml/.yml config file")
    run = load(path, which=which, device=device)
    run_dir, cfg, vocab, model = run.path, run.cfg, run.vocab, run.model
    for option, texts in (("--set", overrides), ("--compare", compared)):
        if any(text.strip().startswith("model.") for text in texts):
            raise UsageError(f"{option} model.*: a trained run's weights fix its model; use a config to try another")
    if overrides or compared:
        changed = [*overrides, *compared]
        raw = apply_overrides(cfg.to_dict(), changed)
        keys = {".".join(parse_override(text)[0]) for text in changed}
        cfg = _named_load(lambda: config_from_dict(raw, str(run_dir), keys), compared)
    _with_length(cfg, length)
    if cfg.task not in TASK_LOSSES:
        raise UsageError(f"{run_dir}: inspect-grads measures task {', '.join(TASK_LOSSES)}, not task: {cfg.task}")
    if _corpus(cfg).vocab != vocab:
        raise UsageError(f"{run_dir}: the prepared data for its config has another vocabulary than the run; "
                         f"prepare the corpus the run was trained on")
    tb_dir = _tb_dir(run_dir / "tb" / "inspect-grads", compared)
    return Target(_label(run_dir.name, compared), cfg, model, vocab, tb_dir)


def _label(name: str, compared: tuple[str, ...]) -> str:
    return " ".join([name, *compared])


def _tb_dir(folder: Path, compared: tuple[str, ...]) -> Path:
    return folder / ",".join(compared) if compared else folder


def _named_load(load: Callable, compared: tuple[str, ...]):
    """load(); a config problem with a value that came from --compare names --compare, not --set."""
    try:
        return load()
    except ConfigError as err:
        message = str(err)
        for text in compared:
            key = text.partition("=")[0]
            message = message.replace(f"--set {key}:", f"--compare {key}:")
        raise ConfigError(message) from None


def compare_variants(compare: list[str] | tuple[str, ...] = (), sets: list[str] | tuple[str, ...] = ()
                     ) -> list[tuple[str, ...]]:
    """`--compare KEY=V1,V2,...` options -> the settings each target is inspected with, as `--set` texts.

    One option gives one variant per value, in order; several give every combination (the first option
    varies slowest). No option: one variant that changes nothing, [()]. Values are split at commas. A key
    may appear once, and not also in `sets`: --set reaches every target and every variant alike.
    """
    axes, keys = [], set()
    set_keys = {text.partition("=")[0].strip() for text in sets}
    for text in compare:
        key, sep, values = (part.strip() for part in text.partition("="))
        if not sep or not key or not values or any(not part.strip() for part in key.split(".")):
            raise UsageError(f"--compare {text!r}: expected section.key=value1,value2,..., "
                             f"e.g. --compare model.cell=rnn,lstm")
        items = [value.strip() for value in values.split(",")]
        if not all(items):
            raise UsageError(f"--compare {text!r}: an empty value; separate the values with single commas")
        twice = next((value for value in items if items.count(value) > 1), None)
        if twice is not None:
            raise UsageError(f"--compare {key}: the value {twice!r} is given twice")
        if key in keys:
            raise UsageError(f"--compare {key}: given twice; list all its values in one --compare")
        if key in set_keys:
            raise UsageError(f"--compare {key} and --set {key}: give the key once (--set applies to every target, "
                             f"--compare inspects each target once per value)")
        keys.add(key)
        axes.append([f"{key}={value}" for value in items])
    return list(itertools.product(*axes))


def check_distinct(targets: list[str | None]) -> None:
    """Refuse a target given twice: every option reaches every target alike, so both reports would be equal."""
    seen = set()
    for target in targets:
        name = target or "the most recent run"
        same = name if target is None or not Path(target).exists() else str(Path(target).resolve())
        if same in seen:
            raise UsageError(f"{name} is given twice: --set applies to every target, so both would be inspected "
                             f"alike; to inspect one config with several settings use --compare KEY=V1,V2,..., "
                             f"e.g. --compare model.cell=rnn,lstm")
        seen.add(same)


def _with_length(cfg, length: int | None) -> None:
    if length is not None:
        if length < 2:
            raise UsageError(f"--length: {length} is too short; use at least 2 steps")
        if cfg.data.mode != "stream":  # a stream model keeps its corpus and vocabulary: its windows get T long
            cfg.data.mode = "windows"
        cfg.data.window = length


def _corpus(cfg):
    from rnnkit.data import load_prepared, prepare_corpus

    return load_prepared(prepare_corpus(cfg.data))


def target_batches(target: Target, split: str = "train", count: int = 4) -> list:
    """The first `count` batches of `split` in the config's batching (shuffled with train.seed)."""
    from rnnkit.data import lm_batches

    if count < 1:
        raise UsageError(f"--batches: {count} must be at least 1")
    cfg = target.cfg
    batches = lm_batches(_corpus(cfg), split, cfg.data, cfg.train.batch_size, cfg.train.seed, shuffle=True)
    picked = list(itertools.islice(iter(batches), count))
    if not picked:
        what = f"windows of {cfg.data.window}" if cfg.data.mode in ("windows", "stream") else "sentences"
        raise UsageError(f"inspect-grads: the {split} split has no batch of {what}; try --split train or a "
                         f"smaller --length")
    return picked


def inspect_target(target: str | None, *, batches: int = 4, length: int | None = None, loss_at: str = "last",
                   split: str = "train", overrides: list[str] | tuple[str, ...] = (), which: str = "best",
                   device: str = "cpu", compared: tuple[str, ...] = ()) -> tuple[GradReport, Target]:
    """Load `target` (see load_target), take its batches and measure: what the CLI calls per target and
    variant of --compare."""
    loaded = load_target(target, overrides, length, which, device, compared)
    picked = target_batches(loaded, split, batches)
    report = gradient_profile(loaded.model, picked, loss_at=loss_at, clip=loaded.cfg.train.clip_grad_norm,
                              task=loaded.cfg.task, label=loaded.label)
    return report, loaded
