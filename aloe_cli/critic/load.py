"""Loading a fitted critic for scoring: `load_critic(dir) -> Critic`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import BadInput
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
            ims = {c: torch.as_tensor(v, device=self.device) if not isinstance(v, torch.Tensor) else v
                   for c, v in obs_images(images, self.obs).items()}
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

    critic_dir = Path(critic_dir)
    if not critic_dir.is_dir():
        raise BadInput("no such critic directory (run `aloe fit-critic` first)", critic_dir, "--critic")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (critic_dir / name).exists():
            raise BadInput(f"missing {name}: not a finished critic written by `aloe fit-critic`", critic_dir,
                           "--critic")
    try:
        config = json.loads((critic_dir / CONFIG_FILE).read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot be parsed: {e}", critic_dir / CONFIG_FILE) from None
    if config.get("format") != CRITIC_FORMAT:
        raise BadInput(f"is not an aloe critic config (format {config.get('format')!r})",
                       critic_dir / CONFIG_FILE, "format")
    if int(config.get("version", 0)) > CRITIC_VERSION:
        raise BadInput(f"critic format {config['version']} is newer than this aloe understands ({CRITIC_VERSION})",
                       critic_dir / CONFIG_FILE, "version")
    dev = resolve_device(device if isinstance(device, str) else str(device))
    c = CriticConfig.from_dict(config["config"])
    support = tuple(float(x) for x in config["value_support"])
    norm = config["normalization"]
    support_n = tuple((x - norm["return_shift"]) / norm["return_scale"] for x in support)
    net = CriticNet(int(config.get("obs_dim", config["state_dim"])), int(config["action_dim"]),
                    int(config["chunk_size"]), c.ensemble, c.hidden, c.layers, c.head, c.bins, c.chunk_encoder,
                    support_n, images={k: tuple(v) for k, v in (config.get("images") or {}).items()})
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(critic_dir / WEIGHTS_FILE))
        net.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise BadInput(f"cannot be loaded: {str(e).splitlines()[0]}", critic_dir / WEIGHTS_FILE) from None
    net.to(dev).eval()
    return Critic(net, config, dev, critic_dir)
