"""`aloe export`: the store plus per-frame advantages, weights and indicators, as a LeRobotDataset v3.0."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (AwrGammaOpt, AwrRewardOpt, BetaOpt, BetaScaleOpt, DeviceOpt, JsonOpt, StoreArg, TopFractionOpt,
                      WMaxOpt, command, emit, err)
from .improve import weights_lines


def register(app: typer.Typer) -> None:
    @command(app, "export")
    def export_cmd(
        store: StoreArg,
        out: Annotated[Path, typer.Argument(help="Dataset folder to write.", show_default=False)],
        scores: Annotated[Optional[Path], typer.Option(
            "--scores", help="Scores directory of `aloe score` on this store (every method but awr, whose "
            "advantages are Monte-Carlo).", show_default=False)] = None,
        to: Annotated[str, typer.Option("--to", help="Output format: lerobot (LeRobotDataset v3.0).")] = "lerobot",
        method: Annotated[str, typer.Option(
            "--method", help="How aloe.weight is computed: aloe, awr, filtered, conditioned or bc (as aloe improve).")
        ] = "aloe",
        beta: BetaOpt = None,
        beta_scale: BetaScaleOpt = None,
        w_max: WMaxOpt = None,
        top_fraction: TopFractionOpt = None,
        reward: AwrRewardOpt = None,
        gamma: AwrGammaOpt = None,
        fps: Annotated[Optional[float], typer.Option(
            "--fps", help="Frame rate (default: the store's).", show_default=False)] = None,
        robot_type: Annotated[Optional[str], typer.Option(
            "--robot-type", help="robot_type recorded in meta/info.json (default: the one every ingested LeRobot "
            "source of the episodes names, else none).", show_default=False)] = None,
        cameras: Annotated[Optional[str], typer.Option(
            "--cameras", help="Comma-separated cameras to export (the <cam> of observation.images.<cam>), or none "
            "(default: every camera).", show_default=False)] = None,
        device: DeviceOpt = "cpu",
        force: Annotated[bool, typer.Option("--force", help="Replace OUT if it holds an earlier export.")] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Write the store with per-frame aloe.advantage, aloe.weight and aloe.advantage_positive columns.

        The result is a LeRobotDataset v3.0 folder that LeRobot's or openpi's training scripts load;
        they can weight their loss by aloe.weight or condition on aloe.advantage_positive.

        Example: aloe export store/ --scores scores/ --to lerobot exported/ --method aloe

        Example, no critic: aloe export store/ exported/ --method awr

        Example, without the depth camera: aloe export store/ exported/ --scores scores/ --cameras wrist,top
        """
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from ..export import export, parse_cameras
        from ..policy.builtin import resolve_device

        bar = Progress(TextColumn("[bold]export"), BarColumn(), MofNCompleteColumn(), console=err, transient=True,
                       disable=not err.is_terminal)  # piped: no bar, no stray blank line
        state = {"task": None}

        def progress(done: int, total: int) -> None:
            if state["task"] is None:
                bar.start()
                state["task"] = bar.add_task("frames", total=total)
            bar.update(state["task"], completed=done)

        options = {"beta": beta, "beta_scale": beta_scale, "w_max": w_max, "top_fraction": top_fraction,
                   "reward": reward, "gamma": gamma}
        try:
            result = export(store, scores, out, to=to, method=method, options=options, force=force, fps=fps,
                            robot_type=robot_type, device=resolve_device(device), cameras=parse_cameras(cameras),
                            progress=progress)
        finally:
            if state["task"] is not None:
                bar.stop()

        def human(d: dict) -> None:
            typer.echo(f"exported {d['episodes']} episodes / {d['frames']} frames ({d['tasks']} tasks) as a "
                       f"LeRobotDataset {d['codebase_version']} with aloe.weight from --method {d['method']} "
                       f"-> {d['out']}")
            for line in weights_lines(d, indicator=True):
                typer.echo(line)
            if d["dropped_columns"]:
                err.print(f"[yellow]warning:[/yellow] not exported (missing on some frames): "
                          f"{', '.join(d['dropped_columns'])}")
            if d["retimed_episodes"]:
                rates = ", ".join(f"{n} at {r} fps" for r, n in d["retimed_episodes"].items())
                err.print(f"[yellow]warning:[/yellow] episodes recorded at another rate ({rates}) are timed at "
                          f"{d['fps']} fps, frames not resampled: they play faster or slower than recorded")
            if not d["outcomes"].startswith("next."):
                err.print(f"[yellow]warning:[/yellow] outcomes {d['outcomes']}")

        emit(result, json_out, human)
