"""The ALOE critic: Q over action chunks, fitted by chunked TD with the evaluated policy's chunks.

    from aloe_cli.critic import CriticConfig, fit_critic, load_critic
    fit_critic("store/", "critic/", CriticConfig(steps=5000), policy_spec="my_pkg.policy:make")
    critic = load_critic("critic/")
    q = critic.q(states, chunks)          # (B, N) aggregated over the ensemble as trained

Names are imported lazily so that `aloe --help` does not load numpy, pandas or torch.
"""

from .config import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, CriticConfig

__all__ = ["CONFIG_FILE", "METRICS_FILE", "WEIGHTS_FILE", "Critic", "CriticConfig", "critic_loss", "fit_critic",
           "load_critic"]


def __getattr__(name: str):
    if name in ("Critic", "load_critic"):
        from . import load

        return getattr(load, name)
    if name in ("critic_loss", "fit_critic"):
        from . import train

        return getattr(train, name)
    raise AttributeError(name)
