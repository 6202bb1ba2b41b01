"""`aloe compact`: merge a store's small frames files into fewer, larger ones."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonOpt, StoreArg, command, emit, plural


def register(app: typer.Typer) -> None:
    @command(app, "compact")
    def compact(
        store: StoreArg,
        target_mb: Annotated[float, typer.Option(
            "--target-mb", help="Size of a merged frames file in MiB; files this large are left alone.")] = 128.0,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be merged; change nothing.")] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Merge the store's small frames files into fewer, larger ones, atomically.

        Rollouts write a frames file per episode; this merges them into files of about --target-mb.
        Episodes, their order and the store's fingerprint stay the same, so critics and scores made
        from the store stay valid.

        Example: aloe compact store/ --dry-run
        """
        from ..compact import compact_store
        from .fit_critic import make_progress

        bar, progress = make_progress()
        with bar:
            d = compact_store(store, target_mb=target_mb, dry_run=dry_run,
                              progress=None if json_out else lambda done, total: progress("episodes", done, total, {}))

        def human(d: dict) -> None:
            if not d["files_merged"]:
                n = d["files_before"]
                typer.echo(f"{d['store']}: nothing to compact ({plural(n, 'frames file')}; none can be "
                           f"merged below {d['target_mb']:g} MiB)")
                return
            verb = "would merge" if d["dry_run"] else "merged"
            tail = "" if d["dry_run"] else f" ({d['bytes_written'] / 2**20:.1f} MiB written); fingerprint unchanged"
            typer.echo(f"{d['store']}: {verb} {d['files_merged']} frames files ({d['episodes_moved']} episodes, "
                       f"{d['bytes_merged'] / 2**20:.1f} MiB) into {d['files_written']}; {d['files_before']} -> "
                       f"{d['files_after']} files{tail}")

        emit(d, json_out, human)
