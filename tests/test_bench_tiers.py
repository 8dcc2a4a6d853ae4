"""Smoke test of the scale-tier harness (benchmarks/bench_tiers.py) on a tiny tier, so the
benchmark cannot rot: every asset of the graph runs and gets a measured row."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_assets.definitions import build_defs, build_resources

pytestmark = pytest.mark.slow  # the tier harness in a subprocess

ROOT = Path(__file__).resolve().parents[1]


def test_tier_harness_measures_every_asset(tmp_path):
    data = tmp_path / "xs"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_tiers.py"),
        "--tier",
        "XS",
        "--data-root",
        str(data),
        "--model-days",
        "2",
        "--no-record",
    ]
    first = subprocess.run(cmd + ["--until", "user_id_dictionary"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    rest = subprocess.run(cmd + ["--from", "recall_training_data"], capture_output=True, text=True, timeout=600)
    assert rest.returncode == 0, rest.stdout[-2000:] + rest.stderr[-3000:]
    rows = [json.loads(line) for line in (data / "bench_tiers_rows.jsonl").read_text().splitlines()]
    graph = build_defs(resources=build_resources(str(data))).resolve_asset_graph()
    assert [r["asset"] for r in rows] == [
        k.to_user_string() for k in graph.toposorted_asset_keys
    ]  # two slices, one table
    assert all(r["wall_s"] > 0 and r["peak_rss_mib"] > 50 and r["cpu_s"] >= 0 for r in rows)
    by_asset = {r["asset"]: r for r in rows}
    assert by_asset["raw_impressions"]["rows_out"] == 4 * 3_000 and by_asset["raw_impressions"]["days"] == 4
    assert by_asset["recall_als"]["days"] == 2  # model groups run for the last --model-days days
    # only the served (last) day needs a whole day's candidates; the first model day's ranking
    # samples compute their users' lists
    assert by_asset["recall_candidates"]["rows_out"] > 0 and by_asset["recall_candidates"]["days"] == 1
    assert by_asset["ranking_samples"]["days"] == 2 and by_asset["ranking_samples"]["rows_out"] > 0
    assert not (data / "lake" / "recall_candidates" / "2026-01-03.parquet").exists()
    assert (data / "lake" / "recall_candidates" / "2026-01-04.parquet").exists()
    assert (data / "lake" / "ranking_samples" / "2026-01-03.parquet").exists()
    assert "tier XS:" in rest.stdout and "peak RSS" in rest.stdout
    # --only re-measures just the named assets (what a change touched), appending their rows
    again = subprocess.run(cmd + ["--only", "recommendations"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    more = [json.loads(line) for line in (data / "bench_tiers_rows.jsonl").read_text().splitlines()][len(rows) :]
    assert [r["asset"] for r in more] == ["recommendations"] and more[0]["days"] == 1
    # the online-latency benchmark runs on the same root: p50/p95 for every stage
    online = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_online.py"),
            "--data-root",
            str(data),
            "--known",
            "5",
            "--unknown",
            "2",
            "--no-record",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert online.returncode == 0, online.stdout[-2000:] + online.stderr[-3000:]
    assert "total / recall alone at p50" in online.stdout and "recall " in online.stdout
