"""Raw layer: landing JSONL → validated Parquet partitions + quarantine, one asset per table.

A partition is ingested into the staging area, judged by the rules of the table's blocking
checks (services/raw_audit.py) and published only when they pass (services/publication.py)."""

from datetime import date

import dagster as dg

from recsys_assets.assets import ownership
from recsys_assets.assets._wiring import failures
from recsys_assets.core.contract import DIMENSIONS, LOGS, REFERENCED_ASSET, TableContract
from recsys_assets.core.ingest import IngestResult, ingest_file, ingest_files
from recsys_assets.core.storage import duckdb_connect, file_sha256
from recsys_assets.services import raw_audit
from recsys_assets.services.publication import publish_partition
from recsys_assets.settings import Settings
from resources import IngestionSettings, LandingZoneResource, StorageResource, WarehouseResource
from resources.storage import SNAPSHOT

# The daily logs are group raw (`--select group:raw --partition-range A...B` works); the
# unpartitioned dimensions are group raw_snapshots, kept apart so range runs stay valid.
SNAPSHOT_GROUP = "raw_snapshots"
KINDS = {"duckdb", "parquet"}


def _column_schema(contract: TableContract) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                f.name,
                f.duckdb_type,
                description=f.description,
                constraints=dg.TableColumnConstraints(nullable=not f.required),
            )
            for f in contract.fields
        ]
    )


def _metadata(results: list[IngestResult], storage: StorageResource, table: str) -> dict:
    read = sum(r.rows_read for r in results)
    loaded = sum(r.rows_loaded for r in results)
    quarantined = sum(r.rows_quarantined for r in results)
    reasons: dict[str, int] = {}
    for r in results:
        for reason, n in r.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
    reason_rows = "\n".join(f"| `{k}` | {v} |" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
    paths = [storage.partition_path(table, r.partition) for r in results]
    meta = {
        "dagster/row_count": loaded,
        "rows_read": read,
        "rows_loaded": loaded,
        "rows_quarantined": quarantined,
        "blank_lines": sum(r.blank_lines for r in results),
        "quarantine_rate": quarantined / read if read else 0.0,
        "partitions": len(results),
        "quarantine_reasons": dg.MetadataValue.md(
            "| reason | rows |\n|---|---|\n" + reason_rows if reason_rows else "no quarantined rows"
        ),
        "path": dg.MetadataValue.path(str(paths[0] if len(paths) == 1 else paths[0].parent)),
    }
    if len(paths) == 1:
        meta["content_sha256"] = file_sha256(paths[0])
    return meta


def _targets(storage: StorageResource, contract: TableContract, day: str) -> tuple[tuple, tuple]:
    """(staged, published) of the partition's data file and of its quarantine file."""
    data = storage.partition_path(contract.asset_name, day)
    quarantine = storage.quarantine_path(contract.asset_name, day)
    return (storage.staged_path(data), data), (storage.staged_path(quarantine), quarantine)


def landing_days_of(day: str, settings: Settings, landing: LandingZoneResource, sparse: bool) -> list[str]:
    """The landing days partition `day` ingests: its own; for the first partition of a long
    source (Settings.history_start) every landed day of the history up to it; none for a day a
    sparse landing zone skipped (no folder, but a later day landed: the source had nothing).
    Only the history partition lists every landed day: one more day stays O(one day)."""
    if settings.history_start and day == settings.start_date:
        return [d for d in landing.complete_days() if settings.history_start <= d <= day]
    if sparse and not landing.is_complete(day):
        latest = landing.latest_complete_day()
        if latest is not None and latest > day:
            return []
    return [day]


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    """The layer's definitions over `partitions` (the first one is settings.start_date)."""

    def _publish(storage, contract, day, data, quarantine, ingestion, skips_empty_days=False) -> None:
        """Publish the staged partition only if the rules of its blocking checks pass on it."""
        con = duckdb_connect()
        try:
            rules = raw_audit.staged_rules(
                con,
                contract,
                storage,
                day,
                data[0],
                quarantine[0],
                ingestion,
                history=raw_audit.history_partitions(settings),
                skips_empty_days=skips_empty_days,
            )
            with failures():
                publish_partition(contract.asset_name, day, [data, quarantine], rules)
        finally:
            con.close()

    def _build_dimension_asset(contract: TableContract) -> dg.AssetsDefinition:
        @dg.asset(
            name=contract.asset_name,
            kinds=KINDS,
            **ownership.layer("raw", group=SNAPSHOT_GROUP),
            description=f"{contract.description} Validated from landing `{contract.name}.jsonl`; "
            "bad lines go to the `quarantine` table with a reason.",
            metadata={"dagster/column_schema": _column_schema(contract)},
        )
        def _dimension(
            storage: StorageResource,
            landing: LandingZoneResource,
            warehouse: WarehouseResource,
            ingestion: IngestionSettings,
        ) -> dg.MaterializeResult:
            source = landing.require_file(landing.snapshot_file(contract.name))
            data, quarantine = _targets(storage, contract, SNAPSHOT)
            result = ingest_file(
                contract,
                source,
                source.name,
                SNAPSHOT,
                None,
                data[0],
                quarantine[0],
                max_line_bytes=ingestion.max_line_bytes,
            )
            _publish(storage, contract, SNAPSHOT, data, quarantine, ingestion)
            warehouse.refresh_catalog()
            return dg.MaterializeResult(metadata=_metadata([result], storage, contract.asset_name))

        return _dimension

    def _build_log_asset(contract: TableContract) -> dg.AssetsDefinition:
        # events and watches point at impressions through request_id, so they come after them.
        deps = [d.asset_name for d in DIMENSIONS] + (["raw_impressions"] if contract.name != "impressions" else [])

        @dg.asset(
            name=contract.asset_name,
            kinds=KINDS,
            **ownership.layer("raw"),
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
            deps=deps,
            description=f"{contract.description} One Parquet file per UTC day of `{contract.time_field}`, "
            f"validated from landing `<day>/{contract.name}.jsonl`; bad lines go to the "
            "`quarantine` table with a reason.",
            metadata={"dagster/column_schema": _column_schema(contract), "partition_field": contract.time_field},
        )
        def _log(
            context: dg.AssetExecutionContext,
            storage: StorageResource,
            landing: LandingZoneResource,
            warehouse: WarehouseResource,
            ingestion: IngestionSettings,
        ) -> dg.MaterializeResult:
            known_ids = {}
            for ref in contract.references:
                path = storage.partition_path(REFERENCED_ASSET[ref])
                if not path.exists():
                    raise dg.Failure(
                        f"{contract.asset_name} checks {ref} against {path}, which does not exist yet: "
                        "materialize raw_users and raw_items first."
                    )
                known_ids[ref] = str(path)
            results = []
            sparse = landing.skips_empty_days()
            for day in context.partition_keys:  # one key, or every key of a single-run backfill
                days = landing_days_of(day, settings, landing, sparse)
                sources = [
                    (landing.require_file(landing.day_file(d, contract.name)), f"{d}/{contract.name}.jsonl")
                    for d in days
                ]
                data, quarantine = _targets(storage, contract, day)
                results.append(
                    ingest_files(
                        contract,
                        sources,
                        day,
                        (date.fromisoformat(days[0]) if days else date.fromisoformat(day), date.fromisoformat(day)),
                        data[0],
                        quarantine[0],
                        known_ids=known_ids,
                        max_line_bytes=ingestion.max_line_bytes,
                    )
                )
                _publish(storage, contract, day, data, quarantine, ingestion, sparse)
                context.log.info(
                    f"{contract.asset_name} {day}: read {results[-1].rows_read}, "
                    f"loaded {results[-1].rows_loaded}, quarantined {results[-1].rows_quarantined}"
                )
                # the day's own counts, whatever the run's range (the UI plots them per partition)
                context.add_asset_metadata(_metadata(results[-1:], storage, contract.asset_name), partition_key=day)
            warehouse.refresh_catalog()
            return dg.MaterializeResult()

        return _log

    dimension_assets = [_build_dimension_asset(c) for c in DIMENSIONS]
    log_assets = [_build_log_asset(c) for c in LOGS]
    raw_assets = dimension_assets + log_assets
    return raw_assets, []
