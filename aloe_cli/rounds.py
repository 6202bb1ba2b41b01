"""Improvement rounds: the lineage that `aloe improve` records in every policy.json, as a table.

Every policy written by `aloe improve` carries a ``lineage`` block: its round (the base's + 1, 0
when trained from scratch), a name, the base policy (path and a fingerprint of its weights), the
store and its fingerprints (episode ids, labels), the scores and the critic it was improved with,
the method, its settings and a summary of the weights. `rounds(target)`:

- on a policy directory: the chain from the first round to it, following ``base_policy`` links
  (a base that was moved or retrained since is flagged, by the fingerprint of its weights);
- on a store: the policies trained on it (lineage ``store``, or the older ``store.path``) found
  under a folder (default: the store's parent; three levels deep) or named by its rollout
  ingests, in round order, with how their rollouts in the store did. A rollout is credited, the
  same from any working directory, to the policy directory `aloe rollout` recorded (its resolved
  path, while it holds the weights rolled out; else the one policy found with those weights); an
  older rollout, recorded only as the --policy text typed, is read from the store's parent (or the
  folder) and credited only where that is a policy trained on the store and found in the folder.

Each row also says whether the store still holds the data the policy was trained on
(``store_status``). Episodes are only ever appended, so the store's first ``store_episodes`` rows
are checked against the recorded fingerprints: ``ok`` (``episodes_since`` were added after it),
``relabelled`` (the same episodes, other outcome labels: it was trained on outcomes the store no
longer has), ``rewritten`` (they are no longer the store's first rows, in order: removed, or
replaced and moved to the end by `ingest --force`), ``missing`` (no store there), ``unreadable``
(a damaged store), or None when it cannot be told (a lineage from before ``store_episodes``, of
a store that has changed since).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import schema as S
from .errors import AloeError, BadInput, is_count

SEARCH_DEPTH = 3  # folders below --search looked at for policy.json


def policy_fingerprint(policy_dir: str | os.PathLike) -> str | None:
    """sha256 (16 hex digits) of a policy's weights file; None when it has none."""
    path = Path(policy_dir) / S.POLICY_WEIGHTS_FILE
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _doc(policy_dir: Path) -> tuple[dict, str | None]:
    """policy.json as an object, and what is wrong with it (None when nothing is)."""
    try:
        doc = json.loads((policy_dir / S.POLICY_FILE).read_text())
    except (OSError, ValueError) as e:
        return {}, f"{S.POLICY_FILE} cannot be read: {' '.join(str(e).split())}"
    if not isinstance(doc, dict):
        return {}, f"{S.POLICY_FILE} is not a JSON object"
    return doc, None


def _obj(doc: dict, key: str, problems: list[str]) -> dict:
    """doc[key] when it is an object (or absent); a note in `problems` when it is something else."""
    value = doc.get(key)
    if value is not None and not isinstance(value, dict):
        problems.append(f"{S.POLICY_FILE}: {key} is not an object")
    return value if isinstance(value, dict) else {}


def _resolve(p) -> str:
    try:
        return str(Path(p).expanduser().resolve())
    except (OSError, RuntimeError, TypeError):
        return str(p)


def policy_row(policy_dir: str | os.PathLike) -> dict:
    """One table row for a policy directory (missing entries are None)."""
    policy_dir = Path(policy_dir)
    doc, problem = _doc(policy_dir)
    problems = [problem] if problem else []
    lin, training = _obj(doc, "lineage", problems), _obj(doc, "training", problems)
    weights = _obj(lin, "weights", problems)
    base = lin.get("base_policy")
    if base is None:
        base = training.get("init_from")
    base_status = None
    if base is not None:
        if not (Path(base) / S.POLICY_FILE).is_file():
            base_status = "missing"
        elif lin.get("base_policy_fingerprint") and policy_fingerprint(base) != lin["base_policy_fingerprint"]:
            base_status = "changed"
        else:
            base_status = "ok"
    recorded = _obj(doc, "store", problems)
    store = lin.get("store") or recorded.get("path")
    round_ = lin.get("round")
    if round_ is not None and not is_count(round_, 0):
        problems.append(f"{S.POLICY_FILE}: lineage.round is not a round number >= 0: {round_!r:.40}")
        round_ = None
    created = lin.get("created")
    if created is not None and not isinstance(created, str):
        problems.append(f"{S.POLICY_FILE}: lineage.created is not a time: {created!r:.40}")
        created = None
    return {
        "policy": _resolve(policy_dir),
        "round": round_,
        "round_name": lin.get("round_name"),
        "method": lin.get("method") or training.get("method"),
        "base_policy": None if base is None else _resolve(base),
        "base_status": base_status,
        "store": None if store is None else _resolve(store),
        "store_fingerprint": lin.get("store_fingerprint") or recorded.get("fingerprint"),
        "store_labels": lin.get("store_labels"),
        "store_episodes": lin.get("store_episodes"),
        "scores": lin.get("scores"),
        "critic": lin.get("critic"),
        "settings": lin.get("settings"),
        "chunk_size": doc.get("chunk_size"),
        "steps": training.get("steps"),
        "train_chunks": training.get("train_chunks"),
        "final_val_loss": training.get("final_val_loss"),
        "ess_fraction": weights.get("ess_fraction"),
        "fraction_clipped": weights.get("fraction_clipped"),
        "fraction_zero": weights.get("fraction_zero"),
        "created": created,
        "fingerprint": policy_fingerprint(policy_dir),
        "has_lineage": bool(lin),
        "problem": "; ".join(problems) or None,  # a damaged policy.json: the row shows what could be read
    }


def store_status(row: dict, stores: dict) -> tuple[str | None, int | None]:
    """(status, episodes added since) of the store a policy row was trained on; `stores` caches each
    store's episodes table by resolved path ("missing" or "unreadable" where there is none)."""
    from .store import Store, ids_fingerprint, labels_fingerprint

    path, fp = row["store"], row["store_fingerprint"]
    if path is None or fp is None:
        return None, None
    if path not in stores:
        if not (Path(path) / S.MANIFEST_FILE).is_file():
            stores[path] = "missing"
        else:
            try:
                stores[path] = Store.open(path).episodes
            except AloeError:  # a damaged store: `aloe info STORE` names what is wrong
                stores[path] = "unreadable"
    eps = stores[path]
    if isinstance(eps, str):
        return eps, None
    n, labels = row["store_episodes"], row["store_labels"]
    if n is None:  # an older lineage: only a store unchanged since can be told
        if fp != ids_fingerprint(eps):
            return None, None
        n = len(eps)
    if not isinstance(n, int) or n > len(eps) or ids_fingerprint(eps.iloc[:n]) != fp:
        return "rewritten", None
    if labels is not None and labels_fingerprint(eps.iloc[:n]) != labels:
        return "relabelled", len(eps) - n
    return "ok", len(eps) - n


def chain(policy_dir: str | os.PathLike) -> list[dict]:
    """Rows from the first round to `policy_dir`, following base_policy links (stops at a missing
    base or a loop)."""
    rows, seen = [], set()
    current: str | None = _resolve(policy_dir)
    while current is not None and current not in seen and (Path(current) / S.POLICY_FILE).is_file():
        seen.add(current)
        row = policy_row(current)
        rows.append(row)
        current = row["base_policy"] if row["base_status"] in ("ok", "changed") else None
    return rows[::-1]


def _credited(options: dict, found: dict[str, dict], root: str, bases: list[Path], fingerprints: dict) -> str | None:
    """The policy directory (resolved path) a rollout ingest ran, whatever folder `aloe rounds` runs in;
    None where it cannot be told (a ws:// or plugin policy, one gone). `found`: the rows of the policies
    found under --search; `fingerprints` caches the weights' fingerprint of other directories."""
    path, fp = options.get("policy_path"), options.get("policy_fingerprint")
    if isinstance(path, str) and Path(path).is_absolute():  # recorded by `aloe rollout` with the weights' fingerprint
        if (Path(path) / S.POLICY_FILE).is_file():
            key = _resolve(path)
            if key not in fingerprints:
                fingerprints[key] = found[key]["fingerprint"] if key in found else policy_fingerprint(key)
            if fp is None or fingerprints[key] == fp:
                return key
        # moved, or retrained there since: the policy found with these weights, where exactly one is
        same = [q for q, r in found.items() if fp is not None and r["fingerprint"] == fp]
        return same[0] if len(same) == 1 else None
    spec = options.get("policy")
    if not isinstance(spec, str) or spec.startswith(("ws://", "wss://")):
        return None
    p = Path(spec).expanduser()
    if p.is_absolute():
        return _resolve(p) if (p / S.POLICY_FILE).is_file() else None
    # An older rollout: the --policy text as typed, relative to a folder the store did not record. Read
    # from `bases` (the store's parent, the --search folder), it is credited only to a policy trained on
    # this store and found under --search (never to one that happens to be there in the working directory).
    same = {q for q in (_resolve(b / p) for b in bases) if q in found and found[q]["store"] == root}
    return same.pop() if len(same) == 1 else None


def _rollouts(store, found: dict[str, dict], root: str, bases: list[Path]) -> dict[str, dict]:
    """Per policy directory (resolved path): episodes its rollout ingests added to the store, and their
    success. `found`: the rows of the policies found under --search, by resolved path; `bases`: the
    folders an older rollout's relative --policy text is read from."""
    eps = store.episodes.set_index(S.EPISODE_ID)
    out: dict[str, dict] = {}
    fingerprints: dict[str, str | None] = {}
    for ing in (store.manifest or {}).get("ingests", []):
        options = ing.get("options")
        key = _credited(options, found, root, bases, fingerprints) if isinstance(options, dict) else None
        if key is None:
            continue
        ids = [e for e in ing.get("episode_ids", []) if e in eps.index]
        entry = out.setdefault(key, {"episodes": 0, "successes": 0, "labelled": 0})
        entry["episodes"] += len(ids)
        labelled = eps.loc[ids, S.SUCCESS].dropna() if ids else []
        entry["labelled"] += len(labelled)
        entry["successes"] += int(sum(bool(x) for x in labelled))
    for entry in out.values():
        entry["success_rate"] = entry["successes"] / entry["labelled"] if entry["labelled"] else None
    return out


def _find_policies(folder: Path, depth: int = SEARCH_DEPTH) -> list[Path]:
    found = []
    for d in range(depth + 1):
        found += [p.parent for p in folder.glob("/".join(["*"] * d + [S.POLICY_FILE])) if p.is_file()]
    return found


def rounds(target: str | os.PathLike, search: str | os.PathLike | None = None) -> dict:
    """The lineage table of a policy directory (its chain) or of a store (its policies)."""
    from .store import Store

    target = Path(target)
    if (target / S.POLICY_FILE).is_file():
        if search is not None:
            raise BadInput("applies to a store, not a policy directory", field="--search")
        rows = chain(target)
        kind, stores = "policy", {}
    elif (target / S.MANIFEST_FILE).is_file():
        store = Store.open(target)
        root = _resolve(store.root)
        folder = Path(search) if search is not None else store.root.resolve().parent
        if not folder.is_dir():
            raise BadInput("is not a directory", folder, "--search")
        found = {p: policy_row(p) for p in sorted({_resolve(p) for p in _find_policies(folder)})}
        rollouts = _rollouts(store, found, root, [store.root.resolve().parent, folder.resolve()])
        found.update({p: policy_row(p) for p in rollouts if p not in found})
        rows = [r for p, r in sorted(found.items()) if r["store"] == root or p in rollouts]
        for r in rows:
            r["rollouts"] = rollouts.get(r["policy"])
        rows.sort(key=lambda r: (r["round"] if r["round"] is not None else -1, r["created"] or "", r["policy"]))
        kind, stores = "store", {root: store.episodes}
    elif target.exists():
        raise BadInput(f"is neither a policy directory ({S.POLICY_FILE}) nor an aloe store ({S.MANIFEST_FILE})",
                       target)
    else:
        raise BadInput("no such file or directory", target)
    for r in rows:
        r["store_status"], r["episodes_since"] = store_status(r, stores)
    return {"target": str(target), "kind": kind, "policies": rows}
