"""The critic's pure pieces by hand: head aggregation, the HL-Gauss target, the TD target in critic_loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aloe_cli.critic import CriticConfig, critic_loss
from aloe_cli.critic.net import CriticNet, aggregate, hl_gauss_probs

torch.set_num_threads(1)


def test_aggregate_by_hand():
    q = torch.tensor([[1.0, 2.0, 3.0]])
    assert aggregate(q, "min").item() == 1.0
    assert aggregate(q, "mean").item() == 2.0
    # population std of 1, 2, 3 = sqrt(2/3) = 0.8165; mean - 0.5 * std = 1.5918
    assert aggregate(q, "mean-std", 0.5).item() == pytest.approx(2 - 0.5 * math.sqrt(2 / 3))


def test_hl_gauss_target_by_hand():
    # 4 bins over [0, 4] (width 1, sigma .75); y = 2 sits on the edge between bins 1 and 2:
    # mass of N(2, .75^2) in [1, 2] = Phi(0) - Phi(-1.333) = .5 - .0912 = .4088; renormalised by
    # Phi(2.667) - Phi(-2.667) = .99234 -> .4120 in bins 1 and 2, and (.0912 - .0038)/.99234 = .0880 in bins 0, 3.
    p = hl_gauss_probs(torch.tensor([2.0]), 0.0, 4.0, 4)[0]
    assert p.tolist() == pytest.approx([0.0880, 0.4120, 0.4120, 0.0880], abs=2e-4)
    assert p.sum().item() == pytest.approx(1.0)
    # Targets outside the support are clipped to its end.
    assert hl_gauss_probs(torch.tensor([9.0]), 0.0, 4.0, 4)[0].argmax().item() == 3


@pytest.mark.parametrize("kind, bound", [("step-penalty", 0.0), ("step-penalty", -1 / 150), ("sparse", 0.0),
                                         ("sparse", 1.0)])
def test_a_target_at_the_bound_of_the_values_decodes_to_itself(kind, bound):
    """Step-penalty values never exceed 0 and sparse ones lie in [0, 1]; the support runs 3 bins past
    those bounds, so the HL-Gauss target of a value at the bound (a success) decodes to that value.
    A support ending at 0 decoded 0 as -0.0080 and -0.0067 (one step's penalty) as -0.0105."""
    from aloe_cli.critic.train import value_support

    lo, hi = value_support({"kind": kind}, np.array([-1.0, -0.3]) if kind == "step-penalty" else np.array([0.0, 1.0]))
    if kind == "step-penalty":
        assert lo == pytest.approx(-1.175) and hi == pytest.approx(3 * 1.175 / 98)  # 98 bins cover [lo, 0]
    else:
        assert (lo, hi) == pytest.approx((-3 / 95, 1 + 3 / 95))  # 95 bins cover [0, 1]
    width = (hi - lo) / 101
    centres = torch.linspace(lo + width / 2, hi - width / 2, 101, dtype=torch.float64)
    p = hl_gauss_probs(torch.tensor([bound], dtype=torch.float64), lo, hi, 101)[0]
    assert (p * centres).sum().item() == pytest.approx(bound, abs=1e-4)


class FixedQ:
    """A target critic whose every head returns fixed numbers (B, K, M), to check the target by hand."""

    def __init__(self, q):
        self.q = torch.tensor(q)

    def q_heads(self, state, chunks, images=None):
        return self.q


def test_td_target_by_hand():
    net = CriticNet(state_dim=1, action_dim=1, chunk_size=2, ensemble=2, hidden=8)
    batch = {
        "state": torch.zeros(2, 1), "chunk": torch.zeros(2, 1, 2, 1), "next_state": torch.zeros(2, 1),
        "next_chunks": torch.zeros(2, 2, 2, 1),
        "R": torch.tensor([1.0, 2.0]), "disc": torch.tensor([0.81, 0.9]), "m": torch.tensor([1.0, 0.0]),
        "rtg": torch.tensor([5.0, 6.0]),
    }
    # Two samples a'_k x two heads. Sample 0: heads 1, 3; sample 1: heads 2, 6.
    target = FixedQ([[[1.0, 3.0], [2.0, 6.0]], [[1.0, 3.0], [2.0, 6.0]]])
    cases = {
        # mean over samples of the head mean: (2 + 4) / 2 = 3 -> y0 = 1 + .81 * 3 = 3.43; y1 = 2 (m = 0)
        "mean": (3.43 + 2.0) / 2,
        # min over heads: (1 + 2) / 2 = 1.5 -> y0 = 1 + .81 * 1.5 = 2.215
        "min": (2.215 + 2.0) / 2,
    }
    for agg, want in cases.items():
        _, info = critic_loss(net, target, batch, CriticConfig(aggregate=agg, head="scalar"))
        assert float(info["critic/target_mean"]) == pytest.approx(want)
    _, info = critic_loss(net, target, batch, CriticConfig(bootstrap="mc", head="scalar"))
    assert float(info["critic/target_mean"]) == pytest.approx(5.5)  # the return-to-go, no bootstrap


def test_shared_encoder_heads_match_a_plain_loop():
    """The batched heads (first layer split into state and chunk parts) equal one head at a time."""
    torch.manual_seed(0)
    net = CriticNet(state_dim=3, action_dim=2, chunk_size=4, ensemble=3, hidden=16, layers=2)
    s, c = torch.randn(5, 3), torch.randn(5, 7, 4, 2)
    out = net(s, c)  # (5, 7, 3, 1)
    e = net.obs(s)
    for m in range(3):
        x = e[:, None].expand(5, 7, -1) @ net.first_obs.weight[m] + net.first_obs.bias[m] + \
            c.flatten(2) @ net.first_chunk.weight[m]
        for layer in net.trunk:
            if hasattr(layer, "weight") and layer.weight.dim() == 3:
                if isinstance(layer, torch.nn.Module) and type(layer).__name__ == "EnsembleLayerNorm":
                    x = torch.nn.functional.layer_norm(x, x.shape[-1:]) * layer.weight[m] + layer.bias[m]
                else:
                    x = x @ layer.weight[m] + layer.bias[m]
            else:
                x = layer(x)
        torch.testing.assert_close(out[:, :, m], x, rtol=1e-5, atol=1e-5)
