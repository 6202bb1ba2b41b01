"""The built-in chunk policy: an observation encoder and a conditional flow-matching head.

Like a VLA's action expert, it samples whole action chunks (B, N, H, A) given an observation.

- Observation: ``observation.state`` normalised with the training frames' mean and std, plus an
  optional learned embedding of the task text (one vector per task in the store; text it was
  not trained on gets the zero vector).
- Actions are normalised per dimension with the training frames' mean and std (so the flow's
  standard-normal noise has the data's scale) and un-normalised on the way out.
- Flow matching, rectified-flow convention: x_t = (1 - t) * noise + t * chunk, t ~ U[0, 1];
  the network predicts the velocity chunk - noise; sampling integrates dx/dt = v from t = 0
  (noise) to t = 1 with `flow_steps` Euler steps. (pi0 uses the mirror image, t = 1 noise.)
  Deterministic mode starts from zero noise.
- Behaviour cloning with per-chunk weights: a chunk starts at every frame; padded actions
  (past the episode's end: the last action repeated) are masked out of the loss.
- Optional advantage conditioning (RECAP-style, ``advantage_conditioning``): an indicator
  embedding (0 unknown, 1 negative, 2 positive) is added to the observation encoding. It is
  zero-initialised, so a conditioned policy starts out as the unconditioned one; training drops
  the indicator to "unknown" for `indicator_dropout` of the chunks; sampling uses "positive"
  unless ``--policy-arg indicator=negative|unknown``.

A policy directory holds ``policy.json`` (everything needed to rebuild the network: sizes,
normalisation, task vocabulary, the training config and the store's fingerprint),
``model.safetensors``, ``train_log.jsonl`` and ``split.json``; it loads without the store.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .. import schema as S
from ..errors import BadInput, PolicyError, check_seed, is_count
from ..outdirs import check_output, temp_sibling
from ..chunks import chunk_windows, frame_episode_end

FORMAT_NAME = "aloe-flow-chunk-policy"
FORMAT_VERSION = 1

# Fields of PolicyConfig that fix the network's shape: taken from the policy when fine-tuning.
ARCHITECTURE_FIELDS = ("chunk_size", "hidden", "depth", "obs_layers", "task_embedding", "task_dim", "time_dim", "obs")

# Values of the advantage indicator of a conditioned policy.
INDICATOR_UNKNOWN, INDICATOR_NEGATIVE, INDICATOR_POSITIVE = 0, 1, 2
INDICATOR_NAMES = {"positive": INDICATOR_POSITIVE, "negative": INDICATOR_NEGATIVE, "unknown": INDICATOR_UNKNOWN}


@dataclass(frozen=True)
class PolicyConfig:
    """The built-in flow-matching chunk policy: network sizes and behaviour-cloning settings."""

    chunk_size: int = 10  # H: actions per chunk
    hidden: int = 256  # width of the observation encoder and of the velocity network
    depth: int = 2  # hidden layers of the velocity network (Linear + LayerNorm + SiLU each)
    obs_layers: int = 2  # layers of the observation encoder
    task_embedding: bool = True  # learn one vector per task text of the store (unseen text: zeros)
    task_dim: int = 32  # size of the task embedding
    task_dropout: float = 0.1  # fraction of training chunks shown with no task, so unknown text gets a sane policy
    time_dim: int = 32  # sinusoidal features of the flow time t
    advantage_conditioning: bool = False  # take an advantage indicator as an input (RECAP-style `conditioned`)
    indicator_dropout: float = 0.3  # fraction of training chunks whose indicator is shown as "unknown"
    flow_steps: int = 10  # Euler steps when sampling a chunk
    steps: int = 5000  # gradient steps
    batch_size: int = 256  # chunks per gradient step
    lr: float = 3e-4  # AdamW learning rate (peak)
    weight_decay: float = 1e-4  # AdamW weight decay
    lr_schedule: str = "cosine"  # "cosine" (decays to 10% of lr) or "constant", after a linear warmup
    warmup_steps: int = 100  # linear learning-rate warmup
    grad_clip: float = 1.0  # max gradient norm
    val_fraction: float = 0.1  # fraction of episodes held out for validation (at least 1 when >= 2 episodes)
    eval_every: int = 500  # validation loss every this many steps (and at the end)
    log_every: int = 50  # training-log line and progress report every this many steps
    seed: int = 0  # seeds the split, the initial weights, batches, noise and sampling
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    obs: str = "state"  # observation inputs: state[,images.<cam>][,<numeric column>] (see aloe_cli.vision)
    augment: bool = True  # random-shift camera frames in training (DrQ, 4 pixels)

    def validate(self, as_options: bool = False) -> "PolicyConfig":
        """Check every field; errors name the field (as a CLI option, --batch-size, with `as_options`)."""
        def name_of(field: str) -> str:
            return "--" + field.replace("_", "-") if as_options else field

        positive = ("chunk_size", "hidden", "depth", "obs_layers", "time_dim", "flow_steps", "steps",
                    "batch_size", "eval_every", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise BadInput(f"must be an integer >= 1, got {value!r}", field=name_of(name))
        if self.task_embedding and self.task_dim < 1:
            raise BadInput(f"must be >= 1 when task_embedding is on, got {self.task_dim}", field=name_of("task_dim"))
        if self.time_dim % 2:
            raise BadInput(f"must be even, got {self.time_dim}", field=name_of("time_dim"))
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BadInput(f"must be > 0, got {self.lr}", field=name_of("lr"))
        if not 0 <= self.task_dropout < 1:
            raise BadInput(f"must be in [0, 1), got {self.task_dropout}", field=name_of("task_dropout"))
        if not 0 <= self.indicator_dropout < 1:
            raise BadInput(f"must be in [0, 1), got {self.indicator_dropout}", field=name_of("indicator_dropout"))
        if not 0 <= self.val_fraction < 1:
            raise BadInput(f"must be in [0, 1), got {self.val_fraction}", field=name_of("val_fraction"))
        if self.lr_schedule not in ("cosine", "constant"):
            raise BadInput(f"must be cosine or constant, got {self.lr_schedule!r}", field=name_of("lr_schedule"))
        check_seed(self.seed, field=name_of("seed"))
        from ..vision import parse_obs

        if parse_obs(self.obs, name_of("obs")).time:
            raise BadInput("time is a critic input only: a policy acts on what the robot observes",
                           field=name_of("obs"))
        return self


def resolve_device(device: str | None) -> str:
    """'auto' -> cuda when available else cpu; a CUDA device on a machine without one is bad input."""
    name = (device or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise BadInput("CUDA is not available on this machine; use --device cpu", field="--device")
        return name
    raise BadInput(f"{device!r} is not auto, cpu, cuda or cuda:N", field="--device")


def time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of flow time t (n,) -> (n, dim); periods log-spaced in [4e-3, 4] as in pi0."""
    half = dim // 2
    periods = torch.exp(torch.linspace(math.log(4e-3), math.log(4.0), half, device=t.device, dtype=t.dtype))
    angle = 2 * math.pi * t[:, None] / periods[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)


def masked_flow_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                     weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Weighted flow-matching loss over chunks, padded actions excluded.

    pred, target: (B, H, A); valid: (B, H) bool; weights: (B,) (None: all 1).
    Per chunk: the mean squared error over its valid actions' numbers; loss = mean over the
    batch of weight * per-chunk error (pass weights already divided by their mean over the data).
    """
    mask = valid.to(pred.dtype)
    sq = ((pred - target) ** 2).sum(dim=2)  # (B, H)
    per_chunk = (sq * mask).sum(dim=1) / (mask.sum(dim=1).clamp(min=1) * pred.shape[2])
    w = torch.ones_like(per_chunk) if weights is None else weights.to(per_chunk.dtype)
    loss = (w * per_chunk).mean()
    # 0-d tensors on the device: the training loop reads them on the host once per logged row, not per step
    return loss, {"policy/flow_loss": loss.detach(), "policy/unweighted_flow_loss": per_chunk.detach().mean()}


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (float32); a constant column gets std 1 (it normalises to 0)."""
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    std = np.where(std < 1e-6, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


class FlowChunkPolicy(nn.Module):
    """Samples action chunks (B, N, H, A) for observations; a `ChunkPolicy`.

    `sample(observations, num_samples, deterministic=None)` takes numpy observations keyed by
    store column names (``observation.state`` (B, D), optional ``task`` list of B strings);
    `sample_torch(state, num_samples, task_ids, deterministic, generator)` does the same on
    tensors already on the policy's device (for the critic's bootstrap).
    """

    observation_keys = (S.OBS_STATE, S.TASK)

    def __init__(self, config: PolicyConfig, state_dim: int, action_dim: int, tasks: list[str] | None = None,
                 state_stats: tuple[np.ndarray, np.ndarray] | None = None,
                 action_stats: tuple[np.ndarray, np.ndarray] | None = None, images: dict | None = None,
                 extra_dims: dict | None = None):
        super().__init__()
        from ..vision import FEATURE_DIM, image_encoders, parse_obs

        self.config = config
        self.obs_spec = parse_obs(config.obs)
        # --obs extras (column -> width, concatenated after the state) and cameras (column -> (h, w)).
        self.extra_dims = {k: int(v) for k, v in (extra_dims or {}).items()}
        self.cameras = {k: tuple(v) for k, v in (images or {}).items()}
        self.observation_keys = (S.OBS_STATE, S.TASK) + tuple(self.extra_dims) + tuple(self.cameras)
        self.chunk_size = int(config.chunk_size)
        self.action_dim = int(action_dim)
        self.state_dim = int(state_dim)
        self.tasks = list(tasks or [])
        self.task_index = {t: i + 1 for i, t in enumerate(self.tasks)}  # 0: unknown task
        self.deterministic = False  # default for sample(); --policy-arg deterministic=true
        self.flow_steps = int(config.flow_steps)
        self.sample_seed = int(config.seed)
        self.max_rows = 65536  # chunks integrated in one pass when sampling (memory bound)
        self._generators: dict[str, torch.Generator] = {}
        D, A, H, h = self.state_dim + sum(self.extra_dims.values()), self.action_dim, self.chunk_size, \
            int(config.hidden)
        sm, ss = state_stats if state_stats is not None else (np.zeros(D, np.float32), np.ones(D, np.float32))
        am, asd = action_stats if action_stats is not None else (np.zeros(A, np.float32), np.ones(A, np.float32))
        # Normalisation lives in policy.json; the buffers are not part of the weights file.
        self.register_buffer("state_mean", torch.as_tensor(np.asarray(sm, np.float32)), persistent=False)
        self.register_buffer("state_std", torch.as_tensor(np.asarray(ss, np.float32)), persistent=False)
        self.register_buffer("action_mean", torch.as_tensor(np.asarray(am, np.float32)), persistent=False)
        self.register_buffer("action_std", torch.as_tensor(np.asarray(asd, np.float32)), persistent=False)

        use_task = bool(config.task_embedding) and len(self.tasks) > 0
        self.task_embed = nn.Embedding(len(self.tasks) + 1, config.task_dim, padding_idx=0) if use_task else None
        layers: list[nn.Module] = []
        d = D + (config.task_dim if use_task else 0)
        self.vision = None
        if self.cameras:  # one small conv encoder per camera, trained from scratch
            self.vision = image_encoders(self.cameras)
            d += FEATURE_DIM * len(self.cameras)
        for _ in range(config.obs_layers):
            layers += [nn.Linear(d, h), nn.LayerNorm(h), nn.SiLU()]
            d = h
        self.obs_encoder = nn.Sequential(*layers)
        # First layer of the velocity network, split by input so that the observation's part is
        # computed once per observation and the time's part once per Euler step when sampling.
        self.cond_in = nn.Linear(h, h)
        self.x_in = nn.Linear(H * A, h, bias=False)
        self.t_in = nn.Linear(config.time_dim, h, bias=False)
        self.in_norm = nn.Sequential(nn.LayerNorm(h), nn.SiLU())
        body: list[nn.Module] = []
        for _ in range(config.depth - 1):
            body += [nn.Linear(h, h), nn.LayerNorm(h), nn.SiLU()]
        self.body = nn.Sequential(*body)
        self.out = nn.Linear(h, H * A)
        # Advantage indicator (created last, so the other layers' initial weights do not depend on it).
        self.indicator = INDICATOR_POSITIVE  # what sampling conditions on
        self.indicator_embed = None
        if config.advantage_conditioning:
            self.indicator_embed = nn.Embedding(3, h)
            nn.init.zeros_(self.indicator_embed.weight)  # starts out as the unconditioned policy

    # ------------------------------------------------------------------ pieces
    @property
    def device(self) -> torch.device:
        return self.out.weight.device

    def task_ids(self, tasks, batch: int) -> torch.Tensor:
        """(B,) vocabulary ids of task strings (0 for None or text not seen in training)."""
        if tasks is None:
            return torch.zeros(batch, dtype=torch.long, device=self.device)
        if isinstance(tasks, str):
            tasks = [tasks] * batch
        ids = [self.task_index.get(t, 0) if isinstance(t, str) else 0 for t in list(tasks)]
        if len(ids) != batch:
            raise PolicyError(f"has {len(ids)} entries but observation.state has {batch} rows", field=S.TASK)
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    def condition(self, state: torch.Tensor, task_ids: torch.Tensor | None = None,
                  indicator: torch.Tensor | None = None, images: dict | None = None) -> torch.Tensor:
        """(B, D) state in store units -> (B, hidden) contribution to the velocity network's first layer.

        `indicator` (B,) long (conditioned policies only): 0 unknown, 1 negative, 2 positive;
        None: `self.indicator` for every row.
        """
        x = (state.to(self.state_mean.dtype) - self.state_mean) / self.state_std
        if self.task_embed is not None:
            if task_ids is None:
                task_ids = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            x = torch.cat([x, self.task_embed(task_ids)], dim=1)
        if self.vision is not None:
            from ..vision import module_key

            if images is None or any(c not in images for c in self.cameras):
                raise PolicyError(f"the policy needs camera frames {list(self.cameras)}", field="observations")
            x = torch.cat([x] + [self.vision[module_key(c)](images[c]) for c in self.cameras], dim=1)
        z = self.obs_encoder(x)
        if self.indicator_embed is not None:
            if indicator is None:
                indicator = torch.full((x.shape[0],), int(self.indicator), dtype=torch.long, device=x.device)
            z = z + self.indicator_embed(indicator)
        return self.cond_in(z)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predicted velocity (B*N, H*A) at normalised flattened chunks x (B*N, H*A), observation-major.

        cond: (B, hidden) from `condition`, shared by each observation's N chunks; t: flow time,
        (1,) shared by every chunk or (B,) one per observation.
        """
        c = cond + self.t_in(time_features(t, self.config.time_dim))  # (B, hidden): cheap
        z = self.x_in(x)
        z.view(c.shape[0], -1, c.shape[1]).add_(c[:, None, :])  # one in-place broadcast add over B*N rows
        return self.out(self.body(self.in_norm(z)))

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.action_mean) / self.action_std

    # ------------------------------------------------------------------ sampling
    def _generator(self) -> torch.Generator:
        key = str(self.device)
        if key not in self._generators:
            g = torch.Generator(device=self.device)
            g.manual_seed(self.sample_seed)
            self._generators[key] = g
        return self._generators[key]

    def rng_state(self) -> dict[str, str]:
        """The sampling generators' states (device -> hex), so that a resumed critic fit draws the chunks an
        uninterrupted one would (`set_rng_state`)."""
        return {k: bytes(g.get_state().tolist()).hex() for k, g in self._generators.items()}

    def set_rng_state(self, state: dict[str, str]) -> None:
        """Put back states from `rng_state`; a generator made since (absent from `state`) starts over from the seed."""
        for key in [k for k in self._generators if k not in state]:
            del self._generators[key]
        for key, hexed in state.items():
            if key not in self._generators:
                g = torch.Generator(device=key)
                self._generators[key] = g
            self._generators[key].set_state(torch.tensor(list(bytes.fromhex(hexed)), dtype=torch.uint8))

    @torch.no_grad()
    def sample_torch(self, state: torch.Tensor, num_samples: int, task_ids: torch.Tensor | None = None,
                     deterministic: bool | None = None, generator: torch.Generator | None = None,
                     images: dict | None = None) -> torch.Tensor:
        """Chunks (B, N, H, A) in store units for a (B, D) state tensor on the policy's device
        (D: the state then any --obs extra columns); `images`: camera -> uint8 (B, h, w, 3) tensors."""
        deterministic = self.deterministic if deterministic is None else deterministic
        B, N, H, A = state.shape[0], int(num_samples), self.chunk_size, self.action_dim
        rows = max(1, self.max_rows // max(N, 1))
        if B > rows:  # bound memory: at most max_rows chunks integrated at once
            parts = [self.sample_torch(state[i:i + rows], N, None if task_ids is None else task_ids[i:i + rows],
                                       deterministic, generator,
                                       None if images is None else {k: v[i:i + rows] for k, v in images.items()})
                     for i in range(0, B, rows)]
            return torch.cat(parts, dim=0)
        cond = self.condition(state, task_ids, images=images)  # (B, hidden); chunk rows are observation-major
        if deterministic:
            x = torch.zeros(B * N, H * A, device=cond.device, dtype=cond.dtype)
        else:
            x = torch.randn(B * N, H * A, device=cond.device, dtype=cond.dtype,
                            generator=generator or self._generator())
        steps = self.flow_steps
        dt = 1.0 / steps
        for k in range(steps):
            t = torch.full((1,), k * dt, device=cond.device, dtype=cond.dtype)
            x = x + dt * self.velocity(x, t, cond)
        return x.view(B, N, H, A) * self.action_std + self.action_mean

    def sample(self, observations: dict, num_samples: int, deterministic: bool | None = None) -> np.ndarray:
        """float32 (B, num_samples, H, A) action chunks for a batch of observations."""
        if S.OBS_STATE not in observations:
            raise PolicyError(f"observations have no {S.OBS_STATE!r}", field="observations")
        state = np.asarray(observations[S.OBS_STATE], dtype=np.float32)
        if state.ndim != 2 or state.shape[1] != self.state_dim:
            raise PolicyError(f"has shape {state.shape}; the policy expects (B, {self.state_dim})",
                              field=S.OBS_STATE)
        if int(num_samples) < 1:
            raise PolicyError(f"must be >= 1, got {num_samples}", field="num_samples")
        ids = self.task_ids(observations.get(S.TASK), state.shape[0])
        parts = [state]
        for c, k in self.extra_dims.items():
            if c not in observations:
                raise PolicyError(f"observations have no {c!r} (the policy was trained with --obs {self.obs_spec})",
                                  field="observations")
            v = np.asarray(observations[c], dtype=np.float32).reshape(state.shape[0], -1)
            if v.shape[1] != k:
                raise PolicyError(f"has shape {v.shape}; the policy expects (B, {k})", field=c)
            parts.append(v)
        feats = np.concatenate(parts, 1) if len(parts) > 1 else state
        images = None
        if self.cameras:
            from ..vision import obs_images

            images = {c: torch.as_tensor(v).to(self.device) for c, v in obs_images(observations, self.obs_spec).items()}
            for c, v in images.items():
                if tuple(v.shape[1:3]) != tuple(self.cameras[c]):
                    (h, w), (th, tw) = v.shape[1:3], self.cameras[c]
                    raise PolicyError(f"frames are {w}x{h} but the policy was trained on {tw}x{th} frames", field=c)
        out = self.sample_torch(torch.from_numpy(feats).to(self.device), num_samples, ids, deterministic,
                                images=images)
        return out.float().cpu().numpy()

    # ------------------------------------------------------------------ saving
    def policy_json(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "chunk_size": self.chunk_size,
            "action_dim": self.action_dim,
            "state_dim": self.state_dim,
            "observation_keys": list(self.observation_keys),
            "obs": {"spec": str(self.obs_spec), "extras": self.extra_dims,
                    "images": {k: list(v) for k, v in self.cameras.items()}},
            "tasks": self.tasks,
            "normalization": {
                "method": "mean_std",
                "state": {"mean": self.state_mean.cpu().tolist(), "std": self.state_std.cpu().tolist()},
                "action": {"mean": self.action_mean.cpu().tolist(), "std": self.action_std.cpu().tolist()},
            },
            "flow": {"convention": "x_t = (1 - t) * noise + t * chunk; velocity = chunk - noise; "
                                   "Euler from t = 0 (noise) to t = 1", "steps": self.flow_steps},
            "config": dataclasses.asdict(self.config),
            **({"conditioning": {
                "indicator": {"unknown": INDICATOR_UNKNOWN, "negative": INDICATOR_NEGATIVE,
                              "positive": INDICATOR_POSITIVE},
                "at_inference": "positive (--policy-arg indicator=negative|unknown to change)",
                "training_dropout": self.config.indicator_dropout}} if self.indicator_embed is not None else {}),
        }

    def save(self, out_dir: Path, extra: dict | None = None) -> None:
        """Write policy.json and model.safetensors into `out_dir` (which must exist)."""
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(Path(out_dir) / S.POLICY_WEIGHTS_FILE))
        doc = self.policy_json()
        doc.update(extra or {})
        (Path(out_dir) / S.POLICY_FILE).write_text(json.dumps(doc, indent=2) + "\n")


# ---------------------------------------------------------------------- loading

def read_policy_json(path: str | os.PathLike, option: str = "--policy") -> dict:
    """The checked policy.json of a policy directory (PolicyError when it is not one)."""
    path = Path(path)
    doc_path = path / S.POLICY_FILE
    if not doc_path.is_file():
        raise PolicyError(f"is not a policy directory written by aloe (no {S.POLICY_FILE})", path, option)
    try:
        doc = json.loads(doc_path.read_text())
    except (OSError, ValueError) as e:
        raise PolicyError(f"cannot be parsed: {e}", doc_path) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise PolicyError(f"is {found!r}, not {FORMAT_NAME!r}", doc_path, "format")
    version = doc.get("format_version")
    if not isinstance(version, int):
        raise PolicyError("missing or not an integer", doc_path, "format_version")
    if version > FORMAT_VERSION:
        raise PolicyError(f"{version} is newer than this aloe understands ({FORMAT_VERSION}); upgrade aloe",
                          doc_path, "format_version")
    for key in ("chunk_size", "action_dim", "state_dim"):
        value = doc.get(key)
        if not is_count(value):
            raise PolicyError(f"must be an integer >= 1, got {value!r}", doc_path, key)
    config = doc.get("config")
    if isinstance(config, dict) and "chunk_size" in config and config["chunk_size"] != doc["chunk_size"]:
        raise PolicyError(f"{doc['chunk_size']} differs from config.chunk_size {config['chunk_size']!r} "
                          "(the network's)", doc_path, "chunk_size")
    return doc


_LOAD_ARGS = {"deterministic": bool, "flow_steps": int, "seed": int, "indicator": str}


def load_builtin(path: str | os.PathLike, device: str = "cpu", **args) -> FlowChunkPolicy:
    """Load a policy directory written by aloe. `args` (from --policy-arg): deterministic, flow_steps, seed,
    indicator (positive, negative or unknown; advantage-conditioned policies only)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    for key, value in args.items():
        kind = _LOAD_ARGS.get(key)
        if kind is None:
            raise PolicyError(f"unknown argument {key!r} for a built-in policy (known: {', '.join(_LOAD_ARGS)})",
                              path, "--policy-arg")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise PolicyError(f"{key}={value!r} is not a {kind.__name__}", path, "--policy-arg")
    doc = read_policy_json(path)
    doc_path = path / S.POLICY_FILE
    try:
        fields = {f.name for f in dataclasses.fields(PolicyConfig)}
        config = PolicyConfig(**{k: v for k, v in doc["config"].items() if k in fields})
        norm = doc["normalization"]
        state_stats = (np.asarray(norm["state"]["mean"], np.float32), np.asarray(norm["state"]["std"], np.float32))
        action_stats = (np.asarray(norm["action"]["mean"], np.float32), np.asarray(norm["action"]["std"], np.float32))
        obs = doc.get("obs") or {}
        policy = FlowChunkPolicy(config, int(doc["state_dim"]), int(doc["action_dim"]), list(doc.get("tasks") or []),
                                 state_stats, action_stats, images=obs.get("images"), extra_dims=obs.get("extras"))
    except (KeyError, TypeError, ValueError) as e:
        raise PolicyError(f"missing or malformed entry: {type(e).__name__}: {e}", doc_path) from None
    weights_path = path / S.POLICY_WEIGHTS_FILE
    if not weights_path.is_file():
        raise PolicyError("missing", weights_path)
    try:
        state = load_file(str(weights_path))
        policy.load_state_dict(state)
    except (SafetensorError, OSError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PolicyError(f"does not match {S.POLICY_FILE}: {first}", weights_path) from None
    policy.deterministic = bool(args.get("deterministic", False))
    policy.flow_steps = int(args.get("flow_steps", policy.flow_steps))
    policy.sample_seed = int(args.get("seed", policy.sample_seed))
    if policy.flow_steps < 1:
        raise PolicyError(f"flow_steps must be >= 1, got {policy.flow_steps}", path, "--policy-arg")
    if "indicator" in args:
        if policy.indicator_embed is None:
            raise PolicyError("indicator applies to advantage-conditioned policies (aloe improve --method "
                              "conditioned) only", path, "--policy-arg")
        if args["indicator"] not in INDICATOR_NAMES:
            raise PolicyError(f"indicator={args['indicator']!r} is not one of {', '.join(INDICATOR_NAMES)}", path,
                              "--policy-arg")
        policy.indicator = INDICATOR_NAMES[args["indicator"]]
    policy.source_path = str(path)
    return policy.to(resolve_device(device)).eval()


# ---------------------------------------------------------------------- training

def _split_episodes(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Episode-level split: (train positions, val positions), both sorted."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _lr_factor(step: int, config: PolicyConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return 1.0
    span = max(config.steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _check_weights(weights, n_frames: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != n_frames:
        raise BadInput(f"has {w.shape[0]} values but the training data has {n_frames} chunk starts (one per frame)",
                       field="weights")
    if not np.isfinite(w).all():
        raise BadInput("contains NaN or inf", field="weights")
    if (w < 0).any():
        raise BadInput(f"contains a negative weight ({w.min():g})", field="weights")
    return w


def train_policy(store, out_dir: str | os.PathLike, config: PolicyConfig = PolicyConfig(),
                 weights: np.ndarray | None = None, episode_ids: list[str] | None = None,
                 init_from: str | os.PathLike | None = None,
                 progress: Callable[[int, int, dict], None] | None = None, overwrite: bool = False,
                 meta: dict | None = None, indicators: np.ndarray | None = None,
                 lineage: dict | None = None) -> dict:
    """Behaviour cloning (optionally weighted per chunk) of the built-in policy on a store's chunks.

    `weights`: one non-negative weight per chunk start, i.e. per frame of
    ``store.load_frames(episode_ids=episode_ids)`` in store order (None: uniform = plain BC);
    chunks of weight 0 are never used. `episode_ids`: train on these episodes only.
    `init_from`: a policy directory to fine-tune; its architecture, normalisation and task
    vocabulary are kept. `progress(step, total, info)` is called every `log_every` steps.
    Writes `out_dir` atomically (a temporary sibling renamed at the end) and returns a summary;
    `meta` (e.g. the improvement method and its settings) is recorded in policy.json's "training",
    `lineage` (round, base policy, scores, ...) as policy.json's "lineage".
    `indicators`: one bool per chunk start (the advantage indicator), required exactly when
    ``config.advantage_conditioning``. A conditioned policy may fine-tune an unconditioned one (its
    indicator embedding starts at zero); the reverse is refused.
    """
    config = config.validate()
    out_dir = Path(out_dir)
    check_output(out_dir, "policy", "--out", replace=overwrite)
    device = resolve_device(config.device)
    init = None
    if init_from is not None:
        read_policy_json(init_from, "--policy")
        init = load_builtin(init_from, device=device)
        config = dataclasses.replace(config, **{k: getattr(init.config, k) for k in ARCHITECTURE_FIELDS})
        if init.config.advantage_conditioning and not config.advantage_conditioning:
            raise BadInput("is advantage-conditioned (aloe improve --method conditioned); continue it with "
                           "--method conditioned", Path(init_from) / S.POLICY_FILE, "advantage_conditioning")
    if config.advantage_conditioning and indicators is None:
        raise BadInput("an advantage-conditioned policy needs an indicator per chunk", field="indicators")
    if indicators is not None and not config.advantage_conditioning:
        raise BadInput("indicators are given but the policy is not advantage-conditioned", field="indicators")

    # ---- data: every frame is a chunk start
    from ..vision import check_obs, decode_batch, frame_names, parse_obs, random_shift

    spec = parse_obs(config.obs)
    check_obs(spec, store)
    if episode_ids is not None:
        episode_ids = list(episode_ids)
        twice = [e for e, n in Counter(episode_ids).items() if n > 1]
        if twice:  # one episode in both the training and the validation split
            raise BadInput(f"episode {twice[0]!r} is given more than once", store.root, "episode_ids")
    frames = store.load_frames([S.OBS_STATE, S.ACTION] + list(spec.extras) + list(spec.images),
                               episode_ids=episode_ids)
    n_frames, E = frames.num_frames, len(frames.episode_ids)
    if E == 0 or n_frames == 0:
        raise BadInput("has no episodes to train on", store.root)
    state_all, action_all = frames.columns[S.OBS_STATE], frames.columns[S.ACTION]
    D, A, H = state_all.shape[1], action_all.shape[1], config.chunk_size
    if H > int(frames.lengths.max()):
        raise BadInput(f"{H} is longer than the longest episode ({int(frames.lengths.max())} frames): every chunk "
                       "would be mostly padding", field="--chunk-size")
    extra_dims = {c: int(frames.columns[c].shape[1]) for c in spec.extras}
    for c in spec.extras:
        if np.isnan(frames.columns[c]).any():
            raise BadInput("has missing values (every frame needs the column to use it in --obs)", store.root, c)
    feats_all = np.ascontiguousarray(np.concatenate([state_all] + [frames.columns[c] for c in spec.extras], 1),
                                     dtype=np.float32) if spec.extras else state_all
    # Camera frames: decoded once here into uint8 (N, h, w, 3); batches index them.
    images_all = {c: decode_batch(frames.columns[c], store.root, c, frame_names(frames)) for c in spec.images}
    cams = {c: tuple(a.shape[1:3]) for c, a in images_all.items()}
    if init is not None and (init.state_dim, init.action_dim) != (D, A):
        raise BadInput(f"policy has state {init.state_dim} / action {init.action_dim} numbers but the store has "
                       f"{D} / {A}", init_from, "--policy")
    w = np.ones(n_frames) if weights is None else _check_weights(weights, n_frames)
    if indicators is not None:
        indicators = np.asarray(indicators).reshape(-1)
        if indicators.shape[0] != n_frames:
            raise BadInput(f"has {indicators.shape[0]} values but the training data has {n_frames} chunk starts "
                           "(one per frame)", field="indicators")
        indicators = indicators.astype(bool)
    episode_of = frames.episode_of_frame()
    train_eps, val_eps = _split_episodes(E, config.val_fraction, config.seed)
    is_train = np.isin(episode_of, train_eps)
    pool = np.flatnonzero(is_train & (w > 0))
    if pool.size == 0:
        raise BadInput("every training chunk has weight 0", field="weights")
    w_norm = (w / w[pool].mean()).astype(np.float32)
    end = frame_episode_end(frames.lengths)  # frames of load_frames lie end to end from 0

    # ---- tasks and normalisation (from the training episodes, or the init policy's)
    ep_rows = store.episodes.set_index(S.EPISODE_ID).loc[frames.episode_ids]
    ep_task = [t if isinstance(t, str) else None for t in ep_rows[S.TASK].tolist()]
    if init is not None:
        tasks = init.tasks
        state_stats = (init.state_mean.cpu().numpy(), init.state_std.cpu().numpy())
        action_stats = (init.action_mean.cpu().numpy(), init.action_std.cpu().numpy())
    else:
        tasks = sorted({ep_task[e] for e in train_eps if ep_task[e] is not None}) if config.task_embedding else []
        state_stats = _stats(feats_all[is_train])
        action_stats = _stats(action_all[is_train])
    task_index = {t: i + 1 for i, t in enumerate(tasks)}
    frame_task = np.asarray([task_index.get(t, 0) for t in ep_task], dtype=np.int64)[episode_of]

    # ---- model, optimiser, random streams (all seeded)
    with torch.random.fork_rng(devices=[]):  # forks the CPU generator only, so seed only that one
        torch.default_generator.manual_seed(config.seed)
        policy = FlowChunkPolicy(config, D, A, tasks, state_stats, action_stats, images=cams, extra_dims=extra_dims)
    if init is not None:
        missing, unexpected = policy.load_state_dict(init.state_dict(), strict=False)
        if unexpected or any(not k.startswith("indicator_embed.") for k in missing):
            raise BadInput(f"does not fit the new policy (missing {missing}, unexpected {unexpected})",
                           Path(init_from) / S.POLICY_WEIGHTS_FILE)
    policy.to(device).train()
    opt = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed + 1)
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed + 2)

    states = torch.from_numpy(feats_all).to(device)
    images_t = {c: torch.from_numpy(a).to(device) for c, a in images_all.items()}
    actions_n = policy.normalize_actions(torch.from_numpy(action_all).to(device))
    tasks_t = torch.from_numpy(frame_task).to(device)
    w_t = torch.from_numpy(w_norm).to(device)
    ind_t = None
    if indicators is not None:  # 1 negative, 2 positive
        ind_t = torch.from_numpy(np.where(indicators, INDICATOR_POSITIVE, INDICATOR_NEGATIVE)).to(device)

    def batch_loss(idx: np.ndarray, generator: torch.Generator, training: bool = True):
        win, valid = chunk_windows(idx, end[idx], H)
        idx_t = torch.from_numpy(idx).to(device)
        chunk = actions_n[torch.from_numpy(win).to(device)]  # (B, H, A), padding repeats the last action
        noise = torch.randn(chunk.shape, device=device, generator=generator)
        t = torch.rand(len(idx), device=device, generator=generator)
        x_t = (1 - t)[:, None, None] * noise + t[:, None, None] * chunk
        task = tasks_t[idx_t]
        if training and config.task_dropout > 0:
            drop = torch.rand(len(idx), device=device, generator=generator) < config.task_dropout
            task = torch.where(drop, torch.zeros_like(task), task)
        ind = None
        if ind_t is not None:
            ind = ind_t[idx_t]
            if training and config.indicator_dropout > 0:
                drop = torch.rand(len(idx), device=device, generator=generator) < config.indicator_dropout
                ind = torch.where(drop, torch.full_like(ind, INDICATOR_UNKNOWN), ind)
        ims = None
        if images_t:
            ims = {c: a[idx_t] for c, a in images_t.items()}
            if training and config.augment:
                ims = {c: random_shift(x, generator=generator) for c, x in ims.items()}
        cond = policy.condition(states[idx_t], task, ind, images=ims)
        pred = policy.velocity(x_t.flatten(1), t, cond).view_as(chunk)
        return masked_flow_loss(pred, chunk - noise, torch.from_numpy(valid).to(device),
                                w_t[idx_t] if training else None)

    # A fixed validation set (up to 4096 chunks of the held-out episodes) and fixed noise.
    val_frames = np.flatnonzero(~is_train)
    if val_frames.size > 4096:
        val_frames = np.sort(np.random.default_rng(config.seed + 3).choice(val_frames, 4096, replace=False))

    def validate() -> float | None:
        if val_frames.size == 0:
            return None
        policy.eval()
        g = torch.Generator(device=device)
        g.manual_seed(config.seed + 4)
        parts = []
        with torch.no_grad():
            for i in range(0, val_frames.size, 1024):
                part = val_frames[i:i + 1024]
                parts.append((batch_loss(part, g, training=False)[1]["policy/unweighted_flow_loss"], len(part)))
        policy.train()
        losses = torch.stack([x for x, _ in parts]).tolist()
        return sum(x * n for x, (_, n) in zip(losses, parts)) / val_frames.size

    # ---- write into a temporary sibling, renamed into place at the end
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out_dir)
    try:
        log = open(tmp / S.POLICY_LOG_FILE, "w")
        from ..memory import keep_freed_memory

        keep_freed_memory()  # no page faults for the step's buffers (aloe_cli.memory)
        t0 = time.perf_counter()
        running, val_loss, best_val = [], None, None  # the flow losses since the last logged row
        info: dict = {}
        for step in range(config.steps):
            for group in opt.param_groups:
                group["lr"] = config.lr * _lr_factor(step, config)
            idx = pool[rng.integers(0, pool.size, size=config.batch_size)]
            loss, info = batch_loss(idx, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
            opt.step()
            running.append(info["policy/flow_loss"])
            done = step + 1
            if os.environ.get("ALOE_CRASH_AT") == f"policy-step-{done}":  # fault injection for the tests
                os._exit(137)
            evaluate = done % config.eval_every == 0 or done == config.steps
            if evaluate:
                val_loss = validate()
                if val_loss is not None:
                    best_val = val_loss if best_val is None else min(best_val, val_loss)
            if done % config.log_every == 0 or done == config.steps or evaluate:
                row = {"step": done, "policy/flow_loss": sum(torch.stack(running).tolist()) / len(running),
                       "policy/grad_norm": float(grad_norm), "policy/lr": opt.param_groups[0]["lr"],
                       "time_s": round(time.perf_counter() - t0, 3)}
                if evaluate and val_loss is not None:
                    row["val/flow_loss"] = val_loss
                log.write(json.dumps(row) + "\n")
                log.flush()
                info = dict(row)
                running = []
                if progress is not None:
                    progress(done, config.steps, info)
        elapsed = time.perf_counter() - t0
        log.close()
        policy.eval()
        resolved = dataclasses.replace(config, device=device)
        policy.config = resolved
        summary = {
            "out": str(out_dir),
            "steps": config.steps,
            "chunk_size": H,
            "state_dim": D,
            "action_dim": A,
            "train_episodes": int(train_eps.size),
            "val_episodes": int(val_eps.size),
            "train_chunks": int(pool.size),
            "zero_weight_chunks": int((is_train & (w <= 0)).sum()),
            "weighted": weights is not None,
            "advantage_conditioning": bool(config.advantage_conditioning),
            "final_train_loss": info.get("policy/flow_loss"),
            "final_val_loss": val_loss,
            "best_val_loss": best_val,
            "time_s": round(elapsed, 3),
            "steps_per_s": round(config.steps / max(elapsed, 1e-9), 1),
            "device": device,
            "store_fingerprint": store.fingerprint,
            "init_from": None if init_from is None else str(init_from),
        }
        policy.save(tmp, extra={
            "store": {"path": str(store.root), "fingerprint": store.fingerprint,
                      "episodes": E, "frames": n_frames},
            "training": {k: summary[k] for k in ("steps", "train_episodes", "val_episodes", "train_chunks",
                                                 "zero_weight_chunks", "weighted", "final_train_loss",
                                                 "final_val_loss", "best_val_loss", "time_s", "init_from")}
                        | dict(meta or {}),
            **({"lineage": lineage} if lineage is not None else {}),
        })
        (tmp / S.POLICY_SPLIT_FILE).write_text(json.dumps({
            "train": [frames.episode_ids[i] for i in train_eps],
            "val": [frames.episode_ids[i] for i in val_eps]}, indent=1) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir) if out_dir.is_dir() else out_dir.unlink()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
