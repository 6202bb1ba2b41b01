"""A policy served over openpi's websocket protocol (``--policy ws://host:port``).

The protocol (openpi ``serving/websocket_policy_server.py`` / ``openpi_client``): on connect the
server sends its metadata (a msgpack map); then for each observation the client sends one
msgpack map and the server answers ``{"actions": (horizon, action_dim), ...}``. Numpy arrays
travel in openpi's msgpack-numpy form (`aloe_cli.msgpack_numpy`). A server-side exception
arrives as a text frame holding the traceback, followed by close code 1011.

One observation per request, as openpi's server expects. Requests are pipelined on one
connection with at most `max_in_flight` unanswered (the server answers in order), which
hides the network round trip; `num_samples` > 1 sends the same observation again.
"""

from __future__ import annotations

import io
from collections import deque

import numpy as np

from .. import schema as S
from ..errors import PolicyError
from ..msgpack_numpy import packb, unpackb


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(empty message)"


class WebsocketPolicy:
    """A `ChunkPolicy` backed by an openpi-style policy server.

    url: ``ws://host:port``; obs_map: store column -> server key (unmapped keys are sent under
    their store names); max_in_flight: unanswered requests at most; timeout: seconds to wait for
    each answer; chunk_size / action_dim: H and A (default: the server metadata's
    ``action_horizon`` or ``chunk_size``, and ``action_dim``); api_key: sent as openpi's client
    sends it (``Authorization: Api-Key ...``). The server's horizon may exceed H (the first H
    actions are used), never fall short of it.
    """

    def __init__(self, url: str, obs_map: dict | None = None, max_in_flight: int = 8, timeout: float = 60.0,
                 chunk_size: int | None = None, action_dim: int | None = None, connect_timeout: float = 10.0,
                 api_key: str | None = None):
        self.url = str(url)
        if not self.url.startswith(("ws://", "wss://")):
            raise PolicyError("expected ws://host:port or wss://host:port", self.url, "--policy")
        self.obs_map = {str(k): str(v) for k, v in (obs_map or {}).items()}
        for name, value in (("max_in_flight", max_in_flight), ("chunk_size", chunk_size), ("action_dim", action_dim)):
            if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1):
                raise PolicyError(f"{name} must be an integer >= 1, got {value!r}", self.url, "--policy-arg")
        for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise PolicyError(f"{name} must be a number of seconds > 0, got {value!r}", self.url, "--policy-arg")
        self.max_in_flight = int(max_in_flight)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.api_key = None if api_key is None else str(api_key)
        self._ws = None
        self.metadata = self._connect()
        H = chunk_size or self.metadata.get("action_horizon") or self.metadata.get("chunk_size")
        A = action_dim or self.metadata.get("action_dim")
        if not isinstance(H, (int, np.integer)) or not isinstance(A, (int, np.integer)):
            self.close()
            raise PolicyError("the server's metadata gives no integer action_horizon / action_dim; pass "
                              "--policy-arg chunk_size=H --policy-arg action_dim=A", self.url, "--policy-arg")
        self.chunk_size, self.action_dim = int(H), int(A)
        extra = [k for k in self.obs_map if k not in (S.OBS_STATE, S.TASK)]
        self.observation_keys = (S.OBS_STATE, S.TASK, *extra)

    # ------------------------------------------------------------------ connection
    def _connect(self) -> dict:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        try:
            headers = {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None  # as openpi_client
            ws = connect(self.url, compression=None, max_size=None, open_timeout=self.connect_timeout,
                         additional_headers=headers)
        except InvalidURI as e:
            raise PolicyError(f"not a websocket address: {e}", self.url, "--policy") from None
        except (OSError, TimeoutError, InvalidHandshake) as e:
            raise PolicyError(f"cannot connect: {type(e).__name__}: {e}", self.url, "--policy") from None
        self._ws = ws
        try:
            first = ws.recv(timeout=self.timeout)
        except TimeoutError:
            self.close()
            raise PolicyError(f"the server sent no metadata within {self.timeout:g} s of connecting",
                              self.url, "--policy") from None
        except ConnectionClosed as e:
            self.close()
            raise PolicyError(f"the server closed the connection before sending metadata ({_closed(e)})",
                              self.url, "--policy") from None
        if isinstance(first, str):
            self.close()
            raise PolicyError(f"server error: {_last_line(first)}", self.url, "--policy")
        try:
            metadata = unpackb(first)
        except Exception as e:  # noqa: BLE001 - any decoding failure means a foreign protocol
            self.close()
            raise PolicyError(f"the server's metadata is not msgpack: {e}", self.url, "--policy") from None
        if not isinstance(metadata, dict):
            self.close()
            raise PolicyError(f"the server's metadata is a {type(metadata).__name__}, not a map", self.url, "--policy")
        return metadata

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    def __enter__(self) -> "WebsocketPolicy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ requests
    def _request(self, observations: dict, b: int) -> bytes:
        """The b-th observation as one openpi request (keys mapped, images decoded)."""
        msg = {}
        for key, value in observations.items():
            item = value[b]
            if item is None:
                continue
            if isinstance(item, (bytes, bytearray, memoryview)):  # an encoded camera frame from the store
                from PIL import Image

                item = np.asarray(Image.open(io.BytesIO(bytes(item))).convert("RGB"))
            msg[self.obs_map.get(key, key)] = item
        return packb(msg)

    def _actions(self, message) -> np.ndarray:
        if isinstance(message, str):
            self.close()
            raise PolicyError(f"server error: {_last_line(message)}", self.url, "--policy")
        try:
            reply = unpackb(message)
        except Exception as e:  # noqa: BLE001
            raise PolicyError(f"the server's reply is not msgpack: {e}", self.url, "--policy") from None
        if not isinstance(reply, dict) or "actions" not in reply:
            keys = sorted(map(str, reply)) if isinstance(reply, dict) else type(reply).__name__
            raise PolicyError(f"the server's reply has no 'actions' (got {keys})", self.url, "actions")
        actions = np.asarray(reply["actions"], dtype=np.float32)
        if actions.ndim == 3 and actions.shape[0] == 1:
            actions = actions[0]
        H, A = self.chunk_size, self.action_dim
        if actions.ndim != 2 or actions.shape[1] != A:
            raise PolicyError(f"have shape {actions.shape}; expected (horizon, {A})", self.url, "actions")
        if actions.shape[0] < H:
            raise PolicyError(f"the server's horizon is {actions.shape[0]}, shorter than the chunk size {H}",
                              self.url, "actions")
        return actions[:H]

    def _queued_error(self) -> str | None:
        """After the connection closed: the server's error text if it is still queued unread."""
        ws = self._ws
        if ws is None:
            return None
        try:
            while True:
                message = ws.recv(timeout=0.5)
                if isinstance(message, str):
                    return message
        except Exception:  # noqa: BLE001 - ConnectionClosed once the queue is empty
            return None

    def sample(self, observations: dict, num_samples: int) -> np.ndarray:
        """float32 (B, num_samples, H, A): B * num_samples requests, at most max_in_flight unanswered."""
        from websockets.exceptions import ConnectionClosed

        batch = len(next(iter(observations.values())))
        N = int(num_samples)
        if N < 1:
            raise PolicyError(f"must be >= 1, got {num_samples}", field="num_samples")
        if self._ws is None:
            self._connect()
        requests = [self._request(observations, b) for b in range(batch)]
        out = np.empty((batch, N, self.chunk_size, self.action_dim), dtype=np.float32)
        total, sent, pending = batch * N, 0, deque()
        try:
            while pending or sent < total:
                while sent < total and len(pending) < self.max_in_flight:
                    self._ws.send(requests[sent // N])
                    pending.append(sent)
                    sent += 1
                try:
                    message = self._ws.recv(timeout=self.timeout)
                except TimeoutError:
                    self.close()
                    raise PolicyError(f"no reply within {self.timeout:g} s", self.url, "--policy") from None
                i = pending.popleft()
                out[i // N, i % N] = self._actions(message)
        except ConnectionClosed as e:
            text = self._queued_error()
            self.close()
            if text is not None:
                raise PolicyError(f"server error: {_last_line(text)}", self.url, "--policy") from None
            raise PolicyError(f"connection lost after {sent - len(pending)} of {total} requests ({_closed(e)})",
                              self.url, "--policy") from None
        except PolicyError:
            self.close()
            raise
        return out


def _closed(e) -> str:
    """A close event in words: code and reason, or 'no close frame' when the TCP connection dropped."""
    rcvd = getattr(e, "rcvd", None)
    if rcvd is None:
        return "no close frame"
    return f"close code {rcvd.code}" + (f": {rcvd.reason}" if rcvd.reason else "")
