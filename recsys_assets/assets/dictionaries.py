"""Dictionaries: append-only id dictionaries (users, items) and hash dictionaries for
categorical features. Unpartitioned: each materialization extends the previous version."""

import dagster as dg
import pyarrow as pa

from recsys_assets.assets import ownership
from recsys_assets.core import dictionaries, hashing
from recsys_assets.core.ingest import read_sql
from recsys_assets.core.storage import file_sha256, read_arrow, write_parquet_atomic
from recsys_assets.core.tables import bind, connect
from recsys_assets.settings import Settings
from resources import FeatureSettings, StorageResource, WarehouseResource

KINDS = {"duckdb", "parquet"}


def _id_dictionary_asset(name: str, source: dictionaries.IdSource, entity: str):
    @dg.asset(
        name=name,
        kinds=KINDS,
        deps=[source.daily_table, source.entity_table],
        **ownership.layer("dictionaries"),
        description=f"Contiguous integer index for every {entity} id, used by every matrix and model. Append-only: "
        "an index never changes once assigned; new ids get the next indices in (first_seen_day, id) "
        "order; each entry records first/last seen day and interaction count.",
    )
    def _asset(storage: StorageResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
        out = storage.partition_path(name)
        daily = sorted((storage.lake_dir / source.daily_table).glob("*.parquet"))
        entity_file = storage.partition_path(source.entity_table)
        if not entity_file.exists():
            raise dg.Failure(f"{name} needs {source.entity_table}; materialize it first.")
        stats = dictionaries.update_id_dictionary(source, out, daily, entity_file, out)
        warehouse.refresh_catalog()
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": stats["entries"],
                "new_entries": stats["new_entries"],
                "days_read": len(daily),
                "version": file_sha256(out)[:16],
                "path": dg.MetadataValue.path(str(out)),
            }
        )

    return _asset


user_id_dictionary = _id_dictionary_asset("user_id_dictionary", dictionaries.USERS, "user")
item_id_dictionary = _id_dictionary_asset("item_id_dictionary", dictionaries.ITEMS, "item")

HASH_FIELDS = ("country", "ui_language", "device_type", "surface", "genres", "tags")


@dg.asset(
    kinds=KINDS,
    deps=["raw_users", "raw_items", "categorical_daily_counts"],
    **ownership.layer("dictionaries"),
    description="Hash dictionaries of the categorical features (" + ", ".join(HASH_FIELDS) + "): per field, values "
    "seen at least hash_min_count times keep a stable index, the rest share hash_oov_buckets MD5 buckets "
    "(the same in SQL and Python, in every process). One row per value with its count, bucket and bucket "
    "collisions; append-only, versioned by what the encoding is.",
)
def hash_dictionaries(
    storage: StorageResource, warehouse: WarehouseResource, features: FeatureSettings
) -> dg.MaterializeResult:
    out = storage.partition_path("hash_dictionaries")
    con = connect()
    try:
        bind(con, "users", [storage.partition_path("raw_users")], "raw_users")
        bind(con, "items", [storage.partition_path("raw_items")], "raw_items")
        bind(
            con,
            "daily_counts",
            sorted((storage.lake_dir / "categorical_daily_counts").glob("*.parquet")),
            "categorical_daily_counts",
        )
        counts = con.sql(read_sql("hash_dictionary_counts.sql")).to_arrow_table()
    finally:
        con.close()
    previous = read_arrow(out) if out.exists() else None
    table = hashing.build_hash_dictionary(
        counts, previous, min_count=features.hash_min_count, n_buckets=features.hash_oov_buckets
    )
    stats = hashing.dictionary_stats(table)
    con = connect()
    try:
        # The exported table carries each field's OOV rate next to the per-value counts and collisions.
        con.register("dictionary_values", table)
        con.register(
            "field_stats",
            pa.Table.from_pylist([{"field": s["field"], "field_oov_rate": float(s["oov_rate"])} for s in stats]),
        )
        con.execute(
            "CREATE TEMP VIEW dictionary AS SELECT d.*, f.field_oov_rate FROM dictionary_values AS d "
            "JOIN field_stats AS f USING (field) ORDER BY d.field, d.index, d.value"
        )
        write_parquet_atomic(con, "SELECT * FROM dictionary", out)
        version = table.column("version")[0].as_py()
        versioned = storage.hash_dictionary_version_path(version)
        if not versioned.exists():
            write_parquet_atomic(con, "SELECT * FROM dictionary", versioned)
    finally:
        con.close()
    warehouse.refresh_catalog()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.num_rows,
            "version": version,
            "max_oov_rate": max(s["oov_rate"] for s in stats),
            "field_stats": dg.MetadataValue.md(
                "| field | kept | OOV values | OOV rate | max bucket collisions |\n|---|---|---|---|---|\n"
                + "\n".join(
                    f"| {s['field']} | {s['kept_values']} | {s['oov_values']} | {s['oov_rate']:.4f} | "
                    f"{s['max_bucket_collisions']} |"
                    for s in stats
                )
            ),
            "path": dg.MetadataValue.path(str(out)),
        }
    )


dictionary_assets = [user_id_dictionary, item_id_dictionary, hash_dictionaries]


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    """Unpartitioned: the same assets whatever the partitions."""
    return dictionary_assets, []
