"""d3rlpy's Fitted Q Evaluation as an outside reference for `benchmarks.ope` (one-step, H = 1).

`benchmarks.ope --d3rlpy-python PY` runs ``PY -m benchmarks.d3rlpy_fqe JOB.json`` in a separate
interpreter, because d3rlpy 2.8.1 pins gymnasium 1.0.0 while metaworld needs a newer one. The
environment it was measured with (a venv that sees the project's packages and adds d3rlpy's
own dependencies, minus its gymnasium pin, which d3rlpy runs without):

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

The job file holds: store, candidates [{name, spec, args}], reward (resolved), gamma, steps,
batch_size, hidden, layers, seed, device, samples, out. Writes {"values": {name: [per start
state]}, "d3rlpy": version} to `out`.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def main(job_path: str) -> None:
    warnings.filterwarnings("ignore")
    import d3rlpy
    import torch

    from aloe_cli import schema as S
    from aloe_cli.policy import load_policy, sample_checked
    from aloe_cli.rewards import frame_rewards
    from aloe_cli.store import Store

    job = json.loads(Path(job_path).read_text())
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
    device = "cuda:0" if str(job.get("device", "cpu")).startswith("cuda") else "cpu:0"
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

        algo = d3rlpy.algos.BCConfig().create(device=device)
        algo.build_with_dataset(dataset)
        algo.impl.predict_best_action = first_action  # the candidate, as the evaluated algorithm
        encoder = d3rlpy.models.encoders.VectorEncoderFactory(hidden_units=[int(job["hidden"])] * int(job["layers"]))
        fqe = d3rlpy.ope.FQE(algo=algo, config=d3rlpy.ope.FQEConfig(
            batch_size=int(job["batch_size"]), gamma=float(job["gamma"]), encoder_factory=encoder), device=device)
        fqe.fit(dataset, n_steps=int(job["steps"]), n_steps_per_epoch=int(job["steps"]), show_progress=False,
                logger_adapter=d3rlpy.logging.NoopAdapterFactory(), save_interval=10 ** 9)
        chunks = sample_checked(policy, {S.OBS_STATE: start_states, S.TASK: [task] * len(start_states)}, K)
        v = np.mean([fqe.predict_value(start_states, chunks[:, k, 0]) for k in range(K)], axis=0)
        values[cand["name"]] = v.astype(float).tolist()
        seconds[cand["name"]] = time.perf_counter() - t0
    Path(job["out"]).write_text(json.dumps({"values": values, "seconds_per_candidate": seconds,
                                            "d3rlpy": d3rlpy.__version__}))


if __name__ == "__main__":
    main(sys.argv[1])
