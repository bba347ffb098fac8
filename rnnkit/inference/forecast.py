"""A forecasting run (task: forecast) on numbers a user gives it, or on a window of its own prepared data.

The input is the last `data.history` quarter-hours of every station the run forecasts, in counts:

- CSV: a header `time,s0_in,s0_out,s1_in,...` (one column per station and flow; `_in` only under
  data.flows: in; any column order), then one row per quarter-hour, oldest first, `time` being the
  quarter-hour's start, HH:MM on the data's grid (05:30, 05:45, ... 23:30), consecutive.
- .npz or .safetensors: `counts` (history, stations, flows) and `slot`, the slot of the last quarter-hour
  (0 = 05:30, 1 = 05:45, ... 72 = 23:30).

The model's inputs are built by ForecastTask.make_batch itself, on a one-day series holding these counts, so
normalisation (the run's saved statistics) and time features are exactly those of training and `eval`. The
forecast after the last quarter-hour, for each horizon, is in counts (never below 0), as `eval` scores it.
"""

from __future__ import annotations

import copy
import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.metro import FIRST_HOUR, SLOTS
from rnnkit.errors import DataError, UsageError

FLOW_NAMES = ("in", "out")
SUFFIXES = (".csv", ".npz", ".safetensors")
_COLUMN = re.compile(r"s(\d+)_(\w+)")
_FIRST_MINUTE = int(FIRST_HOUR * 60)  # 05:30


# --- times and columns ------------------------------------------------------------------------------------------

def slot_time(slot: int) -> str:
    """Slot -> the start of its quarter-hour, HH:MM (0 -> 05:30)."""
    minute = _FIRST_MINUTE + 15 * slot
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_slot(text: str) -> int | None:
    """HH:MM on the grid of quarter-hours, or a slot number, -> slot 0..72; None when it is neither."""
    text = text.strip()
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if match:
        minute = int(match[1]) * 60 + int(match[2]) - _FIRST_MINUTE
        slot = minute // 15
        return slot if minute % 15 == 0 and 0 <= slot < SLOTS else None
    return int(text) if text.isdigit() and int(text) < SLOTS else None


def column_names(stations: int, flows: int) -> list[str]:
    """s0_in, s0_out, s1_in, ...: station by station, flows in the data's order (the model's value order)."""
    return [f"s{s}_{FLOW_NAMES[f]}" for s in range(stations) for f in range(flows)]


def _flows_text(flows: int) -> str:
    return " and ".join(FLOW_NAMES[:flows]) + f" (data.flows: {'both' if flows == 2 else 'in'})"


# --- the input --------------------------------------------------------------------------------------------------

@dataclass
class ForecastInput:
    """What a forecast reads: counts (history, stations, flows) and the slot of the last quarter-hour."""

    counts: Tensor  # (H, S, F) float32, finite, >= 0
    last_slot: int


def read_forecast_input(path: str | Path, history: int, stations: int, flows: int) -> ForecastInput:
    """Read and check a CSV, .npz or .safetensors input (see the module's docstring); DataError naming the first
    problem: a wrong number of stations, steps or flows, a time off the grid, a NaN or negative count."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown input type {suffix or '(none)'}; a forecasting run reads "
                        f"{', '.join(SUFFIXES)}")
    if suffix == ".csv":
        counts, last = _read_csv(path, history, stations, flows)
    else:
        counts, last = _read_arrays(path, suffix, history, stations, flows)
    return ForecastInput(counts, last)


def _read_csv(path: Path, history: int, stations: int, flows: int) -> tuple[Tensor, int]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            rows = csv.reader(handle)
            header = next(rows, None)
            if header is None:
                raise DataError(f"{path}: empty file; expected a header time,s0_in,...")
            where = _csv_columns(path, [h.strip() for h in header], stations, flows)
            kept, count = [], 0
            for row in rows:
                if not any(cell.strip() for cell in row):
                    continue  # a blank line (a trailing one, typically)
                count += 1
                if count <= history:
                    kept.append((count, row))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; expected a CSV file") from None
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV file ({err})") from None
    if count != history:
        raise DataError(f"{path}: {count} quarter-hour row(s); the run reads the last data.history = {history}")
    values = np.zeros((history, stations * flows), dtype=np.float64)
    order = {name: i for i, name in enumerate(column_names(stations, flows))}  # the model's value order
    slots = []
    for step, (number, row) in enumerate(kept):
        place = f"{path}: row {number}"
        if len(row) != len(header):
            raise DataError(f"{place} has {len(row)} fields, the header {len(header)}")
        slot = parse_slot(row[where["time"]])
        if slot is None:
            raise DataError(f"{place}: time {row[where['time']].strip()!r} is not a quarter-hour of the data "
                            f"(HH:MM, {slot_time(0)} to {slot_time(SLOTS - 1)} every 15 minutes)")
        if slots and slot != slots[-1] + 1:
            raise DataError(f"{place}: time {slot_time(slot)} does not follow {slot_time(slots[-1])}; the rows "
                            f"must be consecutive quarter-hours, oldest first")
        slots.append(slot)
        for name, column in where.items():
            if name != "time":
                values[step, order[name]] = _count(row[column], f"{place}, {name}")
    return torch.from_numpy(values.astype(np.float32)).view(history, stations, flows), slots[-1]


def _csv_columns(path: Path, header: list[str], stations: int, flows: int) -> dict[str, int]:
    """{column name: its index} once the header names the run's stations and flows exactly."""
    expected = column_names(stations, flows)
    if "time" not in header:
        raise DataError(f"{path}: no time column; the header is time,{','.join(expected[:3])},... (one column per "
                        f"station and flow)")
    seen, named_stations, named_flows = {}, set(), set()
    for index, name in enumerate(header):
        if name in seen:
            raise DataError(f"{path}: column {name!r} appears twice in the header")
        seen[name] = index
        match = _COLUMN.fullmatch(name)
        if name != "time" and (match is None or match[2] not in FLOW_NAMES):
            raise DataError(f"{path}: unknown column {name!r}; the header is time and s<station>_<in|out> "
                            f"({expected[0]} .. {expected[-1]})")
        if match:
            named_stations.add(int(match[1]))
            named_flows.add(match[2])
    if len(named_stations) != stations:
        raise DataError(f"{path}: the header names {len(named_stations)} station(s); the run forecasts {stations} "
                        f"(s0 .. s{stations - 1})")
    if named_flows != set(FLOW_NAMES[:flows]):
        raise DataError(f"{path}: the header has flow(s) {' and '.join(sorted(named_flows, reverse=True))}; the run "
                        f"reads {_flows_text(flows)}")
    missing = [name for name in expected if name not in seen]
    if missing:
        raise DataError(f"{path}: no column {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                                              else "") + f"; the run forecasts s0 .. s{stations - 1}")
    return seen


def _count(cell: str, place: str) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{place}: {text!r} is not a number" if text else f"{place}: empty") from None
    if not math.isfinite(value):
        raise DataError(f"{place}: {text} is not a count (NaN or infinite)")
    if value < 0:
        raise DataError(f"{place}: negative count {text}; ridership is >= 0")
    return value


def _read_arrays(path: Path, suffix: str, history: int, stations: int, flows: int) -> tuple[Tensor, int]:
    arrays = _load_npz(path) if suffix == ".npz" else _load_safetensors(path)
    missing = [name for name in ("counts", "slot") if name not in arrays]
    if missing:
        raise DataError(f"{path}: no array named {' or '.join(missing)} (found: {', '.join(arrays) or 'none'}); "
                        f"expected counts (history, stations, flows) and slot (of the last quarter-hour)")
    return check_counts(str(path), arrays["counts"], arrays["slot"], history, stations, flows)


def check_counts(where: str, counts, slot, history: int, stations: int, flows: int) -> tuple[Tensor, int]:
    """(counts (H, S, F) float32, last slot) from arrays (numpy or torch) `counts` and `slot` (an integer array, or
    HH:MM); DataError naming a wrong number of steps, stations or flows, a NaN or negative count, a bad slot."""
    counts = counts.numpy() if isinstance(counts, Tensor) else np.asarray(counts)
    if isinstance(slot, str):
        parsed = parse_slot(slot)
        if parsed is None:
            raise DataError(f"{where}: slot {slot!r} is not a quarter-hour of the data (HH:MM, {slot_time(0)} to "
                            f"{slot_time(SLOTS - 1)} every 15 minutes, or 0..{SLOTS - 1})")
        slot = parsed
    slot = slot.numpy() if isinstance(slot, Tensor) else np.asarray(slot)
    shape, want = tuple(counts.shape), (history, stations, flows)
    if len(shape) != 3:
        raise DataError(f"{where}: counts has shape {shape}; expected (history, stations, flows) = {want}")
    for size, expected, what in zip(shape, want, ("quarter-hour(s) (data.history)", "station(s)",
                                                    f"flow(s) ({_flows_text(flows)})"), strict=True):
        if size != expected:
            raise DataError(f"{where}: counts has {size} {what}; the run reads {expected}: shape {want}, not {shape}")
    if counts.dtype.kind not in "fiu":
        raise DataError(f"{where}: counts has dtype {counts.dtype}; expected numbers (float or int)")
    counts = torch.from_numpy(np.array(counts, dtype=np.float32))  # a copy: writable
    bad = ~torch.isfinite(counts)
    if bad.any():
        h, s, f = (int(i) for i in bad.nonzero()[0])
        raise DataError(f"{where}: counts holds {int(bad.sum())} NaN/inf value(s), first at step {h}, station {s}, "
                        f"flow {FLOW_NAMES[f]}")
    if (counts < 0).any():
        h, s, f = (int(i) for i in (counts < 0).nonzero()[0])
        raise DataError(f"{where}: counts holds {int((counts < 0).sum())} negative count(s), first at step {h}, "
                        f"station {s}, flow {FLOW_NAMES[f]}; ridership is >= 0")
    if slot.size != 1 or slot.dtype.kind not in "iu" or not 0 <= int(slot.reshape(-1)[0]) < SLOTS:
        raise DataError(f"{where}: slot must be one integer 0..{SLOTS - 1} (the last quarter-hour: 0 = "
                        f"{slot_time(0)}), got {slot.reshape(-1)[:3].tolist()} ({slot.dtype})")
    return counts, int(slot.reshape(-1)[0])


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise DataError(f"{path}: holds object arrays that need pickle; refused (expected numeric arrays)"
                            ) from None
        raise DataError(f"{path}: not a readable .npz ({err})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz ({type(err).__name__})") from None


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError, plus OSError/ValueError
        raise DataError(f"{path}: not a readable .safetensors file ({type(err).__name__})") from None


# --- the forecast -----------------------------------------------------------------------------------------------

@dataclass
class Forecast:
    """The counts forecast after the last quarter-hour read, one row per horizon (and the truth, from a split)."""

    columns: list[str]  # s0_in, s0_out, ...: the station and flow of each value
    last: str  # the last quarter-hour read, HH:MM
    times: list[str]  # the quarter-hour of each horizon, HH:MM
    minutes: list[int]  # how far ahead each horizon is: 15, 30, ...
    counts: list[list[float]]  # (horizon, stations x flows) in counts, never below 0
    truth: list[list[float]] | None = None  # the same shape: the split's counts (--from-split)
    split: str | None = None
    day: int | None = None

    def to_dict(self) -> dict:
        """The `--json` record: where the window is, then per horizon its time and a value per column."""
        record = {"last": self.last, **({"split": self.split, "day": self.day} if self.split else {}),
                  "horizons": []}
        for k, (time, minutes) in enumerate(zip(self.times, self.minutes, strict=True)):
            row = {"horizon": k + 1, "minutes": minutes, "time": time,
                   "forecast": dict(zip(self.columns, self.counts[k], strict=True))}
            if self.truth is not None:
                row["truth"] = dict(zip(self.columns, self.truth[k], strict=True))
            record["horizons"].append(row)
        return record


def check_forecaster(run) -> None:
    if run.cfg.task != "forecast":
        raise UsageError(f"{run.path}: --from-split, --day and --slot forecast from a forecasting run's data; this "
                         f"run is task: {run.cfg.task}")


def _window(history: int, horizon: int, last: int, what: str) -> int:
    """The first slot of the window whose last input slot is `last`; UsageError/DataError when it leaves the day."""
    first, latest = history - 1, SLOTS - 1 - horizon
    if not first <= last <= latest:
        raise DataError(f"{what}: the last quarter-hour read is {slot_time(last)}; with data.history = {history} "
                        f"and data.horizon = {horizon} inside the day ({slot_time(0)} to {slot_time(SLOTS - 1)}) it "
                        f"must be {slot_time(first)} to {slot_time(latest)} (slot {first} to {latest})")
    return last - history + 1


@torch.no_grad()
def _forecast(task, run, split: str, day: int, first: int) -> tuple[Tensor, Tensor]:
    """(forecast, truth) counts (K, N) of one window, through make_batch and the model as `eval` runs them."""
    batch = task.make_batch(split, torch.tensor([[day, first]]))
    # ForecastTask.report scores counts(forecast(...)[-1]): the forecast after the last input step
    pred = task.forecast(run.model, batch, run.device)[-1]  # (1, K, N) normalised
    return task.counts(pred)[0], batch.truth[0]


def _result(run, counts: Tensor, last: int, truth: Tensor | None = None, split=None, day=None) -> Forecast:
    info, horizon = run.task.info, run.cfg.data.horizon
    return Forecast(column_names(info["stations"], info["flows"]), slot_time(last),
                    [slot_time(last + k) for k in range(1, horizon + 1)], [15 * k for k in range(1, horizon + 1)],
                    counts.tolist(), None if truth is None else truth.tolist(), split, day)


def forecast_input(run, source: ForecastInput | str | Path, date: str | None = None) -> Forecast:
    """The forecast of a loaded forecasting run from the counts of `source` (a ForecastInput or a file); `date`
    (YYYY-MM-DD), the day of those counts, for a run with data.day_features."""
    if run.cfg.task != "forecast":
        raise UsageError(f"{run.path}: reading history from a file needs a forecasting run (task: forecast), this "
                         f"run is task: {run.cfg.task}")
    d, info = run.cfg.data, run.task.info
    off = _day_off(run, date)
    where = "the input"
    if not isinstance(source, ForecastInput):
        where = str(source)
        source = read_forecast_input(source, d.history, info["stations"], info["flows"])
    first = _window(d.history, d.horizon, source.last_slot, where)
    # A one-day series with the counts in their slots: make_batch then builds the model's inputs (normalised
    # with the run's statistics, time features of those slots) exactly as for the run's own days.
    day = torch.zeros(1, SLOTS, info["stations"], info["flows"])
    day[0, first:first + d.history] = source.counts
    task = copy.copy(run.task)
    task.raw = {"input": day}
    task.z = {"input": task.normaliser.apply(day).flatten(2)}  # (1, 73, N), as ForecastTask.setup
    task.day_off = {"input": off}
    counts, _ = _forecast(task, run, "input", 0, first)
    return _result(run, counts, source.last_slot)


def _day_off(run, date: str | None) -> Tensor:
    """(1,) the day-off flag of `date` for a run whose inputs depend on the day's type (data.day_features, or
    data.profile_by: day_type); UsageError when it is missing or wrong."""
    from rnnkit.data.metro import days_off
    from rnnkit.tasks.forecast import reads_day_type

    d = run.cfg.data
    if not reads_day_type(d):
        if date is not None:
            raise UsageError(f"--date: {run.path} does not read the day (data.day_features: false, data.profile_by: "
                             f"{d.profile_by}); leave it out")
        return torch.zeros(1)
    if date is None:
        key = "data.day_features: true" if d.day_features else "data.profile_by: day_type"
        raise UsageError(f"--date: {run.path} reads whether the day is off ({key}); give the date of the counts, "
                         f"YYYY-MM-DD")
    try:
        return days_off(date, 1, d.days_off)
    except ValueError:
        raise UsageError(f"--date: {date!r} is not a date; write YYYY-MM-DD, e.g. 2019-01-21") from None


def forecast_split(run, split: str, day: int, slot: str | int) -> Forecast:
    """The forecast of a window of the run's prepared `split` (day `day`, last quarter-hour `slot`: a slot number or
    HH:MM) next to the truth: the forecast `rnnkit eval` scores for that window."""
    check_forecaster(run)
    from rnnkit.evaluation.split import SPLITS

    if split not in SPLITS:
        raise UsageError(f"--from-split: {split!r} is not one of {', '.join(SPLITS)}")
    last = parse_slot(str(slot))
    if last is None:
        raise UsageError(f"--slot: {slot!r} is not a quarter-hour of the data: HH:MM from {slot_time(0)} to "
                         f"{slot_time(SLOTS - 1)} every 15 minutes, or a slot number 0..{SLOTS - 1}")
    task = run.data()
    days = task.raw[split].shape[0]
    if not 0 <= day < days:
        raise UsageError(f"--day: {day} is not a day of the {split} split, which has {days} (0..{days - 1})")
    try:
        first = _window(run.cfg.data.history, run.cfg.data.horizon, last, "--slot")
    except DataError as err:
        raise UsageError(str(err)) from None
    counts, truth = _forecast(task, run, split, day, first)
    return _result(run, counts, last, truth, split, day)
