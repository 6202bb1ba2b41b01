"""`aloe demo`: the whole loop on the simulated default robot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import JsonOpt, SeedOpt, command, emit, err, fmt


def register(app: typer.Typer) -> None:
    @command(app, "demo")
    def demo(
        out: Annotated[Path, typer.Option("--out", help="Folder for everything the demo writes.")] = Path("aloe-demo"),
        task: Annotated[str, typer.Option("--task", help="Meta-World v3 task.")] = "drawer-open-v3",
        quick: Annotated[bool, typer.Option("--quick", help="A small budget (about a minute): every stage runs.")] = False,
        method: Annotated[str, typer.Option(
            "--method", help="Improvement method: aloe, awr, filtered, conditioned or bc.")] = "aloe",
        force: Annotated[bool, typer.Option("--force", help="Replace --out if it holds an earlier demo.")] = False,
        seed: SeedOpt = 0,
        json_out: JsonOpt = False,
    ) -> None:
        """Run the loop on simulated Meta-World: collect, fit the critic, score, improve, roll out again.

        Logged data: noisy scripted experts and a weak behaviour-cloned policy v0 with the expert
        taking over on stalls. Prints v0's value estimated from the logs next to its value measured
        in the simulator, and the success rate before and after one improvement round.

        Example: aloe demo --out aloe-demo
        """
        from ..demo import DemoConfig, run_demo

        overrides = dict(out=str(out), task=task, seed=seed, improve_method=method)
        config = DemoConfig.quick(**overrides) if quick else DemoConfig(**overrides)
        result = run_demo(config, log=lambda s: err.print(f"[bold]demo[/bold] {s}"), force=force)

        def human(d: dict) -> None:
            est, meas = d["policy_value_v0"]["estimated"], d["policy_value_v0"]["measured"]
            se = meas["stderr"]
            typer.echo(f"value of v0: estimated from the logs {fmt(est['estimate'])} "
                       f"[{fmt(est['ci_low'])}, {fmt(est['ci_high'])}]; measured in the simulator "
                       f"{fmt(meas['mean'])}" + (f" ± {fmt(se)}" if se is not None else "")
                       + f" ({meas['episodes']} episodes)")
            typer.echo(f"success: v0 {fmt(d['success_v0'], 2)} -> v1 {fmt(d['success_v1'], 2)} "
                       f"({d['eval_episodes']} episodes each, {d['improve'].get('method', method)} round)")
            typer.echo(f"report: {d['report']}")
            typer.echo(f"everything is in {d['out']}/ ({d['seconds']:.0f} s)")

        emit(result, json_out, human)
