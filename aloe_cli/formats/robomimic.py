"""robomimic: one HDF5 file holding many demos under ``data/demo_N``.

Layout (ARISE-Initiative/robomimic docs/datasets/overview.md, scripts/dataset_states_to_obs.py):
``data`` attrs ``total`` and ``env_args`` (JSON: env_name, type, env_kwargs); ``data/demo_N``
attr ``num_samples`` and datasets ``actions`` (N, A), ``rewards`` (N,), ``dones`` (N,),
``states`` (N, D); groups ``obs/<key>`` and optional ``next_obs/<key>``; images are uint8 HWC
(``agentview_image``), maybe gzip-compressed; ``mask/<filter_key>`` lists demo names as bytes.

The state is the ``--state-keys`` observations concatenated in the order given; by default
every low-dimensional observation key (not an image) in sorted order. Outcome: success where
the last reward is positive (with shaped rewards, where it reaches the success reward);
otherwise unknown (a trailing ``done`` alone does not say success: see ``--done_mode``).
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np

from ..episode import Episode
from ..errors import BadInput
from . import ReadOptions, Source
from . import _hdf5 as H
from ._images import encode_frames

_DEMO = re.compile(r"demo_(\d+)")
_SUFFIXES = (".hdf5", ".h5", ".hdf", ".he5")


def is_image(name: str, shape: tuple, dtype: np.dtype) -> bool:
    """A camera stream: named ``*_image``, or uint8 with (H, W, C) per frame."""
    return name.endswith("_image") or (dtype == np.uint8 and len(shape) >= 4)


def is_low_dim(name: str, shape: tuple, dtype: np.dtype) -> bool:
    """A vector observation that can join the state: numeric, at most 1-d per frame, not an image."""
    return (dtype.kind in "biuf" and len(shape) in (1, 2) and int(np.prod(shape[1:])) > 0
            and not is_image(name, shape, dtype))


def dim_names(key: str, width: int) -> list[str]:
    return [key] if width == 1 else [f"{key}_{i}" for i in range(width)]


class RobomimicReader:
    name = "robomimic"
    reads = frozenset({'state_keys', 'filter_key', 'images', 'image_size'})  # the ReadOptions it uses

    def detect(self, path: Path) -> bool:
        if path.suffix.lower() not in _SUFFIXES or not H.is_hdf5(path):
            return False
        import h5py

        try:
            with h5py.File(path, "r") as f:
                data = f.get("data")
                if not isinstance(data, h5py.Group):
                    return False
                if "env_args" in data.attrs:
                    return True
                return any(_DEMO.fullmatch(k) for k in itertools.islice(data.keys(), 8))
        except H.H5_ERRORS:
            return False

    def read(self, path: Path, options: ReadOptions) -> Source:
        if path.is_dir():
            raise BadInput("robomimic reads one .hdf5 file, not a folder", path)
        with H.open_file(path) as f:
            data = H.get(f, "data", path, "data", "group")
            env = _env_args(data, path)
            demos = [k for k in H.keys(data, path, "data") if _DEMO.fullmatch(k)]
            if not demos:
                raise BadInput("no demo_N groups", path, "data")
            if options.filter_key:
                demos = _filtered(f, path, options.filter_key, demos)
            first = demos[0]
            demo = H.get(data, first, path, f"data/{first}", "group")
            obs = _obs_group(demo, path, f"data/{first}")
            state_keys, widths, image_keys = _choose_keys(obs, path, f"data/{first}/obs", options)
        names = [n for k in state_keys for n in dim_names(k, widths[k])]
        env_name = env.get("env_name") if isinstance(env.get("env_name"), str) else None
        kwargs = env.get("env_kwargs") if isinstance(env.get("env_kwargs"), dict) else {}
        fps = kwargs.get("control_freq")
        fps = float(fps) if isinstance(fps, (int, float)) and not isinstance(fps, bool) and 0 < fps < 1e6 else None
        info = {"state_keys": state_keys}
        if options.filter_key:
            info["filter_key"] = options.filter_key
        if image_keys:
            info["image_keys"] = image_keys
        return Source(
            episodes=self._episodes(path, demos, state_keys, widths, image_keys, _success_rule(kwargs), options),
            fps=fps, names={"observation.state": names}, info=info, task=env_name)

    def _episodes(self, path, demos, state_keys, widths, image_keys, success, options: ReadOptions):
        with H.open_file(path) as f:
            data = H.get(f, "data", path, "data", "group")
            for demo in demos:
                where = f"data/{demo}"
                g = H.get(data, demo, path, where, "group")
                action = H.dataset(g, "actions", path, f"{where}/actions")
                action = H.numeric(action, path, f"{where}/actions")
                if action.ndim == 1:
                    action = action[:, None]
                if action.ndim != 2 or action.shape[1] == 0:
                    raise BadInput(f"expected (T, A), got shape {action.shape}", path, f"{where}/actions")
                T = action.shape[0]
                if T == 0:
                    raise BadInput("episode is empty (0 frames)", path, f"{where}/actions")
                H.check_finite(action, path, f"{where}/actions")
                n = H.attr(g, "num_samples", path, f"{where}.attrs[num_samples]")
                if n is not None and (not isinstance(n, (int, np.integer)) or int(n) != T):
                    raise BadInput(f"is {n!r} but actions has {T} frames", path, f"{where}.attrs[num_samples]")
                obs = _obs_group(g, path, where)
                parts = []
                for key in state_keys:
                    field = f"{where}/obs/{key}"
                    a = H.rows(H.frames(H.dataset(obs, key, path, field), T, path, field))
                    if a.shape[1] != widths[key]:
                        raise BadInput(f"has {a.shape[1]} numbers per frame but {demos[0]} has {widths[key]}",
                                       path, field)
                    parts.append(a)
                reward = H.dataset(g, "rewards", path, f"{where}/rewards", required=False)
                if reward is not None:
                    reward = H.rows(H.frames(reward, T, path, f"{where}/rewards"))
                    if reward.shape[1] != 1:
                        raise BadInput(f"expected one reward per frame, got shape {reward.shape}", path,
                                       f"{where}/rewards")
                    reward = reward[:, 0]
                images = {}
                for key in image_keys:
                    field = f"{where}/obs/{key}"
                    ds = H.get(obs, key, path, field, "dataset", required=False)
                    if ds is None:
                        raise BadInput(f"missing camera stream ({demos[0]} has it)", path, field)
                    images[f"observation.images.{key}"] = _encode(H.read(ds, path, field), T, path, field, options)
                m = _DEMO.fullmatch(demo)
                yield Episode(
                    state=np.concatenate(parts, axis=1), action=action, source_key=demo,
                    source_index=int(m.group(1)), reward=reward,
                    success=success(reward), images=images)


def _obs_group(demo, path: Path, where: str):
    obs = H.get(demo, "obs", path, f"{where}/obs", "group", required=False)
    if obs is None:
        raise BadInput("missing group (a raw robomimic file holds only simulator states; extract observations "
                       "with robomimic's dataset_states_to_obs.py)", path, f"{where}/obs")
    return obs


def _env_args(data, path: Path) -> dict:
    raw = H.attr(data, "env_args", path, "data.attrs[env_args]")
    if raw is None:
        return {}
    try:
        env = json.loads(raw) if isinstance(raw, str) else None
    except ValueError as e:
        raise BadInput(f"is not valid JSON: {H.reason(e)}", path, "data.attrs[env_args]") from None
    if not isinstance(env, dict):
        raise BadInput("expected a JSON object with env_name, type and env_kwargs", path, "data.attrs[env_args]")
    return env


def _filtered(f, path: Path, key: str, demos: list[str]) -> list[str]:
    field = f"mask/{key}"
    mask = H.get(f, "mask", path, "mask", "group", required=False)
    if mask is None:
        raise BadInput("no such filter key (the file has no mask group)", path, field)
    have = H.keys(mask, path, "mask")
    if key not in have:
        raise BadInput(f"no such filter key (have: {', '.join(have) or 'none'})", path, field)
    arr = H.dataset(mask, key, path, field)
    if arr.dtype.kind not in "SUO" or arr.ndim != 1:
        raise BadInput(f"expected a list of demo names, got {arr.dtype} {arr.shape}", path, field)
    try:
        wanted = [v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v) for v in arr.tolist()]
    except UnicodeDecodeError:
        raise BadInput("demo names are not UTF-8 text", path, field) from None
    known = set(demos)
    for name in wanted:
        if name not in known:
            raise BadInput(f"names {name!r}, which is not in data/", path, field)
    chosen = set(wanted)
    out = [d for d in demos if d in chosen]
    if not out:
        raise BadInput("lists no demos", path, field)
    return out


def _choose_keys(obs, path: Path, where: str, options: ReadOptions):
    """(state keys, their per-frame widths, camera keys) from the first demo's obs group."""
    import h5py

    shapes = {}
    for key in H.keys(obs, path, where):
        with H.guard(path, f"{where}/{key}"):
            ds = obs[key]
            if isinstance(ds, h5py.Dataset):
                shapes[key] = (ds.shape or (), ds.dtype)
    if options.state_keys:
        state_keys = list(options.state_keys)
        for key in state_keys:
            if key not in shapes:
                raise BadInput(f"no such observation key (have: {', '.join(shapes) or 'none'})", path,
                               f"{where}/{key}")
            shape, dtype = shapes[key]
            if is_image(key, shape, dtype):
                raise BadInput("is a camera stream, not a state vector; it is stored as "
                               f"observation.images.{key}", path, f"{where}/{key}")
            if dtype.kind not in "biuf" or len(shape) == 0 or int(np.prod(shape[1:])) == 0:
                raise BadInput(f"is not a numeric vector per frame ({dtype} {shape})", path, f"{where}/{key}")
        if len(set(state_keys)) != len(state_keys):
            raise BadInput(f"lists a key twice: {','.join(state_keys)}", field="--state-keys")
    else:
        state_keys = sorted((k for k, (s, d) in shapes.items() if is_low_dim(k, s, d)), key=H.natural_key)
        if not state_keys:
            raise BadInput("no low-dimensional observation keys to make the state; pass --state-keys", path, where)
    widths = {k: int(np.prod(shapes[k][0][1:], dtype=np.int64)) for k in state_keys}
    images = []
    if options.images == "keep":
        images = [k for k, (s, d) in shapes.items() if is_image(k, s, d) and k not in state_keys]
    return state_keys, widths, images


def _success_rule(env_kwargs: dict):
    """reward (T,) or None -> success True or None (unknown). Failure only comes from labels."""
    shaped = bool(env_kwargs.get("reward_shaping", False))
    scale = env_kwargs.get("reward_scale", 1.0)

    def success(reward):
        if reward is None:
            return None
        last = float(reward[-1])
        if not shaped:
            return True if last > 0 else None
        # robosuite's shaped rewards are partial credit below reward_scale; success pays reward_scale.
        if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0:
            return True if last >= scale else None
        return None

    return success


def _encode(arr: np.ndarray, T: int, path: Path, field: str, options: ReadOptions) -> list[bytes]:
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (1, 3, 4)):
        raise BadInput(f"expected uint8 (T, H, W, C) frames, got {arr.dtype} {arr.shape}", path, field)
    if arr.shape[0] != T:
        raise BadInput(f"has {arr.shape[0]} frames but actions has {T}", path, field)
    if 0 in arr.shape[1:3]:
        raise BadInput(f"frames are empty (shape {arr.shape})", path, field)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return encode_frames(arr, options.image_size)


READER = RobomimicReader()
