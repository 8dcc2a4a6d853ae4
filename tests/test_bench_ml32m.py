"""Smoke test of benchmarks/bench_ml32m.py: generate a tiny ml-32m-format release and adapt
it; the landing zone must hold every generated rating (plus the documented malformed lines)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_ml32m as bench  # noqa: E402


def test_generated_release_adapts_to_matching_landing_counts(tmp_path):
    gen = bench.write_release(tmp_path / "ml", 20_000, seed=5)
    assert gen["ratings"] == 20_000 and gen["users"] >= 50 and gen["tags"] > 0
    header = (tmp_path / "ml" / "ratings.csv").open().readline().strip()
    assert header == "userId,movieId,rating,timestamp"
    assert (tmp_path / "ml" / "movies.csv").open().readline().strip() == "movieId,title,genres"
    assert '"' in (tmp_path / "ml" / "movies.csv").read_text()  # titles with commas are quoted

    a = bench.adapt(tmp_path / "ml", tmp_path / "root")
    m = a["manifest"]
    bad = len(bench.BAD_LINES)
    assert m["ratings"] == gen["ratings"] and m["positives"] == gen["positives"]
    assert m["malformed_lines"] == {"ratings.csv": bad}
    landing = tmp_path / "root" / "landing"
    events = sum(1 for p in landing.glob("*/events.jsonl") for _ in p.open())
    watches = sum(1 for p in landing.glob("*/watch_stats.jsonl") for _ in p.open())
    assert events == watches == gen["ratings"] + bad  # bad lines land as contract-breaking records
    assert sum(1 for _ in (landing / "_adapter_rejects.jsonl").open()) == bad
    assert m["days"] == len([p for p in landing.iterdir() if p.is_dir()]) >= gen["days_with_ratings"]
    assert sum(1 for _ in (landing / "items.jsonl").open()) == gen["movies"]
    assert json.loads((tmp_path / "root" / "SOURCE.json").read_text())["source"] == "movielens"
    assert a["landing_bytes"] > 0
