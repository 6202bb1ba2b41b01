"""Store compaction: merge small frames files into fewer, larger ones, atomically.

A rollout that commits every episode writes one frames file per episode, so a store fed by the loop for
weeks holds thousands of small files, and every reader opens each one. `compact_store` rewrites runs of
small files into files of about `target_mb` each (`aloe rollout` merges the files of its own run when
it ends). Each episode stays one row group with the same frames,
the episodes table keeps its rows in their order (so the store's fingerprint, and every critic and
scores directory made from it, stay valid), and only `frames_file` and `row_group` change. The write
goes through the store's journal like an ingest: a crash leaves the store before or after, never
between.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Collection

import pyarrow as pa
import pyarrow.parquet as pq

from . import schema as S
from .errors import BadInput, StoreError
from .store import (WRITE_WAIT_S, Store, _Lock, _fsync_write, _metadata_renames, _new_staging, _now,
                    _roll_forward, _write_episodes, _write_journal)

MiB = 1 << 20


def plan_groups(files: list[tuple[str, int, object]], target_bytes: int,
                only: Collection[str] | None = None) -> list[list[str]]:
    """Runs of small frames files to merge, in store order: [(name, size, schema)] -> [[name, ...]].

    Files of `target_bytes` or more stay as they are, and so do files not in `only` where it is given.
    The rest are packed in order into groups whose sizes add up to at most `target_bytes` (a group is at
    least two files; a file whose schema differs from the group's starts a new one). E.g. sizes 3, 3, 3,
    10, 1, 1 with target 8 -> [[a, b], [e, f]] (c alone would not be merged, d is big enough); the same
    with only = {c, e, f} -> [[e, f]]."""
    groups: list[list[str]] = []
    current: list[str] = []
    size, schema = 0, None

    def close() -> None:
        if len(current) >= 2:
            groups.append(list(current))
        current.clear()

    for name, nbytes, sch in files:
        if nbytes >= target_bytes or (only is not None and name not in only):
            close()
            size, schema = 0, None
            continue
        if current and (size + nbytes > target_bytes or sch != schema):
            close()
            size = 0
        if not current:
            schema = sch
        current.append(name)
        size += nbytes
    close()
    return groups


def compact_store(root: str | os.PathLike, target_mb: float = 128.0, dry_run: bool = False,
                  progress: Callable[[int, int], None] | None = None, wait_s: float | None = WRITE_WAIT_S,
                  only: Collection[str] | None = None) -> dict:
    """Merge the store's small frames files (see the module docstring); returns what it did (or would do).
    Waits `wait_s` seconds for another writer to finish, as `Store.writer` does. `only`: merge only these
    frames files (store-relative names, e.g. those one rollout wrote); the others stay as they are."""
    if not (isinstance(target_mb, (int, float)) and 0 < target_mb < float("inf")):
        raise BadInput(f"must be a positive number of MiB, got {target_mb!r}", field="--target-mb")
    root = Path(root)
    store = Store.open(root)  # refuses a non-store, rolls an interrupted write forward
    with _Lock(root, wait_s):
        store._reload()
        eps = store.episodes
        names = list(dict.fromkeys(eps[S.FRAMES_FILE]))
        files = []
        for name in names:
            path = root / name
            try:
                files.append((name, path.stat().st_size, pq.read_schema(path).remove_metadata()))
            except (OSError, pa.ArrowException) as e:
                raise StoreError(f"cannot be read: {e}", path) from None
        target = int(target_mb * MiB)
        groups = plan_groups(files, target, only=None if only is None else set(only))
        sizes = {name: nbytes for name, nbytes, _ in files}
        merged = [n for g in groups for n in g]
        result = {
            "store": str(root),
            "dry_run": dry_run,
            "target_mb": target_mb,
            "files_before": len(names),
            "files_after": len(names) - len(merged) + len(groups),
            "files_merged": len(merged),
            "files_written": len(groups),
            "episodes_moved": int(eps[S.FRAMES_FILE].isin(merged).sum()),
            "bytes_merged": int(sum(sizes[n] for n in merged)),
            "fingerprint": store.fingerprint,
        }
        if dry_run or not groups:
            return result
        txn_id = uuid.uuid4().hex[:12]
        stage_rel = f"{S.STAGING_DIR}/{txn_id}"
        staging = _new_staging(root, txn_id)
        try:
            result["bytes_written"] = _merge(store, groups, staging, txn_id, stage_rel, result, progress)
        except BaseException:
            if not (root / S.TXN_FILE).exists():  # before the commit point: leave the store as it was
                shutil.rmtree(root / S.STAGING_DIR, ignore_errors=True)
            raise
        _roll_forward(root)
    return result


def _merge(store: Store, groups: list[list[str]], staging: Path, txn_id: str, stage_rel: str, result: dict,
           progress: Callable[[int, int], None] | None) -> int:
    """Stage the merged files, the new episodes table and manifest; write the journal. Returns bytes written."""
    root, eps = store.root, store.episodes
    by_file = eps.groupby(S.FRAMES_FILE, sort=False).indices  # frames file -> its episodes' positions
    stamp = _now().replace("-", "").replace(":", "")[:15]
    frames_file, row_groups = eps[S.FRAMES_FILE].to_numpy(object).copy(), eps[S.ROW_GROUP].to_numpy().copy()
    renames, new_name, written, done = [], {}, 0, 0
    for gi, group in enumerate(groups):
        out_rel = f"{S.FRAMES_DIR}/part-{stamp}-{txn_id}-{gi}.parquet"
        staged = staging / f"frames-{gi}.parquet"
        order = [i for name in group for i in sorted(by_file[name], key=lambda i: row_groups[i])]
        writer = None
        try:  # Store.iter_episode_tables checks each episode's row group and frame count as it reads
            for new_rg, (i, (_, table)) in enumerate(zip(order, store.iter_episode_tables(
                    eps[S.EPISODE_ID].iloc[order]))):
                if writer is None:
                    writer = pq.ParquetWriter(staged, table.schema, compression="zstd")
                writer.write_table(table, row_group_size=max(table.num_rows, 1))
                frames_file[i], row_groups[i] = out_rel, new_rg
                done += 1
                if progress is not None:
                    progress(done, result["episodes_moved"])
        finally:
            if writer is not None:
                writer.close()
        found = pq.read_metadata(staged).num_row_groups  # read back before the commit point
        if found != len(order):
            raise StoreError(f"has {found} row groups, expected {len(order)}", staged)
        new_name.update((name, out_rel) for name in group)
        written += staged.stat().st_size
        renames.append([f"{stage_rel}/{staged.name}", out_rel])
    eps = eps.assign(**{S.FRAMES_FILE: frames_file, S.ROW_GROUP: row_groups})
    _write_episodes(eps, staging / S.EPISODES_FILE)
    manifest = json.loads(json.dumps(store.manifest))
    for ingest in manifest["ingests"]:
        if ingest.get("frames_file") in new_name:
            ingest["frames_file"] = new_name[ingest["frames_file"]]
    _fsync_write(staging / S.MANIFEST_FILE, json.dumps(manifest, indent=2).encode())
    _write_journal(root, txn_id, renames + _metadata_renames(stage_rel), sorted(new_name))
    return written
