"""`aloe improve` rounds on the chain world, through the real pipeline (bc -> fit-critic -> score -> improve).

In the chain world (tests/chainworld.py) an action of 1 moves toward the goal and 0 stays put; the
logged behaviour plays 1 with probability 0.5, so half of the logged actions (and of the chunks'
first actions) are known to be bad. A behaviour-cloned policy plays 1 about half the time; a policy
improved from the advantages must play it measurably more often. Scores come from the real
pipeline (a critic fitted for the round-0 policy, then `aloe score`); one case rewrites a real
chunks.parquet with NaN advantages (the shape `aloe score` writes when it has no policy).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import chainworld as cw
from aloe_cli import schema as S
from aloe_cli import weights as W
from aloe_cli.critic import CriticConfig, fit_critic
from aloe_cli.errors import BadInput, PolicyError
from aloe_cli.improve import MethodOptions, improve, load_scores, method_options, select
from aloe_cli.policy import load_policy
from aloe_cli.rounds import policy_fingerprint, rounds
from aloe_cli.scoring import score
from aloe_cli.store import Store

torch.set_num_threads(1)
L, GAMMA, H = 6, 0.9, 2
TINY = dict(hidden=64, depth=2, obs_layers=2, batch_size=128, lr=2e-3, eval_every=300, log_every=100, device="cpu",
            warmup_steps=20, task_embedding=False)
STEPS = 300
STATES = cw.onehot(np.arange(L), L)  # every non-terminal position


def mean_action(policy_dir, first: int | None = None, **args) -> float:
    """How often the policy moves: the mean of its sampled actions (the first `first` of each
    chunk, default all) over every position (1 = always)."""
    p = load_policy(str(policy_dir), args or None)
    return float(p.sample({S.OBS_STATE: STATES}, 64)[:, :, :first].mean())


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """Round 0 (bc from scratch), a critic fitted for it, and the scores of the store."""
    d = tmp_path_factory.mktemp("improve")
    cw.make_store(d / "store", episodes=150, L=L, p=0.5, T_max=40, seed=1, interventions=True)
    improve(d / "store", d / "r0", "bc", settings=dict(TINY, chunk_size=H, steps=STEPS))
    cfg = CriticConfig(reward="sparse", gamma=GAMMA, chunk_size=H, samples=4, steps=800, batch_size=128, hidden=64,
                       tau=0.05, lr=1e-3, device="cpu")
    fit_critic(d / "store", d / "critic", cfg, str(d / "r0"))
    score(d / "store", d / "critic", d / "scores", device="cpu")
    return d


def run(d, method, out, base=None, scores=True, steps=STEPS, **options):
    return improve(d / "store", d / out, method, settings=dict(TINY, steps=steps), base=base,
                   scores=d / "scores" if scores else None, options=options or None)


@pytest.fixture(scope="module")
def round1(loop):
    """Round 1 by every method, each fine-tuned from round 0 with the same budget."""
    d = loop
    out = {}
    for m in ("bc", "aloe", "awr", "filtered", "conditioned"):
        out[m] = run(d, m, f"r1-{m}", base=d / "r0", **({"value_steps": 500} if m == "awr" else {}))
    return d, out


# ---------------------------------------------------------------- the methods improve on bc

@pytest.mark.parametrize("method", ["aloe", "awr", "filtered", "conditioned"])
def test_improved_policies_move_toward_the_good_chunks(round1, method):
    d, _ = round1
    bc, improved = mean_action(d / "r1-bc"), mean_action(d / f"r1-{method}")
    assert 0.35 < bc < 0.65, bc  # behaviour cloning reproduces the 50/50 behaviour
    assert improved > bc + 0.15, (method, improved, bc)


def test_a_policy_with_longer_chunks_than_the_scores_learns_from_them(loop):
    """ALOE's "predict 2H, score the first H": scores of 2-action chunks train a 4-action policy,
    whose chunks start with the good actions as the 2-action policy's do."""
    d = loop
    bc = improve(d / "store", d / "long-bc", "bc", settings=dict(TINY, chunk_size=2 * H, steps=STEPS))
    run_long = improve(d / "store", d / "long-aloe", "aloe", settings=dict(TINY, chunk_size=2 * H, steps=STEPS),
                       scores=d / "scores")
    assert load_policy(str(d / "long-aloe")).chunk_size == 2 * H and run_long["method"] == "aloe" and bc
    # the scored (first H) actions of its chunks move toward the good chunks
    assert mean_action(d / "long-aloe", first=H) > mean_action(d / "long-bc", first=H) + 0.15


def test_conditioned_policy_follows_its_indicator(round1):
    d, _ = round1
    doc = json.loads((d / "r1-conditioned" / S.POLICY_FILE).read_text())
    assert doc["config"]["advantage_conditioning"] is True and doc["config"]["indicator_dropout"] == 0.3
    assert doc["conditioning"]["indicator"] == {"unknown": 0, "negative": 1, "positive": 2}
    pos, neg = mean_action(d / "r1-conditioned"), mean_action(d / "r1-conditioned", indicator="negative")
    unknown = mean_action(d / "r1-conditioned", indicator="unknown")
    assert pos > unknown > neg and pos - neg > 0.25, (pos, unknown, neg)
    with pytest.raises(PolicyError) as e:
        load_policy(str(d / "r1-conditioned"), {"indicator": "maybe"})
    assert str(e.value) == (f"{d / 'r1-conditioned'}: --policy-arg: indicator='maybe' is not one of positive, "
                            "negative, unknown")
    with pytest.raises(PolicyError) as e:
        load_policy(str(d / "r0"), {"indicator": "positive"})
    assert str(e.value) == (f"{d / 'r0'}: --policy-arg: indicator applies to advantage-conditioned policies "
                            "(aloe improve --method conditioned) only")
    # A conditioned policy is continued only as a conditioned one.
    with pytest.raises(BadInput) as e:
        run(d, "aloe", "never", base=d / "r1-conditioned", steps=1)
    assert str(e.value) == (f"{d / 'r1-conditioned' / S.POLICY_FILE}: advantage_conditioning: is advantage-conditioned "
                            "(aloe improve --method conditioned); continue it with --method conditioned")


# ---------------------------------------------------------------- weights

def scored_advantages(d) -> pd.DataFrame:
    return pd.read_parquet(d / "scores" / S.SCORES_CHUNKS_FILE)


def test_weights_are_finite_clipped_and_the_ess_is_right(round1):
    d, results = round1
    adv = scored_advantages(d)[S.ADVANTAGE].to_numpy(np.float64)  # stride 1: one row per frame, store order
    beta = adv.std()
    want = np.minimum(np.exp(adv / beta), 20.0)
    r = results["aloe"]
    assert r["beta"] == pytest.approx(beta, rel=1e-6) and r["w_max"] == 20.0
    w = r["weights"]
    assert w["chunks"] == len(adv)
    assert w["effective_sample_size"] == pytest.approx(want.sum() ** 2 / (want ** 2).sum(), rel=1e-5)
    assert w["max"] == pytest.approx(want.max(), rel=1e-5) and w["mean"] == pytest.approx(want.mean(), rel=1e-5)
    assert 0.2 < w["ess_fraction"] < 0.9  # the round emphasised some chunks, not a handful
    # The lineage records the same summary; filtered keeps 30% of the chunks at weight 1.
    lin = json.loads((d / "r1-aloe" / S.POLICY_FILE).read_text())["lineage"]
    assert lin["weights"] == w
    f = results["filtered"]["weights"]
    assert f["fraction_zero"] == pytest.approx(1 - np.ceil(0.3 * len(adv)) / len(adv))
    assert f["effective_sample_size"] == pytest.approx(np.ceil(0.3 * len(adv)))
    # A small w_max clips; the weights stay finite and within [0, w_max]; beta as given.
    store = Store.open(d / "store")
    sel = select(store, "aloe", load_scores(d / "scores", store), MethodOptions(beta=0.01, w_max=1.5))
    assert np.isfinite(sel.weights).all() and sel.weights.min() >= 0 and sel.weights.max() == pytest.approx(1.5)
    np.testing.assert_allclose(sel.weights, np.minimum(np.exp(adv / 0.01), 1.5), rtol=1e-5)
    s = sel.info["weights"]
    assert s["fraction_clipped"] == pytest.approx(float((adv / 0.01 >= np.log(1.5) - 1e-6).mean()), abs=1e-3)
    assert s["fraction_clipped"] > 0.2 and s["effective_sample_size"] == pytest.approx(
        W.effective_sample_size(sel.weights))
    # By intervention: the human spans (frames 1..2 of every 5th episode) are reported apart.
    assert set(s["mean_by_intervention"]) == {"False", "True"} and set(s["mean_by_policy_id"]) == {"beta"}
    # A relative temperature: beta = 0.25 * std(A), so every weight is exp(4 z), clipped to w_max.
    sel = select(store, "aloe", load_scores(d / "scores", store), method_options("aloe", {"beta_scale": 0.25}))
    assert sel.info["beta"] == pytest.approx(0.25 * adv.std(), rel=1e-6)
    assert sel.info["beta_rule"] == "0.25 x std of advantages"
    np.testing.assert_allclose(sel.weights, np.minimum(np.exp(adv / (0.25 * adv.std())), 20.0), rtol=1e-5)


def test_awr_uses_monte_carlo_advantages_not_the_critic(round1):
    d, results = round1
    r = results["awr"]
    assert r["advantage"]["source"] == "monte-carlo" and r["value"]["reward"] == "sparse"
    assert r["value"]["gamma"] == GAMMA and r["value"]["value/explained_variance"] > 0.2
    store = Store.open(d / "store")
    scores = load_scores(d / "scores", store)
    sel = select(store, "awr", scores, MethodOptions(value_steps=500))
    # A = G - V_mc: it sums to about 0 over the data and differs from the critic's advantages.
    assert abs(sel.advantages.mean()) < 0.05
    assert np.corrcoef(sel.advantages, scores.to_frames(scores.advantage))[0, 1] < 0.99
    frames = store.load_frames([S.ACTION])
    a = frames.columns[S.ACTION][:, 0]
    assert sel.advantages[a == 1].mean() > sel.advantages[a == 0].mean() + 0.02  # moving is better


def test_awr_needs_no_critic(round1, tmp_path):
    """Without --scores AWR takes the reward and gamma as options; given the scores' critic's own, the
    advantages are the same as with the scores. Unset, they are fit-critic's defaults."""
    d, _ = round1
    store = Store.open(d / "store")
    scores = load_scores(d / "scores", store)
    with_scores = select(store, "awr", scores, MethodOptions(value_steps=300))
    no_critic = select(store, "awr", None, MethodOptions(value_steps=300, reward="sparse", gamma=GAMMA))
    np.testing.assert_allclose(no_critic.advantages, with_scores.advantages, atol=1e-6)
    assert with_scores.info["value"]["reward_from"] == "scores" and no_critic.info["value"]["reward_from"] == "options"
    r = run(d, "awr", "r1-awr-nocritic", base=d / "r0", scores=False, steps=20, value_steps=300)
    assert r["value"]["reward"] == "step-penalty" and r["value"]["gamma"] == 0.99  # CriticConfig's defaults
    lineage = json.loads((d / "r1-awr-nocritic" / S.POLICY_FILE).read_text())["lineage"]
    assert lineage["scores"] is None and lineage["critic"] is None and lineage["method"] == "awr"
    assert (lineage["settings"]["reward"], lineage["settings"]["gamma"]) == ("step-penalty", 0.99)
    assert lineage["settings"]["reward_from"] == "options"


def test_awr_value_net_follows_the_seed_and_a_fine_tune_keeps_the_base_flow_steps(loop, tmp_path):
    d = loop
    store = Store.open(d / "store")
    a0, a0b, a3 = (select(store, "awr", None, MethodOptions(value_steps=50), seed=s) for s in (0, 0, 3))
    np.testing.assert_array_equal(a0.advantages, a0b.advantages)
    assert not np.allclose(a0.advantages, a3.advantages) and a3.info["value"]["value_config"]["seed"] == 3
    improve(d / "store", tmp_path / "base", "bc", settings=dict(TINY, chunk_size=H, steps=1, flow_steps=4))
    improve(d / "store", tmp_path / "ft", "bc", settings=dict(TINY, steps=1), base=tmp_path / "base")
    assert json.loads((tmp_path / "ft" / S.POLICY_FILE).read_text())["config"]["flow_steps"] == 4


def test_strided_scores_weight_every_frame_by_the_previous_scored_chunk(loop, tmp_path):
    d = loop
    score(d / "store", d / "critic", tmp_path / "s3", stride=3, device="cpu")
    store = Store.open(d / "store")
    scores = load_scores(tmp_path / "s3", store)
    chunks = pd.read_parquet(tmp_path / "s3" / S.SCORES_CHUNKS_FILE)
    assert (chunks[S.FRAME_INDEX] % 3 == 0).all()
    sel = select(store, "aloe", scores, MethodOptions())
    frames = store.load_frames([S.ACTION])
    t = np.arange(frames.num_frames) - np.repeat(frames.starts, frames.lengths)  # frame index in its episode
    scored_at = chunks.set_index([S.EPISODE_ID, S.FRAME_INDEX])[S.ADVANTAGE]
    eid = np.repeat(frames.episode_ids, frames.lengths)
    want_adv = scored_at.loc[list(zip(eid, t - t % 3))].to_numpy(np.float64)
    np.testing.assert_allclose(sel.advantages, want_adv, rtol=1e-6)
    beta = chunks[S.ADVANTAGE].to_numpy(np.float64).std()  # beta over the scored chunks
    np.testing.assert_allclose(sel.weights, np.minimum(np.exp(want_adv / beta), 20.0), rtol=1e-5)
    assert sel.info["weights"]["chunks"] == frames.num_frames and sel.info["advantage"]["chunks"] == len(chunks)


# ---------------------------------------------------------------- lineage and rounds

def test_lineage_is_recorded_and_shown(round1, cli):
    d, _ = round1
    r = improve(d / "store", d / "r2", "aloe", settings=dict(TINY, steps=20), base=d / "r1-aloe",
                scores=d / "scores", options={"w_max": 10.0}, round_name="second")
    lin0 = json.loads((d / "r0" / S.POLICY_FILE).read_text())["lineage"]
    lin2 = json.loads((d / "r2" / S.POLICY_FILE).read_text())["lineage"]
    assert lin0["round"] == 0 and lin0["base_policy"] is None and lin0["method"] == "bc" and lin0["scores"] is None
    assert r["round"] == lin2["round"] == 2 and lin2["round_name"] == "second"
    assert lin2["base_policy"] == str((d / "r1-aloe").resolve())
    assert lin2["base_policy_fingerprint"] == policy_fingerprint(d / "r1-aloe")
    store = Store.open(d / "store")
    assert lin2["store"] == str(store.root.resolve()) and lin2["store_fingerprint"] == store.fingerprint
    assert lin2["store_labels"] == store.labels_fingerprint
    assert lin2["scores"] == str((d / "scores").resolve()) and lin2["critic"] == str(d / "critic")
    assert lin2["method"] == "aloe" and lin2["settings"]["w_max"] == 10.0
    assert lin2["settings"]["beta_rule"] == "std of advantages"
    assert lin2["settings"]["training"]["steps"] == 20 and lin2["settings"]["training"]["chunk_size"] == H

    chain = rounds(d / "r2")["policies"]
    assert [(c["round"], c["method"], c["round_name"]) for c in chain] == [(0, "bc", "r0"), (1, "aloe", "r1-aloe"),
                                                                           (2, "aloe", "second")]
    assert [c["base_status"] for c in chain] == [None, "ok", "ok"]
    res = cli("rounds", d / "r2")
    assert res.exit_code == 0, res
    assert res.stdout.splitlines() == [f"3 policies in the chain of {d / 'r2'}",
                                       f"  round 0  r0  bc  {(d / 'r0').resolve()}",
                                       f"  round 1  r1-aloe  aloe  {(d / 'r1-aloe').resolve()}",
                                       f"  round 2  second  aloe  {(d / 'r2').resolve()}"]
    assert "improvement rounds" in res.stderr
    as_json = json.loads(cli("rounds", d / "r2", "--json").stdout)
    assert [p["round"] for p in as_json["policies"]] == [0, 1, 2]
    # A store lists every policy trained on it, in round order.
    listed = rounds(d / "store")["policies"]
    names = [p["round_name"] for p in listed]
    assert names[:1] == ["r0"] and names[-1] == "second" and set(names) >= {"r1-bc", "r1-aloe", "r1-awr"}
    assert [p["round"] for p in listed] == sorted(p["round"] for p in listed)


def test_rounds_on_a_store_with_rollouts_and_a_changed_base(round1, tmp_path, cli):
    d, _ = round1
    for name in ("r0", "r1-aloe"):
        shutil.copytree(d / name, tmp_path / name)
    shutil.copytree(d / "store", tmp_path / "store")
    # Rebase the copy of round 1 on the copy of round 0, then retrain that base: the link is flagged.
    doc = json.loads((tmp_path / "r1-aloe" / S.POLICY_FILE).read_text())
    doc["lineage"]["base_policy"] = str(tmp_path / "r0")
    doc["lineage"]["store"] = str(tmp_path / "store")
    (tmp_path / "r1-aloe" / S.POLICY_FILE).write_text(json.dumps(doc))
    # A rollout of round 1 added to the store, recorded as `aloe rollout` records it (the policy in the ingest).
    store = Store.open(tmp_path / "store")
    rng = np.random.default_rng(5)
    with store.writer("rollout:chain", "rollout", options={"policy": str(tmp_path / "r1-aloe")}) as w:
        for _ in range(4):
            w.add(cw.rollout(rng, L, 0.9, 40), fps=10.0)
        w.commit()
    assert rounds(tmp_path / "r1-aloe")["policies"][1]["base_status"] == "ok"
    improve(tmp_path / "store", tmp_path / "r0", "bc", settings=dict(TINY, chunk_size=H, steps=2), force=True)
    rows = rounds(tmp_path / "store")["policies"]
    by_name = {r["round_name"]: r for r in rows}
    assert set(by_name) == {"r0", "r1-aloe"}  # the copies: r0 was retrained on the copied store
    assert by_name["r1-aloe"]["base_status"] == "changed"
    ro = by_name["r1-aloe"]["rollouts"]
    assert ro["episodes"] == 4 and ro["success_rate"] in (None, 1.0)  # chain-world episodes succeed or are cut
    res = cli("rounds", tmp_path / "store")
    assert res.exit_code == 0 and "improvement rounds" in res.stderr, res
    assert res.stdout.splitlines()[0] == f"2 policies trained on the store {tmp_path / 'store'}"
    assert res.stdout.splitlines()[2].endswith(f"r1-aloe  (base changed)  (rolled out: 4 episodes, success "
                                               f"{'-' if ro['success_rate'] is None else '100.0%'})")


def test_rounds_flags_a_store_relabelled_or_rewritten_since(cli, tmp_path, aloha_dir):
    """Each policy's store is checked against the fingerprints its lineage recorded: episodes added
    since are fine, changed labels or replaced episodes are flagged, an older lineage is told only
    while its store is unchanged."""
    from conftest import write_aloha_episode

    src, _ = aloha_dir
    other = tmp_path / "aloha2"
    other.mkdir()
    write_aloha_episode(other / "episode_0.hdf5", T=14, seed=7)
    store, labels = tmp_path / "s", tmp_path / "labels.csv"
    labels.write_text("source_key,success\nepisode_0.hdf5,false\n")
    assert cli("ingest", store, src).exit_code == 0
    settings = dict(TINY, chunk_size=2, steps=2, batch_size=8)
    improve(store, tmp_path / "p0", "bc", settings=settings)
    assert cli("ingest", store, other).exit_code == 0  # one more episode after p0
    improve(store, tmp_path / "p1", "bc", settings=settings)

    def status():
        return {r["round_name"]: (r["store_status"], r["episodes_since"]) for r in rounds(store)["policies"]}

    assert status() == {"p0": ("ok", 1), "p1": ("ok", 0)}
    # Relabel the last source: its episode stays where it was, with another outcome.
    assert cli("ingest", store, other, "--labels", labels, "--force").exit_code == 0
    assert status() == {"p0": ("ok", 1), "p1": ("relabelled", 0)}
    assert [(r["store_status"], r["episodes_since"]) for r in rounds(tmp_path / "p1")["policies"]] == [
        ("relabelled", 0)]
    res = cli("rounds", store)
    assert res.exit_code == 0, res
    assert res.stdout.splitlines()[2] == (f"  round 0  p1  bc  {(tmp_path / 'p1').resolve()}  (store relabelled "
                                          "since: it was trained on other outcomes)")
    assert "ok +1" in res.stderr and "relabelled" in res.stderr
    # Relabel the first source: `--force` moves its episodes to the end, so both lineages' rows are gone.
    assert cli("ingest", store, src, "--labels", labels, "--force").exit_code == 0
    assert status() == {"p0": ("rewritten", None), "p1": ("rewritten", None)}
    # A lineage from before store_episodes is told while its store is unchanged, and not after.
    doc = json.loads((tmp_path / "p1" / S.POLICY_FILE).read_text())
    del doc["lineage"]["store_episodes"]
    doc["lineage"]["store_fingerprint"] = Store.open(store).fingerprint
    (tmp_path / "p1" / S.POLICY_FILE).write_text(json.dumps(doc))
    assert status()["p1"] == ("relabelled", 0)
    write_aloha_episode(other / "episode_1.hdf5", T=14, seed=8)
    assert cli("ingest", store, other).exit_code == 0
    assert status()["p1"] == (None, None)
    (store / S.EPISODES_FILE).write_bytes(b"not parquet")
    assert [r["store_status"] for r in rounds(tmp_path / "p1")["policies"]] == ["unreadable"]
    shutil.rmtree(store)
    assert [r["store_status"] for r in rounds(tmp_path / "p1")["policies"]] == ["missing"]


# ---------------------------------------------------------------- the CLI and bad input

def test_improve_cli_prints_the_weight_distribution(loop, cli, tmp_path):
    d = loop
    r = cli("improve", d / "store", "--scores", d / "scores", "--policy", d / "r0", "--method", "aloe", "--out",
            tmp_path / "p", "--steps", 5, "--batch-size", 16, "--device", "cpu", "--w-max", 5, "--round-name", "one")
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"round 1 (one): trained aloe policy from {(d / 'r0').resolve()} (H=2, action 1)")
    assert lines[1].startswith("weights: ESS ") and ", clipped at 5.000: " in lines[1] and "std of advantages" in lines[1]
    assert lines[2].startswith("  mean weight by policy_id: beta ")
    assert lines[3].startswith("  mean weight by intervention: False ") and " True " in lines[3]
    r = cli("improve", d / "store", "--scores", d / "scores", "--method", "conditioned", "--out", tmp_path / "c",
            "--steps", 5, "--device", "cpu")
    assert r.exit_code == 0, r
    assert any(line.startswith("indicator: positive ") for line in r.stdout.splitlines())


def test_improve_bad_input(loop, cli, tmp_path):
    d = loop
    # Scores of another store: a second chain-world store scored with the same critic.
    cw.make_store(tmp_path / "other", episodes=20, L=L, p=0.5, T_max=40, seed=9)
    score(tmp_path / "other", d / "critic", tmp_path / "other-scores", device="cpu")
    other_fp = Store.open(tmp_path / "other").fingerprint
    fp = Store.open(d / "store").fingerprint
    # A base policy whose chunks are shorter than the scored ones.
    improve(d / "store", tmp_path / "h1", "bc", settings=dict(TINY, chunk_size=1, steps=1))
    # A base policy of another robot (a wider state): the refusal names --policy, the option typed (it named
    # --init, a hidden alias).
    cw.make_store(tmp_path / "wide", episodes=6, L=L + 2, p=0.5, T_max=20, seed=3)
    improve(tmp_path / "wide", tmp_path / "hw", "bc", settings=dict(TINY, chunk_size=1, steps=1))
    # Scores without advantages (what `aloe score` writes without a policy): the real file, V and A NaN.
    shutil.copytree(d / "scores", tmp_path / "noadv")
    chunks = pd.read_parquet(tmp_path / "noadv" / S.SCORES_CHUNKS_FILE)
    chunks[S.V] = np.float32("nan")
    chunks[S.ADVANTAGE] = np.float32("nan")
    chunks.to_parquet(tmp_path / "noadv" / S.SCORES_CHUNKS_FILE, index=False)
    shutil.copytree(d / "scores", tmp_path / "partial")
    (tmp_path / "partial" / S.SCORES_EPISODES_FILE).unlink()
    # Damaged summaries and base lineage: a one-line error, not a traceback.
    summaries = {}
    for name, change in (("gamma", {"gamma": 1.5}), ("kind", {"reward_spec": {"kind": "dense"}}),
                         ("tnorm", {"reward_spec": {"kind": "step-penalty", "t_norm": {"": -3}, "t_norm_default": 40,
                                                    "c_fail": None}})):
        shutil.copytree(d / "scores", tmp_path / name)
        summaries[name] = tmp_path / name / S.SCORES_SUMMARY_FILE
        summaries[name].write_text(json.dumps({**json.loads(summaries[name].read_text()), **change}))
    shutil.copytree(d / "r0", tmp_path / "badround")
    doc = json.loads((tmp_path / "badround" / S.POLICY_FILE).read_text())
    doc["lineage"]["round"] = "two"
    (tmp_path / "badround" / S.POLICY_FILE).write_text(json.dumps(doc))
    base = ["improve", d / "store", "--out", tmp_path / "new", "--steps", 1, "--device", "cpu"]
    cases = [
        (["--method", "awr", "--scores", tmp_path / "gamma"],
         f"Error: {summaries['gamma']}: gamma: must be a number in (0, 1], got 1.5; re-run aloe score"),
        (["--method", "awr", "--scores", tmp_path / "kind"],
         f"Error: {summaries['kind']}: reward_spec: kind 'dense' is not one of step-penalty, sparse, logged; re-run "
         "aloe score"),
        (["--method", "awr", "--scores", tmp_path / "tnorm"],
         f"Error: {summaries['tnorm']}: reward_spec: t_norm is not a {{task: frames > 0}} table; re-run aloe score"),
        (["--method", "bc", "--policy", tmp_path / "hw"],
         f"Error: {tmp_path / 'hw'}: --policy: policy has state {L + 3} / action 1 numbers but the store has "
         f"{L + 1} / 1"),
        (["--method", "bc", "--policy", tmp_path / "badround"],
         f"Error: {tmp_path / 'badround' / S.POLICY_FILE}: lineage.round: not a round number >= 0: 'two'"),
        (["--method", "aloe", "--scores", tmp_path / "other-scores"],
         f"Error: {tmp_path / 'other-scores' / S.SCORES_SUMMARY_FILE}: store_fingerprint: the scores are of a store "
         f"with fingerprint {other_fp} ({tmp_path / 'other'}), but {d / 'store'} has {fp}; score this store "
         "(aloe score) first"),
        (["--method", "aloe", "--scores", d / "scores", "--policy", tmp_path / "h1"],
         f"Error: {tmp_path / 'h1' / S.POLICY_FILE}: chunk_size: the base policy's chunks have 1 actions but the "
         f"scores ({d / 'scores'}) are of chunks of 2; fit the critic with --chunk-size 1 or less"),
        (["--method", "filtered", "--scores", d / "scores", "--chunk-size", 1],
         f"Error: --chunk-size: 1 is shorter than the scores' chunks (2 actions, "
         f"{d / 'scores' / S.SCORES_SUMMARY_FILE})"),
        (["--method", "aloe"], "Error: --scores: --method aloe needs the advantages of `aloe score` (--scores "
                               "SCORES_DIR)"),
        (["--method", "aloe", "--scores", tmp_path / "nothing"],
         f"Error: {tmp_path / 'nothing'}: --scores: no such scores directory (run `aloe score` first)"),
        (["--method", "aloe", "--scores", tmp_path / "partial"],
         f"Error: {tmp_path / 'partial'}: --scores: missing {S.SCORES_EPISODES_FILE}: not a scores directory "
         "written by `aloe score`"),
        (["--method", "aloe", "--scores", tmp_path / "noadv"],
         f"Error: {tmp_path / 'noadv' / S.SCORES_CHUNKS_FILE}: advantage: has no advantages: the chunks were scored "
         "without a policy (V is empty); score with --policy"),
        (["--method", "aloe", "--scores", d / "scores", "--top-fraction", 0.5],
         "Error: --top-fraction: applies to --method filtered only, not aloe"),
        (["--method", "filtered", "--scores", d / "scores", "--beta", 1],
         "Error: --beta: applies to --method aloe or awr only, not filtered"),
        (["--method", "aloe", "--scores", d / "scores", "--beta", 0], "Error: --beta: must be a number > 0, got 0.0"),
        (["--method", "aloe", "--scores", d / "scores", "--beta-scale", 0],
         "Error: --beta-scale: must be a number > 0, got 0.0"),
        (["--method", "aloe", "--scores", d / "scores", "--beta", 1, "--beta-scale", 0.5],
         "Error: --beta-scale: give --beta (absolute) or --beta-scale (relative to std(A)), not both"),
        (["--method", "bc", "--beta-scale", 0.5], "Error: --beta-scale: applies to --method aloe or awr only, not bc"),
        (["--method", "awr", "--scores", d / "scores", "--w-max", -1], "Error: --w-max: must be a number > 0, got -1.0"),
        (["--method", "filtered", "--scores", d / "scores", "--top-fraction", 1.5],
         "Error: --top-fraction: must be in (0, 1], got 1.5"),
        (["--method", "aloe", "--scores", d / "scores", "--gamma", 0.9],
         "Error: --gamma: applies to --method awr only, not aloe"),
        (["--method", "awr", "--scores", d / "scores", "--gamma", 0.9],
         "Error: --gamma: comes from --scores (the reward and gamma its critic was fitted with); give one or the "
         "other"),
        (["--method", "awr", "--gamma", 1.5], "Error: --gamma: must be in (0, 1], got 1.5"),
        (["--method", "awr", "--reward", "dense"],
         "Error: --reward: unknown reward 'dense'; choose one of step-penalty, sparse, logged"),
    ]
    for args, message in cases:
        r = cli(*base, *args)
        assert r.exit_code == 2, (args, r)
        assert r.stderr == message + "\n", (args, r.stderr)
        assert not (tmp_path / "new").exists()
    # AWR takes only the reward and gamma from the scores: advantages it does not use, or chunks
    # longer than the base's, are no reason to refuse.
    r = cli(*base, "--method", "awr", "--scores", tmp_path / "noadv", "--policy", tmp_path / "h1")
    assert r.exit_code == 0, r


def test_rounds_names_a_damaged_policy_json(round1, cli, tmp_path):
    """`aloe rounds` lists what it can read and says, per policy, what is wrong with the rest."""
    d, _ = round1
    for name, text, problem in (("trunc", '{"lineage": {', "policy.json cannot be read"),
                                ("list", "[]", "policy.json is not a JSON object"),
                                ("lin", '{"lineage": "x", "training": 3}',
                                 "policy.json: lineage is not an object; policy.json: training is not an object"),
                                ("round", '{"lineage": {"round": "two", "created": 5}}',
                                 "policy.json: lineage.round is not a round number >= 0: 'two'; policy.json: "
                                 "lineage.created is not a time: 5")):
        p = tmp_path / name
        shutil.copytree(d / "r1-aloe", p)
        (p / S.POLICY_FILE).write_text(text)
        row = rounds(p)["policies"][-1]
        assert row["problem"].startswith(problem) and row["round"] is None
        r = cli("rounds", p)
        assert r.exit_code == 0 and f"warning: {p.resolve()}: {problem}" in " ".join(r.stderr.split()), r
    assert rounds(d / "r1-aloe")["policies"][-1]["problem"] is None
    # A store's policies sort by round and time: a damaged one among good ones is a warning, not a traceback.
    shelf = tmp_path / "shelf"
    for name in ("good", "bad"):
        shutil.copytree(d / "r1-aloe", shelf / name)
    doc = json.loads((shelf / "bad" / S.POLICY_FILE).read_text())
    doc["lineage"].update(round="two", created=5)
    (shelf / "bad" / S.POLICY_FILE).write_text(json.dumps(doc))
    rows = rounds(d / "store", search=shelf)["policies"]
    assert [r["round"] for r in rows] == [None, 1] and rows[0]["policy"] == str((shelf / "bad").resolve())
