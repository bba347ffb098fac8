"""matplotlib (the optional `plot` extra) for the PNG files the diagnostics write: imported on demand, saved with
one-line errors naming the option that asked for the file."""

from __future__ import annotations

from pathlib import Path

from rnnkit.errors import UsageError


def pyplot(option: str):
    """matplotlib.pyplot drawing to files only (no display), or UsageError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError(f"{option} needs matplotlib: pip install 'rnnkit[plot]'") from None
    matplotlib.use("Agg")  # files only: works on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, option: str, dpi: int) -> Path:
    """Write `fig` as `path` (its folder made) and close it; UsageError naming `option` when it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    except OSError as err:
        raise UsageError(f"{option} {path}: cannot write ({err.strerror})") from None
    finally:
        pyplot(option).close(fig)  # a figure left open keeps its memory until the process ends
    return path
