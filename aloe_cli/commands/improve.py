"""`aloe improve`: train a new chunk policy from the store (behaviour cloning; weighted methods later)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import DeviceOpt, JsonOpt, StoreArg, command, emit, err, fmt


def register(app: typer.Typer) -> None:
    @command(app, "improve")
    def improve(
        store: StoreArg,
        out: Annotated[Path, typer.Option("--out", help="Policy directory to write.", show_default=False)],
        method: Annotated[str, typer.Option(
            "--method", help="bc: behaviour cloning on every chunk (weighted methods come later).")] = "bc",
        chunk_size: Annotated[Optional[int], typer.Option(
            "--chunk-size", min=1, help="Actions per chunk H (default 10, or the --init policy's).",
            show_default=False)] = None,
        steps: Annotated[Optional[int], typer.Option(
            "--steps", min=1, help="Gradient steps (default 5000).", show_default=False)] = None,
        batch_size: Annotated[Optional[int], typer.Option(
            "--batch-size", min=1, help="Chunks per step (default 256).", show_default=False)] = None,
        lr: Annotated[Optional[float], typer.Option(
            "--lr", help="Peak learning rate (default 3e-4).", show_default=False)] = None,
        seed: Annotated[int, typer.Option("--seed", help="Random seed (split, weights, batches, noise).")] = 0,
        device: DeviceOpt = "auto",
        init: Annotated[Optional[Path], typer.Option(
            "--init", help="Start from this policy directory (fine-tune).", show_default=False)] = None,
        force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Train a chunk policy on the store's chunks and write it to --out (usable as --policy).

        Example: aloe improve store/ --method bc --out policies/bc0 --chunk-size 10 --steps 5000
        """
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from ..improve import improve as run_improve

        settings = {"chunk_size": chunk_size, "steps": steps, "batch_size": batch_size, "lr": lr}
        settings = {k: v for k, v in settings.items() if v is not None}
        settings.update(seed=seed, device=device)
        bar = Progress(TextColumn("[bold]improve {task.fields[method]}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("loss {task.fields[loss]}  val {task.fields[val]}"), TimeRemainingColumn(),
                       console=err, transient=True)
        state = {"task": None, "val": "-"}

        def progress(step: int, total: int, info: dict) -> None:
            if state["task"] is None:  # started on the first report, so bad input prints nothing else
                bar.start()
                state["task"] = bar.add_task("train", total=total, method=method, loss="-", val="-")
            if "val/flow_loss" in info:
                state["val"] = f"{info['val/flow_loss']:.4f}"
            bar.update(state["task"], completed=step, loss=f"{info['policy/flow_loss']:.4f}", val=state["val"])

        try:
            result = run_improve(store, out, method=method, settings=settings, init=init, force=force,
                                 progress=progress)
        finally:
            if state["task"] is not None:
                bar.stop()

        def human(d: dict) -> None:
            typer.echo(f"trained {d['method']} policy (H={d['chunk_size']}, action {d['action_dim']}) on "
                       f"{d['train_episodes']} episodes / {d['train_chunks']} chunks "
                       f"(validation: {d['val_episodes']} episodes), {d['steps']} steps in {fmt(d['time_s'], 1)} s "
                       f"on {d['device']}: train loss {fmt(d['final_train_loss'], 4)}, "
                       f"val loss {fmt(d['final_val_loss'], 4)} -> {d['out']}")

        emit(result, json_out, human)
