"""A chain world whose true Q is known in closed form, for the critic and scoring tests.

States s = 0..L, observed one-hot (D = L + 1). One action number a per frame; the agent
moves s' = min(s + round(a), L). Reaching L ends the episode with success (terminal); the
sparse reward is 1 on that frame. Episodes start at s0 uniform in 0..L-1 and are truncated
(outcome unknown) after T_max frames.

- Evaluated policy pi: always a = 1. From s it reaches L in n = L - s steps, so
  V^pi(s) = gamma^(n - 1).
- Behaviour beta: a = 1 with probability p, else a = 0. The number of frames to make n
  moves is negative-binomial, so V^beta(s) = E[gamma^(N - 1)] = (1/gamma) * (p gamma / (1 - (1-p) gamma))^n.
- A chunk c (H actions) from s: if it reaches L at its k-th action (0-based) Q = gamma^k,
  else Q = gamma^H V(s + moves), with V of whichever policy continues.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from aloe_cli.episode import Episode
from aloe_cli.store import Store

POLICY_MODULE = textwrap.dedent('''
    """A deterministic chain-world chunk policy: every action is `step`, or the chunk is
    `pattern` (comma-separated actions, e.g. "1,0")."""
    import numpy as np


    class ChainPolicy:
        def __init__(self, chunk_size=2, step=1.0, action_dim=1, pattern=None):
            self.chunk_size = int(chunk_size)
            self.action_dim = int(action_dim)
            if pattern is None:
                self.chunk = np.full(self.chunk_size, float(step), dtype=np.float32)
            else:
                self.chunk = np.array([float(x) for x in str(pattern).split(",")], dtype=np.float32)
                assert len(self.chunk) == self.chunk_size

        def sample(self, observations, num_samples):
            B = len(observations["observation.state"])
            assert observations["observation.state"].dtype == np.float32 and len(observations["task"]) == B
            out = np.empty((B, num_samples, self.chunk_size, self.action_dim), dtype=np.float32)
            out[:] = self.chunk[:, None]
            return out


    def make(chunk_size=2, step=1.0, action_dim=1, pattern=None):
        return ChainPolicy(chunk_size, step, action_dim, pattern)
''')


def write_policy_module(directory: Path, name: str = "chain_policy") -> str:
    """Write the plugin module into `directory` (put it on sys.path); returns its SPEC."""
    (Path(directory) / f"{name}.py").write_text(POLICY_MODULE)
    return f"{name}:make"


def onehot(s, L: int) -> np.ndarray:
    s = np.atleast_1d(np.asarray(s, dtype=np.int64))
    out = np.zeros((len(s), L + 1), dtype=np.float32)
    out[np.arange(len(s)), s] = 1.0
    return out


def rollout(rng: np.random.Generator, L: int, p: float, T_max: int, action_dim: int = 1) -> Episode:
    s = int(rng.integers(0, L))
    states, actions = [], []
    for _ in range(T_max):
        a = float(rng.random() < p)
        states.append(s)
        actions.append(a)
        s = min(s + int(round(a)), L)
        if s == L:
            break
    return Episode(state=onehot(states, L), action=np.repeat(np.array(actions, np.float32)[:, None], action_dim, 1),
                   source_key=f"ep{rng.integers(1 << 30)}", success=True if s == L else None,
                   task="reach the end", policy_id="beta")


def make_store(path: Path, episodes: int = 150, L: int = 6, p: float = 0.5, T_max: int = 40, seed: int = 0,
               outcomes: bool = True, action_dim: int = 1, interventions: bool = False) -> Store:
    """`interventions`: every 5th episode has frames 1..2 flagged as a human's (span [1, 3))."""
    rng = np.random.default_rng(seed)
    store = Store.open(path, create=True)
    with store.writer("chainworld", "test") as w:
        for i in range(episodes):
            ep = rollout(rng, L, p, T_max, action_dim)
            if not outcomes:
                ep.success = None
            if interventions and i % 5 == 0:
                ep.is_intervention = np.zeros(len(ep), bool)
                ep.is_intervention[1:3] = True
            w.add(ep, fps=10.0)
        w.commit()
    return Store.open(path)


def v_pi(s, L: int, gamma: float) -> np.ndarray:
    return gamma ** (L - np.asarray(s, dtype=np.float64) - 1)


def v_pattern10(s, L: int, gamma: float) -> np.ndarray:
    """V of the policy whose every chunk is [1, 0]: the n-th move is action 2(n - 1)."""
    return gamma ** (2 * (L - np.asarray(s, dtype=np.float64) - 1))


def v_beta(s, L: int, gamma: float, p: float) -> np.ndarray:
    n = L - np.asarray(s, dtype=np.float64)
    return (p * gamma / (1 - (1 - p) * gamma)) ** n / gamma


def q_chunk(s: int, chunk, L: int, gamma: float, v_after) -> float:
    """True Q of executing `chunk` from s, then following the policy whose value is `v_after(s)`."""
    pos = s
    for k, a in enumerate(chunk):
        pos = min(pos + int(round(a)), L)
        if pos == L:
            return gamma ** k
    return gamma ** len(chunk) * float(v_after(pos))
