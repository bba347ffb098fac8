"""Helpers shared by the tests that train tiny runs through the real CLI."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rnnkit.cli import app


@contextlib.contextmanager
def working_folder(root: Path) -> Iterator[Path]:
    """Run inside `root` with its own data cache (RNNKIT_DATA=root/data), as a user in a fresh folder would;
    for module-scoped fixtures, where the function-scoped `monkeypatch` is not available."""
    patch = pytest.MonkeyPatch()
    patch.setenv("RNNKIT_DATA", str(root / "data"))
    patch.chdir(root)
    try:
        yield root
    finally:
        patch.undo()


def train_run(root: Path, config: dict, name: str = "tiny", *args: str) -> Path:
    """Write `config` as root/NAME.yaml, `rnnkit train` it quietly (extra CLI `args`), return root/runs/NAME."""
    (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", f"{name}.yaml", "--quiet", *args])
    assert result.exit_code == 0, result.output
    return root / "runs" / name
