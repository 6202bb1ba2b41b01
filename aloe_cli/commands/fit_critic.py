"""`aloe fit-critic`: fit the chunk critic (ALOE, chunked SARSA or Monte-Carlo) on a store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..critic.config import CriticConfig
from ._common import DeviceOpt, JsonOpt, PolicyArgOpt, PolicyOpt, SeedOpt, StoreArg, command, emit, err, fmt

D = CriticConfig()  # the defaults live in one place


class _Bar:
    """`with _Bar(progress):` the bar appears on the first report (so bad input found before the work
    starts prints nothing else), stays on screen when the work ends, and is cleared when it fails,
    so the failure's Error: line stands alone."""

    def __init__(self, bar):
        self.bar = bar

    def start(self) -> None:
        if not self.bar.live.is_started:
            self.bar.start()

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, kind, *_) -> None:
        if not self.bar.live.is_started:
            return
        self.bar.live.transient = kind is not None
        console = self.bar.console
        quiet, console.quiet = console.quiet, console.quiet or (kind is not None and not console.is_terminal)
        try:  # piped and failing: clearing the bar would leave a blank line before the Error: line
            self.bar.stop()
        finally:
            console.quiet = quiet


def make_progress():
    """A progress bar on stderr (a `_Bar`, used as a context) for fit_critic's and score's
    `progress(phase, done, total, info)`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = _Bar(Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[extra]}"), console=err, transient=False))
    tasks: dict[str, int] = {}

    def progress(phase: str, done: int, total: int, info: dict) -> None:
        bar.start()
        if phase not in tasks:
            tasks[phase] = bar.bar.add_task(phase, total=total, extra="")
        extra = ""
        if "time/samples_per_s" in info:
            extra = f"{info['time/samples_per_s']:,.0f} samples/s  td {info.get('critic/td_mse', 0):.4g}"
            if "val/v_start" in info:
                extra += f"  V(start) {info['val/v_start']:.3f}"
        bar.bar.update(tasks[phase], completed=done, total=total, extra=extra)

    return bar, progress


def register(app: typer.Typer) -> None:
    @command(app, "fit-critic")
    def fit_critic_cmd(
        store: StoreArg,
        out: Annotated[Path, typer.Option("--out", help="Directory for the critic (weights, config, metrics).",
                                          show_default=False)],
        policy: PolicyOpt = None,
        policy_arg: PolicyArgOpt = None,
        chunk_size: Annotated[Optional[int], typer.Option(
            "--chunk-size", help="H actions per chunk (default: the policy's chunk size).")] = None,
        bootstrap: Annotated[str, typer.Option(
            "--bootstrap", help="policy (ALOE), data (chunked SARSA) or mc (Monte-Carlo return).")] = D.bootstrap,
        reward: Annotated[str, typer.Option("--reward", help="step-penalty, sparse or logged.")] = D.reward,
        t_norm: Annotated[Optional[float], typer.Option(
            "--t-norm", help="step-penalty: typical episode length (default: 95th percentile per task).")] = None,
        c_fail: Annotated[Optional[float], typer.Option(
            "--c-fail", help="step-penalty: failure cost in frames (default: T_norm).")] = None,
        gamma: Annotated[float, typer.Option("--gamma", help="Discount per frame.")] = D.gamma,
        ensemble: Annotated[int, typer.Option("--ensemble", help="M critic heads.")] = D.ensemble,
        aggregate: Annotated[str, typer.Option(
            "--aggregate", help="How heads combine: min, mean or mean-std.")] = D.aggregate,
        std_coef: Annotated[float, typer.Option(
            "--std-coef", help="mean-std: c in mean - c * std over the heads.")] = D.std_coef,
        samples: Annotated[int, typer.Option(
            "--samples", help="K policy chunks per bootstrap state.")] = D.samples,
        steps: Annotated[int, typer.Option("--steps", help="Gradient steps.")] = D.steps,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Chunks per step.")] = D.batch_size,
        lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = D.lr,
        tau: Annotated[float, typer.Option("--tau", help="Polyak rate of the target networks.")] = D.tau,
        head: Annotated[str, typer.Option("--head", help="scalar or hlgauss.")] = D.head,
        chunk_encoder: Annotated[str, typer.Option(
            "--chunk-encoder", help="mlp (flattened chunk) or transformer.")] = D.chunk_encoder,
        hidden: Annotated[int, typer.Option("--hidden", help="Width of the MLPs.")] = D.hidden,
        layers: Annotated[int, typer.Option("--layers", help="Hidden layers per MLP.")] = D.layers,
        val_fraction: Annotated[float, typer.Option(
            "--val-fraction", help="Share of episodes held out for validation.")] = D.val_fraction,
        checkpoint_every: Annotated[int, typer.Option(
            "--checkpoint-every", help="Steps between checkpoints.")] = D.checkpoint_every,
        episodes_filter: Annotated[Optional[str], typer.Option(
            "--episodes-filter", help="pandas query over the episodes table, e.g. \"policy_id != 'human'\".")] = None,
        obs: Annotated[str, typer.Option(
            "--obs", help="Observation inputs: state[,images.<cam>][,<numeric column>][,time], e.g. state,images.top "
            "(cameras go through a small conv encoder trained from scratch; time = frame index / the task's "
            "typical length, for episodes that a time limit ends as failures).")] = D.obs,
        no_augment: Annotated[bool, typer.Option(
            "--no-augment", help="Do not random-shift camera frames in training.")] = False,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")] = False,
        seed: SeedOpt = D.seed,
        device: DeviceOpt = D.device,
        json_out: JsonOpt = False,
    ) -> None:
        """Fit a critic Q(o_t, a_{t:t+H}) by chunked TD, bootstrapping with the policy's own chunks.

        Runs on several GPUs or nodes with torchrun (DistributedDataParallel).

        Example: aloe fit-critic store/ --out critic/ --policy my_pkg.policies:make --steps 20000
        """
        from ..critic import fit_critic
        from ..policy import parse_kv

        config = CriticConfig(
            chunk_size=chunk_size, bootstrap=bootstrap, reward=reward, t_norm=t_norm, c_fail=c_fail, gamma=gamma,
            ensemble=ensemble, aggregate=aggregate, std_coef=std_coef, samples=samples, steps=steps,
            batch_size=batch_size, lr=lr, tau=tau, hidden=hidden, layers=layers, head=head, chunk_encoder=chunk_encoder,
            val_fraction=val_fraction, checkpoint_every=checkpoint_every, seed=seed, device=device,
            episodes_filter=episodes_filter, obs=obs, augment=not no_augment)
        rank0 = int(os.environ.get("RANK", "0")) == 0
        bar, progress = make_progress()
        show = rank0 and not json_out
        with bar:
            result = fit_critic(store, out, config, policy, parse_kv(policy_arg, "--policy-arg"),
                                progress=progress if show else None, resume=resume)
        if not rank0:
            return

        def human(d: dict) -> None:
            line = (f"fitted a critic ({d['bootstrap']} bootstrap, H={d['chunk_size']}) on {d['episodes']} episodes, "
                    f"{d['train_chunks']} training chunks, {d['steps']} steps in {d['seconds']:.1f} s -> {d['out']}")
            typer.echo(line)
            parts = [f"{k} {fmt(d[k], 4)}" for k in ("val/td_mse", "val/v_start", "val/q_start") if k in d]
            if parts:
                typer.echo("  " + ", ".join(parts))

        emit(result, json_out, human)
