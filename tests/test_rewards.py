"""Reward specs against numbers worked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aloe_cli import schema as S
from aloe_cli.errors import BadInput
from aloe_cli.rewards import RewardSpec, frame_rewards, resolve_rewards, resolved_problem

# Task "a": lengths 4 (success), 2 (failure), 3 (unknown outcome); task "b": 10 (failure).
EPISODES = pd.DataFrame({
    S.LENGTH: [4, 2, 3, 10],
    S.SUCCESS: [True, False, None, False],
    S.TASK: ["a", "a", "a", "b"],
})


def test_t_norm_is_the_95th_percentile_per_task():
    r = resolve_rewards(RewardSpec(), EPISODES)
    # a: sorted [2, 3, 4], position .95 * 2 = 1.9 -> 3 + .9 * (4 - 3) = 3.9;  b: [10] -> 10.
    # all: [2, 3, 4, 10], position .95 * 3 = 2.85 -> 4 + .85 * 6 = 9.1 (for unseen tasks).
    assert r == {"kind": "step-penalty", "t_norm": {"a": pytest.approx(3.9), "b": 10.0},
                 "t_norm_default": pytest.approx(9.1), "c_fail": None}


def test_step_penalty_by_hand():
    r = frame_rewards(resolve_rewards(RewardSpec(), EPISODES), EPISODES)
    a = -1 / 3.9
    want = ([a] * 4  # success: only the step penalty
            + [a, a - 1.0]  # failure: last frame adds -C_fail/T_norm = -3.9/3.9
            + [a] * 3  # unknown outcome: no failure cost
            + [-0.1] * 9 + [-1.1])  # task b: T_norm 10, failure at the end
    np.testing.assert_allclose(r, want)
    # Explicit C_fail = 2 frames: the failure's last frame is -1/3.9 - 2/3.9; task b: -.1 - .2.
    r2 = frame_rewards(resolve_rewards(RewardSpec(c_fail=2.0), EPISODES), EPISODES)
    assert r2[5] == pytest.approx(-3 / 3.9) and r2[-1] == pytest.approx(-0.3)
    # Explicit T_norm = 5 for every task.
    r3 = frame_rewards(resolve_rewards(RewardSpec(t_norm=5.0), EPISODES), EPISODES)
    assert r3[0] == pytest.approx(-0.2) and r3[5] == pytest.approx(-1.2) and r3[-1] == pytest.approx(-1.2)


def test_sparse_by_hand():
    r = frame_rewards(resolve_rewards(RewardSpec("sparse"), EPISODES), EPISODES)
    assert r.tolist() == [0, 0, 0, 1] + [0] * 15  # only the successful episode's last frame


def test_logged_rewards_pass_through_and_must_be_complete():
    logged = np.arange(19, dtype=np.float32)
    r = frame_rewards(resolve_rewards(RewardSpec("logged"), EPISODES), EPISODES, logged)
    np.testing.assert_array_equal(r, logged)
    logged[[3, 7]] = np.nan
    with pytest.raises(BadInput) as e:
        frame_rewards({"kind": "logged"}, EPISODES, logged, where="st")
    assert str(e.value) == ("st: reward: 2 of 19 frames have no logged reward; --reward logged needs one on "
                            "every frame (use --reward step-penalty or sparse)")


def test_sparse_without_outcomes_is_a_clear_error():
    eps = EPISODES.assign(**{S.SUCCESS: [None] * 4})
    with pytest.raises(BadInput) as e:
        resolve_rewards(RewardSpec("sparse"), eps, where="st")
    assert str(e.value) == ("st: success: no episode has an outcome (success or failure), so --reward sparse "
                            "would be 0 everywhere; label outcomes at ingest (--success) or use --reward "
                            "step-penalty")


def test_bad_specs():
    with pytest.raises(BadInput, match="--reward: unknown reward 'dense'"):
        resolve_rewards(RewardSpec("dense"), EPISODES)
    with pytest.raises(BadInput, match="--t-norm: must be a positive number, got 0.0"):
        resolve_rewards(RewardSpec(t_norm=0.0), EPISODES)


@pytest.mark.parametrize("resolved, problem", [
    ({"kind": "sparse"}, None),
    ({"kind": "step-penalty", "t_norm": {"": 40.0, "open": 12}, "t_norm_default": 40.0, "c_fail": None}, None),
    ({"kind": "step-penalty", "t_norm": {}, "t_norm_default": 40.0, "c_fail": 0}, None),
    ("sparse", "kind 'sparse' is not one of step-penalty, sparse, logged"),
    ({"kind": "dense"}, "kind 'dense' is not one of step-penalty, sparse, logged"),
    ({"kind": "step-penalty", "t_norm": [40], "t_norm_default": 40.0, "c_fail": None},
     "t_norm is not a {task: frames > 0} table"),
    ({"kind": "step-penalty", "t_norm": {"": True}, "t_norm_default": 40.0, "c_fail": None},
     "t_norm is not a {task: frames > 0} table"),
    ({"kind": "step-penalty", "t_norm": {}, "t_norm_default": float("nan"), "c_fail": None},
     "t_norm_default nan is not a number of frames > 0"),
    ({"kind": "step-penalty", "t_norm": {}, "t_norm_default": 40, "c_fail": -1},
     "c_fail -1 is not a number >= 0"),
])
def test_a_resolved_spec_read_back_is_checked(resolved, problem):
    assert resolved_problem(resolved) == problem
