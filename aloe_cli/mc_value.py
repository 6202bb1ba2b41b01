"""A Monte-Carlo state value V_mc(s) for the `awr` baseline: a small MLP regressed on returns-to-go.

AWR (the baseline the ALOE paper compares against) weights a logged chunk by the advantage of the
*behaviour* data: A_t = G_t - V_mc(o_t), where G_t is the discounted return-to-go of the logged
episode from frame t (a Monte-Carlo sample of Q^beta(o_t, a_{t:t+H})) and V_mc(o) is the mean
return-to-go from o, fitted here by regression. Nothing here uses the ALOE critic or the policy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ValueConfig:
    """The V_mc regression network and its training."""

    hidden: int = 128  # width of the MLP
    layers: int = 2  # hidden layers (Linear + LayerNorm + SiLU each)
    steps: int = 2000  # gradient steps
    batch_size: int = 256  # frames per step
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    seed: int = 0  # seeds the initial weights and the batches
    device: str = "cpu"  # cpu, cuda or cuda:N (resolved by the caller)

    def to_dict(self) -> dict:
        return asdict(self)


def value_loss(net, x, target):
    """MSE of the (normalised) value against (normalised) returns. Returns (loss, info)."""
    pred = net(x)[:, 0]
    loss = ((pred - target) ** 2).mean()
    return loss, {"value/mse": float(loss.detach())}


def fit_mc_value(state: np.ndarray, task_ids: np.ndarray, returns: np.ndarray, config: ValueConfig = ValueConfig(),
                 num_tasks: int = 0) -> tuple[np.ndarray, dict]:
    """Fit V_mc(state, task) to `returns` on every frame; returns (V at every frame (N,) float64, info).

    Inputs are the state normalised by its mean and std, plus a one-hot of the task id (when
    there are several tasks); the target is the return normalised by its mean and std.
    """
    import torch
    from torch import nn

    state = np.asarray(state, dtype=np.float32)
    returns = np.asarray(returns, dtype=np.float64)
    n = state.shape[0]
    s_mean, s_std = state.mean(0), state.std(0)
    s_std = np.where(s_std < 1e-6, 1.0, s_std)
    x = (state - s_mean) / s_std
    if num_tasks > 1:
        x = np.concatenate([x, np.eye(num_tasks + 1, dtype=np.float32)[np.asarray(task_ids, dtype=np.int64)]], 1)
    r_mean, r_std = float(returns.mean()), float(returns.std())
    r_std = r_std if r_std > 1e-9 else 1.0
    y = ((returns - r_mean) / r_std).astype(np.float32)

    device = torch.device(config.device)
    with torch.random.fork_rng(devices=[]):  # forks the CPU generator only, so seed only that one
        torch.default_generator.manual_seed(config.seed)
        layers: list = []
        d = x.shape[1]
        for _ in range(config.layers):
            layers += [nn.Linear(d, config.hidden), nn.LayerNorm(config.hidden), nn.SiLU()]
            d = config.hidden
        net = nn.Sequential(*layers, nn.Linear(d, 1)).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    rng = np.random.default_rng(config.seed)
    info: dict = {}
    for _ in range(config.steps):
        idx = torch.from_numpy(rng.integers(0, n, size=config.batch_size)).to(device)
        loss, info = value_loss(net, xt[idx], yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(xt[i:i + 65536])[:, 0] for i in range(0, n, 65536)]).cpu().numpy()
    values = pred.astype(np.float64) * r_std + r_mean
    resid = returns - values
    var = float(returns.var())
    return values, {
        "value/final_batch_mse": info.get("value/mse"),
        "value/rmse": float(np.sqrt((resid ** 2).mean())),
        "value/explained_variance": float(1 - resid.var() / var) if var > 0 else None,
    }
