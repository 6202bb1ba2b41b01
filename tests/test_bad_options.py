"""Bad options and damaged inputs: one `Error: <file>: <field>: <message>` line, exit 2, nothing written.

Each case is one the bad-input audit found giving a traceback, a wrong message or a silent run.
"""

from __future__ import annotations

import json
import math
import shutil
import sys

import numpy as np
import pytest
import torch

import chainworld as cw
from aloe_cli import schema as S
from aloe_cli.critic import CriticConfig, fit_critic, load_critic
from aloe_cli.errors import BadInput, PolicyError
from aloe_cli.policy import parse_value, sample_checked
from aloe_cli.rollout import RolloutConfig, run_rollouts
from test_rollout import sim  # noqa: F401  (the module's Meta-World simulator, reused)

torch.set_num_threads(1)
EXPERT = "aloe_cli.robot.experts:metaworld_expert"

# Plugin policies for the chain world (action_dim 1, chunk_size 2) that misbehave in sample().
BAD_PLUGIN = '''
import numpy as np

class Bad:
    def __init__(self, mode, chunk_size=2, action_dim=1):
        self.mode, self.chunk_size, self.action_dim = mode, chunk_size, action_dim

    def sample(self, observations, num_samples):
        if self.mode == "raise":
            raise RuntimeError("boom inside sample")
        if self.mode == "interrupt":
            raise KeyboardInterrupt
        return None

def make(mode="raise", chunk_size=2, action_dim=1):
    return Bad(mode, chunk_size, action_dim)
'''


def one_error(r, start: str, progress: bool = False) -> str:
    """The run failed as bad input: exit 2 and a single stderr line, `Error: ...` starting with `start`.
    `progress`: a failure while running may leave the progress line above it (the error is still the last line)."""
    lines = r.stderr.strip().splitlines()
    if progress:
        assert sum(x.startswith("Error:") for x in lines) == 1, r
        lines = lines[-1:]
    assert r.exit_code == 2 and len(lines) == 1, r
    assert lines[0].startswith("Error: " + start), r
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A small chain-world store and a critic fitted on it in a few steps (its numbers do not matter here)."""
    d = tmp_path_factory.mktemp("bad_options")
    cw.make_store(d / "store", episodes=20, T_max=20, seed=0)
    spec = cw.write_policy_module(d)
    sys.path.insert(0, str(d))
    cfg = CriticConfig(chunk_size=2, samples=1, steps=4, batch_size=32, hidden=16, val_every=2, log_every=2,
                       checkpoint_every=4, device="cpu")
    fit_critic(d / "store", d / "critic", cfg, spec, {"chunk_size": 2})
    yield d
    sys.path.remove(str(d))


@pytest.fixture
def bad_plugin(tmp_path, monkeypatch):
    (tmp_path / "aloe_bad_sample.py").write_text(BAD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))  # undone after the test
    return tmp_path


def damaged_critic(fitted, tmp_path, damage):
    c = tmp_path / "critic"
    shutil.copytree(fitted / "critic", c)
    meta = json.loads((c / "critic.json").read_text())
    (c / "critic.json").write_text(json.dumps(damage(meta)))
    return c


def _without(key):
    def damage(meta):
        del meta[key]
        return meta
    return damage


def _setting(key, value):
    def damage(meta):
        target = meta
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
        return meta
    return damage


# ---------------------------------------------------------------- critic.json (B6, R15)

@pytest.mark.parametrize("damage,field", [
    (lambda meta: [], "expected a JSON object, got list"),
    (_without("chunk_size"), "chunk_size: missing"),
    (_without("config"), "config: missing"),
    (_without("normalization"), "normalization: missing"),
    (_without("state_dim"), "state_dim: missing"),
    (_setting("state_dim", "x"), "state_dim: expected an integer >= 1, got 'x'"),
    (_setting("chunk_size", -1), "chunk_size: expected an integer >= 1, got -1"),
    (_setting("reward", "bogus"), "reward: expected an object, got 'bogus'"),
    (_setting("reward.kind", "bogus"), "reward.kind: got 'bogus'"),
    (_setting("normalization.return_scale", 0), "normalization.return_scale: expected a finite number > 0"),
    (_setting("config.head", "bogus"), "config.head: got 'bogus'; choose one of scalar, hlgauss"),
    (_setting("config.gamma", "x"), "config.gamma: expected a number, got 'x'"),
    (_setting("version", "x"), "version: expected an integer, got 'x'"),
], ids=["list", "no-chunk_size", "no-config", "no-normalization", "no-state_dim", "state_dim-str", "chunk_size-neg",
        "reward-str", "reward-kind", "return_scale-0", "head", "gamma-str", "version-str"])
def test_score_refuses_a_damaged_critic_json(cli, fitted, tmp_path, damage, field):
    c = damaged_critic(fitted, tmp_path, damage)
    r = cli("score", fitted / "store", "--critic", c, "--out", tmp_path / "scores", "--device", "cpu")
    one_error(r, f"{c / 'critic.json'}: {field}")
    assert not (tmp_path / "scores").exists()


def test_score_refuses_an_unknown_device(cli, fitted, tmp_path):
    r = cli("score", fitted / "store", "--critic", fitted / "critic", "--out", tmp_path / "scores",
            "--device", "bogus")
    assert one_error(r, "--device: ") == "Error: --device: 'bogus' is not auto, cpu, cuda or cuda:N"
    assert not (tmp_path / "scores").exists()
    with pytest.raises(BadInput) as e:
        load_critic(fitted / "critic", device="cuda:x")
    assert e.value.field == "--device"
    assert load_critic(fitted / "critic", device=" CPU ").device == torch.device("cpu")


# ---------------------------------------------------------------- a policy whose sample() fails (B8, B10)

def test_score_reports_a_raising_policy_in_one_line(cli, fitted, tmp_path, bad_plugin):
    r = cli("score", fitted / "store", "--critic", fitted / "critic", "--out", tmp_path / "scores",
            "--device", "cpu", "--policy", "aloe_bad_sample:make")
    line = one_error(r, "aloe_bad_sample:make: --policy: ", progress=True)
    assert line.endswith("sample() raised RuntimeError: boom inside sample")
    assert not (tmp_path / "scores").exists()
    from aloe_cli.policy import load_policy

    obs = {S.OBS_STATE: np.zeros((2, 7), np.float32), S.TASK: ["a", "b"]}
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C is not bad output
        sample_checked(load_policy("aloe_bad_sample:make", {"mode": "interrupt"}), obs, 1, "p")
    with pytest.raises(PolicyError, match=r"^p: --policy: sample\(\) returned None"):
        sample_checked(load_policy("aloe_bad_sample:make", {"mode": "none"}), obs, 1, "p")


def test_rollout_reports_a_policy_that_returns_none(cli, tmp_path, bad_plugin):
    r = cli("rollout", "--policy", "aloe_bad_sample:make", "--policy-arg", "mode=none", "--policy-arg", "action_dim=4",
            "--episodes", "1", "--max-steps", "5", "--into", tmp_path / "s")
    one_error(r, "aloe_bad_sample:make: --policy: sample() returned None", progress=True)
    assert not (tmp_path / "s").exists()


def test_threaded_rollout_reports_a_policy_that_returns_none(sim, bad_plugin):  # noqa: F811
    from aloe_cli.policy import load_policy

    policy = load_policy("aloe_bad_sample:make", {"mode": "none", "action_dim": 4})
    with pytest.raises(PolicyError, match=r"sample\(\) returned None"):
        run_rollouts(sim, policy, None, RolloutConfig(episodes=1, max_steps=5, policy_thread=True),
                     policy_name="aloe_bad_sample:make")


# ---------------------------------------------------------------- fit-critic options (B7, B11)

@pytest.mark.parametrize("option,value,message", [
    ("--seed", "-1", "must be >= 0, got -1"),
    ("--lr", "inf", "must be a finite number > 0, got inf"),
    ("--lr", "nan", "must be a finite number > 0, got nan"),
    ("--device", "gpu", "got 'gpu'; choose one of auto, cpu, cuda or cuda:N"),
    pytest.param("--device", "cuda:1", "CUDA is not available on this machine; use --device cpu",  # was refused
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")),
])
def test_fit_critic_refuses_bad_numbers(cli, fitted, tmp_path, option, value, message):
    r = cli("fit-critic", fitted / "store", "--out", tmp_path / "c", "--bootstrap", "data", "--chunk-size", "2",
            "--steps", "3", "--device", "cpu", option, value)
    assert one_error(r, option) == f"Error: {option}: {message}"
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("field,value", [("weight_decay", math.nan), ("weight_decay", math.inf),
                                         ("weight_decay", -1.0), ("seed", -5)])
def test_critic_config_refuses_non_finite_and_negative_values(field, value):
    with pytest.raises(BadInput) as e:
        CriticConfig(**{field: value}).check()
    assert e.value.field == "--" + field.replace("_", "-")


# ---------------------------------------------------------------- rollout options (B7, R3)

@pytest.mark.parametrize("option,value", [
    ("--seed", "-1"), ("--seed", str(2 ** 32)), ("--fps", "nan"), ("--fps", "inf"), ("--deadline", "nan"),
    ("--policy-timeout", "nan"), ("--policy-timeout", "inf"), ("--reset-time", "-5"), ("--reset-time", "nan"),
    ("--max-delta", "nan"), ("--max-delta", "inf"),
])
def test_rollout_refuses_bad_numbers_before_running(cli, tmp_path, option, value):
    r = cli("rollout", "--policy", EXPERT, "--episodes", "1", "--max-steps", "5", "--into", tmp_path / "s",
            option, value)
    one_error(r, f"{option}: ")
    assert not (tmp_path / "s").exists()
    RolloutConfig(fps=None, max_delta=None, reset_time_s=0.0, seed=2 ** 32 - 1).check(5)  # the documented defaults


@pytest.mark.parametrize("args,message", [
    (("--policy-timeout", "0"), "--policy-timeout: must be at least --deadline (1.0), got 0.0"),
    (("--deadline", "40"), "--deadline: must be at most --policy-timeout (30.0), got 40.0"),
    (("--deadline", "5", "--policy-timeout", "2"), "--policy-timeout: must be at least --deadline (5.0), got 2.0"),
], ids=["timeout", "deadline", "both"])
def test_rollout_names_the_option_out_of_range(cli, tmp_path, args, message):
    """A policy timeout below the deadline named --deadline, whichever option was given."""
    r = cli("rollout", "--policy", EXPERT, "--episodes", "1", "--max-steps", "5", "--into", tmp_path / "s", *args)
    assert one_error(r, "--") == f"Error: {message}"
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("device,message", [
    ("tpu", "'tpu' is not auto, cpu, cuda or cuda:N"),
    pytest.param("cuda", "CUDA is not available on this machine; use --device cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")),
])
def test_rollout_checks_the_device_for_every_policy(cli, tmp_path, device, message):
    """A plugin policy never uses --device, and a bad one ran all the same (exit 0); the same command with a
    built-in policy is refused, so it is refused for every policy, before anything loads."""
    args = ("rollout", "--policy", EXPERT, "--episodes", "1", "--max-steps", "2", "--into", tmp_path / "s")
    assert one_error(cli(*args, "--device", device), "--device: ") == f"Error: --device: {message}"
    assert not (tmp_path / "s").exists()
    assert cli(*args, "--device", " Auto ").exit_code == 0


# ---------------------------------------------------------------- the scripted expert's arguments (R4)

def test_parse_value_reads_nan_and_inf_as_numbers():
    assert math.isnan(parse_value("nan")) and parse_value("inf") == math.inf and parse_value("-Infinity") == -math.inf
    assert parse_value("banana") == "banana" and parse_value("0.5") == 0.5 and parse_value("true") is True


@pytest.mark.parametrize("arg,message", [
    ("noise=nan", "noise: must be a finite number >= 0, got nan"),
    ("noise=inf", "noise: must be a finite number >= 0, got inf"),
    ("speed=0", "speed: must be a finite number > 0, got 0"),
    ("speed=-1", "speed: must be a finite number > 0, got -1"),
    ("speed=nan", "speed: must be a finite number > 0, got nan"),
    ("noise=loud", "noise: must be a number, got 'loud'"),
])
def test_rollout_refuses_bad_expert_arguments(cli, tmp_path, arg, message):
    r = cli("rollout", "--policy", EXPERT, "--policy-arg", arg, "--episodes", "1", "--max-steps", "5",
            "--into", tmp_path / "s")
    assert one_error(r, "") == f"Error: {message}"
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------- ingest options (B8, R15)

@pytest.mark.parametrize("size", ["0x0", "-4x4", "64x0"])
def test_ingest_refuses_an_empty_image_size(cli, tmp_path, aloha_dir, size):
    src, _ = aloha_dir
    r = cli("ingest", tmp_path / "store", src, "--image-size", size)
    one_error(r, f"--image-size: '{size}': ")
    assert not (tmp_path / "store").exists()


def test_ingest_names_a_bad_success_option_once(cli, tmp_path, aloha_dir):
    src, _ = aloha_dir
    r = cli("ingest", tmp_path / "store", src, "--success", "maybe")
    assert one_error(r, "--success: ") == "Error: --success: 'maybe' is not true, false or unknown"
    assert not (tmp_path / "store").exists()
