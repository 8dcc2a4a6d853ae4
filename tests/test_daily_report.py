"""The daily report: a page per model day with real charts, the day's numbers, champion decisions
and recommendations with titles; linked from each partition's metadata."""

import base64
import re
import shutil
import subprocess

import dagster as dg
import duckdb
import pytest
from conftest import WORLD_DAYS, WORLD_MODEL_DAYS

from recsys_assets.definitions import build_resources
from recsys_assets.services.daily_report import build_report

pytestmark = pytest.mark.slow  # reads the session's built world

PNG = b"\x89PNG\r\n\x1a\n"


def _charts(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]


def test_each_model_day_has_a_page_with_its_own_numbers_and_charts(built_world, built_world_instance):
    storage = build_resources(str(built_world))["storage"]
    for day in WORLD_DAYS[-WORLD_MODEL_DAYS + 1 :]:  # days with evaluated models
        path = storage.report_path("daily_report", day)
        page = path.read_text()
        charts = _charts(page)
        # recall today, the trend and drift every model day; the funnel once a ranker exists
        assert len(charts) >= (4 if day == WORLD_DAYS[-1] else 3), day
        assert all(c.startswith(PNG) and len(c) > 5_000 for c in charts), day
        # the day's champion NDCG@10 is in the page's funnel/recall tables or charts' source rows
        (best,) = duckdb.sql(
            f"SELECT max(value) FROM read_parquet('{storage.partition_path('recall_evaluation', day)}') "
            "WHERE segment = 'all' AND metric = 'ndcg' AND k = 10"
        ).fetchall()[0]
        assert best is not None and best > 0
        # recommendations are shown with their titles, not bare ids
        recommended = duckdb.sql(
            f"SELECT i.title FROM read_parquet('{storage.partition_path('recommendations', day)}') r "
            f"JOIN read_parquet('{storage.partition_path('raw_items')}') i USING (item_id) "
            "ORDER BY r.user_id, r.rank LIMIT 1"
        ).fetchall()[0][0]
        assert recommended in page
        assert re.search(r"<td>(because you watched |popular|matches|watched by|often watched|similar in)", page)
        # the partition's metadata links this page
        record = built_world_instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("daily_report"), asset_partitions=[day]), limit=1
        ).records[0]
        meta = record.asset_materialization.metadata
        assert meta["report"].value == path.resolve().as_uri()
        assert meta["charts"].value == len(charts)


def test_a_day_without_evaluations_says_so_instead_of_failing(tmp_path):
    from recsys_assets.services.lake import Lake

    page, summary = build_report(Lake(data_root=str(tmp_path)), "2026-01-05")
    assert summary["charts"] == 0 and summary["recall_models"] == 0
    assert page.count("nothing recorded") >= 4 and not _charts(page)


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)",
)
def test_headless_chromium_renders_the_report(built_world, tmp_path):
    path = build_resources(str(built_world))["storage"].report_path("daily_report", WORLD_DAYS[-1])
    shot = tmp_path / "daily_report.png"
    subprocess.run(
        [
            shutil.which("chromium"),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            path.resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert shot.read_bytes()[:8] == PNG and shot.stat().st_size > 50_000
