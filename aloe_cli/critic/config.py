"""The critic's configuration and the files of a critic directory."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..errors import BadInput, check_seed

# Files inside a critic directory (`aloe fit-critic --out CRITIC_DIR`).
CONFIG_FILE = "critic.json"  # everything needed to score: config, policy, reward, normalisation, store
WEIGHTS_FILE = "critic.safetensors"  # the network (normalisation buffers included)
METRICS_FILE = "metrics.jsonl"  # one JSON object per logged step, namespaced keys
CHECKPOINT_FILE = "checkpoint.pt"  # resumable training state (--resume)
SAMPLES_FILE = "policy_samples.rank{rank}.npy"  # cached policy chunks at bootstrap frames
SAMPLES_META = "policy_samples.rank{rank}.json"  # how many rows of the cache are filled

BOOTSTRAPS = ("policy", "data", "mc")
AGGREGATES = ("min", "mean", "mean-std")
HEADS = ("scalar", "hlgauss")
CHUNK_ENCODERS = ("mlp", "transformer")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class CriticConfig:
    """How `fit_critic` trains. Defaults were chosen by measurement (see the README)."""

    chunk_size: int | None = None  # H actions per chunk; None = the policy's chunk_size
    bootstrap: str = "policy"  # policy (ALOE: the evaluated policy's chunks) | data (chunked SARSA) | mc (return-to-go)
    reward: str = "step-penalty"  # step-penalty | sparse | logged (see aloe_cli.rewards)
    t_norm: float | None = None  # step-penalty T_norm in frames; None = 95th percentile of lengths per task
    c_fail: float | None = None  # step-penalty failure cost in frames; None = T_norm
    gamma: float = 0.99  # discount per frame
    ensemble: int = 2  # M heads over the shared observation encoder
    aggregate: str = "mean"  # how heads combine in targets and scores: mean | min | mean-std (min: ~3x the error)
    std_coef: float = 1.0  # c in mean - c * std (aggregate mean-std)
    samples: int = 4  # K policy chunks per bootstrap state (1 is enough for a deterministic policy)
    steps: int = 10_000  # gradient steps (Meta-World, 150-step horizon, H = 5: converged by ~2-3k)
    batch_size: int = 256  # chunks per step (split across DDP processes)
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    tau: float = 0.05  # Polyak rate of the target networks per step (0.005 is still drifting at 4k steps)
    hidden: int = 256  # width of the encoder and head MLPs
    layers: int = 2  # hidden layers in the observation encoder and in each head
    head: str = "hlgauss"  # hlgauss (cross-entropy over value bins; half the error of scalar) | scalar (MSE)
    bins: int = 101  # HL-Gauss bins
    chunk_encoder: str = "mlp"  # mlp (the chunk flattened) | transformer (a small transformer over the chunk)
    normalize_returns: bool = True  # regress (Q - mean return) / std return instead of raw Q
    val_fraction: float = 0.1  # share of episodes held out for the validation TD error
    val_every: int = 500  # steps between validation passes
    log_every: int = 100  # steps between metric lines
    checkpoint_every: int = 1000  # steps between checkpoints (for --resume)
    seed: int = 0  # seeds the network, the split and every batch
    device: str = "auto"  # auto | cpu | cuda
    episodes_filter: str | None = None  # pandas query over the store's episodes table, e.g. "policy_id != 'human'"
    obs: str = "state"  # observation inputs: state[,images.<cam>][,<numeric column>] (see aloe_cli.vision)
    augment: bool = True  # random-shift camera frames in training (DrQ, 4 pixels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CriticConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def check(self) -> None:
        """Raise BadInput naming the option of the first invalid value."""
        choices = (("bootstrap", BOOTSTRAPS), ("aggregate", AGGREGATES), ("head", HEADS),
                   ("chunk_encoder", CHUNK_ENCODERS))
        for name, allowed in choices:
            value = getattr(self, name)
            if value not in allowed:
                raise BadInput(f"got {value!r}; choose one of {', '.join(allowed)}", field=_opt(name))
        gpu = isinstance(self.device, str) and self.device.startswith("cuda:") and self.device[5:].isdigit()
        if self.device not in DEVICES and not gpu:
            raise BadInput(f"got {self.device!r}; choose one of {', '.join(DEVICES)} or cuda:N", field="--device")
        positive = ("ensemble", "samples", "steps", "batch_size", "hidden", "bins", "val_every", "log_every",
                    "checkpoint_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise BadInput(f"must be at least 1, got {getattr(self, name)}", field=_opt(name))
        if self.chunk_size is not None and self.chunk_size < 1:
            raise BadInput(f"must be at least 1, got {self.chunk_size}", field="--chunk-size")
        if not 0.0 < self.gamma <= 1.0:
            raise BadInput(f"must be in (0, 1], got {self.gamma}", field="--gamma")
        if not 0.0 < self.tau <= 1.0:
            raise BadInput(f"must be in (0, 1], got {self.tau}", field="--tau")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise BadInput(f"must be a finite number > 0, got {self.lr}", field="--lr")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise BadInput(f"must be a number >= 0, got {self.weight_decay}", field="--weight-decay")
        if not (math.isfinite(self.std_coef) and self.std_coef >= 0):
            raise BadInput(f"must be a number >= 0, got {self.std_coef}", field="--std-coef")
        if not 0.0 <= self.val_fraction < 1.0:
            raise BadInput(f"must be in [0, 1), got {self.val_fraction}", field="--val-fraction")
        from ..vision import parse_obs

        parse_obs(self.obs)
        if self.layers < 1:
            raise BadInput(f"must be at least 1, got {self.layers}", field="--layers")
        check_seed(self.seed, 2 ** 63)


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")
