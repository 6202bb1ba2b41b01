"""The benchmark metrics against numbers worked by hand."""

import json
import math

import numpy as np
import pytest

from benchmarks import common as B


def test_normalized_abs_error_by_hand():
    # |1-0| + |3-2| = 2, mean 1, range 2 -> 0.5
    assert B.normalized_abs_error([1, 3], [0, 2]) == pytest.approx(0.5)
    # errors 0.1, 0.2, 0.3 -> mean 0.2; range 1 - (-1) = 2 -> 0.1
    assert B.normalized_abs_error([-0.9, 0.2, 1.3], [-1.0, 0.0, 1.0]) == pytest.approx(0.1)
    assert math.isnan(B.normalized_abs_error([1, 2], [3, 3]))


def test_average_ranks_ties():
    assert B.average_ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert B.average_ranks([1, 1, 1]).tolist() == [2.0, 2.0, 2.0]


def test_spearman_by_hand():
    assert B.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert B.spearman([4, 3, 2, 1], [10, 20, 30, 40]) == pytest.approx(-1.0)
    # one adjacent swap among 4: 1 - 6 * (1 + 1) / (4 * 15) = 0.8
    assert B.spearman([1, 3, 2, 4], [1, 2, 3, 4]) == pytest.approx(0.8)
    # ties: ranks (1.5, 1.5, 3) vs (1, 2, 3): centred (-.5, -.5, 1) . (-1, 0, 1) = 1.5;
    # norms sqrt(1.5) * sqrt(2) -> 1.5 / sqrt(3) = 0.8660
    assert B.spearman([5, 5, 9], [1, 2, 3]) == pytest.approx(1.5 / math.sqrt(3))
    assert math.isnan(B.spearman([1, 1, 1], [1, 2, 3]))


def test_regret_at_1_by_hand():
    assert B.regret_at_1([3, 1, 2], [0, 2, 1]) == pytest.approx(1.0)  # picks the worst
    assert B.regret_at_1([1, 3, 2], [0, 2, 1]) == pytest.approx(0.0)  # picks the best
    assert B.regret_at_1([1, 2, 3], [0, 2, 1]) == pytest.approx(0.5)  # picks the middle
    # a tie for first between true values 2 and 1: mean 1.5 -> regret 0.5 / 2
    assert B.regret_at_1([3, 3, 0], [2, 1, 0]) == pytest.approx(0.25)


def test_auroc_by_hand():
    assert B.auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == pytest.approx(1.0)
    assert B.auroc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == pytest.approx(0.0)
    # positives 0.5, 0.3; negatives 0.4, 0.1: pairs won 0.5>0.4, 0.5>0.1, 0.3>0.1 -> 3/4
    assert B.auroc([0.5, 0.3, 0.4, 0.1], [1, 1, 0, 0]) == pytest.approx(0.75)
    # a tie counts 1/2: positive 0.5 vs negatives 0.5, 0.1 -> (0.5 + 1) / 2
    assert B.auroc([0.5, 0.5, 0.1], [1, 0, 0]) == pytest.approx(0.75)
    assert math.isnan(B.auroc([1, 2], [0, 0]))


def test_mean_and_se():
    m, se = B.mean_and_se([1.0, 2.0, 3.0, 4.0])
    assert m == pytest.approx(2.5)
    assert se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)


def test_bootstrap_metrics_exact_when_there_is_no_noise():
    # every state gives the same value and every episode the same return: intervals collapse
    per_state = np.repeat(np.array([[0.0], [1.0], [2.5]]), 7, axis=1)
    truth = [np.full(5, 0.1), np.full(3, 1.0), np.full(4, 2.0)]
    out = B.bootstrap_metrics(per_state, truth, n_boot=50, seed=1)
    assert out["spearman"]["value"] == pytest.approx(1.0)
    assert out["regret@1"]["value"] == pytest.approx(0.0)
    # |0-0.1| + 0 + |2.5-2| = 0.6, mean 0.2, range 1.9
    assert out["nae"]["value"] == pytest.approx(0.2 / 1.9)
    for m in out.values():
        assert m["ci_low"] == pytest.approx(m["value"]) and m["ci_high"] == pytest.approx(m["value"])


def test_bootstrap_metrics_interval_covers_the_point():
    rng = np.random.default_rng(0)
    per_state = rng.normal(size=(6, 40)) * 0.3 + np.arange(6)[:, None]
    truth = [rng.normal(size=30) * 0.3 + i for i in range(6)]
    out = B.bootstrap_metrics(per_state, truth, n_boot=200, seed=2)
    for m in out.values():
        assert m["ci_low"] <= m["value"] + 1e-9 and m["value"] <= m["ci_high"] + 1e-9
    with pytest.raises(ValueError):
        B.bootstrap_metrics(per_state, truth[:5])


def test_write_json_turns_nan_into_null(tmp_path):
    p = B.write_json(tmp_path / "a" / "r.json", {"x": float("nan"), "y": np.float32(1.5), "z": np.arange(2)})
    assert json.loads(p.read_text()) == {"x": None, "y": 1.5, "z": [0, 1]}


def test_format_table():
    text = B.format_table(["name", "v"], [["a", 1.0], ["long name", None]])
    lines = text.splitlines()
    assert lines[0].startswith("name") and lines[2] == "a          1.000"
    assert lines[3].endswith("-")


def test_markdown_table():
    assert B.markdown_table(["a", "b"], [["x", 0.5], ["y", None]]).splitlines() == [
        "| a | b |", "|---|---|", "| x | 0.500 |", "| y | - |"]


def test_with_ci_prints_the_interval_when_there_is_one():
    from benchmarks.common import with_ci

    assert with_ci({"value": 0.8123, "ci_low": 0.7, "ci_high": 0.9}) == "0.812 [0.70, 0.90]"
    assert with_ci({"value": 0.8123, "ci_low": None, "ci_high": None}) == "0.812"
    assert with_ci({"value": float("nan"), "ci_low": 0.1, "ci_high": 0.2}) == "nan"


# ---------------------------------------------------------------------- start configurations (clusters)
def test_cluster_labels():
    assert B.cluster_labels(["b", "a", "b"], 3).tolist() == [1, 0, 1]
    assert B.cluster_labels(None, 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        B.cluster_labels([1, None, 2], 3)
    with pytest.raises(ValueError):
        B.cluster_labels([1, 2], 3)


def test_clustered_se_by_hand():
    # mean 3; cluster residuals a: (1-3)+(3-3) = -2, b: -1, c: 3 -> sum of squares 14;
    # sqrt(G/(G-1) * 14) / n = sqrt(1.5 * 14) / 4 = sqrt(21) / 4
    m, se = B.mean_and_se([1.0, 3.0, 2.0, 6.0], ["a", "a", "b", "c"])
    assert m == pytest.approx(3.0) and se == pytest.approx(math.sqrt(21) / 4)
    assert B.mean_and_se([1.0, 3.0, 2.0, 6.0])[1] == pytest.approx(math.sqrt(14 / 3) / 2)  # episode-level 1.080
    # a deterministic policy from two starts, two episodes each: the repeats add nothing, the s.e. is
    # that of the two distinct values (1, 3): sqrt(2) / sqrt(2) = 1 (episode-level: sqrt(4/3) / 2 = 0.577)
    assert B.mean_and_se([1.0, 1.0, 3.0, 3.0], [7, 7, 9, 9])[1] == pytest.approx(1.0)
    assert B.mean_and_se([1.0, 1.0, 3.0, 3.0])[1] == pytest.approx(math.sqrt(4 / 3) / 2)
    # every element its own cluster: the episode-level s.e.; one cluster: 0
    x = [0.5, -1.0, 2.0, 0.25, 4.0]
    assert B.mean_and_se(x, [10, 11, 12, 13, 14])[1] == pytest.approx(B.mean_and_se(x)[1])
    assert B.mean_and_se(x, [1] * 5)[1] == 0.0


def test_effective_sample_size_by_hand():
    # (1, 1, 0, 0) from starts (a, a, b, b): n^2 var / sum residual^2 = 16 * 0.25 / (1 + 1) = 2
    assert B.effective_sample_size([1, 1, 0, 0], ["a", "a", "b", "b"]) == pytest.approx(2.0)
    assert B.effective_sample_size([1, 1, 0, 0]) == pytest.approx(4.0)  # all independent: n
    assert B.effective_sample_size([1, 0, 1], [0, 1, 2]) == pytest.approx(3.0)
    assert B.effective_sample_size([1, 1, 1, 1], ["a", "a", "b", "c"]) == pytest.approx(3.0)  # constant: G
    # outcomes vary only within starts: no design effect to speak of, never above n
    assert B.effective_sample_size([1, 0, 1, 0], ["a", "a", "b", "b"]) == pytest.approx(4.0)


def _old_bootstrap(per_state, truth_returns, n_boot, seed, level=0.95):
    """The episode-level bootstrap as it was before start configurations were recorded."""
    rng = np.random.default_rng(seed)
    C, E = per_state.shape
    reps = {name: np.empty(n_boot) for name in B.METRICS}
    for b in range(n_boot):
        est = per_state[:, rng.integers(0, E, size=E)].mean(1)
        tru = np.array([np.asarray(t)[rng.integers(0, len(t), size=len(t))].mean() for t in truth_returns])
        for name, fn in B.METRICS.items():
            reps[name][b] = fn(est, tru)
    a = (1 - level) / 2
    return {name: np.quantile(reps[name][np.isfinite(reps[name])], [a, 1 - a]) for name in B.METRICS}


def _noisy_case(seed=0, C=5, E=12, n=9):
    rng = np.random.default_rng(seed)
    per_state = rng.normal(size=(C, E)) * 0.5 + np.arange(C)[:, None] * 0.3
    truth = [rng.normal(size=n) * 0.5 + 0.3 * i for i in range(C)]
    return per_state, truth


def test_cluster_bootstrap_with_every_episode_its_own_cluster_is_the_old_one():
    per_state, truth = _noisy_case()
    old = _old_bootstrap(per_state, truth, 100, 3)
    for clusters in ({}, {"state_clusters": np.arange(12), "truth_clusters": [np.arange(9)] * 5}):
        new = B.bootstrap_metrics(per_state, truth, n_boot=100, seed=3, **clusters)
        for name in B.METRICS:
            assert [new[name]["ci_low"], new[name]["ci_high"]] == pytest.approx(old[name].tolist())


def test_cluster_bootstrap_is_not_fooled_by_repeated_starts():
    # every start state and truth episode recorded three times over (a deterministic policy from
    # repeated start configurations): clustered, the intervals are those of the distinct ones;
    # counted as independent they are narrower
    per_state, truth = _noisy_case()
    base = B.bootstrap_metrics(per_state, truth, n_boot=200, seed=5)
    rep_states, rep_truth = np.repeat(per_state, 3, axis=1), [np.repeat(t, 3) for t in truth]
    clustered = B.bootstrap_metrics(rep_states, rep_truth, n_boot=200, seed=5,
                                    state_clusters=np.repeat(np.arange(12), 3),
                                    truth_clusters=[np.repeat(np.arange(9), 3)] * 5)
    naive = B.bootstrap_metrics(rep_states, rep_truth, n_boot=200, seed=5)
    for name in B.METRICS:
        assert clustered[name]["value"] == pytest.approx(base[name]["value"])
        assert [clustered[name]["ci_low"], clustered[name]["ci_high"]] == pytest.approx(
            [base[name]["ci_low"], base[name]["ci_high"]])
    width = lambda m: m["nae"]["ci_high"] - m["nae"]["ci_low"]  # noqa: E731
    assert width(naive) < 0.8 * width(clustered)


def test_cluster_bootstrap_mean_takes_whole_clusters():
    # two clusters of sizes 1 and 3: a replicate is the mean of the whole clusters drawn
    values, labels = np.array([10.0, 1.0, 2.0, 3.0]), np.array([0, 1, 1, 1])
    seen = {round(float(B.cluster_bootstrap_mean(values, labels, np.random.default_rng(s))), 6) for s in range(40)}
    assert seen == {10.0, 2.0, 4.0}  # (a, a) -> 10, (b, b) -> 2, (a, b) -> (10 + 6) / 4


def test_indistinct_pairs_by_hand():
    # a-b: 0.002 apart, combined s.e. sqrt(0.002^2 + 0.0015^2) = 0.0025 -> flagged; c is far from both
    out = B.indistinct_pairs({"a": 0.0, "b": 0.002, "c": 0.1}, {"a": 0.002, "b": 0.0015, "c": 0.01})
    assert [(p["a"], p["b"]) for p in out] == [("a", "b")]
    assert out[0]["combined_se"] == pytest.approx(0.0025) and out[0]["difference"] == pytest.approx(0.002)
    assert B.indistinct_pairs({"a": 0.0, "b": 0.003}, {"a": 0.002, "b": 0.0015}) == []  # 0.003 > 0.0025
    assert len(B.indistinct_pairs({"a": -0.5, "b": -0.5}, {"a": 0.0, "b": None})) == 1  # equal, no s.e.
