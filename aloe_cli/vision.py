"""Camera frames as model inputs: the `--obs` spec, decoding, random-shift augmentation, a conv encoder.

- ``--obs state,images.<cam>,<column>``: which observation columns a critic or the built-in
  policy reads. ``state`` is ``observation.state``; ``images.<cam>`` is the camera column
  ``observation.images.<cam>`` (encoded PNG/JPEG bytes in the store); any other name is a
  numeric vector column ``observation.<name>`` (e.g. embeddings a frozen vision model
  produced elsewhere), concatenated to the state features. ``time`` (critics only) is the
  frame's index in its episode divided by the task's typical length (95th percentile): where a
  time-out ends an episode as a failure, the value of a state depends on the time left, and a
  critic without it averages over the time it cannot see.
- Decoding: a camera's frames are decoded ONCE, at load time, into one uint8 (N, H, W, 3)
  array (64x64x3 = 12 KB per frame: 100k frames = 1.2 GB). Training batches index that array;
  nothing is decoded per step.
- Augmentation: DrQ's random shift (replicate-pad 4 pixels, crop back at a random offset per
  sample), one gather for the whole batch.
- Encoder: a small conv net trained from scratch (3 convs, flatten, Linear, LayerNorm) -> 64 numbers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import schema as S
from .errors import BadInput

FEATURE_DIM = 64  # output size of the conv encoder per camera
SHIFT_PAD = 4  # random-shift padding in pixels (DrQ)
TIME = "time"  # --obs name of the time input (critics only): frame index / the task's typical length


@dataclass(frozen=True)
class ObsSpec:
    """Parsed ``--obs``: full column names of the state, cameras and extra numeric columns."""

    state: bool = True  # observation.state is an input
    images: tuple[str, ...] = ()  # camera columns (observation.images.<cam>)
    extras: tuple[str, ...] = field(default=())  # numeric vector columns concatenated to the state
    time: bool = False  # the frame's index in its episode / the task's typical length (critic only)

    @property
    def columns(self) -> list[str]:
        """The store columns read (``time`` is computed from the frame index, not stored)."""
        return ([S.OBS_STATE] if self.state else []) + list(self.extras) + list(self.images)

    def __str__(self) -> str:
        parts = (["state"] if self.state else []) + [c[len(S.OBS_PREFIX):] for c in self.extras + self.images]
        return ",".join(parts + (["time"] if self.time else []))


def parse_obs(spec: str | None, field_name: str = "--obs") -> ObsSpec:
    """``"state,images.top,clip"`` -> ObsSpec(True, ("observation.images.top",), ("observation.clip",)).

    Names may be given with or without the ``observation.`` prefix. The state is always read
    (the critic and policy normalise it), so ``state`` may be left out only when other inputs
    are named; a spec without ``state`` still keeps it (it is cheap and carries the gripper).
    """
    if spec is None or not str(spec).strip():
        return ObsSpec()
    images: list[str] = []
    extras: list[str] = []
    time = False
    for raw in str(spec).split(","):
        name = raw.strip()
        if not name:
            raise BadInput(f"empty name in {spec!r}", field=field_name)
        if name.startswith(S.OBS_PREFIX):
            name = name[len(S.OBS_PREFIX):]
        if name == "state":
            continue
        if name == TIME:
            if time:
                raise BadInput(f"{raw.strip()!r} is named twice", field=field_name)
            time = True
            continue
        full = S.OBS_PREFIX + name
        if name.startswith("images."):
            if name == "images.":
                raise BadInput(f"{raw!r} names no camera (use images.<cam>)", field=field_name)
            target = images
        else:
            target = extras
        if full in images or full in extras:
            raise BadInput(f"{raw.strip()!r} is named twice", field=field_name)
        target.append(full)
    return ObsSpec(True, tuple(images), tuple(extras), time)


def check_obs(spec: ObsSpec, store, field_name: str = "--obs") -> None:
    """Every named column exists in the store with the right kind (camera or numeric vector)."""
    cams = set(store.image_columns)
    extras = store.extra_columns
    for c in spec.images:
        if c not in cams:
            have = ", ".join(x[len(S.OBS_PREFIX):] for x in sorted(cams)) or "none"
            raise BadInput(f"the store has no camera {c[len(S.OBS_IMAGES_PREFIX):]!r} (cameras: {have})",
                           store.root, field_name)
    for c in spec.extras:
        if c not in extras:
            have = ", ".join(x[len(S.OBS_PREFIX):] for x in sorted(extras)) or "none"
            raise BadInput(f"the store has no numeric column {c!r} (extra columns: {have})", store.root, field_name)


# --------------------------------------------------------------------------- decoding
def decode_one(b: bytes) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(b))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def frame_names(fa) -> Callable[[int], str]:
    """Row i of a store's concatenated frames (`Store.load_frames`) -> "episode <id> frame t"."""
    def name(i: int) -> str:
        e = int(np.searchsorted(fa.starts, i, side="right")) - 1
        return f"episode {fa.episode_ids[e]} frame {i - int(fa.starts[e])}"

    return name


def decode_batch(frames, where=None, field_name: str | None = None,
                 name: Callable[[int], str] | None = None) -> np.ndarray:
    """Encoded frames (a sequence of bytes) -> uint8 (B, H, W, 3). Arrays pass through unchanged.

    Every frame must decode and have the first frame's size; otherwise BadInput names the frame (as `name(i)`
    says, e.g. `frame_names`; "frame i" by default).
    """
    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4:
        return frames
    n = len(frames)
    if n == 0:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    name = name or (lambda i: f"frame {i}")
    out = None
    for i, b in enumerate(frames):
        if b is None:
            raise BadInput(f"{name(i)} has no image", where, field_name)
        try:
            a = decode_one(b)
        except Exception as e:  # PIL raises many types for bad bytes
            raise BadInput(f"{name(i)} is not a decodable image: {e}", where, field_name) from None
        if out is None:
            out = np.empty((n,) + a.shape, dtype=np.uint8)
            first = name(i)
        elif a.shape != out.shape[1:]:
            raise BadInput(f"{name(i)} is {a.shape[1]}x{a.shape[0]} but {first} is {out.shape[2]}x{out.shape[1]}; "
                           "re-ingest with --image-size WxH", where, field_name)
        out[i] = a
    return out


def load_images(store, column: str, episode_ids) -> np.ndarray:
    """Decode one camera column of the chosen episodes once: uint8 (N, H, W, 3) in store order."""
    fa = store.load_frames([column], episode_ids)
    return decode_batch(fa.columns[column], store.root, column, frame_names(fa))


def obs_images(observations: dict, spec: ObsSpec) -> dict[str, np.ndarray]:
    """The cameras of a policy/critic observation dict as uint8 (B, H, W, 3) (bytes are decoded)."""
    out = {}
    for c in spec.images:
        if c not in observations:
            raise BadInput(f"the observation has no {c!r} (the model was trained with --obs {spec})", field=c)
        v = observations[c]
        if type(v).__module__.startswith("torch"):  # a uint8 tensor already
            out[c] = v
            continue
        if isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim == 3:
            v = v[None]
        out[c] = decode_batch(v if not isinstance(v, (bytes, bytearray)) else [v], field_name=c)
    return out


# --------------------------------------------------------------------------- augmentation
def random_shift(x, pad: int = SHIFT_PAD, generator=None):
    """DrQ random shift: x (B, H, W, C) (any dtype) -> same shape, each sample translated by up to
    `pad` pixels (edges replicated). One gather for the whole batch."""
    import torch

    B, H, W, C = x.shape
    if pad <= 0:
        return x
    xp = torch.nn.functional.pad(x.permute(0, 3, 1, 2).float(), (pad, pad, pad, pad), mode="replicate")
    xp = xp.to(x.dtype).permute(0, 2, 3, 1)  # (B, H+2p, W+2p, C)
    sy = torch.randint(0, 2 * pad + 1, (B,), generator=generator, device=x.device)
    sx = torch.randint(0, 2 * pad + 1, (B,), generator=generator, device=x.device)
    rows = sy[:, None] + torch.arange(H, device=x.device)[None]  # (B, H)
    cols = sx[:, None] + torch.arange(W, device=x.device)[None]  # (B, W)
    b = torch.arange(B, device=x.device)[:, None, None]
    return xp[b, rows[:, :, None], cols[:, None, :]]


# --------------------------------------------------------------------------- encoder
def conv_encoder(height: int, width: int, feature_dim: int = FEATURE_DIM, channels: int = 32):
    """A small conv encoder trained from scratch: uint8 (B, H, W, 3) -> (B, feature_dim)."""
    import torch
    import torch.nn as nn

    class ConvEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.height, self.width = height, width
            self.convs = nn.Sequential(
                nn.Conv2d(3, channels, 3, stride=2), nn.ReLU(),
                nn.Conv2d(channels, channels, 3, stride=2 if min(height, width) >= 32 else 1), nn.ReLU(),
                nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(),
            )
            with torch.no_grad():
                n = self.convs(torch.zeros(1, 3, height, width)).numel()
            self.out = nn.Sequential(nn.Linear(n, feature_dim), nn.LayerNorm(feature_dim))

        def forward(self, img: torch.Tensor) -> torch.Tensor:
            x = img.permute(0, 3, 1, 2).float() / 255.0 - 0.5
            return self.out(self.convs(x).flatten(1))

    return ConvEncoder()


def image_encoders(cams: dict[str, tuple[int, int]], feature_dim: int = FEATURE_DIM):
    """One conv encoder per camera, keyed by a safe module name; cams maps column -> (H, W)."""
    import torch.nn as nn

    return nn.ModuleDict({module_key(c): conv_encoder(h, w, feature_dim) for c, (h, w) in cams.items()})


def module_key(column: str) -> str:
    return column[len(S.OBS_IMAGES_PREFIX):].replace(".", "_") if column.startswith(S.OBS_IMAGES_PREFIX) \
        else column.replace(".", "_")
