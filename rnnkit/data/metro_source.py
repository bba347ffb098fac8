"""The `metro` and `metro-synthetic` sources: `rnnkit prepare metro --from hzdataset.pch` and its no-file twin."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.data.metro import read_metro_file, synthetic_metro
from rnnkit.data.sources import Source, fetch, register
from rnnkit.data.store import DataSummary, cached_manifest, read_folder, write_folder
from rnnkit.errors import UsageError

FORMAT_VERSION = 1
TENSORS = "metro.safetensors"
SYNTHETIC = "metro-synthetic"
HINT = "../shared/data/hzmetro/hzdataset.npz"


def prepare_metro(source: Source | None, data_cfg, name: str, root: Path, force: bool) -> DataSummary:
    """Check and store the (train, test) counts once, under `<root>/prepared/<name>-<hash>/metro.safetensors`."""
    from rnnkit.data.prepare import settings_hash

    start = time.perf_counter()
    generated = source is not None and source.name == SYNTHETIC
    if generated and data_cfg.path is not None:
        raise UsageError(f"{SYNTHETIC} is generated; --from does not apply (use: rnnkit prepare metro --from FILE)")
    if not generated and data_cfg.path is None:
        raise UsageError(f"{name}: pass the ridership file with --from (or data.path), e.g. --from {HINT}; "
                         f"{SYNTHETIC} needs no file")
    if generated:
        path, sha, location = None, None, f"generated: {SYNTHETIC} (seed {data_cfg.split_seed})"
        key = f"generated:{SYNTHETIC}:{data_cfg.split_seed}"
    else:
        path, sha, location = fetch(None, data_cfg.path, root / "cache")
        key = f"sha256:{sha}"
    settings = {"format_version": FORMAT_VERSION, "source": key}
    digest = settings_hash(settings)
    folder = root / "prepared" / f"{name}-{digest}"
    manifest = None if force else cached_manifest(folder, digest, TENSORS)
    reused = manifest is not None
    if manifest is None:
        train, test = synthetic_metro(seed=data_cfg.split_seed) if generated else read_metro_file(path)
        manifest = _manifest(name, digest, settings, location, sha, train, test)
        write_folder(folder, TENSORS, {"train": train, "test": test}, manifest)
    return DataSummary(name, folder, reused, time.perf_counter() - start, _rows(manifest))


def _manifest(name, digest, settings, location, sha, train: Tensor, test: Tensor) -> dict:
    return {"format_version": FORMAT_VERSION, "name": name, "settings_hash": digest, "settings": settings,
            "source": {"location": location, "sha256": sha},
            "shapes": {"train": list(train.shape), "test": list(test.shape)},
            "stats": {split: {"min": float(t.min()), "max": float(t.max()), "mean": float(t.mean()),
                              "zeros": int((t == 0).sum())} for split, t in (("train", train), ("test", test))},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _rows(manifest: dict) -> list[tuple[str, str]]:
    rows = [("source", manifest["source"]["location"])]
    if manifest["source"]["sha256"]:
        rows.append(("sha256", manifest["source"]["sha256"]))
    for split in ("train", "test"):
        days, slots, stations, flows = manifest["shapes"][split]
        s = manifest["stats"][split]
        rows.append((split, f"{days} days x {slots} slots x {stations} stations x {flows} flows; counts "
                            f"{s['min']:g}..{s['max']:g}, mean {s['mean']:.1f}, {s['zeros']:,} zeros"))
    return rows


def load_metro(folder: Path) -> tuple[Tensor, Tensor]:
    """(train, test) counts of a folder written by `prepare_metro`."""
    _, tensors = read_folder(Path(folder), TENSORS)
    return tensors["train"].to(torch.float32), tensors["test"].to(torch.float32)


def is_metro(source_name: str) -> bool:
    return source_name in ("metro", SYNTHETIC)


register(Source(name="metro", description="HZMetro station inflow/outflow per quarter-hour (--from hzdataset.pch, "
                                          ".npz or .safetensors)", preparer=prepare_metro))
register(Source(name=SYNTHETIC, description="synthetic metro ridership with the HZMetro layout (seed: "
                                            "data.split_seed)", preparer=prepare_metro))
