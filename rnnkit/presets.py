"""The config presets shipped inside the package: find one by name, list them, copy one out to edit.

They live in `rnnkit/configs/`, a link to the repository's top-level `configs/` (one copy of each YAML in git);
`pyproject.toml` lists them as package data, so a wheel carries the files themselves. A preset's first line is a
comment saying what it trains: the listing shows it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from rnnkit.errors import ConfigError, UsageError
from rnnkit.io.atomic import atomic_write_bytes

PRESET_DIR = Path(__file__).parent / "configs"
SUFFIX = ".yaml"


@dataclass(frozen=True)
class Preset:
    """A shipped config: `rnnkit train NAME` trains it."""

    name: str
    path: Path
    description: str  # the file's first line, a comment, without the '#'


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob(f"*{SUFFIX}"))


def presets() -> list[Preset]:
    """Every shipped preset, sorted by name."""
    return [Preset(name, PRESET_DIR / f"{name}{SUFFIX}", _description(PRESET_DIR / f"{name}{SUFFIX}"))
            for name in preset_names()]


def find_preset(name: str) -> Path | None:
    """The file of the preset called `name` (a bare name such as `quickstart`), or None."""
    return PRESET_DIR / f"{name}{SUFFIX}" if name in preset_names() else None


def resolve_config(text: str | Path) -> Path:
    """A config argument as a verb takes it: a path that exists wins, else the name of a shipped preset.

    Raises ConfigError naming the presets (and the likely one) when it is neither.
    """
    path = Path(text)
    if path.exists():
        return path
    found = find_preset(str(text))
    if found is not None:
        return found
    raise ConfigError(f"{text}: no such config file or preset{_hint(path)}; presets: {', '.join(preset_names())} "
                      f"(rnnkit configs lists them)")


def copy_preset(name: str, dest: str | Path | None = None, force: bool = False) -> Path:
    """Write the preset `name` to `dest` (default ./NAME.yaml; a folder gets NAME.yaml inside) and return the path.

    Raises UsageError for an unknown name, a missing folder, or an existing file unless `force`.
    """
    source = find_preset(name)
    if source is None:
        raise UsageError(f"{name}: no such preset{_hint(Path(name))}; presets: {', '.join(preset_names())}")
    target = Path(dest) if dest is not None else Path(f"{name}{SUFFIX}")
    if target.is_dir():
        target = target / f"{name}{SUFFIX}"
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent}: no such folder to copy {name} into")
    if target.exists() and not force:
        raise UsageError(f"{target}: already exists; pass --force to overwrite it")
    atomic_write_bytes(target, source.read_bytes())
    return target


def _description(path: Path) -> str:
    with path.open(encoding="utf-8") as handle:
        first = handle.readline().strip()
    return first.lstrip("#").strip() if first.startswith("#") else ""


def _hint(path: Path) -> str:
    """` (did you mean the preset quickstart?)` for `configs/quickstart.yaml` or `quikstart`, else nothing."""
    close = difflib.get_close_matches(path.stem, preset_names(), n=1)
    return f" (did you mean the preset {close[0]}?)" if close else ""
