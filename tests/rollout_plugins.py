"""Small real chunk policies for the rollout tests (loadable as ``--policy rollout_plugins:<factory>``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


class FixedChunkPolicy:
    """Always answers the same chunk; optionally slow (per-call delays), and writes a marker file
    after `after` calls (so a test knows the loop is mid-episode)."""

    def __init__(self, chunk, delays=(), sleep: float = 0.0, marker: str | None = None, after: int | None = None,
                 closed: str | None = None):
        self.closed = closed  # a file `close()` writes, so a test sees the caller closed the policy
        self.chunk = np.asarray(chunk, dtype=np.float32)
        self.chunk_size, self.action_dim = self.chunk.shape
        self.delays = list(delays)
        self.sleep = sleep
        self.marker = marker
        self.after = after
        self.calls = 0
        self.seen: list[dict] = []

    def sample(self, observations: dict, num_samples: int) -> np.ndarray:
        delay = self.delays[self.calls] if self.calls < len(self.delays) else self.sleep
        self.calls += 1
        self.seen.append(observations)
        if delay:
            time.sleep(delay)
        if self.marker and self.after is not None and self.calls == self.after:
            Path(self.marker).write_text(str(self.calls))
        B = len(observations["observation.state"])
        return np.broadcast_to(self.chunk, (B, num_samples, *self.chunk.shape)).copy()


    def close(self) -> None:
        if self.closed:
            Path(self.closed).write_text("closed")


def constant(value: float = 0.0, action_dim: int = 4, chunk_size: int = 1, sleep: float = 0.0,
             marker: str | None = None, after: int | None = None, closed: str | None = None) -> FixedChunkPolicy:
    """Every action is `value` in every dimension (0: a Meta-World arm that stays put)."""
    return FixedChunkPolicy(np.full((chunk_size, action_dim), value), sleep=sleep, marker=marker, after=after,
                            closed=closed)


def blind_sim(seed: int = 0, max_steps: int = 150, **kw):
    """A third-party driver factory (``--robot rollout_plugins:blind_sim``): the simulator playing a
    robot that cannot judge its own outcome."""
    from aloe_cli.robot.sim import SimRobot

    robot = SimRobot("drawer-open-v3", seed=seed, max_steps=max_steps, report_success=False)
    robot.name = "rollout_plugins:blind_sim"
    return robot
