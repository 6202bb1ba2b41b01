"""`--resume` after a kill gives the same critic as an uninterrupted run; torchrun with 2 gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

import chainworld as cw
from conftest import REPO, run_subprocess

ARGS = ("--reward", "sparse", "--gamma", "0.9", "--samples", "1", "--steps", "300", "--hidden", "32",
        "--batch-size", "64", "--checkpoint-every", "100", "--tau", "0.05", "--lr", "1e-3", "--head", "scalar")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("chain")
    cw.make_store(d / "store", episodes=60, p=0.3, T_max=60, seed=0)
    spec = cw.write_policy_module(d)
    env = {"PYTHONPATH": f"{REPO}{os.pathsep}{d}", "OMP_NUM_THREADS": "1"}
    return d, spec, env


@pytest.fixture(scope="module")
def whole(world):
    """One uninterrupted single-process run, shared by both tests."""
    out = world[0] / "whole"
    r = fit(world, out)
    assert r.returncode == 0, r.stderr
    return out


def fit(world, out, *extra, env_extra=None):
    d, spec, env = world
    return run_subprocess("fit-critic", d / "store", "--out", out, "--policy", spec, *ARGS, *extra,
                          env={**env, **(env_extra or {})})


def test_resume_after_kill_matches_an_uninterrupted_run(world, whole, tmp_path):
    r = fit(world, tmp_path / "killed", env_extra={"ALOE_CRASH_AT": "critic-step-250"})
    assert r.returncode == 137
    assert not (tmp_path / "killed" / "critic.json").exists()  # no finished critic after a kill
    r = fit(world, tmp_path / "killed", "--resume")
    assert r.returncode == 0, r.stderr
    a, b = load_file(str(whole / "critic.safetensors")), load_file(
        str(tmp_path / "killed" / "critic.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # bit for bit
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if not k.startswith("time/")}  # noqa: E731
                       for x in p.read_text().splitlines()]
    assert strip(whole / "metrics.jsonl") == strip(tmp_path / "killed" / "metrics.jsonl")
    assert [x["step"] for x in strip(tmp_path / "killed" / "metrics.jsonl")] == [100, 200, 300]
    # A resume with a different option is refused, naming it.
    r = fit(world, tmp_path / "killed", "--resume", "--gamma", "0.8")
    assert r.returncode == 2
    assert r.stderr.strip().endswith(f"{tmp_path / 'killed' / 'checkpoint.pt'}: --resume: the checkpoint was "
                                     "made with a different gamma; resume with the same options and store, "
                                     "or choose another --out")


def test_resume_with_the_builtin_policy_after_kills_in_the_sampling_and_between_log_rows(world, tmp_path):
    """The built-in policy draws from its own generator: a run killed while its chunks were being cached
    resumed with a fresh one, and the cache's last, short block was drawn again even when the cache was
    complete. And the metrics since the last logged row were lost with a kill between two log rows. Each
    gave other weights and metrics than an uninterrupted run; now they are the same, bit for bit."""
    from aloe_cli.policy.builtin import PolicyConfig, train_policy
    from aloe_cli.store import Store

    d, _, env = world
    tiny = PolicyConfig(steps=2, chunk_size=2, hidden=16, depth=1, obs_layers=1, batch_size=32, device="cpu",
                        warmup_steps=1)
    train_policy(Store.open(d / "store"), tmp_path / "pol", tiny)
    args = ("--reward", "sparse", "--gamma", "0.9", "--samples", "3", "--steps", "150", "--hidden", "32",
            "--checkpoint-every", "50", "--tau", "0.05", "--lr", "1e-3")  # rows logged every 100 steps

    def run(out, *extra, crash=None):
        return run_subprocess("fit-critic", d / "store", "--out", out, "--policy", tmp_path / "pol", *args, *extra,
                              env={**env, **({"ALOE_CRASH_AT": crash} if crash else {})})

    assert run(tmp_path / "whole").returncode == 0
    for name, crash in (("sampling", "policy-samples-512"), ("between-rows", "critic-step-60")):
        assert run(tmp_path / name, crash=crash).returncode == 137
        if name == "between-rows":  # the cache is complete, its last block short (two of 256 were written)
            filled = json.loads((tmp_path / name / "policy_samples.rank0.json").read_text())["filled"]
            assert filled > 512 and filled % 256, filled
        r = run(tmp_path / name, "--resume")
        assert r.returncode == 0, r.stderr
        a, b = load_file(str(tmp_path / "whole" / "critic.safetensors")), load_file(
            str(tmp_path / name / "critic.safetensors"))
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}: {k}")
        strip = lambda p: [{k: v for k, v in json.loads(x).items() if not k.startswith("time/")}  # noqa: E731
                           for x in p.read_text().splitlines()]
        assert strip(tmp_path / "whole" / "metrics.jsonl") == strip(tmp_path / name / "metrics.jsonl"), name


def test_torchrun_two_gloo_processes(world, whole, tmp_path):
    """DDP on CPU. The policy-sample cache stays memory-mapped ($ALOE_SAMPLES_RAM_MB=0), as a large one does:
    rank 1 holds no samples at the validation frames, so it must not validate (it raised KeyError)."""
    d, spec, env = world
    e = {**os.environ, **env, "ALOE_SAMPLES_RAM_MB": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "aloe_cli", "fit-critic", str(d / "store"), "--out", str(tmp_path / "ddp"), "--policy", spec,
           *ARGS, "--device", "cpu", "--json"]
    r = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)  # only rank 0 prints
    assert out["steps"] == 300
    files = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert files == ["checkpoint.pt", "critic.json", "critic.safetensors", "metrics.jsonl"]
    cfg = json.loads((tmp_path / "ddp" / "critic.json").read_text())
    assert cfg["world_size"] == 2
    # Same result shape as one process: the same files and tensors, and a usable critic.
    a, b = load_file(str(whole / "critic.safetensors")), load_file(str(tmp_path / "ddp" / "critic.safetensors"))
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    from aloe_cli.critic import load_critic

    critic = load_critic(tmp_path / "ddp")
    s = np.arange(6)
    q = critic.q(cw.onehot(s, 6), np.ones((6, 1, 2, 1), np.float32))[:, 0]
    np.testing.assert_allclose(q, cw.v_pi(s, 6, 0.9), atol=0.05)


def test_logged_metrics_are_the_mean_over_the_processes(tmp_path):
    """Each process trains on its own batches; the metrics row (written by rank 0) averages all of them
    (it held rank 0's alone)."""
    script = tmp_path / "mean.py"
    script.write_text(
        "import json, torch\n"
        "from aloe_cli.critic.train import _Dist\n"
        "d = _Dist(); d.init(False)\n"
        "row = d.mean({'critic/loss': float(d.rank), 'critic/q_mean': 2.0 * d.rank + 1}, torch.device('cpu'))\n"
        f"open(f'{tmp_path}/rank{{d.rank}}.json', 'w').write(json.dumps(row))\n"
        "d.close()\n")
    e = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    r = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert rows == [{"critic/loss": 0.5, "critic/q_mean": 2.0}] * 2
