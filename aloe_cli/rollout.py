"""The rollout loop: run a chunk policy on a robot and commit every episode to the store.

`run_rollouts(robot, policy, store_path, config)` is the library side of `aloe rollout`:

1. request a chunk from the policy for the current observation, with a deadline: a late policy
   makes the robot hold, and is logged (for a realtime robot the policy runs in a worker thread
   and the robot holds while it waits; in simulation it runs inline, since simulated time stands
   still meanwhile); execute the chunk's first k actions at the robot's control rate; request the next;
2. before every step, ask the intervention source (if any) whether a person — or the scripted
   expert standing in for one — takes over; while it does, its actions are sent and recorded
   with ``is_intervention = True``, and the policy resumes with a fresh chunk afterwards;
3. every action passes `robot.safety.make_safe` (NaN -> hold, clip to the driver's bounds,
   limit the per-step change); the action recorded is the one ``send_action`` returns;
4. each finished episode is committed at once (or every ``commit_every`` episodes) through the
   store's atomic writer, the one `aloe ingest` uses (source
   ``rollout:<robot>``, format ``rollout``), with policy_id, task, outcome, intervention flags,
   rewards (where the robot gives them) and timestamps; the ingest names the policy as typed
   (``policy``) and, for a policy directory, by what does not depend on the folder it was typed in
   (``policy_path``, resolved, and ``policy_fingerprint``, of its weights: `aloe rounds` reads them).

Outcomes: the robot's own (`EpisodeStatus.success` when it ends the episode: the simulator
knows); else, with ``label="prompt"``, the answer of `label_fn` (success / failure / discard);
else unknown, and the episode counts as truncated. An episode stopped by Ctrl-C/SIGTERM, a lost
robot connection, a failing policy or too many holds is saved as truncated, outcome unknown.

SIGINT/SIGTERM (when called from the main thread) set a stop flag: the loop holds the robot,
commits the partial episode and returns a summary with ``interrupted: True`` (`aloe rollout`
then exits 130). Nothing recorded is lost.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin TimeoutError before 3.11
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import schema as S
from .episode import Episode
from .errors import AloeError, BadInput, PolicyError, RobotError, StoreBusy, StoreError, check_seed
from .policy import as_chunks
from .robot import EpisodeStatus, Robot, Teleoperator, action_dim, action_limits, state_dim
from .robot.safety import SafetyLimits, make_safe

log = logging.getLogger("aloe.rollout")

INTERVENE_MODES = ("none", "expert-on-stall", "keyboard", "teleop")
LABEL_MODES = ("auto", "prompt")
LABEL_ANSWERS = ("success", "failure", "discard")
_STOPPED = object()  # what `_sample_threaded` returns when the run is stopped (a policy may return anything)


@dataclass(frozen=True)
class RolloutConfig:
    """How `run_rollouts` runs (saved with every episode it commits)."""

    episodes: int = 10  # episodes to run
    max_steps: int = 150  # actions per episode at most (T); the simulator fails an episode at its own limit
    execute_steps: int | None = None  # actions executed from each chunk before the next request (k); None: all H
    fps: float | None = None  # pace the loop at this rate; None: the robot's rate if realtime, else unpaced
    policy_id: str | None = None  # recorded as each episode's policy_id (None: "policy")
    intervene: str = "none"  # none | expert-on-stall | keyboard | teleop
    label: str = "auto"  # auto: the robot's outcome or unknown; prompt: ask label_fn where the robot does not know
    seed: int = 0  # seed the robot was made with (recorded; `aloe rollout --seed` passes it to the driver)
    deadline_s: float = 1.0  # a chunk later than this makes the robot hold (and is logged)
    policy_timeout_s: float = 30.0  # no chunk after this long: the episode is saved truncated and the run fails
    max_delta: float | None = None  # per-step action change limit; None: the driver's declared max_delta
    stall_patience: int = 15  # expert-on-stall: steps without progress before the expert takes over
    stall_min_progress: float = 0.1  # expert-on-stall: the rise in progress (sim reward, 0..10) that counts
    takeover_steps: int = 40  # expert-on-stall: steps the expert drives before handing back (or to success)
    reset_time_s: float = 0.0  # wait between episodes while the robot holds (a person resets the scene)
    max_holds: int = 50  # consecutive holds (NaN actions) before the episode is stopped as truncated
    commit_every: int = 1  # finished episodes per atomic commit (1: each at once; more: faster simulated runs)
    policy_thread: bool | None = None  # run the policy in a worker thread; None: for realtime robots only
    # One chunk request on the first observation before the first episode's clock starts, its chunk
    # discarded: a policy's first call (CUDA kernels, lazy set-up) can take seconds and miss the deadline.
    # None: where the policy runs in its worker thread (real time). A policy with rng_state() has it restored.
    warmup: bool | None = None

    def check(self, chunk_size: int | None) -> None:
        """Raise BadInput naming the option for values that cannot run."""
        if self.episodes < 1:
            raise BadInput(f"must be at least 1, got {self.episodes}", field="--episodes")
        if self.max_steps < 1:
            raise BadInput(f"must be at least 1, got {self.max_steps}", field="--max-steps")
        if self.execute_steps is not None and self.execute_steps < 1:
            raise BadInput(f"must be at least 1, got {self.execute_steps}", field="--execute-steps")
        if self.execute_steps is not None and chunk_size is not None and self.execute_steps > chunk_size:
            raise BadInput(f"must be between 1 and the policy's chunk size {chunk_size}, got {self.execute_steps}",
                           field="--execute-steps")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise BadInput(f"must be a finite number > 0, got {self.fps}", field="--fps")
        check_seed(self.seed)
        if self.intervene not in INTERVENE_MODES:
            raise BadInput(f"{self.intervene!r} is not one of {', '.join(INTERVENE_MODES)}", field="--intervene")
        if self.label not in LABEL_MODES:
            raise BadInput(f"{self.label!r} is not one of {', '.join(LABEL_MODES)}", field="--label")
        if not (math.isfinite(self.deadline_s) and self.deadline_s > 0):
            raise BadInput(f"must be a finite number > 0, got {self.deadline_s}", field="--deadline")
        if not math.isfinite(self.policy_timeout_s):
            raise BadInput(f"must be a finite number, got {self.policy_timeout_s}", field="--policy-timeout")
        if self.policy_timeout_s < self.deadline_s:  # name the one moved from its default (the timeout if both)
            if self.policy_timeout_s == RolloutConfig.policy_timeout_s and self.deadline_s != RolloutConfig.deadline_s:
                raise BadInput(f"must be at most --policy-timeout ({self.policy_timeout_s}), got {self.deadline_s}",
                               field="--deadline")
            raise BadInput(f"must be at least --deadline ({self.deadline_s}), got {self.policy_timeout_s}",
                           field="--policy-timeout")
        if not (math.isfinite(self.reset_time_s) and self.reset_time_s >= 0):
            raise BadInput(f"must be a finite number >= 0, got {self.reset_time_s}", field="--reset-time")
        if self.commit_every < 1:
            raise BadInput(f"must be at least 1, got {self.commit_every}", field="--commit-every")
        if self.max_delta is not None and not (math.isfinite(self.max_delta) and self.max_delta > 0):
            raise BadInput(f"must be a finite number > 0, got {self.max_delta}", field="--max-delta")


def make_intervention(mode: str, robot: Robot, config: RolloutConfig, keys=None) -> Teleoperator | None:
    """The intervention source for ``--intervene MODE``.

    - ``expert-on-stall``: Meta-World's scripted expert for the robot's task, on stall;
    - ``teleop``: the robot's own teleoperator (`robot.teleop`);
    - ``keyboard``: a key toggles takeover (`keys`: a `robot.keyboard.KeyToggle`); the robot's
      teleoperator drives if it has one, else the scripted expert for a Meta-World task.
    """
    if mode == "none":
        return None
    if mode == "expert-on-stall":
        from .robot.experts import ExpertOnStall

        return ExpertOnStall(_expert_task(robot, mode), patience=config.stall_patience,
                             min_progress=config.stall_min_progress, takeover_steps=config.takeover_steps)
    if mode == "teleop":
        if getattr(robot, "teleop", None) is None:
            raise BadInput(f"the robot {robot.name} has no teleoperator", field="--intervene")
        return robot.teleop
    if mode == "keyboard":
        from .robot.keyboard import KeyboardTakeover

        if keys is None:
            raise BadInput("keyboard takeover needs a key source (an interactive terminal)", field="--intervene")
        driver = getattr(robot, "teleop", None)
        if driver is None:
            from .robot.experts import ExpertTeleop

            driver = ExpertTeleop(_expert_task(robot, mode))
        return KeyboardTakeover(driver, keys)
    raise BadInput(f"{mode!r} is not one of {', '.join(INTERVENE_MODES)}", field="--intervene")


def _expert_task(robot: Robot, mode: str) -> str:
    try:
        from metaworld.policies import ENV_POLICY_MAP
    except ImportError:
        ENV_POLICY_MAP = {}
    task = getattr(robot, "task", None)
    if task not in ENV_POLICY_MAP:
        raise BadInput(f"{mode} needs a Meta-World task with a scripted expert; the robot {robot.name} "
                       f"has task {task!r}", field="--intervene")
    return task


class _PolicyWorker:
    """Runs `policy.sample` in a daemon thread, so the loop can hold the robot while it waits."""

    def __init__(self, policy):
        import queue

        self.policy = policy
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="aloe-policy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            observations, future = item
            try:
                future.set_result(self.policy.sample(observations, 1))
            except BaseException as e:  # handed to the loop, which saves the episode and reports it
                future.set_exception(e)

    def submit(self, observations: dict) -> Future:
        future: Future = Future()
        self._queue.put((observations, future))
        return future

    def close(self) -> None:
        self._queue.put(None)


class _Stop:
    """A stop flag set by SIGINT/SIGTERM (handlers installed only from the main thread)."""

    def __init__(self, event: threading.Event | None):
        self.event = event or threading.Event()
        self.signal: str | None = None
        self._old: dict = {}
        self._prompting = False

    def __enter__(self) -> "_Stop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():  # a second Ctrl-C: stop now (what was recorded is still saved)
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        self.event.set()
        if self._prompting:  # a person at the label prompt: the prompt ends now, not at their next answer
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def prompting(self):
        """While asking a person: the first signal interrupts the question as well as setting the flag."""
        self._prompting = True
        try:
            yield
        finally:
            self._prompting = False

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def end(self, reason: str) -> None:
        """Stop the run for `reason` (no more label answers, say), as a signal would."""
        self.signal = self.signal or reason
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(max(seconds, 0.0))


@dataclass
class _Recorder:
    """Frames of the episode being run."""

    states: list
    actions: list
    interventions: list
    rewards: list
    timestamps: list
    extras: dict
    images: dict

    @classmethod
    def new(cls) -> "_Recorder":
        return cls([], [], [], [], [], {}, {})

    def __len__(self) -> int:
        return len(self.actions)

    def add(self, obs: dict, sent: np.ndarray, intervention: bool, timestamp: float) -> None:
        self.states.append(np.asarray(obs[S.OBS_STATE], dtype=np.float32).reshape(-1))
        self.actions.append(sent)
        self.interventions.append(intervention)
        self.timestamps.append(timestamp)
        for key, value in obs.items():
            if key == S.OBS_STATE or not key.startswith(S.OBS_PREFIX):
                continue
            if key.startswith(S.OBS_IMAGES_PREFIX):
                self.images.setdefault(key, []).append(np.asarray(value, dtype=np.uint8))
            else:
                self.extras.setdefault(key, []).append(np.asarray(value, dtype=np.float32).reshape(-1))


def _spans(flags: np.ndarray) -> int:
    """Number of runs of True (intervention spans)."""
    f = np.asarray(flags, dtype=bool)
    return int(f[0]) + int((f[1:] & ~f[:-1]).sum()) if len(f) else 0


def run_rollouts(robot: Robot, policy, store_path: str | os.PathLike | None,
                 config: RolloutConfig = RolloutConfig(),
                 status: Callable[[dict], None] | None = None, teleop: Teleoperator | None = None,
                 label_fn: Callable[[dict], str] | None = None, policy_name: str | None = None,
                 stop: threading.Event | None = None, keys=None) -> dict:
    """Run `config.episodes` episodes of `policy` on `robot`; commit each to the store at `store_path`.

    store_path None records nothing (evaluation only: the summary's per-episode outcomes remain).

    status: called with a dict (episode, step, hz, latency_ms, intervention, successes, ...) about
        every 0.1 s and at each episode's end (``event == "episode_end"``) — the CLI draws it.
    teleop: the intervention source; None builds it from ``config.intervene`` (`make_intervention`).
    label_fn: asked for "success" / "failure" / "discard" where ``config.label == "prompt"`` and
        the robot does not know the outcome.
    stop: an Event that stops the run like Ctrl-C does (for callers in other threads).
    keys: the key source of ``intervene="keyboard"`` (a `robot.keyboard.KeyToggle`).
    Returns the summary dict (``success_rate`` over the episodes with a known outcome).
    """
    from .store import Store

    H = int(policy.chunk_size)
    config.check(H)
    if config.label == "prompt" and label_fn is None:
        raise BadInput("label=prompt needs a label_fn (an interactive terminal)", field="--label")
    store = None if store_path is None else Store.open(store_path, create=True)
    if store is not None:
        _check_writable(store)
    name = policy_name or config.policy_id or "policy"
    identity = policy_identity(policy_name) if policy_name else {}  # before the run: the weights it loaded
    if robot.action_features:  # known before connecting (a remote robot declares them on connect)
        _check_fit(robot, policy, store, name)
    connected_here = not robot.is_connected
    if connected_here:
        robot.connect()
    try:
        if teleop is None:  # after connecting: a remote robot's teleoperator is known from its hello
            teleop = make_intervention(config.intervene, robot, config, keys=keys)
        session = _Session.start(robot, policy, store, config, status, teleop, label_fn, name, identity)
        with _Stop(stop) as stopper:
            session.stop = stopper
            try:
                if session.teleop is not None:
                    session.teleop.connect()
                session.run()
            finally:
                if session.worker is not None:
                    session.worker.close()
                if session.teleop is not None:
                    _quietly(session.teleop.disconnect)
    finally:
        if connected_here:
            _quietly(robot.disconnect)
    return session.summary()


def policy_identity(spec: str | os.PathLike) -> dict:
    """What identifies the policy `spec` names apart from the folder it was typed in: for an aloe policy
    directory, its resolved path (``policy_path``) and the fingerprint of its weights (``policy_fingerprint``,
    as `aloe rounds` fingerprints policies); for a ws:// or package.module:factory spec, nothing ({})."""
    from .rounds import policy_fingerprint

    spec = str(spec)
    if spec.startswith(("ws://", "wss://")):
        return {}
    path = Path(spec).expanduser()
    if not (path / S.POLICY_FILE).is_file():
        return {}
    return {"policy_path": str(path.resolve()), "policy_fingerprint": policy_fingerprint(path)}


def _check_fit(robot: Robot, policy, store, name: str) -> None:
    """The policy's actions and the store's columns must have the robot's sizes."""
    A = int(policy.action_dim)
    if A != action_dim(robot):
        raise PolicyError(f"policy action_dim is {A} but the robot {robot.name} takes {action_dim(robot)} numbers",
                          name, "--policy")
    _check_cameras(robot, policy, name)
    if store is not None and store.exists:
        for col, have, want in ((S.OBS_STATE, state_dim(robot), store.state_dim),
                                (S.ACTION, action_dim(robot), store.action_dim)):
            if have != want:
                raise BadInput(f"the robot {robot.name} has {have} numbers but the store holds {want}; "
                               "roll out into another store", store.root, col)
        _check_store_columns(robot, store)


def _check_writable(store) -> None:
    """Refuse, before the robot moves, a store that cannot be written (its first commit would fail
    after an episode was run, and lose it): a folder made in the store, or for a new store in the
    nearest folder above it, and removed at once; an existing store's lock file opened for writing."""
    root = store.root
    above = next(p for p in (root.absolute(), *root.absolute().parents) if p.exists())
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".aloe-probe-", dir=above))
        if (root / S.LOCK_FILE).exists():
            os.close(os.open(root / S.LOCK_FILE, os.O_RDWR))
    except OSError as e:
        where = "cannot be written" if above == root.absolute() else f"cannot be created: {above} cannot be written"
        raise StoreError(f"{where}: {e.strerror or e}", root) from None


def _check_store_columns(robot: Robot, store) -> None:
    """An existing store's per-frame columns are the robot's: its writer drops, without a word, a camera
    (or other observation) the store lacks, and fills one the robot lacks with nulls (`aloe improve --obs
    images.<cam>` then fails on those frames). A robot that declares no observations yet (a remote one
    before it connects) is checked after connecting."""
    feats = robot.observation_features or {}
    if not feats:
        return
    pre = S.OBS_IMAGES_PREFIX
    have = sorted(k for k in feats if k.startswith(pre))
    want = store.image_columns
    if have != want:
        def cams(cols: list[str]) -> str:
            return f"camera{'s' * (len(cols) > 1)} {', '.join(c[len(pre):] for c in cols)}" if cols else "no camera"

        hint = "roll out into another store"
        if robot.name.startswith("sim:") and len(want) <= 1:  # the simulator gives one camera at most
            sim_arg = f"pass --robot-arg camera={want[0][len(pre):]}" if want else "leave out --robot-arg camera"
            hint = f"{sim_arg} or {hint}"
        raise BadInput(f"the robot {robot.name} has {cams(have)} but the store holds {cams(want)}; {hint}",
                       store.root, sorted(set(have) ^ set(want))[0])
    extras = {k: f.get("shape") for k, f in feats.items()
              if k.startswith(S.OBS_PREFIX) and k != S.OBS_STATE and not k.startswith(pre)}
    stored = store.extra_columns
    if set(extras) != set(stored):  # columns besides the state and the cameras
        def cols(names) -> str:
            return ", ".join(sorted(names)) or "no other observation"

        raise BadInput(f"the robot {robot.name} gives {cols(extras)} but the store holds {cols(stored)}; "
                       "roll out into another store", store.root, sorted(set(extras) ^ set(stored))[0])
    for col, shape in extras.items():
        if shape and int(shape[0]) != stored[col]:
            raise BadInput(f"the robot {robot.name} has {int(shape[0])} numbers but the store holds {stored[col]}; "
                           "roll out into another store", store.root, col)


def _check_cameras(robot: Robot, policy, name: str) -> None:
    """Every camera the policy reads is one the robot gives, at the size the policy was trained on
    (where the policy says, as the built-in one does in `cameras`). A robot that declares no
    observation features yet (a remote one before it connects) is checked after connecting."""
    from .policy import observation_keys

    feats = robot.observation_features or {}
    if not feats:
        return
    pre = S.OBS_IMAGES_PREFIX
    sim = robot.name.startswith("sim:")
    sizes = getattr(policy, "cameras", None) or {}
    for col in (k for k in observation_keys(policy) if k.startswith(pre)):
        cam = col[len(pre):]
        if col not in feats:
            have = ", ".join(k[len(pre):] for k in feats if k.startswith(pre))
            raise PolicyError(f"the policy reads camera {cam!r} but the robot {robot.name} has "
                              + (f"cameras {have}" if have else "no camera")
                              + (f"; pass --robot-arg camera={cam}" if sim else ""), name, "--policy")
        want, shape = sizes.get(col), feats[col].get("shape")
        if want and shape and tuple(shape[:2]) != tuple(want):
            raise PolicyError(f"the policy was trained on {want[1]}x{want[0]} frames of camera {cam!r} but the robot "
                              f"{robot.name} gives {shape[1]}x{shape[0]}"
                              + (f"; pass --robot-arg image_size={want[0]}" if sim and want[0] == want[1] else ""),
                              name, "--policy")


def _quietly(fn) -> None:
    try:
        fn()
    except Exception as e:  # cleanup after a failure must not hide the failure
        log.warning("cleanup failed: %s", e)


class _Session:
    """State of one `run_rollouts` call."""

    @classmethod
    def start(cls, robot, policy, store, config: RolloutConfig, status, teleop, label_fn, name: str,
              identity: dict | None = None) -> "_Session":
        """Check that the robot, the policy and the store fit together; build the session."""
        _check_fit(robot, policy, store, name)
        A = int(policy.action_dim)
        limits = action_limits(robot)
        if config.max_delta is not None:
            limits = SafetyLimits(limits.low, limits.high, np.full(A, config.max_delta, dtype=np.float32))
        return cls(robot, policy, store, config, status, teleop, label_fn, name, limits, identity)

    def __init__(self, robot, policy, store, config: RolloutConfig, status, teleop, label_fn, name: str,
                 limits: SafetyLimits, identity: dict | None = None):
        self.robot, self.policy, self.store, self.cfg = robot, policy, store, config
        self.status_cb, self.teleop, self.label_fn, self.name, self.limits = status, teleop, label_fn, name, limits
        self.identity = identity or {}  # policy_identity(name): recorded with the policy's name in each ingest
        self.k = config.execute_steps or int(policy.chunk_size)
        self.H, self.A = int(policy.chunk_size), int(policy.action_dim)
        self.period = (1.0 / config.fps if config.fps else (1.0 / robot.fps if robot.realtime else None))
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        threaded = robot.realtime if config.policy_thread is None else config.policy_thread
        self.worker = _PolicyWorker(policy) if threaded else None
        self.warmup = threaded if config.warmup is None else config.warmup
        self.warmup_s: float | None = None  # how long the warm-up call took
        self.stop: _Stop | None = None
        self.results: list[dict] = []
        self.latencies: list[float] = []
        self.t_start = time.monotonic()
        self.steps_total = 0
        self.step_time = 0.0  # wall time inside episodes (for steps/s)
        self.discarded = 0
        self.interrupted = False
        self.pending: list[tuple[Episode, dict, dict]] = []  # finished, not yet committed
        self.commits_deferred = 0  # commits put off because another process was writing to the store
        self._last_status = 0.0

    # ------------------------------------------------------------------ the run
    def run(self) -> None:
        try:
            for i in range(self.cfg.episodes):
                if i > 0 and self.cfg.reset_time_s > 0 and not self.stop.is_set():
                    self.robot.hold()
                    self.stop.wait(self.cfg.reset_time_s)
                if self.stop.is_set():
                    break
                self._episode(i)
                if len(self.pending) >= self.cfg.commit_every and i < self.cfg.episodes - 1:
                    self._flush()  # (the last episode's commit is the final one, below)
        finally:
            self.interrupted = self.stop.is_set()
            self._flush(final=True)  # also after an error or a stop: nothing recorded is lost

    def _episode(self, index: int) -> None:
        robot, cfg = self.robot, self.cfg
        robot.reset()
        if self.teleop is not None:
            self.teleop.reset()
        if index == 0 and self.warmup:
            self._warm_up()
        rec = _Recorder.new()
        ev = {"late_chunks": 0, "nan_holds": 0, "clipped": 0, "rate_limited": 0}
        st: EpisodeStatus = robot.status()
        chunk, pos, prev, holds_in_row = None, 0, None, 0
        end, error = "max_steps", None
        t0 = time.monotonic()
        next_tick, last_send = t0, None
        try:
            while len(rec) < cfg.max_steps:
                if self.stop.is_set():
                    end = "interrupted"
                    break
                if self.period is not None:  # pace first: each frame observed at its tick, acted on at once
                    now = time.monotonic()
                    if next_tick > now and self.stop.wait(next_tick - now):
                        end = "interrupted"
                        break
                    next_tick = max(next_tick, time.monotonic()) + self.period  # behind: as fast as it can
                t_obs = time.monotonic()
                obs = robot.get_observation()
                taking_over = bool(self.teleop.wants_control(obs, st)) if self.teleop is not None else False
                if taking_over:
                    raw, chunk = self.teleop.get_action(obs), None
                else:
                    if chunk is None or pos >= self.k:
                        chunk = self._request(obs, len(rec), ev)
                        if chunk is None:
                            end = "interrupted"
                            break
                        pos = 0
                    raw = chunk[pos]
                    pos += 1
                action, clipped, limited = make_safe(raw, prev, self.limits)
                if action is None:  # NaN or inf: never sent; hold and ask again
                    robot.hold()
                    ev["nan_holds"] += 1
                    log.warning("episode %d step %d: non-finite action %s; holding", index, len(rec), raw)
                    chunk, holds_in_row = None, holds_in_row + 1
                    if holds_in_row >= cfg.max_holds:
                        end = "holds"
                        break
                    continue
                holds_in_row = 0
                ev["clipped"] += clipped
                ev["rate_limited"] += limited
                if self.period is not None and last_send is not None:
                    ready = time.monotonic()
                    if ready < last_send + 0.5 * self.period:  # right after a late action (a slow chunk):
                        if self.stop.wait(last_send + self.period - ready):  # a period between two actions,
                            end = "interrupted"
                            break
                        next_tick = last_send + 2 * self.period - (ready - t_obs)  # and the next on time again
                sent = np.asarray(robot.send_action(action), dtype=np.float32).reshape(-1)
                last_send = time.monotonic()
                stamp = (t_obs - t0) if robot.realtime or self.period else len(rec) / robot.fps
                rec.add(obs, sent, taking_over, stamp)
                prev = sent
                st = robot.status()
                rec.rewards.append(st.reward)
                self._report(index, len(rec), t0, taking_over)
                if st.done:
                    end = "done"
                    break
        except BaseException as e:  # save what was recorded, then let the error through
            end, error = "error", e
            _quietly(robot.hold)
        elapsed = time.monotonic() - t0
        self.steps_total += len(rec)
        self.step_time += elapsed
        if end in ("interrupted", "holds"):
            _quietly(robot.hold)
        success = None
        if end == "done":
            success = st.success
        if success is None and end in ("done", "max_steps") and self.cfg.label == "prompt":
            stopped_before = self.stop.is_set()
            try:
                with self.stop.prompting():
                    answer = self.label_fn({"episode": index, "length": len(rec),
                                            "intervention_frames": int(sum(rec.interventions))})
            except (EOFError, KeyboardInterrupt) as e:  # end of piped input, Ctrl-D or Ctrl-C at the prompt:
                answer = None                           # keep it, outcome unknown; stop
                interrupted = isinstance(e, KeyboardInterrupt) or (self.stop.is_set() and not stopped_before)
                log.warning("episode %d: no label (%s); kept with its outcome unknown, stopping", index,
                            "interrupted" if interrupted else "end of input")
                self.stop.end("end of label input")
            except BaseException as e:
                answer, error = None, e
            if answer not in LABEL_ANSWERS:  # keep the episode, outcome unknown
                if error is None:
                    log.warning("label %r is not one of %s; the outcome stays unknown", answer,
                                ", ".join(LABEL_ANSWERS))
            elif answer == "discard":
                self.discarded += 1
                self._episode_end(index, rec, end, ev, elapsed, discarded=True)
                return
            else:
                success = answer == "success"
        result = self._episode_end(index, rec, end, ev, elapsed, success=success)
        if len(rec):
            self.pending.append((self._episode_of(index, rec, success), {"episode": index, "end": end,
                                                                         "events": dict(ev)}, result))
        if error is not None:
            if isinstance(error, AloeError) or not isinstance(error, Exception):
                raise error
            raise RobotError(f"{self.robot.name}: {type(error).__name__}: {error}") from error

    @staticmethod
    def _batch(obs: dict, frame: int) -> dict:
        """A policy's observation batch of one (B = 1) from a robot observation."""
        batch = {key: [value] if key == S.TASK else np.asarray(value)[None] for key, value in obs.items()}
        batch[S.FRAME_INDEX] = np.array([frame], dtype=np.int64)
        return batch

    def _warm_up(self) -> None:
        """One chunk request on the robot's first observation, before any clock runs; the chunk is not
        executed. The policy's generator (where it shows one) is put back, so the episodes draw what they
        would have drawn without it. A stop meanwhile ends the wait; a failure is the policy's error."""
        rng = getattr(self.policy, "rng_state", None)
        state = rng() if callable(rng) and callable(getattr(self.policy, "set_rng_state", None)) else None
        batch = self._batch(self.robot.get_observation(), 0)
        t0 = time.monotonic()
        try:
            if self.worker is None:
                out = self.policy.sample(batch, 1)
            else:
                future = self.worker.submit(batch)
                while True:
                    try:
                        out = future.result(timeout=0.05)
                        break
                    except FutureTimeout:
                        if self.stop.is_set():
                            return
                        if time.monotonic() - t0 >= self.cfg.policy_timeout_s:
                            raise PolicyError(f"warm-up: no chunk after {self.cfg.policy_timeout_s:g} s", self.name,
                                              "--policy") from None
        except AloeError:
            raise
        except Exception as e:
            raise PolicyError(f"warm-up: sample() raised {type(e).__name__}: {e}", self.name, "--policy") from e
        self.warmup_s = time.monotonic() - t0
        as_chunks(out, (1, 1, self.H, self.A), self.name)  # a wrong shape fails here, before the robot moves
        if state is not None:
            self.policy.set_rng_state(state)

    def _request(self, obs: dict, frame: int, ev: dict) -> np.ndarray | None:
        """One chunk (H, A) for `obs`; holds the robot when it is late; None when stopped (a policy that
        returns None is bad output, not a stop)."""
        batch = self._batch(obs, frame)
        t0 = time.monotonic()
        out = self._sample_threaded(batch, t0, frame, ev) if self.worker else self._sample_inline(batch, t0, frame, ev)
        if out is _STOPPED:
            return None
        self.latencies.append(time.monotonic() - t0)
        return as_chunks(out, (1, 1, self.H, self.A), self.name)[0, 0]  # NaN is allowed: it holds the robot

    def _sample_threaded(self, batch: dict, t0: float, frame: int, ev: dict):
        """Real time: the policy runs in the worker; the robot holds from the deadline until it answers."""
        future = self.worker.submit(batch)
        held = False
        while True:
            # Wake at the deadline, at the timeout, or every 50 ms to notice a stop.
            next_event = t0 + (self.cfg.policy_timeout_s if held else self.cfg.deadline_s)
            try:
                return future.result(timeout=min(max(next_event - time.monotonic(), 0.0), 0.05))
            except FutureTimeout:
                pass
            except AloeError:
                raise
            except BaseException as e:
                raise PolicyError(f"sample() raised {type(e).__name__}: {e}", self.name, "--policy") from e
            if self.stop.is_set():
                return _STOPPED
            waited = time.monotonic() - t0
            if not held and waited >= self.cfg.deadline_s:
                self.robot.hold()
                held = True
                self._late(frame, ev)
            if waited >= self.cfg.policy_timeout_s:
                raise PolicyError(f"no chunk after {self.cfg.policy_timeout_s:g} s", self.name, "--policy")

    def _sample_inline(self, batch: dict, t0: float, frame: int, ev: dict):
        """Simulation: simulated time stands still while the policy computes, so the arm holds
        exactly; a late answer is still logged (and the hold recorded) and a timeout still fails."""
        try:
            out = self.policy.sample(batch, 1)
        except AloeError:
            raise
        except Exception as e:
            raise PolicyError(f"sample() raised {type(e).__name__}: {e}", self.name, "--policy") from e
        waited = time.monotonic() - t0
        if waited >= self.cfg.deadline_s:
            self.robot.hold()
            self._late(frame, ev)
        if waited >= self.cfg.policy_timeout_s:
            raise PolicyError(f"no chunk after {self.cfg.policy_timeout_s:g} s", self.name, "--policy")
        return out

    def _late(self, frame: int, ev: dict) -> None:
        ev["late_chunks"] += 1
        log.warning("frame %d: the policy missed its %.3f s deadline; holding", frame, self.cfg.deadline_s)

    # ------------------------------------------------------------------ recording
    def _episode_of(self, index: int, rec: _Recorder, success: bool | None) -> Episode:
        rewards = None if any(r is None for r in rec.rewards) or len(rec.rewards) != len(rec) else \
            np.asarray(rec.rewards, dtype=np.float32)
        images = {}
        if rec.images:
            from .formats._images import encode_frames

            images = {k: encode_frames(np.stack(v)) for k, v in rec.images.items()}
        return Episode(
            state=np.stack(rec.states), action=np.stack(rec.actions),
            source_key=f"{self.run_id}/episode_{index:04d}", source_index=index,
            reward=rewards, is_intervention=np.asarray(rec.interventions, dtype=bool),
            success=success, terminated=None, task=self.robot.task, policy_id=self.cfg.policy_id or self.name,
            timestamp=np.asarray(rec.timestamps, dtype=np.float32),
            extras={k: np.stack(v) for k, v in rec.extras.items()}, images=images)

    def _flush(self, final: bool = False) -> None:
        """Commit the finished episodes atomically (one store transaction). While another process (an
        ingest, a compaction) is writing to the store, the episodes stay pending and the robot goes on:
        the commit is tried again after the next episode, and the last one waits for the lock."""
        if not self.pending:
            return
        if self.store is None:  # evaluation only
            self.pending = []
            return
        robot = self.robot
        names = {key: f.get("names") for key, f in {**robot.observation_features, **robot.action_features}.items()
                 if isinstance(f, dict) and f.get("names")}
        config = asdict(self.cfg)
        if hasattr(robot, "seed"):  # the seed the robot says it was made with (a remote one: the server's)
            made_with = robot.seed
            config["seed"] = made_with if isinstance(made_with, int) and not isinstance(made_with, bool) else None
        options = {"run_id": self.run_id, "robot": robot.name, "policy": self.name, **self.identity,
                   "config": config, "episodes": [meta for _, meta, _ in self.pending]}

        def waiting() -> None:
            if self.status_cb is not None:
                self.status_cb({"event": "store_busy", "pending": len(self.pending), "waiting": True,
                                "store": str(self.store.root)})

        try:
            with self.store.writer(source=f"rollout:{robot.name}", fmt="rollout", options=options,
                                   wait_s=None if final else 0.0, on_wait=waiting) as w:
                for ep, _, result in self.pending:
                    result["episode_id"] = w.add(ep, names=names, fps=self.cfg.fps or robot.fps)
                w.commit()
        except StoreBusy:  # only when not final (the final commit waits as long as it takes)
            self.commits_deferred += 1
            if self.status_cb is not None:
                self.status_cb({"event": "store_busy", "pending": len(self.pending), "waiting": False,
                                "store": str(self.store.root)})
            return
        self.pending = []

    def _report(self, index: int, step: int, t0: float, intervention: bool) -> None:
        if self.status_cb is None:
            return
        now = time.monotonic()
        if now - self._last_status < 0.1:
            return
        self._last_status = now
        self.status_cb({
            "event": "step", "episode": index + 1, "episodes": self.cfg.episodes, "step": step,
            "hz": step / max(now - t0, 1e-9), "latency_ms": 1e3 * self.latencies[-1] if self.latencies else None,
            "intervention": intervention, "successes": sum(1 for r in self.results if r["success"]),
            "finished": len(self.results)})

    def _episode_end(self, index: int, rec: _Recorder, end: str, ev: dict, elapsed: float,
                     success: bool | None = None, discarded: bool = False) -> dict:
        flags = np.asarray(rec.interventions, dtype=bool)
        result = {
            "index": index, "episode_id": None, "length": len(rec), "success": success,
            "terminated": success is not None, "end": end, "discarded": discarded,
            "intervention_frames": int(flags.sum()), "interventions": _spans(flags),
            "steps_per_s": len(rec) / max(elapsed, 1e-9), **ev}
        self.results.append(result)
        if self.status_cb is not None:
            self.status_cb({"event": "episode_end", "episode": index + 1, "episodes": self.cfg.episodes,
                            "successes": sum(1 for r in self.results if r["success"]),
                            "finished": len(self.results), **result})
        return result

    def summary(self) -> dict:
        kept = [r for r in self.results if not r["discarded"] and r["length"]]
        known = [r for r in kept if r["success"] is not None]
        lat = np.asarray(self.latencies) * 1e3
        return {
            "store": None if self.store is None else str(self.store.root),
            "robot": self.robot.name,
            "policy_id": self.cfg.policy_id or self.name,
            "episodes": len(kept),
            "successes": sum(1 for r in known if r["success"]),
            "failures": sum(1 for r in known if not r["success"]),
            "unknown": len(kept) - len(known),
            "discarded": self.discarded,
            "success_rate": (sum(1 for r in known if r["success"]) / len(known)) if known else None,
            "frames": sum(r["length"] for r in kept),
            "intervention_frames": sum(r["intervention_frames"] for r in kept),
            "interventions": sum(r["interventions"] for r in kept),
            "late_chunks": sum(r["late_chunks"] for r in self.results),
            "nan_holds": sum(r["nan_holds"] for r in self.results),
            "clipped_actions": sum(r["clipped"] for r in self.results),
            "rate_limited_actions": sum(r["rate_limited"] for r in self.results),
            "steps_per_s": self.steps_total / self.step_time if self.step_time > 0 else None,
            "policy_latency_ms": ({"mean": float(lat.mean()), "p95": float(np.percentile(lat, 95))}
                                  if len(lat) else None),
            "warmup_s": self.warmup_s,
            "wall_s": time.monotonic() - self.t_start,
            "interrupted": self.interrupted,
            "commits_deferred": self.commits_deferred,
            "signal": self.stop.signal if self.stop else None,
            "episode_ids": [r["episode_id"] for r in kept],
            "per_episode": self.results,
        }
