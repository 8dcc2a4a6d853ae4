"""Sensors and schedule evaluated with Dagster's test contexts, and the retraining path run
end to end: new landing days are requested once (late days too, nothing twice across a
restart); retraining is requested for new feature days and for drift, within a minimum
interval."""

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from recsys_assets import automation
from recsys_assets.core.generator import GeneratorConfig, generate
from recsys_assets.definitions import build_defs, build_resources
from recsys_assets.partitions import daily_partitions
from recsys_assets.quickstart import materialize_all
from recsys_assets.settings import Settings
from resources import AutomationSettings, FeatureSettings, LandingZoneResource, StorageResource

_, (daily_refresh_schedule,), (landing_sensor, retrain_sensor, _) = automation.build(
    daily_partitions(Settings().start_date), Settings()
)


def evaluate(sensor, cursor=None, **resources):
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        result = sensor(context)
    return result, result.cursor


def test_landing_sensor_requests_each_complete_day_once(tmp_path):
    landing = tmp_path / "landing"
    for day in ("2026-01-01", "2026-01-02"):
        (landing / day).mkdir(parents=True)
        (landing / day / "_SUCCESS").touch()
    (landing / "2026-01-04").mkdir()  # incomplete: one file, no marker
    (landing / "2026-01-04" / "impressions.jsonl").touch()
    res = {"landing": LandingZoneResource(landing_root=str(landing))}

    result, cursor = evaluate(landing_sensor, **res)
    assert [r.partition_key for r in result.run_requests] == ["2026-01-01", "2026-01-02"]
    assert result.run_requests[0].run_key == "landing-2026-01-01"

    again, cursor = evaluate(landing_sensor, cursor, **res)  # e.g. after a restart: same cursor
    assert again.run_requests == [] and again.skip_reason

    for f in ("events.jsonl", "watch_stats.jsonl"):  # day 4 completes by its files; day 3 lands late
        (landing / "2026-01-04" / f).touch()
    (landing / "2026-01-03").mkdir()
    (landing / "2026-01-03" / "_SUCCESS").touch()
    late, cursor = evaluate(landing_sensor, cursor, **res)
    assert [r.partition_key for r in late.run_requests] == ["2026-01-03", "2026-01-04"]
    assert json.loads(cursor)["requested"] == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]


def test_daily_schedule_targets_yesterday():
    context = dg.build_schedule_context(
        scheduled_execution_time=__import__("datetime").datetime(
            2026, 1, 10, 1, 0, tzinfo=__import__("datetime").timezone.utc
        )
    )
    (request,) = list(daily_refresh_schedule.evaluate_tick(context).run_requests)
    assert request.partition_key == "2026-01-09"


@pytest.fixture(scope="module")
def drifted(tmp_path_factory) -> Path:
    """5 days of data with a genre shift from day 4, features and drift materialized."""
    root = tmp_path_factory.mktemp("auto")
    generate(
        GeneratorConfig(
            n_users=600,
            n_items=300,
            days=5,
            impressions_per_day=12_000,
            seed=3,
            shift_date="2026-01-04",
            shift_kind="genre",
        ),
        root,
    )
    materialize_all(
        build_defs(resources=build_resources(str(root))),
        [f"2026-01-0{i}" for i in range(1, 6)],
        dg.DagsterInstance.ephemeral(),
        model_days=0,
    )
    return root


@pytest.mark.slow
def test_retrain_sensor_new_data_drift_and_minimum_interval(drifted):
    res = {
        "storage": StorageResource(data_root=str(drifted)),
        "features": FeatureSettings(),
        "automation": AutomationSettings(retrain_min_interval_hours=6.0),
    }
    first, cursor = evaluate(retrain_sensor, **res)
    (request,) = first.run_requests
    assert request.tags["trigger"] == "drift" and request.partition_key in ("2026-01-04", "2026-01-05")

    storm, _ = evaluate(retrain_sensor, cursor, **res)  # right after: the minimum interval holds it back
    assert storm.run_requests == [] and "next allowed" in str(storm.skip_reason)

    no_wait = dict(res, automation=AutomationSettings(retrain_min_interval_hours=0.0))
    later, cursor = evaluate(retrain_sensor, cursor, **no_wait)
    (second,) = later.run_requests
    assert second.partition_key != request.partition_key
    requested = {request.partition_key, second.partition_key}
    for _ in range(5):  # drain: every feature day gets trained once, then nothing more
        nxt, cursor = evaluate(retrain_sensor, cursor, **no_wait)
        requested |= {r.partition_key for r in nxt.run_requests}
        if not nxt.run_requests:
            break
    assert requested == {"2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"}
    assert nxt.run_requests == []


@pytest.mark.slow
def test_a_drift_triggered_request_retrains_end_to_end(drifted, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(drifted, root)
    res = {
        "storage": StorageResource(data_root=str(root)),
        "features": FeatureSettings(),
        "automation": AutomationSettings(),
    }
    result, _ = evaluate(retrain_sensor, **res)
    (request,) = result.run_requests
    defs = build_defs(resources=build_resources(str(root)))
    run = defs.resolve_job_def("retrain_models").execute_in_process(
        partition_key=request.partition_key, tags=request.tags, instance=dg.DagsterInstance.ephemeral()
    )
    assert run.success
    store = build_resources(str(root))["model_store"]
    assert store.exists("recall_als", request.partition_key)
    assert (root / "lake/recall_champion" / f"{request.partition_key}.parquet").exists()


@pytest.mark.slow
def test_drift_report_emits_column_schema_row_count_and_worst_features(drifted):
    import pyarrow.parquet as pq

    day = "2026-01-04"  # the first shifted day
    defs = build_defs(resources=build_resources(str(drifted)))
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=day,
        asset_selection=[dg.AssetKey("feature_drift_report")],
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    report = pq.read_table(drifted / "lake/feature_drift_report" / f"{day}.parquet")
    assert meta["dagster/row_count"].value == report.num_rows > 0
    assert [c.name for c in meta["dagster/column_schema"].schema.columns] == report.column_names
    worst = [r.data for r in meta["worst_features"].records]
    assert 0 < len(worst) <= 10
    assert worst[0]["psi"] == pytest.approx(meta["worst_psi"].value, abs=1e-4)  # the preview starts with the worst
    best_in_file = max(p for p in report.column("psi").to_pylist() if p is not None)
    assert worst[0]["psi"] == pytest.approx(best_in_file, abs=1e-4)


def test_landing_sensor_requests_a_redelivered_day_again(tmp_path):
    """A day whose files are delivered again (other content) is requested again, under a new
    run key, so it is re-ingested and the job refreshes what it builds on it; an untouched day
    is not. A cursor written before fingerprints existed requests nothing again."""
    import os

    landing = tmp_path / "landing"
    for day in ("2026-01-01", "2026-01-02"):
        (landing / day).mkdir(parents=True)
        (landing / day / "impressions.jsonl").write_text('{"impression_id": 1}\n')
        (landing / day / "_SUCCESS").touch()
    res = {"landing": LandingZoneResource(landing_root=str(landing))}
    first, cursor = evaluate(landing_sensor, **res)
    assert [r.partition_key for r in first.run_requests] == ["2026-01-01", "2026-01-02"]

    redelivered = landing / "2026-01-02" / "impressions.jsonl"
    redelivered.write_text('{"impression_id": 1}\n{"impression_id": 2}\n')
    os.utime(redelivered, ns=(10**18, 10**18))  # a later delivery, whatever the clock's resolution
    again, cursor = evaluate(landing_sensor, cursor, **res)
    (request,) = again.run_requests
    assert request.partition_key == "2026-01-02" and request.tags["trigger"] == "landing_redelivery"
    assert request.run_key.startswith("landing-2026-01-02-") and request.run_key != "landing-2026-01-02"
    quiet, cursor = evaluate(landing_sensor, cursor, **res)
    assert quiet.run_requests == [] and quiet.skip_reason

    old_cursor = json.dumps({"requested": ["2026-01-01", "2026-01-02"]})  # before fingerprints
    upgraded, cursor = evaluate(landing_sensor, old_cursor, **res)
    assert upgraded.run_requests == [] and set(json.loads(cursor)["fingerprints"]) == {"2026-01-01", "2026-01-02"}
