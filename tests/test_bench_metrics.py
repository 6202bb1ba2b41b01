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
