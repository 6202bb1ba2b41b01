"""ALOHA / ACT: a folder of ``episode_N.hdf5`` files, one episode each.

Layout (tonyzhaozh/act record_sim_episodes.py, tonyzhaozh/aloha record_episodes.py):
root attr ``sim``; ``/observations/qpos`` and ``/observations/qvel`` (T, 14), real robots
also ``/observations/effort``; ``/action`` (T, 14); ``/observations/images/<cam>`` uint8
(T, H, W, 3). Mobile-ALOHA: root attr ``compress``, JPEG bytes zero-padded to
(T, max_len) with ``/compress_len`` (n_cams, T; rows in the recorder's camera order, which the
file does not keep, so each frame's length is read from its bytes), and ``/base_action`` (T, 2).
No reward or success is stored: outcomes come from ``--success`` or ``--labels``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..episode import Episode
from ..errors import BadInput
from . import ReadOptions, Source, iter_files
from . import _hdf5 as H
from ._images import encode_frames, jpeg_passthrough

JOINT_NAMES = [f"left_{n}" for n in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")] + \
    ["left_gripper"] + \
    [f"right_{n}" for n in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")] + \
    ["right_gripper"]

_EPISODE = re.compile(r"episode_(\d+)\.hdf5$")


class AlohaReader:
    name = "aloha"
    reads = frozenset({'images', 'image_size'})  # the ReadOptions it uses

    def _files(self, path: Path) -> list[Path]:
        if path.is_file():
            return [path]
        return [p for p in iter_files(path, "*.hdf5") if _EPISODE.search(p.name)]

    def detect(self, path: Path) -> bool:
        files = self._files(path) if path.exists() else []
        if not files or not _EPISODE.search(files[0].name):
            return False
        import h5py

        try:
            with h5py.File(files[0], "r") as f:
                return "observations/qpos" in f and "action" in f
        except H.H5_ERRORS:
            return False

    def read(self, path: Path, options: ReadOptions) -> Source:
        files = self._files(path)
        if not files:
            raise BadInput("no episode_N.hdf5 files found", path)
        return Source(episodes=self._episodes(files, options), fps=50.0,
                      names={"observation.state": JOINT_NAMES, "action": JOINT_NAMES})

    def _episodes(self, files: list[Path], options: ReadOptions):
        for i, file in enumerate(files):
            m = _EPISODE.search(file.name)
            with H.open_file(file) as f:
                state = _numbers(f, file, "observations/qpos")
                action = _numbers(f, file, "action")
                extras = {}
                for key, col in (("observations/qvel", "observation.qvel"),
                                 ("observations/effort", "observation.effort"),
                                 ("base_action", "observation.base_action")):
                    a = H.dataset(f, key, file, key, required=False)
                    if a is not None:
                        extras[col] = H.numeric(a, file, key)
                images = {}
                if options.images == "keep":
                    group = H.get(f, "observations/images", file, "observations/images", "group", required=False)
                    if group is not None:
                        images = _images(f, group, file, options)
                yield Episode(
                    state=state, action=action, source_key=file.name,
                    source_index=int(m.group(1)) if m else i,
                    extras=extras, images=images)


def _dataset(f, file: Path, key: str) -> np.ndarray:
    return H.dataset(f, key, file, key)


def _numbers(f, file: Path, key: str) -> np.ndarray:
    return H.numeric(H.dataset(f, key, file, key), file, key)


def _jpeg_lengths(data: np.ndarray, file: Path, field: str) -> np.ndarray:
    """Each frame's JPEG length in zero-padded (T, max_len) bytes: up to its last non-zero byte, which
    must end the JPEG's end-of-image marker (FF D9). ALOHA's own loaders decode the padded bytes so;
    `compress_len` holds the same lengths, but in the recorder's camera order, which the file does not keep."""
    nonzero = data != 0
    n = data.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    rows = np.arange(len(data))
    ends = nonzero.any(1) & (n >= 2)
    ends[ends] = (data[rows[ends], n[ends] - 2] == 0xFF) & (data[rows[ends], n[ends] - 1] == 0xD9)
    if not ends.all():
        t = int(np.flatnonzero(~ends)[0])
        raise BadInput(f"frame {t} is not a zero-padded JPEG (no end-of-image marker FF D9 before the padding)",
                       file, field)
    return n


def _images(f, group, file: Path, options: ReadOptions) -> dict[str, list[bytes]]:
    with H.guard(file, "observations/images"):
        cams = sorted(group.keys())
    flag = np.asarray(H.attr(f, "compress", file, "attrs[compress]", False))
    if flag.size != 1 or flag.dtype.kind not in "biu":
        raise BadInput(f"expected a boolean, got {flag.dtype} {flag.shape}", file, "attrs[compress]")
    compressed = bool(flag.reshape(-1)[0])
    lengths = None
    if compressed and cams:  # checked for what it is, not used to cut the frames (_jpeg_lengths)
        lengths = H.dataset(f, "compress_len", file, "compress_len", required=False)
        if lengths is not None:
            lengths = H.numeric(lengths, file, "compress_len")
            H.check_finite(lengths, file, "compress_len")
    out = {}
    for cam in cams:
        field = f"observations/images/{cam}"
        data = _dataset(f, file, field)
        col = f"observation.images.{cam}"
        if compressed:
            if data.ndim != 2 or data.dtype != np.uint8:
                raise BadInput(f"expected zero-padded JPEG bytes uint8 (T, max_len), got {data.dtype} {data.shape}",
                               file, field)
            T = data.shape[0]
            if lengths is not None:
                if lengths.ndim != 2 or lengths.shape[0] < len(cams) or lengths.shape[1] != T:
                    raise BadInput(f"expected shape ({len(cams)}, {T}) (cameras, frames), got {lengths.shape}", file,
                                   "compress_len")
                if (lengths < 0).any() or (lengths > data.shape[1]).any() or (lengths != np.round(lengths)).any():
                    raise BadInput(f"holds lengths outside 0..{data.shape[1]}", file, "compress_len")
            n = _jpeg_lengths(data, file, field)
            frames = [bytes(data[t, : n[t]]) for t in range(T)]
            out[col] = jpeg_passthrough(frames, options.image_size, file, col)
        else:
            if data.ndim != 4 or data.dtype != np.uint8 or data.shape[-1] not in (1, 3, 4) or 0 in data.shape[1:3]:
                raise BadInput(f"expected uint8 (T, H, W, 3), got {data.dtype} {data.shape}", file, field)
            out[col] = encode_frames(data[..., 0] if data.shape[-1] == 1 else data, options.image_size)
    return out


READER = AlohaReader()
