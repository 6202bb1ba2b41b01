"""Policy improvement: the library side of `aloe improve`.

A method turns the store (and, for later methods, chunk scores) into per-chunk weights and an
episode selection; the built-in chunk policy is then trained by weighted behaviour cloning
(`policy.builtin.train_policy`). Today: ``bc`` (uniform weights). The registry below is where
``aloe`` (advantage weights exp(A / beta) clipped at w_max), ``awr``, ``filtered`` (top
fraction by advantage) and ``conditioned`` (RECAP-style indicator) plug in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import BadInput
from .store import Store


@dataclass
class Selection:
    """What a method hands to training: per-chunk weights and the episodes to train on."""

    weights: np.ndarray | None = None  # one per frame of store.load_frames(episode_ids=...); None: uniform
    episode_ids: list[str] | None = None  # None: every episode
    info: dict | None = None  # method-specific numbers for the summary


def _bc(store: Store, options: dict) -> Selection:
    """Behaviour cloning: every chunk of every episode, weight 1."""
    return Selection(info={})


METHODS: dict[str, Callable[[Store, dict], Selection]] = {"bc": _bc}
PLANNED_METHODS = ("aloe", "awr", "filtered", "conditioned")


def improve(store_path: str | os.PathLike, out: str | os.PathLike, method: str = "bc",
            settings: dict | None = None, init: str | os.PathLike | None = None, force: bool = False,
            options: dict | None = None, progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Train a new built-in chunk policy from the store with `method`; returns the training summary.

    `settings`: PolicyConfig fields to override (chunk_size, steps, batch_size, lr, seed, device,
    ...); `init`: a policy directory to start from (its chunk size and network are kept);
    `options`: method-specific options (none for bc).
    """
    from .policy.builtin import PolicyConfig, read_policy_json, train_policy

    if method not in METHODS:
        later = f" ({', '.join(PLANNED_METHODS)} are not implemented yet)" if method in PLANNED_METHODS else ""
        raise BadInput(f"unknown method {method!r}; available: {', '.join(METHODS)}{later}", field="--method")
    settings = dict(settings or {})
    if init is not None and "chunk_size" in settings:
        init_h = read_policy_json(init, "--init").get("chunk_size")
        if init_h != settings["chunk_size"]:
            raise BadInput(f"{settings['chunk_size']} differs from the --init policy's chunk size {init_h}",
                           field="--chunk-size")
    config = PolicyConfig(**settings).validate(as_options=True)
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not force:
        raise BadInput("already exists; pass --force to replace it", out, "--out")
    store = Store.open(store_path)
    selection = METHODS[method](store, dict(options or {}))
    summary = train_policy(store, out, config, weights=selection.weights, episode_ids=selection.episode_ids,
                           init_from=init, progress=progress, overwrite=force,
                           meta={"method": method, "method_options": dict(options or {})})
    return {"method": method, "store": str(store_path), **summary, **(selection.info or {})}
