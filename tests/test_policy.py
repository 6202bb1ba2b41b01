"""Chunk policies: plugin / directory / ws:// SPECs, the openpi adapter against a real loopback
server, the msgpack-numpy wire format, and the built-in flow-matching policy trained by (weighted)
behaviour cloning on stores whose right action is a known function of the state."""

from __future__ import annotations

import asyncio
import io
import json
import math
import shutil
import threading
import traceback

import msgpack
import numpy as np
import pytest
import torch

from aloe_cli import schema as S
from aloe_cli.episode import Episode
from aloe_cli.errors import BadInput, PolicyError
from aloe_cli.msgpack_numpy import packb, unpackb
from aloe_cli.policy import (check_against_store, load_policy, observation_keys, parse_kv, sample_checked)
from aloe_cli.policy.builtin import (FlowChunkPolicy, PolicyConfig, load_builtin, masked_flow_loss,
                                     train_policy)
from aloe_cli.chunks import chunk_windows, frame_episode_end
from aloe_cli.store import Store

torch.set_num_threads(1)

H = 4  # chunk size in the BC tests
DECAY = 0.9  # state[:2] shrinks by this factor each step under the "good" controller a = -state[:2]


def make_store(path, n_eps=24, T=25, seed=0, bad_eps=(), task="reach", tasks=None):
    """Episodes of the controller a_t = -x_t[:2], x_{t+1}[:2] = x_t[:2] + 0.1 a_t, so the chunk from
    state x is a_{t+k} = -DECAY**k x[:2]. Episodes listed in `bad_eps` record the opposite action
    (+x) on the same states. Returns the opened store."""
    rng = np.random.default_rng(seed)
    store = Store.open(path, create=True)
    with store.writer("synthetic", "synthetic") as w:
        for e in range(n_eps):
            x0 = rng.uniform(-1, 1, size=3).astype(np.float32)
            decay = (DECAY ** np.arange(T, dtype=np.float32))[:, None]
            state = np.concatenate([x0[None, :2] * decay, np.repeat(x0[None, 2:], T, 0)], axis=1)
            action = -state[:, :2] * (-1.0 if e in bad_eps else 1.0)
            w.add(Episode(state=state, action=action, source_key=f"ep{e}", source_index=e, success=True,
                          task=tasks[e] if tasks else task, policy_id="bad" if e in bad_eps else "good"))
        w.commit()
    return Store.open(path)


def true_chunks(state: np.ndarray) -> np.ndarray:
    return -(DECAY ** np.arange(H))[None, :, None] * state[:, None, :2]


TINY = dict(chunk_size=H, hidden=64, depth=2, obs_layers=2, batch_size=128, lr=2e-3, eval_every=200,
            log_every=100, device="cpu", warmup_steps=20)


# ---------------------------------------------------------------- pure functions, worked by hand

def test_masked_flow_loss_by_hand():
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [5.0, 5.0]]])  # (B=2, H=2, A=2)
    target = torch.zeros(2, 2, 2)
    valid = torch.tensor([[True, True], [True, False]])
    # chunk 0: (1 + 4 + 9 + 16) / 4 = 7.5; chunk 1: only step 0 counts: (0 + 0) / 2 = 0.
    loss, info = masked_flow_loss(pred, target, valid)
    assert loss.item() == pytest.approx(3.75) and float(info["policy/unweighted_flow_loss"]) == pytest.approx(3.75)
    loss, info = masked_flow_loss(pred, target, valid, torch.tensor([0.5, 1.5]))
    assert loss.item() == pytest.approx(0.5 * 7.5 / 2) and float(info["policy/flow_loss"]) == pytest.approx(1.875)


def test_parse_kv_parses_numbers_and_booleans():
    assert parse_kv(["n=3", "scale=0.5", "name=abc", "flag=true", "x=null", "url=a=b"], "--policy-arg") == {
        "n": 3, "scale": 0.5, "name": "abc", "flag": True, "x": None, "url": "a=b"}
    with pytest.raises(PolicyError) as e:
        parse_kv(["oops"], "--policy-arg")
    assert str(e.value) == "--policy-arg: expected key=value, got 'oops'"


def test_msgpack_numpy_wire_format_is_openpis():
    obs = {"state": np.arange(6, dtype=np.float32).reshape(2, 3), "img": np.zeros((2, 2, 3), np.uint8),
           "prompt": "pick", "n": np.int64(7), "nested": {"a": [1, 2.5, b"raw"]}}
    data = packb(obs)
    raw = msgpack.unpackb(data, raw=False)  # no hook: what any msgpack reader sees
    assert raw["state"] == {b"__ndarray__": True, b"data": obs["state"].tobytes(), b"dtype": "<f4", b"shape": [2, 3]}
    assert raw["n"] == {b"__npgeneric__": True, b"data": 7, b"dtype": "<i8"}
    back = unpackb(data)
    np.testing.assert_array_equal(back["state"], obs["state"])
    assert back["img"].dtype == np.uint8 and back["img"].shape == (2, 2, 3)
    assert back["prompt"] == "pick" and back["n"] == np.int64(7) and back["nested"] == {"a": [1, 2.5, b"raw"]}
    with pytest.raises(ValueError, match="Unsupported dtype: object"):
        packb({"bad": np.array(["x", None], dtype=object)})


# ---------------------------------------------------------------- plugins and bad SPECs

PLUGIN = '''
import numpy as np

class Linear:
    def __init__(self, horizon, scale, action_dim=2):
        self.chunk_size, self.action_dim, self.scale = horizon, action_dim, scale

    def sample(self, observations, num_samples):
        s = np.asarray(observations["observation.state"], np.float32)[:, :self.action_dim]
        k = np.arange(1, self.chunk_size + 1, dtype=np.float32)
        chunk = self.scale * s[:, None, :] * k[None, :, None]
        return np.repeat(chunk[:, None], num_samples, axis=1)

def make(horizon=3, scale=1.0, action_dim=2):
    return Linear(horizon, scale, action_dim)

def no_sample():
    return object()

class Half:
    chunk_size = 2.5
    action_dim = 2
    def sample(self, observations, num_samples): ...

def half():
    return Half()

def broken():
    raise ValueError("no checkpoint at /nowhere")

def wrong_shape():
    p = Linear(3, 1.0)
    p.sample = lambda observations, num_samples: np.zeros((1, 1, 1, 1), np.float32)
    return p

def nan():
    p = Linear(3, 1.0)
    p.sample = lambda observations, num_samples: np.full((len(observations["observation.state"]), num_samples, 3, 2), np.nan)
    return p
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A real plugin module on disk, found from the current directory as `aloe` finds it."""
    (tmp_path / "aloe_test_plugin.py").write_text(PLUGIN)
    (tmp_path / "aloe_test_broken.py").write_text("import a_module_that_does_not_exist\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # undone after the test
    return tmp_path


def test_plugin_factory_gets_parsed_args(plugin_dir):
    args = parse_kv(["horizon=4", "scale=0.5"], "--policy-arg")
    policy = load_policy("aloe_test_plugin:make", args)
    assert (policy.chunk_size, policy.action_dim) == (4, 2)
    assert observation_keys(policy) == (S.OBS_STATE, S.TASK)
    state = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]], np.float32)
    out = sample_checked(policy, {S.OBS_STATE: state, S.TASK: ["a", "b"]}, 3)
    assert out.shape == (2, 3, 4, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 2, 3], [2.0, 4.0])  # 0.5 * state * 4
    check_against_store(policy, 2, "aloe_test_plugin:make", state_dim=3, chunk_size=4)


@pytest.mark.parametrize("spec,args,message", [
    ("nowhere/policy", {}, "nowhere/policy: --policy: no such policy: expected a directory, "
                           "package.module:factory or ws://host:port"),
    ("aloe_test_broken:make", {}, "aloe_test_broken:make: --policy: cannot import 'aloe_test_broken': "
                                  "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'"),
    ("aloe_test_plugin:missing", {}, "aloe_test_plugin:missing: --policy: module 'aloe_test_plugin' has no "
                                     "attribute 'missing'"),
    ("aloe_test_plugin:no_sample", {}, "aloe_test_plugin:no_sample: --policy: the policy has no "
                                       "`sample(observations, num_samples)` method"),
    ("aloe_test_plugin:half", {}, "aloe_test_plugin:half: --policy: the policy has no integer `chunk_size`"),
    ("aloe_test_plugin:broken", {}, "aloe_test_plugin:broken: --policy: factory raised ValueError: "
                                    "no checkpoint at /nowhere"),
    ("aloe_test_plugin:make", {"bogus": 1}, "aloe_test_plugin:make: --policy-arg: factory rejected the "
                                            "arguments ['bogus']: make() got an unexpected keyword argument 'bogus'"),
    ("aloe_test_plugin:", {}, "aloe_test_plugin:: --policy: expected package.module:factory"),
])
def test_bad_specs_are_clear_errors(plugin_dir, spec, args, message):
    with pytest.raises(PolicyError) as e:
        load_policy(spec, args)
    assert str(e.value) == message and e.value.exit_code == 2


def test_bad_spec_files_and_dirs(plugin_dir):
    (plugin_dir / "a_file.txt").write_text("x")
    (plugin_dir / "empty_dir").mkdir()
    with pytest.raises(PolicyError) as e:
        load_policy("a_file.txt")
    assert str(e.value) == ("a_file.txt: --policy: is a file; expected a policy directory written by aloe, "
                            "package.module:factory or ws://host:port")
    with pytest.raises(PolicyError) as e:
        load_policy("empty_dir")
    assert str(e.value) == "empty_dir: --policy: is not a policy directory written by aloe (no policy.json)"
    with pytest.raises(PolicyError) as e:
        load_policy("aloe_test_plugin:make", obs_map={"task": "prompt"})
    assert str(e.value) == "aloe_test_plugin:make: --policy-obs-map: --policy-obs-map applies to ws:// policies only"


def test_shape_checks_against_the_store(plugin_dir):
    policy = load_policy("aloe_test_plugin:make", {"action_dim": 3})
    with pytest.raises(PolicyError) as e:
        check_against_store(policy, 2, "aloe_test_plugin:make")
    assert str(e.value) == ("aloe_test_plugin:make: --policy: policy action_dim is 3 but the store's actions "
                            "have 2 numbers")
    with pytest.raises(PolicyError) as e:
        check_against_store(policy, 3, "p", chunk_size=5)
    assert str(e.value) == "p: --policy: policy chunk_size is 3, shorter than the chunk size 5"
    obs = {S.OBS_STATE: np.zeros((2, 3), np.float32)}
    with pytest.raises(PolicyError) as e:
        sample_checked(load_policy("aloe_test_plugin:wrong_shape"), obs, 4, "aloe_test_plugin:wrong_shape")
    assert str(e.value) == ("aloe_test_plugin:wrong_shape: --policy: sample() returned shape (1, 1, 1, 1), "
                            "expected (2, 4, 3, 2)")
    with pytest.raises(PolicyError) as e:
        sample_checked(load_policy("aloe_test_plugin:nan"), obs, 4, "n")
    assert str(e.value) == "n: --policy: sample() returned NaN or inf"


# ---------------------------------------------------------------- openpi websocket server on loopback

class OpenpiServer:
    """A policy server speaking openpi's protocol (metadata on connect, msgpack-numpy observation ->
    {"actions": (horizon, action_dim)}, errors as a traceback text frame + close 1011), built with
    `websockets` on 127.0.0.1 and run in a thread. It reads requests as they arrive and answers them
    in order after `delay` seconds, counting how many were unanswered at most."""

    def __init__(self, infer, metadata, delay=0.0):
        self.infer, self.metadata, self.delay = infer, metadata, delay
        self.requests: list[dict] = []
        self.received = self.replied = self.max_outstanding = 0
        self.headers: list = []

    def __enter__(self):
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(ready),), daemon=True)
        self.thread.start()
        assert ready.wait(10)
        self.url = f"ws://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)

    async def _main(self, ready):
        from websockets.asyncio.server import serve

        self.stop = asyncio.Event()
        def record(connection, request):  # the handshake's headers, then the normal handshake
            self.headers.append(request.headers.get("Authorization"))

        async with serve(self._handler, "127.0.0.1", 0, compression=None, max_size=None,
                         process_request=record) as server:
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await self.stop.wait()

    async def _handler(self, ws):
        await ws.send(packb(self.metadata))
        queue: asyncio.Queue = asyncio.Queue()

        async def reader():
            try:
                async for message in ws:
                    self.received += 1
                    self.max_outstanding = max(self.max_outstanding, self.received - self.replied)
                    await queue.put(message)
            finally:
                await queue.put(None)

        task = asyncio.create_task(reader())
        try:
            while (message := await queue.get()) is not None:
                obs = unpackb(message)
                self.requests.append(obs)
                await asyncio.sleep(self.delay)
                if obs.get("prompt") == "vanish":  # the process dies: no reply, no close frame
                    ws.transport.abort()
                    return
                try:
                    reply = self.infer(obs)
                except Exception:
                    await ws.send(traceback.format_exc())
                    await ws.close(code=1011, reason="Internal server error. Traceback included in previous frame.")
                    return
                reply["server_timing"] = {"infer_ms": 0.1}
                await ws.send(packb(reply))
                self.replied += 1
        finally:
            task.cancel()


def fixed_policy(obs: dict) -> dict:
    """A fixed 'VLA': horizon 6, 2 action numbers, a function of the state and the prompt."""
    if obs.get("prompt") == "explode":
        raise ValueError("boom: bad observation")
    state = np.asarray(obs["observation/state"], np.float32)
    k = np.arange(1, 7, dtype=np.float32)[:, None]
    actions = state[None, :2] * k + len(obs.get("prompt", ""))
    if "observation/image" in obs:
        img = obs["observation/image"]
        assert img.dtype == np.uint8 and img.ndim == 3
        actions = actions + float(img.mean())
    return {"actions": actions.astype(np.float32)}


OBS_MAP = {S.OBS_STATE: "observation/state", S.TASK: "prompt"}


def test_websocket_policy_matches_the_server(tmp_path):
    state = np.array([[1.0, 2.0, 0.0], [3.0, -1.0, 5.0], [0.5, 0.5, 0.5]], np.float32)
    tasks = ["pick", "place it", "go"]
    meta = {"action_horizon": 6, "action_dim": 2, "policy": "fixed"}
    with OpenpiServer(fixed_policy, meta, delay=0.002) as server:
        policy = load_policy(server.url, {"chunk_size": 4, "max_in_flight": 3, "api_key": "secret"}, obs_map=OBS_MAP)
        assert (policy.chunk_size, policy.action_dim) == (4, 2) and policy.metadata == meta
        out = sample_checked(policy, {S.OBS_STATE: state, S.TASK: tasks}, 2, server.url)
        policy.close()
    k = np.arange(1, 5, dtype=np.float32)[None, :, None]
    want = state[:, None, :2] * k + np.array([len(t) for t in tasks], np.float32)[:, None, None]
    np.testing.assert_allclose(out, np.repeat(want[:, None], 2, axis=1), rtol=1e-6)
    # One observation per request, samples repeat the request, keys mapped, never more than 3 in flight.
    assert len(server.requests) == 6 and server.max_outstanding == 3
    assert server.headers == ["Api-Key secret"]
    assert sorted(server.requests[0]) == ["observation/state", "prompt"]
    assert server.requests[2]["prompt"] == "place it"
    np.testing.assert_array_equal(server.requests[2]["observation/state"], state[1])


def test_websocket_horizon_from_metadata_and_images_decoded():
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((4, 5, 3), 10, np.uint8)).save(buf, format="PNG")
    obs = {S.OBS_STATE: np.ones((2, 3), np.float32), S.TASK: [None, "ab"],
           "observation.images.top": [buf.getvalue()] * 2}
    obs_map = dict(OBS_MAP, **{"observation.images.top": "observation/image"})
    with OpenpiServer(fixed_policy, {"action_horizon": 6, "action_dim": 2}) as server:
        with load_policy(server.url, obs_map=obs_map) as policy:
            assert policy.chunk_size == 6 and "observation.images.top" in observation_keys(policy)
            out = policy.sample(obs, 1)
    assert out.shape == (2, 1, 6, 2)
    np.testing.assert_allclose(out[0, 0, 0], [11.0, 11.0])  # no prompt sent for an unknown task
    np.testing.assert_allclose(out[1, 0, 1], [14.0, 14.0])  # 1 * 2 + len("ab") + image mean 10
    assert "prompt" not in server.requests[0] and server.requests[1]["prompt"] == "ab"


def test_websocket_server_error_and_disconnect_are_reported():
    state = np.zeros((3, 3), np.float32)
    with OpenpiServer(fixed_policy, {"action_horizon": 6, "action_dim": 2}) as server:
        policy = load_policy(server.url, {"max_in_flight": 2}, obs_map=OBS_MAP)
        with pytest.raises(PolicyError) as e:
            policy.sample({S.OBS_STATE: state, S.TASK: ["ok", "explode", "ok"]}, 1)
        assert str(e.value) == f"{server.url}: --policy: server error: ValueError: boom: bad observation"
        # The adapter reconnects for the next batch; a server that vanishes mid-batch is reported.
        with pytest.raises(PolicyError) as e:
            policy.sample({S.OBS_STATE: state, S.TASK: ["vanish", "ok", "ok"]}, 2)
        assert str(e.value) == (f"{server.url}: --policy: connection lost after 0 of 6 requests "
                                "(no close frame)")
        # Replies that do not fit the chunk size or the action size.
        with pytest.raises(PolicyError) as e:
            load_policy(server.url, {"chunk_size": 8}, obs_map=OBS_MAP).sample({S.OBS_STATE: state}, 1)
        assert str(e.value) == f"{server.url}: actions: the server's horizon is 6, shorter than the chunk size 8"
        with pytest.raises(PolicyError) as e:
            load_policy(server.url, {"action_dim": 3}, obs_map=OBS_MAP).sample({S.OBS_STATE: state}, 1)
        assert str(e.value) == f"{server.url}: actions: have shape (6, 2); expected (horizon, 3)"
        with pytest.raises(PolicyError) as e:
            load_policy(server.url, {"retries": 3})
        assert str(e.value).startswith(f"{server.url}: --policy-arg: unknown --policy-arg for a ws:// policy:")
    with OpenpiServer(fixed_policy, {"name": "no sizes"}) as server:
        with pytest.raises(PolicyError) as e:
            load_policy(server.url)
        assert str(e.value) == (f"{server.url}: --policy-arg: the server's metadata gives no integer "
                                "action_horizon / action_dim; pass --policy-arg chunk_size=H --policy-arg action_dim=A")
    url = server.url  # the server is gone now
    with pytest.raises(PolicyError) as e:
        load_policy(url, {"chunk_size": 2, "action_dim": 2})
    assert str(e.value).startswith(f"{url}: --policy: cannot connect: ConnectionRefusedError")


# ---------------------------------------------------------------- the built-in policy: BC

def test_bc_reproduces_a_known_function_of_the_state(tmp_path):
    store = make_store(tmp_path / "store")
    summary = train_policy(store, tmp_path / "pol", PolicyConfig(steps=800, **TINY))
    assert summary["train_episodes"] == 22 and summary["val_episodes"] == 2 and not summary["weighted"]
    assert summary["final_val_loss"] < 0.5 * json.loads(
        (tmp_path / "pol" / S.POLICY_LOG_FILE).read_text().splitlines()[1])["val/flow_loss"]
    fingerprint = store.fingerprint
    frames = store.load_frames()
    state = frames.columns[S.OBS_STATE]
    _, valid = chunk_windows(np.arange(frames.num_frames), frame_episode_end(frames.lengths), H)
    want = true_chunks(state)
    import shutil

    shutil.rmtree(tmp_path / "store")  # the policy loads without the store
    policy = load_policy(str(tmp_path / "pol"))
    obs = {S.OBS_STATE: state, S.TASK: ["reach"] * len(state)}
    out = sample_checked(policy, obs, 16)
    err = np.abs(out.mean(axis=1) - want)[valid]
    assert err.mean() < 0.02 and np.quantile(err, 0.95) < 0.06, (err.mean(), np.quantile(err, 0.95))
    assert out.std(axis=1).mean() < 0.05  # a near-deterministic expert gives a narrow policy
    # Deterministic mode: zero noise, every sample identical and close to the expert.
    det = load_policy(str(tmp_path / "pol"), {"deterministic": True}).sample(obs, 3)
    assert np.array_equal(det[:, 0], det[:, 2])
    assert np.abs(det[:, 0] - want)[valid].mean() < 0.02
    # Unknown task text gets the zero embedding (trained with task dropout): still sane.
    unknown = policy.sample({S.OBS_STATE: state, S.TASK: ["never seen"] * len(state)}, 8)
    assert np.abs(unknown.mean(axis=1) - want)[valid].mean() < 0.03
    doc = json.loads((tmp_path / "pol" / S.POLICY_FILE).read_text())
    assert doc["chunk_size"] == H and doc["action_dim"] == 2 and doc["state_dim"] == 3 and doc["tasks"] == ["reach"]
    assert doc["store"]["fingerprint"] == fingerprint and doc["config"]["steps"] == 800
    assert doc["normalization"]["method"] == "mean_std" and len(doc["normalization"]["action"]["std"]) == 2
    split = json.loads((tmp_path / "pol" / S.POLICY_SPLIT_FILE).read_text())
    assert len(split["train"]) == 22 and len(split["val"]) == 2 and not set(split["train"]) & set(split["val"])


def test_weighted_bc_ignores_zero_weight_episodes(tmp_path):
    bad = set(range(0, 24, 2))  # half the episodes do the opposite on the same states
    store = make_store(tmp_path / "store", bad_eps=bad)
    frames = store.load_frames()
    episode_of = frames.episode_of_frame()
    is_bad = np.isin(episode_of, sorted(bad))
    weights = np.where(is_bad, 0.0, 1.0)
    summary = train_policy(store, tmp_path / "pol", PolicyConfig(steps=800, **TINY), weights=weights)
    assert summary["weighted"] and summary["zero_weight_chunks"] > 0
    train_ids = set(json.loads((tmp_path / "pol" / S.POLICY_SPLIT_FILE).read_text())["train"])
    in_train = np.isin(episode_of, [i for i, e in enumerate(frames.episode_ids) if e in train_ids])
    assert summary["zero_weight_chunks"] == int((in_train & is_bad).sum())
    assert summary["train_chunks"] == int((in_train & ~is_bad).sum())
    policy = load_builtin(tmp_path / "pol")
    state = frames.columns[S.OBS_STATE]
    _, valid = chunk_windows(np.arange(frames.num_frames), frame_episode_end(frames.lengths), H)
    out = policy.sample({S.OBS_STATE: state, S.TASK: ["reach"] * len(state)}, 16).mean(axis=1)
    good, opposite = true_chunks(state), -true_chunks(state)
    far = valid[..., None] & (np.abs(good) > 0.2)  # where the good and the bad chunks are far apart
    err = np.abs(out - good)[far]
    assert err.mean() < 0.05, err.mean()
    assert np.abs(out - opposite)[far].mean() > 0.4


def test_weights_are_checked(tmp_path):
    store = make_store(tmp_path / "store", n_eps=3, T=5)
    cfg = PolicyConfig(steps=1, **TINY)
    cases = [(np.ones(3), "weights: has 3 values but the training data has 15 chunk starts (one per frame)"),
             (np.full(15, -1.0), "weights: contains a negative weight (-1)"),
             (np.full(15, np.nan), "weights: contains NaN or inf"),
             (np.zeros(15), "weights: every training chunk has weight 0")]
    for weights, message in cases:
        with pytest.raises(BadInput) as e:
            train_policy(store, tmp_path / "pol", cfg, weights=weights)
        assert str(e.value) == message
    ids = list(store.episodes[S.EPISODE_ID])
    with pytest.raises(BadInput) as e:  # it would land in both the training and the validation split
        train_policy(store, tmp_path / "pol", cfg, episode_ids=[ids[0], ids[1], ids[0]])
    assert str(e.value) == f"{tmp_path / 'store'}: episode_ids: episode {ids[0]!r} is given more than once"
    assert not (tmp_path / "pol").exists()


def test_training_is_seeded_and_reproducible_on_cpu(tmp_path):
    store = make_store(tmp_path / "store", n_eps=6, T=10)
    cfg = PolicyConfig(steps=30, **TINY)
    train_policy(store, tmp_path / "a", cfg)
    train_policy(store, tmp_path / "b", cfg)
    train_policy(store, tmp_path / "c", PolicyConfig(**dict(TINY, seed=1), steps=30))
    a, b, c = (load_builtin(tmp_path / n) for n in "abc")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.out.weight, c.out.weight)
    obs = {S.OBS_STATE: np.zeros((2, 3), np.float32)}
    np.testing.assert_array_equal(a.sample(obs, 4), b.sample(obs, 4))
    strip = [{k: v for k, v in json.loads(line).items() if k != "time_s"}
             for line in (tmp_path / "a" / S.POLICY_LOG_FILE).read_text().splitlines()]
    assert strip == [{k: v for k, v in json.loads(line).items() if k != "time_s"}
                     for line in (tmp_path / "b" / S.POLICY_LOG_FILE).read_text().splitlines()]
    # The torch-level sampler the critic calls agrees with the numpy one.
    state = torch.randn(5, 3)
    ids = a.task_ids(["reach"] * 5, 5)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    t_out = a.sample_torch(state, 2, ids, generator=g1)
    a._generators.clear()
    a.sample_seed = 3
    np.testing.assert_allclose(a.sample({S.OBS_STATE: state.numpy(), S.TASK: ["reach"] * 5}, 2), t_out.numpy(),
                               atol=1e-6)
    assert torch.equal(a.sample_torch(state, 2, ids, generator=g2), t_out)


def test_builtin_rejects_bad_observations_and_args(tmp_path):
    store = make_store(tmp_path / "store", n_eps=3, T=5)
    train_policy(store, tmp_path / "pol", PolicyConfig(steps=2, **TINY))
    policy = load_builtin(tmp_path / "pol")
    with pytest.raises(PolicyError) as e:
        policy.sample({S.OBS_STATE: np.zeros((2, 5), np.float32)}, 1)
    assert str(e.value) == "observation.state: has shape (2, 5); the policy expects (B, 3)"
    with pytest.raises(PolicyError) as e:
        load_policy(str(tmp_path / "pol"), {"temperature": 0.5})
    assert str(e.value) == (f"{tmp_path / 'pol'}: --policy-arg: unknown argument 'temperature' for a built-in "
                            "policy (known: deterministic, flow_steps, seed, indicator)")
    (tmp_path / "pol" / S.POLICY_WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(PolicyError) as e:
        load_policy(str(tmp_path / "pol"))
    assert str(e.value).startswith(f"{tmp_path / 'pol' / S.POLICY_WEIGHTS_FILE}: does not match policy.json:")


@pytest.mark.parametrize("key, value, message", [
    ("chunk_size", 4, "4 differs from config.chunk_size 2 (the network's)"),
    ("chunk_size", "2", "must be an integer >= 1, got '2'"),
    ("action_dim", 0, "must be an integer >= 1, got 0"),
    ("state_dim", None, "must be an integer >= 1, got None"),
])
def test_policy_json_sizes_are_checked_on_load(cli, tmp_path, key, value, message):
    """The top-level sizes are what `improve --policy` and `aloe rounds` read; they must agree with the network."""
    store = make_store(tmp_path / "store", n_eps=3, T=5)
    train_policy(store, tmp_path / "pol", PolicyConfig(steps=2, **dict(TINY, chunk_size=2)))
    doc_path = tmp_path / "pol" / S.POLICY_FILE
    doc = json.loads(doc_path.read_text())
    doc[key] = value
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(PolicyError) as e:
        load_policy(str(tmp_path / "pol"))
    assert str(e.value) == f"{doc_path}: {key}: {message}"
    r = cli("improve", tmp_path / "store", "--policy", tmp_path / "pol", "--out", tmp_path / "next", "--steps", 1)
    assert r.exit_code == 2 and r.stderr == f"Error: {doc_path}: {key}: {message}\n", r.stderr
    assert not (tmp_path / "next").exists()


def test_a_failed_training_run_leaves_nothing(tmp_path):
    store = make_store(tmp_path / "store", n_eps=3, T=5)

    def interrupt(step, total, info):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_policy(store, tmp_path / "pol", PolicyConfig(steps=5, **dict(TINY, log_every=2)), progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


# ---------------------------------------------------------------- the CLI

def test_improve_cli_bc_then_fine_tune(cli, tmp_path):
    store = tmp_path / "store"
    make_store(store, n_eps=4, T=8)
    out = tmp_path / "pol"
    r = cli("improve", store, "--method", "bc", "--out", out, "--chunk-size", 3, "--steps", 20,
            "--batch-size", 16, "--device", "cpu", "--json")
    assert r.exit_code == 0, r
    assert r.stderr == ""  # stderr is not a terminal: no progress bar, and no blank line where it was
    d = json.loads(r.stdout)
    assert d["method"] == "bc" and d["chunk_size"] == 3 and d["steps"] == 20 and d["train_episodes"] == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [S.POLICY_FILE, S.POLICY_WEIGHTS_FILE, S.POLICY_LOG_FILE, S.POLICY_SPLIT_FILE])
    assert json.loads((out / S.POLICY_FILE).read_text())["training"]["method"] == "bc"
    r = cli("improve", store, "--out", tmp_path / "ft", "--policy", out, "--steps", 5, "--batch-size", 8,
            "--device", "cpu")
    assert r.exit_code == 0, r
    assert r.stdout.startswith(f"round 1 (ft): trained bc policy from {out} (H=3, action 2) on 3 episodes / 24 chunks "
                               "(validation: 1 episodes), 5 steps in ")
    assert r.stdout.splitlines()[0].endswith(f"-> {tmp_path / 'ft'}")
    doc = json.loads((tmp_path / "ft" / S.POLICY_FILE).read_text())
    assert doc["chunk_size"] == 3 and doc["training"]["init_from"] == str(out)
    assert load_policy(str(tmp_path / "ft")).chunk_size == 3


def test_improve_cli_bad_input(cli, tmp_path):
    store = tmp_path / "store"
    make_store(store, n_eps=2, T=5)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    init = tmp_path / "init"
    assert cli("improve", store, "--out", init, "--chunk-size", 2, "--steps", 1, "--device", "cpu").exit_code == 0
    cases = [
        (["--method", "filtered"], "Error: --scores: --method filtered needs the advantages of `aloe score` (--scores "
                                   "SCORES_DIR)"),
        (["--method", "dagger"], "Error: --method: unknown method 'dagger'; available: aloe, awr, filtered, "
                                 "conditioned, bc"),
        (["--out", tmp_path / "taken"], f"Error: {tmp_path / 'taken'}: --out: already exists; pass --force to replace it"),
        (["--policy", init, "--chunk-size", 5], "Error: --chunk-size: 5 differs from the --policy base's chunk size 2; "
                                                "a fine-tune keeps the base's network (leave the option out)"),
        (["--policy", init, "--obs", "state,images.top"], "Error: --obs: state,images.top differs from the --policy "
                                                          "base's obs state; a fine-tune keeps the base's network "
                                                          "(leave the option out)"),
        (["--policy", tmp_path / "taken"], f"Error: {tmp_path / 'taken'}: --policy: is not a policy directory written "
                                           "by aloe (no policy.json)"),
        (["--lr", 0], "Error: --lr: must be > 0, got 0.0"),
        (["--device", "tpu"], "Error: --device: 'tpu' is not auto, cpu, cuda or cuda:N"),
    ]
    for args, message in cases:
        if "--out" not in args:
            args = args + ["--out", tmp_path / "new"]
        r = cli("improve", store, "--steps", 1, *args)
        assert r.exit_code == 2, (args, r)
        assert r.stderr == message + "\n", (args, r)
        assert not (tmp_path / "new").exists()
    r = cli("improve", tmp_path / "nostore", "--out", tmp_path / "new")
    assert r.exit_code == 2 and "store does not exist" in r.stderr
    shutil.copytree(init, tmp_path / "badobs")
    doc = json.loads((tmp_path / "badobs" / S.POLICY_FILE).read_text())
    doc["config"]["obs"] = "state,,x"
    (tmp_path / "badobs" / S.POLICY_FILE).write_text(json.dumps(doc))
    r = cli("improve", store, "--policy", tmp_path / "badobs", "--obs", "state", "--out", tmp_path / "new")
    assert r.exit_code == 2 and r.stderr == (f"Error: {tmp_path / 'badobs' / S.POLICY_FILE}: config.obs: empty name in "
                                             "'state,,x'\n"), r.stderr
    for same in (["--obs", "observation.state"], ["--chunk-size", 2]):  # the base's own: accepted
        r = cli("improve", store, "--policy", init, *same, "--steps", 1, "--device", "cpu", "--out", tmp_path / "same")
        assert r.exit_code == 0, (same, r)
        shutil.rmtree(tmp_path / "same")
    if not torch.cuda.is_available():
        r = cli("improve", store, "--out", tmp_path / "new", "--device", "cuda")
        assert r.exit_code == 2 and r.stderr == "Error: --device: CUDA is not available on this machine; use --device cpu\n"
    r = cli("improve", store, "--out", tmp_path / "taken", "--force", "--steps", 1, "--device", "cpu")
    assert r.exit_code == 2 and "--force replaces only a policy directory" in r.stderr  # not a policy: kept
    assert (tmp_path / "taken" / "x").read_text() == "x"
    (init / "x").write_text("x")
    r = cli("improve", store, "--out", init, "--force", "--chunk-size", 2, "--steps", 1, "--device", "cpu")
    assert r.exit_code == 0 and (init / S.POLICY_FILE).exists() and not (init / "x").exists()  # a policy: replaced


def test_flow_policy_module_shapes():
    cfg = PolicyConfig(chunk_size=5, hidden=16, depth=1, obs_layers=1, task_dim=4)
    p = FlowChunkPolicy(cfg, 7, 3, tasks=["a", "b"])
    ids = p.task_ids(["b", "zzz", None], 3)
    assert ids.tolist() == [2, 0, 0]
    assert torch.equal(p.task_embed(torch.tensor([0])), torch.zeros(1, 4))  # unseen text -> zeros
    out = p.sample({S.OBS_STATE: np.zeros((3, 7), np.float32), S.TASK: ["b", "zzz", None]}, 2)
    assert out.shape == (3, 2, 5, 3) and out.dtype == np.float32 and np.isfinite(out).all()
    assert math.isfinite(float(p.sample_torch(torch.zeros(1, 7), 1, deterministic=True).sum()))


def test_large_batches_are_sampled_in_bounded_pieces():
    p = FlowChunkPolicy(PolicyConfig(chunk_size=3, hidden=16, depth=1, obs_layers=1), 2, 2)
    state = torch.randn(10, 2)
    whole = p.sample_torch(state, 4, deterministic=True)
    p.max_rows = 8  # 2 observations x 4 samples per pass
    pieces = p.sample_torch(state, 4, deterministic=True)
    assert pieces.shape == (10, 4, 3, 2) and torch.allclose(whole, pieces, atol=1e-6)
    assert p.sample_torch(state, 4).shape == (10, 4, 3, 2)
