"""Drift layer: the daily feature drift report (PSI, KS, JS, traffic shares) of day D
against the pooled reference days before it."""

import dataclasses
from collections import defaultdict

import dagster as dg
import numpy as np
import polars as pl

from recsys_assets.assets import ownership, table_metadata
from recsys_assets.core import drift
from recsys_assets.core.ingest import read_sql
from recsys_assets.core.storage import duckdb_connect, write_parquet_atomic
from recsys_assets.core.tables import bind, connect
from recsys_assets.partitions import daily_partitions, window_days
from resources import FeatureSettings, StorageResource, WarehouseResource

GROUP = "drift"
HISTORY_DAYS = 28


def _files(storage: StorageResource, table: str, days: list[str]) -> list:
    files = [storage.partition_path(table, d) for d in days]
    missing = [d for d, f in zip(days, files, strict=False) if not f.exists()]
    if missing:
        raise dg.Failure(f"feature_drift_report needs {table} for {', '.join(missing)}; materialize it first.")
    return files


def drift_for_day(storage: StorageResource, day: str, settings: FeatureSettings) -> list[drift.DriftRow]:
    reference = window_days(day, settings.drift_reference_days)
    con = connect()
    try:
        bind(con, "user_stats", _files(storage, "user_daily_stats", reference + [day]), "user_daily_stats")
        bind(con, "item_stats", _files(storage, "item_daily_stats", reference + [day]), "item_daily_stats")
        # (reference values, day-D values) per feature, as numpy arrays straight from Arrow: the
        # values are millions of rows at scale, far too many to pass through Python lists
        values = con.sql(
            f"SELECT feature, day = DATE '{day}' AS current, value FROM ({read_sql('drift_numeric_features.sql')})"
        ).pl()
        numeric = defaultdict(lambda: (np.zeros(0), np.zeros(0)))
        for (feature, current), part in values.partition_by("feature", "current", as_dict=True).items():
            pair = numeric[feature]
            array = part["value"].cast(pl.Float64).to_numpy()  # NULL -> NaN, which drift drops
            numeric[feature] = (pair[0], array) if current else (array, pair[1])
        bind(con, "counts", _files(storage, "categorical_daily_counts", reference + [day]), "categorical_daily_counts")
        categorical = defaultdict(lambda: ({}, {}))
        for d, field, value, n in con.execute(
            f"SELECT day = DATE '{day}', field, value, sum(count) FROM counts GROUP BY ALL"
        ).fetchall():
            categorical[field][1 if d else 0][value] = n

        history = window_days(day, HISTORY_DAYS)
        bind(con, "interactions", _files(storage, "interactions", [day]), "interactions")
        bind(con, "user_history", _files(storage, "user_daily_stats", history), "user_daily_stats")
        bind(con, "item_history", _files(storage, "item_daily_stats", history), "item_daily_stats")
        bind(con, "items", [storage.partition_path("raw_items")], "raw_items")
        traffic = con.execute(read_sql("drift_traffic.sql"), {"day": day}).fetchone()
    finally:
        con.close()

    rows = drift.drift_rows({}, dict(categorical), warn=settings.drift_warn_psi, fail=settings.drift_fail_psi)
    for feature, (ref, cur) in numeric.items():
        # PSI of an unchanged distribution grows like (bins - 1) * (1/n_ref + 1/n_cur): with few
        # samples, fewer bins keep noise well under the warn threshold.
        bins = int(np.clip(min(len(ref), len(cur)) // settings.drift_samples_per_bin, 2, drift.DEFAULT_BINS))
        rows += drift.drift_rows(
            {feature: (np.asarray(ref, float), np.asarray(cur, float))},
            {},
            bins=bins,
            warn=settings.drift_warn_psi,
            fail=settings.drift_fail_psi,
        )
    rows = drift.sort_rows(rows)
    n_impressions = int(traffic[0])
    for name, value in zip(("unseen_user_share", "unseen_item_share", "new_item_share"), traffic[1:], strict=False):
        # Informational: shares have no reference distribution to test against here.
        rows.append(
            drift.DriftRow(
                feature=f"traffic.{name}",
                kind="traffic",
                psi=None,
                ks=None,
                js=None,
                value=float(value),
                n_reference=0,
                n_current=n_impressions,
                severity="ok",
            )
        )
    return rows


REPORT_COLUMNS = table_metadata.column_schema(
    drift.ARROW_SCHEMA,
    types={"day": "DATE"},
    descriptions={
        "kind": "numeric, categorical or traffic",
        "psi": "population stability index against the reference days",
        "ks": "Kolmogorov-Smirnov statistic (numeric)",
        "js": "Jensen-Shannon distance (categorical)",
        "value": "the share (traffic rows)",
        "severity": "ok / warn / fail",
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


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "parquet", "scipy"},
    partitions_def=daily_partitions,
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
    context: dg.AssetExecutionContext, storage: StorageResource, warehouse: WarehouseResource, features: FeatureSettings
) -> dg.MaterializeResult:
    worst = {}
    last_rows = []
    for day in context.partition_keys:
        rows = drift_for_day(storage, day, features)
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
        last_rows = rows
    warehouse.refresh_catalog()
    worst_row = next((r for r in drift.sort_rows(last_rows) if r.psi is not None), None)
    return dg.MaterializeResult(
        metadata={
            "worst_psi": float(max(worst.values())),  # a plain float: the UI plots it across partitions
            "worst_feature": worst_row.feature if worst_row else "",
            "features_warn": sum(r.severity == "warn" for r in last_rows),
            "features_fail": sum(r.severity == "fail" for r in last_rows),
            "summary": dg.MetadataValue.md(drift.markdown_summary(last_rows)),
            "worst_psi_per_day": dg.MetadataValue.json(worst),
            "dagster/row_count": len(last_rows),
            "dagster/column_schema": REPORT_COLUMNS,
            "worst_features": table_metadata.preview(
                [dataclasses.asdict(r) for r in drift.sort_rows(last_rows) if r.psi is not None][:10], REPORT_PREVIEW
            ),
        }
    )


@dg.asset_check(
    asset=feature_drift_report,
    name="psi_below_thresholds",
    partitions_def=daily_partitions,
    description="Warns when a feature's PSI reaches drift_warn_psi (0.1) and fails at drift_fail_psi "
    "(0.25). Not blocking: drift is a signal to retrain, not a reason to stop the pipeline.",
)
def psi_below_thresholds(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, features: FeatureSettings
) -> dg.AssetCheckResult:
    files = [storage.partition_path("feature_drift_report", d) for d in context.partition_keys]
    listing = ", ".join(f"'{f}'" for f in files)
    rows = (
        duckdb_connect()
        .execute(f"SELECT day, feature, psi FROM read_parquet([{listing}]) WHERE psi IS NOT NULL ORDER BY psi DESC")
        .fetchall()
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
