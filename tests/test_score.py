"""`aloe score` on the chain world (true advantages known in closed form), and the scoring math by hand."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import chainworld as cw
from aloe_cli import schema as S
from aloe_cli.critic import CriticConfig, fit_critic, load_critic
from aloe_cli.scoring import episode_summaries, intervention_spans, normalized_advantages, policy_value, score_chunks
from aloe_cli.store import Store

torch.set_num_threads(1)
L, GAMMA = 6, 0.9
# The evaluated policy plays the chunk [1, 0]: it moves every other frame, so logged chunks [1, 1]
# are better than its own (positive advantage) and [0, 0] worse (negative).
V_PAT = lambda s: cw.v_pattern10(s, L, GAMMA)  # noqa: E731


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    from typer.testing import CliRunner

    from aloe_cli.cli import app

    d = tmp_path_factory.mktemp("score")
    cw.make_store(d / "store", episodes=200, p=0.3, T_max=60, seed=1, interventions=True)
    spec = cw.write_policy_module(d)
    sys.path.insert(0, str(d))
    cfg = CriticConfig(reward="sparse", gamma=GAMMA, chunk_size=2, samples=1, steps=800, batch_size=128, hidden=64,
                       tau=0.05, lr=1e-3)
    fit_critic(d / "store", d / "critic", cfg, spec, {"chunk_size": 2, "pattern": "1,0"})
    r = CliRunner().invoke(app, ["score", str(d / "store"), "--critic", str(d / "critic"), "--out", str(d / "scores"),
                                 "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    yield d, spec, json.loads(r.stdout)
    sys.path.remove(str(d))


def logged(d):
    """The chunks.parquet rows joined back to the store's frames: state s and the logged chunk."""
    chunks = pd.read_parquet(d / "scores" / S.SCORES_CHUNKS_FILE)
    frames = pd.read_parquet(d / "store" / S.FRAMES_DIR)
    frames["s"] = [int(np.argmax(x)) for x in frames[S.OBS_STATE]]
    frames["a"] = [float(x[0]) for x in frames[S.ACTION]]
    joined = chunks.merge(frames[[S.EPISODE_ID, S.FRAME_INDEX, "s", "a", S.IS_INTERVENTION]],
                          on=[S.EPISODE_ID, S.FRAME_INDEX], suffixes=("", "_frame"), validate="one_to_one")
    nxt = frames[[S.EPISODE_ID, S.FRAME_INDEX, "a"]].assign(**{S.FRAME_INDEX: frames[S.FRAME_INDEX] - 1})
    joined = joined.merge(nxt, on=[S.EPISODE_ID, S.FRAME_INDEX], how="left", suffixes=("", "_next"))
    joined["a_next"] = joined["a_next"].fillna(joined["a"])  # padded with the last action
    return chunks, joined


def test_chunks_join_back_to_the_store(scored):
    d, _, summary = scored
    chunks, joined = logged(d)
    assert len(joined) == len(chunks) == Store.open(d / "store").episodes[S.LENGTH].sum() == summary["chunks"]
    assert (joined[S.IS_INTERVENTION] == joined[S.IS_INTERVENTION + "_frame"]).all()
    assert (joined[S.CHUNK_LEN] == np.minimum(2, joined.groupby(S.EPISODE_ID)[S.FRAME_INDEX].transform("max")
                                              + 1 - joined[S.FRAME_INDEX])).all()
    eps = pd.read_parquet(d / "scores" / S.SCORES_EPISODES_FILE)
    store_eps = Store.open(d / "store").episodes
    assert eps[S.EPISODE_ID].tolist() == store_eps[S.EPISODE_ID].tolist()
    # Every 5th episode has a human span at frames [1, 3) (cut to the episode's length).
    want = [[[1, min(3, T)]] if i % 5 == 0 and T > 1 else [] for i, T in enumerate(store_eps[S.LENGTH])]
    assert [[list(s) for s in x] for x in eps[S.INTERVENTION_SPANS]] == want
    # Sparse reward: the return of a success that took T frames is gamma^(T - 1).
    np.testing.assert_allclose(eps[S.RETURN], GAMMA ** (store_eps[S.LENGTH] - 1.0))


def test_advantages_have_the_true_sign_and_size(scored):
    d, _, _ = scored
    _, j = logged(d)
    true_q = np.array([cw.q_chunk(s, [a, b], L, GAMMA, V_PAT) for s, a, b in zip(j["s"], j["a"], j["a_next"])])
    true_adv = true_q - V_PAT(j["s"].to_numpy())
    np.testing.assert_allclose(j[S.V], V_PAT(j["s"].to_numpy()), atol=0.02)
    np.testing.assert_allclose(j[S.ADVANTAGE], true_adv, atol=0.03)
    good = (j["a"] == 1) & (j["a_next"] == 1) & (j["s"] <= L - 3)  # [1, 1] far from the goal
    bad = (j["a"] == 0) & (j["a_next"] == 0)  # [0, 0] anywhere
    assert good.sum() > 50 and bad.sum() > 50
    assert (j.loc[good, S.ADVANTAGE] > 0).all() and (j.loc[bad, S.ADVANTAGE] < 0).all()
    assert (np.sign(j.loc[good | bad, S.ADVANTAGE]) == np.sign(true_adv[good | bad])).all()


def test_policy_value_interval_covers_the_true_value(scored):
    d, spec, summary = scored
    eps = pd.read_parquet(d / "scores" / S.SCORES_EPISODES_FILE)
    _, j = logged(d)
    s0 = j[j[S.FRAME_INDEX] == 0].set_index(S.EPISODE_ID).loc[eps[S.EPISODE_ID], "s"].to_numpy()
    truth = V_PAT(s0).mean()  # the policy's value from the logged start states
    pv = summary["policy_value"]
    assert pv["ci_low"] <= truth <= pv["ci_high"] and abs(pv["estimate"] - truth) < 0.01
    assert pv["ci_high"] - pv["ci_low"] > 0.01  # a real interval, not a point
    assert summary["per_policy_id"]["beta"]["episodes"] == 200 and summary["warnings"] == []
    assert summary["policy"] == spec and summary["per_task"]["reach the end"]["episodes"] == 200
    # The logged behaviour's own value (its returns) is reported beside it, and differs.
    assert summary["per_policy_id"]["beta"]["return"]["estimate"] < pv["ci_low"]


def test_stride_and_a_different_policy(scored, tmp_path):
    d, spec, _ = scored
    critic = load_critic(d / "critic")
    store = Store.open(d / "store")
    every = pd.read_parquet(d / "scores" / S.SCORES_CHUNKS_FILE)
    third = score_chunks(store, critic, stride=3, batch_size=7)
    assert (third[S.FRAME_INDEX] % 3 == 0).all()
    assert len(third) == int(np.ceil(store.episodes[S.LENGTH] / 3).sum())
    same = every.merge(third, on=[S.EPISODE_ID, S.FRAME_INDEX])
    np.testing.assert_allclose(same[S.Q + "_x"], same[S.Q + "_y"], atol=1e-5)
    np.testing.assert_allclose(same[S.V + "_x"], same[S.V + "_y"], atol=1e-5)
    # Q only: the same Q, and no policy is loaded (the recorded one would give V).
    q_only = score_chunks(store, critic, q_only=True)
    np.testing.assert_allclose(q_only[S.Q], every[S.Q], atol=1e-5)
    assert q_only[S.V].isna().all() and q_only[S.ADVANTAGE].isna().all() and every[S.V].notna().all()
    # Scoring with another policy than the critic's is allowed, with a warning.
    from aloe_cli.scoring import score

    other = cw.write_policy_module(d, "other_policy")  # always moves: V = gamma^(L - s - 1) > V of [1, 0]
    summary = score(store, d / "critic", tmp_path / "other", policy_spec=other, policy_args={"chunk_size": 2})
    assert summary["warnings"] == [
        f"scored with --policy {other} but the critic was fitted for {spec}: its Q bootstraps with the other "
        "policy's chunks, so V and the advantages mix the two"]
    assert summary["policy"] == other
    v_other = pd.read_parquet(tmp_path / "other" / S.SCORES_CHUNKS_FILE)[S.V]
    assert (v_other.to_numpy() >= every[S.V].to_numpy() - 1e-4).all()


def test_bad_input(scored, cli, tmp_path):
    d, spec, _ = scored
    broken = tmp_path / "broken"
    shutil.copytree(d / "critic", broken)
    (broken / "critic.safetensors").unlink()
    r = cli("score", d / "store", "--critic", broken, "--out", tmp_path / "o")
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"Error: {broken}: --critic: missing critic.safetensors: not a finished critic written by `aloe fit-critic`")
    wide = cw.make_store(tmp_path / "wide", episodes=5, seed=2, action_dim=2).root
    r = cli("score", wide, "--critic", d / "critic", "--out", tmp_path / "o")
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"Error: {d / 'critic'}: action_dim: the critic was fitted on actions of 1 numbers but the store {wide} has 2")
    r = cli("score", d / "store", "--critic", d / "critic", "--out", tmp_path / "o", "--stride", "0")
    assert r.exit_code == 2 and r.stderr.strip() == "Error: --stride: must be at least 1, got 0"
    assert not (tmp_path / "o").exists()
    # An episodes table whose length disagrees with the episode's frames is named, not scored past.
    bad = tmp_path / "bad-length"
    shutil.copytree(d / "store", bad)
    eps = pd.read_parquet(bad / S.EPISODES_FILE)
    eps.loc[3, S.LENGTH] += 1
    eps.to_parquet(bad / S.EPISODES_FILE, index=False)
    r = cli("score", bad, "--critic", d / "critic", "--out", tmp_path / "o")
    assert r.exit_code == 2 and r.stderr.strip().splitlines()[-1] == (  # after the progress bar's line
        f"Error: {bad / eps.loc[3, S.FRAMES_FILE]}: {S.LENGTH}: episode {eps.loc[3, S.EPISODE_ID]} has "
        f"{eps.loc[3, S.LENGTH] - 1} frames but the episodes table says {eps.loc[3, S.LENGTH]}")
    assert not (tmp_path / "o").exists()


def test_scoring_again_leaves_no_report_of_the_earlier_scores(scored, cli, tmp_path):
    """A report left in --out by earlier scores goes when new scores are written there (--report writes
    the new scores' report); a refused run leaves the scores and their report as they were. (The report
    stayed, showing the other critic's values.)"""
    d, _, _ = scored
    other, out = tmp_path / "other-critic", tmp_path / "sc"
    shutil.copytree(d / "critic", other)
    score = ["score", d / "store", "--out", out, "--critic"]
    assert cli(*score, other, "--report").exit_code == 0
    report = {p.name for p in out.iterdir() if p.name.startswith("report")}
    assert "report.html" in report and len(report) > 1 and str(other) in (out / "report.html").read_text()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = cli(*score, d / "critic", "--stride", "0")
    assert r.exit_code == 2 and {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert cli(*score, d / "critic").exit_code == 0
    assert json.loads((out / S.SCORES_SUMMARY_FILE).read_text())["critic"] == str(d / "critic")
    assert sorted(p.name for p in out.iterdir()) == sorted([S.SCORES_CHUNKS_FILE, S.SCORES_EPISODES_FILE,
                                                            S.SCORES_SUMMARY_FILE])
    assert cli(*score, other, "--report").exit_code == 0
    assert cli(*score, d / "critic", "--report").exit_code == 0
    page = (out / "report.html").read_text()
    assert str(d / "critic") in page and str(other) not in page
    assert {p.name for p in out.iterdir() if p.name.startswith("report")} == report
    # A directory that held no scores: a report.html there is not aloe's, and stays.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("mine")
    assert cli("score", d / "store", "--out", mine, "--critic", d / "critic").exit_code == 0
    assert (mine / "report.html").read_text() == "mine" and (mine / S.SCORES_SUMMARY_FILE).exists()


# --------------------------------------------------------------------------- by hand
def test_extra_obs_columns_with_mean_minus_std(tmp_path):
    """A critic fitted with an --obs extra column and mean - c * std scores each chunk as its own
    heads give it: Q = mean - 0.5 std of the heads, V = the same over the policy's K = 1 chunk.
    (score_chunks once reused the name of c for the extra columns' loop, and scored with the
    column's name in place of 0.5.)"""
    from aloe_cli.critic.net import aggregate
    from aloe_cli.episode import Episode

    rng = np.random.default_rng(3)
    store = Store.open(tmp_path / "s", create=True)
    with store.writer("chainworld", "test") as w:
        for i in range(30):
            ep = cw.rollout(rng, 6, 0.5, 20, 1)
            w.add(Episode(state=ep.state, action=ep.action, source_key=f"ep{i}", success=ep.success,
                          extras={"observation.embed": rng.normal(size=(len(ep), 2)).astype(np.float32)}))
        w.commit()
    store = Store.open(tmp_path / "s")
    spec = cw.write_policy_module(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        cfg = CriticConfig(reward="sparse", gamma=GAMMA, chunk_size=2, samples=1, steps=30, batch_size=32, hidden=32,
                           ensemble=3, aggregate="mean-std", std_coef=0.5, obs="state,embed", device="cpu")
        fit_critic(store, tmp_path / "critic", cfg, spec, {"chunk_size": 2, "pattern": "1,0"})
        critic = load_critic(tmp_path / "critic")
        df = score_chunks(store, critic, stride=2, batch_size=16)
    finally:
        sys.path.remove(str(tmp_path))
    eps = store.episodes.set_index(S.EPISODE_ID)
    for ep_id, rows in df.groupby(S.EPISODE_ID, sort=False):
        table = next(t for r, t in store.iter_episode_tables([ep_id]))
        state = np.stack(table.column(S.OBS_STATE).to_numpy(zero_copy_only=False)).astype(np.float32)
        action = np.stack(table.column(S.ACTION).to_numpy(zero_copy_only=False)).astype(np.float32)
        embed = np.stack(table.column("observation.embed").to_numpy(zero_copy_only=False)).astype(np.float32)
        T, t = len(state), rows[S.FRAME_INDEX].to_numpy()
        assert T == eps.loc[ep_id, S.LENGTH] and (t == np.arange(0, T, 2)).all()
        chunk = action[np.minimum(t[:, None] + np.arange(2), T - 1)]
        feats = critic.features(state[t], {"observation.embed": embed[t]})
        heads = torch.as_tensor(critic.q_heads(feats, chunk[:, None]))[:, 0]
        np.testing.assert_allclose(rows[S.Q], aggregate(heads, "mean", 1.0) - 0.5 * heads.std(-1, unbiased=False),
                                   atol=1e-5)
        np.testing.assert_allclose(rows[S.Q_STD], heads.std(-1, unbiased=False), atol=1e-5)
        mine = np.tile(np.array([1.0, 0.0], np.float32)[None, None, :, None], (len(t), 1, 1, 1))
        v = aggregate(torch.as_tensor(critic.q_heads(feats, mine)), "mean-std", 0.5).mean(1)
        np.testing.assert_allclose(rows[S.V], v, atol=1e-5)


def test_episode_summary_by_hand(tmp_path):
    store = cw.make_store(tmp_path / "s", episodes=1, seed=0, T_max=60, p=0.0)  # never moves: 60 frames, no outcome
    eid = store.episodes[S.EPISODE_ID][0]
    f = np.array([0, 3, 6, 9])
    v = np.array([-0.1, -0.2, -0.9, -0.8])  # falls: .1 (lands at 3), .7 (lands at 6), -.1
    q = np.array([-0.1, -0.5, -0.7, -0.8])
    z = np.array([0.0, -2.5, 1.0, -1.9])
    df = pd.DataFrame({S.EPISODE_ID: eid, S.FRAME_INDEX: f, S.V: v, S.Q: q, S.ADVANTAGE: q - v,
                       S.ADVANTAGE_NORM: z})
    config = {"reward": {"kind": "step-penalty", "t_norm": {"reach the end": 10.0}, "t_norm_default": 10.0,
                         "c_fail": None}, "config": {"gamma": 1.0}}
    row = episode_summaries(df, store, config).iloc[0]
    assert row[S.V_START] == -0.1 and row[S.Q_START] == -0.1
    # advantages q - v: 0, -.3, .2, 0 -> min -.3 at frame 3, max .2 at frame 6
    assert row[S.ADV_MIN] == pytest.approx(-0.3) and row[S.ADV_MIN_FRAME] == 3
    assert row[S.ADV_MAX] == pytest.approx(0.2) and row[S.ADV_MAX_FRAME] == 6
    assert row[S.V_DROP_MAX] == pytest.approx(0.7) and row[S.V_DROP_FRAME] == 6
    assert list(row[S.CRITICAL_FRAMES]) == [3]  # advantage_norm <= -2
    assert row[S.RETURN] == pytest.approx(-6.0)  # 60 frames x -1/10, gamma 1, no outcome: no failure cost
    assert row[S.INTERVENTION_SPANS] == []


def test_intervention_spans_and_normalised_advantages_by_hand():
    assert intervention_spans([0, 1, 1, 0, 1]) == [[1, 3], [4, 5]]
    assert intervention_spans([1, 1]) == [[0, 2]] and intervention_spans([]) == []
    # task a: advantages 1, -1 (std 1) -> 1, -1; task b: 2, 2, 2 (std 0) -> NaN
    z = normalized_advantages(np.array([1.0, -1.0, 2, 2, 2]), np.array(["a", "a", "b", "b", "b"]))
    assert z[:2].tolist() == [1.0, -1.0] and np.isnan(z[2:]).all()


def test_policy_value_by_hand():
    assert policy_value([0.5, 0.5, 0.5]) == {"estimate": 0.5, "ci_low": 0.5, "ci_high": 0.5}
    assert policy_value([np.nan]) == {"estimate": None, "ci_low": None, "ci_high": None}
    # 2000 values of N(0, 1): the 95% interval is about mean -+ 1.96 / sqrt(2000) = -+ 0.0438.
    v = np.random.default_rng(0).normal(size=2000)
    pv = policy_value(v, n_boot=2000, seed=1)
    assert pv["estimate"] == pytest.approx(v.mean())
    assert pv["ci_high"] - pv["ci_low"] == pytest.approx(2 * 1.96 * v.std() / np.sqrt(2000), rel=0.1)
    assert pv["ci_low"] < v.mean() < pv["ci_high"]
