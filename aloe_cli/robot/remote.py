"""``remote:ws://host:port``: drive a robot served by another process, over websocket + msgpack.

A real robot's own process (next to the hardware) serves it with one call::

    from aloe_cli.robot.remote import serve
    serve(my_robot, host="0.0.0.0", port=8765)   # any object with the `Robot` interface

and ``aloe rollout --robot remote:ws://robot-host:8765 ...`` drives it from another machine.
``python -m aloe_cli.robot.remote sim:drawer-open-v3 --port 8765`` serves the simulator.

Protocol (version 1)
--------------------
Every message is one binary websocket frame holding a msgpack map; numpy arrays are packed
as openpi packs them (``{b"__ndarray__": True, b"data": bytes, b"dtype": dtype.str,
b"shape": [...]}``). The server speaks first::

    server: {"type": "hello", "protocol": 1, "name": str, "fps": float, "realtime": bool,
             "task": str | None, "observation_features": {...}, "action_features": {...},
             "teleop": bool, "seed": int | None, "max_steps": int | None}

``seed`` and ``max_steps`` (optional) are what the served robot was made with: they belong to the
robot side, so the client's own are not sent; the client records the server's seed.

Then the client sends requests, each answered by exactly one reply:

    {"type": "reset"}                    -> {"type": "ok", "status": STATUS}
    {"type": "observe"}                  -> {"type": "observation", "observation": {...}, "status": STATUS}
    {"type": "act", "action": (A,) f32}  -> {"type": "sent", "action": (A,) f32, "status": STATUS}
    {"type": "hold"}                     -> {"type": "ok", "status": STATUS}
    {"type": "teleop"}                   -> {"type": "teleop", "active": bool, "action": (A,) f32 | None}
    {"type": "close"}                    -> {"type": "ok"}, then the server closes the connection

    STATUS = {"done": bool, "success": bool | None, "reward": float | None, "progress": float | None}

Any request may be answered ``{"type": "error", "message": str}`` instead (a malformed or
unknown request, a non-finite action, a failure of the robot).

Safety on the robot side: the server holds its robot when a client disconnects, when no
request comes for ``watchdog_s`` seconds after an action, after any error, and when it stops.
Only one client drives the robot at a time (a second one gets an error and is closed).
On the client side, a lost connection, a silence longer than ``timeout_s`` or a malformed
message raises `RobotError`; the rollout loop saves the episode so far as truncated.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import numpy as np

from .. import msgpack_numpy
from ..msgpack_numpy import packb
from ..errors import BadInput, RobotError
from . import EpisodeStatus

PROTOCOL = 1
log = logging.getLogger("aloe.robot.remote")


def unpackb(data: bytes) -> Any:
    """A bridge message: one binary frame of msgpack-numpy (openpi's wire format)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"expected a binary frame, got a {type(data).__name__} frame")
    return msgpack_numpy.unpackb(data)


def _status_dict(s: EpisodeStatus) -> dict:
    return {"done": bool(s.done), "success": s.success, "reward": s.reward, "progress": s.progress}


def _status_from(d: Any) -> EpisodeStatus:
    if not isinstance(d, dict) or "done" not in d:
        raise ValueError(f"status must be a map with 'done', got {d!r:.80}")
    opt = lambda v, t: None if v is None else t(v)  # noqa: E731
    return EpisodeStatus(done=bool(d["done"]), success=opt(d.get("success"), bool),
                         reward=opt(d.get("reward"), float), progress=opt(d.get("progress"), float))


def _optional_int(d: dict, key: str) -> int | None:
    v = d.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
        raise ValueError(f"{key} must be an integer, got {v!r:.80}")
    return v


# ---------------------------------------------------------------------- client

class RemoteRobot:
    """The client side: a `Robot` whose calls travel to a `RobotBridgeServer`."""

    def __init__(self, url: str, timeout_s: float = 10.0, seed: int | None = None, max_steps: int | None = None,
                 **unused):
        if not url.startswith(("ws://", "wss://")):
            raise BadInput(f"expected remote:ws://host:port, got remote:{url}", field="--robot")
        if unused:
            raise BadInput(f"the remote driver takes no option {sorted(unused)[0]!r}", f"remote:{url}", "--robot-arg")
        self.url = url
        self.name = f"remote:{url}"
        self.timeout_s = float(timeout_s)
        self.ws = None
        # Filled from the server's hello (seed and episode length belong to the robot side).
        self.fps, self.realtime, self.task = 0.0, True, None
        self.seed = self.max_steps = None
        self.observation_features: dict = {}
        self.action_features: dict = {}
        self.teleop = None
        self._status = EpisodeStatus()

    @property
    def is_connected(self) -> bool:
        return self.ws is not None

    def connect(self) -> None:
        if self.ws is not None:
            return
        from websockets.sync.client import connect

        try:
            self.ws = connect(self.url, open_timeout=self.timeout_s, max_size=None, compression=None)
        except Exception as e:
            raise RobotError(f"{self.url}: cannot connect to the robot bridge: {type(e).__name__}: {e}") from None
        hello = self._recv()
        try:
            if hello.get("type") != "hello":
                raise ValueError(f"expected a hello, got {hello.get('type')!r}")
            if hello.get("protocol") != PROTOCOL:
                raise ValueError(f"protocol {hello.get('protocol')!r}, this client speaks {PROTOCOL}")
            self.fps = float(hello["fps"])
            self.realtime = bool(hello["realtime"])
            self.task = hello.get("task")
            self.seed, self.max_steps = (_optional_int(hello, k) for k in ("seed", "max_steps"))
            self.observation_features = dict(hello["observation_features"])
            self.action_features = dict(hello["action_features"])
            int(self.observation_features["observation.state"]["shape"][0])
            int(self.action_features["action"]["shape"][0])
        except (KeyError, TypeError, ValueError) as e:
            self._close()
            raise RobotError(f"{self.url}: malformed hello from the robot bridge: {type(e).__name__}: {e}") from None
        self.teleop = RemoteTeleop(self) if hello.get("teleop") else None

    def disconnect(self) -> None:
        if self.ws is None:
            return
        try:
            self.ws.send(packb({"type": "close"}))
            self.ws.recv(timeout=min(self.timeout_s, 1.0))
        except Exception:
            pass
        self._close()

    def _close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        self.ws = None

    # ------------------------------------------------------------------ messages
    def _recv(self) -> dict:
        from websockets.exceptions import ConnectionClosed

        try:
            data = self.ws.recv(timeout=self.timeout_s)
        except TimeoutError:
            raise RobotError(f"{self.url}: the robot bridge did not answer within {self.timeout_s:g} s") from None
        except ConnectionClosed as e:
            self.ws = None
            raise RobotError(f"{self.url}: connection to the robot bridge lost ({e})") from None
        try:
            msg = unpackb(data)
        except Exception as e:
            raise RobotError(f"{self.url}: malformed message from the robot bridge: {type(e).__name__}: {e}") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise RobotError(f"{self.url}: malformed message from the robot bridge: expected a map with a "
                             f"'type', got {msg!r:.80}")
        return msg

    def _call(self, request: dict, expect: str) -> dict:
        from websockets.exceptions import ConnectionClosed

        if self.ws is None:
            raise RobotError(f"{self.url}: not connected")
        try:
            self.ws.send(packb(request))
        except ConnectionClosed as e:
            self.ws = None
            raise RobotError(f"{self.url}: connection to the robot bridge lost ({e})") from None
        msg = self._recv()
        if msg["type"] == "error":
            raise RobotError(f"{self.url}: the robot bridge answered {request['type']!r} with an error: "
                             f"{msg.get('message')}")
        if msg["type"] != expect:
            raise RobotError(f"{self.url}: malformed message from the robot bridge: expected {expect!r} "
                             f"for {request['type']!r}, got {msg['type']!r}")
        try:
            if "status" in msg:
                self._status = _status_from(msg["status"])
        except (TypeError, ValueError) as e:
            raise RobotError(f"{self.url}: malformed message from the robot bridge: {e}") from None
        return msg

    # ------------------------------------------------------------------ Robot
    def reset(self) -> None:
        self._call({"type": "reset"}, "ok")

    def get_observation(self) -> dict:
        msg = self._call({"type": "observe"}, "observation")
        obs = msg.get("observation")
        state = obs.get("observation.state") if isinstance(obs, dict) else None
        want = self.observation_features["observation.state"]["shape"][0]
        if not isinstance(state, np.ndarray) or state.shape != (want,):
            raise RobotError(f"{self.url}: malformed message from the robot bridge: observation.state should be "
                             f"a ({want},) array, got {getattr(state, 'shape', type(state).__name__)}")
        return obs

    def send_action(self, action: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(action, dtype=np.float32).reshape(-1)
        msg = self._call({"type": "act", "action": a}, "sent")
        sent = msg.get("action")
        if not isinstance(sent, np.ndarray) or sent.shape != a.shape:
            raise RobotError(f"{self.url}: malformed message from the robot bridge: 'sent' should carry a "
                             f"{a.shape} action, got {getattr(sent, 'shape', type(sent).__name__)}")
        return sent.astype(np.float32)

    def hold(self) -> None:
        if self.ws is None:  # connection lost: the bridge holds its robot when a client drops
            return
        self._call({"type": "hold"}, "ok")

    def status(self) -> EpisodeStatus:
        return self._status


class RemoteTeleop:
    """The served robot's own teleoperator, seen from the client."""

    def __init__(self, robot: RemoteRobot):
        self.robot = robot
        self._action: np.ndarray | None = None

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def reset(self) -> None:
        self._action = None

    def wants_control(self, observation: dict, status: EpisodeStatus) -> bool:
        msg = self.robot._call({"type": "teleop"}, "teleop")
        self._action = msg.get("action") if msg.get("active") else None
        return self._action is not None

    def get_action(self, observation: dict) -> np.ndarray:
        if self._action is None:
            self.wants_control(observation, self.robot.status())
        if self._action is None:
            raise RobotError(f"{self.robot.url}: the teleoperator has no action")
        return np.asarray(self._action, dtype=np.float32)


# ---------------------------------------------------------------------- server

class BadRequest(ValueError):
    """A request the bridge cannot carry out; its message is sent back as the error."""


class RobotBridgeServer:
    """Serves one `Robot` to one client at a time (see the module doc for the protocol).

    ``port=0`` picks a free port (read it from `.port`). Use `start()`/`stop()` to run it in a
    background thread, or `serve_forever()` to block.
    """

    def __init__(self, robot, host: str = "127.0.0.1", port: int = 8765, watchdog_s: float = 0.5):
        from websockets.sync.server import serve as ws_serve

        self.robot = robot
        self.watchdog_s = float(watchdog_s)
        self._busy = threading.Lock()
        self._open: set = set()  # connections being served (stop() closes them: websockets 16 leaves them open)
        self._server = ws_serve(self._handle, host, port, max_size=None, compression=None)
        self.host = host
        self.port = int(self._server.socket.getsockname()[1])
        self.url = f"ws://{host}:{self.port}"
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []  # messages of the error replies sent (for the robot side's logs)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def start(self) -> "RobotBridgeServer":
        self._thread = threading.Thread(target=self.serve_forever, name="aloe-robot-bridge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: close the connections and hold the robot."""
        self._server.shutdown()
        for ws in list(self._open):  # going away (1001); the client's next request fails
            with contextlib.suppress(Exception):
                ws.close(1001)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._hold()

    def __enter__(self) -> "RobotBridgeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _hold(self) -> None:
        try:
            self.robot.hold()
        except Exception as e:
            log.warning("hold failed: %s", e)

    def _hello(self) -> dict:
        r = self.robot
        return {"type": "hello", "protocol": PROTOCOL, "name": r.name, "fps": float(r.fps),
                "realtime": bool(r.realtime), "task": r.task,
                "observation_features": r.observation_features, "action_features": r.action_features,
                "teleop": getattr(r, "teleop", None) is not None,
                **{k: v for k in ("seed", "max_steps")
                   if isinstance(v := getattr(r, k, None), int) and not isinstance(v, bool)}}

    def _handle(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        if not self._busy.acquire(blocking=False):
            try:
                ws.send(packb({"type": "error", "message": "another client is driving this robot"}))
            finally:
                ws.close()
            return
        self._open.add(ws)
        try:
            ws.send(packb(self._hello()))
            moving = False  # an action was sent and no hold since: the watchdog is armed
            while True:
                try:
                    data = ws.recv(timeout=self.watchdog_s if moving else None)
                except TimeoutError:
                    self._hold()
                    moving = False
                    continue
                except ConnectionClosed:
                    return
                kind = None
                try:
                    try:
                        msg = unpackb(data)
                    except Exception as e:
                        raise BadRequest(f"malformed request: {type(e).__name__}: {e}") from None
                    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
                        raise BadRequest(f"expected a map with a 'type', got {msg!r:.80}")
                    kind = msg["type"]
                    reply = self._dispatch(kind, msg)
                    moving = kind == "act"
                except Exception as e:  # answered, and the robot holds; the connection stays up
                    text = str(e) if isinstance(e, BadRequest) else f"{type(e).__name__}: {e}"
                    self.errors.append(text)
                    reply = {"type": "error", "message": text}
                    self._hold()
                    moving = False
                ws.send(packb(reply))
                if kind == "close":
                    return
        except ConnectionClosed:
            return
        finally:
            self._open.discard(ws)
            self._hold()
            self._busy.release()

    def _dispatch(self, kind: str, msg: dict) -> dict:
        r = self.robot
        if kind == "observe":
            return {"type": "observation", "observation": r.get_observation(), "status": _status_dict(r.status())}
        if kind == "act":
            a = msg.get("action")
            want = (int(r.action_features["action"]["shape"][0]),)
            if not isinstance(a, np.ndarray) or a.shape != want:
                raise BadRequest(f"'act' needs a {want} array, got {getattr(a, 'shape', type(a).__name__)}")
            a = a.astype(np.float32)
            if not np.isfinite(a).all():
                raise BadRequest("refusing a non-finite action")
            sent = np.asarray(r.send_action(a), dtype=np.float32)
            return {"type": "sent", "action": sent, "status": _status_dict(r.status())}
        if kind == "reset":
            r.reset()
            if getattr(r, "teleop", None) is not None:
                r.teleop.reset()
            return {"type": "ok", "status": _status_dict(r.status())}
        if kind == "hold":
            r.hold()
            return {"type": "ok", "status": _status_dict(r.status())}
        if kind == "teleop":
            teleop = getattr(r, "teleop", None)
            if teleop is None:
                raise BadRequest("this robot has no teleoperator")
            obs = r.get_observation()
            active = bool(teleop.wants_control(obs, r.status()))
            action = np.asarray(teleop.get_action(obs), dtype=np.float32) if active else None
            return {"type": "teleop", "active": active, "action": action}
        if kind == "close":
            return {"type": "ok"}
        raise BadRequest(f"unknown request type {kind!r} (expected observe, act, reset, hold, teleop or close)")


def serve(robot, host: str = "0.0.0.0", port: int = 8765, watchdog_s: float = 0.5) -> None:
    """Serve `robot` until Ctrl-C: connect it, answer one client at a time, hold it on exit."""
    if not robot.is_connected:
        robot.connect()
    server = RobotBridgeServer(robot, host, port, watchdog_s)
    log.info("serving %s on ws://%s:%d", robot.name, host, server.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        robot.disconnect()


def main(argv: list[str] | None = None) -> None:
    """``python -m aloe_cli.robot.remote SPEC``: serve a robot SPEC (e.g. sim:drawer-open-v3) over websocket."""
    import argparse

    from . import load_robot

    p = argparse.ArgumentParser(prog="python -m aloe_cli.robot.remote", description=main.__doc__)
    p.add_argument("robot", help="a --robot SPEC to serve, e.g. sim:drawer-open-v3")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=150)
    p.add_argument("--watchdog", type=float, default=0.5, help="hold after this many seconds without a request")
    args = p.parse_args(argv)
    import signal

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)  # SIGTERM stops like Ctrl-C: the robot holds
    robot = load_robot(args.robot, seed=args.seed, max_steps=args.max_steps)
    robot.connect()
    server = RobotBridgeServer(robot, args.host, args.port, args.watchdog)
    print(f"serving {robot.name} on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        robot.disconnect()


if __name__ == "__main__":
    main()
