"""`aloe rollout` on the real Meta-World simulator: flags in the store, safety, interventions, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import aloe_cli.rollout
from aloe_cli import schema as S
from aloe_cli.episode import Episode
from aloe_cli.errors import BadInput, PolicyError
from aloe_cli.formats._images import encode_frames
from aloe_cli.robot.experts import metaworld_expert, scripted_expert
from aloe_cli.robot.sim import SimRobot
from aloe_cli.rollout import RolloutConfig, run_rollouts
from aloe_cli.store import Store
from conftest import REPO
from rollout_plugins import FixedChunkPolicy, constant

pytestmark = pytest.mark.filterwarnings("ignore:Constant")  # Meta-World's expert, called directly
TASK = "drawer-open-v3"


@pytest.fixture(scope="module")
def sim():
    """One simulator for the module (gym.make takes ~1 s); episodes of at most 100 steps."""
    robot = SimRobot(TASK, seed=0, max_steps=100)
    robot.connect()
    yield robot
    robot.disconnect()


def frames_of(store, eid):
    row, table = next(Store.open(store).iter_episode_tables([eid]))
    return table.to_pandas()


def test_sim_rollouts_append_with_outcomes_and_flags(sim, tmp_path):
    store = tmp_path / "store"
    good = run_rollouts(sim, metaworld_expert(TASK, noise=0.0, chunk_size=5), store,
                        RolloutConfig(episodes=2, max_steps=100, policy_id="expert"))
    assert good["episodes"] == 2 and good["successes"] == 2 and good["success_rate"] == 1.0
    bad = run_rollouts(sim, constant(0.0), store, RolloutConfig(episodes=1, max_steps=100, policy_id="still"))
    assert bad["failures"] == 1 and bad["frames"] == 100
    eps = Store.open(store).episodes
    assert eps[S.POLICY_ID].tolist() == ["expert", "expert", "still"]
    assert eps[S.TASK].tolist() == [TASK] * 3
    assert eps[S.SUCCESS].tolist() == [True, True, False]
    # A time-out in the simulator is a labelled failure: terminal, not truncated.
    assert eps[S.TERMINATED].tolist() == [True] * 3 and eps[S.TRUNCATED].tolist() == [False] * 3
    assert (eps[S.LENGTH][:2] < 100).all() and eps[S.LENGTH][2] == 100
    assert set(eps[S.SOURCE]) == {f"rollout:sim:{TASK}"} and set(eps[S.FORMAT]) == {"rollout"}
    assert (eps[S.FPS] == 80.0).all() and (eps[S.INTERVENTION_FRAMES] == 0).all()
    f = frames_of(store, eps[S.EPISODE_ID][0])
    T = len(f)
    np.testing.assert_allclose(f[S.TIMESTAMP], np.arange(T) / 80.0, rtol=1e-6)
    assert not f[S.IS_INTERVENTION].any() and f[S.REWARD].notna().all()
    assert f[S.REWARD].iloc[-1] > f[S.REWARD].iloc[0]  # the dense reward rose to success
    # Each frame's state is the observation the action was taken at: replaying the expert on it
    # gives the recorded chunk's action (chunks are open loop: one expert action per 5 frames).
    expert = scripted_expert(TASK)
    state = np.stack(f[S.OBS_STATE])
    action = np.stack(f[S.ACTION])
    for t in range(0, T, 5):
        want = np.clip(expert.get_action(state[t].astype(np.float64)), -1, 1)
        np.testing.assert_allclose(action[t:t + 5], np.broadcast_to(want, action[t:t + 5].shape), atol=1e-6)
    manifest = Store.open(store).manifest
    ing = manifest["ingests"][0]
    assert ing["source"] == f"rollout:sim:{TASK}" and ing["options"]["config"]["max_steps"] == 100
    assert ing["options"]["episodes"] == [{"episode": 0, "end": "done", "events": {
        "late_chunks": 0, "nan_holds": 0, "clipped": 0, "rate_limited": 0}}]
    assert ing["episode_ids"] == [eps[S.EPISODE_ID][0]]  # each episode committed on its own
    # commit_every=2: two episodes per atomic commit (the last one alone at the end of the run).
    s = run_rollouts(sim, constant(0.0), tmp_path / "batched", RolloutConfig(episodes=3, max_steps=5, commit_every=2))
    ingests = Store.open(tmp_path / "batched").manifest["ingests"]
    assert [len(i["episode_ids"]) for i in ingests] == [2, 1]
    assert [i["episode_ids"] for i in ingests] == [s["episode_ids"][:2], s["episode_ids"][2:]]


def test_evaluation_only_records_nothing(sim, tmp_path):
    s = run_rollouts(sim, metaworld_expert(TASK, chunk_size=5), None, RolloutConfig(episodes=2, max_steps=100))
    assert s["store"] is None and s["episodes"] == 2 and s["success_rate"] == 1.0
    assert s["episode_ids"] == [None, None] and all(0 < e["length"] < 100 for e in s["per_episode"])
    assert not list(tmp_path.iterdir())


def test_recorded_actions_are_the_clipped_and_rate_limited_ones(sim, tmp_path):
    # Out of bounds on every dimension; with max_delta 0.5, x alternates +3 / -3 -> 1, 0.5, 1, 0.5.
    chunk = [[3.0, -2.0, 0.5, 7.0], [-3.0, -2.0, 0.5, 7.0]]
    s = run_rollouts(sim, FixedChunkPolicy(chunk), tmp_path / "s",
                     RolloutConfig(episodes=1, max_steps=6, max_delta=0.5))
    f = frames_of(tmp_path / "s", s["episode_ids"][0])
    np.testing.assert_allclose(np.stack(f[S.ACTION]), [[1, -1, .5, 1], [.5, -1, .5, 1]] * 3)
    assert s["clipped_actions"] == 6 and s["rate_limited_actions"] == 3
    # Without a limit: plain clipping.
    s = run_rollouts(sim, FixedChunkPolicy(chunk), tmp_path / "s", RolloutConfig(episodes=1, max_steps=4))
    f = frames_of(tmp_path / "s", s["episode_ids"][0])
    np.testing.assert_allclose(np.stack(f[S.ACTION]), [[1, -1, .5, 1], [-1, -1, .5, 1]] * 2)


def test_nan_actions_are_never_sent(sim, tmp_path):
    # The third action of each chunk is NaN: the robot holds, and the policy is asked again.
    chunk = [[0.1, 0, 0, 0], [0.2, 0, 0, 0], [np.nan, 0, 0, 0], [0.4, 0, 0, 0]]
    holds = sim.holds
    s = run_rollouts(sim, FixedChunkPolicy(chunk), tmp_path / "s", RolloutConfig(episodes=1, max_steps=10))
    f = frames_of(tmp_path / "s", s["episode_ids"][0])
    a = np.stack(f[S.ACTION])
    assert np.isfinite(a).all() and np.allclose(a[:, 0], [0.1, 0.2] * 5)
    assert s["nan_holds"] == 4 and sim.holds - holds == 4  # sim.send_action raises on NaN: none reached it
    # A policy that only answers NaN: after max_holds holds the episode stops; nothing to save.
    s = run_rollouts(sim, FixedChunkPolicy([[np.nan] * 4]), tmp_path / "s2",
                     RolloutConfig(episodes=1, max_steps=10, max_holds=5))
    assert s["nan_holds"] == 5 and s["episodes"] == 0 and s["per_episode"][0]["end"] == "holds"
    assert not (tmp_path / "s2").exists()


def test_a_paced_loop_observes_at_its_ticks_and_keeps_a_period_after_a_late_chunk(sim, tmp_path, monkeypatch):
    """With --fps each step waits for its tick, then observes and sends at once: the recorded
    timestamps are the ticks, and after a chunk that came 0.1 s late the next action waits a whole
    period (it went out back to back, 0.7 ms after the late one). Only lower bounds are checked:
    a loaded machine makes intervals longer, never shorter."""
    sends = []
    send = sim.send_action
    monkeypatch.setattr(sim, "send_action", lambda a: (sends.append(time.monotonic()), send(a))[1])
    period = 0.02
    p = FixedChunkPolicy([[0.0] * 4] * 3, delays=[0.0, 0.1, 0.0])  # the second chunk (frame 3) is late
    s = run_rollouts(sim, p, tmp_path / "s", RolloutConfig(episodes=1, max_steps=9, fps=1 / period))
    gaps = np.diff(sends)
    assert len(sends) == 9 and gaps[2] >= 0.1  # the late chunk
    assert (gaps >= 0.5 * period).all(), gaps.round(4)
    stamps = np.diff(frames_of(tmp_path / "s", s["episode_ids"][0])[S.TIMESTAMP].to_numpy())
    assert (stamps >= 0.5 * period).all(), stamps.round(4)


def test_a_warm_up_call_keeps_a_slow_first_call_within_the_deadline(sim, tmp_path):
    """A policy's first call can be slow (CUDA compiles its kernels then). Where the policy runs in its
    worker thread (a real-time robot), one chunk request on the first observation before the clock starts
    takes that cost; its chunk is not executed. --no-warmup, and the simulator's inline default, skip it."""
    def slow_first():
        return FixedChunkPolicy([[0.0] * 4] * 3, delays=[0.4])

    p = slow_first()
    s = run_rollouts(sim, p, None, RolloutConfig(episodes=1, max_steps=9, deadline_s=0.2, policy_thread=True))
    assert s["late_chunks"] == 0 and s["warmup_s"] >= 0.4 and p.calls == 4  # the warm-up and 3 chunks
    assert s["frames"] == 9
    p = slow_first()
    s = run_rollouts(sim, p, None, RolloutConfig(episodes=1, max_steps=9, deadline_s=0.2, policy_thread=True,
                                                 warmup=False))
    assert s["late_chunks"] == 1 and s["warmup_s"] is None and p.calls == 3
    p = slow_first()
    s = run_rollouts(sim, p, None, RolloutConfig(episodes=1, max_steps=9, deadline_s=0.2))
    assert s["late_chunks"] == 1 and s["warmup_s"] is None and p.calls == 3


def test_a_warm_up_leaves_the_builtin_policys_draws_as_they_were(tmp_path):
    """The built-in policy samples from its own generator; the warm-up's draw is put back, so a run with it
    records the same actions as one without."""
    from aloe_cli.policy import load_policy
    from aloe_cli.policy.builtin import PolicyConfig, train_policy

    run_rollouts(SimRobot(TASK, seed=0, max_steps=12), metaworld_expert(TASK, noise=0.5, chunk_size=4),
                 tmp_path / "logs", RolloutConfig(episodes=2, max_steps=12))
    train_policy(Store.open(tmp_path / "logs"), tmp_path / "pol",
                 PolicyConfig(steps=2, chunk_size=4, hidden=16, depth=1, obs_layers=1, batch_size=16, device="cpu",
                              warmup_steps=1))
    actions = {}
    for warm in (True, False):
        s = run_rollouts(SimRobot(TASK, seed=0, max_steps=12), load_policy(str(tmp_path / "pol")),
                         tmp_path / f"s{warm}", RolloutConfig(episodes=1, max_steps=12, warmup=warm))
        assert (s["warmup_s"] is not None) == warm
        actions[warm] = np.stack(frames_of(tmp_path / f"s{warm}", s["episode_ids"][0])[S.ACTION])
    np.testing.assert_array_equal(actions[True], actions[False])


@pytest.mark.parametrize("threaded", [True, False])
def test_slow_policy_makes_the_robot_hold(sim, tmp_path, threaded):
    # threaded: the robot holds while the policy computes (real time); inline (the simulator's
    # default): simulated time stands still meanwhile, and the late answer is logged the same way.
    # (No warm-up call: each delay is the chunk request's it is listed for.)
    holds = sim.holds
    p = FixedChunkPolicy([[0.0] * 4] * 3, delays=[0.25, 0.25, 0.0])
    s = run_rollouts(sim, p, tmp_path / "s", RolloutConfig(episodes=1, max_steps=9, deadline_s=0.05,
                                                            policy_thread=threaded, warmup=False))
    assert s["late_chunks"] == 2 and sim.holds - holds == 2 and s["frames"] == 9
    ing = Store.open(tmp_path / "s").manifest["ingests"][0]
    assert ing["options"]["episodes"][0]["events"]["late_chunks"] == 2  # logged with the episode
    # No answer within the policy timeout: the episode so far is saved truncated, then the run fails.
    p = FixedChunkPolicy([[0.0] * 4] * 3, delays=[0.0, 0.6])
    t0 = time.monotonic()
    with pytest.raises(PolicyError) as e:
        run_rollouts(sim, p, tmp_path / "t", RolloutConfig(episodes=2, max_steps=9, deadline_s=0.05,
                                                            policy_timeout_s=0.3, policy_thread=threaded,
                                                            warmup=False),
                     policy_name="slow")
    if threaded:
        assert time.monotonic() - t0 < 0.55  # gave up at the timeout, without waiting for the answer
    assert str(e.value) == "slow: --policy: no chunk after 0.3 s"
    eps = Store.open(tmp_path / "t").episodes
    assert eps[S.LENGTH].tolist() == [3] and eps[S.TRUNCATED].tolist() == [True]
    assert eps[S.SUCCESS].isna().all()


def test_expert_on_stall_produces_intervention_spans(sim, tmp_path):
    # A policy that never moves stalls; the expert takes over for 20 steps, hands back, and so on.
    cfg = RolloutConfig(episodes=1, max_steps=100, intervene="expert-on-stall", stall_patience=10,
                        takeover_steps=20)
    s = run_rollouts(sim, constant(0.0), tmp_path / "s", cfg)
    eid = s["episode_ids"][0]
    f = frames_of(tmp_path / "s", eid)
    flags = f[S.IS_INTERVENTION].to_numpy()
    starts = np.flatnonzero(flags & ~np.r_[False, flags[:-1]])
    ends = np.flatnonzero(flags & ~np.r_[flags[1:], False]) + 1
    assert len(starts) >= 2 and s["interventions"] == len(starts)
    assert starts[0] >= 10 and ((ends - starts) <= 20).all()
    assert Store.open(tmp_path / "s").episodes[S.INTERVENTION_FRAMES].tolist() == [int(flags.sum())]
    # Intervention frames carry the expert's action for that observation; the others the policy's zeros.
    expert = scripted_expert(TASK)
    state, action = np.stack(f[S.OBS_STATE]), np.stack(f[S.ACTION])
    for t in np.flatnonzero(flags):
        np.testing.assert_allclose(action[t], np.clip(expert.get_action(state[t].astype(np.float64)), -1, 1),
                                   atol=1e-6)
    assert (action[~flags] == 0).all()


def test_label_prompt_where_the_robot_does_not_know(tmp_path):
    robot = SimRobot(TASK, seed=0, max_steps=8, report_success=False)  # plays a real robot
    answers = iter(["success", "discard", "failure", "maybe"])
    asked = []

    def label(info):
        asked.append(info["episode"])
        return next(answers)

    s = run_rollouts(robot, constant(0.0), tmp_path / "s", RolloutConfig(episodes=4, max_steps=8, label="prompt"),
                     label_fn=label)
    assert asked == [0, 1, 2, 3] and s["discarded"] == 1 and s["episodes"] == 3
    eps = Store.open(tmp_path / "s").episodes
    assert eps[S.SUCCESS].tolist()[:2] == [True, False] and pd.isna(eps[S.SUCCESS][2])
    assert eps[S.TRUNCATED].tolist() == [False, False, True]
    # Without prompting, an outcome the robot does not know stays unknown (truncated).
    s = run_rollouts(robot, constant(0.0), tmp_path / "u", RolloutConfig(episodes=1, max_steps=8))
    assert s["unknown"] == 1 and s["success_rate"] is None


def test_ctrl_c_at_the_label_prompt_ends_the_question_at_once(tmp_path):
    """The first Ctrl-C while a person is asked for a label interrupts the question (the run stops,
    the episode is kept with its outcome unknown); it used to only set the stop flag, so nothing
    happened until the person answered."""
    robot = SimRobot(TASK, seed=0, max_steps=8, report_success=False)
    answered = []

    def label(info):
        os.kill(os.getpid(), signal.SIGINT)  # the person presses Ctrl-C at the prompt
        time.sleep(5)  # ... and would answer "success" some time later
        answered.append(info["episode"])
        return "success"

    t0 = time.monotonic()
    s = run_rollouts(robot, constant(0.0), tmp_path / "s", RolloutConfig(episodes=3, max_steps=8, label="prompt"),
                     label_fn=label)
    assert time.monotonic() - t0 < 4 and answered == []
    assert s["interrupted"] and s["signal"] == "SIGINT" and s["episodes"] == 1 and s["unknown"] == 1
    assert pd.isna(Store.open(tmp_path / "s").episodes[S.SUCCESS][0])


def test_keyboard_takeover_from_a_real_terminal(sim, tmp_path):
    from aloe_cli.robot.keyboard import KeyToggle
    from aloe_cli.rollout import make_intervention

    master, slave = os.openpty()
    try:
        cfg = RolloutConfig(episodes=1, max_steps=12, intervene="keyboard")
        keys = KeyToggle(slave)
        keys.open()  # cbreak mode (keys typed before it are flushed)
        os.write(master, b" ")  # SPACE before the first step: the expert drives from frame 0
        s = run_rollouts(sim, constant(0.0), tmp_path / "s", cfg, keys=keys)
        with pytest.raises(BadInput) as e:
            make_intervention("keyboard", sim, cfg)
        assert str(e.value) == "--intervene: keyboard takeover needs a key source (an interactive terminal)"
    finally:
        os.close(master)
        os.close(slave)
    f = frames_of(tmp_path / "s", s["episode_ids"][0])
    assert f[S.IS_INTERVENTION].all() and s["interventions"] == 1
    assert np.abs(np.stack(f[S.ACTION])).sum() > 0  # the expert's actions, not the policy's zeros


# ---------------------------------------------------------------------- the command line

def test_cli_rollout_json(cli, tmp_path):
    store = tmp_path / "store"
    r = cli("rollout", "--policy", "aloe_cli.robot.experts:metaworld_expert", "--policy-arg", "noise=0.0",
            "--episodes", 2, "--max-steps", 100, "--execute-steps", 3, "--into", store, "--json")
    assert r.exit_code == 0, r
    d = json.loads(r.stdout)
    assert d["episodes"] == 2 and d["success_rate"] == 1.0 and d["robot"] == f"sim:{TASK}"
    assert d["policy_id"] == "aloe_cli.robot.experts:metaworld_expert" and not d["interrupted"]
    assert "episode 2/2: success" in r.stderr
    # k = 3 of H = 5: a new chunk every 3 frames.
    f = frames_of(store, d["episode_ids"][0])
    a = np.stack(f[S.ACTION])
    assert np.allclose(a[0], a[2]) and not np.allclose(a[2], a[3])
    r = cli("rollout", "--policy", "rollout_plugins:constant", "--episodes", 1, "--max-steps", 20,
            "--intervene", "expert-on-stall", "--into", store, "--policy-id", "v0")
    assert r.exit_code == 0, r
    assert r.stdout.strip() == (f"rolled out 1 episode (20 frames) of v0 on sim:{TASK} into {store}: "
                                "success 0/1 (0.00), 0 unknown, 4 intervention frames in 1 span")
    # The command closes the policy it loaded (a websocket policy's connection).
    closed = tmp_path / "closed"
    r = cli("rollout", "--policy", "rollout_plugins:constant", "--policy-arg", f"closed={closed}", "--episodes", 1,
            "--max-steps", 3, "--into", store)
    assert r.exit_code == 0 and closed.read_text() == "closed", r


def test_cli_rollout_merges_the_frames_files_of_its_own_run(cli, tmp_path, monkeypatch):
    """Each commit writes a frames file; when the run ends its files are merged into one, and the files of
    earlier runs stay as they are. A failed merge loses nothing: the episodes are committed already."""
    store = tmp_path / "store"
    args = ["rollout", "--policy", "rollout_plugins:constant", "--max-steps", 5, "--into", store]

    def files():
        return Store.open(store).episodes[S.FRAMES_FILE].tolist()

    r = cli(*args, "--episodes", 3, "--no-compact")
    assert r.exit_code == 0, r
    assert len(set(files())) == 3 and "merged" not in r.stderr
    r = cli(*args, "--episodes", 3, "--json")
    assert r.exit_code == 0, r
    d = json.loads(r.stdout)
    assert (d["compacted"]["files_merged"], d["compacted"]["files_written"]) == (3, 1)
    f = files()
    assert len(f) == 6 and len(set(f[:3])) == 3 and len(set(f[3:])) == 1  # the first run's files untouched
    assert len(list(Store.open(store).iter_episodes())) == 6
    r = cli(*args, "--episodes", 2)
    assert r.exit_code == 0 and r.stderr.strip().endswith("merged the run's 2 frames files into 1"), r
    r = cli(*args, "--episodes", 1, "--json")  # one episode, one file: nothing to merge
    assert r.exit_code == 0 and json.loads(r.stdout)["compacted"] is None, r

    import aloe_cli.compact
    from aloe_cli.errors import StoreBusy

    def busy(root, **kw):
        raise StoreBusy(root)

    monkeypatch.setattr(aloe_cli.compact, "compact_store", busy)
    r = cli(*args, "--episodes", 2)
    assert r.exit_code == 0, r
    assert (f"the run's frames files were not merged ({store}: another aloe process is writing to this store); "
            f"`aloe compact {store}` merges them later") in r.stderr
    assert len(Store.open(store).episodes) == 11 and len(set(files()[-2:])) == 2


def _prompted(store, episodes: int, answers: str):
    """`aloe rollout --label prompt` on a driver that cannot judge its outcome, answers piped on stdin."""
    from typer.testing import CliRunner

    from aloe_cli.cli import app

    args = ["rollout", "--robot", "rollout_plugins:blind_sim", "--policy", "rollout_plugins:constant",
            "--episodes", str(episodes), "--max-steps", "5", "--label", "prompt", "--into", str(store), "--json"]
    return CliRunner().invoke(app, args, input=answers, catch_exceptions=False)


def test_cli_label_prompt_and_a_third_party_driver(tmp_path):
    store = tmp_path / "store"
    r = _prompted(store, 3, "s\nd\nfailure\n")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["episodes"], d["successes"], d["failures"], d["discarded"]) == (2, 1, 1, 1)
    eps = Store.open(store).episodes
    assert eps[S.SUCCESS].tolist() == [True, False] and set(eps[S.SOURCE]) == {"rollout:rollout_plugins:blind_sim"}


def test_cli_piped_labels_that_run_out_keep_the_episode_and_stop(tmp_path):
    """The end of piped answers keeps the episode it was asked about (outcome unknown) and stops the
    run (exit 130), rather than discarding every episode after it; a blank answer leaves the outcome
    unknown, not discarded."""
    store = tmp_path / "store"
    r = _prompted(store, 4, "s\n\n")
    assert r.exit_code == 130, r.stderr
    d = json.loads(r.stdout)
    assert (d["episodes"], d["successes"], d["unknown"], d["discarded"]) == (3, 1, 2, 0)
    assert d["interrupted"] and d["signal"] == "end of label input"
    assert "interrupted (end of label input): the robot holds" in r.stderr
    assert Store.open(store).episodes[S.SUCCESS].tolist()[:1] == [True]


def test_ctrl_d_at_the_label_prompt_is_the_end_of_answers(monkeypatch):
    """Ctrl-D at the terminal prompt (Typer's Abort) ends the answers like the end of piped input,
    instead of failing the run with `Error: <robot>: Abort:`."""
    import typer

    from aloe_cli.commands.rollout import _StatusLine

    def ctrl_d(*args, **kwargs):
        raise typer.Abort()

    monkeypatch.setattr(typer, "prompt", ctrl_d)
    with pytest.raises(EOFError):
        _StatusLine().ask_label({"episode": 0, "length": 3})


def _bad(cli, store, *args):
    r = cli("rollout", "--policy", "rollout_plugins:constant", "--into", store, "--max-steps", 5, *args)
    assert r.exit_code == 2, r
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
    return r.stderr.strip()


def test_cli_bad_input(cli, tmp_path, aloha_dir):
    store = tmp_path / "store"
    assert _bad(cli, store, "--intervene", "bogus") == \
        "Error: --intervene: 'bogus' is not one of none, expert-on-stall, keyboard, teleop"
    assert _bad(cli, store, "--label", "ask") == "Error: --label: 'ask' is not one of auto, prompt"
    assert _bad(cli, store, "--robot", "nonsense") == \
        "Error: --robot: expected sim:..., remote:..., lerobot:... or package.module:factory, got 'nonsense'"
    assert _bad(cli, store, "--robot", "sim:no-such-task-v3").startswith(
        "Error: sim:no-such-task-v3: --robot: unknown Meta-World task 'no-such-task-v3'")
    assert _bad(cli, store, "--policy-arg", "chunk_size=2", "--execute-steps", 3) == \
        "Error: --execute-steps: must be between 1 and the policy's chunk size 2, got 3"
    assert _bad(cli, store, "--execute-steps", 0) == "Error: --execute-steps: must be at least 1, got 0"
    assert _bad(cli, store, "--policy-arg", "action_dim=3") == \
        f"Error: rollout_plugins:constant: --policy: policy action_dim is 3 but the robot sim:{TASK} takes 4 numbers"
    assert _bad(cli, store, "--intervene", "teleop") == f"Error: --intervene: the robot sim:{TASK} has no teleoperator"
    assert _bad(cli, store, "--intervene", "keyboard") == \
        "Error: --intervene keyboard: needs an interactive terminal on stdin"
    assert _bad(cli, store, "--robot-arg", "wheels=4") == \
        f"Error: sim:{TASK}: --robot-arg: the simulator takes no option 'wheels'"
    assert not store.exists()
    src, _ = aloha_dir
    assert cli("ingest", store, src).exit_code == 0
    assert _bad(cli, store) == (f"Error: {store}: observation.state: the robot sim:{TASK} has 39 numbers but the "
                                "store holds 14; roll out into another store")
    assert len(Store.open(store).episodes) == 3
    # --into under a file: refused before the robot moves (it failed at the first commit, a traceback).
    (tmp_path / "afile").write_text("")
    assert _bad(cli, tmp_path / "afile" / "sub") == (f"Error: {tmp_path / 'afile' / 'sub'}: cannot be created: "
                                                     f"{tmp_path / 'afile'} is not a directory")
    # A driver's own bad limits are refused too: a NaN max_delta passed NaN on, a negative one moved
    # the arm backwards.
    for value in ("nan", "-1"):
        assert _bad(cli, tmp_path / "s2", "--robot-arg", f"max_delta={value}") == (
            f"Error: sim:{TASK}: max_delta: must be a number > 0, got {value}")
    assert _bad(cli, tmp_path / "s2", "--robot-arg", "report_success=maybe") == (
        f"Error: sim:{TASK}: report_success: must be true or false, got 'maybe'")
    assert not (tmp_path / "s2").exists()


def test_cli_refuses_an_into_that_cannot_be_written_before_the_robot_moves(cli, tmp_path, monkeypatch):
    """Found before the robot moves, not at the first commit once the episode had run (`Error: /proc/x: cannot
    be written`, exit 2, the episode lost): /proc takes no new folder, on Linux even for root."""
    if not os.path.isdir("/proc"):
        pytest.skip("needs Linux's /proc")
    assert _bad(cli, "/proc/x").startswith("Error: /proc/x: cannot be created: /proc cannot be written: ")
    # An existing store that takes no new file (as root, no permission bit refuses; the probe is made to fail).
    store = tmp_path / "store"
    assert cli("rollout", "--policy", "rollout_plugins:constant", "--into", store, "--max-steps", 3,
               "--episodes", 1).exit_code == 0
    before = sorted(p.name for p in store.rglob("*"))
    assert not [p for p in before if p.startswith(".aloe-probe")]  # the probe leaves nothing behind

    def denied(**kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(aloe_cli.rollout, "tempfile", type("tempfile", (), {"mkdtemp": staticmethod(denied)}))
    assert _bad(cli, store) == f"Error: {store}: cannot be written: Permission denied"
    assert sorted(p.name for p in store.rglob("*")) == before and len(Store.open(store).episodes) == 1


def _store_with(path, images=(), extras=None) -> None:
    """A store of one simulator-sized episode with these cameras and extra observation columns."""
    T = 3
    ep = Episode(state=np.zeros((T, 39), np.float32), action=np.zeros((T, 4), np.float32), source_key="e0",
                 extras={k: np.zeros((T, d), np.float32) for k, d in (extras or {}).items()},
                 images={k: encode_frames(np.zeros((T, 8, 8, 3), np.uint8)) for k in images})
    with Store.open(path, create=True).writer("rollout:sim", "rollout") as w:
        w.add(ep, fps=80.0)
        w.commit()


def test_cli_refuses_cameras_the_store_does_not_hold_before_the_robot_moves(cli, tmp_path):
    """The store's writer keeps only the store's columns: a camera the store lacks was dropped without a word
    (exit 0), and one the robot lacks left frames without an image (`aloe improve --obs state,images.corner`
    failed later with "frame 80 has no image"). Refused before the simulator starts, so no GL is needed."""
    plain, cams = tmp_path / "plain", tmp_path / "cams"
    assert cli("rollout", "--policy", "rollout_plugins:constant", "--into", plain, "--max-steps", 3,
               "--episodes", 1).exit_code == 0
    _store_with(cams, images=["observation.images.corner"])
    assert _bad(cli, plain, "--robot-arg", "camera=corner") == (
        f"Error: {plain}: observation.images.corner: the robot sim:{TASK} has camera corner but the store holds "
        "no camera; leave out --robot-arg camera or roll out into another store")
    assert _bad(cli, cams) == (
        f"Error: {cams}: observation.images.corner: the robot sim:{TASK} has no camera but the store holds "
        "camera corner; pass --robot-arg camera=corner or roll out into another store")
    assert _bad(cli, cams, "--robot-arg", "camera=topview") == (
        f"Error: {cams}: observation.images.corner: the robot sim:{TASK} has camera topview but the store holds "
        "camera corner; pass --robot-arg camera=corner or roll out into another store")
    assert len(Store.open(plain).episodes) == 1 and len(Store.open(cams).episodes) == 1


def test_extra_observations_must_be_the_stores_too(tmp_path):
    """Other per-frame observations a driver declares (a third-party one, say) were dropped or left null the
    same way; refused before the robot connects, as the cameras are."""
    vel = "observation.velocity"
    plain, fast = tmp_path / "plain", tmp_path / "vel"
    _store_with(plain)
    _store_with(fast, extras={vel: 2})
    bot = SimRobot(TASK, max_steps=3)
    bot.observation_features[vel] = {"dtype": "float32", "shape": [3], "names": None}
    config = RolloutConfig(episodes=1, max_steps=3)
    with pytest.raises(BadInput) as e:
        run_rollouts(bot, constant(0.0), plain, config)
    assert str(e.value) == (f"{plain}: {vel}: the robot sim:{TASK} gives {vel} but the store holds no other "
                            "observation; roll out into another store")
    with pytest.raises(BadInput) as e:
        run_rollouts(bot, constant(0.0), fast, config)
    assert str(e.value) == (f"{fast}: {vel}: the robot sim:{TASK} has 3 numbers but the store holds 2; "
                            "roll out into another store")
    with pytest.raises(BadInput) as e:
        run_rollouts(SimRobot(TASK, max_steps=3), constant(0.0), fast, config)
    assert str(e.value) == (f"{fast}: {vel}: the robot sim:{TASK} gives no other observation but the store holds "
                            f"{vel}; roll out into another store")
    assert not bot.is_connected and len(Store.open(fast).episodes) == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_episode_saves_the_partial_episode(tmp_path, sig):
    store, marker = tmp_path / "store", tmp_path / "marker"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), OMP_NUM_THREADS="1")
    # A still arm never succeeds: 120-step episodes; the marker appears 40 steps into the second.
    p = subprocess.Popen(
        [sys.executable, "-m", "aloe_cli", "rollout", "--policy", "rollout_plugins:constant",
         "--policy-arg", "sleep=0.002", "--policy-arg", f"marker={marker}", "--policy-arg", "after=160",
         "--episodes", "3", "--max-steps", "120", "--into", str(store), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    p.send_signal(sig)
    out, errtext = p.communicate(timeout=60)
    assert p.returncode == 130, errtext
    d = json.loads(out)
    assert d["interrupted"] and d["signal"] == sig.name and d["episodes"] == 2
    assert "everything recorded is saved (an episode cut short as truncated, its outcome unknown)" in errtext
    s = Store.open(store)
    eps = s.episodes
    assert eps[S.LENGTH][0] == 120 and eps[S.SUCCESS][0] == False  # noqa: E712
    assert 40 <= eps[S.LENGTH][1] < 120 and eps[S.TRUNCATED][1] and pd.isna(eps[S.SUCCESS][1])
    # The store is valid: every frame is there, no journal or staging leftovers.
    assert len(pd.read_parquet(store / "frames")) == eps[S.LENGTH].sum()
    assert not (store / S.TXN_FILE).exists() and not any((store / S.STAGING_DIR).iterdir())
    assert sum(len(e) for e in s.iter_episodes()) == eps[S.LENGTH].sum()


def test_a_busy_store_defers_the_commit_and_loses_nothing(sim, tmp_path):
    """Another process writing to the store (an ingest, a compaction) when an episode ends: the episode
    stays pending and the robot goes on; the next commit takes both. Before, the rollout stopped with
    'another aloe process is writing to this store' and the episode was lost."""
    from aloe_cli.store import _Lock

    store = tmp_path / "store"
    run_rollouts(sim, constant(0.0), store, RolloutConfig(episodes=1, max_steps=5))  # the store exists
    other = _Lock(store)  # another writer's lock (flock conflicts across open files, in one process too)
    events = []

    def status(s):
        if s.get("event") in ("episode_end", "store_busy"):
            events.append((s["event"], s.get("episode"), s.get("waiting")))
        if s.get("event") == "episode_end" and s["episode"] == 1:
            other.__enter__()  # taken as episode 1 ends, before its commit
        if s.get("event") == "episode_end" and s["episode"] == 2:
            other.__exit__(None, None, None)

    s = run_rollouts(sim, constant(0.0), store, RolloutConfig(episodes=3, max_steps=5), status=status)
    assert events == [("episode_end", 1, None), ("store_busy", None, False), ("episode_end", 2, None),
                      ("episode_end", 3, None)]
    assert s["commits_deferred"] == 1 and s["episodes"] == 3
    ingests = Store.open(store).manifest["ingests"]
    assert [len(i["episode_ids"]) for i in ingests] == [1, 2, 1]  # episodes 1 and 2 in one commit
    assert len(Store.open(store).episodes) == 4


def test_the_last_commit_waits_for_a_busy_store(sim, tmp_path):
    import threading

    from aloe_cli.store import _Lock

    store = tmp_path / "store"
    other = _Lock(store)
    events = []

    def status(s):
        if s.get("event") == "store_busy":
            events.append(s["waiting"])
        if s.get("event") == "episode_end":
            other.__enter__()  # held while the final commit starts, let go 0.5 s later
            threading.Timer(0.5, other.__exit__, (None, None, None)).start()

    t0 = time.monotonic()
    s = run_rollouts(sim, constant(0.0), store, RolloutConfig(episodes=1, max_steps=5), status=status)
    assert events == [True] and time.monotonic() - t0 >= 0.5  # the commit that ends the run waits
    assert s["commits_deferred"] == 0 and len(Store.open(store).episodes) == 1
