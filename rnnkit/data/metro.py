"""HZMetro ridership tensors: safe reading and checking, a synthetic twin, normalisation, in-day windows.

Layout everywhere: `(day, slot, station, flow)`, 73 quarter-hour slots from 05:30 to 23:30, flow 0 = inflow,
1 = outflow, whole passenger counts. The course's file holds a `(train, test)` pair; PVCGN validates on the
first two test days and tests on the rest (`data.val_days`).
"""

from __future__ import annotations

import datetime
import math
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.errors import DataError

SLOTS = 73  # quarter-hours from 05:30 to 23:30
FLOWS = 2  # inflow, outflow
FIRST_HOUR = 5.5
SUFFIXES = (".pch", ".pt", ".pth", ".npz", ".safetensors")


# ---------------------------------------------------------------- reading files

def read_metro_file(path: str | Path) -> tuple[Tensor, Tensor]:
    """(train, test) float32 tensors `(days, 73, stations, 2)` from .pch/.pt (torch.load with
    weights_only=True: no arbitrary pickle code runs), .npz (no pickle) or .safetensors; DataError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown metro file type {suffix or '(none)'}; expected one of {', '.join(SUFFIXES)}")
    loader = {".npz": _load_npz, ".safetensors": _load_safetensors}.get(suffix, _load_torch)
    train, test = loader(path)
    return check_metro(train, "train", path), check_metro(test, "test", path, like=train)


def _load_torch(path: Path) -> tuple:
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore")
            obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        raise DataError(f"{path}: not a plain tensor file; torch.load(weights_only=True) refused it: it holds "
                        f"something other than tensors ({_refusal(str(err))}); nothing in it was run") from None
    except Exception as err:  # an untrusted file can break the unpickler in any way (KeyError, EOFError...)
        raise DataError(f"{path}: not a readable torch file ({type(err).__name__}); expected the course's "
                        f"hzdataset.pch, a (train, test) pair of tensors") from None
    if isinstance(obj, dict) and {"train", "test"} <= set(obj):
        obj = (obj["train"], obj["test"])
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(t, Tensor) for t in obj)):
        raise DataError(f"{path}: holds {_describe(obj)}, expected a (train, test) pair of tensors")
    return tuple(obj)


def _refusal(message: str) -> str:
    """The useful line of torch's weights_only refusal (which global it met), without its long advice."""
    for line in message.splitlines():
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line.split(":", 1)[-1].strip().split(". ")[0]
    return "unsupported pickle content"


def _load_npz(path: Path) -> tuple:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"train", "test"} - set(archive.files)
            if missing:
                raise DataError(f"{path}: no array named {', '.join(sorted(missing))} (found: "
                                f"{', '.join(archive.files) or 'none'}); expected arrays train and test")
            return torch.from_numpy(archive["train"]), torch.from_numpy(archive["test"])
    except DataError:
        raise
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise DataError(f"{path}: holds object arrays that need pickle; refused (expected numeric arrays)"
                            ) from None
        raise DataError(f"{path}: not a readable .npz ({err})") from None
    except (OSError, EOFError, zipfile.BadZipFile, TypeError) as err:
        raise DataError(f"{path}: not a readable .npz ({type(err).__name__})") from None


def _load_safetensors(path: Path) -> tuple:
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError, plus OSError/ValueError
        raise DataError(f"{path}: not a readable .safetensors file ({type(err).__name__})") from None
    missing = {"train", "test"} - set(tensors)
    if missing:
        raise DataError(f"{path}: no tensor named {', '.join(sorted(missing))} (found: "
                        f"{', '.join(tensors) or 'none'}); expected tensors train and test")
    return tensors["train"], tensors["test"]


def _describe(obj) -> str:
    if isinstance(obj, Tensor):
        return f"one tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)} item(s) ({', '.join(type(o).__name__ for o in obj[:4])})"
    return f"a {type(obj).__name__}"


def check_metro(x: Tensor, name: str, where: Path | str, like: Tensor | None = None) -> Tensor:
    """`x` as float32 after checking layout (days, 73, stations, 2), finiteness and signs; DataError if not."""
    shape = tuple(x.shape)
    if x.dim() != 4 or shape[1] != SLOTS or shape[3] != FLOWS or shape[0] < 1 or shape[2] < 1:
        raise DataError(f"{where}: {name} has shape {shape}, expected (days, {SLOTS}, stations, {FLOWS}): "
                        f"{SLOTS} quarter-hours from 05:30 to 23:30, inflow and outflow")
    if like is not None and shape[2] != like.shape[2]:
        raise DataError(f"{where}: {name} has {shape[2]} stations but train has {like.shape[2]}")
    if x.dtype == torch.bool or x.is_complex() or not (x.is_floating_point() or x.dtype.is_signed or
                                                      x.dtype == torch.uint8):
        raise DataError(f"{where}: {name} has dtype {x.dtype}, expected passenger counts (float or int)")
    x = x.to(torch.float32)
    bad = ~torch.isfinite(x)
    if bad.any():
        d, s, st, f = (int(i) for i in bad.nonzero()[0])
        raise DataError(f"{where}: {name} holds {int(bad.sum())} NaN/inf value(s), first at day {d}, slot {s}, "
                        f"station {st}, flow {f}")
    if (x < 0).any():
        raise DataError(f"{where}: {name} holds {int((x < 0).sum())} negative count(s); expected ridership >= 0")
    return x.contiguous()


# ---------------------------------------------------------------- a synthetic twin

def synthetic_metro(train_days: int = 18, test_days: int = 7, stations: int = 80,
                    seed: int = 0) -> tuple[Tensor, Tensor]:
    """Fake (train, test) counts with the real layout: per-station daily profiles plus Poisson noise.

    Each station has a level, a morning and an evening rush hour whose weights make it residential (in
    at 08:00, out at 18:00) or a workplace (the reverse), and a midday bump; days 4 and 5 of each week are
    quiet weekends (a Saturday and a Sunday when data.first_date is a Tuesday, as
    HZMetro's 2019-01-01). Stations differ enough in shape and level for classification to be learnable.
    """
    rng = np.random.default_rng(seed)
    hours = FIRST_HOUR + np.arange(SLOTS) / 4.0  # (73,)
    level = rng.lognormal(mean=5.2, sigma=0.6, size=stations)  # (S,)
    home = rng.uniform(0.0, 1.0, size=stations)  # 1 = residential, 0 = workplace
    shift = rng.normal(0.0, 0.3, size=(stations, 2))  # rush-hour offsets in hours

    def bump(centre, width):
        return np.exp(-0.5 * ((hours[None, :] - centre) / width) ** 2)  # (S, 73)

    morning, evening = bump(8.0 + shift[:, :1], 0.7), bump(18.0 + shift[:, 1:], 0.9)
    midday = bump(13.0, 3.0)
    inflow = 0.15 + 2.0 * home[:, None] * morning + 2.0 * (1 - home[:, None]) * evening + 0.5 * midday
    outflow = 0.15 + 2.0 * (1 - home[:, None]) * morning + 2.0 * home[:, None] * evening + 0.5 * midday
    profile = level[:, None, None] * np.stack([inflow, outflow], axis=-1)  # (S, 73, 2)
    days = train_days + test_days
    weekend = np.array([0.55 if d % 7 in (4, 5) else 1.0 for d in range(days)])
    rate = weekend[:, None, None, None] * rng.uniform(0.9, 1.1, size=(days, 1, 1, 1)) * profile.transpose(1, 0, 2)
    counts = torch.from_numpy(rng.poisson(rate).astype(np.float32))  # (D, 73, S, 2)
    return counts[:train_days].contiguous(), counts[train_days:].contiguous()


def save_metro(path: str | Path, train: Tensor, test: Tensor) -> Path:
    """Write a (train, test) pair as .npz or .safetensors (by suffix): the no-pickle formats `--from` reads."""
    path = Path(path)
    if path.suffix == ".npz":
        np.savez(path, train=train.numpy(), test=test.numpy())
    elif path.suffix == ".safetensors":
        from safetensors.torch import save

        from rnnkit.io.atomic import atomic_write_bytes

        atomic_write_bytes(path, save({"train": train.contiguous(), "test": test.contiguous()}))
    else:
        raise DataError(f"{path}: write .npz or .safetensors")
    return path


# ---------------------------------------------------------------- splits, normalisation, windows

def metro_splits(train: Tensor, test: Tensor, val_days: int, holdout_days: int = 0) -> dict[str, Tensor]:
    """{"train": train, "val": test[:val_days], "test": test[val_days:]}: PVCGN's days with val_days = 2.

    With holdout_days = N > 0 the last N training days validate instead ("val": train[-N:], "train": train[:-N]):
    a validation fold of the same kind of days as the test days when the file's validation days are not (HZMetro
    validates on a weekend, tests on weekdays). The test days stay test[val_days:] either way.
    """
    if val_days >= test.shape[0]:
        raise DataError(f"data.val_days: {val_days} leaves no test day (the file has {test.shape[0]} test days); "
                        f"lower it")
    if holdout_days >= train.shape[0]:
        raise DataError(f"data.holdout_days: {holdout_days} leaves no training day (the file has {train.shape[0]} "
                        f"training days); lower it")
    if holdout_days:
        return {"train": train[:-holdout_days], "val": train[-holdout_days:], "test": test[val_days:]}
    return {"train": train, "val": test[:val_days], "test": test[val_days:]}


def select(x: Tensor, stations: int, flows: str) -> Tensor:
    """The first `stations` stations (0 = all) and the inflow only or both flows: (D, 73, S', F')."""
    if stations > x.shape[2]:
        raise DataError(f"data.stations: {stations} is more than the {x.shape[2]} stations in the data")
    x = x[:, :, :stations] if stations else x
    return x[..., :1] if flows == "in" else x


@dataclass
class Normaliser:
    """Z-score statistics `(S, F)`, fitted on training days only; `invert` gives counts back for reporting."""

    mean: Tensor  # (S, F)
    std: Tensor  # (S, F)

    @classmethod
    def fit(cls, train: Tensor, per: str = "station") -> Normaliser:
        """Statistics of train (D, 73, S, F) per station and flow, or per flow pooled over stations."""
        dims = (0, 1) if per == "station" else (0, 1, 2)
        mean = train.mean(dim=dims, keepdim=True)
        std = train.std(dim=dims, keepdim=True)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))  # a constant series is only centred
        shape = train.shape[2:]
        return cls(mean.expand(1, 1, *shape)[0, 0].contiguous(), std.expand(1, 1, *shape)[0, 0].contiguous())

    def apply(self, x: Tensor) -> Tensor:
        """Counts (..., S, F) -> z-scores."""
        return (x - self.mean) / self.std

    def invert(self, z: Tensor) -> Tensor:
        """Z-scores (..., S, F) -> counts."""
        return z * self.std + self.mean

    def tensors(self) -> dict[str, Tensor]:
        return {"mean": self.mean, "std": self.std}


def window_starts(days: int, span: int, slots: int = SLOTS) -> Tensor:
    """(N, 2) long (day, first slot) of every window of `span` slots inside one day: none crosses midnight.

    PVCGN's 4 in + 4 out gives 73 - 8 + 1 = 66 windows per day.
    """
    if span > slots:
        raise DataError(f"a window of {span} slots does not fit in a day of {slots}")
    per_day = slots - span + 1
    day = torch.arange(days).repeat_interleave(per_day)
    start = torch.arange(per_day).repeat(days)
    return torch.stack([day, start], dim=1)


def time_of_day(slots: Tensor) -> Tensor:
    """Slot numbers (...) -> (..., 2) sin and cos of the hour of day (05:30 = slot 0)."""
    angle = (FIRST_HOUR + slots.float() / 4.0) * (2 * math.pi / 24.0)
    return torch.stack([angle.sin(), angle.cos()], dim=-1)


def days_off(first_date: str, days: int, holidays: str = "") -> Tensor:
    """(days,) float32: 1 where day i, the date first_date + i days, is a Saturday, a Sunday or one of the
    comma-separated `holidays` (YYYY-MM-DD), else 0: what data.day_features adds to every input step."""
    first = datetime.date.fromisoformat(first_date)
    off = {datetime.date.fromisoformat(item.strip()) for item in holidays.split(",") if item.strip()}
    dates = [first + datetime.timedelta(days=i) for i in range(days)]
    return torch.tensor([date.weekday() >= 5 or date in off for date in dates], dtype=torch.float32)


def slot_average(train: Tensor) -> Tensor:
    """(73, S, F) mean of each slot over the training days: the historical-average baseline."""
    return train.mean(dim=0)


DAY_TYPES = ("working day", "day off")  # the day-off flag of days_off() indexes this


def day_type_averages(train: Tensor, off: Tensor) -> Tensor:
    """(2, 73, S, F) the slot average over the training days of each type, working days then days off (`off`
    (days,), days_off()'s flags); DataError when the training days hold no day of one type."""
    kinds = off.long()
    for kind, name in enumerate(DAY_TYPES):
        if not (kinds == kind).any():
            raise DataError(f"data.profile_by: day_type: the {train.shape[0]} training days hold no {name} "
                            f"(data.first_date, data.days_off); use data.profile_by: all")
    return torch.stack([train[kinds == kind].mean(dim=0) for kind in range(len(DAY_TYPES))])
