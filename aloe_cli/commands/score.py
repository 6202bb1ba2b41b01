"""`aloe score`: values and advantages of every logged chunk, per-episode summaries, the policy value."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import DeviceOpt, JsonOpt, PolicyArgOpt, PolicyOpt, StoreArg, command, emit, err, fmt


def register(app: typer.Typer) -> None:
    @command(app, "score")
    def score_cmd(
        store: StoreArg,
        critic: Annotated[Path, typer.Option("--critic", help="A critic directory from `aloe fit-critic`.",
                                             show_default=False)],
        out: Annotated[Path, typer.Option("--out", help="Scores directory to write.", show_default=False)],
        policy: PolicyOpt = None,
        policy_arg: PolicyArgOpt = None,
        samples: Annotated[Optional[int], typer.Option(
            "--samples", help="K policy chunks per state for V (default: the critic's).")] = None,
        stride: Annotated[int, typer.Option("--stride", help="Score every S-th frame as a chunk start.")] = 1,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Chunks scored at once.")] = 1024,
        report: Annotated[bool, typer.Option("--report", help="Also write report.html.")] = False,
        device: DeviceOpt = "auto",
        json_out: JsonOpt = False,
    ) -> None:
        """Score every logged chunk: Q, V of the evaluated policy, advantage; per-episode summaries.

        Writes chunks.parquet, episodes.parquet and summary.json into --out; a report of earlier scores
        there is deleted with them (--report writes one of these).

        Example: aloe score store/ --critic critic/ --out scores/ --report
        """
        from ..policy import parse_kv
        from ..scoring import score
        from .fit_critic import make_progress

        bar, progress = make_progress()
        with bar:
            summary = score(store, critic, out, policy_spec=policy, policy_args=parse_kv(policy_arg, "--policy-arg"),
                            samples=samples, stride=stride, batch_size=batch_size, device=device,
                            progress=None if json_out else progress)
        if report:
            try:
                from ..report import write_report
            except ImportError:
                summary["warnings"].append("--report: this aloe has no report module")
            else:
                summary["report"] = str(write_report(out))

        def human(d: dict) -> None:
            pv = d["policy_value"]
            typer.echo(f"policy value {fmt(pv['estimate'])} [{fmt(pv['ci_low'])}, {fmt(pv['ci_high'])}] over "
                       f"{d['episodes']} episodes; {d['chunks']} chunks scored -> {out}")
            for pid, v in d["per_policy_id"].items():
                err.print(f"  {pid}: V(start) {fmt(v['v_start']['estimate'])}, logged return "
                          f"{fmt(v['return']['estimate'])}, success {fmt(v['success_rate'])} ({v['episodes']} episodes)")
            for w in d["warnings"]:
                err.print(f"[yellow]warning:[/yellow] {w}")
            if "report" in d:
                typer.echo(f"report: {d['report']}")

        emit(summary, json_out, human)
