"""Blocking asset checks on every raw table: schema, keys, uniqueness, quarantine rate and
request linkage. A failing check is an ERROR and stops downstream assets in the run. The rules
are services/raw_audit.py's: ingestion ran them on the staged partition before publishing it,
so these report on what was published."""

import dagster as dg

from recsys_assets.checks.per_day import asset_check, day_check, merged
from recsys_assets.core.contract import ALL_TABLES, TableContract
from recsys_assets.core.storage import duckdb_connect
from recsys_assets.services import raw_audit
from recsys_assets.services.publication import Verdict
from recsys_assets.settings import Settings
from resources import IngestionSettings, LandingZoneResource, StorageResource
from resources.storage import SNAPSHOT


def _partitions(context: dg.AssetCheckExecutionContext, contract: TableContract) -> list[str]:
    return list(context.partition_keys) if contract.partitioned else [SNAPSHOT]


def _missing(contract: TableContract, storage: StorageResource, partitions: list[str]) -> list[str]:
    return [k for k in partitions if not storage.partition_path(contract.asset_name, k).exists()]


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    """The layer's definitions over `partitions` (the first one is settings.start_date)."""

    def _check_factory(contract: TableContract):
        partitions_def = partitions if contract.partitioned else None
        asset = contract.asset_name

        def check(name: str, description: str):
            if partitions_def is None:
                return asset_check(asset=asset, name=name, description=description, blocking=True)
            return day_check(
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

        def result(verdict: Verdict) -> dg.AssetCheckResult:
            return dg.AssetCheckResult(passed=verdict.passed, metadata=verdict.metadata)

        # The rules are raw_audit's, the ones ingestion ran on the staged partition before publishing it.
        @check("schema", "Loaded columns and types equal the contract.")
        @with_data
        def schema(con, keys, storage, ingestion):
            return result(raw_audit.schema(con, contract, paths(storage, keys)))

        @check("non_null_keys", f"Required fields ({', '.join(raw_audit.key_fields(contract))}) are never null.")
        @with_data
        def non_null_keys(con, keys, storage, ingestion):
            return result(raw_audit.non_null_keys(con, contract, paths(storage, keys)))

        @check("unique_ids", f"`{contract.id_field}` is unique across the checked partitions.")
        @with_data
        def unique_ids(con, keys, storage, ingestion):
            return result(raw_audit.unique_ids(con, contract, paths(storage, keys)))

        @check(
            "quarantine_rate", "Share of landing lines quarantined stays below IngestionSettings.max_quarantine_rate."
        )
        @with_data
        def quarantine_rate(con, keys, storage, ingestion):
            q_paths = [storage.quarantine_path(asset, k) for k in keys]
            return result(raw_audit.quarantine_rate(con, paths(storage, keys), q_paths, ingestion.max_quarantine_rate))

        checks = [schema, non_null_keys, unique_ids, quarantine_rate]

        if raw_audit.links_requests(contract):

            @check(
                "request_ids_resolve",
                "Every non-null request_id matches an impression of the same user and item on the same or previous day.",
            )
            @with_data
            def request_ids_resolve(con, keys, storage, ingestion):
                return result(
                    raw_audit.request_ids_resolve(
                        con, contract, storage, keys, paths(storage, keys), ingestion.max_orphan_request_rate
                    )
                )

            checks.append(request_ids_resolve)

        if contract.partitioned:

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
                return result(
                    raw_audit.volume(
                        storage,
                        contract,
                        keys,
                        ingestion,
                        history=raw_audit.history_partitions(settings),
                        skips_empty_days=landing.skips_empty_days(),
                    )
                )

            checks.append(volume)
        return checks

    return merged([c for contract in ALL_TABLES for c in _check_factory(contract)])
