"""Blocking checks on the feature layer and dictionaries: keys, value ranges, row counts
consistent with the raw partitions, and point in time (no row of day D built from D or later).
The rules of the daily tables are services/feature_audit.py's: each asset ran them on its staged
partition before publishing it, so these report on what was published."""

import random

import dagster as dg
import pyarrow as pa

from recsys_assets.checks.per_day import asset_check, day_check, merged
from recsys_assets.core import hashing
from recsys_assets.core.storage import duckdb_connect, read_arrow
from recsys_assets.services import feature_audit
from recsys_assets.services.publication import Verdict
from recsys_assets.settings import Settings
from resources import FeatureSettings, StorageResource


def _files(storage: StorageResource, table: str, days) -> list:
    files = [storage.partition_path(table, d) for d in days]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise dg.Failure(f"{table}: partitions missing: {missing}")
    return files


def _result(verdict: Verdict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=verdict.passed, metadata=verdict.metadata)


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    """The layer's definitions over `partitions` (the first one is settings.start_date)."""

    def _checks_for(rules: feature_audit.TableRules):
        def check(name, description):
            return day_check(
                asset=rules.table, name=name, description=description, blocking=True, partitions_def=partitions
            )

        @check(
            "keys_and_ranges",
            f"Keys {', '.join(rules.key)} non-null"
            + (" and unique" if rules.table in feature_audit.UNIQUE_KEYS else "")
            + "; rates within [0, 1]; counts >= 0.",
        )
        def keys_and_ranges(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
            files = _files(storage, rules.table, context.partition_keys)
            return _result(feature_audit.keys_and_ranges(duckdb_connect(), rules, files))

        checks = [keys_and_ranges]
        if rules.point_in_time:

            @check("point_in_time", "No row of day D was built from data of day D or later (source_max_day < day).")
            def point_in_time(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
                files = _files(storage, rules.table, context.partition_keys)
                return _result(feature_audit.point_in_time(duckdb_connect(), files))

            checks.append(point_in_time)
        return checks

    @day_check(
        asset="interactions",
        name="consistent_with_raw",
        blocking=True,
        partitions_def=partitions,
        description="Exactly one non-organic row per raw impression of the day; organic rows never "
        "outnumber the day's watches.",
    )
    def interactions_consistent_with_raw(
        context: dg.AssetCheckExecutionContext, storage: StorageResource
    ) -> dg.AssetCheckResult:
        days = context.partition_keys
        return _result(
            feature_audit.interactions_consistent_with_raw(
                duckdb_connect(),
                _files(storage, "interactions", days),
                _files(storage, "raw_impressions", days),
                _files(storage, "raw_watch_stats", days),
            )
        )

    @day_check(
        asset="user_daily_stats",
        name="consistent_with_interactions",
        blocking=True,
        partitions_def=partitions,
        description="Every interaction of the day counted once in the stats (impressions + organic watches = rows), "
        "and the same users.",
    )
    def user_stats_consistent(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
        days = context.partition_keys
        return _result(
            feature_audit.user_stats_consistent(
                duckdb_connect(), _files(storage, "interactions", days), _files(storage, "user_daily_stats", days)
            )
        )

    @day_check(
        asset="user_sequences",
        name="length_within_limit",
        blocking=True,
        partitions_def=partitions,
        description="No sequence is longer than FeatureSettings.sequence_length and lists are time-sorted.",
    )
    def sequences_bounded(
        context: dg.AssetCheckExecutionContext, storage: StorageResource, features: FeatureSettings
    ) -> dg.AssetCheckResult:
        files = _files(storage, "user_sequences", context.partition_keys)
        return _result(feature_audit.sequences_bounded(duckdb_connect(), files, features.sequence_length))

    def _id_dictionary_check(asset: str, daily_table: str, id_column: str):
        @asset_check(
            asset=asset,
            name="stable_contiguous_complete",
            blocking=True,
            description="Indices are 0..n-1 without gaps or repeats, ids are unique, and every id in "
            f"{daily_table} has an entry.",
        )
        def _check(storage: StorageResource) -> dg.AssetCheckResult:
            path = storage.partition_path(asset)
            con = duckdb_connect()
            n, distinct_idx, distinct_id, max_idx = con.execute(
                f"SELECT count(*), count(DISTINCT index), count(DISTINCT id), max(index) FROM read_parquet('{path}')"
            ).fetchone()
            daily = storage.lake_dir / daily_table
            missing = (
                con.execute(
                    f"SELECT count(DISTINCT {id_column}) FROM read_parquet('{daily}/*.parquet') "
                    f"WHERE {id_column} NOT IN (SELECT id FROM read_parquet('{path}'))"
                ).fetchone()[0]
                if any(daily.glob("*.parquet"))
                else 0
            )
            passed = n == distinct_idx == distinct_id == (max_idx + 1 if max_idx is not None else 0) and missing == 0
            return dg.AssetCheckResult(
                passed=passed,
                metadata={
                    "entries": n,
                    "distinct_indices": distinct_idx,
                    "distinct_ids": distinct_id,
                    "ids_missing": int(missing),
                },
            )

        return _check

    @asset_check(
        asset="hash_dictionaries",
        name="train_serve_consistency",
        blocking=True,
        description="A sample of values (every kept value, observed OOV values, never-seen strings, null, "
        "empty) encodes identically through the training path (DuckDB SQL) and the serving path "
        "(Python HashEncoder), and the published version file equals the current dictionary.",
    )
    def hash_train_serve_consistency(storage: StorageResource) -> dg.AssetCheckResult:
        table = read_arrow(storage.partition_path("hash_dictionaries"))
        encoder = hashing.HashEncoder.from_table(table)
        published = read_arrow(storage.hash_dictionary_version_path(encoder.version))
        rng = random.Random(0)
        mismatches, sampled = {}, 0
        con = duckdb_connect()
        con.register("dictionary", table)
        for field in sorted(set(table.column("field").to_pylist())):
            values = [
                v
                for f, v in zip(table.column("field").to_pylist(), table.column("value").to_pylist(), strict=False)
                if f == field
            ]
            sample = values[:500] + [f"never-seen-{field}-{rng.random()}" for _ in range(50)] + [None, ""]
            con.register(
                "sample",
                pa.table({"value": pa.array(sample, pa.string()), "pos": pa.array(range(len(sample)), pa.int64())}),
            )
            sql_idx = [
                r[0]
                for r in con.execute(
                    f"SELECT value_idx FROM ({hashing.encode_table_sql('dictionary', 'sample', field, 'value', encoder.n_buckets)}) "
                    "ORDER BY pos"
                ).fetchall()
            ]
            py_idx = encoder.encode_many(field, sample).tolist()
            bad = sum(a != b for a, b in zip(sql_idx, py_idx, strict=False))
            sampled += len(sample)
            if bad:
                mismatches[field] = bad

        def kept(t):
            cols = [t.column(c).to_pylist() for c in ("field", "value", "index", "kept")]
            return sorted((f, v, i) for f, v, i, k in zip(*cols, strict=False) if k)

        same_version = kept(published) == kept(table)
        return dg.AssetCheckResult(
            passed=not mismatches and same_version,
            metadata={
                "values_checked": sampled,
                "mismatches": dg.MetadataValue.json(mismatches),
                "version": encoder.version,
            },
        )

    return merged(
        [c for r in feature_audit.RULES for c in _checks_for(r)]
        + [
            hash_train_serve_consistency,
            interactions_consistent_with_raw,
            user_stats_consistent,
            sequences_bounded,
            _id_dictionary_check("user_id_dictionary", "user_daily_stats", "user_id"),
            _id_dictionary_check("item_id_dictionary", "item_daily_stats", "item_id"),
        ]
    )
