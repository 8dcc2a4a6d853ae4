"""Jobs people launch, the daily schedule, and the sensors that run the platform by itself:
new landing days are ingested, and models are retrained when new features land or drift
appears, never more often than AutomationSettings.retrain_min_interval_hours."""

import json
import time

import dagster as dg

from recsys_assets.core.storage import duckdb_connect
from recsys_assets.instance import fail_dead_runs
from recsys_assets.services.backtest import quality_drop
from recsys_assets.settings import Settings
from resources import AutomationSettings, FeatureSettings, LandingZoneResource, StorageResource


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    """(jobs, schedules, sensors) over `partitions` (first day settings.start_date)."""
    first_day = settings.start_date
    daily_refresh = dg.define_asset_job(
        "daily_refresh",
        selection=dg.AssetSelection.groups("raw_snapshots", "raw", "features", "drift", "dictionaries"),
        partitions_def=partitions,
        description="Ingest one day of landing logs and refresh its features, drift report and dictionaries.",
    )

    retrain_models = dg.define_asset_job(
        "retrain_models",
        selection=dg.AssetSelection.groups("dictionaries", "recall", "evaluation", "ranking", "serving", "report"),
        partitions_def=partitions,
        description="Train every recall model for a day on the window before it, evaluate them on the day, "
        "choose the champion and index it; then the day's ranking samples, ranker, funnel evaluation, "
        "ranker promotion and recommendations, and the day's report.",
    )

    daily_refresh_schedule = dg.build_schedule_from_partitioned_job(
        daily_refresh,
        hour_of_day=1,
        minute_of_hour=0,
        description="At 01:00 UTC, refresh yesterday's partition (for sources that land on a clock, not by file).",
    )

    def _load(cursor: str | None) -> dict:
        return json.loads(cursor) if cursor else {}

    def _partition_keys() -> set[str]:
        return set(partitions.get_partition_keys())

    @dg.sensor(
        job=daily_refresh,
        minimum_interval_seconds=60,
        description="Watches the landing zone; each complete day (a _SUCCESS marker, or all three log files) "
        "is requested once, including days that land late, and again when it is re-delivered (its files' "
        "fingerprint changes), which refreshes the day and what the job builds on it. The cursor remembers "
        "requested days and their fingerprints, so a restart does not request them again.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingZoneResource) -> dg.SensorResult:
        state = _load(context.cursor)
        requested = set(state.get("requested", []))
        fingerprints: dict[str, str] = dict(state.get("fingerprints", {}))
        valid = _partition_keys()
        requests = []
        for day in (d for d in landing.complete_days() if d in valid):
            fingerprint = landing.day_fingerprint(day)
            if day not in requested:
                requests.append(dg.RunRequest(run_key=f"landing-{day}", partition_key=day, tags={"trigger": "landing"}))
            elif day in fingerprints and fingerprints[day] != fingerprint:  # re-delivered
                requests.append(
                    dg.RunRequest(
                        run_key=f"landing-{day}-{fingerprint[:16]}",
                        partition_key=day,
                        tags={"trigger": "landing_redelivery"},
                    )
                )
            # a day requested under an older cursor (no fingerprint yet) is only fingerprinted now
            fingerprints[day] = fingerprint
            requested.add(day)
        return dg.SensorResult(
            run_requests=requests,
            cursor=json.dumps({"requested": sorted(requested), "fingerprints": dict(sorted(fingerprints.items()))}),
            skip_reason=None if requests else dg.SkipReason("no new or re-delivered complete day in the landing zone"),
        )

    def _worst_psi(storage: StorageResource, day: str) -> float | None:
        path = storage.partition_path("feature_drift_report", day)
        if not path.exists():
            return None
        (worst,) = duckdb_connect().execute(f"SELECT max(psi) FROM read_parquet('{path}')").fetchone()
        return worst

    @dg.sensor(
        job=retrain_models,
        minimum_interval_seconds=120,
        description="Requests retrain_models for the newest day whose features are materialized and that has "
        "not been trained yet (reason new_data), or whose drift report reached drift_fail_psi "
        "(reason drift, which also retrains a day already trained), or the newest day when the serving "
        "champion's NDCG@10 fell more than quality_drop_share below its trailing mean (reason quality_drop). "
        "drift and quality_drop also re-tune the tuned models at once. At most one request per "
        "retrain_min_interval_hours.",
    )
    def retrain_sensor(
        context: dg.SensorEvaluationContext,
        storage: StorageResource,
        features: FeatureSettings,
        automation: AutomationSettings,
    ) -> dg.SensorResult:
        state = _load(context.cursor)
        trained = set(state.get("trained", []))
        drift_handled = set(state.get("drift_handled", []))
        last = float(state.get("last_request_ts", 0.0))
        now = time.time()
        feature_days = sorted(
            p.stem for p in (storage.lake_dir / "user_features").glob("*.parquet") if p.stem != first_day
        )  # the first day has nothing before it to train on
        drifted = [
            d
            for d in feature_days
            if d not in drift_handled and (_worst_psi(storage, d) or 0.0) >= features.drift_fail_psi
        ]
        fresh = [d for d in feature_days if d not in trained]
        drop = quality_drop(storage, automation.quality_window_days, automation.quality_drop_share)
        if drop is not None and drop["day"] in state.get("quality_handled", []):
            drop = None
        if not drifted and not fresh and drop is None:
            return dg.SensorResult(skip_reason=dg.SkipReason("no new feature day, no drift, no quality drop"))
        if now - last < automation.retrain_min_interval_hours * 3600:
            wait = automation.retrain_min_interval_hours * 3600 - (now - last)
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"retrained {now - last:.0f}s ago; next allowed in {wait:.0f}s")
            )
        if drifted:
            day, reason = drifted[-1], "drift"
        elif drop is not None and feature_days:
            # the newest day is retrained (and its models re-tuned) before the schedule would
            day, reason = feature_days[-1], "quality_drop"
            context.log.info(
                f"quality drop on {drop['day']}: {drop['champion']} NDCG@10 {drop['value']:.4f} "
                f"vs {drop['trailing_mean']:.4f} over the days before"
            )
        else:
            day, reason = fresh[-1], "new_data"
        request = dg.RunRequest(
            run_key=f"retrain-{day}-{reason}-{int(now)}", partition_key=day, tags={"trigger": reason}
        )
        context.log.info(f"retraining {day} ({reason})")
        return dg.SensorResult(
            run_requests=[request],
            cursor=json.dumps(
                {
                    "trained": sorted(trained | {day}),
                    "drift_handled": sorted(drift_handled | ({day} if reason == "drift" else set())),
                    "quality_handled": sorted(
                        set(state.get("quality_handled", []))
                        | ({drop["day"]} if reason == "quality_drop" and drop else set())
                    ),
                    "last_request_ts": now,
                }
            ),
        )

    @dg.sensor(
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Every minute: a STARTED run whose process is gone (killed, crashed) is marked failed with "
        "the reason, so no run stays STARTED forever (recsys_assets/instance.py fail_dead_runs; runs stored "
        "locally only).",
    )
    def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        failed = fail_dead_runs(context.instance)
        for run_id in failed:
            context.log.warning(f"run {run_id} was STARTED but its process is gone: marked failed")
        return dg.SkipReason(f"marked {len(failed)} dead run(s) failed" if failed else "no dead run")

    return (
        [daily_refresh, retrain_models],
        [daily_refresh_schedule],
        [landing_sensor, retrain_sensor, dead_run_sensor],
    )
