"""Metro data: safe reading with clear refusals, the synthetic twin, in-day windows, train-only normalisation."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rnnkit.cli import app
from rnnkit.config import DataConfig
from rnnkit.data.metro import (
    SLOTS,
    Normaliser,
    metro_splits,
    read_metro_file,
    save_metro,
    synthetic_metro,
    window_starts,
)
from rnnkit.data.prepare import prepare_with_summary
from rnnkit.errors import DataError, UsageError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hzmetro"


@pytest.fixture(scope="module")
def tiny():
    return synthetic_metro(train_days=4, test_days=3, stations=5, seed=0)


def test_synthetic_has_the_real_layout_and_is_seeded(tiny):
    train, test = tiny
    assert train.shape == (4, SLOTS, 5, 2) and test.shape == (3, SLOTS, 5, 2)
    assert train.dtype == torch.float32 and (train >= 0).all() and torch.equal(train, train.round())
    again, _ = synthetic_metro(train_days=4, test_days=3, stations=5, seed=0)
    other, _ = synthetic_metro(train_days=4, test_days=3, stations=5, seed=1)
    assert torch.equal(train, again) and not torch.equal(train, other)
    # rush hours: 08:00 and 18:00 are busier than 05:30 at every station
    busy = train[:, [10, 50]].sum(dim=(0, 1, 3))
    assert (busy > 3 * train[:, 0].sum(dim=(0, 2))).all()


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pch"])
def test_the_three_formats_round_trip(tiny, tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    if suffix == ".pch":
        torch.save(tiny, path)  # the course's format: a (train, test) tuple saved by torch.save
    else:
        save_metro(path, *tiny)
    train, test = read_metro_file(path)
    assert torch.equal(train, tiny[0]) and torch.equal(test, tiny[1])


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def _malformed(tmp_path: Path, kind: str) -> Path:
    train, test = synthetic_metro(train_days=2, test_days=2, stations=3)
    if kind == "wrong shape":
        return save_metro(tmp_path / "m.npz", train[:, :72], test[:, :72])
    if kind == "nan":
        train[1, 5, 2, 0] = float("nan")
        return save_metro(tmp_path / "m.safetensors", train, test)
    if kind == "negative":
        test[0, 0, 0, 1] = -3
        return save_metro(tmp_path / "m.npz", train, test)
    if kind == "stations differ":
        return save_metro(tmp_path / "m.npz", train, test[:, :, :2])
    if kind == "pickle of objects":
        path = tmp_path / "m.pch"
        path.write_bytes(pickle.dumps((Evil(), "not a tensor")))
        return path
    if kind == "torch file of other things":
        path = tmp_path / "m.pt"
        torch.save({"weights": train}, path)
        return path
    if kind == "npz with object arrays":
        path = tmp_path / "m.npz"
        np.savez(path, train=np.array([{"a": 1}], dtype=object), test=test.numpy())
        return path
    if kind == "npz without test":
        path = tmp_path / "m.npz"
        np.savez(path, train=train.numpy())
        return path
    if kind == "garbage":
        path = tmp_path / "m.safetensors"
        path.write_bytes(b"\x00\x01 not safetensors at all")
        return path
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, message", [
    ("wrong shape", "expected (days, 73, stations, 2)"),
    ("nan", "NaN/inf value(s), first at day 1, slot 5, station 2, flow 0"),
    ("negative", "negative count"),
    ("stations differ", "2 stations but train has 3"),
    ("pickle of objects", "weights_only=True"),
    ("torch file of other things", "expected a (train, test) pair of tensors"),
    ("npz with object arrays", "pickle"),
    ("npz without test", "no array named test"),
    ("garbage", "not a readable .safetensors"),
])
def test_malformed_files_are_refused_with_a_clear_message(tmp_path, capsys, kind, message):
    path = _malformed(tmp_path, kind)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_metro_file(path)
    assert "this must never run" not in capsys.readouterr().out


def test_cli_refuses_a_bad_file_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    path = _malformed(tmp_path, "nan")
    result = CliRunner().invoke(app, ["prepare", "metro", "--from", str(path)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "NaN" in lines[0] and "Traceback" not in result.output


def test_prepare_metro_needs_a_file_and_caches(tiny, tmp_path):
    with pytest.raises(UsageError, match="--from"):
        prepare_with_summary(DataConfig(source="metro"), root=tmp_path)
    path = save_metro(tmp_path / "m.npz", *tiny)
    first = prepare_with_summary(DataConfig(source="metro", path=str(path)), root=tmp_path)
    again = prepare_with_summary(DataConfig(source="metro", path=str(path)), root=tmp_path)
    assert not first.reused and again.reused and first.folder == again.folder
    assert any("5 stations" in value for _, value in first.rows())


def test_windows_never_cross_a_day():
    starts = window_starts(days=3, span=8)
    assert len(starts) == 3 * 66  # PVCGN: 66 windows of 4 + 4 slots per day
    assert (starts[:, 1] >= 0).all() and (starts[:, 1] + 8 <= SLOTS).all()
    assert starts[:, 0].tolist() == sorted(starts[:, 0].tolist())
    with pytest.raises(DataError):
        window_starts(days=1, span=SLOTS + 1)


def test_normalisation_is_fitted_on_the_training_days_only(tiny):
    train, test = tiny
    norm = Normaliser.fit(train)
    assert norm.mean.shape == (5, 2)
    assert torch.allclose(norm.mean, train.mean(dim=(0, 1))) and torch.allclose(norm.std, train.std(dim=(0, 1)))
    z = norm.apply(train)
    assert torch.allclose(z.mean(dim=(0, 1)), torch.zeros(5, 2), atol=1e-4)
    assert torch.allclose(norm.invert(z), train, atol=1e-3)
    pooled = Normaliser.fit(train, per="flow")
    assert torch.allclose(pooled.mean[0], train.mean(dim=(0, 1, 2)))
    splits = metro_splits(train, test * 10, val_days=1)  # wildly different test days change nothing
    assert torch.equal(Normaliser.fit(splits["train"]).mean, norm.mean)
    assert splits["val"].shape[0] == 1 and splits["test"].shape[0] == 2
    with pytest.raises(DataError, match="val_days"):
        metro_splits(train, test, val_days=3)


def test_holdout_days_validate_on_the_last_training_days_and_keep_the_test_days(tiny):
    train, test = tiny  # 4 training days, 3 test days
    splits = metro_splits(train, test, val_days=1, holdout_days=2)
    assert torch.equal(splits["train"], train[:2]) and torch.equal(splits["val"], train[2:])
    assert torch.equal(splits["test"], test[1:])  # as without a holdout: the file's validation day is left out
    with pytest.raises(DataError, match="data.holdout_days: 4 leaves no training day"):
        metro_splits(train, test, val_days=1, holdout_days=4)


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/hzmetro is not beside the checkout")
def test_the_three_real_files_hold_the_same_tensors():
    pch = read_metro_file(SHARED / "hzdataset.pch")
    for name in ("hzdataset.npz", "hzdataset.safetensors"):
        other = read_metro_file(SHARED / name)
        assert all(torch.equal(a, b) for a, b in zip(pch, other, strict=True))
    assert pch[0].shape == (18, 73, 80, 2) and pch[1].shape == (7, 73, 80, 2)


def test_days_off_are_weekends_and_listed_holidays():
    from rnnkit.data.metro import days_off

    # HZMetro: 2019-01-01 (a Tuesday and New Year's Day) .. 2019-01-25; Jan 5-6, 12-13, 19-20 are weekends
    flags = days_off("2019-01-01", 25, "2019-01-01")
    assert [i + 1 for i, off in enumerate(flags.tolist()) if off] == [1, 5, 6, 12, 13, 19, 20]
    assert days_off("2019-01-01", 2).tolist() == [0.0, 0.0] and days_off("2024-02-29", 0).shape == (0,)
