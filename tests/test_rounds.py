"""`aloe rounds STORE` credits each rollout to the policy that ran it, whatever folder it is run from.

A real store of simulator episodes (the scripted expert), a real built-in policy trained on it
(behaviour cloning, a few steps), real `aloe rollout --policy policies/r0` runs from the folder
next to the store; `aloe rounds` then runs from other folders, one of which holds an unrelated
policy at the same relative path ``policies/r0``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from aloe_cli.improve import improve
from aloe_cli.robot.experts import metaworld_expert
from aloe_cli.robot.sim import SimRobot
from aloe_cli.rollout import RolloutConfig, policy_identity, run_rollouts
from aloe_cli.rounds import policy_fingerprint, rounds
from aloe_cli.store import Store

torch.set_num_threads(1)
TASK = "drawer-open-v3"
TINY = dict(hidden=32, depth=1, obs_layers=1, batch_size=32, eval_every=1000, log_every=1000, device="cpu",
            warmup_steps=1, chunk_size=5)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A store of two short expert episodes, and a round-0 policy trained on it (kept pristine: copied)."""
    d = tmp_path_factory.mktemp("rounds")
    robot = SimRobot(TASK, seed=0, max_steps=15)
    run_rollouts(robot, metaworld_expert(TASK, chunk_size=5), d / "store",
                 RolloutConfig(episodes=2, max_steps=15, policy_id="expert", commit_every=2))
    return d


def project(logged, where, seed: int = 0):
    """`where`/store and `where`/policies/r0 trained on it (the layout `aloe demo` writes)."""
    shutil.copytree(logged / "store", where / "store")
    improve(where / "store", where / "policies" / "r0", "bc", settings=dict(TINY, steps=2, seed=seed))
    return where


def roll_out(cli, monkeypatch, cwd, policy: str, into: str, episodes: int = 1):
    monkeypatch.chdir(cwd)
    r = cli("rollout", "--policy", policy, "--episodes", episodes, "--max-steps", 6, "--into", into, "--json")
    assert r.exit_code == 0, r
    return json.loads(r.stdout)


def credited(store, cwd, monkeypatch) -> dict:
    """{policy dir: rollout episodes} as `aloe rounds STORE` run from `cwd` lists them."""
    monkeypatch.chdir(cwd)
    return {r["policy"]: (r["rollouts"] or {}).get("episodes") for r in rounds(store)["policies"]}


def test_a_rollout_is_credited_to_its_policy_from_any_folder(logged, tmp_path, cli, monkeypatch):
    d = project(logged, tmp_path / "d")
    r0 = str((d / "policies" / "r0").resolve())
    roll_out(cli, monkeypatch, d, "policies/r0", "store/", episodes=2)
    # The ingest names the policy as typed, and by its resolved path and the fingerprint of its weights.
    options = Store.open(d / "store").manifest["ingests"][-1]["options"]
    assert (options["policy"], options["policy_path"]) == ("policies/r0", r0)
    assert options["policy_fingerprint"] == policy_fingerprint(r0) is not None
    # An unrelated policy at the same relative path, in another folder (here a copy, weights and all).
    other = tmp_path / "other"
    shutil.copytree(d / "policies", other / "policies")
    store = d / "store"
    for cwd in (d, tmp_path, other, store):
        assert credited(store.resolve(), cwd, monkeypatch) == {r0: 2}, cwd
    monkeypatch.chdir(other)
    res = cli("rounds", store.resolve())
    assert res.exit_code == 0, res
    assert res.stdout.splitlines()[1] == f"  round 0  r0  bc  {r0}  (rolled out: 2 episodes, success 0.0%)"
    assert str(other) not in res.stdout


def test_a_moved_policy_keeps_its_rollouts_and_a_retrained_one_does_not_take_them(logged, tmp_path, cli,
                                                                                  monkeypatch):
    d = project(logged, tmp_path / "d")
    roll_out(cli, monkeypatch, d, "policies/r0", "store")
    store = (d / "store").resolve()
    # Moved within the folder searched: found again by the fingerprint of its weights.
    (d / "policies" / "r0").rename(d / "policies" / "first")
    assert credited(store, tmp_path, monkeypatch) == {str((d / "policies" / "first").resolve()): 1}
    # Retrained at the recorded path (other weights): the rollouts were of the moved one, not of this one.
    improve(store, d / "policies" / "r0", "bc", settings=dict(TINY, steps=2, seed=7))
    assert credited(store, tmp_path, monkeypatch) == {str((d / "policies" / "first").resolve()): 1,
                                                      str((d / "policies" / "r0").resolve()): None}
    shutil.rmtree(d / "policies" / "first")  # the weights rolled out are gone: no policy is credited
    assert credited(store, tmp_path, monkeypatch) == {str((d / "policies" / "r0").resolve()): None}


def test_older_rollouts_recorded_as_typed_are_read_from_the_stores_folder(logged, tmp_path, monkeypatch):
    """A rollout recorded before the resolved path was (only the --policy text, `policies/r0`): read from
    the store's parent, and credited only to a policy trained on the store; never through the working
    directory, whose `policies/r0` may be another policy."""
    d = project(logged, tmp_path / "d")
    store = Store.open(d / "store")
    episode = next(store.iter_episodes())
    for i, spec in enumerate(("policies/r0", "policies/../policies/r0", "r0", "expert", "ws://localhost:8000")):
        with store.writer("rollout:sim", "rollout", options={"policy": spec}) as w:
            assert w.add(dataclasses.replace(episode, source_key=f"older/{i}", episode_id=None))
            w.commit()
    other = project(logged, tmp_path / "other", seed=3)  # policies/r0 there: trained on another store
    r0 = str((d / "policies" / "r0").resolve())
    for cwd in (d, tmp_path, other, d / "policies"):
        assert credited(d / "store", cwd, monkeypatch) == {r0: 2}, cwd


def test_only_a_policy_directory_has_an_identity(tmp_path, monkeypatch, logged):
    d = project(logged, tmp_path / "d")
    monkeypatch.chdir(d / "policies")
    assert policy_identity("r0") == {"policy_path": str((d / "policies" / "r0").resolve()),
                                     "policy_fingerprint": policy_fingerprint(d / "policies" / "r0")}
    (tmp_path / "pkg.mod:factory").mkdir()  # a folder that is no policy, named like a plugin spec
    monkeypatch.chdir(tmp_path)
    for spec in ("ws://localhost:8000", "aloe_cli.robot.experts:metaworld_expert", "pkg.mod:factory", "nowhere"):
        assert policy_identity(spec) == {}, spec
