"""Chunk policies: the one interface every verb that needs a policy takes (`--policy SPEC`).

ALOE evaluates the *current* policy: the critic bootstraps with chunks sampled from it and
V(s) averages over its samples. Anything with the `ChunkPolicy` shape can be evaluated.

A SPEC is one of:

1. a directory written by aloe (the built-in flow-matching chunk policy, `builtin.py`);
   ``--policy-arg`` may set ``deterministic=true``, ``flow_steps=N`` or ``seed=N``;
2. ``package.module:factory``: a Python plugin (importable from the current directory or
   ``PYTHONPATH``); ``--policy-arg key=value`` pairs are passed to the factory as keyword
   arguments (numbers and booleans parsed);
3. ``ws://host:port``: a policy server speaking openpi's websocket protocol (`websocket.py`);
   ``--policy-obs-map store_key=server_key`` renames observation keys; ``--policy-arg`` may
   set ``chunk_size``, ``action_dim``, ``max_in_flight``, ``timeout``, ``api_key``.

A plugin, the smallest complete one::

    class Zero:
        chunk_size, action_dim = 10, 7
        def sample(self, observations, num_samples):
            B = len(observations["observation.state"])
            return np.zeros((B, num_samples, 10, 7), np.float32)

    def make(**kwargs):  # --policy mymodule:make
        return Zero()
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .. import schema as S
from ..errors import AloeError, PolicyError


@runtime_checkable
class ChunkPolicy(Protocol):
    """What aloe needs of a policy: sample action chunks for a batch of observations.

    Required: `chunk_size` (H), `action_dim` (A) and `sample`. Optional: `observation_keys`,
    the store columns the policy reads (default ``("observation.state", "task")``; camera
    columns ``observation.images.<cam>`` arrive as lists of encoded PNG/JPEG bytes), and
    `close()`, called when the caller is done.
    """

    chunk_size: int  # H, actions per chunk
    action_dim: int  # A, numbers per action (must equal the store's)

    def sample(self, observations: dict, num_samples: int) -> np.ndarray:
        """observations: a batch keyed by store column names, e.g. "observation.state" -> (B, D)
        float32 and "task" -> list of B strings (None where unknown). Returns float32
        (B, num_samples, H, A) in the store's action units; samples are independent draws."""
        ...


DEFAULT_OBSERVATION_KEYS = (S.OBS_STATE, S.TASK)


def observation_keys(policy) -> tuple[str, ...]:
    """The store columns to load for `policy` (its `observation_keys`, else state and task)."""
    return tuple(getattr(policy, "observation_keys", None) or DEFAULT_OBSERVATION_KEYS)


_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def close_policy(policy) -> None:
    """Call the policy's optional `close()` (a websocket policy's connection): what loaded it does,
    once it has no more chunks to ask for."""
    close = getattr(policy, "close", None)
    if callable(close):
        close()


def parse_value(text: str):
    """Parse a --policy-arg value: JSON numbers, booleans and null, and nan/inf (any case) as floats, so the
    factory's own checks see a number; anything else stays a string."""
    if text.strip().lower() in _NON_FINITE:
        return float(text)
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
    spec = str(spec)
    if spec.startswith(("ws://", "wss://")):
        from .websocket import WebsocketPolicy

        try:
            policy = WebsocketPolicy(spec, obs_map=obs_map, **args)
        except TypeError as e:
            raise PolicyError(f"unknown --policy-arg for a ws:// policy: {e}", spec, "--policy-arg") from None
        return check_interface(policy, spec)
    if obs_map:
        raise PolicyError("--policy-obs-map applies to ws:// policies only", spec, "--policy-obs-map")
    path = Path(spec)
    if path.is_dir():
        from .builtin import load_builtin

        return check_interface(load_builtin(path, device=device, **args), spec)
    if path.exists():
        raise PolicyError("is a file; expected a policy directory written by aloe, package.module:factory "
                          "or ws://host:port", spec, "--policy")
    if ":" in spec:
        return check_interface(_load_plugin(spec, args), spec)
    raise PolicyError("no such policy: expected a directory, package.module:factory or ws://host:port",
                      spec, "--policy")


def _load_plugin(spec: str, args: dict) -> ChunkPolicy:
    import os
    import sys

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise PolicyError("expected package.module:factory", spec, "--policy")
    # Like `python -m`, find plugins in the current directory too (the `aloe` script's sys.path lacks it).
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # an import error inside the plugin is the user's to see
        raise PolicyError(f"cannot import {module_name!r}: {type(e).__name__}: {e}", spec, "--policy") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise PolicyError(f"module {module_name!r} has no attribute {attr!r}", spec, "--policy")
    if not callable(factory):
        if args:
            raise PolicyError(f"{attr!r} is not callable, so it takes no --policy-arg", spec, "--policy-arg")
        return factory
    try:
        return factory(**args)
    except PolicyError:
        raise
    except TypeError as e:
        raise PolicyError(f"factory rejected the arguments {sorted(args)}: {e}", spec, "--policy-arg") from None
    except Exception as e:  # the factory's own failure, reported in one line
        raise PolicyError(f"factory raised {type(e).__name__}: {e}", spec, "--policy") from None


def check_interface(policy, spec: str) -> ChunkPolicy:
    """`policy` has integer `chunk_size` and `action_dim` >= 1 and a callable `sample`."""
    if not callable(getattr(policy, "sample", None)):
        raise PolicyError("the policy has no `sample(observations, num_samples)` method", spec, "--policy")
    for attr in ("chunk_size", "action_dim"):
        value = getattr(policy, attr, None)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise PolicyError(f"the policy has no integer `{attr}`", spec, "--policy")
        if value < 1:
            raise PolicyError(f"the policy's `{attr}` is {value}; it must be >= 1", spec, "--policy")
    return policy


def check_against_store(policy: ChunkPolicy, action_dim: int, spec: str, *, state_dim: int | None = None,
                        chunk_size: int | None = None) -> None:
    """The policy's action size (and, where it declares one, its state size) must match the store's;
    with `chunk_size`, the policy's chunks must be at least that long."""
    if int(policy.action_dim) != int(action_dim):
        raise PolicyError(f"policy action_dim is {policy.action_dim} but the store's actions have "
                          f"{action_dim} numbers", spec, "--policy")
    own_state = getattr(policy, "state_dim", None)
    if state_dim is not None and own_state is not None and int(own_state) != int(state_dim):
        raise PolicyError(f"policy state_dim is {own_state} but the store's observation.state has "
                          f"{state_dim} numbers", spec, "--policy")
    if chunk_size is not None and int(policy.chunk_size) < int(chunk_size):
        raise PolicyError(f"policy chunk_size is {policy.chunk_size}, shorter than the chunk size {chunk_size}",
                          spec, "--policy")


def as_chunks(raw, want: tuple[int, ...], spec: str) -> np.ndarray:
    """What `sample()` returned, as float32 chunks of shape `want`; PolicyError naming `spec` otherwise."""
    if raw is None:
        raise PolicyError(f"sample() returned None, expected an array of shape {want}", spec, "--policy")
    try:
        out = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise PolicyError(f"sample() returned {type(raw).__name__}, not an array of numbers: {e}",
                          spec, "--policy") from None
    if out.shape != want:
        raise PolicyError(f"sample() returned shape {out.shape}, expected {want}", spec, "--policy")
    return out


def sample_checked(policy: ChunkPolicy, observations: dict, num_samples: int, spec: str = "policy") -> np.ndarray:
    """Call `policy.sample` and check the result's shape and values."""
    batch = len(next(iter(observations.values())))
    want = (batch, num_samples, int(policy.chunk_size), int(policy.action_dim))
    try:
        raw = policy.sample(observations, num_samples)
    except AloeError:  # already says what went wrong (as in `aloe rollout`)
        raise
    except Exception as e:  # the policy's own failure, in one line (KeyboardInterrupt and SystemExit go through)
        raise PolicyError(f"sample() raised {type(e).__name__}: {e}", spec, "--policy") from e
    out = as_chunks(raw, want, spec)
    if not np.isfinite(out).all():
        raise PolicyError("sample() returned NaN or inf", spec, "--policy")
    return out
