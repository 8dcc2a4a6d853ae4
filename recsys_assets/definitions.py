"""The one Definitions object of the platform: assets by layer, their checks, jobs, resources."""

import dagster as dg

from recsys_assets import automation
from recsys_assets.assets.dictionaries import dictionary_assets
from recsys_assets.assets.drift import drift_assets, drift_checks
from recsys_assets.assets.evaluation import evaluation_assets, evaluation_checks
from recsys_assets.assets.features import feature_assets
from recsys_assets.assets.ranking import ranking_assets, ranking_checks
from recsys_assets.assets.raw import log_assets, raw_assets
from recsys_assets.assets.recall import model_assets, model_checks
from recsys_assets.assets.recommendations import serving_assets
from recsys_assets.assets.serving_index import ann_recall_check, recall_ann_index
from recsys_assets.checks.feature_checks import feature_checks
from recsys_assets.checks.raw_checks import raw_checks
from recsys_assets.executors import executor_from_env
from resources import (
    AutomationSettings,
    FeatureSettings,
    IngestionSettings,
    LandingZoneResource,
    ModelStoreResource,
    RankingSettings,
    RecallSettings,
    StorageResource,
    WarehouseResource,
)


def build_resources(
    data_root: str | None = None,
    landing_root: str | None = None,
    ingestion: IngestionSettings | None = None,
    ranking: RankingSettings | None = None,
    recall: RecallSettings | None = None,
) -> dict:
    """Resources from the environment, or rooted at explicit folders (tests, scripts)."""
    storage = StorageResource(data_root=data_root) if data_root else StorageResource()
    landing = (
        LandingZoneResource(landing_root=landing_root)
        if landing_root
        else (LandingZoneResource(landing_root=str(storage.root / "landing")) if data_root else LandingZoneResource())
    )
    return {
        "storage": storage,
        "landing": landing,
        "warehouse": WarehouseResource(storage=storage),
        "ingestion": ingestion or IngestionSettings(),
        "features": FeatureSettings(),
        "model_store": ModelStoreResource(models_root=str(storage.root / "models")),
        "recall": recall or RecallSettings(),
        "ranking": ranking or RankingSettings(),
        "automation": AutomationSettings(),
    }


ingest_raw_logs = dg.define_asset_job(
    "ingest_raw_logs",
    selection=dg.AssetSelection.assets(*log_assets),
    description="Validate one day of landing logs into the raw Parquet partitions (with quarantine).",
)

ALL_ASSETS = (
    raw_assets
    + feature_assets
    + dictionary_assets
    + drift_assets
    + list(model_assets.values())
    + evaluation_assets
    + [recall_ann_index]
    + ranking_assets
    + serving_assets
)
ALL_CHECKS = (
    raw_checks + feature_checks + drift_checks + model_checks + evaluation_checks + [ann_recall_check] + ranking_checks
)


def build_defs(resources: dict | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[ingest_raw_logs, *automation.jobs],
        schedules=automation.schedules,
        sensors=automation.sensors,
        resources=resources or build_resources(),
        executor=executor_from_env(),
    )


defs = build_defs()
