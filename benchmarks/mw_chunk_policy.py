"""A noisy scripted-expert chunk policy for Meta-World (an `aloe` plugin: `mw_chunk_policy:make`).

sample(o) -> K chunks: the scripted expert's action at o, repeated H times (executed open loop),
plus independent Gaussian noise N(0, sigma^2) on every action, clipped to [-1, 1].
"""

from __future__ import annotations

import numpy as np


class NoisyExpertChunks:
    def __init__(self, env_name: str = "drawer-open-v3", sigma: float = 0.0, chunk_size: int = 5, seed: int = 0):
        from metaworld.policies import ENV_POLICY_MAP

        self.expert = ENV_POLICY_MAP[env_name]()
        self.sigma = float(sigma)
        self.chunk_size = int(chunk_size)
        self.action_dim = 4
        self.rng = np.random.default_rng(seed)

    def sample(self, observations, num_samples):
        obs = np.asarray(observations["observation.state"], dtype=np.float64)
        base = np.stack([self.expert.get_action(o) for o in obs]).astype(np.float32)  # (B, A)
        out = np.repeat(np.repeat(base[:, None, None, :], num_samples, 1), self.chunk_size, 2)
        if self.sigma > 0:
            out = out + self.rng.normal(0.0, self.sigma, size=out.shape).astype(np.float32)
        return np.clip(out, -1.0, 1.0).astype(np.float32)


def make(env_name: str = "drawer-open-v3", sigma: float = 0.0, chunk_size: int = 5, seed: int = 0):
    return NoisyExpertChunks(env_name, sigma, chunk_size, seed)
