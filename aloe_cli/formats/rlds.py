"""RLDS / Open X-Embodiment datasets as TFDS writes them, read without TensorFlow.

Layout (google-research/rlds README, kpertsch/rlds_dataset_builder, tensorflow/datasets):
``<name>/<version>/dataset_info.json``, ``features.json`` and
``<name>-<split>.tfrecord-XXXXX-of-NNNNN`` shards. One record is one episode, a
``tf.train.Example`` whose keys are the feature paths joined by ``/``: ``steps/action``
holds T*A floats, ``steps/is_first``/``is_last``/``is_terminal`` T int64 (bools),
``steps/language_instruction`` T strings, ``steps/observation/<camera>`` T encoded images,
``episode_metadata/*`` one value each. ``features.json`` (the TFDS feature tree) gives the
per-step shapes used to reshape the flat lists.

The final step: on an ``is_last`` step only the observation is valid; its action, reward and discount
"are considered invalid" (google-research/rlds README). Writers that follow this (TFDS's D4RL builders,
tensorflow_datasets/d4rl/dataset_utils.py; envlogger's rlds_utils.to_rlds_step) end an episode with an
extra step that holds the final observation and a zero action, reward and discount. Open X-Embodiment
builders (rlds_dataset_builder) store a real last action instead (discount 1, the success reward on it).
So an ``is_last`` step whose action, reward and discount are all zero is the final observation, not a
frame: it is dropped (as Minari's final observation is) and the episode has the steps before it.

Outcome: an episode whose last step is ``is_terminal`` and whose last frame has a positive reward is a
success (with an observation-only last step, the reward is on the step before it); anything else
(``is_last`` without ``is_terminal``, or no positive reward) is left unknown, so ``--success`` or
``--labels`` can say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import schema as S
from ..episode import Episode
from ..errors import BadInput
from . import ReadOptions, Source, read_json_object
from ._images import encode_frames, jpeg_passthrough

FEATURES_FILE = "features.json"
INFO_FILE = "dataset_info.json"
STEPS = "steps/"
OBS = "steps/observation/"
ACTION = "steps/action"
STATE = "steps/observation/state"
OBSERVATION = "steps/observation"  # one tensor, not a dict (TFDS's D4RL datasets)
INSTRUCTION_KEYS = ("steps/language_instruction", "steps/observation/natural_language_instruction",
                    "steps/observation/language_instruction")

_NUMERIC = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
            "float16", "bfloat16", "float32", "float64"}
_SHARD = re.compile(r"\.tfrecord-(\d+)-of-(\d+)$")


@dataclass(frozen=True)
class Spec:
    """One leaf of features.json: what a flattened Example key holds."""

    kind: str  # tensor | image | text | unknown
    shape: tuple  # per-step (inside `steps`) or per-episode shape; None for an unknown dimension
    dtype: str
    in_steps: bool  # inside the `steps` sequence: T values of `shape`
    encoding: str = "none"

    @property
    def numeric(self) -> bool:
        return self.kind == "tensor" and self.dtype in _NUMERIC and self.encoding in ("", "none")

    @property
    def size(self) -> int | None:
        if any(d is None for d in self.shape):
            return None
        return int(np.prod(self.shape, dtype=np.int64))


# ---------------------------------------------------------------------------- layout

def _version_dir(path: Path) -> Path | None:
    """The ``<name>/<version>`` folder: `path` itself, or its only version subfolder."""
    if (path / FEATURES_FILE).is_file():
        return path
    if not path.is_dir():
        return None
    found = sorted(d for d in path.iterdir() if d.is_dir() and (d / FEATURES_FILE).is_file())
    if len(found) > 1:
        raise BadInput(f"holds several versions ({', '.join(d.name for d in found)}); pass one of them", path)
    return found[0] if found else None


def _object(node, path: Path, key: str, what: str) -> dict:
    """`node` when it is a JSON object (None counts as empty), else BadInput naming the feature."""
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise BadInput(f"{what} is not an object", path, key or what)
    return node


def _shape(node: dict, path: Path, key: str) -> tuple:
    dims = _object(node.get("shape"), path, key, "shape").get("dimensions", [])
    try:
        return tuple(None if int(d) < 0 else int(d) for d in dims)
    except (TypeError, ValueError):
        raise BadInput(f"shape {dims!r} is not a list of integers", path, key) from None


def parse_features(tree: dict, path: Path) -> dict[str, Spec]:
    """features.json (a TFDS FeaturesDict tree) -> {flattened key: Spec}."""
    out: dict[str, Spec] = {}

    def walk(node, key: str, in_steps: bool) -> None:
        if not isinstance(node, dict):
            raise BadInput("is not a feature object", path, key or "features")
        if "featuresDict" in node:
            feats = _object(node["featuresDict"], path, key, "featuresDict").get("features")
            if not isinstance(feats, dict):
                raise BadInput("featuresDict has no 'features' object", path, key or "featuresDict")
            for name, child in feats.items():
                walk(child, f"{key}/{name}" if key else name, in_steps)
        elif "sequence" in node:
            if in_steps:
                raise BadInput("nested sequences are not supported", path, key)
            seq = _object(node["sequence"], path, key, "sequence")
            if "feature" not in seq:
                raise BadInput("sequence has no 'feature'", path, key)
            walk(seq["feature"], key, True)
        elif "tensor" in node:
            t = _object(node["tensor"], path, key, "tensor")
            out[key] = Spec("tensor", _shape(t, path, key), str(t.get("dtype", "")), in_steps,
                            str(t.get("encoding", "none")).lower())
        elif "image" in node:
            t = _object(node["image"], path, key, "image")
            out[key] = Spec("image", _shape(t, path, key), str(t.get("dtype", "uint8")), in_steps)
        elif "text" in node:
            out[key] = Spec("text", (), "string", in_steps)
        elif "classLabel" in node:
            out[key] = Spec("tensor", (), "int64", in_steps)
        else:
            out[key] = Spec("unknown", (), "", in_steps)

    walk(tree, "", False)
    return out


def _split_names(info: dict, info_path: Path) -> list[str]:
    splits = info.get("splits")
    if not isinstance(splits, list) or not splits:
        raise BadInput("missing or empty", info_path, "splits")
    names = []
    for s in splits:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            raise BadInput("every split needs a name", info_path, "splits")
        names.append(s["name"])
    return names


def _shards(root: Path, name: str, split: str) -> list[Path]:
    files = [p for p in root.glob(f"{name}-{split}.tfrecord-*") if _SHARD.search(p.name)]
    if not files:
        raise BadInput(f"no {name}-{split}.tfrecord-XXXXX-of-NNNNN files", root, split)
    files.sort(key=lambda p: int(_SHARD.search(p.name).group(1)))
    total = int(_SHARD.search(files[0].name).group(2))
    have = {int(_SHARD.search(p.name).group(1)) for p in files}
    missing = [i for i in range(total) if i not in have]
    if missing:
        raise BadInput(f"shard {missing[0]:05d} of {total:05d} is missing", root, split)
    return files


# ---------------------------------------------------------------------------- reader

class RldsReader:
    name = "rlds"
    reads = frozenset({'state_keys', 'images', 'image_size', 'split'})  # the ReadOptions it uses

    def detect(self, path: Path) -> bool:
        try:
            root = _version_dir(path)
        except BadInput:  # several versions: it is RLDS, and read() says which to pass
            return True
        return (root is not None and (root / INFO_FILE).is_file()
                and any(_SHARD.search(p.name) for p in root.glob("*.tfrecord-*")))

    def read(self, path: Path, options: ReadOptions) -> Source:
        path = Path(path)
        root = _version_dir(path)
        if root is None:
            raise BadInput(f"no {FEATURES_FILE} here or in a version folder (<name>/<version>/)", path)
        info_path, feat_path = root / INFO_FILE, root / FEATURES_FILE
        info = read_json_object(info_path)
        name = info.get("name")
        if not isinstance(name, str) or not name:
            raise BadInput("missing", info_path, "name")
        file_format = str(info.get("fileFormat", "tfrecord")).lower()
        if file_format != "tfrecord":
            raise BadInput(f"{info['fileFormat']!r} is not supported (only tfrecord)", info_path, "fileFormat")
        splits = _split_names(info, info_path)
        if options.split is not None:
            if options.split not in splits:
                raise BadInput(f"{options.split!r} is not a split of this dataset ({', '.join(splits)})",
                               info_path, "splits")
            splits = [options.split]
        specs = parse_features(read_json_object(feat_path), feat_path)
        plan = _plan(specs, feat_path, options)
        shards = [(split, _shards(root, name, split)) for split in splits]
        _example_class()  # fail early, with a clear message, when protobuf is missing
        return Source(
            episodes=self._episodes(shards, specs, plan, options),
            fps=None,
            names=plan.names,
            info={"dataset": name, "version": root.name, "splits": splits,
                  "state_keys": plan.state_keys, "action_keys": plan.action_keys},
        )

    def _episodes(self, shards, specs: dict[str, Spec], plan: "_Plan", options: ReadOptions):
        from ._tfrecord import iter_records

        Example = _example_class()
        from google.protobuf.message import DecodeError

        count = 0  # source_index: the episode's position in everything read (unique across splits)
        for split, files in shards:
            ordinal = 0  # source_key: "<split>/episode_<position in the split>"
            for file in files:
                for i, data in iter_records(file):
                    try:
                        ex = Example.FromString(data)
                    except DecodeError as e:
                        raise BadInput(f"is not a tf.train.Example ({e})", file, f"record {i}") from None
                    yield _episode(ex.features.feature, specs, plan, options, file, i,
                                   f"{split}/episode_{ordinal:06d}", count)
                    ordinal += 1
                    count += 1


def _example_class():
    from ._tfrecord import example_classes

    return example_classes()["Example"]


@dataclass
class _Plan:
    state_keys: list[str]
    action_keys: list[str]
    extras: dict[str, str]  # record key -> store column
    images: dict[str, str]  # record key -> store column (encoded bytes)
    raw_images: dict[str, str]  # record key -> store column (uint8 (H, W, C) tensors, PNG-encoded here)
    names: dict[str, list[str]]


def _step_numeric(specs: dict[str, Spec], prefix: str) -> list[str]:
    """Numeric per-step keys under `prefix` with a fixed shape of rank <= 1, sorted."""
    return sorted(k for k, s in specs.items()
                  if k.startswith(prefix) and s.in_steps and s.numeric and len(s.shape) <= 1 and s.size)


def _plan(specs: dict[str, Spec], feat_path: Path, options: ReadOptions) -> _Plan:
    if not any(s.in_steps for s in specs.values()):
        raise BadInput("no 'steps' sequence feature", feat_path, "steps")
    # Action: steps/action, or a dict of numeric parts concatenated in sorted order.
    if ACTION in specs:
        if not specs[ACTION].numeric or not specs[ACTION].size or len(specs[ACTION].shape) > 1:
            raise BadInput(f"must be a numeric vector with a fixed shape, got {specs[ACTION].kind} "
                           f"{specs[ACTION].dtype} {list(specs[ACTION].shape)}", feat_path, ACTION)
        action_keys = [ACTION]
    else:
        action_keys = _step_numeric(specs, ACTION + "/")
        if not action_keys:
            raise BadInput("no steps/action feature", feat_path, ACTION)
    # State: --state-keys, else steps/observation/state, else every numeric observation vector.
    if options.state_keys:
        state_keys = []
        for k in options.state_keys:
            full = k if k.startswith(STEPS) else OBS + k.removeprefix("observation/")
            s = specs.get(full)
            if s is None or not s.in_steps:
                avail = ", ".join(x[len(OBS):] for x in _step_numeric(specs, OBS))
                raise BadInput(f"{k!r} is not a per-step feature (numeric observations: {avail})",
                               feat_path, "--state-keys")
            if not (s.numeric and s.size and len(s.shape) <= 1):
                raise BadInput(f"{k!r} is not a numeric vector ({s.kind} {s.dtype} {list(s.shape)})",
                               feat_path, "--state-keys")
            state_keys.append(full)
    elif STATE in specs and specs[STATE].numeric and specs[STATE].size and len(specs[STATE].shape) <= 1:
        state_keys = [STATE]
    elif OBSERVATION in _step_numeric(specs, OBSERVATION):
        state_keys = [OBSERVATION]
    else:
        state_keys = _step_numeric(specs, OBS)
        if not state_keys:
            raise BadInput("no numeric observation to use as the state; pass --state-keys", feat_path,
                           "steps/observation")
    extras = {}
    for k in _step_numeric(specs, OBS):
        col = S.OBS_PREFIX + k[len(OBS):].replace("/", ".")
        if k not in state_keys and col != S.OBS_STATE:
            extras[k] = col
    images, raw_images = {}, {}
    if options.images == "keep":
        for k, s in sorted(specs.items()):
            if not (k.startswith(OBS) and s.in_steps):
                continue
            col = S.OBS_IMAGES_PREFIX + k[len(OBS):].replace("/", ".")
            if s.kind == "image":
                images[k] = col
            elif s.numeric and s.dtype == "uint8" and len(s.shape) == 3 and s.size:
                if s.shape[-1] not in (1, 3, 4):  # channels first, say: no guess at which axis is which
                    raise BadInput(f"a uint8 tensor of shape {list(s.shape)} is not an image (H, W, 1|3|4); pass "
                                   "--images drop to leave the camera streams out", feat_path, k)
                raw_images[k] = col
    names = {}
    if len(state_keys) > 1:
        names[S.OBS_STATE] = _dim_names(specs, state_keys, OBS)
    if len(action_keys) > 1:
        names[S.ACTION] = _dim_names(specs, action_keys, ACTION + "/")
    return _Plan(state_keys, action_keys, extras, images, raw_images, names)


def _dim_names(specs: dict[str, Spec], keys: list[str], prefix: str) -> list[str]:
    out = []
    for k in keys:
        short = k[len(prefix):]
        n = specs[k].size
        out += [short] if n == 1 else [f"{short}.{i}" for i in range(n)]
    return out


# ---------------------------------------------------------------------------- one episode

def _values(fmap, key: str, spec: Spec, file: Path, rec: int) -> np.ndarray | list[bytes]:
    if key not in fmap:
        raise BadInput(f"record {rec} has no such key (features.json declares it)", file, key)
    f = fmap[key]
    kind = f.WhichOneof("kind")
    if spec.kind in ("image", "text") or (spec.kind == "tensor" and not spec.numeric):
        if kind not in ("bytes_list", None):
            raise BadInput(f"record {rec} holds a {kind}, features.json says {spec.kind} {spec.dtype}", file, key)
        return list(f.bytes_list.value)  # bytes objects as stored: no NUL stripping
    if kind == "float_list":
        return np.asarray(f.float_list.value, dtype=np.float32)
    if kind == "int64_list":
        return np.asarray(f.int64_list.value, dtype=np.int64)
    if kind is None:
        return np.zeros(0, dtype=np.float32)
    raise BadInput(f"record {rec} holds a bytes_list, features.json says {spec.dtype}", file, key)


def _steps_array(fmap, key: str, spec: Spec, T: int, file: Path, rec: int) -> np.ndarray:
    """A numeric per-step feature as (T, size)."""
    v = _values(fmap, key, spec, file, rec)
    size = spec.size
    if size is None:
        raise BadInput(f"features.json gives it no fixed shape ({list(spec.shape)}); expected the same number of "
                       "values at every step", file, key)
    if len(v) != T * size:
        raise BadInput(f"record {rec} has {len(v)} values, but {T} steps x shape {list(spec.shape)} "
                       f"in features.json make {T * size}", file, key)
    return np.asarray(v).reshape(T, size)


def _finite(a: np.ndarray, file: Path, key: str, rec: int) -> np.ndarray:
    a = a.astype(np.float32, copy=False)
    bad = ~np.isfinite(a)
    if bad.any():
        t = int(np.argwhere(bad)[0][0])
        raise BadInput(f"record {rec} step {t} contains NaN or inf", file, key)
    return a


def _episode(fmap, specs: dict[str, Spec], plan: _Plan, options: ReadOptions, file: Path, rec: int,
             source_key: str, source_index: int) -> Episode:
    first = plan.action_keys[0]
    v = _values(fmap, first, specs[first], file, rec)
    size = specs[first].size
    if len(v) % size:
        raise BadInput(f"record {rec} has {len(v)} values, not a whole number of steps of shape "
                       f"{list(specs[first].shape)} (features.json)", file, first)
    T = len(v) // size

    def cat(keys: list[str]) -> np.ndarray:
        parts = [_finite(_steps_array(fmap, k, specs[k], T, file, rec), file, k, rec) for k in keys]
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    action = cat(plan.action_keys)
    state = cat(plan.state_keys)
    extras = {col: _finite(_steps_array(fmap, k, specs[k], T, file, rec), file, k, rec)
              for k, col in plan.extras.items()}

    def flag(key: str) -> np.ndarray | None:
        if key not in specs:
            return None
        return _steps_array(fmap, key, specs[key], T, file, rec)[:, 0] != 0

    reward = None
    if "steps/reward" in specs:
        reward = _finite(_steps_array(fmap, "steps/reward", specs["steps/reward"], T, file, rec),
                         file, "steps/reward", rec)[:, 0]
    terminal = flag("steps/is_terminal")
    # n: the frames kept. An is_last step with a zero action, reward and discount holds only the final
    # observation (TFDS's D4RL builders, envlogger; see the module docstring): not a frame.
    n = T
    last = flag("steps/is_last")
    if last is not None and T > 1 and last[-1] and not action[-1].any() and (reward is None or reward[-1] == 0):
        d = specs.get("steps/discount")
        if d is None or not (d.numeric and d.size == 1) or \
                _steps_array(fmap, "steps/discount", d, T, file, rec)[-1, 0] == 0:
            n = T - 1
    action, state = action[:n], state[:n]
    extras = {col: a[:n] for col, a in extras.items()}
    if reward is not None:
        reward = reward[:n]
    success = None
    if n and terminal is not None and terminal[-1] and reward is not None and reward[-1] > 0:
        success = True

    task = None
    for key in INSTRUCTION_KEYS:
        if key in specs and specs[key].kind in ("text", "tensor") and specs[key].in_steps:
            texts = _values(fmap, key, specs[key], file, rec)
            if texts and texts[0]:
                task = texts[0].decode("utf-8", errors="replace")
                break

    images = {}
    for key, col in plan.images.items():
        frames = _values(fmap, key, specs[key], file, rec)
        if len(frames) != T:
            raise BadInput(f"record {rec} has {len(frames)} images for {T} steps", file, key)
        images[col] = jpeg_passthrough(frames[:n], options.image_size, file, key)
    for key, col in plan.raw_images.items():
        arr = _steps_array(fmap, key, specs[key], T, file, rec).reshape((T,) + specs[key].shape)
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
            raise BadInput(f"record {rec} holds values outside 0..255 for a uint8 image", file, key)
        frames = arr[:n].astype(np.uint8)
        images[col] = encode_frames(frames[..., 0] if frames.shape[-1] == 1 else frames, options.image_size)

    return Episode(state=state, action=action, source_key=source_key, source_index=source_index,
                   reward=reward, success=success, task=task, extras=extras, images=images)


READER = RldsReader()
