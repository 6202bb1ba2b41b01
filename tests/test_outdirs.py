"""Writers refuse, before anything is written, an output that is another kind of aloe directory or
lies inside a store, and `--force` deletes only a directory of the writer's own kind; plus the
option checks of score, improve, export and demo that run before any work. Real CLI, a small
chain-world store, a tiny policy, critic and scores."""

from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import chainworld as cw
from aloe_cli import schema as S
from aloe_cli.errors import BadInput
from aloe_cli.outdirs import check_output, kind_of


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    from aloe_cli.critic import CriticConfig, fit_critic
    from aloe_cli.improve import improve
    from aloe_cli.scoring import score

    d = tmp_path_factory.mktemp("outdirs")
    cw.make_store(d / "store", episodes=12, L=4, T_max=12, seed=3)
    improve(d / "store", d / "policy", "bc", settings=dict(chunk_size=2, steps=5, hidden=32, batch_size=32,
                                                             device="cpu", task_embedding=False))
    fit_critic(d / "store", d / "critic", CriticConfig(reward="sparse", chunk_size=2, samples=2, steps=5,
                                                       batch_size=32, hidden=32, device="cpu"), str(d / "policy"))
    score(d / "store", d / "critic", d / "scores", device="cpu")
    return d


def snapshot(root) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def refused(r, *names) -> str:
    """One `Error:` line, exit 2, naming each of `names`."""
    assert r.exit_code == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r
    for n in names:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


def test_kinds(made):
    assert [kind_of(made / k) for k in ("store", "critic", "policy", "scores")] == ["store", "critic", "policy",
                                                                                   "scores"]
    assert kind_of(made / "store" / "frames") is None and kind_of(made / "nowhere") is None


def test_score_fit_critic_refuse_a_directory_of_another_kind(made, cli):
    before = {k: snapshot(made / k) for k in ("store", "critic", "policy")}
    for target in ("store", "critic", "policy"):
        line = refused(cli("score", made / "store", "--critic", made / "critic", "--out", made / target,
                           "--device", "cpu"), made / target, "--out")
        assert f"is an aloe {target} directory" in line
    for target in ("store", "policy", "scores"):
        refused(cli("fit-critic", made / "store", "--out", made / target, "--bootstrap", "data", "--chunk-size", 2,
                    "--steps", 2, "--device", "cpu"), made / target, "--out")
    assert {k: snapshot(made / k) for k in before} == before


def test_outputs_inside_a_store_are_refused(made, cli):
    before = snapshot(made / "store")
    for sub in ("frames", "scores"):
        line = refused(cli("score", made / "store", "--critic", made / "critic", "--out", made / "store" / sub,
                           "--device", "cpu"), "--out")
        assert "lies inside the episode store" in line
    refused(cli("improve", made / "store", "--method", "bc", "--out", made / "store" / "frames", "--force",
                "--steps", 2, "--chunk-size", 2, "--device", "cpu"), "--out")
    assert snapshot(made / "store") == before


def test_a_new_store_inside_another_aloe_directory_is_refused(made, cli, tmp_path):
    """`ingest` and `rollout --into` made a store anywhere: inside a policy directory (which `improve --force`
    then deleted, store and all) or inside a store (whose frames then failed pandas' plain read). Both are
    refused, naming the directory, before anything is made; a store beside them is fine."""
    before = {k: snapshot(made / k) for k in ("store", "policy", "critic", "scores")}
    for parent, what in (("policy", "the aloe policy directory"), ("critic", "the aloe critic directory"),
                         ("scores", "the aloe scores directory"), ("store", "the episode store")):
        inner = made / parent / "sub" / "logs"
        r = cli("rollout", "--policy", "rollout_plugins:constant", "--into", inner, "--episodes", 1, "--max-steps", 2)
        line = refused(r, inner)
        assert line.endswith(f"lies inside {what} {made / parent}; make the store outside it"), line
        assert not (made / parent / "sub").exists()
    assert {k: snapshot(made / k) for k in before} == before


def test_force_refuses_a_directory_holding_a_store(made, cli, tmp_path):
    """A store inside a policy directory (made before stores there were refused, or moved in): `--force`
    would delete it with the policy; it is refused, naming the store."""
    shutil.copytree(made / "policy", tmp_path / "pol")
    shutil.copytree(made / "store", tmp_path / "pol" / "logs" / "store")
    before = snapshot(tmp_path / "pol")
    r = cli("improve", made / "store", "--method", "bc", "--steps", 2, "--chunk-size", 2, "--device", "cpu",
            "--out", tmp_path / "pol", "--force")
    line = refused(r, "--out")
    assert line.endswith(f"holds the episode store {tmp_path / 'pol' / 'logs' / 'store'}, which --force would "
                         "delete with it; move the store out or choose another --out"), line
    assert snapshot(tmp_path / "pol") == before


def test_a_killed_run_leaves_a_temporary_folder_that_the_next_run_removes(made, tmp_path):
    """improve writes into a hidden sibling renamed into place at the end; a SIGKILL (or OOM, or power loss)
    never reaches its clean-up, and every killed run left one (a camera export's, gigabytes). The next run
    on this host removes those whose process is gone; a running one's, or another host's, it leaves."""
    import os
    import socket

    from conftest import run_subprocess

    args = ("improve", made / "store", "--method", "bc", "--steps", 4, "--chunk-size", 2, "--device", "cpu",
            "--out", tmp_path / "pol")
    assert run_subprocess(*args, env={"ALOE_CRASH_AT": "policy-step-2"}).returncode == 137
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".pol.tmp-"), left
    live = tmp_path / f".pol.tmp-{os.getpid()}@{socket.gethostname()}-0123abcd"  # this process: running
    elsewhere = tmp_path / ".pol.tmp-1@another-host-0123abcd"
    live.mkdir()
    elsewhere.mkdir()
    r = run_subprocess(*args)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, "pol"])


def test_force_replaces_only_its_own_kind(made, cli, tmp_path):
    before = {k: snapshot(made / k) for k in ("store", "critic", "scores")}
    improve = ("improve", made / "store", "--method", "bc", "--steps", 2, "--chunk-size", 2, "--device", "cpu")
    for target in ("store", "critic", "scores"):
        refused(cli(*improve, "--out", made / target, "--force"), made / target, "--out")
        refused(cli("export", made / "store", made / target, "--scores", made / "scores", "--force"), made / target,
                "OUT_DIR")
    assert {k: snapshot(made / k) for k in before} == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    line = refused(cli(*improve, "--out", mine, "--force"), mine, "--out")
    assert "--force replaces only a policy directory" in line and (mine / "notes.txt").read_text() == "keep me"
    shutil.copytree(made / "policy", tmp_path / "old-policy")
    r = cli(*improve, "--out", tmp_path / "old-policy", "--force")
    assert r.exit_code == 0, r
    assert kind_of(tmp_path / "old-policy") == "policy"


def test_check_output_by_hand(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(BadInput, match="f: --out: exists and is not a directory"):
        check_output(tmp_path / "f", "scores", "--out")
    partial = tmp_path / "demo"
    (partial / "store").mkdir(parents=True)  # a demo cut short: no demo.json yet
    with pytest.raises(BadInput, match="already exists; pass --force"):
        check_output(partial, "demo", "--out", replace=False)
    check_output(partial, "demo", "--out", replace=True, own_entries=frozenset({"store", "critic"}))
    (partial / "thesis.tex").write_text("x")
    with pytest.raises(BadInput, match="holds files that are not an aloe demo directory"):
        check_output(partial, "demo", "--out", replace=True, own_entries=frozenset({"store", "critic"}))
    check_output(tmp_path / "new", "policy", "--out", replace=False)  # absent: fine
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", "policy", "--out", replace=False)


def test_demo_checks_everything_before_it_writes(made, cli, tmp_path):
    before = snapshot(made / "store")
    line = refused(cli("demo", "--quick", "--out", made / "store", "--force"), made / "store", "--out")
    assert "is an aloe store directory" in line and snapshot(made / "store") == before
    for argv, field in ((["--method", "bogus"], "--method"), (["--seed", "-1"], "--seed"),
                        (["--task", "bogus-v3"], "--task")):
        refused(cli("demo", "--quick", "--out", tmp_path / "d", *argv), field)
        assert not (tmp_path / "d").exists()
    (tmp_path / "file").write_text("x")
    refused(cli("demo", "--quick", "--out", tmp_path / "file"), tmp_path / "file", "--out")


def test_score_options(made, cli, tmp_path):
    base = ("score", made / "store", "--critic", made / "critic", "--device", "cpu")
    refused(cli(*base, "--out", tmp_path / "s0", "--samples", 0), "--samples")
    line = refused(cli(*base, "--out", tmp_path / "s1", "--policy-arg", "deterministic=true"), "--policy-arg")
    assert "recorded policy" in line
    assert not (tmp_path / "s0").exists() and not (tmp_path / "s1").exists()
    (tmp_path / "empty").mkdir()
    manifest = json.loads((made / "store" / S.MANIFEST_FILE).read_text())
    (tmp_path / "empty" / S.MANIFEST_FILE).write_text(json.dumps({**manifest, "ingests": []}))  # nothing ingested
    refused(cli("score", tmp_path / "empty", "--critic", made / "critic", "--out", tmp_path / "s2"),
            "has no episodes to score")


def test_improve_and_export_options(made, cli, tmp_path):
    improve = ("improve", made / "store", "--device", "cpu", "--steps", 2)
    refused(cli(*improve, "--method", "aloe", "--scores", made / "scores", "--beta", 1, "--beta-scale", 1,
                "--out", tmp_path / "p"), "--beta-scale")
    refused(cli(*improve, "--method", "bc", "--seed", -1, "--out", tmp_path / "p"), "--seed")
    refused(cli(*improve, "--method", "bc", "--chunk-size", 1000, "--out", tmp_path / "p"), "--chunk-size",
            "longest episode")
    for fps in ("inf", "0", "nan"):
        refused(cli("export", made / "store", tmp_path / "x", "--scores", made / "scores", "--fps", fps), "--fps")
    assert not (tmp_path / "p").exists() and not (tmp_path / "x").exists()
    bad = tmp_path / "scores"
    shutil.copytree(made / "scores", bad)
    t = pq.read_table(bad / S.SCORES_CHUNKS_FILE)
    i = t.column_names.index(S.ADVANTAGE)
    t = t.set_column(i, S.ADVANTAGE, pa.array(["x"] * t.num_rows))
    pq.write_table(t, bad / S.SCORES_CHUNKS_FILE)
    for argv, out in ((improve + ("--method", "aloe", "--out"), "p"), (("export", made / "store"), "x")):
        line = refused(cli(*argv, tmp_path / out, "--scores", bad), S.SCORES_CHUNKS_FILE, S.ADVANTAGE)
        assert "expected a number, got string" in line
    assert json.loads((made / "scores" / S.SCORES_SUMMARY_FILE).read_text())["chunk_size"] == 2
