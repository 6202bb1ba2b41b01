"""Which start configuration each simulated episode starts from.

Meta-World MT1 (``gymnasium.make("Meta-World/MT1", env_name=..., seed=S)``) holds 50 fixed start
configurations of the task (its `train_tasks`, drawn from the creation seed S), and every
``reset()`` picks one of them at random, with replacement (MT1's `RandomTaskSelectWrapper` calls
``set_task``, which fixes the env's ``_last_rand_vec``). So 100 episodes start from only about 43
distinct configurations, and a deterministic policy returns the same from the same one: the
benchmarks' intervals resample and cluster by configuration (`common.bootstrap_metrics`,
`common.mean_and_se`), which needs each episode's configuration: `StartRecordingSimRobot` records
it at every reset, as the index of the configuration in the env's task list (ids from robots made
with different seeds name different configurations).
"""

from __future__ import annotations

import pickle

import numpy as np

from aloe_cli.robot.sim import SimRobot


def task_rand_vecs(env) -> np.ndarray | None:
    """(N, D) the random vector (object and goal placement) of each start configuration the env's
    task-select wrapper picks from, in its order; None where the env has no such wrapper."""
    try:
        tasks = env.get_wrapper_attr("tasks")
        return np.stack([np.asarray(pickle.loads(t.data)["rand_vec"], dtype=np.float64) for t in tasks])
    except Exception:  # another Meta-World version or env: the caller falls back to episodes
        return None


def match_start(vecs: np.ndarray | None, rand_vec) -> int | None:
    """The index of `rand_vec` among the rows of `vecs` (exact match), None when it is not exactly
    one of them: ((0, 1), (2, 3)) and (2, 3) -> 1."""
    if vecs is None or rand_vec is None:
        return None
    v = np.asarray(rand_vec, dtype=np.float64).reshape(-1)
    if v.shape[0] != vecs.shape[1]:
        return None
    hit = np.flatnonzero(np.all(vecs == v, axis=1))
    return int(hit[0]) if len(hit) == 1 else None


class StartRecordingSimRobot(SimRobot):
    """`SimRobot` that appends, at every ``reset()``, the start configuration of the new episode to
    `starts` (its index in the env's task list; None where it cannot tell). `run_rollouts` resets
    once per episode, so ``starts[i]`` belongs to ``per_episode[i]`` of a run on a fresh robot."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.starts: list[int | None] = []
        self._vecs: np.ndarray | None = None

    def connect(self) -> None:
        super().connect()
        self._vecs = task_rand_vecs(self.env)

    def reset(self) -> None:
        super().reset()
        self.starts.append(match_start(self._vecs, getattr(self.env.unwrapped, "_last_rand_vec", None)))


def known(ids) -> list | None:
    """`ids` when every one is known, else None (the caller then falls back to episodes)."""
    ids = list(ids)
    return ids if ids and all(i is not None for i in ids) else None
