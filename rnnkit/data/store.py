"""Prepared dataset folders (every source): atomic writing, cache lookup, the printed summary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor

from rnnkit.errors import DataError
from rnnkit.io.atomic import atomic_folder, atomic_write_json, atomic_write_text

MANIFEST = "manifest.json"


@dataclass
class DataSummary:
    """What a prepare did, printed by `rnnkit prepare` like the text pipeline's PrepareSummary."""

    name: str
    folder: Path
    reused: bool
    seconds: float
    lines: list[tuple[str, str]] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str]]:
        return [("dataset", f"{self.folder}" + (" (reused from cache)" if self.reused else " (built)")),
                *self.lines]


def cached_manifest(folder: Path, digest: str, tensors_file: str) -> dict | None:
    """The manifest of a complete folder prepared with the same settings hash, else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    complete = (folder / tensors_file).is_file()
    return manifest if complete and manifest.get("settings_hash") == digest else None


def write_folder(folder: Path, tensors_file: str, tensors: dict[str, Tensor], manifest: dict,
                 texts: dict[str, str] | None = None) -> None:
    """Write tensors, manifest and extra text files as one folder, atomically (`rnnkit.io.atomic_folder`)."""
    with atomic_folder(folder) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / tensors_file))
        for name, text in (texts or {}).items():
            atomic_write_text(tmp / name, text)
        atomic_write_json(tmp / MANIFEST, manifest)


def read_folder(folder: Path, tensors_file: str) -> tuple[dict, dict[str, Tensor]]:
    """(manifest, tensors) of a prepared folder; DataError naming it when it is not one."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / tensors_file))
    except (OSError, ValueError, RuntimeError) as err:
        raise DataError(f"{folder}: not a complete prepared dataset ({type(err).__name__}); prepare it again "
                        f"with --force") from None
    return manifest, tensors
