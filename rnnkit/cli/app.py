"""The Typer application, global options, and the one place library errors become clean exits."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape

from rnnkit import __version__
from rnnkit.errors import RnnkitError, out_of_memory

app = typer.Typer(
    name="rnnkit",
    help="Train, evaluate, decode from and diagnose hand-written RNN, GRU and LSTM networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Messages and progress go to stderr so that `--json` output on stdout stays machine-readable.
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def debug_enabled() -> bool:
    return os.environ.get("RNNKIT_DEBUG", "") not in ("", "0")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rnnkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error "
                                                      "(same as RNNKIT_DEBUG=1)."),
) -> None:
    """Train, evaluate, decode from and diagnose hand-written RNN, GRU and LSTM networks."""
    if debug:
        os.environ["RNNKIT_DEBUG"] = "1"


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line and return the Exit to raise: `raise fail("...")`."""
    # escape(): a message quoting "[enforce fail at ...]" or a path like runs/[exp] is text, not markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def command(name: str, example: str, group: typer.Typer | None = None) -> Callable:
    """Register a verb on `app` (or on a sub-app `group`, e.g. `rnnkit configs copy`): see `guarded`."""

    def register(func: Callable) -> Callable:
        wrapper = guarded(example)(func)
        (group or app).command(name)(wrapper)
        return wrapper

    return register


def guarded(example: str) -> Callable:
    """Wrap a command: its help shows `example`; RnnkitError becomes one line and an exit code.

    Ctrl-C exits with 130 (the shell's convention for SIGINT), SIGTERM during training with 143, after
    whatever the library saved. `command` registers with it; a sub-app's callback uses it directly.
    """

    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except RnnkitError as err:
                if debug_enabled():
                    raise
                raise fail(_one_line(str(err)), err.exit_code) from None
            except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM during training (errors.Terminated)
                if debug_enabled():
                    raise
                code = getattr(err, "exit_code", 130)
                raise fail("terminated" if code == 143 else "interrupted", code) from None
            except (MemoryError, RuntimeError) as err:
                if debug_enabled() or not out_of_memory(err):
                    raise
                detail = _one_line(str(err))[:160] or type(err).__name__
                raise fail(f"out of memory ({detail}); use a smaller model.hidden_size, model.num_layers or "
                           f"train.batch_size (or fewer --num/--beam when generating)", 1) from None

        doc = inspect.cleandoc(func.__doc__ or "")  # no stray indentation in the rendered help
        wrapper.__doc__ = f"{doc}\n\nExample:\n\n    {example}"
        return wrapper

    return wrap


def _one_line(message: str) -> str:
    return " ".join(message.split())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: Click's own usage errors become one line too, not a boxed panel."""
    try:
        code = app(args=argv, prog_name="rnnkit", standalone_mode=False)
    except typer.Abort:
        raise SystemExit(fail("aborted", 130).exit_code) from None
    except Exception as err:
        # Click's usage errors (Typer vendors Click, so match them by shape, not by class).
        if not (hasattr(err, "format_message") and hasattr(err, "exit_code")) or debug_enabled():
            raise
        if not err.format_message():  # `rnnkit` alone: Click has printed the help already
            raise SystemExit(err.exit_code) from None
        context = getattr(err, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        raise SystemExit(fail(f"{err.format_message()}{hint}", err.exit_code).exit_code) from None
    sys.exit(code if isinstance(code, int) else 0)
