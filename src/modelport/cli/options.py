"""Options more than one command takes, spelled once."""

from __future__ import annotations

import typer

from modelport.deadline import DEFAULT_VERIFY_TIMEOUT
from modelport.runtime.registry import backend_help, backend_names

Inputs = typer.Option(
    None, "--input", "-i", help="NAME:DIMS[:DTYPE[:LOW..HIGH]], e.g. x:batch,3,h,w (repeat per input)"
)


Dims = typer.Option(None, "--dim", "-d", help="NAME=MIN..MAX[@OPT] bounds of a symbolic dimension (repeatable)")


VerifyTimeout = typer.Option(
    DEFAULT_VERIFY_TIMEOUT,
    "--verify-timeout",
    help="seconds each PyTorch or runtime call may take while verifying; past it the model is refused "
    "(a loop that does not end)",
)


Backend = typer.Option(
    None,
    "--backend",
    "-b",
    help="where to run it (default: the bundle's own: ort:cpu, or what `modelport optimize` chose); one of: "
    + ", ".join(backend_names())
    + ". "
    + backend_help(),
)


Threads = typer.Option(None, "--threads", help="intra-op threads (default: physical cores)")


Fallback = typer.Option(
    "refuse", "--fallback", help="refuse (default): a missing provider is an error; allow: warn and run on the next"
)


NoRangeCheck = typer.Option(
    False,
    "--no-range-check",
    help="run inputs outside the bundle's declared sizes and value ranges (default: refused); noted in the output",
)
