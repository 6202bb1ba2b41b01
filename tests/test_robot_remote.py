"""The remote robot driver against real websocket servers on 127.0.0.1 serving the real simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import serve as ws_serve

from aloe_cli import schema as S
from aloe_cli.errors import RobotError
from aloe_cli.robot import load_robot
from aloe_cli.robot.experts import metaworld_expert
from aloe_cli.robot.remote import RemoteRobot, RobotBridgeServer, packb, unpackb
from aloe_cli.robot.sim import SimRobot
from aloe_cli.rollout import RolloutConfig, run_rollouts
from aloe_cli.store import Store
from conftest import REPO
from rollout_plugins import FixedChunkPolicy, constant

TASK = "drawer-open-v3"


class StopAfter(SimRobot):
    """The simulator, whose bridge vanishes after `n` actions (as a robot process that dies)."""

    server: RobotBridgeServer | None = None
    n: int | None = None

    def send_action(self, action):
        sent = super().send_action(action)
        if self.n is not None and self.steps == self.n:
            threading.Thread(target=self.server.stop, daemon=True).start()
        return sent


@pytest.fixture(scope="module")
def sim():
    robot = StopAfter(TASK, seed=0, max_steps=100)
    robot.connect()
    yield robot
    robot.disconnect()


@pytest.fixture
def bridge(sim):
    sim.n = None
    server = RobotBridgeServer(sim, port=0, watchdog_s=0.2).start()
    sim.server = server
    yield server
    server.stop()


def test_msgpack_numpy_round_trip_matches_openpi_layout():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = packb({"x": a, "s": np.float64(2.5), "t": "text"})
    import msgpack

    plain = msgpack.unpackb(raw, raw=False)
    assert plain["x"] == {b"__ndarray__": True, b"data": a.tobytes(), b"dtype": "<f4", b"shape": [2, 3]}
    back = unpackb(raw)
    np.testing.assert_array_equal(back["x"], a)
    assert back["s"] == 2.5 and back["t"] == "text"


def test_normal_run_through_the_bridge(bridge, tmp_path, cli):
    robot = load_robot(f"remote:{bridge.url}")
    s = run_rollouts(robot, metaworld_expert(TASK, chunk_size=5), tmp_path / "s",
                     RolloutConfig(episodes=2, max_steps=100, policy_id="expert"))
    assert s["episodes"] == 2 and s["success_rate"] == 1.0 and s["robot"] == f"remote:{bridge.url}"
    eps = Store.open(tmp_path / "s").episodes
    assert eps[S.SUCCESS].tolist() == [True, True] and eps[S.TASK].tolist() == [TASK] * 2
    assert (eps[S.FPS] == 80.0).all() and set(eps[S.SOURCE]) == {f"rollout:remote:{bridge.url}"}
    assert not robot.is_connected  # run_rollouts disconnected what it connected
    # The same through the command line, with the expert taking over on stall through the bridge.
    r = cli("rollout", "--robot", f"remote:{bridge.url}", "--policy", "rollout_plugins:constant",
            "--episodes", 1, "--max-steps", 30, "--intervene", "expert-on-stall", "--into", tmp_path / "c", "--json")
    assert r.exit_code == 0, r
    d = json.loads(r.stdout)
    assert d["episodes"] == 1 and d["intervention_frames"] == 30 - 16 and d["interventions"] == 1


def test_the_store_records_the_seed_the_served_robot_was_made_with(tmp_path):
    """Seed and episode length belong to the robot side: the client's --seed is not sent, so the
    episodes record the server's (they recorded the client's, which did not apply)."""
    served = SimRobot(TASK, seed=3, max_steps=40)
    served.connect()
    server = RobotBridgeServer(served, port=0, watchdog_s=0.2).start()
    try:
        robot = load_robot(f"remote:{server.url}", seed=0, max_steps=20)
        run_rollouts(robot, metaworld_expert(TASK, chunk_size=5), tmp_path / "s",
                     RolloutConfig(episodes=1, max_steps=20, seed=0))
        assert (robot.seed, robot.max_steps) == (3, 40)
    finally:
        server.stop()
        served.disconnect()
    record = Store.open(tmp_path / "s").manifest["ingests"][-1]["options"]
    assert record["config"]["seed"] == 3 and record["config"]["max_steps"] == 20  # the client's limit applies too
    # A served robot that names no seed (a real arm): the store records none, not the client's --seed.
    served = SimRobot(TASK, seed=3, max_steps=40)
    served.connect()
    served.seed = None
    server = RobotBridgeServer(served, port=0, watchdog_s=0.2).start()
    try:
        run_rollouts(load_robot(f"remote:{server.url}", seed=5), metaworld_expert(TASK, chunk_size=5), tmp_path / "s",
                     RolloutConfig(episodes=1, max_steps=5, seed=5))
    finally:
        server.stop()
        served.disconnect()
    assert Store.open(tmp_path / "s").manifest["ingests"][-1]["options"]["config"]["seed"] is None


def test_the_robot_sides_teleoperator_takes_over_through_the_bridge(sim, bridge, tmp_path):
    from aloe_cli.robot.experts import ExpertOnStall

    sim.teleop = ExpertOnStall(TASK, patience=5, takeover_steps=10)  # the robot side decides
    try:
        robot = RemoteRobot(bridge.url)
        s = run_rollouts(robot, constant(0.0), tmp_path / "s", RolloutConfig(episodes=1, max_steps=30,
                                                                              intervene="teleop"))
    finally:
        sim.teleop = None
    f = next(Store.open(tmp_path / "s").iter_episodes())
    starts = np.flatnonzero(f.is_intervention & ~np.r_[False, f.is_intervention[:-1]])
    assert s["interventions"] == len(starts) >= 2 and starts[0] == 6
    assert np.abs(f.action[f.is_intervention]).sum() > 0 and (f.action[~f.is_intervention] == 0).all()


def test_server_disappears_mid_episode(sim, bridge, tmp_path):
    sim.n = 25
    holds = sim.holds
    robot = RemoteRobot(bridge.url, timeout_s=5)
    with pytest.raises(RobotError) as e:
        run_rollouts(robot, constant(0.0), tmp_path / "s", RolloutConfig(episodes=2, max_steps=100))
    assert str(e.value).startswith(f"{bridge.url}: connection to the robot bridge lost")
    assert sim.holds > holds  # the robot side held when its server stopped
    eps = Store.open(tmp_path / "s").episodes
    assert eps[S.TRUNCATED].tolist() == [True] and eps[S.SUCCESS].isna().all()
    # Every action the robot confirmed is recorded (the last reply may be lost with the connection).
    assert 24 <= eps[S.LENGTH][0] and sim.steps - 1 <= eps[S.LENGTH][0] <= sim.steps


def test_a_stopped_bridge_closes_its_connections_whatever_websockets_does(sim, bridge, tmp_path, monkeypatch):
    """websockets 16's server shutdown() (the newest release for Python 3.10) closes only the listening
    socket: the client went on driving the robot after stop(). The bridge closes its connections itself."""
    ws = bridge._server
    if hasattr(ws.shutdown_notifier, "send"):  # websockets 17: do what 16's shutdown() does, no more
        monkeypatch.setattr(ws, "shutdown", lambda: (ws.socket.close(), ws.shutdown_notifier.send(b"x")))
    sim.n = 10
    with pytest.raises(RobotError) as e:
        run_rollouts(RemoteRobot(bridge.url, timeout_s=5), constant(0.0), tmp_path / "s",
                     RolloutConfig(episodes=1, max_steps=100))
    assert str(e.value).startswith(f"{bridge.url}: connection to the robot bridge lost")
    assert Store.open(tmp_path / "s").episodes[S.LENGTH].tolist()[0] <= 11


def test_bridge_process_killed_mid_episode(tmp_path):
    """The robot's own process dies (kill -9): the client saves what it recorded, truncated."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    server = subprocess.Popen([sys.executable, "-m", "aloe_cli.robot.remote", f"sim:{TASK}", "--port", "0"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith(f"serving sim:{TASK} on ws://127.0.0.1:"), server.stderr.read()
        url = line.split(" on ")[1].strip()

        class KillAt(FixedChunkPolicy):
            def sample(self, observations, num_samples):
                if self.calls == 10:
                    server.kill()
                    server.wait()
                return super().sample(observations, num_samples)

        with pytest.raises(RobotError) as e:
            run_rollouts(RemoteRobot(url, timeout_s=5), KillAt([[0.0] * 4] * 2), tmp_path / "s",
                         RolloutConfig(episodes=1, max_steps=100))
        assert str(e.value).startswith(f"{url}: connection to the robot bridge lost")
        eps = Store.open(tmp_path / "s").episodes
        assert eps[S.LENGTH].tolist() == [20] and eps[S.TRUNCATED].tolist() == [True]
    finally:
        server.kill()
        server.wait()


def _raw_server(reply):
    """A websocket server that says hello like a bridge, then answers every request with `reply(msg)`."""
    hello = {"type": "hello", "protocol": 1, "name": "raw", "fps": 10.0, "realtime": False, "task": "t",
             "observation_features": {"observation.state": {"dtype": "float32", "shape": [3], "names": None}},
             "action_features": {"action": {"dtype": "float32", "shape": [4], "names": None, "low": [-1] * 4,
                                            "high": [1] * 4, "max_delta": None}},
             "teleop": False}

    def handler(ws):
        ws.send(reply.get("hello", packb(hello)) if isinstance(reply, dict) else packb(hello))
        try:
            for data in ws:
                out = reply(unpackb(data)) if callable(reply) else None
                if out is not None:
                    ws.send(out)
        except Exception:
            pass

    server = ws_serve(handler, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"ws://127.0.0.1:{server.socket.getsockname()[1]}"


def _obs_reply(state):
    return packb({"type": "observation", "observation": {"observation.state": state, "task": "t"},
                  "status": {"done": False, "success": None, "reward": None, "progress": None}})


@pytest.mark.parametrize("case,expected", [
    ("bytes", "malformed message from the robot bridge: ExtraData"),
    ("text", "malformed message from the robot bridge: ValueError: expected a binary frame, got a str frame"),
    ("no-type", "malformed message from the robot bridge: expected a map with a 'type', got [1, 2]"),
    ("shape", "malformed message from the robot bridge: observation.state should be a (3,) array, got (5,)"),
    ("wrong", "malformed message from the robot bridge: expected 'ok' for 'reset', got 'sent'"),
    ("error", "the robot bridge answered 'reset' with an error: arm fault"),
])
def test_malformed_messages_from_the_bridge(tmp_path, case, expected):
    def reply(msg):
        if msg["type"] == "reset":
            return {"wrong": packb({"type": "sent"}), "error": packb({"type": "error", "message": "arm fault"})}.get(
                case, packb({"type": "ok", "status": {"done": False}}))
        if msg["type"] == "observe":
            return {"bytes": b"\x91\x01\x02", "text": "hello", "no-type": packb([1, 2]),
                    "shape": _obs_reply(np.zeros(5, np.float32))}.get(case, _obs_reply(np.zeros(3, np.float32)))
        return packb({"type": "ok"})

    server, url = _raw_server(reply)
    try:
        with pytest.raises(RobotError) as e:
            run_rollouts(RemoteRobot(url, timeout_s=2), constant(0.0), tmp_path / "s",
                         RolloutConfig(episodes=1, max_steps=5))
        assert str(e.value).startswith(f"{url}: {expected}"), str(e.value)
        assert not (tmp_path / "s").exists()  # nothing was sent, nothing recorded
    finally:
        server.shutdown()


def test_malformed_message_mid_episode_saves_the_episode(sim, tmp_path):
    class BadAfter(RobotBridgeServer):
        def _dispatch(self, kind, msg):
            out = super()._dispatch(kind, msg)
            if kind == "act" and self.robot.steps == 7:
                out["action"] = "not an array"
            return out

    sim.n = None
    server = BadAfter(sim, port=0).start()
    try:
        with pytest.raises(RobotError) as e:
            run_rollouts(RemoteRobot(server.url), constant(0.0), tmp_path / "s", RolloutConfig(episodes=1))
        assert str(e.value) == (f"{server.url}: malformed message from the robot bridge: 'sent' should carry a "
                                "(4,) action, got str")
        eps = Store.open(tmp_path / "s").episodes
        assert eps[S.LENGTH].tolist() == [6] and eps[S.TRUNCATED].tolist() == [True]
    finally:
        server.stop()


def test_hello_must_be_a_hello(tmp_path):
    server, url = _raw_server({"hello": packb({"type": "observation"})})
    try:
        with pytest.raises(RobotError) as e:
            RemoteRobot(url, timeout_s=2).connect()
        assert str(e.value) == f"{url}: malformed hello from the robot bridge: ValueError: expected a hello, got 'observation'"
    finally:
        server.shutdown()
    with pytest.raises(RobotError) as e:
        RemoteRobot("ws://127.0.0.1:9", timeout_s=1).connect()
    assert str(e.value).startswith("ws://127.0.0.1:9: cannot connect to the robot bridge")


def test_bridge_refuses_bad_requests_and_holds(sim, bridge):
    holds, steps = sim.holds, None
    with ws_connect(bridge.url) as ws:
        hello = unpackb(ws.recv())
        assert hello["type"] == "hello" and hello["name"] == f"sim:{TASK}" and hello["fps"] == 80.0
        assert hello["action_features"]["action"]["shape"] == [4] and hello["teleop"] is False

        def ask(raw):
            ws.send(raw)
            return unpackb(ws.recv())

        assert ask(packb({"type": "reset"}))["type"] == "ok"
        steps = sim.steps
        assert ask(b"\x91\x01\x02") == {"type": "error",
                                             "message": "malformed request: ExtraData: unpack(b) received extra data."}
        assert ask(packb({"type": "observe"}))["type"] == "observation"
        r = ask(packb({"type": "act", "action": np.array([np.nan, 0, 0, 0], np.float32)}))
        assert r == {"type": "error", "message": "refusing a non-finite action"}
        assert sim.steps == steps  # never reached the simulator
        r = ask(packb({"type": "act", "action": np.zeros(3, np.float32)}))
        assert r == {"type": "error", "message": "'act' needs a (4,) array, got (3,)"}
        assert ask(packb({"type": "dance"}))["message"].startswith("unknown request type 'dance'")
        assert ask(packb({"nope": 1}))["message"] == "expected a map with a 'type', got {'nope': 1}"
        assert sim.holds - holds >= 4  # every error held the robot
        # The connection still works after errors.
        r = ask(packb({"type": "act", "action": np.array([2.0, 0, 0, 0], np.float32)}))
        assert r["type"] == "sent" and r["action"].tolist() == [1.0, 0.0, 0.0, 0.0]
        # The watchdog: no request for 0.2 s after an action -> the robot holds.
        before = sim.holds
        time.sleep(0.5)
        assert sim.holds == before + 1
        # A second client is refused while this one drives.
        with ws_connect(bridge.url) as other:
            assert unpackb(other.recv()) == {"type": "error", "message": "another client is driving this robot"}
        assert ask(packb({"type": "close"})) == {"type": "ok"}


def test_client_vanishing_makes_the_robot_hold(sim, bridge):
    holds = sim.holds
    ws = ws_connect(bridge.url)
    ws.recv()
    ws.send(packb({"type": "reset"}))
    ws.recv()
    ws.close()
    deadline = time.monotonic() + 2
    while sim.holds == holds and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim.holds > holds
