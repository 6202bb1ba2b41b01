"""The benchmarks run end to end at their smoke budget and write well-formed JSON and a plot.

The smoke budgets are tiny (a few episodes, tens of critic steps): these tests check that the
programs run and what they write, not the numbers (those are in the README's tables).
"""

import importlib.util
import json
import math
import re
import sys

import numpy as np
import pytest

pytest.importorskip("metaworld")

from benchmarks import common, ope, speed  # noqa: E402


def _num(x) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


def _check_machine(m: dict) -> None:
    assert isinstance(m["date"], str) and m["date"][:2] == "20"
    assert isinstance(m["cpu_count"], int) and m["cpu_count"] >= 1
    assert "device" in m and "gpu" in m


def test_ope_smoke(tmp_path, capsys):
    from aloe_cli.store import Store

    # With the coverage probe: one more logged episode of a candidate, named in the stem.
    ope.main(["--task", "drawer-open-v3", "--budget", "smoke", "--out", str(tmp_path), "--log-candidate", "slow-0.5=1"])
    stem = "ope-drawer-open-v3-smoke-seed0-log-slow-0.5=1"
    r = json.loads((tmp_path / f"{stem}.json").read_text())
    assert (tmp_path / f"{stem}.png").stat().st_size > 1000
    assert r["benchmark"] == "ope" and r["task"] == "drawer-open-v3" and r["budget"] == "smoke"
    assert r["log_candidate"] == {"slow-0.5": 1} and r["logged"]["candidates"]["slow-0.5"]["episodes"] == 1
    policies = Store.open(tmp_path / stem / "store").episodes["policy_id"].tolist()
    assert policies.count("candidate:slow-0.5") == 1 and len(policies) == r["logged"]["episodes"]
    assert len(policies) == 1 + sum(b["episodes"] for b in r["logged"]["behaviours"].values())
    _check_machine(r["machine"])
    names = [c["name"] for c in r["candidates"]]
    assert len(names) >= 6 and "bc" in names
    assert set(r["truth"]) == set(names)
    for t in r["truth"].values():
        assert _num(t["value"]) and _num(t["se"]) and t["episodes"] == ope.BUDGETS["smoke"].truth_episodes
        assert -3.0 < t["value"] <= 0.0  # step-penalty values lie in about (-2, 0]
        # each truth episode's start configuration: one of MT1's 50, the same sequence for every candidate
        assert len(t["start_configs"]) == t["episodes"] and all(0 <= i < 50 for i in t["start_configs"])
        assert t["start_configs"] == r["truth"]["expert"]["start_configs"]
        assert t["distinct_starts"] == len(set(t["start_configs"])) and _num(t["se_episode"])
    assert r["resampling_unit"]["truth"] == r["resampling_unit"]["start_states"] == "start configuration"
    assert r["resampling_unit"]["logged_start_states"] == r["logged"]["episodes"]
    assert 1 <= r["resampling_unit"]["logged_distinct_starts"] <= r["logged"]["episodes"]
    assert r["truth_checks"]["indistinct"] == common.indistinct_pairs(
        {n: t["value"] for n, t in r["truth"].items()}, {n: t["se"] for n, t in r["truth"].items()})
    ph = r["phase_calibration"]
    assert ph["radius"] >= 0.08 and len(ph["closest"]) == ope.BUDGETS["smoke"].phase_episodes
    assert all(c["args"]["radius"] == ph["radius"] for c in r["candidates"] if c["spec"] == ope.PHASE)
    assert set(r["estimators"]) >= set(ope.ESTIMATORS)
    for est in ope.ESTIMATORS:
        e = r["estimators"][est]
        assert set(e["estimates"]) == set(names) and all(_num(v) for v in e["estimates"].values())
        for m in ("nae", "spearman", "regret@1"):
            assert set(e["metrics"][m]) == {"value", "ci_low", "ci_high"}
            assert all(_num(v) for v in e["metrics"][m].values())
        assert e["wall"]["total_s"] > 0 and e["wall"]["fits"] == (len(names) if est in ("aloe", "fqe") else 1)
    assert r["critic_config"]["aloe"]["bootstrap"] == "policy" and r["critic_config"]["aloe"]["chunk_size"] == 5
    assert r["critic_config"]["fqe"]["chunk_size"] == 1 and r["critic_config"]["sarsa"]["bootstrap"] == "data"
    assert r["critic_config"]["mc"]["bootstrap"] == "mc"
    assert r["reward"]["kind"] == "step-penalty"
    ca = r["credit_assignment"]["aloe"]
    assert ca["positives"] == r["logged"]["injected_chunks"] > 0 and _num(ca["auroc"])
    assert set(r["targets"]) >= {"spearman>=0.9", "nae<=0.1", "regret@1<=0.05", "credit_auroc>=0.9"}
    assert all(isinstance(v, bool) for v in r["targets"].values())
    out = capsys.readouterr().out
    assert "OPE benchmark: drawer-open-v3" in out and "regret@1" in out
    assert "coverage probe (not the protocol): the logs include 1 episodes of candidate slow-0.5" in out
    assert "s.e. and intervals: the truth by start configuration (" in out
    assert "the logged start states by start configuration (" in out
    # --from-json prints and writes nothing: the run's PNG stays as the run drew it
    png = tmp_path / f"{stem}.png"
    png.write_bytes(b"the run's own plot")
    again = ope.main(["--from-json", str(tmp_path / f"{stem}.json"), "--markdown"])
    assert again["estimators"].keys() == r["estimators"].keys()
    assert "| estimator | NAE [95% CI] | Spearman | regret@1 |" in capsys.readouterr().out
    assert png.read_bytes() == b"the run's own plot"
    ope.main(["--from-json", str(tmp_path / f"{stem}.json"), "--plot", str(tmp_path / "redrawn.png")])
    assert (tmp_path / "redrawn.png").stat().st_size > 1000 and png.read_bytes() == b"the run's own plot"
    assert f"wrote {tmp_path / 'redrawn.png'}" in capsys.readouterr().out
    # an older result (no start configurations recorded) still prints, and says its intervals are by episode
    old = {k: v for k, v in r.items() if k not in ("resampling_unit", "truth_checks", "phase_calibration")}
    (tmp_path / "old.json").write_text(json.dumps(old))
    ope.main(["--from-json", str(tmp_path / "old.json")])
    assert "s.e. and intervals by episode (a result from before start configurations" in capsys.readouterr().out
    assert not (tmp_path / "old.png").exists()


def test_ope_rejects_an_unknown_task(tmp_path):
    with pytest.raises(SystemExit, match="unknown Meta-World task 'no-such-task'"):
        ope.main(["--task", "no-such-task", "--budget", "smoke", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--plot: only with --from-json"):
        ope.main(["--budget", "smoke", "--plot", str(tmp_path / "p.png"), "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())


def test_ope_truth_warning_names_indistinct_candidates():
    truth = {"expert": {"value": -0.3137, "se": 0.0030}, "expert-then-noisy": {"value": -0.3140, "se": 0.0030},
             "noisy-1": {"value": -0.61, "se": 0.017}}
    pairs = ope.truth_checks(truth)["indistinct"]
    assert [(p["a"], p["b"]) for p in pairs] == [("expert", "expert-then-noisy")]
    assert ope.truth_warning(pairs).startswith("WARNING: 1 pair(s) of candidates have true values within their "
                                               "combined standard errors")
    assert "expert ~ expert-then-noisy (0.0003 apart, s.e. 0.0042)" in ope.truth_warning(pairs)
    assert ope.truth_warning([]) is None


def test_start_configurations_by_hand():
    from benchmarks.starts import known, match_start

    vecs = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    assert match_start(vecs, [2.0, 3.0]) == 1
    assert match_start(vecs, [2.0, 3.5]) is None and match_start(None, [2.0, 3.0]) is None
    assert match_start(vecs, [1.0, 2.0, 3.0]) is None
    assert known([3, 1, 3]) == [3, 1, 3] and known([3, None]) is None and known([]) is None
    # episode ids of one run_rollouts call, named with the robot's seed; misaligned ids are unknown
    per_episode = [{"episode_id": "e1"}, {"episode_id": "e2"}, {"episode_id": None}]
    assert ope._start_keys(3, per_episode, [7, None, 2]) == {"e1": "3:7", "e2": None}
    assert ope._start_keys(3, per_episode, [7]) == {"e1": None, "e2": None}


def test_start_recording_robot_names_mt1_configurations():
    from benchmarks.starts import StartRecordingSimRobot

    runs = []
    for _ in range(2):
        robot = StartRecordingSimRobot("button-press-v3", seed=10_000, max_steps=5)
        robot.connect()
        try:
            for _ in range(12):
                robot.reset()
        finally:
            robot.disconnect()
        runs.append(robot.starts)
    assert runs[0] == runs[1] and all(isinstance(i, int) and 0 <= i < 50 for i in runs[0])
    assert len(set(runs[0])) < 12  # with replacement: this seed repeats a configuration in its first 12


def test_critic_set_names_a_config_field():
    assert common.parse_critic_overrides(["tau=0.05", "head=hlgauss"]) == {"tau": 0.05, "head": "hlgauss"}
    assert common.parse_critic_overrides(["std-coef=0.5"]) == {"std_coef": 0.5}
    with pytest.raises(SystemExit, match="KEY a CriticConfig field, got 'nope=1'"):
        common.parse_critic_overrides(["nope=1"])
    with pytest.raises(SystemExit, match="KEY a CriticConfig field, got 'ensemble'"):
        common.parse_critic_overrides(["ensemble"])


def test_speed_smoke(tmp_path, capsys):
    # This interpreter as the d3rlpy one: without d3rlpy installed here (CI), the child fails and the
    # run goes on, with the aloe side of the FQE comparison measured and the child's error recorded.
    speed.main(["--budget", "smoke", "--device", "cpu", "--threads", "1", "--out", str(tmp_path),
                "--d3rlpy-python", sys.executable])
    r = json.loads((tmp_path / "speed-smoke.json").read_text())
    assert (tmp_path / "speed-smoke.png").stat().st_size > 1000
    assert r["benchmark"] == "speed"
    _check_machine(r["machine"])
    assert len(r["ingest"]["rows"]) == 2 and r["ingest"]["rows"][1]["frames"] == 2 * r["ingest"]["rows"][0]["frames"]
    for k in ("full_samples_per_s", "floor_samples_per_s", "bare_fwd_bwd_samples_per_s", "overhead_vs_floor"):
        assert _num(r["critic_training"][k]) and math.isfinite(r["critic_training"][k])
    for k in ("with_policy_chunks_per_s", "q_only_chunks_per_s", "with_policy_ratio_to_floor"):
        assert r["scoring"][k] > 0
    assert r["scoring"]["timing"] == "wall time" and r["scoring"]["torch_threads"] == 1
    assert [m["chunks"] for m in r["scoring_memory"]["rows"]] == [8 * 150, 16 * 150]
    assert set(r["targets"]) == {"data_path_overhead<=15%", "ingest>=0.5x_floor", "ingest_memory_flat(<=1.25x)",
                                 "scoring_memory_flat(<=1.25x)"}
    assert all(isinstance(v, bool) for v in r["targets"].values())
    im = r["images"]
    assert im["frames"] == speed.BUDGETS["smoke"].image_episodes * speed.BUDGETS["smoke"].image_length
    for k in ("state_samples_per_s", "image_samples_per_s", "image_over_state", "decode_frames_per_s",
              "decode_every_step_would_add", "image_load_s"):
        assert im[k] > 0 and math.isfinite(im[k]), k
    assert 0 < im["frames_share_of_image_step"] < 1
    out = capsys.readouterr().out
    assert "data-path overhead" in out and "critic step, 64x64 camera" in out and "PNG decode" in out
    assert "score_chunks (K 4; wall time, 1 threads)" in out and "score_chunks (Q only; wall time, 1 threads)" in out
    f = r["fqe_vs_d3rlpy"]
    assert f["aloe_fqe_samples_per_s"] > 0 and f["aloe_fqe_parameters"] > 0 and f["d3rlpy_layers"] == 4
    assert "one-step FQE step (H 1, 1 scalar head" in out
    if importlib.util.find_spec("d3rlpy") is None:
        assert f["d3rlpy"] is None and "No module named 'd3rlpy'" in f["d3rlpy_error"]
    else:
        assert f["d3rlpy"]["samples_per_s"] > 0 and f["aloe_fqe_over_d3rlpy"] > 0


def test_speed_rate_uses_the_clock_it_is_given():
    import time

    import torch

    # a step that waits 20 ms and computes nothing: ~50/s of wall time, far more per second of CPU time
    wait = lambda: time.sleep(0.02)  # noqa: E731
    assert speed._rate(wait, 3, 1, torch.device("cpu"), clock=time.perf_counter) < 60
    assert speed._rate(wait, 3, 1, torch.device("cpu")) > 200  # the CPU-time default on a CPU


def test_speed_scoring_times_both_sides_on_one_clock(tmp_path):
    import itertools

    from aloe_cli.critic import CriticConfig, fit_critic
    from benchmarks.bench_policy import synthetic_store

    store = tmp_path / "store"
    synthetic_store(store, 2, 30, 39, 4)
    fit_critic(store, tmp_path / "critic", CriticConfig(bootstrap="policy", chunk_size=5, steps=2, val_every=2,
                                                        log_every=1, device="cpu"),
               policy_spec=speed.POLICY, policy_args={"chunk_size": 5})
    # a clock that moves one unit per reading: every timed section lasts exactly 1 on it, so each rate is
    # its amount of work, whatever else (CPU time, say) a side might have been timed on instead
    ticks = itertools.count(0.0, 1.0)
    out = speed.scoring(store, tmp_path / "critic", "cpu", clock=lambda: next(ticks))
    steps = max(10, -(-out["chunks"] // 1024))
    assert out["with_policy_chunks_per_s"] == out["q_only_chunks_per_s"] == out["chunks"] == 60
    assert out["with_policy_floor_chunks_per_s"] == out["q_only_floor_chunks_per_s"] == steps * 1024
    assert out["with_policy_ratio_to_floor"] == pytest.approx(60 / (steps * 1024))
    assert out["timing"] == "wall time"


def test_store_smoke(tmp_path, capsys):
    from benchmarks import bench_store

    bench_store.main(["--episodes", "6", "--frames", "5", "--repeats", "1", "--out", str(tmp_path)])
    r = json.loads((tmp_path / "bench_store.json").read_text())
    assert r["benchmark"] == "store" and r["frames"] == 30
    _check_machine(r["machine"])
    assert (r["before"]["files"], r["after"]["files"]) == (6, 1)
    assert r["compacted"]["episodes_moved"] == 6 and r["compacted"]["fingerprint"]
    for k in ("load_frames_s", "read_parquet_s", "iter_episodes_s"):
        assert r["before"][k] > 0 and r["after"][k] > 0 and r["speedup"][k] > 0
    assert "Store.load_frames" in capsys.readouterr().out


# ---------------------------------------------------------------------- pieces, by hand
def test_discounted_returns_by_hand():
    reward = {"kind": "step-penalty", "t_norm": {"t": 2.0}, "t_norm_default": 2.0, "c_fail": None}
    # success in 2 frames: r = (-0.5, -0.5), gamma 0.5 -> -0.5 - 0.25 = -0.75
    # failure in 2 frames: the last frame adds -C_fail/T_norm = -1: (-0.5, -1.5) -> -0.5 - 0.75 = -1.25
    out = ope.discounted_returns([2, 2, 1], [True, False, True], "t", reward, 0.5)
    assert out.tolist() == pytest.approx([-0.75, -1.25, -0.5])


def test_credit_assignment_by_hand():
    # episode a: injected chunk at frame 10; starts 6..14 overlap it and are left out
    adv = {"episode_id": ["a"] * 4 + ["b"] * 2, "frame": [0, 8, 10, 20, 0, 10],
           "advantage": [-0.1, -0.9, -0.5, 0.2, -0.6, 0.0]}
    out = ope.credit_assignment(adv, [("a", 10)], chunk=5)
    assert out["positives"] == 1 and out["negatives"] == 2  # frames 0 and 20 of episode a
    assert out["auroc"] == pytest.approx(1.0)  # -0.5 is below -0.1 and 0.2
    # among all chunks: negatives -0.1, 0.2, -0.6, 0.0 -> beaten by -0.5 in 3 of 4
    assert out["auroc_all_chunks"] == pytest.approx(0.75)
    assert out["mean_advantage_injected"] == pytest.approx(-0.5)
    assert out["mean_advantage_other"] == pytest.approx(0.05)


def test_harmful_chunk_and_phase_expert():
    from benchmarks.candidates import PhaseExpert, hand_object_distance

    s = np.zeros((2, 39), dtype=np.float32)
    s[0, 4:7] = [0.3, 0.4, 0.0]  # far: 0.5
    s[1, 4:7] = [0.03, 0.04, 0.0]  # near: 0.05
    assert hand_object_distance(s).tolist() == pytest.approx([0.5, 0.05])
    near = PhaseExpert("drawer-open-v3", noise=1.0, noisy="near", radius=0.08)
    assert near._noise_mask({"observation.state": s}, 2).tolist() == [False, True]
    far = PhaseExpert("drawer-open-v3", noise=1.0, noisy="far", radius=0.08)
    assert far._noise_mask({"observation.state": s}, 2).tolist() == [True, False]
    with pytest.raises(Exception, match="must be near or far"):
        PhaseExpert("drawer-open-v3", noisy="middle")


def test_phase_radius_is_reached_on_every_task():
    from benchmarks.candidates import first_within, phase_radius

    assert phase_radius([0.017, 0.018]) == pytest.approx(0.08)  # drawer-open: the default, well inside
    # button-press: the hand gets to 0.074-0.081 of the button, never inside 0.08 -> 1.25 * 0.081
    assert phase_radius([0.074, 0.081, 0.077]) == pytest.approx(0.10125)
    assert phase_radius([]) == pytest.approx(0.08)
    assert first_within([0, 5, 10], [0.3, 0.1, 0.05], 0.08) == 10
    assert first_within([0, 5, 10], [0.3, 0.1, 0.09], 0.08) is None


def test_phase_calibration_switches_on_button_press():
    # the expert's closest approach at its chunk starts sets the radius: every calibration episode switches
    budget = ope.dataclasses.replace(ope.BUDGETS["smoke"], max_steps=150, phase_episodes=2)
    ph = ope.phase_calibration("button-press-v3", budget, 0)
    assert ph["radius"] > 0.08 and ph["radius"] == pytest.approx(1.25 * max(ph["closest"]))
    assert all(f is not None and 0 < f < n for f, n in zip(ph["switch_frames"], ph["lengths"]))


def test_wilson_interval_by_hand():
    from benchmarks.improve import wilson

    # 8 of 10: centre (0.8 + 1.96^2/20) / (1 + 1.96^2/10) = 0.7104, half-width 0.2263
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = wilson(0, 3)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.5615, abs=1e-4)


def test_clustered_wilson_by_hand():
    from benchmarks.improve import clustered_wilson, wilson

    # (1, 1, 0, 0) from configurations (a, a, b, b): two independent starts -> the interval of 1 in 2
    lo, hi, n_eff = clustered_wilson([1, 1, 0, 0], ["a", "a", "b", "b"])
    assert n_eff == pytest.approx(2.0) and (lo, hi) == pytest.approx(wilson(1, 2))
    # all independent: the plain Wilson interval of 8 in 10
    assert clustered_wilson([1] * 8 + [0] * 2)[:2] == pytest.approx(wilson(8, 10))
    # all successes from 3 distinct starts in 5 episodes: the interval of 3 in 3, wider than 5 in 5
    lo, hi, n_eff = clustered_wilson([1] * 5, [4, 4, 9, 9, 1])
    assert n_eff == 3.0 and (lo, hi) == pytest.approx(wilson(3, 3)) and lo < wilson(5, 5)[0]


def test_round_robot_seed():
    from benchmarks.improve import round_robot_seed

    assert [round_robot_seed(0, m) for m in ("aloe", "awr", "filtered", "bc")] == [1, 2, 3, 4]
    assert round_robot_seed(10, "bc") == 14


def test_mean_after_start_by_hand():
    from benchmarks.improve import mean_after_start

    curve = [{"success_rate": r} for r in (0.3, 0.6, 0.9, 0.75)]
    assert mean_after_start(curve) == pytest.approx(0.75)  # (0.6 + 0.9 + 0.75) / 3; round 0 left out
    assert math.isnan(mean_after_start(curve[:1]))


def test_improve_smoke(tmp_path, capsys):
    from benchmarks import improve

    # the rounds deploy the deterministic policy: its rollouts and the policy its round critics evaluate;
    # aloe and awr improve with the temperature 0.5 * std(A), filtered and bc as they are
    improve.main(["--task", "drawer-open-v3", "--budget", "smoke", "--policy-arg", "deterministic=true",
                  "--method-set", "beta_scale=0.5", "--out", str(tmp_path)])
    stem = "improve-drawer-open-v3-smoke-seed0-policy-deterministic=true-method-beta-scale=0.5"
    r = json.loads((tmp_path / f"{stem}.json").read_text())
    assert r["benchmark"] == "improve" and "bc" in r["methods"] and r["critic_obs"] == "state"
    assert r["policy_args"] == {"deterministic": True} and r["method_set"] == {"beta_scale": 0.5}
    critic = json.loads((tmp_path / stem / "aloe" / "critic1" / "critic.json").read_text())
    assert critic["policy"]["args"] == {"deterministic": True}
    assert critic["policy"]["spec"] == str(tmp_path / stem / "round0")
    for m, rule in (("aloe", "0.5 x std of advantages"), ("awr", "0.5 x std of advantages"), ("bc", None)):
        settings = json.loads((tmp_path / stem / m / "round1" / "policy.json").read_text())["lineage"]["settings"]
        assert settings.get("beta_rule") == rule and settings.get("beta_scale") == (0.5 if rule else None)
    out = capsys.readouterr().out
    assert "critics evaluate, the policy with --policy-arg deterministic=true\n" in out
    assert "the rounds improve with --method-set beta_scale=0.5 (applies to aloe, awr)\n" in out
    assert "Wilson 95% intervals at the effective number of episodes, clustered by start configuration" in out
    _check_machine(r["machine"])
    for m in r["methods"]:
        for key in ("success", "success_deterministic"):
            assert len(r[key][m]) == improve.BUDGETS["smoke"].rounds + 1
            for e in r[key][m]:
                assert 0.0 <= e["ci_low"] <= e["success_rate"] <= e["ci_high"] <= 1.0
                assert e["interval_unit"] == "start configuration" and 1 <= e["distinct_starts"] <= e["episodes"]
                assert 0 < e["effective_episodes"] <= e["episodes"]
        # the JSON names the seed the round rollouts ran with: the one the store recorded from the robot
        ingests = json.loads((tmp_path / stem / m / "store" / "aloe.json").read_text())["ingests"]
        configs = [i["options"].get("config") or {} for i in ingests]
        assert [c["seed"] for c in configs if c.get("policy_id") == "round0"] == [r["round_robot_seeds"][m]]
    assert len(set(r["round_robot_seeds"].values())) == len(r["methods"]) and r["eval_seed"] == 20_000
    assert set(r["methods"]) | set(r["skipped_methods"]) == set(improve.METHODS)
    c = r["ceiling"]
    assert c["expert_episodes"] == improve.BUDGETS["smoke"].seed_episodes and 0.0 <= c["expert_success_rate"] <= 1.0
    for key in ("bc", "bc_deterministic"):
        assert 0.0 <= c[key]["ci_low"] <= c[key]["success_rate"] <= c[key]["ci_high"] <= 1.0
        assert c[key]["episodes"] == improve.BUDGETS["smoke"].eval_episodes


def test_ope_log_candidate_pairs():
    assert ope.parse_log_candidates(None) == {}
    assert ope.parse_log_candidates(["slow-0.5=20", "noisy-1=5"]) == {"slow-0.5": 20, "noisy-1": 5}
    for bad in ("bc=5", "slow-0.5", "slow-0.5=0", "slow-0.5=x", "nope=3"):
        with pytest.raises(SystemExit, match=re.escape(f"--log-candidate: expected NAME=N with NAME one of expert, "
                                                       f"noisy-0.5, noisy-1, noisy-2, slow-0.5, expert-then-noisy, "
                                                       f"noisy-then-expert and N a positive integer, got {bad!r}")):
            ope.parse_log_candidates([bad])
    assert (ope.stem_of("drawer-open-v3", "small", 0, {"ensemble": 5}, {"slow-0.5": 20})
            == "ope-drawer-open-v3-small-seed0-ensemble=5-log-slow-0.5=20")


def test_ope_critic_overrides_name_the_run():
    assert ope.stem_of("drawer-open-v3", "small", 0) == "ope-drawer-open-v3-small-seed0"
    assert ope.stem_of("drawer-open-v3", "small", 0, {}) == "ope-drawer-open-v3-small-seed0"
    overrides = common.parse_critic_overrides(["ensemble=5", "aggregate=mean-std", "std_coef=0.5"])
    assert (ope.stem_of("pick-place-v3", "full", 2, overrides)
            == "ope-pick-place-v3-full-seed2-ensemble=5-aggregate=mean-std-std-coef=0.5")


def test_improve_methods_and_critic_obs_name_the_run(tmp_path):
    from benchmarks import improve

    assert improve.stem_of("drawer-open-v3", "small", 0) == "improve-drawer-open-v3-small-seed0"
    assert improve.stem_of("drawer-open-v3", "small", 0, list(improve.METHODS)) == "improve-drawer-open-v3-small-seed0"
    assert (improve.stem_of("pick-place-v3", "small", 1, ["aloe"], "state,time")
            == "improve-pick-place-v3-small-seed1-aloe-obs-state+time")
    assert (improve.stem_of("pick-place-v3", "small", 0, ["aloe"], "state", {"ensemble": 5, "aggregate": "mean-std"})
            == "improve-pick-place-v3-small-seed0-aloe-ensemble=5-aggregate=mean-std")
    assert (improve.stem_of("pick-place-v3", "full", 0, None, "state", {}, {"deterministic": True})
            == "improve-pick-place-v3-full-seed0-policy-deterministic=true")
    with pytest.raises(SystemExit, match="--methods: 'dagger' is not one of aloe, awr, filtered, bc"):
        improve.main(["--budget", "smoke", "--methods", "aloe,dagger", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--policy-arg.*expected key=value"):
        improve.main(["--budget", "smoke", "--policy-arg", "deterministic", "--out", str(tmp_path)])
    assert (improve.stem_of("pick-place-v3", "full", 0, ["aloe", "awr"], method_set={"beta_scale": 0.25})
            == "improve-pick-place-v3-full-seed0-aloe+awr-method-beta-scale=0.25")
    assert improve.method_options_for("aloe", {"beta_scale": 0.25, "quantile": 0.8}) == {"beta_scale": 0.25,
                                                                                       "quantile": 0.8}
    assert improve.method_options_for("bc", {"beta_scale": 0.25, "quantile": 0.8}) == {"quantile": 0.8}
    for argv, msg in ((["--method-set", "beta_scale=0"], "--method-set: --beta-scale: must be a number > 0, got 0.0"),
                      (["--method-set", "temperature=1"],
                       "--method-set: options: unknown option 'temperature' (known: beta, beta_scale,"),
                      (["--methods", "bc,filtered", "--method-set", "beta_scale=0.5"],
                       "--method-set: beta_scale applies to none of --methods bc,filtered"),
                      (["--method-set", "beta_scale"], "--method-set: expected key=value")):
        with pytest.raises(SystemExit, match=re.escape(msg)):
            improve.main(["--budget", "smoke", *argv, "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())  # refused before anything ran


def test_improve_merge_joins_disjoint_method_runs(tmp_path):
    from benchmarks import improve

    start = {"success_rate": 0.2, "ci_low": 0.1, "ci_high": 0.3, "episodes": 10}
    machine = {"date": "2026-11-24 13:04:59 UTC", "machine": "x86_64", "cpu_count": 2, "load_average_1min": 1.0,
               "torch_threads": 1, "gpu": None, "torch": "2.13.0"}

    def run(methods, rates, wall):
        return {"benchmark": "improve", "task": "pick-place-v3", "budget": "full", "seed": 0, "seed_noise": 0.5,
                "critic_obs": "state", "chunk_size": 5, "budget_settings": {"rounds": 1},
                "machine": machine, "methods": methods, "skipped_methods": [],
                "success": {m: [start, {**start, "success_rate": r}] for m, r in zip(methods, rates)},
                "wall_seconds": wall}

    a, b = run(["aloe", "bc"], [0.8, 0.7], 100.0), run(["filtered", "awr"], [0.6, 0.5], 120.0)
    paths = []
    for i, r in enumerate((a, b)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(r))
    m = improve.main(["--merge", *map(str, paths), "--out", str(tmp_path / "out")])
    assert m["methods"] == ["aloe", "awr", "filtered", "bc"] and m["wall_seconds"] == 120.0
    assert [m["success"][k][1]["success_rate"] for k in m["methods"]] == [0.8, 0.5, 0.6, 0.7]
    merged = json.loads((tmp_path / "out" / "improve-pick-place-v3-full-seed0.json").read_text())
    assert merged["methods"] == m["methods"]
    with pytest.raises(SystemExit, match="the runs differ in seed_noise: 0.5 vs 1.0"):
        improve.merge([a, {**b, "seed_noise": 1.0}])
    with pytest.raises(SystemExit, match="the runs differ in critic_overrides"):
        improve.merge([a, {**b, "critic_overrides": {"ensemble": 5}}])
    assert improve.merge([a, {**b, "critic_overrides": {}}])["critic_overrides"] == {}  # none recorded = none
    with pytest.raises(SystemExit, match="the runs differ in policy_args"):
        improve.merge([a, {**b, "policy_args": {"deterministic": True}}])
    with pytest.raises(SystemExit, match="the runs differ in method_set"):
        improve.merge([a, {**b, "method_set": {"beta_scale": 0.25}}])
    with pytest.raises(SystemExit, match="a method appears in more than one run"):
        improve.merge([a, a])
    assert "success_deterministic" not in m  # runs from before it was measured
    det_a = {**a, "success_deterministic": {k: [start, {**start, "success_rate": 0.9}] for k in a["methods"]}}
    det_b = {**b, "success_deterministic": {k: [start, {**start, "success_rate": 0.4}] for k in b["methods"]}}
    joined = improve.merge([det_a, det_b])
    assert [joined["success_deterministic"][k][1]["success_rate"] for k in joined["methods"]] == [0.9, 0.4, 0.4, 0.9]
    assert "success_deterministic" not in improve.merge([det_a, b])  # only where every run has it
    other_start = {k: [{**start, "success_rate": 0.3}] + v[1:] for k, v in b["success"].items()}
    with pytest.raises(SystemExit, match="round 0"):
        improve.merge([a, {**b, "success": other_start}])
    ceiling = {"expert_episodes": 30, "bc": {**start, "success_rate": 1.0}}
    assert improve.merge([{**a, "ceiling": None}, {**b, "ceiling": ceiling}])["ceiling"] == ceiling
    assert improve.merge([a, b])["ceiling"] is None  # runs from before the ceiling
    assert "round_robot_seeds" not in improve.merge([a, b])  # runs from before it was recorded
    seeded = improve.merge([{**a, "round_robot_seeds": {"aloe": 1, "bc": 4}}, {**b, "round_robot_seeds": {"awr": 2}}])
    assert seeded["round_robot_seeds"] == {"aloe": 1, "awr": 2, "bc": 4}


def test_improve_no_ceiling_skips_it(tmp_path, capsys):
    from benchmarks import improve

    r = improve.main(["--budget", "smoke", "--methods", "bc", "--no-ceiling", "--out", str(tmp_path)])
    assert r["ceiling"] is None and not (tmp_path / "improve-drawer-open-v3-smoke-seed0-bc" / "ceiling").exists()
    assert json.loads((tmp_path / "improve-drawer-open-v3-smoke-seed0-bc.json").read_text())["ceiling"] is None
    assert "ceiling:" not in capsys.readouterr().out
