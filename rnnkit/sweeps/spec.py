"""What a sweep is: a base config, a grid of values per dotted key and a number of seeds, read from the
command line (`--grid KEY=V1,V2`) or from a sweep file; its points, each a validated Config and a run folder name.

A sweep file is an ordinary config file with one more top-level section, `sweep:` (kept out of Config so that
a run's config.yaml never carries it):

    sweep:
      base: ../trump_rnn.yaml   # a path relative to this file, or a preset name; absent: rnnkit's defaults
      name: cells_trump         # runs/<name>/ (default: the file's name)
      grid:                     # every combination of these values is a point
        model.cell: [rnn, gru, lstm]
        feeding:                # a named axis (no dot): each label sets several keys together
          forced: {train.teacher_forcing_schedule: constant}
          sampled: {train.teacher_forcing_schedule: linear, train.teacher_forcing_min: 0.5}
      seeds: 3                  # each point trained with train.seed 0, 1, 2
      jobs: 1                   # points trained at once
    train:                      # any other section overrides the base for every point
      max_steps: 3000

A named axis is for values that only make sense together (a seq2seq forecaster with its scheduled sampling
next to a direct one that refuses it); the point's name and the final table show its label.

Point i of a grid trains with `train.seed` = 0..seeds-1 and lives in `<run.dir>/<name>/<point name>`, e.g.
`runs/cells_trump/cell=gru,seed=1` (the last part of each key, the full key where two would read alike).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rnnkit.config import Config, apply_overrides, config_from_dict, describe_fields, parse_override, read_yaml
from rnnkit.errors import ConfigError, UsageError
from rnnkit.presets import PRESET_DIR, find_preset, resolve_config

SWEEP_SECTION = "sweep"
SWEEP_KEYS = ("base", "name", "grid", "seeds", "jobs")
SWEEP_DIR = PRESET_DIR / "sweeps"  # the sweep files kept in the repository (configs/sweeps/)
SEED_KEY = "train.seed"
FORBIDDEN_KEYS = ("run.name", "run.dir")  # the sweep names the run folders
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")  # a run folder name keeps these characters, others become '_'


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its folder name, the values it sets, its validated config."""

    name: str  # "cell=gru,seed=1"
    values: dict[str, Any]  # {"model.cell": "gru", "train.seed": 1}
    cfg: Config


@dataclass
class Sweep:
    """A base config (a raw mapping, validated per point), a grid and seeds; `points()` expands them."""

    name: str
    base: dict
    source: str  # the file (or preset) the base came from, for messages
    grid: dict[str, list | dict] = field(default_factory=dict)  # dotted key -> values; axis -> {label: {key: value}}
    seeds: int = 1
    jobs: int = 1
    labels: dict[str, list[str]] = field(default_factory=dict)  # key -> each value as its folder name shows it
    overridden: set[str] = field(default_factory=set)  # dotted keys set by --set (messages say so)

    @property
    def folder(self) -> Path:
        """`<run.dir>/<name>`: the folder holding one run folder per point."""
        run_dir = (self.base.get("run") or {}).get("dir") or "runs"
        return Path(str(run_dir)) / self.name

    @property
    def keys(self) -> list[str]:
        """What a point varies: the grid's keys (and named axes), then train.seed."""
        return list(self.grid) + ([SEED_KEY] if SEED_KEY not in self.grid else [])

    def points(self) -> list[Point]:
        """Every combination of the grid values times the seeds, validated; one ConfigError lists every problem."""
        check_sweep(self)
        axes = [[(key, value, label) for value, label in zip(self._values(key), self._labels(key), strict=True)]
                for key in self.grid]
        if SEED_KEY not in self.grid:
            axes.append([(SEED_KEY, seed, str(seed)) for seed in range(self.seeds)])
        short = short_names(self.keys)
        points, problems = [], {}
        combos = list(itertools.product(*axes))
        for combo in combos:
            name = ",".join(f"{short[key]}={label}" for key, _, label in combo)
            values = {key: value for key, value, _ in combo}
            raw = copy.deepcopy(self.base)
            for key, value in values.items():
                for dotted, item in (value.items() if is_axis(key) else [(key, value)]):
                    _set(raw, dotted, item)
            _set(raw, "run.name", name)
            try:
                cfg = config_from_dict(raw, self.source, self.overridden)
                shown = {key: label if is_axis(key) else _get(cfg, key) for key, _, label in combo}  # 1e-3 -> 0.001
                points.append(Point(name, shown, cfg))
            except ConfigError as err:  # each problem once, with the points that have it
                problems.setdefault(str(err).removeprefix(f"{self.source}: "), []).append(name)
        if problems:
            said = [text if len(names) == len(combos) else f"{text} (point {', '.join(names[:3])}"
                    f"{', ...' if len(names) > 3 else ''})" for text, names in problems.items()]
            raise ConfigError(f"{self.source}: {'; '.join(said)}")
        return points

    def _values(self, key: str) -> list:
        return list(self.grid[key].values()) if is_axis(key) else self.grid[key]

    def _labels(self, key: str) -> list[str]:
        if key in self.labels:
            return [_safe(text) for text in self.labels[key]]
        return [_label(v) for v in (self.grid[key] if not is_axis(key) else list(self.grid[key]))]


def is_axis(key: str) -> bool:
    """A named axis of a sweep file's grid (`feeding:`), not a dotted config key."""
    return "." not in key


# ---------------------------------------------------------------- building a sweep

def parse_grid(text: str) -> tuple[str, list, list[str]]:
    """`model.cell=rnn,gru` -> ("model.cell", ["rnn", "gru"], ["rnn", "gru"]): key, YAML-parsed values, and the
    values as typed (the run folder names show those)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    typed = [part.strip() for part in raw.split(",")]
    if not sep or not key or not raw.strip() or any(not part for part in typed):
        raise UsageError(f"--grid {text!r}: expected KEY=V1,V2,..., e.g. --grid model.cell=rnn,gru,lstm")
    values = [parse_override(f"{key}={part}")[1] for part in typed]
    return key, values, typed


def load_sweep(config: str | Path, *, grids: list[str] | tuple[str, ...] = (), seeds: int | None = None,
               name: str | None = None, jobs: int | None = None, overrides: list[str] | tuple[str, ...] = ()
               ) -> Sweep:
    """A sweep from a config or sweep file (or a preset or shipped sweep name) and the command line's options.

    `--grid` adds a key to the file's grid (or replaces the file's values of that key; of a named axis, it picks
    labels: --grid variant=a,b); seeds, name and jobs replace the file's. `overrides` (`--set`) apply to every
    point. Raises ConfigError / UsageError.
    """
    path = resolve_sweep_file(config)
    raw = read_yaml(path)
    section = raw.pop(SWEEP_SECTION, None)
    spec = _sweep_section(section, path) if section is not None else {}
    if "base" in spec:
        base_path = _base_path(spec["base"], path)
        base = read_yaml(base_path)
        if SWEEP_SECTION in base:
            raise ConfigError(f"{path}: sweep.base {spec['base']!r} is itself a sweep file; name a config")
        raw = _merge(base, raw)
    label = str(path) if path == Path(config) else f"sweep {config}"
    sweep = Sweep(name=spec.get("name") or (path.stem if section is not None else f"{path.stem}_sweep"),
                  base=apply_overrides(raw, list(overrides)), source=label,
                  grid=dict(spec.get("grid", {})), seeds=spec.get("seeds", 1), jobs=spec.get("jobs", 1),
                  overridden={".".join(parse_override(text)[0]) for text in overrides})
    for text in grids:
        key, values, typed = parse_grid(text)
        if is_axis(key) and isinstance(sweep.grid.get(key), dict):  # a named axis of the file: some of its labels
            sweep.grid[key] = _pick_labels(sweep.grid[key], typed, key)
            continue
        sweep.grid[key] = values
        sweep.labels[key] = typed
    sweep.seeds = seeds if seeds is not None else sweep.seeds
    sweep.jobs = jobs if jobs is not None else sweep.jobs
    sweep.name = name if name is not None else sweep.name
    check_sweep(sweep)
    return sweep


def _pick_labels(axis: dict, labels: list[str], key: str) -> dict:
    unknown = [label for label in labels if label not in axis]
    if unknown:
        raise UsageError(f"--grid {key}={','.join(labels)}: {', '.join(unknown)} not a label of the named axis {key} "
                         f"({', '.join(map(str, axis))})")
    return {label: axis[label] for label in labels}


def resolve_sweep_file(config: str | Path) -> Path:
    """A path that exists, else a sweep kept in configs/sweeps/ by name, else a preset (as `train` takes it)."""
    path = Path(config)
    if not path.exists() and (SWEEP_DIR / f"{config}.yaml").is_file():
        return SWEEP_DIR / f"{config}.yaml"
    return resolve_config(config)


def sweep_files() -> list[Path]:
    """The sweep files shipped in configs/sweeps/, sorted by name."""
    return sorted(SWEEP_DIR.glob("*.yaml"))


def check_sweep(sweep: Sweep) -> None:
    """Every problem with the grid, seeds, jobs and name at once (keys unknown, repeated values...)."""
    problems = []
    known = [key for key, _, _ in describe_fields()]
    for key, values in sweep.grid.items():
        if is_axis(key):
            problems += _axis_problems(key, values, known)
            continue
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else "; grid keys are dotted config keys (model.cell)"
            problems.append(f"grid {key}: unknown key{hint}")
        elif key in FORBIDDEN_KEYS:
            problems.append(f"grid {key}: the sweep names the run folders (<run.dir>/<name>/<point>); use --name")
        if not isinstance(values, list) or not values:
            problems.append(f"grid {key}: expected a list of values, got {values!r}")
        elif len({_label(v) for v in values}) != len(values):
            problems.append(f"grid {key}: a value is listed twice ({', '.join(_label(v) for v in values)})")
    if not isinstance(sweep.seeds, int) or isinstance(sweep.seeds, bool) or sweep.seeds < 1:
        problems.append(f"seeds: {sweep.seeds!r} must be an integer >= 1")
    elif SEED_KEY in sweep.grid and sweep.seeds > 1:
        problems.append(f"seeds: {sweep.seeds} with {SEED_KEY} in the grid; use one or the other")
    if not isinstance(sweep.jobs, int) or isinstance(sweep.jobs, bool) or sweep.jobs < 1:
        problems.append(f"jobs: {sweep.jobs!r} must be an integer >= 1")
    name = str(sweep.name)
    if name.strip() in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
        problems.append(f"name: {name!r} must name one folder under run.dir (no '/', not '.' or '..')")
    if problems:
        raise UsageError(f"{sweep.source}: {'; '.join(problems)}")


def _axis_problems(axis: str, values: Any, known: list[str]) -> list[str]:
    if not isinstance(values, dict) or not values:
        return [f"grid {axis}: a named axis (no dot) maps labels to keys, e.g. {axis}: {{a: {{model.cell: gru}}}}; "
                f"a config key is dotted (model.cell)"]
    problems = []
    for label, keys in values.items():
        if not isinstance(keys, dict):  # {} is the base config itself
            problems.append(f"grid {axis}.{label}: expected a mapping of dotted keys to values, got {keys!r}")
            continue
        for key in keys:
            if key not in known or key in FORBIDDEN_KEYS or key == SEED_KEY:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close and close[0] != key else ""
                problems.append(f"grid {axis}.{label}: {key}: not a key a named axis can set{hint}")
    return problems


def short_names(keys: list[str]) -> dict[str, str]:
    """model.cell -> cell; a last part two keys share keeps the full key (data.max_len, generate.max_len)."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: tail if last.count(tail) == 1 else key for key, tail in zip(keys, last, strict=True)}


def _label(value: Any) -> str:
    """A value as a folder name shows it: YAML spelling, characters unsafe in file names replaced by '_'."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    else:
        text = str(value)
    return _safe(text)


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text) or "_"


def _set(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _get(cfg: Config, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _merge(base: dict, over: dict) -> dict:
    """`over`'s sections on top of `base`'s, key by key."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _sweep_section(section: Any, path: Path) -> dict:
    """The `sweep:` mapping of a file, checked key by key (unknown keys with a did-you-mean)."""
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: sweep: expected a mapping ({', '.join(SWEEP_KEYS)}), got {section!r}")
    problems = []
    for key in section:
        if key not in SWEEP_KEYS:
            close = difflib.get_close_matches(str(key), SWEEP_KEYS, n=1)
            hint = f"; did you mean sweep.{close[0]}?" if close else f"; known keys: {', '.join(SWEEP_KEYS)}"
            problems.append(f"sweep.{key}: unknown key{hint}")
    grid = section.get("grid", {})
    if not isinstance(grid, dict):
        problems.append(f"sweep.grid: expected a mapping of dotted keys to lists of values, got {grid!r}")
    for key in ("base", "name"):
        if key in section and not isinstance(section[key], str):
            problems.append(f"sweep.{key}: expected a string, got {section[key]!r}")
    if problems:
        raise ConfigError(f"{path}: {'; '.join(problems)}")
    return section


def _base_path(base: str, sweep_file: Path) -> Path:
    """sweep.base: a path relative to the sweep file (it has a '/' or ends in .yaml), else a preset name."""
    if "/" in base or base.endswith((".yaml", ".yml")):
        path = (sweep_file.parent / base) if not Path(base).is_absolute() else Path(base)
        if not path.is_file():
            raise ConfigError(f"{sweep_file}: sweep.base {base!r}: no such file ({path})")
        return path
    found = find_preset(base)
    if found is None:
        raise ConfigError(f"{sweep_file}: sweep.base {base!r}: no such preset (rnnkit configs lists them) or file")
    return found


def dump_point(point: Point) -> str:
    """The point's whole config as YAML (what `rnnkit train` reads in a subprocess)."""
    return yaml.safe_dump(point.cfg.to_dict(), sort_keys=False)
