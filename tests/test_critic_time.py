"""`--obs state,time`: where a time limit ends every episode as a failure, the value of a state
depends on the time left; a critic that sees the time input recovers it, one that does not cannot."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch

import chainworld as cw
from aloe_cli import schema as S
from aloe_cli.critic import CriticConfig, fit_critic, load_critic
from aloe_cli.episode import Episode
from aloe_cli.errors import BadInput
from aloe_cli.policy.builtin import PolicyConfig
from aloe_cli.rewards import time_features, typical_lengths
from aloe_cli.scoring import score_chunks
from aloe_cli.store import Store
from aloe_cli.vision import parse_obs

torch.set_num_threads(1)
T, GAMMA = 12, 0.9
FAST = dict(gamma=GAMMA, samples=1, steps=800, batch_size=128, hidden=64, tau=0.05, lr=1e-3, val_every=400,
            log_every=200, chunk_size=2, t_norm=T, c_fail=T, val_fraction=0.0)


def v_true(t) -> np.ndarray:
    """Step penalty -1/T every frame, the failure adds -C_fail/T = -1 on frame T - 1:
    V(t) = -(1/T) (1 - gamma^(T - t)) / (1 - gamma) - gamma^(T - 1 - t)."""
    t = np.asarray(t, dtype=np.float64)
    return -(1 - GAMMA ** (T - t)) / (1 - GAMMA) / T - GAMMA ** (T - 1 - t)


def test_hand_worked_time_values():
    # frame 75 of a 150-frame task -> 0.5; a task the critic never saw gets the default (100)
    scale = {"per_task": {"a": 150.0}, "default": 100.0}
    np.testing.assert_allclose(time_features([75, 50, 0], ["a", "b", None], scale)[:, 0], [0.5, 0.5, 0.0])
    per_task, default = typical_lengths(pd.DataFrame({S.LENGTH: [10, 20, 30, 100], S.TASK: ["x", "x", "x", "y"]}))
    assert per_task == {"x": 29.0, "y": 100.0} and default == pytest.approx(89.5)
    # V(T - 1) = -1/T - 1: the last frame's penalty and the failure
    assert v_true(T - 1) == pytest.approx(-1 / T - 1)


def test_obs_spec_parses_time_and_the_policy_refuses_it():
    spec = parse_obs("state,time")
    assert spec.time and spec.columns == [S.OBS_STATE] and str(spec) == "state,time"
    with pytest.raises(BadInput, match="named twice"):
        parse_obs("time,time")
    with pytest.raises(BadInput, match="critic input only"):
        PolicyConfig(obs="state,time").validate()


@pytest.fixture(scope="module")
def waiting(tmp_path_factory):
    """Every episode: the same state, action 0 for T frames, then a time-out (failure)."""
    d = tmp_path_factory.mktemp("waiting")
    store = Store.open(d / "store", create=True)
    with store.writer("test", "test") as w:
        for i in range(30):
            w.add(Episode(state=np.zeros((T, 1), np.float32), action=np.zeros((T, 1), np.float32),
                          source_key=f"ep{i}", success=False, task="wait", policy_id="beta"), fps=10.0)
        w.commit()
    spec = cw.write_policy_module(d)
    sys.path.insert(0, str(d))
    yield d, spec
    sys.path.remove(str(d))


def test_a_critic_with_time_recovers_the_time_dependent_value(waiting):
    d, spec = waiting
    values = {}
    for obs in ("state,time", "state"):
        fit_critic(d / "store", d / obs, CriticConfig(**FAST, obs=obs), spec, {"chunk_size": 2, "step": 0.0})
        critic = load_critic(d / obs)
        frames = np.array([0, 4, 8, 10])
        feats = critic.features(np.zeros((4, 1), np.float32), frame_index=frames, tasks=["wait"] * 4)
        values[obs] = critic.q(feats, np.zeros((4, 1, 2, 1), np.float32))[:, 0]
    assert load_critic(d / "state,time").time_scale == {"per_task": {"wait": float(T)}, "default": float(T)}
    np.testing.assert_allclose(values["state,time"], v_true([0, 4, 8, 10]), atol=0.04)
    # without the time input the critic gives every frame one value and misses both ends
    assert np.ptp(values["state"]) < 0.02
    assert np.abs(values["state"] - v_true([0, 4, 8, 10])).max() > 0.05
    # scoring gives the time input too: V at frame 10 is the late value
    df = score_chunks(d / "store", load_critic(d / "state,time"))
    v10 = df.loc[df[S.FRAME_INDEX] == 10, S.V].to_numpy()
    np.testing.assert_allclose(v10, v_true(10), atol=0.04)
