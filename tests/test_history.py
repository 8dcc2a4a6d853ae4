"""A long-span source through the real quickstart path: decades of ratings become one history
partition plus daily partitions for the held-out period, every rating lands in exactly one
partition (no calendar day with data is lost), models train on the whole history, and running
the quickstart again changes nothing."""

import json
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from recsys_assets import quickstart
from recsys_assets.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_ml32m as release  # noqa: E402

pytestmark = pytest.mark.slow  # the quickstart end to end

TABLES = ("raw_events", "raw_watch_stats", "interactions", "quarantine")


def _counts(root: Path) -> dict:
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        counts["partitions"] = con.execute("SELECT count(DISTINCT day) FROM interactions").fetchone()[0]
        counts["days_with_ratings"] = con.execute(
            "SELECT count(DISTINCT CAST(timezone('UTC', occurred_at) AS DATE)) FROM raw_events"
        ).fetchone()[0]
        counts["recall_days"] = sorted(
            str(d) for (d,) in con.execute("SELECT DISTINCT day FROM recall_evaluation").fetchall()
        )
        return counts
    finally:
        con.close()


def test_decades_of_ratings_run_through_the_quickstart(tmp_path, monkeypatch, capsys):
    generated = release.write_release(tmp_path / "ml", 4_000, seed=3)
    root = tmp_path / "data"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    argv = ["--source", "movielens", "--source-path", str(tmp_path / "ml"), "--data-root", str(root)]
    assert quickstart.main([*argv, "--model-days", "1", "--last-days", "5"]) == 0
    out = capsys.readouterr().out

    settings = Settings.load(environ={}, data_root=str(root), daily_partitions=5)
    first, last = date.fromisoformat(settings.history_start), date.fromisoformat(settings.start_date)
    assert (last - first).days > 20 * 365  # decades in one history partition
    assert settings.recall.window_days is None and "models train on the whole history" in out
    assert "history partition" in out and "[1/" in out  # progress per phase

    counts = _counts(root)
    bad = len(release.BAD_LINES)
    # every rating is loaded once, the documented bad lines are quarantined: nothing lost
    assert counts["raw_events"] == counts["raw_watch_stats"] == generated["ratings"]
    assert counts["quarantine"] == 2 * bad  # each bad line breaks the contract of its event and its watch
    assert counts["days_with_ratings"] == generated["days_with_ratings"]
    assert counts["partitions"] <= 6  # the history partition and at most 5 days, not ~10,000
    # the models of the last day trained on everything before it, the first rating included
    assert counts["recall_days"] == [release_last_day(root)]
    # a sequence of the days after the history partition holds the positives of the 28 days
    # before its day by their own time, not the history's years under its one partition day
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    positions, too_old = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE CAST(timezone('UTC', t) AS DATE) < day - 28) "
        "FROM (SELECT day, unnest(event_ats) AS t FROM user_sequences)"
    ).fetchone()
    # the history partition's daily stats are dated by the events' own days: the 28-day
    # features of the day after it count the positives of its last 28 days, not the history's
    stats_days = con.execute("SELECT count(DISTINCT day) FROM user_daily_stats").fetchone()[0]
    after = (last + timedelta(days=1)).isoformat()
    features_28d, truth_28d = con.execute(
        f"SELECT (SELECT sum(positives_28d) FROM user_features WHERE day = DATE '{after}'), "
        "(SELECT count(*) FROM interactions WHERE is_positive AND "
        f"CAST(timezone('UTC', event_at) AS DATE) BETWEEN DATE '{after}' - 28 AND DATE '{after}' - 1)"
    ).fetchone()
    con.close()
    assert too_old == 0 and positions <= counts["raw_events"] / 10
    assert stats_days > 100 and features_28d == truth_28d > 0

    assert quickstart.main([*argv, "--model-days", "1", "--last-days", "5"]) == 0  # again: idempotent
    assert _counts(root) == counts


def release_last_day(root: Path) -> str:
    return json.loads((root / "SOURCE.json").read_text())["last_day"]
