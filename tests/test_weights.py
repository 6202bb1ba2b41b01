"""Improvement weights against numbers worked by hand."""

import numpy as np
import pytest

from aloe_cli import weights as W


def test_exp_weights_by_hand():
    # A = [-1, 0, 1, 10], beta = 1, w_max = 5: exp(-1) = 0.36788, 1, e = 2.71828, exp(10) clipped to 5.
    w = W.exp_weights(np.array([-1.0, 0.0, 1.0, 10.0]), beta=1.0, w_max=5.0)
    np.testing.assert_allclose(w, [0.36788, 1.0, 2.71828, 5.0], rtol=1e-5)
    # beta = 2 halves the exponent: exp(1/2) = 1.64872.
    np.testing.assert_allclose(W.exp_weights(np.array([1.0]), beta=2.0, w_max=5.0), [1.64872], rtol=1e-5)
    assert np.isfinite(W.exp_weights(np.array([1e6, -1e6]), 1.0, 20.0)).all()
    with pytest.raises(ValueError):
        W.exp_weights(np.array([1.0]), beta=0.0, w_max=5.0)


def test_default_beta_is_std():
    # std of [1, 3] (population) = 1.
    assert W.default_beta(np.array([1.0, 3.0])) == pytest.approx(1.0)
    assert W.default_beta(np.array([2.0, 2.0])) == 1.0


def test_resolve_beta_by_hand():
    # A = [-1, 1]: std 1. Given beta wins; else beta_scale * std: 0.25 -> 0.25, and w = exp(A / 0.25) = e^4 at A = 1.
    a = np.array([-1.0, 1.0])
    assert W.resolve_beta(a) == (1.0, "std of advantages")
    assert W.resolve_beta(a, beta_scale=0.25) == (0.25, "0.25 x std of advantages")
    assert W.resolve_beta(a, beta=3.0) == (3.0, "given")
    # A = [0, 4]: std 2, scale 0.5 -> beta 1.
    assert W.resolve_beta(np.array([0.0, 4.0]), beta_scale=0.5) == (1.0, "0.5 x std of advantages")
    np.testing.assert_allclose(W.exp_weights(a, W.resolve_beta(a, beta_scale=0.25)[0], 100.0),
                               [0.0183156, 54.59815], rtol=1e-5)
    with pytest.raises(ValueError):
        W.resolve_beta(a, beta_scale=0.0)


def test_top_fraction():
    # 5 chunks, top 40% -> ceil(2.0) = 2 chunks: the ones with A = 9 and 7.
    w = W.top_fraction_weights(np.array([1.0, 9.0, 3.0, 7.0, 5.0]), 0.4)
    assert w.tolist() == [0, 1, 0, 1, 0]
    assert W.top_fraction_weights(np.array([1.0, 2.0, 3.0]), 0.5).tolist() == [0, 1, 1]  # ceil(1.5) = 2
    # 0.07 * 100 and 0.55 * 100 are 7.000000000000001 and 55.00000000000001 in floating point: still 7 and 55.
    assert W.top_fraction_weights(np.arange(100.0), 0.07).sum() == 7
    assert W.top_fraction_weights(np.arange(100.0), 0.55).sum() == 55


def test_indicator_forces_interventions():
    a = np.arange(10, dtype=float)  # 70th percentile (linear) = 6.3 -> 7, 8, 9 are positive
    ind = W.advantage_indicator(a, is_intervention=np.eye(10, dtype=bool)[0])
    assert np.flatnonzero(ind).tolist() == [0, 7, 8, 9]


def test_effective_sample_size_by_hand():
    # w = [1, 1, 0, 2]: (4)^2 / (1 + 1 + 0 + 4) = 16 / 6 = 2.6667
    assert W.effective_sample_size(np.array([1, 1, 0, 2.0])) == pytest.approx(16 / 6)
    assert W.effective_sample_size(np.ones(7)) == pytest.approx(7)
    assert W.effective_sample_size(np.zeros(3)) == 0.0


def test_weight_summary_groups():
    w = W.exp_weights(np.array([-5.0, 0.0, 5.0, 5.0]), 1.0, 20.0)
    s = W.weight_summary(w, w_max=20.0, groups={"source": np.array(["a", "a", "human", "human"])})
    assert s["fraction_clipped"] == 0.5 and s["mean_by_source"]["human"] == pytest.approx(20.0)
    assert s["mean_by_source"]["a"] == pytest.approx((np.exp(-5) + 1) / 2, rel=1e-5)
