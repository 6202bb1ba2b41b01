"""What kind of aloe directory a path is, and the check every writer makes before it writes.

Each verb writes one kind of directory: a store, a critic, scores, a policy, an export or a demo.
Before anything is written, a writer refuses an output that is a directory of another kind, or
that lies inside an episode store; and a writer that replaces its output (`--force`) deletes only
a directory of its own kind. A slip in `--out` cannot overwrite or delete a store or a critic.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import uuid
from pathlib import Path

from . import schema as S
from .errors import BadInput


def markers() -> dict[str, str]:
    """{kind: the file that marks a directory of that kind}, most specific first."""
    from .critic.config import CONFIG_FILE
    from .demo import SUMMARY_FILE
    from .export import ALOE_META_PATH

    return {"store": S.MANIFEST_FILE, "critic": CONFIG_FILE, "policy": S.POLICY_FILE,
            "scores": S.SCORES_SUMMARY_FILE, "export": ALOE_META_PATH, "demo": SUMMARY_FILE}


def kind_of(path: str | os.PathLike) -> str | None:
    """The kind of aloe directory `path` is ("store", "critic", ...), or None."""
    p = Path(path)
    if not p.is_dir():
        return None
    return next((kind for kind, marker in markers().items() if (p / marker).is_file()), None)


def enclosing_store(path: str | os.PathLike) -> Path | None:
    """The episode store that `path` lies inside (strictly below its root), or None."""
    for parent in Path(path).resolve().parents:
        if (parent / S.MANIFEST_FILE).is_file():
            return parent
    return None


def is_store(path: Path) -> bool:
    """Whether `path` is an episode store's root (its manifest beside its episodes table or frames folder;
    an export's meta/aloe.json is not)."""
    return (path / S.MANIFEST_FILE).is_file() and ((path / S.EPISODES_FILE).is_file() or (path / S.FRAMES_DIR).is_dir())


def stores_below(path: Path, skip: frozenset[str] = frozenset()) -> list[Path]:
    """The episode stores strictly below `path` (not looking inside them), except its entries named in `skip`."""
    found = []
    for root, dirs, _ in os.walk(path):
        here = Path(root)
        if here == path:
            dirs[:] = [d for d in dirs if d not in skip]
            continue
        if is_store(here):
            found.append(here)
            dirs[:] = []
    return sorted(found)


def check_new_store(path: str | os.PathLike) -> None:
    """Raise BadInput unless a new episode store may be made at `path`: not inside another store, nor inside
    a critic, policy, scores or export directory (a writer's --force deletes those, and a store in them with
    them; a demo's own store is where the demo puts it)."""
    p = Path(path).absolute()
    kinds = {k: m for k, m in markers().items() if k != "demo"}
    for parent in p.parents:
        found = next((k for k, m in kinds.items() if (parent / m).is_file()), None)
        if found == "store" and not is_store(parent):
            found = None
        if found is not None:
            what = "the episode store" if found == "store" else f"the aloe {found} directory"
            raise BadInput(f"lies inside {what} {parent}; make the store outside it", p)


def check_output(path: str | os.PathLike, kind: str, option: str, replace: bool | None = None,
                 own_entries: frozenset[str] = frozenset()) -> None:
    """Raise BadInput naming `path` and `option` unless a `kind` writer may write there.

    `replace`: None for a writer that only adds its files to the directory (scores, a critic);
    False for one that needs it absent or empty; True for one that will delete it and write
    anew (`--force`), which is allowed only on a directory of its own kind, an empty one, or one
    holding nothing but `own_entries` (what a run of this writer cut short leaves behind).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise BadInput("exists and is not a directory", p, option)
    found = kind_of(p)
    if found is not None and found != kind:
        raise BadInput(f"is an aloe {found} directory ({markers()[found]}), not a {kind} directory; "
                       f"choose another {option}", p, option)
    store = enclosing_store(p)
    if store is not None:
        raise BadInput(f"lies inside the episode store {store}; write {kind} outputs outside it", p, option)
    if replace is None or not p.exists():
        return
    entries = {e.name for e in p.iterdir()}
    if not entries:
        return
    if not replace:
        raise BadInput("already exists; pass --force to replace it", p, option)
    if found != kind and not entries <= own_entries:
        raise BadInput(f"holds files that are not an aloe {kind} directory; --force replaces only a {kind} "
                       f"directory, so choose another {option}", p, option)
    nested = stores_below(p, skip=own_entries)
    if nested:
        raise BadInput(f"holds the episode store {nested[0]}, which --force would delete with it; move the store "
                       f"out or choose another {option}", p, option)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def temp_sibling(out: Path) -> Path:
    """A new hidden folder beside `out` to write into before it is renamed to `out`:
    `.NAME.tmp-PID@HOST-XXXXXXXX`. Those a killed run on this host left (its process gone) are removed
    first; a crash cannot reach the writer's own clean-up, so without this they piled up, one per run."""
    host = socket.gethostname()
    pattern = re.compile(re.escape(f".{out.name}.tmp-") + r"(\d+)@(.+)-[0-9a-f]{8}")
    if out.parent.is_dir():
        for p in out.parent.iterdir():
            m = pattern.fullmatch(p.name)
            if m and m.group(2) == host and not _alive(int(m.group(1))) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}@{host}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp
