"""The ALOE critic: Q over action chunks, fitted by chunked TD with the evaluated policy's chunks.

    from aloe_cli.critic import CriticConfig, fit_critic, load_critic
    fit_critic("store/", "critic/", CriticConfig(steps=5000), policy_spec="my_pkg.policy:make")
    critic = load_critic("critic/")
    q = critic.q(states, chunks)          # (B, N) aggregated over the ensemble as trained
"""

from .config import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, CriticConfig
from .load import Critic, load_critic
from .train import critic_loss, fit_critic

__all__ = ["CONFIG_FILE", "METRICS_FILE", "WEIGHTS_FILE", "Critic", "CriticConfig", "critic_loss", "fit_critic",
           "load_critic"]
