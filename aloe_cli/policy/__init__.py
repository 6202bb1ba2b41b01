"""Chunk policies: the one interface every verb that needs a policy takes (`--policy SPEC`).

A SPEC is one of:

1. a directory written by aloe (the built-in flow-matching chunk policy);
2. ``package.module:factory``: a Python plugin; ``--policy-arg key=value`` pairs are passed
   to the factory as keyword arguments;
3. ``ws://host:port``: a policy server speaking openpi's websocket protocol.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import PolicyError


@runtime_checkable
class ChunkPolicy(Protocol):
    """What aloe needs of a policy: sample action chunks for a batch of observations."""

    chunk_size: int  # H, actions per chunk
    action_dim: int  # A

    def sample(self, observations: dict, num_samples: int) -> np.ndarray:
        """observations: a batch keyed by store column names, e.g. "observation.state" -> (B, D)
        float32 and "task" -> list of B strings. Returns float32 (B, num_samples, H, A)."""
        ...


def parse_value(text: str):
    """Parse a --policy-arg value: JSON numbers, booleans and null; anything else stays a string."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool)) or value is None else text


def parse_kv(pairs: list[str] | None, option: str) -> dict:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise PolicyError(f"expected key=value, got {pair!r}", field=option)
        key, value = pair.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


def load_policy(spec: str, args: dict | None = None, obs_map: dict | None = None,
                device: str = "cpu") -> ChunkPolicy:
    """Load a policy from a SPEC (see the module doc). Raises PolicyError with a clear message."""
    args = dict(args or {})
    if spec.startswith(("ws://", "wss://")):
        from .websocket import WebsocketPolicy

        return check_interface(WebsocketPolicy(spec, obs_map=obs_map, **args), spec)
    path = Path(spec)
    if path.is_dir():
        from .builtin import load_builtin

        return check_interface(load_builtin(path, device=device), spec)
    if ":" in spec and not path.exists():
        return check_interface(_load_plugin(spec, args), spec)
    if path.exists():
        raise PolicyError("is not a policy directory written by aloe (no policy.json)", spec, "--policy")
    raise PolicyError("no such policy: expected a directory, package.module:factory or ws://host:port",
                      spec, "--policy")


def _load_plugin(spec: str, args: dict) -> ChunkPolicy:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # an import error inside the plugin is the user's to see
        raise PolicyError(f"cannot import {module_name!r}: {type(e).__name__}: {e}", spec, "--policy") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise PolicyError(f"module {module_name!r} has no attribute {attr!r}", spec, "--policy")
    try:
        return factory(**args) if callable(factory) else factory
    except TypeError as e:
        raise PolicyError(f"factory rejected the arguments {sorted(args)}: {e}", spec, "--policy-arg") from None


def check_interface(policy, spec: str) -> ChunkPolicy:
    for attr in ("chunk_size", "action_dim"):
        if not isinstance(getattr(policy, attr, None), (int, np.integer)):
            raise PolicyError(f"the policy has no integer `{attr}`", spec, "--policy")
    if not callable(getattr(policy, "sample", None)):
        raise PolicyError("the policy has no `sample(observations, num_samples)` method", spec, "--policy")
    return policy


def check_against_store(policy: ChunkPolicy, action_dim: int, spec: str) -> None:
    if int(policy.action_dim) != int(action_dim):
        raise PolicyError(f"policy action_dim is {policy.action_dim} but the store's actions have "
                          f"{action_dim} numbers", spec, "--policy")


def sample_checked(policy: ChunkPolicy, observations: dict, num_samples: int, spec: str = "policy") -> np.ndarray:
    """Call `policy.sample` and check the result's shape and values."""
    batch = len(next(iter(observations.values())))
    out = np.asarray(policy.sample(observations, num_samples), dtype=np.float32)
    want = (batch, num_samples, int(policy.chunk_size), int(policy.action_dim))
    if out.shape != want:
        raise PolicyError(f"sample() returned shape {out.shape}, expected {want}", spec, "--policy")
    if not np.isfinite(out).all():
        raise PolicyError("sample() returned NaN or inf", spec, "--policy")
    return out
