"""What the UI shows per day is that day's: after range runs (the quickstart's, as in built_world),
each partition's materialization metadata equals that day's table, and each partitioned check has
a result recorded for every day it ran on."""

import dagster as dg
import duckdb
import pytest
from conftest import WORLD_DAYS, WORLD_MODEL_DAYS

from recsys_assets.definitions import build_defs, build_resources

pytestmark = pytest.mark.slow  # reads the session's built world


def _metadata(instance: dg.DagsterInstance, asset: str, day: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1
    ).records
    assert records, f"{asset} {day} has no materialization"
    materialization = records[0].asset_materialization
    assert materialization is not None and materialization.partition == day
    return {k: v.value for k, v in materialization.metadata.items()}


def _query(path, sql: str):
    return duckdb.sql(sql.format(src=f"read_parquet('{path}')")).fetchall()


def test_row_counts_are_each_days_own(built_world, built_world_instance):
    storage = build_resources(str(built_world))["storage"]
    counts = {}
    for table in ("raw_impressions", "raw_events", "interactions", "user_features"):
        for day in WORLD_DAYS:
            meta = _metadata(built_world_instance, table, day)
            (rows,) = _query(storage.partition_path(table, day), "SELECT count(*) FROM {src}")[0]
            assert meta["dagster/row_count"] == rows, (table, day)
            counts[table, day] = rows
    # the days differ, so a range-wide or last-day value could not pass the equalities above
    assert len({counts["raw_events", d] for d in WORLD_DAYS}) > 1


def test_worst_psi_is_each_days_own(built_world, built_world_instance):
    storage = build_resources(str(built_world))["storage"]
    seen = set()
    for day in WORLD_DAYS:
        meta = _metadata(built_world_instance, "feature_drift_report", day)
        (worst,) = _query(
            storage.partition_path("feature_drift_report", day),
            "SELECT coalesce(max(psi) FILTER (WHERE isfinite(psi)), 0.0) FROM {src}",
        )[0]
        assert meta["worst_psi"] == pytest.approx(worst), day
        seen.add(round(worst, 9))
    assert len(seen) > 1


def test_ndcg_per_model_is_each_days_own(built_world, built_world_instance):
    storage = build_resources(str(built_world))["storage"]
    values = set()
    for day in WORLD_DAYS[-WORLD_MODEL_DAYS:]:
        meta = _metadata(built_world_instance, "recall_evaluation", day)
        rows = _query(
            storage.partition_path("recall_evaluation", day),
            "SELECT model, value FROM {src} WHERE segment = 'all' AND metric = 'ndcg' AND k = 10",
        )
        assert rows, day
        for model, value in rows:
            assert meta[f"ndcg_at_10_{model}"] == pytest.approx(value), (day, model)
            values.add((model, round(value, 9)))
    assert len(values) > len({m for m, _ in values})  # some model scored differently on different days


def test_every_partitioned_check_has_a_result_for_every_day_it_ran(built_world, built_world_instance):
    graph = build_defs(resources=build_resources(str(built_world))).resolve_asset_graph()
    partitioned = [k for k in graph.asset_check_keys if graph.get(k.asset_key).partitions_def is not None]
    infos = built_world_instance.event_log_storage.get_asset_check_partition_info(partitioned, after_storage_id=None)
    assert infos
    by_key: dict = {}
    for info in infos:
        by_key.setdefault(info.check_key, {})[info.partition_key] = info.latest_execution_status.value
    unresolved = {
        f"{key.to_user_string()} {day}": status
        for key, days in by_key.items()
        for day, status in days.items()
        if status not in ("SUCCEEDED", "FAILED")
    }
    assert unresolved == {}
    drift_days = by_key[dg.AssetCheckKey(dg.AssetKey("feature_drift_report"), "psi_below_thresholds")]
    assert set(drift_days) == set(WORLD_DAYS)


def test_the_day_checks_of_an_asset_run_as_one_step(built_world, built_world_instance):
    """Each raw and feature table's day checks are one step (Dagster's per-step cost is paid once
    per asset, not once per check), yet each check keeps its own key and its own result per day."""
    defs = build_defs(resources=build_resources(str(built_world)))
    steps: dict = {}
    for checks_def in defs.asset_checks or []:
        for key in checks_def.check_keys:
            steps.setdefault(key.asset_key.to_user_string(), {}).setdefault(checks_def.node_def.name, []).append(key)
    for asset in ("raw_events", "raw_impressions", "interactions", "user_daily_stats", "user_features"):
        assert len(steps[asset]) == 1, steps[asset]
    (raw_events_checks,) = steps["raw_events"].values()
    assert {k.name for k in raw_events_checks} >= {"schema", "non_null_keys", "unique_ids", "volume"}
    statuses = built_world_instance.event_log_storage.get_asset_check_partition_info(
        raw_events_checks, after_storage_id=None
    )
    assert {(i.check_key.name, i.partition_key) for i in statuses} == {
        (k.name, day) for k in raw_events_checks for day in WORLD_DAYS
    }
