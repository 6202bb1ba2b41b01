"""Ingest a source of episodes into the store: the library side of `aloe ingest`."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .episode import Episode
from .errors import BadInput, plural
from .formats import ReadOptions, check_options_apply, detect_format, get_reader
from .store import IngestResult, Store


@dataclass
class Labels:
    """Per-episode outcome labels from a CSV file: by source_key or by episode_index."""

    by_key: dict[str, dict]
    by_index: dict[int, dict]
    path: str | None = None
    key_lines: dict[str, int] = field(default_factory=dict)  # the line of the file each label is on
    index_lines: dict[int, int] = field(default_factory=dict)

    def lookup(self, ep: Episode) -> dict | None:
        """The episode's label; a source_key row and an episode_index row that both name it must agree."""
        by_key, by_index = self.by_key.get(ep.source_key), self.by_index.get(ep.source_index)
        if by_key is not None and by_index is not None and by_key != by_index:
            k, i = self.key_lines[ep.source_key], self.index_lines[ep.source_index]
            raise BadInput(f"names episode {ep.source_key!r} (episode_index {ep.source_index}), which line "
                           f"{min(k, i)} labels too, {_conflict(by_key, by_index, k < i)}",
                           f"{self.path}:{max(k, i)}", "episode_index" if k < i else "source_key")
        return by_key if by_key is not None else by_index


def _label_text(label: dict) -> str:
    """A label as a row gives it: "success true, policy_id 'v2'"."""
    s = label["success"]
    text = f"success {'unknown' if s is None else str(s).lower()}"
    return text + (f", policy_id {label['policy_id']!r}" if "policy_id" in label else "")


def _conflict(first: dict, then: dict, in_order: bool = True) -> str:
    there, here = (first, then) if in_order else (then, first)
    return f"otherwise ({_label_text(there)} there, {_label_text(here)} here); give each episode one label"


_TRUE = {"true", "1", "yes", "success", "t", "y"}
_FALSE = {"false", "0", "no", "failure", "f", "n"}
_UNKNOWN = {"", "unknown", "none", "null", "nan"}


def parse_success(value: str, where: str, field: str = "success") -> bool | None:
    v = str(value).strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    if v in _UNKNOWN:
        return None
    raise BadInput(f"{value!r} is not true, false or unknown", where, field)


def read_labels(path: str | os.PathLike) -> Labels:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's "CSV UTF-8" starts with a BOM
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BadInput(f"cannot be read: {e}", path) from None
    if "success" not in fields:
        raise BadInput("missing column", path, "success")
    if "source_key" not in fields and "episode_index" not in fields:
        raise BadInput("needs a source_key or episode_index column", path, "source_key")
    labels = Labels({}, {}, str(path))
    for n, row in enumerate(rows, start=2):
        where = f"{path}:{n}"
        label = {"success": parse_success(row["success"], where)}
        if row.get("policy_id"):
            label["policy_id"] = row["policy_id"]
        if row.get("source_key"):
            key, column, table, lines = row["source_key"], "source_key", labels.by_key, labels.key_lines
        elif row.get("episode_index", "").strip():
            try:
                key = int(row["episode_index"])
            except ValueError:
                raise BadInput(f"{row['episode_index']!r} is not an integer", where, "episode_index") from None
            column, table, lines = "episode_index", labels.by_index, labels.index_lines
        else:
            continue
        # Two rows for one episode: the same label twice is harmless (files concatenated); two labels are refused.
        if key in table and table[key] != label:
            raise BadInput(f"episode {key!r} is on line {lines[key]} too, {_conflict(table[key], label)}", where,
                           column)
        table.setdefault(key, label)
        lines.setdefault(key, n)
    return labels


def hash_source(path: Path, files: list[Path] | None = None) -> str:
    """A content hash of a file, or of every file under a folder (names and bytes). `files`: the reader's
    own list of the files that make up the source (a Minari main_data.hdf5 and its metadata.json)."""
    h = hashlib.sha256()
    base = path if path.is_dir() else path.parent
    if files is None:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        h.update(str(p.relative_to(base)).encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def ingest(store_path: str | os.PathLike, source_path: str | os.PathLike, fmt: str | None = None, *,
           options: ReadOptions | None = None, force: bool = False, success: bool | None = None,
           labels: str | os.PathLike | None = None, policy_id: str | None = None, task: str | None = None,
           progress: Callable[[int], None] | None = None) -> IngestResult:
    """Read `source_path` and add its episodes to the store at `store_path`, atomically.

    Re-ingesting content already in the store is a no-op unless `force` (which replaces it).
    Any bad input raises BadInput and leaves the store as it was.
    """
    source = Path(source_path)
    if not source.exists():
        raise BadInput("no such file or directory", source)
    fmt = fmt or detect_format(source)
    reader = get_reader(fmt)
    options = options or ReadOptions()
    check_options_apply(reader, options)
    label_map = read_labels(labels) if labels else None
    store = Store.open(store_path, create=True)
    # What was read depends on the options too (--filter train vs valid, --state-keys, --images):
    # the same file read differently is a different ingest, not an unchanged one.
    read_as = json.dumps({"format": fmt, **vars(options)}, sort_keys=True, default=str)
    files = reader.source_files(source) if hasattr(reader, "source_files") else None
    content_hash = hashlib.sha256((hash_source(source, files) + read_as).encode()).hexdigest()
    # How the episodes were labelled: the same content labelled otherwise needs --force to replace it.
    labels_hash = hashlib.sha256(Path(labels).read_bytes()).hexdigest() if labels else None
    labelling = {"labels": labels_hash, "success": success, "policy_id": policy_id, "task": task}
    previous = store.find_ingest(content_hash)
    if previous is not None and not force:
        before = previous.get("options", {}).get("labelling", labelling)  # none recorded: from before they were
        changed = [k for k in labelling if before.get(k) != labelling[k]]
        if changed:
            raise BadInput(f"already in {store.root} (ingest {previous['id']}) with other "
                           f"{', '.join('--' + k.replace('_', '-') for k in changed)}; pass --force to re-ingest "
                           "it with these (it replaces that ingest's episodes)", source)
        return IngestResult(str(store.root), str(source), fmt, previous["id"], [], skipped_unchanged=True)
    src = reader.read(source, options)
    record = {"format_options": {k: v for k, v in vars(options).items() if v is not None}, "labelling": labelling,
              **src.info}
    seen_keys: set[str] = set()
    seen_indices: set[int] = set()
    with store.writer(str(source), fmt, content_hash, record, replace_hash=force) as w:
        for ep in src.episodes:
            seen_keys.add(ep.source_key)
            seen_indices.add(ep.source_index)
            label = label_map.lookup(ep) if label_map else None
            if label is not None:
                ep.success = label["success"]
                ep.terminated = None
                ep.policy_id = label.get("policy_id", ep.policy_id)
            if ep.success is None and success is not None:
                ep.success = success
                ep.terminated = None
            ep.policy_id = ep.policy_id or policy_id
            ep.task = ep.task or task or src.task
            w.add(ep, names=src.names, fps=src.fps)
            if progress:
                progress(len(ep))
        if not seen_keys:  # an empty source is a wrong path or filter far more often than an intent
            raise BadInput(f"holds no episodes{_read_as_note(options)}", source)
        if label_map is not None:
            _check_labels_used(label_map, seen_keys, seen_indices, labels)
        result = w.commit()
    result.warnings = list(src.warnings)  # complete now that the episodes are read
    if w.dropped:
        keys = w.dropped_episodes
        result.warnings.append(
            f"{plural(len(keys), 'episode')} had columns the store {store.root} does not have, not stored: "
            f"{', '.join(sorted(w.dropped))} (episode {keys[0]!r}); a store keeps the columns of its first "
            "ingest: ingest these into a new store to keep them")
    return result


def _read_as_note(options: ReadOptions) -> str:
    given = {"--filter": options.filter_key, "--split": options.split}
    return "".join(f" (with {k} {v})" for k, v in given.items() if v is not None)


def _check_labels_used(labels: Labels, keys: set[str], indices: set[int], path) -> None:
    unknown = [k for k in labels.by_key if k not in keys]
    if unknown:
        raise BadInput(f"names episode {unknown[0]!r}, which is not in the source", path, "source_key")
    unknown_index = [i for i in labels.by_index if i not in indices]
    if unknown_index:
        raise BadInput(f"names episode {unknown_index[0]}, which is not in the source", path, "episode_index")
