"""d3rlpy's Fitted Q Evaluation as an outside reference (one-step, H = 1): its values for
`benchmarks.ope`, its training speed for `benchmarks.speed`.

`benchmarks.ope --d3rlpy-python PY` and `benchmarks.speed --d3rlpy-python PY` run
``PY -m benchmarks.d3rlpy_fqe JOB.json`` (`run_job`) in a separate interpreter, because d3rlpy
2.8.1 pins gymnasium 1.0.0 while metaworld needs a newer one. The environment it was measured
with (a venv that sees the project's packages and adds d3rlpy's own dependencies, minus its
gymnasium pin, which d3rlpy runs without):

    python -m venv /tmp/d3rlpy-venv
    echo "$(python -c 'import site; print(site.getsitepackages()[0])')" \
        > /tmp/d3rlpy-venv/lib/python3.11/site-packages/zz_project.pth
    /tmp/d3rlpy-venv/bin/pip install d3rlpy==2.8.1
    /tmp/d3rlpy-venv/bin/pip uninstall -y gymnasium     # the project's gymnasium shows through

What it fits, per candidate: d3rlpy's FQE (its defaults: learning rate 1e-4, hard target
update every 100 steps, one critic) with the same MLP size, batch size, gamma and step count as
the aloe critics, on the same store with the same per-frame rewards and terminal flags. The
evaluated policy enters through the evaluated algorithm's `predict_best_action`, replaced by
one fresh sample of the candidate's first action (d3rlpy's FQE expects a deterministic policy;
a stochastic one is sampled anew at every step). The estimate at a start state is the mean of
`predict_value` over K sampled first actions, as for the aloe estimators.

The job file holds: mode ("values", the default, or "speed"), store, reward (resolved), gamma,
steps, batch_size, hidden, layers, seed, device, threads, out; for values also candidates
[{name, spec, args}] and samples, for speed warmup (steps before the timed ones). Values mode
writes {"values": {name: [per start state]}, "seconds_per_candidate", "d3rlpy": version} to
`out`; speed mode {"samples_per_s", "seconds", "steps", "parameters", "timing", "d3rlpy"}.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def mdp_dataset(job: dict):
    """The store as d3rlpy's MDPDataset (per-frame rewards from the job's resolved reward spec;
    terminated episodes end in a terminal, the others in a timeout), plus (frames, episodes)."""
    import d3rlpy

    from aloe_cli import schema as S
    from aloe_cli.rewards import frame_rewards
    from aloe_cli.store import Store

    store = Store.open(job["store"])
    fa = store.load_frames([S.OBS_STATE, S.ACTION])
    eps = store.episodes.set_index(S.EPISODE_ID).loc[fa.episode_ids].reset_index()
    obs, act = fa.columns[S.OBS_STATE], fa.columns[S.ACTION]
    rewards = frame_rewards(job["reward"], eps).astype(np.float32)
    last = fa.starts + fa.lengths - 1
    terminated = eps[S.TERMINATED].to_numpy(dtype=bool)
    terminals = np.zeros(len(obs), np.float32)
    timeouts = np.zeros(len(obs), np.float32)
    terminals[last[terminated]] = 1.0
    timeouts[last[~terminated]] = 1.0
    dataset = d3rlpy.dataset.MDPDataset(observations=obs, actions=act, rewards=rewards, terminals=terminals,
                                        timeouts=timeouts)
    return dataset, fa, eps


def _fqe(job: dict, dataset, first_action):
    """d3rlpy's FQE (its defaults but the network size, batch size and gamma) evaluating `first_action`."""
    import d3rlpy

    device = "cuda:0" if str(job.get("device", "cpu")).startswith("cuda") else "cpu:0"
    algo = d3rlpy.algos.BCConfig().create(device=device)
    algo.build_with_dataset(dataset)
    algo.impl.predict_best_action = first_action  # the candidate, as the evaluated algorithm
    encoder = d3rlpy.models.encoders.VectorEncoderFactory(hidden_units=[int(job["hidden"])] * int(job["layers"]))
    return d3rlpy.ope.FQE(algo=algo, config=d3rlpy.ope.FQEConfig(
        batch_size=int(job["batch_size"]), gamma=float(job["gamma"]), encoder_factory=encoder), device=device)


def _fit(fqe, dataset, steps: int) -> None:
    import d3rlpy

    fqe.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, show_progress=False,
            logger_adapter=d3rlpy.logging.NoopAdapterFactory(), save_interval=10 ** 9)


def speed(job: dict) -> dict:
    """Samples/s of d3rlpy's FQE training (`fit`: its replay sampling, update and target sync) on the
    store, the evaluated policy a Gaussian first action (as `benchmarks.speed`'s stand-in policy);
    per second of process CPU time on a CPU (one torch thread), of wall time on a GPU."""
    import d3rlpy
    import torch

    dataset, _, _ = mdp_dataset(job)
    d3rlpy.seed(int(job["seed"]))
    gen = torch.Generator().manual_seed(int(job["seed"]))
    action_dim = dataset.episodes[0].actions.shape[1]

    def gaussian(x: torch.Tensor) -> torch.Tensor:
        return (0.5 * torch.randn(x.shape[0], action_dim, generator=gen)).to(x.device)

    fqe = _fqe(job, dataset, gaussian)
    _fit(fqe, dataset, int(job["warmup"]))  # builds the networks; first steps
    gpu = str(job.get("device", "cpu")).startswith("cuda")
    clock = time.perf_counter if gpu else time.process_time
    if gpu:
        torch.cuda.synchronize()
    t0 = clock()
    _fit(fqe, dataset, int(job["steps"]))
    if gpu:
        torch.cuda.synchronize()
    seconds = clock() - t0
    params = sum(p.numel() for p in fqe.impl.modules.q_funcs.parameters())
    return {"samples_per_s": int(job["steps"]) * int(job["batch_size"]) / max(seconds, 1e-9), "seconds": seconds,
            "steps": int(job["steps"]), "parameters": int(params), "timing": "wall time" if gpu else "process CPU time",
            "d3rlpy": d3rlpy.__version__}


def values(job: dict) -> dict:
    """FQE's value of each candidate at the logged episodes' first states."""
    import d3rlpy
    import torch

    from aloe_cli import schema as S
    from aloe_cli.policy import load_policy, sample_checked

    dataset, fa, eps = mdp_dataset(job)
    obs = fa.columns[S.OBS_STATE]
    tasks = eps[S.TASK].tolist()
    start_states = obs[fa.starts]
    K = int(job.get("samples", 8))
    d3rlpy.seed(int(job["seed"]))
    values, seconds = {}, {}
    for cand in job["candidates"]:
        t0 = time.perf_counter()
        policy = load_policy(cand["spec"], cand["args"])
        task = tasks[0]

        def first_action(x: torch.Tensor, policy=policy, task=task) -> torch.Tensor:
            state = x.detach().cpu().numpy().astype(np.float32)
            a = sample_checked(policy, {S.OBS_STATE: state, S.TASK: [task] * len(state)}, 1)[:, 0, 0]
            return torch.as_tensor(a, device=x.device)

        fqe = _fqe(job, dataset, first_action)
        _fit(fqe, dataset, int(job["steps"]))
        chunks = sample_checked(policy, {S.OBS_STATE: start_states, S.TASK: [task] * len(start_states)}, K)
        v = np.mean([fqe.predict_value(start_states, chunks[:, k, 0]) for k in range(K)], axis=0)
        values[cand["name"]] = v.astype(float).tolist()
        seconds[cand["name"]] = time.perf_counter() - t0
    return {"values": values, "seconds_per_candidate": seconds, "d3rlpy": d3rlpy.__version__}


def run_job(python: str, job: dict, work: Path) -> dict:
    """Run `job` with ``PYTHON -m benchmarks.d3rlpy_fqe`` (from the project's interpreter, without
    importing d3rlpy). Returns the job's result plus "seconds" (wall), or {"error", "seconds"}."""
    import os
    import subprocess

    t0 = time.perf_counter()
    mode = job.get("mode", "values")
    spec, out = Path(work) / f"d3rlpy_{mode}_job.json", Path(work) / f"d3rlpy_{mode}.json"
    spec.write_text(json.dumps({**job, "out": str(out)}))
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=repo, OMP_NUM_THREADS=str(job.get("threads", 1)))
    proc = subprocess.run([python, "-m", "benchmarks.d3rlpy_fqe", str(spec)], env=env, capture_output=True,
                          text=True, cwd=repo)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit {proc.returncode}", "seconds": seconds}
    return {**json.loads(out.read_text()), "seconds": seconds}


def main(job_path: str) -> None:
    """Run the job file's `mode` (values, the default, or speed) and write its result to `out`."""
    warnings.filterwarnings("ignore")
    job = json.loads(Path(job_path).read_text())
    if job.get("threads"):
        import torch

        torch.set_num_threads(int(job["threads"]))
    result = speed(job) if job.get("mode", "values") == "speed" else values(job)
    Path(job["out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
