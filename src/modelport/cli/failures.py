"""How a command ends: the exit-code table of ``modelport.errors`` applied to whatever a command raised.

Usage errors keep click's own message (typer ships its own copy of click, so its exceptions are
recognised by name); ``ModelportError`` prints its one line; the machine saying no (memory, disk,
permissions) is exit 2; Ctrl-C and SIGTERM are 130; anything else is a bug (3), with ``--debug``.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from modelport import interrupts
from modelport.cli.console import emit_json, err, wants_json
from modelport.errors import EXIT_BUG, EXIT_INTERRUPTED, EXIT_OK, ModelportError, environment_error, first_line

__all__ = ["run_app", "exit_process"]


def run_app(app: Any, argv: list[str]) -> NoReturn:
    """Run one command; every failure ends as one line on stderr and an exit code from the table in
    ``modelport.errors`` (0 ok, 1 unsafe model, 2 usage/input/environment, 3 bug, 130 interrupted)."""
    args = list(argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        code = app(args=args, prog_name="modelport", standalone_mode=False)
    except ModelportError as exc:
        _fail(exc, debug)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Exception as exc:
        if _is_click(exc, "ClickException"):  # usage errors keep click's own message (typer vendors click)
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if _is_click(exc, "Abort"):
            code = EXIT_INTERRUPTED
        else:
            known = environment_error(exc)
            if known is not None:
                _fail(known, debug, exc)
            if debug:
                traceback.print_exc()
            err.print(
                f"error: internal error {type(exc).__name__}: {first_line(exc)} — this is a modelport bug; rerun "
                "with --debug and report the traceback",
                highlight=False,
                soft_wrap=True,
            )
            sys.exit(EXIT_BUG)
    if code == EXIT_INTERRUPTED:
        err.print("interrupted; nothing was written", highlight=False)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def exit_process(run: Callable[[], Any]) -> NoReturn:
    """The process's end, as the command line's entry point: ``run()``'s exit code, then ``os._exit``.

    Temporary files are gone by then (every writer cleans up in its finally), and ending here means that
    nothing can turn the code into another: a thread that the user's model code started and never ended
    would keep the process alive, and a Ctrl-C that passed through a C extension's embedded Python call
    (torch's) makes CPython kill itself with SIGINT at shutdown (exit -2 instead of 130)."""
    interrupts.install()  # SIGTERM unwinds like Ctrl-C; none is lost
    try:
        run()
        code = EXIT_OK
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_OK if exc.code is None else EXIT_BUG
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(exc: ModelportError, debug: bool, cause: BaseException | None = None) -> NoReturn:
    if debug:
        traceback.print_exception(cause or exc)
    if wants_json():
        emit_json(
            {
                "ok": False,
                "error": exc.message,
                "hint": exc.hint,
                "exit_code": exc.exit_code,
                "attempts": exc.attempts,
            }
        )
    err.print(f"error: {exc.one_line()}", highlight=False, soft_wrap=True)
    sys.exit(exc.exit_code)


def _is_click(exc: BaseException, name: str) -> bool:
    """click's exception classes, from click itself or from the copy typer ships (typer._click)."""
    return any(cls.__name__ == name and cls.__module__.endswith("click.exceptions") for cls in type(exc).__mro__)
