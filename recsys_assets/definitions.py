"""The Definitions of the platform: assets by layer, their checks, jobs, sensors, resources.

Nothing here runs at import: `defs` is built when Dagster loads the code location (or a test or
script calls build_defs), from one Settings object (recsys_assets/settings.py).
"""

import warnings

import dagster as dg

from recsys_assets import automation
from recsys_assets.assets import dictionaries, drift, evaluation, features, ranking, raw, recall, report, serving
from recsys_assets.checks import feature_checks, raw_checks
from recsys_assets.executors import executor_for
from recsys_assets.partitions import daily_partitions
from recsys_assets.settings import Settings
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

# Each layer module builds its assets and checks over the partitions: assets/<layer>.py holds the
# assets of group and layer <layer> (tests/test_asset_catalog.py holds the rule).
LAYERS = (raw, features, dictionaries, drift, recall, evaluation, ranking, serving, report)
CHECKS = (raw_checks, feature_checks)


def build_resources(
    data_root: str | None = None,
    landing_root: str | None = None,
    ingestion: IngestionSettings | None = None,
    ranking: RankingSettings | None = None,
    recall: RecallSettings | None = None,
    settings: Settings | None = None,
) -> dict:
    """The Dagster resources of `settings` (default Settings.load()), or rooted at explicit
    folders with explicit layer settings (tests, scripts)."""
    if settings is None:
        settings = Settings.load(
            **({"data_root": data_root} if data_root else {}),
            **({"landing_root": landing_root} if landing_root else {}),
        )
    elif data_root or landing_root:
        settings = settings.model_copy(
            update={"data_root": data_root or settings.data_root, "landing_root": landing_root or settings.landing_root}
        )
    storage = StorageResource(data_root=settings.data_root)
    return {
        "storage": storage,
        "landing": LandingZoneResource(landing_root=settings.landing),
        "warehouse": WarehouseResource(storage=storage),
        "ingestion": ingestion or IngestionSettings(**settings.ingestion.model_dump()),
        "features": FeatureSettings(**settings.features.model_dump()),
        "model_store": ModelStoreResource(models_root=settings.models_root, cache_dir=settings.model_cache),
        "recall": recall or RecallSettings(**settings.recall.model_dump()),
        "ranking": ranking or RankingSettings(**settings.ranking.model_dump()),
        "automation": AutomationSettings(**settings.automation.model_dump()),
    }


def build_defs(settings: Settings | None = None, *, resources: dict | None = None) -> dg.Definitions:
    """Everything Dagster shows and runs, for `settings` (default: Settings.load() of the
    resources' data root). `resources` replaces the resources built from the settings."""
    if settings is None:
        root = resources["storage"].data_root if resources and "storage" in resources else None
        settings = Settings.load(**({"data_root": root} if root else {}))
    partitions = daily_partitions(settings.start_date, settings.end_date)
    assets, checks = [], []
    with warnings.catch_warnings():
        # single-run backfills, partitioned checks and freshness policies are marked beta/preview:
        # hundreds of notices per CLI call that say nothing about this project
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        for layer in LAYERS:
            layer_assets, layer_checks = layer.build(partitions, settings)
            assets += layer_assets
            checks += layer_checks
        for module in CHECKS:
            checks += module.build(partitions, settings)
        jobs, schedules, sensors = automation.build(partitions, settings)
    ingest_raw_logs = dg.define_asset_job(
        "ingest_raw_logs",
        selection=dg.AssetSelection.groups("raw"),
        description="Validate one day of landing logs into the raw Parquet partitions (with quarantine).",
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[ingest_raw_logs, *jobs],
        schedules=schedules,
        sensors=sensors,
        resources=resources or build_resources(settings=settings),
        executor=executor_for(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location `dagster dev` / `dagster asset materialize -m recsys_assets.definitions`
    loads: settings from the environment and the data root's source marker."""
    return build_defs(Settings.load())
