"""The chunk critic network: Q_m(o_t, a_{t:t+H}) for m = 1..M over a shared observation encoder.

- Observation encoder: LayerNorm MLP over the normalised state, run once per state.
- Chunk: the normalised actions flattened (``mlp``), or encoded by a small transformer over
  the H action tokens (``transformer``). The padding mask is deliberately not an input: a
  chunk that ends an episode is padded with its last action, so it looks like the full chunk
  a policy would predict there (whose actions past the end do not matter). With the mask as
  an input, a policy's unpadded chunk near an episode's end is never seen in training, and
  the error of that unseen input flows back through every bootstrap (measured on the chain
  world: 5-8% errors at every other state).
- M heads: LayerNorm MLPs evaluated together as batched matrix products (one
  ``baddbmm`` per layer for all heads). The first head layer is split into its state part
  (computed once per state) and its chunk part, so scoring K chunks per state costs little
  more than one.
- Output: one number per head (``scalar``) or logits over a fixed value support
  (``hlgauss``, trained with the HL-Gauss cross-entropy).
Normalisation statistics live in buffers, so the saved weights are all a scorer needs.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def aggregate(q: torch.Tensor, how: str, std_coef: float = 1.0) -> torch.Tensor:
    """Combine the last (head) dimension: min, mean or mean - c * std."""
    if how == "min":
        return q.min(-1).values
    if how == "mean":
        return q.mean(-1)
    if how == "mean-std":
        return q.mean(-1) - std_coef * q.std(-1, unbiased=False)
    raise ValueError(how)


def hl_gauss_probs(y: torch.Tensor, lo: float, hi: float, bins: int) -> torch.Tensor:
    """HL-Gauss target: the mass of N(y, sigma^2) in each of `bins` equal bins over [lo, hi]
    (sigma = 0.75 bin widths), renormalised to the support. y: (...,) -> (..., bins)."""
    width = (hi - lo) / bins
    sigma = 0.75 * width
    edges = torch.linspace(lo, hi, bins + 1, device=y.device, dtype=y.dtype)
    y = y.clamp(lo, hi)[..., None]
    cdf = torch.special.ndtr((edges - y) / sigma)
    mass = cdf[..., 1:] - cdf[..., :-1]
    return mass / (cdf[..., -1:] - cdf[..., :1]).clamp_min(1e-12)


class EnsembleLinear(nn.Module):
    """M independent linear layers applied at once: (M, N, fan_in) -> (M, N, fan_out)."""

    def __init__(self, members: int, fan_in: int, fan_out: int, bias: bool = True):
        super().__init__()
        bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation, per member
        self.weight = nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dim with a separate affine per ensemble member."""

    def __init__(self, members: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


def _mlp(fan_in: int, hidden: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(fan_in if i == 0 else hidden, hidden), nn.LayerNorm(hidden), nn.ReLU()]
    return nn.Sequential(*mods)


class ChunkTransformer(nn.Module):
    """A small transformer over the H action tokens of a chunk; mean-pooled to `out` numbers."""

    def __init__(self, action_dim: int, chunk_size: int, out: int, d: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        self.inp = nn.Linear(action_dim, d)
        self.pos = nn.Parameter(torch.zeros(1, chunk_size, d))
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=2 * d, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, out))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        B, N, H, A = a.shape
        x = self.inp(a.reshape(B * N, H, A)) + self.pos
        return self.out(self.enc(x).mean(1)).reshape(B, N, -1)


class CriticNet(nn.Module):
    """Q heads over (state, chunk). `forward` returns raw outputs (B, N, M, out); `values`
    decodes them to Q in reward units (B, N, M)."""

    def __init__(self, state_dim: int, action_dim: int, chunk_size: int, ensemble: int = 2, hidden: int = 256,
                 layers: int = 2, head: str = "scalar", bins: int = 101, chunk_encoder: str = "mlp",
                 support: tuple[float, float] = (-1.0, 1.0), images: dict | None = None):
        super().__init__()
        # Cameras (column -> (h, w)): one small conv encoder each, its features joined to the state's.
        self.cameras = list(images or {})
        self.vision = None
        vis_dim = 0
        if self.cameras:
            from ..vision import FEATURE_DIM, image_encoders

            self.vision = image_encoders(images)
            vis_dim = FEATURE_DIM * len(self.cameras)
        self.state_dim, self.action_dim, self.chunk_size = state_dim, action_dim, chunk_size
        self.ensemble, self.head = ensemble, head
        self.out_dim = bins if head == "hlgauss" else 1
        self.obs = _mlp(state_dim + vis_dim, hidden, layers)
        if chunk_encoder == "transformer":
            self.chunk = ChunkTransformer(action_dim, chunk_size, hidden)
            chunk_feat = hidden
        else:
            self.chunk = None
            chunk_feat = chunk_size * action_dim
        self.first_obs = EnsembleLinear(ensemble, hidden, hidden)
        self.first_chunk = EnsembleLinear(ensemble, chunk_feat, hidden, bias=False)
        trunk: list[nn.Module] = [EnsembleLayerNorm(ensemble, hidden), nn.ReLU()]
        for _ in range(layers - 1):
            trunk += [EnsembleLinear(ensemble, hidden, hidden), EnsembleLayerNorm(ensemble, hidden), nn.ReLU()]
        trunk.append(EnsembleLinear(ensemble, hidden, self.out_dim))
        self.trunk = nn.Sequential(*trunk)
        for name, size in (("state_mean", state_dim), ("action_mean", action_dim)):
            self.register_buffer(name, torch.zeros(size))
        for name, size in (("state_std", state_dim), ("action_std", action_dim)):
            self.register_buffer(name, torch.ones(size))
        self.register_buffer("ret_shift", torch.zeros(()))
        self.register_buffer("ret_scale", torch.ones(()))
        # HL-Gauss support in normalised units: bin centres over [lo, hi].
        lo, hi = support
        width = (hi - lo) / bins
        self.register_buffer("support", torch.tensor([lo, hi], dtype=torch.float32))
        self.register_buffer("centres", torch.linspace(lo + width / 2, hi - width / 2, bins))
        self._bounds: tuple[float, float] | None = None  # `support` as Python floats, read once (no GPU sync)
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_bounds", None))

    def support_bounds(self) -> tuple[float, float]:
        """The HL-Gauss support [lo, hi] in normalised units, as Python floats."""
        if self._bounds is None:
            lo, hi = self.support.tolist()
            self._bounds = (lo, hi)
        return self._bounds

    def encode_obs(self, state: torch.Tensor, images: dict | None = None) -> torch.Tensor:
        """The observation encoding (B, hidden): normalised state, joined with camera features."""
        x = (state - self.state_mean) / self.state_std
        if self.vision is not None:
            from ..vision import module_key

            if images is None or any(c not in images for c in self.cameras):
                raise ValueError(f"this critic needs camera frames {self.cameras}")
            x = torch.cat([x] + [self.vision[module_key(c)](images[c]) for c in self.cameras], -1)
        return self.obs(x)

    def forward(self, state: torch.Tensor, chunks: torch.Tensor, images: dict | None = None) -> torch.Tensor:
        """state (B, D), chunks (B, N, H, A), images {camera: uint8 (B, h, w, 3)} -> raw outputs (B, N, M, out)."""
        B, N = chunks.shape[:2]
        M = self.ensemble
        e = self.encode_obs(state, images)  # (B, hidden)
        a = (chunks - self.action_mean) / self.action_std
        c = self.chunk(a) if self.chunk is not None else a.flatten(2)  # (B, N, F)
        ho = self.first_obs(e[None].expand(M, B, -1))  # (M, B, hidden): once per state
        hc = self.first_chunk(c.reshape(1, B * N, -1).expand(M, -1, -1))  # (M, B*N, hidden)
        h = (hc.reshape(M, B, N, -1) + ho[:, :, None]).reshape(M, B * N, -1)
        out = self.trunk(h)  # (M, B*N, out)
        return out.reshape(M, B, N, self.out_dim).permute(1, 2, 0, 3)

    def normalized(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs (..., out) -> Q in normalised units (...)."""
        if self.head == "hlgauss":
            return torch.softmax(raw, -1) @ self.centres
        return raw[..., 0]

    def values(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs (..., out) -> Q in reward units (...)."""
        return self.normalized(raw) * self.ret_scale + self.ret_shift

    def normalize_value(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.ret_shift) / self.ret_scale

    def q_heads(self, state: torch.Tensor, chunks: torch.Tensor, images: dict | None = None) -> torch.Tensor:
        """Q of every head in reward units: (B, N, M)."""
        return self.values(self(state, chunks, images))
