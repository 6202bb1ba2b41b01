"""`aloe info`: what is in a store."""

from __future__ import annotations

import typer
from rich.table import Table

from ._common import JsonOpt, StoreArg, command, emit, err, fmt, plural


def register(app: typer.Typer) -> None:
    @command(app, "info")
    def info(store: StoreArg, json_out: JsonOpt = False) -> None:
        """Episodes and frames per policy and per task: success rate, length, interventions.

        Example: aloe info store/ --json
        """
        from ..store import Store
        from ..summary import store_summary

        summary = store_summary(Store.open(store))

        def human(d: dict) -> None:
            typer.echo(f"{d['store']}: {d['episodes']} episodes, {d['frames']} frames, "
                       f"state {d['state_dim']}, action {d['action_dim']}, fps {fmt(d['fps'], 1)}, "
                       f"success {fmt(d['success_rate'])}; {plural(d['frames_files'], 'frames file')}")
            for key, title in (("per_policy_id", "policy_id"), ("per_task", "task")):
                t = Table(title=f"per {title}")
                for c in (title, "episodes", "frames", "success", "labelled", "mean length", "intervention"):
                    t.add_column(c)
                for row in d[key]:
                    t.add_row(str(row[title]), str(row["episodes"]), str(row["frames"]),
                              fmt(row["success_rate"]), str(row["labelled"]), fmt(row["mean_length"], 1),
                              fmt(row["intervention_fraction"]))
                err.print(t)

        emit(summary, json_out, human)
