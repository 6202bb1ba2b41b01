"""Loading a fitted critic for scoring: `load_critic(dir) -> Critic`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import fields
from pathlib import Path

import numpy as np

from ..errors import BadInput, is_count
from .config import CONFIG_FILE, WEIGHTS_FILE, CriticConfig
from .train import CRITIC_FORMAT, CRITIC_VERSION


class Critic:
    """A fitted critic. `q_heads(state, chunks)` -> (B, N, M) Q of every head in reward units;
    `q(state, chunks)` -> (B, N) aggregated as trained. Numpy in, numpy out; tensors in, tensors out.

    Chunks longer than the critic's H are cut to their first H actions (as executed); a chunk
    that ends an episode early is padded with its last action, as in training.
    """

    def __init__(self, net, config: dict, device, path: Path | None = None):
        self.net = net
        self.path = path  # the critic directory it was loaded from
        self.config = config  # the critic.json contents
        self.device = device
        self.chunk_size = int(config["chunk_size"])
        self.state_dim = int(config["state_dim"])  # the store's observation.state width
        self.obs_dim = int(config.get("obs_dim", self.state_dim))  # state plus --obs extra columns
        from ..vision import parse_obs

        self.obs = parse_obs(config["config"].get("obs", "state"))  # what `q_heads` needs beyond the state
        self.time_scale = config.get("time_scale")  # --obs time: {"per_task", "default"} frames
        self.action_dim = int(config["action_dim"])
        c = config["config"]
        self.aggregate, self.std_coef = c["aggregate"], float(c["std_coef"])
        self.ensemble = int(c["ensemble"])

    def features(self, state, extras: dict | None = None, frame_index=None, tasks=None) -> np.ndarray:
        """The vector input `q_heads` takes: `state` (B, D), then the --obs extra columns from
        `extras` (column -> (B, k)), then, for a critic fitted with --obs time, the time input
        of `frame_index` (B,) (frames since the episode's start) in `tasks` (B,)."""
        parts = [np.asarray(state, dtype=np.float32)]
        for c in self.obs.extras:
            if extras is None or c not in extras:
                raise ValueError(f"this critic was fitted with --obs {self.obs}: pass {c}")
            parts.append(np.asarray(extras[c], dtype=np.float32).reshape(len(parts[0]), -1))
        if self.obs.time:
            from ..rewards import time_features

            if frame_index is None:
                raise ValueError(f"this critic was fitted with --obs {self.obs}: pass the frame indices")
            n = len(parts[0])
            parts.append(time_features(np.broadcast_to(np.asarray(frame_index), (n,)),
                                       [""] * n if tasks is None else tasks, self.time_scale))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, 1)

    def q_heads(self, state, chunks, images: dict | None = None):
        """`state` (B, obs_dim): `features(...)` (the state, the --obs extra columns, time); `images`: camera column ->
        uint8 (B, h, w, 3) frames (or encoded bytes) for a critic fitted with --obs images.<cam>."""
        import torch

        as_numpy = not isinstance(state, torch.Tensor)
        st = torch.as_tensor(np.asarray(state, dtype=np.float32) if as_numpy else state,
                             device=self.device, dtype=torch.float32)
        ch = torch.as_tensor(np.asarray(chunks, dtype=np.float32) if as_numpy else chunks,
                             device=self.device, dtype=torch.float32)
        H = self.chunk_size
        if ch.ndim != 4 or ch.shape[2] < H or ch.shape[3] != self.action_dim or st.ndim != 2 \
                or st.shape[1] != self.obs_dim or st.shape[0] != ch.shape[0]:
            raise ValueError(f"expected state (B, {self.obs_dim}) and chunks (B, N, >={H}, {self.action_dim}); "
                             f"got {tuple(st.shape)} and {tuple(ch.shape)}")
        ch = ch[:, :, :H]
        ims = None
        if self.obs.images:
            from ..vision import obs_images

            if images is None:
                raise ValueError(f"this critic was fitted with --obs {self.obs}: pass the camera frames")
            ims = {c: torch.as_tensor(v, device=self.device) for c, v in obs_images(images, self.obs).items()}
        with torch.no_grad():
            q = self.net.q_heads(st, ch, ims)
        return q.cpu().numpy() if as_numpy else q

    def q(self, state, chunks, images: dict | None = None):
        import torch

        from .net import aggregate

        q = self.q_heads(state, chunks, images)
        if isinstance(q, np.ndarray):
            return aggregate(torch.from_numpy(q), self.aggregate, self.std_coef).numpy()
        return aggregate(q, self.aggregate, self.std_coef)


def load_critic(critic_dir: str | os.PathLike, device: str = "cpu") -> Critic:
    """Load a critic directory written by `fit_critic`. Raises BadInput naming the missing or bad file."""
    import torch

    from .net import CriticNet
    from .train import resolve_device

    dev = resolve_device(str(device))  # before any file is read: a bad --device is the user's option, not the critic's
    critic_dir = Path(critic_dir)
    if not critic_dir.is_dir():
        raise BadInput("no such critic directory (run `aloe fit-critic` first)", critic_dir, "--critic")
    for fname in (CONFIG_FILE, WEIGHTS_FILE):
        if not (critic_dir / fname).exists():
            raise BadInput(f"missing {fname}: not a finished critic written by `aloe fit-critic`", critic_dir,
                           "--critic")
    where = critic_dir / CONFIG_FILE
    try:
        config = json.loads(where.read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot be parsed: {e}", where) from None
    if not isinstance(config, dict):
        raise BadInput(f"expected a JSON object, got {type(config).__name__}", where)
    if config.get("format") != CRITIC_FORMAT:
        raise BadInput(f"is not an aloe critic config (format {config.get('format')!r})", where, "format")
    version = config.get("version", 0)
    if not _is_int(version):
        raise BadInput(f"expected an integer, got {version!r}", where, "version")
    if version > CRITIC_VERSION:
        raise BadInput(f"critic format {version} is newer than this aloe understands ({CRITIC_VERSION})",
                       where, "version")
    c = _check_config(config, where)
    support, norm = _check_fields(config, where)
    support_n = tuple((x - norm["return_shift"]) / norm["return_scale"] for x in support)
    try:
        net = CriticNet(int(config.get("obs_dim", config["state_dim"])), int(config["action_dim"]),
                        int(config["chunk_size"]), c.ensemble, c.hidden, c.layers, c.head, c.bins, c.chunk_encoder,
                        support_n, images={k: tuple(v) for k, v in (config.get("images") or {}).items()})
    except (ValueError, TypeError, RuntimeError) as e:  # a combination of values no critic was fitted with
        raise BadInput(f"cannot build the critic network: {type(e).__name__}: {e}", where, "config") from None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(critic_dir / WEIGHTS_FILE))
        net.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise BadInput(f"cannot be loaded: {str(e).splitlines()[0]}", critic_dir / WEIGHTS_FILE) from None
    net.to(dev).eval()
    return Critic(net, config, dev, critic_dir)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# The `config` keys read by name when scoring (the others fall back to CriticConfig's defaults).
_CONFIG_REQUIRED = ("aggregate", "std_coef", "ensemble", "gamma", "bootstrap")


def _check_config(config: dict, where: Path) -> CriticConfig:
    """critic.json's `config`: an object of CriticConfig fields of the right types and valid values."""
    d = config.get("config")
    if not isinstance(d, dict):
        raise BadInput("missing" if d is None else f"expected an object, got {type(d).__name__}", where, "config")
    for key in _CONFIG_REQUIRED:
        if key not in d:
            raise BadInput("missing", where, f"config.{key}")
    for f in fields(CriticConfig):
        if f.name not in d:
            continue
        value, kinds = d[f.name], str(f.type).replace(" ", "").split("|")
        if value is None and "None" in kinds:
            continue
        ok = {"int": _is_int(value), "float": _is_int(value) or isinstance(value, float),
              "str": isinstance(value, str), "bool": isinstance(value, bool)}.get(kinds[0], True)
        if not ok:
            raise BadInput(f"expected {'a number' if kinds[0] == 'float' else 'a ' + kinds[0]}, got {value!r}",
                           where, f"config.{f.name}")
    c = CriticConfig.from_dict(d)
    try:
        c.check()
    except BadInput as e:  # the option's check, reported against the file (--head -> config.head)
        field = "config." + (e.field or "").lstrip("-").replace("-", "_")
        message = str(e)[len(e.field) + 2:] if e.field and str(e).startswith(e.field + ": ") else str(e)
        raise BadInput(message, where, field) from None
    return c


def _check_fields(config: dict, where: Path) -> tuple[tuple[float, float], dict]:
    """The top-level keys scoring reads; returns (value_support, normalization)."""
    for key in ("chunk_size", "state_dim", "action_dim") + (("obs_dim",) if "obs_dim" in config else ()):
        value = config.get(key)
        if value is None:
            raise BadInput("missing", where, key)
        if not is_count(value):
            raise BadInput(f"expected an integer >= 1, got {value!r}", where, key)
    if config.get("obs_dim", config["state_dim"]) < config["state_dim"]:
        raise BadInput(f"is {config['obs_dim']}, smaller than state_dim {config['state_dim']}", where, "obs_dim")
    support = config.get("value_support")
    if support is None:
        raise BadInput("missing", where, "value_support")
    if not (isinstance(support, list) and len(support) == 2 and all(_is_number(x) for x in support)):
        raise BadInput(f"expected [low, high] numbers, got {support!r}", where, "value_support")
    norm = config.get("normalization")
    if not isinstance(norm, dict):
        raise BadInput("missing" if norm is None else f"expected an object, got {type(norm).__name__}",
                       where, "normalization")
    for key in ("return_shift", "return_scale"):
        value = norm.get(key)
        if value is None:
            raise BadInput("missing", where, f"normalization.{key}")
        if not _is_number(value) or (key == "return_scale" and value <= 0):
            raise BadInput(f"expected a finite number{' > 0' if key == 'return_scale' else ''}, got {value!r}",
                           where, f"normalization.{key}")
    _check_reward(config.get("reward"), where)
    for key in ("policy", "time_scale", "images"):
        value = config.get(key)
        if value is not None and not isinstance(value, dict):
            raise BadInput(f"expected an object or null, got {value!r}", where, key)
    for cam, hw in (config.get("images") or {}).items():
        if not (isinstance(hw, list) and len(hw) == 2 and all(is_count(v) for v in hw)):
            raise BadInput(f"expected [height, width], got {hw!r}", where, f"images.{cam}")
    ts = config.get("time_scale")
    if ts is not None and not (isinstance(ts.get("per_task"), dict) and _is_number(ts.get("default"))):
        raise BadInput("expected {\"per_task\": {...}, \"default\": frames}", where, "time_scale")
    spec = (config.get("policy") or {}).get("spec")
    if spec is not None and not isinstance(spec, str):
        raise BadInput(f"expected a string, got {spec!r}", where, "policy.spec")
    store = config.get("store")
    if not isinstance(store, dict) or not isinstance(store.get("fingerprint"), str):
        raise BadInput("missing" if store is None else f"expected an object with a fingerprint, got {store!r}",
                       where, "store")
    return (float(support[0]), float(support[1])), norm


def _check_reward(reward, where: Path) -> None:
    """The resolved reward spec `fit_critic` recorded (see aloe_cli.rewards.resolve_rewards)."""
    from ..rewards import REWARD_KINDS

    if not isinstance(reward, dict):
        raise BadInput("missing" if reward is None else f"expected an object, got {reward!r}", where, "reward")
    kind = reward.get("kind")
    if kind not in REWARD_KINDS:
        raise BadInput(f"got {kind!r}; expected one of {', '.join(REWARD_KINDS)}", where, "reward.kind")
    if kind != "step-penalty":
        return
    table = reward.get("t_norm")
    if not (isinstance(table, dict) and all(_is_number(v) and v > 0 for v in table.values())):
        raise BadInput(f"expected an object of task -> frames > 0, got {table!r}", where, "reward.t_norm")
    for key in ("t_norm_default", "c_fail"):
        value = reward.get(key)
        if (value is not None or key == "t_norm_default") and not (_is_number(value) and value > 0):
            raise BadInput(f"expected a number > 0, got {value!r}", where, f"reward.{key}")
