"""`aloe ingest`: heterogeneous episode logs into one Parquet episode store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import JsonOpt, StoreArg, command, emit, err, plural


def register(app: typer.Typer) -> None:
    @command(app, "ingest")
    def ingest(
        store: StoreArg,
        source: Annotated[Path, typer.Argument(help="A file or folder of episodes.", show_default=False)],
        format: Annotated[Optional[str], typer.Option(
            "--format", help="aloha, robomimic, lerobot, minari or rlds (default: detected).")] = None,
        force: Annotated[bool, typer.Option("--force", help="Re-ingest a source already in the store.")] = False,
        success: Annotated[Optional[str], typer.Option(
            "--success", help="Outcome for episodes whose source has none: true, false or unknown.")] = None,
        labels: Annotated[Optional[Path], typer.Option(
            "--labels", help="CSV with source_key or episode_index, success, optional policy_id.")] = None,
        policy_id: Annotated[Optional[str], typer.Option(
            "--policy-id", help="Which policy version (or 'human') produced episodes that do not say.")] = None,
        task: Annotated[Optional[str], typer.Option("--task", help="Task text for episodes that have none.")] = None,
        state_keys: Annotated[Optional[str], typer.Option(
            "--state-keys", help="Comma-separated observation keys that make up the state.")] = None,
        filter_key: Annotated[Optional[str], typer.Option(
            "--filter", help="robomimic mask/<filter> key, e.g. train.")] = None,
        split: Annotated[Optional[str], typer.Option(
            "--split", help="RLDS split to read, e.g. train (default: every split).")] = None,
        images: Annotated[str, typer.Option("--images", help="keep or drop camera streams.")] = "keep",
        image_size: Annotated[Optional[str], typer.Option(
            "--image-size", help="WxH to downsample camera frames at ingest, e.g. 64x64.")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Add a source of episodes to the store, atomically.

        Example: aloe ingest store/ ~/data/aloha_sim_insertion --policy-id human --success true
        """
        from rich.markup import escape

        from ..errors import BadInput
        from ..formats import ReadOptions
        from ..ingest import ingest as run_ingest, parse_success

        if images not in ("keep", "drop"):
            raise BadInput(f"{images!r} is not keep or drop", field="--images")
        size = None
        if image_size:
            try:
                w, h = (int(v) for v in image_size.lower().split("x"))
                size = (w, h)
            except ValueError:
                raise BadInput(f"{image_size!r} is not WxH", field="--image-size") from None
            if w < 1 or h < 1:
                raise BadInput(f"{image_size!r}: width and height must be at least 1", field="--image-size")
        options = ReadOptions(
            state_keys=[k.strip() for k in state_keys.split(",")] if state_keys else None,
            filter_key=filter_key, images=images, image_size=size, split=split)
        result = run_ingest(
            store, source, format, options=options, force=force,
            success=parse_success(success, None, "--success") if success is not None else None,
            labels=labels, policy_id=policy_id, task=task)
        d = result.to_dict()

        def human(d: dict) -> None:
            if d["unchanged"]:
                typer.echo(f"{source}: already in {store} (ingest {d['ingest_id']}); use --force to re-ingest")
                return
            n = d["episodes_added"]
            typer.echo(f"ingested {plural(n, 'episode')} ({d['frames_added']} frames) "
                       f"from {source} [{d['format']}] into {store}")
            if d["duplicates_skipped"]:
                err.print(f"skipped {plural(d['duplicates_skipped'], 'episode')} already in the store")
            if d["episodes_replaced"]:
                err.print(f"replaced {plural(d['episodes_replaced'], 'episode')} from the earlier ingest")
            if d["episodes_relabelled"]:
                err.print(f"relabelled {plural(d['episodes_relabelled'], 'episode')} already in the store")
            for w in d["warnings"]:  # task texts and feature names are the source's: not rich markup
                err.print(f"[yellow]warning:[/yellow] {escape(w)}", soft_wrap=True)  # one line, unwrapped

        emit(d, json_out, human)
