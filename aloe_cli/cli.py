"""The `aloe` command line: wires one module per verb into one Typer app."""

from __future__ import annotations

import typer

from . import __version__
from .commands import compact, demo, export, fit_critic, improve, info, ingest, report, rollout, rounds, score

app = typer.Typer(
    name="aloe",
    help="Which of your robot's action chunks were good: ingest logs, fit a chunked critic, "
    "score chunks, improve the policy, roll out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# In the order of the loop: rollout -> ingest -> fit-critic -> score -> improve -> rollout.
for module in (demo, rollout, ingest, info, compact, fit_critic, score, report, improve, rounds, export):
    module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aloe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """aloe: action-level off-policy evaluation for robot-learning logs."""


def main(argv: list[str] | None = None) -> None:
    """The `aloe` entry point. A usage error (an unknown verb, a missing argument, an option that
    does not parse) prints one `Error:` line naming the verb and exits 2, as bad input does."""
    import sys

    try:
        code = app(args=argv, prog_name="aloe", standalone_mode=False)
    except typer.Abort:
        typer.echo("Error: aborted", err=True)
        sys.exit(1)
    except typer.TyperException as e:  # Typer's usage errors, bad parameters and file errors
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError":  # `aloe` alone: the help, as Typer shows it
            e.show()
            sys.exit(e.exit_code)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = " ".join(e.format_message().split())
        typer.echo(f"Error: {where}{message}{hint}", err=True)
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
