"""`aloe improve`: one policy-improvement round (advantage weights, AWR, filtered BC, conditioning or BC)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (AwrGammaOpt, AwrRewardOpt, BetaOpt, BetaScaleOpt, DeviceOpt, JsonOpt, StoreArg, TopFractionOpt,
                      WMaxOpt, command, emit, err, fmt)

METHOD_HELP = ("aloe: weights clip(exp(A/beta), 0, w_max) from --scores; awr: the same with a Monte-Carlo "
               "advantage (no critic needed); filtered: BC on the top fraction by advantage; conditioned: "
               "RECAP-style advantage indicator as an input; bc: behaviour cloning on everything.")


def weights_lines(d: dict, indicator: bool = False) -> list[str]:
    """The weight distribution of a round, for people: ESS, clipping, weight by policy and by intervention."""
    w = d.get("weights")
    if not w:
        return []
    lines = [f"weights: ESS {w['effective_sample_size']:.0f} of {w['chunks']} chunks ({100 * w['ess_fraction']:.1f}%), "
             f"mean {fmt(w['mean'], 3)}, max {fmt(w['max'], 3)}, zero {100 * w['fraction_zero']:.1f}%"
             + (f", clipped at {fmt(d.get('w_max'), 3)}: {100 * w['fraction_clipped']:.1f}%"
                if "fraction_clipped" in w else "")
             + (f" (beta {d['beta']:.4g}, {d.get('beta_rule')})" if "beta" in d else "")]
    for key, title in (("mean_by_policy_id", "mean weight by policy_id"),
                       ("mean_by_intervention", "mean weight by intervention")):
        if key in w:
            lines.append(f"  {title}: " + ", ".join(f"{k} {v:.3f}" for k, v in w[key].items()))
    ind = d.get("indicator")
    if ind and indicator:
        lines.append(f"indicator: positive {100 * ind['positive_fraction']:.1f}% (A > {ind['threshold']:.4g}, "
                     f"the {ind['quantile']:.0%} quantile, or a human's)")
        lines.append("  positive by policy_id: " + ", ".join(f"{k} {v:.2f}"
                                                         for k, v in ind["positive_by_policy_id"].items()))
    return lines


def register(app: typer.Typer) -> None:
    @command(app, "improve")
    def improve(
        store: StoreArg,
        out: Annotated[Path, typer.Option("--out", help="Policy directory to write.", show_default=False)],
        method: Annotated[str, typer.Option("--method", help=METHOD_HELP)] = "bc",
        scores: Annotated[Optional[Path], typer.Option(
            "--scores", help="Scores directory of `aloe score` on this store (every method but bc; awr takes "
            "only its reward and gamma).", show_default=False)] = None,
        policy: Annotated[Optional[Path], typer.Option(
            "--policy", "--init", help="Base policy directory to fine-tune (default: train from scratch).",
            show_default=False)] = None,
        beta: BetaOpt = None,
        beta_scale: BetaScaleOpt = None,
        w_max: WMaxOpt = None,
        top_fraction: TopFractionOpt = None,
        reward: AwrRewardOpt = None,
        gamma: AwrGammaOpt = None,
        round_name: Annotated[Optional[str], typer.Option(
            "--round-name", help="Name recorded in the lineage (default: the --out folder's name).",
            show_default=False)] = None,
        chunk_size: Annotated[Optional[int], typer.Option(
            "--chunk-size", min=1, help="Actions per chunk H (default: the scores', the base's, or 10).",
            show_default=False)] = None,
        steps: Annotated[Optional[int], typer.Option(
            "--steps", min=1, help="Gradient steps (default 5000).", show_default=False)] = None,
        batch_size: Annotated[Optional[int], typer.Option(
            "--batch-size", min=1, help="Chunks per step (default 256).", show_default=False)] = None,
        lr: Annotated[Optional[float], typer.Option(
            "--lr", help="Peak learning rate (default 3e-4).", show_default=False)] = None,
        obs: Annotated[Optional[str], typer.Option(
            "--obs", help="Observation inputs: state[,images.<cam>][,<numeric column>] (default: state, or the "
            "base's); cameras go through a small conv encoder trained from scratch.", show_default=False)] = None,
        seed: Annotated[int, typer.Option("--seed", help="Random seed (split, weights, batches, noise).")] = 0,
        device: DeviceOpt = "auto",
        force: Annotated[bool, typer.Option("--force", help="Replace --out if it holds a policy.")] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Train the next policy from the store's chunks, weighted by their advantages; write it to --out.

        The new policy.json records its lineage (round, base, store, scores, critic, method,
        settings, weights); `aloe rounds` shows it.

        Example: aloe improve store/ --scores scores/ --policy policies/r0 --method aloe --out policies/r1
        """
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from ..improve import improve as run_improve

        settings = {"chunk_size": chunk_size, "steps": steps, "batch_size": batch_size, "lr": lr, "obs": obs}
        settings = {k: v for k, v in settings.items() if v is not None}
        settings.update(seed=seed, device=device)
        options = {"beta": beta, "beta_scale": beta_scale, "w_max": w_max, "top_fraction": top_fraction,
                   "reward": reward, "gamma": gamma}
        bar = Progress(TextColumn("[bold]improve {task.fields[method]}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("loss {task.fields[loss]}  val {task.fields[val]}"), TimeRemainingColumn(),
                       console=err, transient=True,
                       disable=not err.is_terminal)  # piped: no bar, no stray blank line
        state = {"task": None, "val": "-"}

        def progress(step: int, total: int, info: dict) -> None:
            if state["task"] is None:  # started on the first report, so bad input prints nothing else
                bar.start()
                state["task"] = bar.add_task("train", total=total, method=method, loss="-", val="-")
            if "val/flow_loss" in info:
                state["val"] = f"{info['val/flow_loss']:.4f}"
            bar.update(state["task"], completed=step, loss=f"{info['policy/flow_loss']:.4f}", val=state["val"])

        try:
            result = run_improve(store, out, method=method, settings=settings, base=policy, scores=scores,
                                 options=options, round_name=round_name, force=force, progress=progress)
        finally:
            if state["task"] is not None:
                bar.stop()

        def human(d: dict) -> None:
            base = f" from {d['base_policy']}" if d.get("base_policy") else " from scratch"
            typer.echo(f"round {d['round']} ({d['round_name']}): trained {d['method']} policy{base} "
                       f"(H={d['chunk_size']}, action {d['action_dim']}) on "
                       f"{d['train_episodes']} episodes / {d['train_chunks']} chunks "
                       f"(validation: {d['val_episodes']} episodes), {d['steps']} steps in {fmt(d['time_s'], 1)} s "
                       f"on {d['device']}: train loss {fmt(d['final_train_loss'], 4)}, "
                       f"val loss {fmt(d['final_val_loss'], 4)} -> {d['out']}")
            for line in weights_lines(d, indicator=d["method"] == "conditioned"):
                typer.echo(line)

        emit(result, json_out, human)
