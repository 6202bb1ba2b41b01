"""`aloe report`: (re)write the HTML report of a scores directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import command


def register(app: typer.Typer) -> None:
    @command(app, "report")
    def report(
        scores_dir: Annotated[Path, typer.Argument(
            help="A scores directory written by `aloe score`.", show_default=False)],
        episode: Annotated[Optional[list[str]], typer.Option(
            "--episode", help="Also draw this episode's panel (repeatable).")] = None,
        worst_best: Annotated[int, typer.Option(
            "--worst-best", help="Draw panels for the N lowest- and N highest-return episodes.")] = 5,
    ) -> None:
        """Write SCORES_DIR/report.html (one self-contained page) and its report-*.png images.

        Example: aloe report scores/ --episode ep-0042 --worst-best 3
        """
        from ..report import write_report

        typer.echo(str(write_report(scores_dir, episode_ids=episode or [], worst_best=worst_best)))
