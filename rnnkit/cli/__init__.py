"""The `rnnkit` command: one Typer app, one small module per verb."""

from rnnkit.cli import configs as _configs  # noqa: F401  (each import registers its verb on `app`)
from rnnkit.cli import eval as _eval  # noqa: F401
from rnnkit.cli import export as _export  # noqa: F401
from rnnkit.cli import generate as _generate  # noqa: F401
from rnnkit.cli import inspect_cells as _inspect_cells  # noqa: F401
from rnnkit.cli import inspect_grads as _inspect_grads  # noqa: F401
from rnnkit.cli import predict as _predict  # noqa: F401
from rnnkit.cli import prepare as _prepare  # noqa: F401
from rnnkit.cli import runs as _runs  # noqa: F401
from rnnkit.cli import score as _score  # noqa: F401
from rnnkit.cli import sweep as _sweep  # noqa: F401
from rnnkit.cli import train as _train  # noqa: F401
from rnnkit.cli.app import app, main

__all__ = ["app", "main"]
