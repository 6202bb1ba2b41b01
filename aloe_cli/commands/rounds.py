"""`aloe rounds`: the lineage of improved policies (round, base, method, weights) as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ._common import JsonOpt, command, emit, err, fmt, plural


STORE_NOTES = {"relabelled": "relabelled since: it was trained on other outcomes",
               "rewritten": "rewritten since: it no longer holds these episodes in order",
               "missing": "missing", "unreadable": "unreadable: see `aloe info` on it"}


def _data(r: dict) -> str:
    """The table's `store` cell: the store's status since the policy was trained, and episodes added."""
    status = r["store_status"] or "?"
    return status + (f" +{r['episodes_since']}" if r["episodes_since"] else "")


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def register(app: typer.Typer) -> None:
    @command(app, "rounds")
    def rounds_cmd(
        target: Annotated[Path, typer.Argument(help="A policy directory (its chain) or a store (its policies).",
                                               show_default=False)],
        search: Annotated[Optional[Path], typer.Option(
            "--search", help="For a store: folder searched for policy dirs (default: the store's parent).",
            show_default=False)] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Show the improvement rounds: each policy's round, base, method, scores and weight distribution.

        Example: aloe rounds policies/r3
        """
        from ..rounds import rounds

        result = rounds(target, search)

        def human(d: dict) -> None:
            rows = d["policies"]
            what = "in the chain of" if d["kind"] == "policy" else "trained on the store"
            typer.echo(f"{plural(len(rows), 'policy', 'policies')} {what} {d['target']}")
            for r in rows:
                note = "" if r["base_status"] in (None, "ok") else f"  (base {r['base_status']})"
                if r["store_status"] not in (None, "ok"):
                    note += f"  (store {STORE_NOTES[r['store_status']]})"
                ro = r.get("rollouts")
                if ro:
                    note += f"  (rolled out: {ro['episodes']} episodes, success {_pct(ro['success_rate'])})"
                typer.echo(f"  round {fmt(r['round'])}  {r['round_name'] or '-'}  {r['method'] or '-'}  "
                           f"{r['policy']}{note}")
                if r.get("problem"):
                    err.print(f"[yellow]warning:[/yellow] {r['policy']}: {r['problem']}")
            t = Table(title="improvement rounds")
            cols = ["#", "name", "method", "base", "store", "ESS", "clip", "val loss"]
            if d["kind"] == "store":
                cols.append("rollouts")
            for c in cols:
                t.add_column(c)
            for r in rows:
                base = "-" if r["base_policy"] is None else Path(r["base_policy"]).name + (
                    "" if r["base_status"] == "ok" else f" ({r['base_status']})")
                cells = [fmt(r["round"]), r["round_name"] or "-", r["method"] or "-", base, _data(r),
                         _pct(r["ess_fraction"]),
                         _pct(r["fraction_clipped"]), fmt(r["final_val_loss"], 4)]
                if d["kind"] == "store":
                    ro = r.get("rollouts")
                    cells.append("-" if not ro else f"{ro['episodes']} ({_pct(ro['success_rate'])})")
                t.add_row(*cells)
            err.print(t)

        emit(result, json_out, human)
