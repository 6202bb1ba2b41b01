"""The critic on a chain world whose true Q is known in closed form (see tests/chainworld.py)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import chainworld as cw
from aloe_cli import schema as S
from aloe_cli.critic import CriticConfig, fit_critic, load_critic
from aloe_cli.critic.data import load_chunk_data
from aloe_cli.errors import BadInput
from aloe_cli.rewards import RewardSpec, resolve_rewards
from aloe_cli.store import Store

torch.set_num_threads(1)
L, GAMMA, P = 6, 0.9, 0.3
STATES = np.arange(L)
# Tiny nets and budgets: the world is tabular (7 one-hot states x 4 chunks of 2 binary actions).
FAST = dict(gamma=GAMMA, samples=1, steps=600, batch_size=128, hidden=64, tau=0.05, lr=1e-3, val_every=400,
            log_every=200, head="scalar")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("chain")
    cw.make_store(d / "store", episodes=300, L=L, p=P, T_max=60, seed=0)
    spec = cw.write_policy_module(d)
    sys.path.insert(0, str(d))
    yield d, spec
    sys.path.remove(str(d))


def fit(world, name, policy=True, **kw):
    """Fit once per name per test session (tests share the ALOE fit)."""
    d, spec = world
    if not (d / name).exists():
        cfg = CriticConfig(**{**FAST, **kw})
        fit_critic(d / "store", d / name, cfg, spec if policy else None, {"chunk_size": cfg.chunk_size or 2})
    return load_critic(d / name)


def q_of(critic, chunk) -> np.ndarray:
    chunks = np.tile(np.asarray(chunk, np.float32)[None, None, :, None], (L, 1, 1, 1))
    return critic.q(cw.onehot(STATES, L), chunks)[:, 0]


def truth(chunk, v) -> np.ndarray:
    return np.array([cw.q_chunk(s, chunk, L, GAMMA, v) for s in STATES])


V_PI = lambda s: cw.v_pi(s, L, GAMMA)  # noqa: E731
V_BETA = lambda s: cw.v_beta(s, L, GAMMA, P)  # noqa: E731


@pytest.mark.parametrize("H", [2, 1])
def test_policy_bootstrap_recovers_the_true_q_and_v(world, H):
    """ALOE (H = 2) and one-step FQE (H = 1): Q of every chunk and V^pi match the closed form."""
    critic = fit(world, f"policy_h{H}", chunk_size=H, reward="sparse", steps=600 if H == 2 else 1200)
    # V^pi(s) = Q(s, the policy's chunk) = gamma^(L - s - 1)
    np.testing.assert_allclose(q_of(critic, [1] * H), cw.v_pi(STATES, L, GAMMA), atol=0.02)
    # Every chunk, including [1, 0] from s = L - 1, which the logs only hold padded as [1, 1]:
    # training fills the padding past a terminal frame with actions from the data (chunks.fill_past_end).
    for chunk in ([0] * H, [1] + [0] * (H - 1), [0] * (H - 1) + [1]):
        np.testing.assert_allclose(q_of(critic, chunk), truth(chunk, V_PI), atol=0.02)
    cfg = critic.config
    assert cfg["policy"]["spec"] == world[1] and cfg["chunk_size"] == H and cfg["reward"] == {"kind": "sparse"}
    assert cfg["store"]["fingerprint"] == Store.open(world[0] / "store").fingerprint
    assert set(cfg["normalization"]) == {"state_mean", "state_std", "action_mean", "action_std", "return_shift",
                                         "return_scale"}


def test_transformer_chunk_encoder_recovers_v(world):
    critic = fit(world, "transformer", chunk_size=2, reward="sparse", chunk_encoder="transformer", hidden=32)
    np.testing.assert_allclose(q_of(critic, [1, 1]), cw.v_pi(STATES, L, GAMMA), atol=0.03)
    np.testing.assert_allclose(q_of(critic, [0, 1]), truth([0, 1], V_PI), atol=0.03)


def test_data_and_mc_converge_to_the_behaviour_value_not_the_policys(world):
    """Chunked SARSA and Monte-Carlo regression estimate the behaviour's Q, which differs from pi's:
    the reason for bootstrapping with the evaluated policy."""
    aloe = fit(world, "policy_h2", chunk_size=2, reward="sparse")
    for boot in ("data", "mc"):
        critic = fit(world, boot, policy=False, bootstrap=boot, reward="sparse", chunk_size=2)
        for chunk in ([1, 1], [0, 1]):
            est = q_of(critic, chunk)
            # Within sampling error of 300 episodes of the behaviour's own value (p = 0.3) ...
            assert np.abs(est - truth(chunk, V_BETA)).mean() < 0.04, (boot, chunk, est)
            # ... and far from the evaluated policy's value, which ALOE recovers.
            assert np.abs(est - truth(chunk, V_PI)).mean() > 0.15, (boot, chunk, est)
            assert np.abs(q_of(aloe, chunk) - truth(chunk, V_PI)).max() < 0.02


def test_step_penalty_value_matches_closed_form(world):
    """r = -1/T_norm per frame; reaching the goal in n steps: V^pi = -(1 - gamma^n) / ((1 - gamma) T_norm)."""
    critic = fit(world, "penalty", reward="step-penalty", chunk_size=2, head="hlgauss")
    t_norm = critic.config["reward"]["t_norm"]["reach the end"]
    lengths = Store.open(world[0] / "store").episodes[S.LENGTH]
    assert t_norm == pytest.approx(np.percentile(lengths, 95))
    n = L - STATES
    np.testing.assert_allclose(q_of(critic, [1, 1]), -(1 - GAMMA ** n) / ((1 - GAMMA) * t_norm), atol=0.01)


def test_truncated_tails_are_not_targets_and_terminal_tails_are(tmp_path):
    """Same episodes with and without outcomes: unlabelled (truncated) episodes lose the chunks whose
    bootstrap frame t + H is past their end; labelled (terminal) ones keep them with m = 0."""
    labelled = cw.make_store(tmp_path / "a", episodes=20, seed=3)
    unlabelled = cw.make_store(tmp_path / "b", episodes=20, seed=3, outcomes=False)
    H = 3
    for store, terminal in ((labelled, True), (unlabelled, False)):
        eps = store.episodes
        data = load_chunk_data(store, eps, H, 0.9, resolve_rewards(RewardSpec("step-penalty"), eps))
        lengths = eps[S.LENGTH].to_numpy()
        tails = np.minimum(H, lengths).sum()  # chunks whose frame t + H is not in the episode
        assert int((data.m == 0).sum()) == tails
        frames = lengths.sum()
        assert int(data.usable.sum()) == (frames if terminal else frames - tails)


# --------------------------------------------------------------------------- the command
def test_fit_critic_cli_writes_a_critic(world, cli, tmp_path):
    d, spec = world
    r = cli("fit-critic", d / "store", "--out", tmp_path / "c", "--policy", spec, "--reward", "sparse",
            "--gamma", "0.9", "--samples", "1", "--steps", "300", "--hidden", "32", "--ensemble", "3",
            "--aggregate", "mean-std", "--std-coef", "0.5", "--json")
    assert r.exit_code == 0, r
    out = json.loads(r.stdout)
    recorded = json.loads((tmp_path / "c" / "critic.json").read_text())["config"]
    assert (recorded["ensemble"], recorded["aggregate"], recorded["std_coef"]) == (3, "mean-std", 0.5)
    assert out["steps"] == 300 and out["chunk_size"] == 2 and out["bootstrap"] == "policy"
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert files == ["checkpoint.pt", "critic.json", "critic.safetensors", "metrics.jsonl"]
    lines = [json.loads(x) for x in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [100, 200, 300]
    assert all(k == "step" or "/" in k for x in lines for k in x)
    assert "val/td_mse" in lines[-1] and "time/samples_per_s" in lines[0]
    # The recorded V at start is that of the saved (Polyak-averaged) weights, the ones `aloe score` uses.
    from aloe_cli.scoring import episode_summaries, score_chunks

    store, critic = Store.open(d / "store"), load_critic(tmp_path / "c")
    v_start = episode_summaries(score_chunks(store, critic), store, critic.config)["v_start"].mean()
    result = json.loads((tmp_path / "c" / "critic.json").read_text())["result"]
    assert result["val/v_start"] == pytest.approx(v_start, abs=1e-5) == out["val/v_start"]
    # Not overwritten without --resume.
    r = cli("fit-critic", d / "store", "--out", tmp_path / "c", "--policy", spec, "--steps", "10")
    assert r.exit_code == 2
    assert r.stderr.strip() == (f"Error: {tmp_path / 'c'}: --out: already holds a critic; pass --resume to "
                                "continue it or choose another --out")


def test_a_seed_near_the_limit_trains(world, tmp_path, monkeypatch):
    """--seed allows up to 2^63 - 1; the policy-sample filling seeded torch with seed * 1_000_003 + block, past
    torch's limit (ValueError: Overflow when unpacking long long). A cache kept on disk
    ($ALOE_SAMPLES_RAM_MB=0) gives the same critic as one read into RAM."""
    d, spec = world
    cfg = CriticConfig(**{**FAST, "steps": 20, "seed": 2 ** 63 - 1})
    fit_critic(d / "store", tmp_path / "big", cfg, spec, {"chunk_size": 2})
    monkeypatch.setenv("ALOE_SAMPLES_RAM_MB", "0")
    fit_critic(d / "store", tmp_path / "disk", cfg, spec, {"chunk_size": 2})
    a, b = load_critic(tmp_path / "big"), load_critic(tmp_path / "disk")
    np.testing.assert_array_equal(q_of(a, [1, 1]), q_of(b, [1, 1]))
    monkeypatch.setenv("ALOE_SAMPLES_RAM_MB", "lots")
    with pytest.raises(BadInput) as e:
        fit_critic(d / "store", tmp_path / "bad", cfg, spec, {"chunk_size": 2})
    assert str(e.value) == "$ALOE_SAMPLES_RAM_MB: must be a number of MiB >= 0, got 'lots'"


def test_a_memory_mapped_cache_goes_to_a_gpu_with_room_for_it_and_is_copied_by_blocks(tmp_path):
    """A cache over $ALOE_SAMPLES_RAM_MB stays memory-mapped on the CPU (each batch reads its rows), but on a GPU
    with free memory for it (twice its size) it is copied there once, a block at a time, not every step."""
    from aloe_cli.critic.train import cache_on_device, to_device_blockwise

    a = np.lib.format.open_memmap(tmp_path / "s.npy", mode="w+", dtype=np.float32, shape=(37, 2, 3, 4))
    a[:] = np.random.default_rng(0).normal(size=a.shape)
    ram = np.asarray(a).copy()
    cuda = torch.device("cuda", 0)
    assert cache_on_device(ram, torch.device("cpu")) and cache_on_device(ram, cuda, free_bytes=0)
    assert not cache_on_device(a, torch.device("cpu"))
    assert cache_on_device(a, cuda, free_bytes=2 * a.nbytes)
    assert not cache_on_device(a, cuda, free_bytes=2 * a.nbytes - 1)
    t = to_device_blockwise(a, torch.device("cpu"), block_bytes=5 * a[:1].nbytes)  # 8 blocks, the last short
    assert t.dtype == torch.float32 and not np.shares_memory(t.numpy(), a)
    np.testing.assert_array_equal(t.numpy(), ram)


def test_bad_input(world, cli, tmp_path):
    d, spec = world
    nolabels = cw.make_store(tmp_path / "nolabels", episodes=5, seed=1, outcomes=False).root
    cases = [
        (("fit-critic", nolabels, "--out", tmp_path / "o", "--policy", spec, "--reward", "sparse"),
         f"Error: {nolabels}: success: no episode has an outcome (success or failure), so --reward sparse would "
         "be 0 everywhere; label outcomes at ingest (--success) or use --reward step-penalty"),
        (("fit-critic", d / "store", "--out", tmp_path / "o", "--policy", spec, "--chunk-size", "100",
          "--policy-arg", "chunk_size=100"),
         f"Error: --chunk-size: 100 leaves no chunk with a next observation: the longest episode has "
         f"{int(Store.open(d / 'store').episodes[S.LENGTH].max())} frames; use a chunk size below "
         f"{int(Store.open(d / 'store').episodes[S.LENGTH].max())}"),
        (("fit-critic", d / "store", "--out", tmp_path / "o", "--policy", spec, "--policy-arg", "action_dim=2"),
         f"Error: {spec}: --policy: policy action_dim is 2 but the store's actions have 1 numbers"),
        (("fit-critic", d / "store", "--out", tmp_path / "o"),
         "Error: --policy: --bootstrap policy needs the policy being evaluated"),
        (("fit-critic", d / "store", "--out", tmp_path / "o", "--policy", spec, "--chunk-size", "3"),
         "Error: --chunk-size: 3 is longer than the policy's chunks (2 actions)"),
        (("fit-critic", d / "store", "--out", tmp_path / "o", "--policy", spec, "--aggregate", "max"),
         "Error: --aggregate: got 'max'; choose one of min, mean, mean-std"),
        (("fit-critic", d / "store", "--out", tmp_path / "o", "--policy", spec, "--std-coef", "-1"),
         "Error: --std-coef: must be a number >= 0, got -1.0"),
        (("fit-critic", d / "store", "--out", tmp_path / "o", "--policy", spec, "--episodes-filter",
          "policy_id == 'nobody'"),
         "Error: --episodes-filter: \"policy_id == 'nobody'\" selects no episode of 300"),
    ]
    for args, message in cases:
        r = cli(*args)
        assert r.exit_code == 2, (args, r)
        assert r.stderr.strip() == message
        assert not (tmp_path / "o").exists()  # nothing half-written
