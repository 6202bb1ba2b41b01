"""ALOHA / ACT: a folder of ``episode_N.hdf5`` files, one episode each.

Layout (tonyzhaozh/act record_sim_episodes.py, tonyzhaozh/aloha record_episodes.py):
root attr ``sim``; ``/observations/qpos`` and ``/observations/qvel`` (T, 14), real robots
also ``/observations/effort``; ``/action`` (T, 14); ``/observations/images/<cam>`` uint8
(T, H, W, 3). Mobile-ALOHA: root attr ``compress``, JPEG bytes zero-padded to
(T, max_len) with ``/compress_len`` (n_cams, T), and ``/base_action`` (T, 2).
No reward or success is stored: outcomes come from ``--success`` or ``--labels``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..episode import Episode
from ..errors import BadInput
from . import ReadOptions, Source, iter_files
from ._images import encode_frames, jpeg_passthrough

JOINT_NAMES = [f"left_{n}" for n in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")] + \
    ["left_gripper"] + \
    [f"right_{n}" for n in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")] + \
    ["right_gripper"]

_EPISODE = re.compile(r"episode_(\d+)\.hdf5$")


class AlohaReader:
    name = "aloha"

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
        except OSError:
            return False

    def read(self, path: Path, options: ReadOptions) -> Source:
        files = self._files(path)
        if not files:
            raise BadInput("no episode_N.hdf5 files found", path)
        return Source(episodes=self._episodes(files, options), fps=50.0,
                      names={"observation.state": JOINT_NAMES, "action": JOINT_NAMES})

    def _episodes(self, files: list[Path], options: ReadOptions):
        import h5py

        for i, file in enumerate(files):
            m = _EPISODE.search(file.name)
            try:
                f = h5py.File(file, "r")
            except OSError as e:
                raise BadInput(f"cannot be opened as HDF5: {e}", file) from None
            with f:
                state = _dataset(f, file, "observations/qpos")
                action = _dataset(f, file, "action")
                extras = {}
                for key, col in (("observations/qvel", "observation.qvel"),
                                 ("observations/effort", "observation.effort"),
                                 ("base_action", "observation.base_action")):
                    if key in f:
                        extras[col] = _dataset(f, file, key)
                images = {}
                if options.images == "keep" and "observations/images" in f:
                    images = _images(f, file, options)
                yield Episode(
                    state=state, action=action, source_key=file.name,
                    source_index=int(m.group(1)) if m else i,
                    extras=extras, images=images)


def _dataset(f, file: Path, key: str) -> np.ndarray:
    if key not in f:
        raise BadInput("missing dataset", file, key)
    try:
        return np.asarray(f[key][()])
    except (OSError, TypeError, ValueError) as e:
        raise BadInput(f"cannot be read: {e}", file, key) from None


def _images(f, file: Path, options: ReadOptions) -> dict[str, list[bytes]]:
    group = f["observations/images"]
    cams = sorted(group.keys())
    compressed = bool(f.attrs.get("compress", False))
    out = {}
    for c, cam in enumerate(cams):
        data = _dataset(f, file, f"observations/images/{cam}")
        col = f"observation.images.{cam}"
        if compressed:
            if "compress_len" not in f:
                raise BadInput("compress=True but no compress_len dataset", file, "compress_len")
            lengths = np.asarray(f["compress_len"][()])[c].astype(int)
            frames = [bytes(data[t, : lengths[t]]) for t in range(data.shape[0])]
            out[col] = jpeg_passthrough(frames, options.image_size, file, col)
        else:
            if data.ndim != 4 or data.dtype != np.uint8:
                raise BadInput(f"expected uint8 (T, H, W, 3), got {data.dtype} {data.shape}", file,
                               f"observations/images/{cam}")
            out[col] = encode_frames(data, options.image_size)
    return out


READER = AlohaReader()
