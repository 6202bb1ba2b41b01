"""Pure parts of the rollout: safety functions, stall detection, the expert chunk policy, key toggles."""

from __future__ import annotations

import os

import numpy as np
import pytest

from aloe_cli.errors import PolicyError
from aloe_cli.robot import EpisodeStatus
from aloe_cli.robot.experts import ExpertOnStall, StallDetector, metaworld_expert, scripted_expert
from aloe_cli.robot.safety import SafetyLimits, clip_to_bounds, is_sendable, limit_rate, make_safe
from aloe_cli.rollout import _spans

pytestmark = pytest.mark.filterwarnings("ignore:Constant")  # Meta-World's expert, called directly


def test_clip_to_bounds_by_hand():
    out = clip_to_bounds(np.array([-2.0, 0.5, 3.0]), np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 2.0]))
    np.testing.assert_array_equal(out, [-1.0, 0.5, 2.0])


def test_limit_rate_by_hand():
    out = limit_rate(np.array([1.0, -1.0, 0.2]), np.array([0.0, 0.0, 0.0]), np.array([0.25, 0.5, 0.5]))
    np.testing.assert_allclose(out, [0.25, -0.5, 0.2])
    # From 0.5 toward -1 by at most 0.4: 0.1. No previous action (first step) or no limit: unchanged.
    np.testing.assert_allclose(limit_rate(np.array([-1.0]), np.array([0.5]), np.array([0.4])), [0.1])
    np.testing.assert_array_equal(limit_rate(np.array([3.0]), None, np.array([0.1])), [3.0])
    np.testing.assert_array_equal(limit_rate(np.array([3.0]), np.array([0.0]), None), [3.0])


def test_make_safe_holds_on_nan_and_keeps_bounds():
    lim = SafetyLimits(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), np.array([0.5, 0.5]))
    assert make_safe(np.array([np.nan, 0.0]), None, lim) == (None, False, False)
    assert make_safe(np.array([0.0, np.inf]), np.array([0.0, 0.0]), lim)[0] is None
    assert not is_sendable(np.array([np.nan])) and is_sendable(np.array([1e30]))
    # 3 -> clipped to 1; from previous 0 by at most 0.5 -> 0.5.  -0.2 from 0: within the limit.
    a, clipped, limited = make_safe(np.array([3.0, -0.2]), np.array([0.0, 0.0]), lim)
    np.testing.assert_allclose(a, [0.5, -0.2])
    assert clipped and limited and a.dtype == np.float32
    # A previous action out of bounds (2.0): 2.0 -> clip 1.0 -> limit from 2.0 gives 1.5 -> clip 1.0.
    a, clipped, limited = make_safe(np.array([2.0, 0.0]), np.array([2.0, 0.0]), lim)
    np.testing.assert_allclose(a, [1.0, 0.0])
    assert clipped and limited
    a, clipped, limited = make_safe(np.array([0.3, 0.1]), np.array([0.0, 0.0]), lim)
    np.testing.assert_allclose(a, [0.3, 0.1])
    assert not clipped and not limited


def test_a_drivers_declared_limits_are_checked():
    """A third-party or LeRobot driver's action_features: NaN or negative max_delta, or low > high,
    are refused (make_safe would pass NaN on, or move the wrong way), naming the driver."""
    from aloe_cli.errors import BadInput
    from aloe_cli.robot import action_limits

    class Driver:
        name = "my-arm"

        def __init__(self, **f):
            self.action_features = {"action": {"shape": [2], **f}}

    lim = action_limits(Driver(low=[-1, -2], high=[1, 2], max_delta=0.5))
    assert lim.low.tolist() == [-1, -2] and lim.max_delta.tolist() == [0.5, 0.5]
    assert action_limits(Driver()).max_delta is None and np.isinf(action_limits(Driver()).high).all()
    for f, field in ((dict(max_delta=[0.5, float("nan")]), "max_delta"), (dict(max_delta=-1.0), "max_delta"),
                     (dict(low=[1, 0], high=[0, 1]), "low/high")):
        with pytest.raises(BadInput) as e:
            action_limits(Driver(**f))
        assert str(e.value).startswith(f"my-arm: action_features: {field}: "), str(e.value)


def test_expert_whole_number_arguments():
    for arg in ("noise_after", "noise_until", "chunk_size"):
        with pytest.raises(PolicyError) as e:
            metaworld_expert(**{arg: "abc"})
        assert str(e.value) == f"{arg}: must be a whole number, got 'abc'"


def test_stall_detector_by_hand():
    d = StallDetector(patience=2, min_progress=0.5)
    assert [d.update(p) for p in (1.0, 1.2, 1.4)] == [False, False, True]
    d.reset()
    assert [d.update(p) for p in (1.0, 1.6, 1.7, 1.8)] == [False, False, False, True]
    d.reset(5.0)
    assert [d.update(p) for p in (5.4, 5.45)] == [False, True]  # 5.5 would be progress
    assert d.update(None) is False and d.since == 2  # unknown progress neither counts nor resets


def test_expert_on_stall_takes_over_then_hands_back():
    e = ExpertOnStall("drawer-open-v3", patience=2, min_progress=0.5, takeover_steps=3)
    obs = {"observation.state": np.zeros(39, np.float32), "task": "drawer-open-v3"}
    flags = [e.wants_control(obs, EpisodeStatus(progress=p)) for p in (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)]
    # stall at the 3rd step; the expert drives 3 steps; the policy gets a fresh patience of 2.
    assert flags == [False, False, True, True, True, False, False, True]
    assert e.takeovers == 2
    e.reset()
    assert e.wants_control(obs, EpisodeStatus(progress=1.0)) is False


def test_spans():
    assert _spans(np.array([False, True, True, False, True])) == 2
    assert _spans(np.array([True])) == 1 and _spans(np.array([], bool)) == 0


def _obs(B=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"observation.state": rng.uniform(-0.3, 0.8, size=(B, 39)).astype(np.float32),
            "task": ["drawer-open-v3"] * B, "frame_index": np.array([0, 10, 20])[:B]}


def test_expert_chunks_are_open_loop_copies_of_the_expert():
    obs = _obs()
    p = metaworld_expert("drawer-open-v3", noise=0.0, chunk_size=4)
    out = p.sample(obs, 2)
    assert out.shape == (3, 2, 4, 4) and out.dtype == np.float32
    expert = scripted_expert("drawer-open-v3")
    for b in range(3):
        want = np.clip(expert.get_action(obs["observation.state"][b].astype(np.float64)), -1, 1)
        np.testing.assert_allclose(out[b], np.broadcast_to(want, (2, 4, 4)), atol=1e-6)
    # task=None: each observation's own task picks the expert.
    np.testing.assert_array_equal(metaworld_expert(None, chunk_size=4).sample(obs, 2), out)


def test_expert_noise_epsilon_and_time_switches():
    obs = _obs(B=3)
    clean = metaworld_expert("drawer-open-v3", chunk_size=3).sample(obs, 1)
    noisy = metaworld_expert("drawer-open-v3", noise=0.3, chunk_size=3, seed=1).sample(obs, 500)
    assert np.abs(noisy).max() <= 1.0
    # Unclipped entries scatter around the expert with sigma 0.3.
    inside = np.abs(noisy) < 1.0
    dev = (noisy - clean)[inside]
    assert 0.2 < dev.std() < 0.35
    # Same seed, same samples; different calls draw fresh noise.
    p = metaworld_expert("drawer-open-v3", noise=0.3, chunk_size=3, seed=1)
    np.testing.assert_array_equal(p.sample(obs, 500), noisy)
    assert not np.array_equal(p.sample(obs, 500), noisy)
    # epsilon = 1: every chunk is uniform random (its rows differ; the expert's rows repeat).
    r = metaworld_expert("drawer-open-v3", epsilon=1.0, chunk_size=3).sample(obs, 4)
    assert not np.allclose(r[:, :, 0], r[:, :, 1])
    # Noise only from frame 10 on: the observation at frame 0 gets the clean expert.
    after = metaworld_expert("drawer-open-v3", noise=0.5, chunk_size=3, noise_after=10).sample(obs, 2)
    np.testing.assert_array_equal(after[0], np.broadcast_to(clean[0, 0], (2, 3, 4)))
    assert not np.allclose(after[1], clean[1, 0]) and not np.allclose(after[2], clean[2, 0])
    until = metaworld_expert("drawer-open-v3", noise=0.5, chunk_size=3, noise_until=10).sample(obs, 2)
    assert not np.allclose(until[0], clean[0, 0])
    np.testing.assert_array_equal(until[1:], np.broadcast_to(clean[1:, :1], (2, 2, 3, 4)))
    # A slower expert moves the hand half as far; the gripper is unchanged.
    slow = metaworld_expert("drawer-open-v3", speed=0.5, chunk_size=1).sample(obs, 1)
    full = metaworld_expert("drawer-open-v3", speed=1.0, chunk_size=1).sample(obs, 1)
    unclipped = np.abs(full[..., :3]) < 1.0
    np.testing.assert_allclose(slow[..., :3][unclipped], 0.5 * full[..., :3][unclipped], atol=1e-6)
    np.testing.assert_array_equal(slow[..., 3], full[..., 3])


def test_expert_bad_arguments():
    with pytest.raises(PolicyError) as e:
        metaworld_expert("no-such-task-v3")
    assert str(e.value) == "task: no scripted Meta-World expert for task 'no-such-task-v3' (e.g. drawer-open-v3)"
    obs = _obs()
    del obs["frame_index"]
    with pytest.raises(PolicyError) as e:
        metaworld_expert("drawer-open-v3", noise=0.1, noise_after=5).sample(obs, 1)
    assert str(e.value) == "noise_after: noise_after/noise_until need the observations' frame_index"
    with pytest.raises(PolicyError) as e:
        metaworld_expert("drawer-open-v3", chunk_size=0)
    assert str(e.value) == "chunk_size: must be at least 1, got 0"


def test_keyboard_toggle_reads_a_real_terminal():
    from aloe_cli.robot.experts import ExpertTeleop
    from aloe_cli.robot.keyboard import KeyboardTakeover, KeyToggle

    master, slave = os.openpty()
    try:
        keys = KeyToggle(slave)
        t = KeyboardTakeover(ExpertTeleop("drawer-open-v3"), keys)
        t.connect()
        obs = {"observation.state": np.zeros(39, np.float32), "task": "drawer-open-v3"}
        st = EpisodeStatus()
        assert t.wants_control(obs, st) is False
        os.write(master, b" ")
        assert t.wants_control(obs, st) is True and t.wants_control(obs, st) is True
        assert t.get_action(obs).shape == (4,)
        os.write(master, b"xi")  # other keys are ignored; i toggles too
        assert t.wants_control(obs, st) is False
        t.disconnect()
    finally:
        os.close(master)
        os.close(slave)


def test_drivers_and_teleoperators_meet_the_protocols():
    from aloe_cli.robot import Robot, Teleoperator, load_robot
    from aloe_cli.robot.experts import ExpertTeleop
    from aloe_cli.robot.keyboard import KeyboardTakeover, KeyToggle
    from aloe_cli.robot.remote import RemoteRobot, RemoteTeleop

    sim = load_robot("sim:drawer-open-v3")  # not connected: no simulator is made
    remote = RemoteRobot("ws://127.0.0.1:1")
    assert isinstance(sim, Robot) and isinstance(remote, Robot) and not sim.is_connected
    for t in (ExpertOnStall("drawer-open-v3"), ExpertTeleop("drawer-open-v3"), RemoteTeleop(remote),
              KeyboardTakeover(ExpertTeleop(), KeyToggle(0))):
        assert isinstance(t, Teleoperator)


def test_the_lerobot_wrapper_gives_the_policy_the_task_the_store_records():
    """Without --robot-arg task the policy sees task None, as the store records it and scoring
    passes it back (it saw "", another task to a policy with a task vocabulary). The arm here has
    LeRobot's Robot interface, without the lerobot package (it needs Python >= 3.12)."""
    from aloe_cli.robot.lerobot_driver import LeRobotRobot

    class Arm:
        name, is_connected = "arm", True
        observation_features = {"j0.pos": float, "j1.pos": float}
        action_features = {"j0.pos": float, "j1.pos": float}

        def get_observation(self):
            return {"j0.pos": 0.1, "j1.pos": 0.2}

    assert LeRobotRobot(Arm()).get_observation()["task"] is None
    obs = LeRobotRobot(Arm(), task="reach").get_observation()
    assert obs["task"] == "reach" and obs["observation.state"].tolist() == pytest.approx([0.1, 0.2])
