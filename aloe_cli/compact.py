"""Store compaction: merge small frames files into fewer, larger ones, atomically.

A rollout that commits every episode writes one frames file per episode, so a store fed by the loop for
weeks holds thousands of small files, and every reader opens each one. `compact_store` rewrites runs of
small files into files of about `target_mb` each. Each episode stays one row group with the same frames,
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
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from . import schema as S
from .errors import BadInput, StoreError
from .store import (WRITE_WAIT_S, Store, _Lock, _fsync_write, _metadata_renames, _now, _roll_forward,
                    _write_episodes, _write_journal)

MiB = 1 << 20


def plan_groups(files: list[tuple[str, int, object]], target_bytes: int) -> list[list[str]]:
    """Runs of small frames files to merge, in store order: [(name, size, schema)] -> [[name, ...]].

    Files of `target_bytes` or more stay as they are. The rest are packed in order into groups whose
    sizes add up to at most `target_bytes` (a group is at least two files; a file whose schema differs
    from the group's starts a new one). E.g. sizes 3, 3, 3, 10, 1, 1 with target 8 ->
    [[a, b], [e, f]] (c alone would not be merged, d is big enough)."""
    groups: list[list[str]] = []
    current: list[str] = []
    size, schema = 0, None

    def close() -> None:
        if len(current) >= 2:
            groups.append(list(current))
        current.clear()

    for name, nbytes, sch in files:
        if nbytes >= target_bytes:
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
                  progress: Callable[[int, int], None] | None = None, wait_s: float | None = WRITE_WAIT_S) -> dict:
    """Merge the store's small frames files (see the module docstring); returns what it did (or would do).
    Waits `wait_s` seconds for another writer to finish, as `Store.writer` does."""
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
        groups = plan_groups(files, target)
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
        staging = root / stage_rel
        shutil.rmtree(root / S.STAGING_DIR, ignore_errors=True)  # leftovers of crashed writers (we hold the lock)
        staging.mkdir(parents=True)
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
    root, eps = store.root, store.episodes.copy()
    stamp = _now().replace("-", "").replace(":", "")[:15]
    renames, new_name, written, done = [], {}, 0, 0
    total = result["episodes_moved"]
    for gi, group in enumerate(groups):
        out_rel = f"{S.FRAMES_DIR}/part-{stamp}-{txn_id}-{gi}.parquet"
        staged = staging / f"frames-{gi}.parquet"
        writer, row_group = None, 0
        try:
            for name in group:
                src = pq.ParquetFile(root / name)
                rows = eps.index[eps[S.FRAMES_FILE] == name]
                for i in sorted(rows, key=lambda i: int(eps.at[i, S.ROW_GROUP])):
                    table = src.read_row_group(int(eps.at[i, S.ROW_GROUP]))
                    if table.num_rows != eps.at[i, S.LENGTH]:
                        raise StoreError(f"episode {eps.at[i, S.EPISODE_ID]} has {table.num_rows} frames but the "
                                         f"episodes table says {eps.at[i, S.LENGTH]}", root / name, S.LENGTH)
                    if writer is None:
                        writer = pq.ParquetWriter(staged, src.schema_arrow, compression="zstd")
                    writer.write_table(table, row_group_size=max(table.num_rows, 1))
                    eps.at[i, S.FRAMES_FILE], eps.at[i, S.ROW_GROUP] = out_rel, row_group
                    row_group += 1
                    done += 1
                    if progress is not None:
                        progress(done, total)
                new_name[name] = out_rel
        finally:
            if writer is not None:
                writer.close()
        if pq.ParquetFile(staged).num_row_groups != row_group:  # read back before the commit point
            raise StoreError(f"has {pq.ParquetFile(staged).num_row_groups} row groups, expected {row_group}",
                             staged)
        written += staged.stat().st_size
        renames.append([f"{stage_rel}/{staged.name}", out_rel])
    _write_episodes(eps, staging / S.EPISODES_FILE)
    manifest = json.loads(json.dumps(store.manifest))
    for ingest in manifest["ingests"]:
        if ingest.get("frames_file") in new_name:
            ingest["frames_file"] = new_name[ingest["frames_file"]]
    _fsync_write(staging / S.MANIFEST_FILE, json.dumps(manifest, indent=2).encode())
    _write_journal(root, txn_id, renames + _metadata_renames(stage_rel), sorted(new_name))
    return written
