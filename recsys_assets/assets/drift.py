"""Drift layer: the daily feature drift report (PSI, KS, JS, traffic shares) of day D
against the pooled reference days before it."""

import dataclasses

import dagster as dg
import numpy as np

from recsys_assets.assets import ownership, table_metadata
from recsys_assets.checks.per_day import asset_check
from recsys_assets.core import drift
from recsys_assets.core.storage import duckdb_connect, write_parquet_atomic
from recsys_assets.core.tables import connect
from recsys_assets.services.drift import HISTORY_DAYS, drift_for_day
from recsys_assets.settings import Settings
from resources import FeatureSettings, StorageResource, WarehouseResource

REPORT_COLUMNS = table_metadata.column_schema(
    drift.ARROW_SCHEMA,
    types={"day": "DATE"},
    descriptions={
        "kind": "numeric, categorical or traffic",
        "psi": "population stability index against the reference days",
        "ks": "Kolmogorov-Smirnov statistic (numeric)",
        "js": "Jensen-Shannon distance (categorical)",
        "value": "the share (traffic rows)",
        "severity": "ok / warn / fail / no_data (a side without values)",
    },
)
REPORT_PREVIEW = [
    ("feature", "VARCHAR"),
    ("kind", "VARCHAR"),
    ("psi", "DOUBLE"),
    ("ks", "DOUBLE"),
    ("js", "DOUBLE"),
    ("severity", "VARCHAR"),
]


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    """The layer's definitions over `partitions` (the first one is settings.start_date)."""
    first_day = settings.start_date
    history_day = settings.start_date if settings.history_start else None

    @dg.asset(
        kinds={"duckdb", "parquet", "scipy"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        **ownership.layer("drift"),
        # Day D and up to HISTORY_DAYS before it (the reference window is at most that long).
        deps=[
            dg.AssetDep(
                t,
                partition_mapping=dg.TimeWindowPartitionMapping(
                    start_offset=-HISTORY_DAYS, end_offset=0, allow_nonexistent_upstream_partitions=True
                ),
            )
            for t in ("user_daily_stats", "item_daily_stats", "categorical_daily_counts")
        ]
        + ["interactions", "raw_items"],
        description="Drift of day D against the pooled reference days before it (FeatureSettings.drift_reference_days): "
        "per numeric daily feature of users and items, PSI on the reference's quantile bins and the KS "
        "statistic; per categorical field (surface, device, country, language, genres shown and liked), PSI "
        "and Jensen-Shannon distance; traffic shares of unseen users/items and new items. Worst PSI is "
        "plotted as `worst_psi`.",
    )
    def feature_drift_report(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        warehouse: WarehouseResource,
        features: FeatureSettings,
    ) -> dg.MaterializeResult:
        worst = {}
        for day in context.partition_keys:
            rows = drift_for_day(storage, day, features, first_day, history_day)
            con = connect()
            try:
                con.register("report", drift.rows_to_arrow(rows, day))
                write_parquet_atomic(
                    con,
                    "SELECT CAST(day AS DATE) AS day, * EXCLUDE (day) FROM report",
                    storage.partition_path("feature_drift_report", day),
                )
            finally:
                con.close()
            psis = [r.psi for r in rows if r.psi is not None and np.isfinite(r.psi)]
            worst[day] = max(psis) if psis else 0.0
            worst_row = next((r for r in drift.sort_rows(rows) if r.psi is not None), None)
            # each day's own numbers, whatever the run's range (the UI plots them per partition)
            context.add_asset_metadata(
                {
                    "worst_psi": float(worst[day]),
                    "worst_feature": worst_row.feature if worst_row else "",
                    "features_warn": sum(r.severity == "warn" for r in rows),
                    "features_fail": sum(r.severity == "fail" for r in rows),
                    "summary": dg.MetadataValue.md(drift.markdown_summary(rows)),
                    "dagster/row_count": len(rows),
                    "worst_features": table_metadata.preview(
                        [dataclasses.asdict(r) for r in drift.sort_rows(rows) if r.psi is not None][:10],
                        REPORT_PREVIEW,
                    ),
                },
                partition_key=day,
            )
        warehouse.refresh_catalog()
        return dg.MaterializeResult(
            metadata={"worst_psi_per_day": dg.MetadataValue.json(worst), "dagster/column_schema": REPORT_COLUMNS}
        )

    @asset_check(
        asset=feature_drift_report,
        name="psi_below_thresholds",
        partitions_def=partitions,
        description="Warns when a feature's PSI reaches drift_warn_psi (0.1) and fails at drift_fail_psi "
        "(0.25). Not blocking: drift is a signal to retrain, not a reason to stop the pipeline.",
    )
    def psi_below_thresholds(
        context: dg.AssetCheckExecutionContext, storage: StorageResource, features: FeatureSettings
    ) -> dg.AssetCheckResult:
        files = [storage.partition_path("feature_drift_report", d) for d in context.partition_keys]
        listing = ", ".join(f"'{f}'" for f in files)
        con = duckdb_connect()
        rows = con.execute(
            f"SELECT day, feature, psi FROM read_parquet([{listing}]) WHERE psi IS NOT NULL ORDER BY psi DESC"
        ).fetchall()
        no_data = [
            f"{d} {f}"
            for d, f in con.execute(
                f"SELECT day, feature FROM read_parquet([{listing}]) WHERE severity = 'no_data' ORDER BY day, feature"
            ).fetchall()
        ]
        con.close()
        if no_data and not rows:  # nothing was compared: "no data", never a pass
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "verdict": "no data",
                    "features_without_data": dg.MetadataValue.md("\n".join(f"- {x}" for x in no_data[:20])),
                },
            )
        worst = rows[0][2] if rows else 0.0
        over = [f"{d} {f}: {p:.3f}" for d, f, p in rows if p >= features.drift_warn_psi]
        severity = dg.AssetCheckSeverity.ERROR if worst >= features.drift_fail_psi else dg.AssetCheckSeverity.WARN
        return dg.AssetCheckResult(
            passed=worst < features.drift_warn_psi,
            severity=severity,
            metadata={
                "worst_psi": float(worst),
                "warn_at": features.drift_warn_psi,
                "fail_at": features.drift_fail_psi,
                "features_over_warn": dg.MetadataValue.md("\n".join(f"- {x}" for x in over[:20]) or "none"),
            },
        )

    drift_assets = [feature_drift_report]
    drift_checks = [psi_below_thresholds]
    return drift_assets, drift_checks
