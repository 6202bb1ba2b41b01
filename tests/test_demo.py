"""`aloe demo --quick`: the whole loop runs on the simulator (small budget; the default run is slow)."""

from __future__ import annotations

import json

import pytest

from aloe_cli import schema as S
from aloe_cli.store import Store


def _check(out, d):
    assert d["out"] == str(out)
    store = Store.open(out / "store")
    eps = store.episodes
    # Noisy experts plus v0 with takeover; every logged episode has a simulator outcome.
    assert set(eps[S.POLICY_ID]) == {"expert-noise0.5", "expert-noise1", "expert-noise2", "v0"}
    assert eps[S.SUCCESS].notna().all()
    assert d["episodes_logged"] == len(eps)
    est = d["policy_value_v0"]["estimated"]
    assert est["ci_low"] <= est["estimate"] <= est["ci_high"]
    # Step-penalty values lie in about (-2, 0].
    assert -2.5 < est["estimate"] <= 0 and -2.5 < d["policy_value_v0"]["measured"]["mean"] <= 0
    assert 0 <= d["success_v0"] <= 1 and 0 <= d["success_v1"] <= 1
    for rel in ("critic/critic.json", "scores/summary.json", "scores/report.html", "policies/v0/policy.json",
                "policies/v1/policy.json", "demo.json"):
        assert (out / rel).exists(), rel
    assert json.loads((out / "demo.json").read_text())["success_v1"] == d["success_v1"]
    # v0's rollouts are recorded with its directory, so `aloe rounds STORE` credits them to v0.
    from aloe_cli.rounds import rounds

    v0 = next(r for r in rounds(out / "store")["policies"] if r["round_name"] == "v0")
    assert v0["rollouts"]["episodes"] == int((eps[S.POLICY_ID] == "v0").sum()), v0


def test_demo_quick_runs_the_whole_loop(cli, tmp_path):
    out = tmp_path / "demo"
    r = cli("demo", "--quick", "--out", out, "--json")
    assert r.exit_code == 0, r
    _check(out, json.loads(r.stdout))
    r = cli("demo", "--quick", "--out", out)
    assert r.exit_code == 2 and r.stderr == f"Error: {out}: --out: already exists; pass --force to replace it\n"


@pytest.mark.slow
def test_demo_default_budget(cli, tmp_path):
    out = tmp_path / "demo"
    r = cli("demo", "--out", out, "--json")
    assert r.exit_code == 0, r
    _check(out, json.loads(r.stdout))
