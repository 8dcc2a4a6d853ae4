"""Blocking asset checks on every raw table: schema, keys, uniqueness, quarantine rate and
request linkage. A failing check is an ERROR and stops downstream assets in the run."""

from datetime import date, timedelta

import dagster as dg

from recsys_assets.checks.per_day import asset_check
from recsys_assets.core.contract import ALL_TABLES, EVENTS, IMPRESSIONS, WATCH_STATS, TableContract
from recsys_assets.core.storage import duckdb_connect
from recsys_assets.services.volume import check_volume
from recsys_assets.settings import Settings
from resources import IngestionSettings, LandingZoneResource, StorageResource
from resources.storage import SNAPSHOT


def _partitions(context: dg.AssetCheckExecutionContext, contract: TableContract) -> list[str]:
    return list(context.partition_keys) if contract.partitioned else [SNAPSHOT]


def _scan(paths) -> str:
    return "read_parquet([" + ", ".join(f"'{p}'" for p in paths) + "])"


def _missing(contract: TableContract, storage: StorageResource, partitions: list[str]) -> list[str]:
    return [k for k in partitions if not storage.partition_path(contract.asset_name, k).exists()]


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    """The layer's definitions over `partitions` (the first one is settings.start_date)."""

    def _check_factory(contract: TableContract):
        partitions_def = partitions if contract.partitioned else None
        asset = contract.asset_name

        def check(name: str, description: str):
            return asset_check(
                asset=asset, name=name, description=description, blocking=True, partitions_def=partitions_def
            )

        def with_data(fn):
            """Fail clearly when a partition file is missing; otherwise run the check body."""

            def wrapped(context: dg.AssetCheckExecutionContext, storage: StorageResource, ingestion: IngestionSettings):
                keys = _partitions(context, contract)
                missing = _missing(contract, storage, keys)
                if missing:
                    return dg.AssetCheckResult(passed=False, metadata={"missing_partitions": ", ".join(missing)})
                con = duckdb_connect()
                try:
                    return fn(con, keys, storage, ingestion)
                finally:
                    con.close()

            wrapped.__name__ = fn.__name__
            return wrapped

        paths = lambda storage, keys: [storage.partition_path(asset, k) for k in keys]  # noqa: E731

        @check("schema", "Loaded columns and types equal the contract.")
        @with_data
        def schema(con, keys, storage, ingestion):
            expected = [(f.name, f.duckdb_type) for f in contract.fields]
            mismatched = []
            for path in paths(storage, keys):
                actual = [
                    (r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()
                ]
                if actual != expected:
                    mismatched.append(f"{path.name}: {actual}")
            return dg.AssetCheckResult(
                passed=not mismatched,
                metadata={"expected": str(expected), "mismatched": "\n".join(mismatched) or "none"},
            )

        key_fields = [f.name for f in contract.fields if f.required]

        @check("non_null_keys", f"Required fields ({', '.join(key_fields)}) are never null.")
        @with_data
        def non_null_keys(con, keys, storage, ingestion):
            counts = con.execute(
                "SELECT "
                + ", ".join(f"count(*) FILTER (WHERE {f} IS NULL)" for f in key_fields)
                + f" FROM {_scan(paths(storage, keys))}"
            ).fetchone()
            nulls = {f: int(n) for f, n in zip(key_fields, counts, strict=False)}
            return dg.AssetCheckResult(
                passed=not any(nulls.values()), metadata={f"null_{f}": n for f, n in nulls.items()}
            )

        @check("unique_ids", f"`{contract.id_field}` is unique across the checked partitions.")
        @with_data
        def unique_ids(con, keys, storage, ingestion):
            dupes = con.execute(
                f"SELECT count(*) - count(DISTINCT {contract.id_field}) FROM {_scan(paths(storage, keys))}"
            ).fetchone()[0]
            return dg.AssetCheckResult(passed=dupes == 0, metadata={"duplicate_ids": int(dupes)})

        @check(
            "quarantine_rate", "Share of landing lines quarantined stays below IngestionSettings.max_quarantine_rate."
        )
        @with_data
        def quarantine_rate(con, keys, storage, ingestion):
            loaded = con.execute(f"SELECT count(*) FROM {_scan(paths(storage, keys))}").fetchone()[0]
            q_paths = [storage.quarantine_path(asset, k) for k in keys]
            quarantined = con.execute(f"SELECT count(*) FROM {_scan(q_paths)}").fetchone()[0]
            rate = quarantined / (loaded + quarantined) if loaded + quarantined else 0.0
            return dg.AssetCheckResult(
                passed=rate <= ingestion.max_quarantine_rate,
                metadata={
                    "quarantine_rate": rate,
                    "threshold": ingestion.max_quarantine_rate,
                    "rows_loaded": int(loaded),
                    "rows_quarantined": int(quarantined),
                },
            )

        checks = [schema, non_null_keys, unique_ids, quarantine_rate]

        if contract in (EVENTS, WATCH_STATS):

            @check(
                "request_ids_resolve",
                "Every non-null request_id matches an impression of the same user and item on the same or previous day.",
            )
            @with_data
            def request_ids_resolve(con, keys, storage, ingestion):
                days = sorted({d for k in keys for d in (k, (date.fromisoformat(k) - timedelta(days=1)).isoformat())})
                imp_paths = storage.existing_partitions(IMPRESSIONS.asset_name, days)
                impressions = (
                    _scan(imp_paths)
                    if imp_paths
                    else (
                        "(SELECT NULL::VARCHAR request_id, NULL::BIGINT user_id, NULL::BIGINT item_id, NULL::TIMESTAMPTZ shown_at)"
                    )
                )
                # Per row, against the impressions of its own UTC day and the day before only (a range
                # run reads many days of impressions; a request from further back is still an orphan).
                day_of = f"CAST(timezone('UTC', x.{contract.time_field}) AS DATE)"
                total, orphans = con.execute(f"""
                    WITH shown AS (SELECT DISTINCT request_id, user_id, item_id,
                                          CAST(timezone('UTC', shown_at) AS DATE) AS shown_day FROM {impressions})
                    SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (
                               SELECT 1 FROM shown AS i
                               WHERE i.request_id = x.request_id AND i.user_id = x.user_id AND i.item_id = x.item_id
                                 AND i.shown_day BETWEEN {day_of} - 1 AND {day_of}))
                    FROM {_scan(paths(storage, keys))} AS x
                    WHERE x.request_id IS NOT NULL""").fetchone()
                rate = orphans / total if total else 0.0
                return dg.AssetCheckResult(
                    passed=rate <= ingestion.max_orphan_request_rate,
                    metadata={
                        "rows_with_request_id": int(total),
                        "orphan_rows": int(orphans),
                        "orphan_rate": rate,
                        "threshold": ingestion.max_orphan_request_rate,
                    },
                )

            checks.append(request_ids_resolve)

        if contract.partitioned:
            # A history partition (many days in one) is no norm for a day.
            history = frozenset([settings.start_date]) if settings.history_start else frozenset()

            @check(
                "volume",
                "Rows, distinct users and distinct items of the day are at least "
                "IngestionSettings.min_volume_ratio x the median of the trailing daily partitions: an empty "
                "or truncated delivery loads without a bad line, only its volume tells. Skipped for a source "
                "that declares days without data (`empty_days: absent`).",
            )
            def volume(
                context: dg.AssetCheckExecutionContext,
                storage: StorageResource,
                ingestion: IngestionSettings,
                landing: LandingZoneResource,
            ) -> dg.AssetCheckResult:
                keys = _partitions(context, contract)
                missing = _missing(contract, storage, keys)
                if missing:
                    return dg.AssetCheckResult(passed=False, metadata={"missing_partitions": ", ".join(missing)})
                if landing.skips_empty_days():
                    return dg.AssetCheckResult(
                        passed=True,
                        metadata={"verdict": "not checked: the source declares days without data (empty_days: absent)"},
                    )
                verdicts = [
                    check_volume(
                        storage,
                        asset,
                        day,
                        window=ingestion.volume_window,
                        min_ratio=ingestion.min_volume_ratio,
                        min_history=ingestion.volume_min_history,
                        exclude=history,
                    )
                    for day in keys
                    if day not in history
                ]
                failed = [v for v in verdicts if not v.passed]
                last = verdicts[-1] if verdicts else None
                metadata: dict = {
                    "verdict": "; ".join(f"{v.day}: {v.reason}" for v in (failed or verdicts[-3:]))
                    or "history partition: no norm",
                    "min_ratio": ingestion.min_volume_ratio,
                }
                if last is not None:
                    metadata |= {f"{m}": n for m, n in last.current.items()}
                    metadata |= {f"trailing_median_{m}": float(n) for m, n in last.norm.items()}
                return dg.AssetCheckResult(passed=not failed, metadata=metadata)

            checks.append(volume)
        return checks

    raw_checks = [c for contract in ALL_TABLES for c in _check_factory(contract)]
    return raw_checks
