"""What every command shares: error mapping, option aliases, output helpers."""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console

from ..errors import AloeError, plural  # noqa: F401 (plural: for the commands)

err = Console(stderr=True)


def command(app: typer.Typer, name: str, **kwargs) -> Callable:
    """Register `fn` as a command whose library errors become `Error: ...` and an exit code.

    Bad input exits 2, other failures 1, Ctrl-C 130. ALOE_DEBUG=1 prints the traceback. An option
    given as an empty string (`--task ""`, a shell variable that was never set) is bad input: it
    would otherwise be recorded as a name or read as "not given".
    """

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kw):
            for key, value in kw.items():
                if isinstance(value, str) and not value.strip():
                    fail(f"--{key.replace('_', '-')}: must not be empty", 2)
            try:
                return fn(*args, **kw)
            except AloeError as e:
                fail(str(e), e.exit_code)
            except KeyboardInterrupt:
                fail("interrupted", 130)

        kwargs.setdefault("help", help_text(fn.__doc__))
        app.command(name, **kwargs)(wrapper)
        return fn

    return deco


def help_text(doc: str | None) -> str | None:
    """A docstring as `--help` prose: each paragraph's wrapped lines joined into one line, which
    rich rewraps to the terminal (Typer keeps the line breaks of every paragraph but the first)."""
    if doc is None:
        return None
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n"))


def fail(message: str, code: int) -> None:
    if os.environ.get("ALOE_DEBUG"):
        traceback.print_exc()
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def emit(result: dict, as_json: bool, human: Callable[[dict], None] | None = None) -> None:
    """Print a result: JSON to stdout with --json, else the human form (tables go to stderr)."""
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, default=_json_default) + "\n")
    elif human is not None:
        human(result)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


# Shared option aliases.
StoreArg = Annotated[Path, typer.Argument(help="The episode store (a directory).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
PolicyOpt = Annotated[Optional[str], typer.Option(
    "--policy", help="The policy: an aloe policy dir, package.module:factory, or ws://host:port.")]
PolicyArgOpt = Annotated[Optional[list[str]], typer.Option(
    "--policy-arg", help="key=value passed to a plugin policy's factory (repeatable).")]
PolicyObsMapOpt = Annotated[Optional[list[str]], typer.Option(
    "--policy-obs-map", help="store_key=server_key for a ws:// policy (repeatable).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]

# Improvement-method options shared by `aloe improve` and `aloe export`.
BetaOpt = Annotated[Optional[float], typer.Option(
    "--beta", help="aloe/awr temperature (default: std of the advantages).", show_default=False)]
BetaScaleOpt = Annotated[Optional[float], typer.Option(
    "--beta-scale", help="aloe/awr temperature relative to std(A): beta = scale * std (default 1).",
    show_default=False)]
WMaxOpt = Annotated[Optional[float], typer.Option(
    "--w-max", help="aloe/awr weight clip (default 20).", show_default=False)]
TopFractionOpt = Annotated[Optional[float], typer.Option(
    "--top-fraction", help="filtered: share of chunks kept (default 0.3).", show_default=False)]
AwrRewardOpt = Annotated[Optional[str], typer.Option(
    "--reward", help="awr without --scores: step-penalty, sparse or logged (default: fit-critic's, "
    "step-penalty).", show_default=False)]
AwrGammaOpt = Annotated[Optional[float], typer.Option(
    "--gamma", help="awr without --scores: discount per frame (default: fit-critic's, 0.99).",
    show_default=False)]
