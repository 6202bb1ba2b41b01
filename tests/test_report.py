"""The score report: a self-contained HTML page with valid, non-trivial images; bad input; Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aloe_cli import schema as S
from aloe_cli.errors import BadInput
from aloe_cli.report import (MAX_ASKED, MAX_WORST_BEST, calibration_bins, rank_auc, select_episodes, wilson_interval,
                             write_report)

H = 5  # chunk size of the made-up critic
T_NORM = 80.0  # step-penalty normaliser


def _interval(x: np.ndarray, rng) -> dict:
    if len(x) == 0:
        return {"estimate": None, "ci_low": None, "ci_high": None}
    boots = rng.choice(x, size=(200, len(x))).mean(axis=1)
    return {"estimate": float(x.mean()), "ci_low": float(np.percentile(boots, 2.5)),
            "ci_high": float(np.percentile(boots, 97.5))}


def make_scores(root: Path, n: int = 40, seed: int = 0, tasks=("pick up the cube", "open the drawer"),
                policies=("pi-v1", "pi-v2", "human"), warnings=("critic/td_loss still falling at the last step",),
                extra_summary: dict | None = None) -> dict:
    """A scores directory exactly as `aloe score` writes it, with structure a critic would find.

    Successful episodes: V climbs steadily to 0 (step penalty). Failed ones: V falls by about 1
    at a failure frame, where the logged chunk has a big negative advantage (a critical chunk).
    Some policy episodes have a human intervention span whose chunks have positive advantages.
    A few episodes have no outcome label. Returns the ground truth the tests check against.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    p_success = {"pi-v1": 0.35, "pi-v2": 0.7, "human": 1.0}
    chunk_rows: dict[str, list] = {k: [] for k in (S.EPISODE_ID, S.FRAME_INDEX, S.POLICY_ID, S.TASK,
                                                    S.IS_INTERVENTION, S.Q, S.Q_STD, S.V, S.ADVANTAGE, S.CHUNK_LEN)}
    eps: list[dict] = []
    for e in range(n):
        eid = f"ep-{e:04d}"
        pid, task = policies[e % len(policies)], tasks[(e // len(policies)) % len(tasks)]
        T = int(rng.integers(40, 90))
        success = bool(rng.random() < p_success.get(pid, 0.5))
        label = None if (e % 11 == 10) else success
        t = np.arange(T)
        v = -(T - t) / T_NORM + rng.normal(0, 0.01, T)
        fail_at = None
        if not success:
            fail_at = int(rng.integers(T // 3, 2 * T // 3))
            v = v - 1.0 * (t > fail_at) - 0.2
        adv = rng.normal(0, 0.02, T)
        spans = []
        inter = np.zeros(T, bool)
        if pid != "human" and e % 4 == 1:
            s0 = int(rng.integers(5, T - 20))
            spans.append([s0, s0 + 12])
            inter[s0:s0 + 12] = True
            adv[s0:s0 + 12] += 0.08
        if fail_at is not None:
            adv[fail_at] = -0.9 + rng.normal(0, 0.05)
        q = v + adv
        chunk_len = np.minimum(H, T - t)
        crit = t[adv < -0.3].tolist()
        ret = -T / T_NORM - (1.0 if label is False else 0.0)  # no outcome: no failure penalty
        for k, val in ((S.EPISODE_ID, [eid] * T), (S.FRAME_INDEX, t), (S.POLICY_ID, [pid] * T), (S.TASK, [task] * T),
                       (S.IS_INTERVENTION, inter), (S.Q, q), (S.Q_STD, np.abs(rng.normal(0.03, 0.01, T))), (S.V, v),
                       (S.ADVANTAGE, adv), (S.CHUNK_LEN, chunk_len)):
            chunk_rows[k].extend(list(val))
        drops = np.diff(v)
        eps.append({S.EPISODE_ID: eid, S.POLICY_ID: pid, S.TASK: task, S.SUCCESS: label, S.LENGTH: T,
                    S.RETURN: ret, S.V_START: float(v[0]), S.Q_START: float(q[0]), S.ADV_MIN: float(adv.min()),
                    S.ADV_MIN_FRAME: int(adv.argmin()), S.ADV_MAX: float(adv.max()), S.ADV_MAX_FRAME: int(adv.argmax()),
                    S.V_DROP_MAX: float(-drops.min()), S.V_DROP_FRAME: int(drops.argmin() + 1),
                    S.CRITICAL_FRAMES: crit, S.INTERVENTION_SPANS: spans})
    adv_all = np.asarray(chunk_rows[S.ADVANTAGE])
    tasks_col = np.asarray(chunk_rows[S.TASK])
    norm = np.empty_like(adv_all)
    for task in set(tasks_col):
        m = tasks_col == task
        norm[m] = adv_all[m] / adv_all[m].std()
    chunks = pa.table({
        S.EPISODE_ID: pa.array(chunk_rows[S.EPISODE_ID], pa.string()),
        S.FRAME_INDEX: pa.array(chunk_rows[S.FRAME_INDEX], pa.int64()),
        S.POLICY_ID: pa.array(chunk_rows[S.POLICY_ID], pa.string()),
        S.TASK: pa.array(chunk_rows[S.TASK], pa.string()),
        S.IS_INTERVENTION: pa.array(chunk_rows[S.IS_INTERVENTION], pa.bool_()),
        S.Q: pa.array(chunk_rows[S.Q], pa.float32()),
        S.Q_STD: pa.array(chunk_rows[S.Q_STD], pa.float32()),
        S.V: pa.array(chunk_rows[S.V], pa.float32()),
        S.ADVANTAGE: pa.array(adv_all, pa.float32()),
        S.ADVANTAGE_NORM: pa.array(norm, pa.float32()),
        S.CHUNK_LEN: pa.array(chunk_rows[S.CHUNK_LEN], pa.int64()),
    })
    pq.write_table(chunks, root / S.SCORES_CHUNKS_FILE)
    episodes = pa.table({
        S.EPISODE_ID: pa.array([d[S.EPISODE_ID] for d in eps], pa.string()),
        S.POLICY_ID: pa.array([d[S.POLICY_ID] for d in eps], pa.string()),
        S.TASK: pa.array([d[S.TASK] for d in eps], pa.string()),
        S.SUCCESS: pa.array([d[S.SUCCESS] for d in eps], pa.bool_()),
        S.LENGTH: pa.array([d[S.LENGTH] for d in eps], pa.int64()),
        **{c: pa.array([d[c] for d in eps], pa.float64())
           for c in (S.RETURN, S.V_START, S.Q_START, S.ADV_MIN, S.ADV_MAX, S.V_DROP_MAX)},
        **{c: pa.array([d[c] for d in eps], pa.int64()) for c in (S.ADV_MIN_FRAME, S.ADV_MAX_FRAME, S.V_DROP_FRAME)},
        S.CRITICAL_FRAMES: pa.array([d[S.CRITICAL_FRAMES] for d in eps], pa.list_(pa.int64())),
        S.INTERVENTION_SPANS: pa.array([d[S.INTERVENTION_SPANS] for d in eps], pa.list_(pa.list_(pa.int64()))),
    })
    pq.write_table(episodes, root / S.SCORES_EPISODES_FILE)
    v0 = np.array([d[S.V_START] for d in eps])
    pids = np.array([d[S.POLICY_ID] for d in eps])
    tks = np.array([d[S.TASK] for d in eps])
    summary = {
        "store": "/data/store", "critic": "/data/critic", "policy": "/data/policy-v2",
        "policy_value": _interval(v0, rng),
        "per_task": {tk: {**_interval(v0[tks == tk], rng), "episodes": int((tks == tk).sum())}
                     for tk in sorted(set(tks))},
        "per_policy_id": {p: {"v_start": _interval(v0[pids == p], rng),
                              "success_rate": (lambda s: None if not s else float(np.mean(s)))(
                                  [d[S.SUCCESS] for d in eps if d[S.POLICY_ID] == p and d[S.SUCCESS] is not None]),
                              "episodes": int((pids == p).sum())} for p in sorted(set(pids))},
        "episodes": n, "chunks": len(adv_all), "warnings": list(warnings), **(extra_summary or {}),
    }
    (root / S.SCORES_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return {"episodes": eps, "summary": summary}


def data_uris(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def assert_nontrivial_png(data: bytes, min_w: int = 300, min_h: int = 150) -> None:
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    im = Image.open(io.BytesIO(data))
    im.load()
    assert im.format == "PNG" and im.width >= min_w and im.height >= min_h
    rgb = np.asarray(im.convert("RGB"))
    px = rgb.astype(np.float64)
    assert px.std() > 15, "image is nearly uniform"
    colours = len(np.unique(rgb[..., 0].astype(np.uint32) << 16 | rgb[..., 1].astype(np.uint32) << 8 | rgb[..., 2]))
    assert colours > 60, f"only {colours} distinct colours"
    assert (px < 250).any(axis=2).mean() > 0.02, "almost nothing drawn"


@pytest.fixture
def scores(tmp_path):
    truth = make_scores(tmp_path / "scores")
    return tmp_path / "scores", truth


# --------------------------------------------------------------------------- hand-worked math

def test_wilson_interval_by_hand():
    # p = 0.5, n = 10, z = 1.96: centre 0.5, half = 1.96 * sqrt(0.025 + 0.0096) / 1.38416 = 0.26340.
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.23659, abs=1e-4) and hi == pytest.approx(0.76341, abs=1e-4)
    # 0 of 4: centre = half = (1.96^2 / 8) / (1 + 1.96^2 / 4) = 0.48020 / 1.96040 = 0.24495.
    lo, hi = wilson_interval(0, 4)
    assert lo == 0.0 and hi == pytest.approx(0.48990, abs=1e-4)
    assert all(np.isnan(wilson_interval(0, 0)))
    # All successes: the upper end is 1 exactly (centre + half came to 1 - 1.1e-16 at 6 of 6, and
    # the report's error bars refused the negative length); all failures: the lower end is 0.
    assert wilson_interval(6, 6)[1] == 1.0 and wilson_interval(0, 11)[0] == 0.0
    for n in range(1, 120):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n)


def test_rank_auc_by_hand():
    # Successes score 2 and 4, failures 1 and 3: 3 of the 4 (success, failure) pairs are ordered right.
    assert rank_auc([1, 2, 3, 4], [0, 1, 0, 1]) == 0.75
    assert rank_auc([1, 1], [0, 1]) == 0.5  # a tie counts one half
    assert rank_auc([3, 1, 2], [True, False, False]) == 1.0
    assert rank_auc([1, 2], [1, 1]) is None


def test_calibration_bins_by_hand():
    b = calibration_bins([0.4, 0.1, 0.3, 0.2, 0.9], [1, 0, 1, 0, 1], n_bins=2, min_per_bin=2)
    # Sorted: 0.1(0) 0.2(0) 0.3(1) | 0.4(1) 0.9(1); array_split puts the extra one in the first bin.
    assert b["n"].tolist() == [3, 2] and b["successes"].tolist() == [1, 2]
    assert b["v_mean"].tolist() == pytest.approx([0.2, 0.65])
    assert b["rate"].tolist() == pytest.approx([1 / 3, 1.0])
    assert b["v_lo"].tolist() == pytest.approx([0.1, 0.4]) and b["v_hi"].tolist() == pytest.approx([0.3, 0.9])
    assert len(calibration_bins([0.1, 0.2, 0.3], [0, 1, 1], n_bins=10, min_per_bin=5)) == 1  # never zero bins
    assert len(calibration_bins([], [])) == 0


def test_select_episodes_orders_asked_worst_best(scores):
    import pandas as pd

    eps = pd.read_parquet(scores[0] / S.SCORES_EPISODES_FILE)
    by_ret = eps.sort_values([S.RETURN, S.EPISODE_ID])[S.EPISODE_ID].tolist()
    got = select_episodes(eps, [by_ret[20], by_ret[0]], 3)
    assert got == [(by_ret[20], "asked"), (by_ret[0], "asked, worst #1"), (by_ret[1], "worst #2"),
                   (by_ret[2], "worst #3"), (by_ret[-1], "best #1"), (by_ret[-2], "best #2"),
                   (by_ret[-3], "best #3")]
    # Fewer episodes than 2N: each is shown once, the best list takes what the worst left.
    small = eps.iloc[:4]
    ids = small.sort_values([S.RETURN, S.EPISODE_ID])[S.EPISODE_ID].tolist()
    assert select_episodes(small, None, 3) == [(ids[0], "worst #1"), (ids[1], "worst #2"), (ids[2], "worst #3"),
                                                (ids[3], "best #1")]


# --------------------------------------------------------------------------- the report

def test_report_is_self_contained_with_the_expected_content(scores):
    root, truth = scores
    out = write_report(root, worst_best=2)
    assert out == root / S.REPORT_FILE and out.is_file()
    page = out.read_text(encoding="utf-8")
    # Self-contained: no links out, no file references, no scripts.
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in page and "url(" not in page
    for section in ('id="value"', 'id="advantages"', 'id="calibration"', 'id="episodes"', 'id="warnings"'):
        assert section in page
    pv = truth["summary"]["policy_value"]
    assert f"{pv['estimate']:.3f}" in page and f"[{pv['ci_low']:.3f}, {pv['ci_high']:.3f}]" in page
    assert "critic/td_loss still falling at the last step" in page
    assert "/data/critic" in page and "/data/policy-v2" in page and "/data/store" in page
    for p, d in truth["summary"]["per_policy_id"].items():
        row = re.search(rf"<td[^>]*>{p}</td>.*?</tr>", page).group(0)
        assert f"{d['v_start']['estimate']:.3f}" in row and f"{d['v_start']['ci_low']:.3f}" in row
    # Per-policy table is sorted by estimate, highest first.
    order = [m for m in re.findall(r'<tr><td class="">(pi-v1|pi-v2|human)</td><td class="num">\d+</td>', page)][:3]
    assert order == sorted(truth["summary"]["per_policy_id"],
                           key=lambda p: -truth["summary"]["per_policy_id"][p]["v_start"]["estimate"])
    for src in ("pi-v1", "pi-v2", "human", "human intervention"):
        assert f"<td class=\"\">{src}</td>" in page
    eps = sorted(truth["episodes"], key=lambda d: (d[S.RETURN], d[S.EPISODE_ID]))
    worst, best = eps[0], eps[-1]
    assert worst[S.SUCCESS] is False or worst[S.SUCCESS] is None
    panel = page[page.index(f'<h3 id="ep-1">{worst[S.EPISODE_ID]} <span class="why">worst #1</span>'):]
    panel = panel[:panel.index("</section>")]
    assert f"return <b>{worst[S.RETURN]:.3f}</b>" in panel and f"V at start <b>{worst[S.V_START]:.3f}</b>" in panel
    assert f"policy_id <b>{worst[S.POLICY_ID]}</b>" in panel and worst[S.TASK] in panel
    # Its critical chunk (the failure frame) is listed with its frame and advantage.
    assert worst[S.CRITICAL_FRAMES], "a failed episode in the test data has a critical chunk"
    f = worst[S.CRITICAL_FRAMES][0]
    assert re.search(rf'<td class="num">{f}</td><td class="num">{worst[S.ADV_MIN]:+.3f}</td>', panel)
    assert f'{best[S.EPISODE_ID]} <span class="why">best #1</span>' in page
    assert page.count('<section class="panel">') == 4


def test_every_image_is_a_valid_nontrivial_png_written_beside_the_page(scores):
    root, _ = scores
    out = write_report(root, worst_best=1, episode_ids=["ep-0007"])
    page = out.read_text(encoding="utf-8")
    embedded = data_uris(page)
    files = sorted(root.glob("report-*.png"))
    assert len(embedded) == len(files) == 3 + 3  # value, advantages, calibration, 3 episode panels
    assert sorted(p.read_bytes() for p in files) == sorted(embedded)
    for data in embedded:
        assert_nontrivial_png(data)
    assert 'ep-0007 <span class="why">asked' in page


def test_rewrite_replaces_stale_images(scores):
    root, _ = scores
    write_report(root, worst_best=2)
    assert len(list(root.glob("report-episode-*.png"))) == 4
    write_report(root, worst_best=1)
    assert len(list(root.glob("report-episode-*.png"))) == 2
    assert not list(root.glob(".*.tmp"))


def test_malicious_task_name_is_escaped(tmp_path):
    evil = '<script>alert("x")</script> & <img src=x onerror=1> $\\alpha$ costs $5'
    root = tmp_path / "s"
    pid = "pi<b>$\\nosuchmacro$"  # unescaped, matplotlib's mathtext would fail on this label
    make_scores(root, n=12, tasks=(evil,), policies=(pid, "human"), warnings=("<b>bold</b> warning",))
    page = write_report(root, worst_best=1).read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page and "<b>bold" not in page and "pi<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img src=x onerror=1&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; warning" in page and "pi&lt;b&gt;$\\nosuchmacro$" in page
    for data in data_uris(page):  # matplotlib drew the "$" text literally instead of failing on mathtext
        assert_nontrivial_png(data)


def test_unlabelled_and_chunkless_episodes_still_report(tmp_path):
    root = tmp_path / "s"
    make_scores(root, n=6, warnings=())
    t = pq.read_table(root / S.SCORES_EPISODES_FILE)
    t = t.set_column(t.schema.get_field_index(S.SUCCESS), S.SUCCESS, pa.array([None] * 6, pa.bool_()))
    pq.write_table(t, root / S.SCORES_EPISODES_FILE)
    c = pq.read_table(root / S.SCORES_CHUNKS_FILE)
    pq.write_table(c.filter(pa.compute.not_equal(c[S.EPISODE_ID], "ep-0000")), root / S.SCORES_CHUNKS_FILE)
    page = write_report(root, episode_ids=["ep-0000"], worst_best=1).read_text(encoding="utf-8")
    assert "No episode has both a success label and a V at start" in page
    assert not (root / "report-calibration.png").exists() and len(data_uris(page)) == 2 + 3
    assert 'id="warnings"' not in page and "0 labelled episodes" in page
    assert '<span class="badge unknown">unknown</span>' in page
    for data in data_uris(page):
        assert_nontrivial_png(data, min_h=100)


# --------------------------------------------------------------------------- bad input

def _corrupt(root: Path, case: str) -> tuple[Path, str, str | None]:
    """Damage a scores directory one way; returns (file, field, message) the error must name."""
    chunks, episodes, summary = (root / S.SCORES_CHUNKS_FILE, root / S.SCORES_EPISODES_FILE,
                                 root / S.SCORES_SUMMARY_FILE)
    if case == "no chunks":
        chunks.unlink()
        return chunks, None, "no such file; run `aloe score` to write it"
    if case == "garbled chunks":
        chunks.write_bytes(b"PAR1 this is not parquet at all" * 10)
        return chunks, None, "not a readable Parquet file ("
    if case == "missing column":
        t = pq.read_table(chunks)
        pq.write_table(t.drop_columns([S.ADVANTAGE]), chunks)
        return chunks, S.ADVANTAGE, "missing column"
    if case == "wrong type":
        t = pq.read_table(episodes)
        i = t.schema.get_field_index(S.RETURN)
        pq.write_table(t.set_column(i, S.RETURN, pa.array(["bad"] * len(t))), episodes)
        return episodes, S.RETURN, "expected number, got string"
    if case == "bad spans":
        t = pq.read_table(episodes)
        spans = t[S.INTERVENTION_SPANS].to_pylist()
        spans[3] = [[10, 4]]
        i = t.schema.get_field_index(S.INTERVENTION_SPANS)
        pq.write_table(t.set_column(i, S.INTERVENTION_SPANS, pa.array(spans, pa.list_(pa.list_(pa.int64())))),
                       episodes)
        return episodes, S.INTERVENTION_SPANS, "episode 'ep-0003' has span [10, 4], not [start, end)"
    if case == "duplicate id":
        t = pq.read_table(episodes)
        pq.write_table(pa.concat_tables([t, t.slice(2, 1)]), episodes)
        return episodes, S.EPISODE_ID, "episode 'ep-0002' appears twice"
    if case == "summary not json":
        summary.write_text('{"policy_value": {"estimate": 0.1,,}')
        return summary, None, "not valid JSON (Expecting property name enclosed in double quotes at line 1 column 35)"
    if case == "summary missing ci":
        d = json.loads(summary.read_text())
        del d["policy_value"]["ci_low"]
        summary.write_text(json.dumps(d))
        return summary, "policy_value.ci_low", "missing"
    if case == "summary bad success rate":
        d = json.loads(summary.read_text())
        d["per_policy_id"]["pi-v1"]["success_rate"] = "high"
        summary.write_text(json.dumps(d))
        return summary, "per_policy_id.pi-v1.success_rate", "expected a number or null, got 'high'"
    raise ValueError(case)


@pytest.mark.parametrize("case", ["no chunks", "garbled chunks", "missing column", "wrong type", "bad spans",
                                  "duplicate id", "summary not json", "summary missing ci",
                                  "summary bad success rate"])
def test_bad_scores_name_file_and_field_and_write_nothing(tmp_path, case):
    root = tmp_path / "s"
    make_scores(root, n=9)
    path, field, message = _corrupt(root, case)
    with pytest.raises(BadInput) as e:
        write_report(root)
    expected = ": ".join([str(path)] + ([field] if field else []) + [message])
    if message.endswith("("):
        assert str(e.value).startswith(expected)
    else:
        assert str(e.value) == expected
    assert not (root / S.REPORT_FILE).exists() and not list(root.glob("report-*.png"))


def test_bad_options(scores):
    root, _ = scores
    with pytest.raises(BadInput) as e:
        write_report(root, episode_ids=["nope"])
    assert str(e.value) == f"{root / S.SCORES_EPISODES_FILE}: episode_id: episode 'nope' is not in the scores"
    with pytest.raises(BadInput) as e:
        write_report(root, worst_best=MAX_WORST_BEST + 1)
    assert str(e.value) == f"--worst-best: {MAX_WORST_BEST + 1} is not an integer from 0 to {MAX_WORST_BEST}"
    with pytest.raises(BadInput) as e:
        write_report(root, episode_ids=[f"ep-{i:04d}" for i in range(MAX_ASKED + 1)])
    assert str(e.value) == f"--episode: {MAX_ASKED + 1} episodes asked; at most {MAX_ASKED}"
    with pytest.raises(BadInput) as e:
        write_report(root / "missing")
    assert str(e.value) == f"{root / 'missing'}: no such directory; run `aloe score` to write it"
    store = root.parent / "store"
    store.mkdir()
    (store / S.MANIFEST_FILE).write_text("{}")  # a store's marker: report says what it is, not a missing column
    with pytest.raises(BadInput) as e:
        write_report(store)
    assert str(e.value) == f"{store}: is an aloe store directory, not scores; run `aloe score` and pass its --out"


# --------------------------------------------------------------------------- the CLI

def test_cli_report(cli, scores):
    root, truth = scores
    r = cli("report", root, "--episode", "ep-0005", "--episode", "ep-0009", "--worst-best", "1")
    assert r.exit_code == 0, r
    assert r.stdout.strip() == str(root / S.REPORT_FILE)
    page = (root / S.REPORT_FILE).read_text(encoding="utf-8")
    assert page.count('<section class="panel">') == 4
    r = cli("report", root, "--episode", "ep-0005", "--worst-best", "0")
    assert r.exit_code == 0, r
    page = (root / S.REPORT_FILE).read_text(encoding="utf-8")
    assert page.count('<section class="panel">') == 1 and "The episodes asked for (1 of 40)" in page
    assert sorted(p.name for p in root.glob("report-*.png")) == [
        "report-advantages.png", "report-calibration.png", "report-episode-01.png", "report-value.png"]
    r = cli("report", root, "--episode", "ghost")
    assert r.exit_code == 2
    where = root / S.SCORES_EPISODES_FILE
    assert r.stderr.strip() == f"Error: {where}: episode_id: episode 'ghost' is not in the scores"
    r = cli("report", "--help")
    assert r.exit_code == 0 and "Example: aloe report" in r.stdout


# --------------------------------------------------------------------------- slow: speed and a real browser

@pytest.mark.slow
def test_two_hundred_episodes_take_seconds(tmp_path):
    root = tmp_path / "s"
    make_scores(root, n=200, seed=3)
    t0 = time.perf_counter()
    write_report(root)
    assert time.perf_counter() - t0 < 20


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium package")
def test_renders_in_headless_chromium(scores, tmp_path):
    from PIL import Image

    root, _ = scores
    out = write_report(root, worst_best=2)
    shot = tmp_path / "shot.png"
    r = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
         "--hide-scrollbars", out.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.is_file(), r.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert px.shape[:2] == (2000, 1280)
    assert px.std() > 20, "the screenshot is blank"
    assert (px < 200).any(axis=2).mean() > 0.03, "hardly anything is drawn"
    # The embedded images rendered: the advantage histograms' and panels' colours are on screen.
    rgb = px.astype(np.uint32)
    assert len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])) > 500


def test_many_critical_chunks_are_capped_in_the_listing(tmp_path):
    from aloe_cli.report import MAX_CRITICAL_LISTED

    root = tmp_path / "s"
    make_scores(root, n=6, warnings=())
    t = pq.read_table(root / S.SCORES_EPISODES_FILE)
    crit = t[S.CRITICAL_FRAMES].to_pylist()
    length = t[S.LENGTH].to_pylist()[0]
    crit[0] = list(range(0, length))  # every chunk of ep-0000 marked critical
    i = t.schema.get_field_index(S.CRITICAL_FRAMES)
    t = t.set_column(i, S.CRITICAL_FRAMES, pa.array(crit, pa.list_(pa.int64())))
    pq.write_table(t, root / S.SCORES_EPISODES_FILE)
    page = write_report(root, episode_ids=["ep-0000"], worst_best=0).read_text(encoding="utf-8")
    assert f"(the {MAX_CRITICAL_LISTED} most negative of {length})" in page
    panel = page[page.index('<section class="panel">'):]
    listed = [int(f) for f in re.findall(r'<tr><td class="num">(\d+)</td><td class="num">[+-]', panel)]
    assert len(listed) == MAX_CRITICAL_LISTED and listed == sorted(listed)
    c = pq.read_table(root / S.SCORES_CHUNKS_FILE).to_pandas()
    c = c[c[S.EPISODE_ID] == "ep-0000"].sort_values(S.ADVANTAGE)
    assert set(listed) == set(c[S.FRAME_INDEX].iloc[:MAX_CRITICAL_LISTED])


def test_advantage_table_counts_finite_advantages_only():
    """Without V (no policy) a chunk's advantage is NaN: it counts toward neither the chunks nor
    the share above 0 (a third of NaN showed 33% above 0 where the finite share was 50%)."""
    import numpy as np
    import pandas as pd

    from aloe_cli import schema as S
    from aloe_cli.report import advantage_table

    chunks = pd.DataFrame({S.ADVANTAGE: [0.2, -0.1, np.nan, 0.3, -0.2, np.nan]})
    t = advantage_table(chunks, pd.Series(["a", "a", "a", "a", "b", "b"]))
    assert t.loc["a", "chunks"] == 3 and t.loc["a", "positive"] == 2 / 3
    assert t.loc["b", "chunks"] == 1 and t.loc["b", "positive"] == 0.0
    none = advantage_table(pd.DataFrame({S.ADVANTAGE: [np.nan, np.nan]}), pd.Series(["a", "a"]))
    assert none.loc["a", "chunks"] == 0 and np.isnan(none.loc["a", "positive"])
