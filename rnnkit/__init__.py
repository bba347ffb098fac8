"""rnnkit: train, evaluate, decode from and diagnose hand-written recurrent networks.

The Python entry point is `rnnkit.load(run)`, which returns a `rnnkit.runs.loaded.LoadedRun`.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load(run=None, which: str = "best", device="auto", **kwargs):
    """Load a trained run folder once (see rnnkit.runs.loaded.load): `rnnkit.load("runs/x").generate()`."""
    from rnnkit.runs.loaded import load as load_run  # here: `import rnnkit` stays light (no torch)

    return load_run(run, which, device, **kwargs)


__all__ = ["__version__", "load"]
