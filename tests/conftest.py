"""Shared fixtures: run the real CLI in-process, and write small episode files in each format."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


class Result:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.exit_code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self) -> str:
        return f"Result(exit={self.exit_code}, stdout={self.stdout[-2000:]!r}, stderr={self.stderr[-2000:]!r})"


@pytest.fixture
def cli():
    """Run `aloe ARGS...` in-process; returns exit code, stdout and stderr."""
    from aloe_cli.cli import app

    runner = CliRunner()

    def run(*args) -> Result:
        r = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return Result(r.exit_code, r.stdout, r.stderr)

    return run


def run_subprocess(*args, env: dict | None = None, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run `python -m aloe_cli ARGS...` in a child process (for signals, crashes, torchrun)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "aloe_cli", *map(str, args)], env=e, capture_output=True,
                          text=True, timeout=timeout, **kw)


def write_aloha_episode(path: Path, T: int = 20, seed: int = 0, sim: bool = True, cams=("top",),
                        effort: bool = False, compress: bool = False, base_action: bool = False,
                        image_hw=(12, 16)) -> dict:
    """One episode_N.hdf5 exactly as ACT's record_sim_episodes.py / ALOHA's record_episodes.py write it."""
    import h5py

    rng = np.random.default_rng(seed)
    data = {
        "qpos": rng.normal(size=(T, 14)),
        "qvel": rng.normal(size=(T, 14)),
        "action": rng.normal(size=(T, 14)),
        "images": {c: rng.integers(0, 255, size=(T, *image_hw, 3), dtype=np.uint8) for c in cams},
    }
    if effort:
        data["effort"] = rng.normal(size=(T, 14))
    if base_action:
        data["base_action"] = rng.normal(size=(T, 2))
    with h5py.File(path, "w", rdcc_nbytes=1024 ** 2 * 2) as root:
        root.attrs["sim"] = sim
        if compress:
            root.attrs["compress"] = True
        obs = root.create_group("observations")
        image = obs.create_group("images")
        if compress:
            from PIL import Image
            import io

            encoded = {}
            for c in cams:
                frames = []
                for t in range(T):
                    buf = io.BytesIO()
                    Image.fromarray(data["images"][c][t]).save(buf, format="JPEG", quality=50)
                    frames.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
                encoded[c] = frames
            max_len = max(len(f) for c in cams for f in encoded[c])
            compress_len = np.zeros((len(cams), T), dtype=np.float32)
            for ci, c in enumerate(cams):
                padded = np.zeros((T, max_len), dtype=np.uint8)
                for t, f in enumerate(encoded[c]):
                    padded[t, : len(f)] = f
                    compress_len[ci, t] = len(f)
                image.create_dataset(c, data=padded, chunks=(1, max_len))
            root.create_dataset("compress_len", data=compress_len)
            data["jpeg"] = {c: [bytes(f) for f in encoded[c]] for c in cams}
        else:
            for c in cams:
                image.create_dataset(c, data=data["images"][c], dtype="uint8", chunks=(1, *image_hw, 3))
        obs.create_dataset("qpos", data=data["qpos"])
        obs.create_dataset("qvel", data=data["qvel"])
        if effort:
            obs.create_dataset("effort", data=data["effort"])
        root.create_dataset("action", data=data["action"])
        if base_action:
            root.create_dataset("base_action", data=data["base_action"])
    return data


@pytest.fixture
def aloha_dir(tmp_path):
    """A folder of 3 ALOHA episodes; returns (folder, list of the arrays written)."""
    d = tmp_path / "aloha"
    d.mkdir()
    written = [write_aloha_episode(d / f"episode_{i}.hdf5", T=15 + i, seed=i) for i in range(3)]
    return d, written
