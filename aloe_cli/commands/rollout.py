"""`aloe rollout`: run a chunk policy on a robot (Meta-World by default) and record every episode."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (DeviceOpt, JsonOpt, PolicyArgOpt, PolicyObsMapOpt, SeedOpt, command, emit, err, fmt,
                      plural)


def register(app: typer.Typer) -> None:
    @command(app, "rollout")
    def rollout(
        policy: Annotated[str, typer.Option(
            "--policy", help="The policy: an aloe policy dir, package.module:factory, or ws://host:port.",
            show_default=False)],
        into: Annotated[Path, typer.Option("--into", help="The episode store to append to (created if missing).",
                                           show_default=False)],
        robot: Annotated[str, typer.Option(
            "--robot", help="sim:<metaworld-task>, remote:ws://host:port, lerobot:<robot-type> "
            "or package.module:factory.")] = "sim:drawer-open-v3",
        episodes: Annotated[int, typer.Option("--episodes", help="Episodes to run.")] = 10,
        policy_arg: PolicyArgOpt = None,
        policy_obs_map: PolicyObsMapOpt = None,
        policy_id: Annotated[Optional[str], typer.Option(
            "--policy-id", help="Recorded as the episodes' policy_id (default: the --policy spec).")] = None,
        execute_steps: Annotated[Optional[int], typer.Option(
            "--execute-steps", help="Actions executed from each chunk before the next request "
            "(default: all H).")] = None,
        max_steps: Annotated[int, typer.Option(
            "--max-steps", help="Actions per episode at most; the simulator fails an episode at this limit.")] = 150,
        fps: Annotated[Optional[float], typer.Option(
            "--fps", help="Pace the loop at this rate (default: the robot's rate for hardware; the simulator "
            "runs unpaced).")] = None,
        intervene: Annotated[str, typer.Option(
            "--intervene", help="none, expert-on-stall (simulation), keyboard (SPACE toggles takeover) or teleop "
            "(the robot's teleoperator).")] = "none",
        label: Annotated[str, typer.Option(
            "--label", help="auto: the robot's outcome (the simulator knows) or unknown; prompt: ask at each "
            "episode's end where the robot does not know.")] = "auto",
        seed: SeedOpt = 0,
        deadline: Annotated[float, typer.Option(
            "--deadline", help="Seconds a chunk may take before the robot holds (logged).")] = 1.0,
        policy_timeout: Annotated[float, typer.Option(
            "--policy-timeout", help="Seconds without a chunk before the run stops (episode saved truncated).")] = 30.0,
        max_delta: Annotated[Optional[float], typer.Option(
            "--max-delta", help="Largest change of any action number per step (default: the driver's).")] = None,
        reset_time: Annotated[float, typer.Option(
            "--reset-time", help="Seconds between episodes for a person to reset the scene.")] = 0.0,
        commit_every: Annotated[int, typer.Option(
            "--commit-every", help="Finished episodes per atomic commit (1: each at once).")] = 1,
        warmup: Annotated[Optional[bool], typer.Option(
            "--warmup/--no-warmup", help="One discarded chunk request on the first observation before the first "
            "episode, so the policy's slow first call does not miss --deadline (default: on a real-time robot).")] = None,
        compact: Annotated[bool, typer.Option(
            "--compact/--no-compact", help="When the run ends, merge the frames files its commits wrote, as "
            "aloe compact does (files of earlier runs stay as they are).")] = True,
        robot_arg: Annotated[Optional[list[str]], typer.Option(
            "--robot-arg", help="key=value passed to the robot driver (repeatable), e.g. port=/dev/ttyACM0.")] = None,
        device: DeviceOpt = "cpu",
        json_out: JsonOpt = False,
    ) -> None:
        """Run a chunk policy on a robot and append every episode to the store, atomically.

        Requests a chunk, executes its first k actions at the robot's control rate, requests the next;
        records every frame (observation, the action actually sent, is_intervention, timestamps);
        commits each finished episode with its outcome. Ctrl-C holds the robot and saves the partial
        episode as truncated (exit 130).

        Example: aloe rollout --policy aloe_cli.robot.experts:metaworld_expert --policy-arg noise=1.0
        --episodes 20 --intervene expert-on-stall --into store/
        """
        from ..policy import close_policy, load_policy, parse_kv
        from ..robot import load_robot
        from ..rollout import RolloutConfig, run_rollouts

        config = RolloutConfig(
            episodes=episodes, max_steps=max_steps, execute_steps=execute_steps, fps=fps,
            policy_id=policy_id or policy, intervene=intervene, label=label, seed=seed, deadline_s=deadline,
            policy_timeout_s=policy_timeout, max_delta=max_delta, reset_time_s=reset_time,
            commit_every=commit_every, warmup=warmup)
        # Cheap checks first: a bad option fails before the simulator or the policy loads.
        config.check(None)  # the chunk size is checked once the policy is loaded
        _check_device(device)
        obs_map = parse_kv(policy_obs_map, "--policy-obs-map") if policy_obs_map else None
        pol = load_policy(policy, parse_kv(policy_arg, "--policy-arg"), obs_map=obs_map, device=device)
        bot = load_robot(robot, seed=seed, max_steps=max_steps, **parse_kv(robot_arg, "--robot-arg"))

        keys = _keyboard() if intervene == "keyboard" else None
        view = _StatusLine()
        label_fn = view.ask_label if label == "prompt" else None
        if label == "prompt" and not sys.stdin.isatty():
            label_fn = view.read_label  # answers piped on stdin, one per line
        try:
            with view:
                summary = run_rollouts(bot, pol, into, config, status=view.update, label_fn=label_fn,
                                       policy_name=policy, keys=keys)
        finally:
            close_policy(pol)
        summary["compacted"] = None
        if compact and not summary["interrupted"]:
            summary["compacted"] = _compact_run(into, summary["episode_ids"])

        def human(d: dict) -> None:
            typer.echo(f"rolled out {plural(d['episodes'], 'episode')} ({d['frames']} frames) of {d['policy_id']} on "
                       f"{d['robot']} into {d['store']}: success {d['successes']}/{d['successes'] + d['failures']}"
                       f" ({fmt(d['success_rate'], 2)}), {d['unknown']} unknown, "
                       f"{d['intervention_frames']} intervention frames in {plural(d['interventions'], 'span')}")
            if d["late_chunks"]:
                typer.echo(f"the policy missed its {deadline:g} s deadline {d['late_chunks']} times; "
                           "the robot held meanwhile", err=True)
            if d["nan_holds"]:
                typer.echo(f"{d['nan_holds']} non-finite actions were not sent; the robot held", err=True)
            if d["discarded"]:
                typer.echo(f"discarded {plural(d['discarded'], 'episode')}", err=True)
            c = d["compacted"]
            if c and c.get("error"):
                typer.echo(f"the run's frames files were not merged ({c['error']}); `aloe compact {d['store']}` "
                           "merges them later", err=True)
            elif c and c["files_merged"]:
                typer.echo(f"merged the run's {c['files_merged']} frames files into {c['files_written']}", err=True)

        emit(summary, json_out, human)
        if summary["interrupted"]:
            typer.echo(f"interrupted ({summary['signal'] or 'stop'}): the robot holds; everything recorded is "
                       "saved (an episode cut short as truncated, its outcome unknown)", err=True)
            raise typer.Exit(130)


def _check_device(device: str) -> None:
    """--device, for every policy: a plugin or ws:// policy ignores it, but a bad name, or CUDA on a machine
    without it, is a mistake all the same (the same command fails with a built-in policy). cpu, the default,
    is known without importing torch."""
    if device.strip().lower() != "cpu":
        from ..policy.builtin import resolve_device

        resolve_device(device)


def _compact_run(store: Path, episode_ids: list) -> dict | None:
    """Merge the frames files holding this run's committed episodes (a commit writes one of its own). The
    episodes are committed already, so a failure here loses nothing: it is reported, not raised."""
    from .. import schema as S
    from ..compact import compact_store
    from ..errors import AloeError
    from ..store import Store

    ids = [i for i in episode_ids if i is not None]
    if len(ids) < 2:
        return None
    try:
        eps = Store.open(store).episodes
        files = set(eps.loc[eps[S.EPISODE_ID].isin(ids), S.FRAMES_FILE])
        if len(files) < 2:
            return None
        return compact_store(store, only=files)
    except AloeError as e:
        return {"error": str(e)}


def _keyboard():
    from ..errors import BadInput
    from ..robot.keyboard import KeyToggle

    if not sys.stdin.isatty():
        raise BadInput("needs an interactive terminal on stdin", field="--intervene keyboard")
    err.print("press SPACE to take over from the policy, SPACE again to hand back")
    return KeyToggle(sys.stdin.fileno())


class _StatusLine:
    """The live status line on stderr, and the end-of-episode label prompt."""

    def __init__(self):
        from rich.live import Live
        from rich.text import Text

        self._text = Text
        self.live = Live(Text(""), console=err, refresh_per_second=8, transient=True)

    def __enter__(self):
        self.live.start()
        return self

    def __exit__(self, *exc):
        self.live.stop()

    def update(self, s: dict) -> None:
        if s.get("event") == "store_busy":
            if s["waiting"]:
                line = (f"waiting for another aloe process to finish writing to {s['store']}; {s['pending']} "
                        "episodes to commit (a second Ctrl-C gives them up)")
            else:
                line = (f"{s['store']} is busy (another aloe process is writing): {s['pending']} episodes kept, "
                        "committed after the next episode")
            self.live.console.print(f"[yellow]{line}[/yellow]", soft_wrap=True)
            return
        if s.get("event") == "episode_end":
            outcome = {True: "[green]success[/green]", False: "[red]failure[/red]", None: "unknown"}[s["success"]]
            if s.get("discarded"):
                outcome = "discarded"
            self.live.console.print(
                f"episode {s['episode']}/{s['episodes']}: {outcome}, {s['length']} steps, "
                f"{s['intervention_frames']} intervention frames ({s['end']})", soft_wrap=True)
            return
        lat = "-" if s["latency_ms"] is None else f"{s['latency_ms']:.1f} ms"
        self.live.update(self._text(
            f"episode {s['episode']}/{s['episodes']}  step {s['step']}  {s['hz']:.0f} Hz  policy {lat}  "
            f"intervention {'ON' if s['intervention'] else 'off'}  success {s['successes']}/{s['finished']}"))

    def ask_label(self, info: dict) -> str:
        self.live.stop()
        try:
            while True:
                try:
                    answer = typer.prompt(f"episode {info['episode'] + 1} ({info['length']} steps): "
                                          "[s]uccess, [f]ailure or [d]iscard?", err=True).strip().lower()
                except typer.Abort:  # Ctrl-D: no more answers
                    raise EOFError("no answer") from None
                for full in ("success", "failure", "discard"):
                    if answer and full.startswith(answer):
                        return full
        finally:
            self.live.start()

    def read_label(self, info: dict) -> str:
        """One answer per line of piped stdin; at the end of input EOFError (the episode is kept, its
        outcome unknown, and the run stops); a blank or unknown answer leaves the outcome unknown."""
        line = sys.stdin.readline()
        if not line:
            raise EOFError("end of input")
        line = line.strip().lower()
        for full in ("success", "failure", "discard"):
            if line and full.startswith(line):
                return full
        return line
