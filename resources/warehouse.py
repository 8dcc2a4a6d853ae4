"""The DuckDB warehouse: a query engine over the Parquet lake, plus a catalog file.

No asset ever writes into a shared DuckDB database (one writer process per file is all
DuckDB allows, and backfills run partitions in parallel processes). Instead every
connection is in-memory with one view per lake table, and `warehouse.duckdb` is a small
file of views that is rebuilt and swapped in atomically for people and tools to open.
"""

from __future__ import annotations

import dagster as dg
import duckdb

from recsys_assets.core.storage import create_views, duckdb_connect, refresh_catalog_if_needed, write_catalog_atomic
from resources.storage import StorageResource


class WarehouseResource(dg.ConfigurableResource):
    storage: StorageResource

    def connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb_connect()
        con.execute("SET TimeZone = 'UTC'")
        create_views(con, self.storage.lake_dir)
        return con

    def refresh_catalog(self) -> bool:
        """Give every lake table a view in the catalog file (rebuilt only when a table is new)."""
        return refresh_catalog_if_needed(self.storage.lake_dir, self.storage.catalog_path)

    def rebuild_catalog(self) -> list[str]:
        return write_catalog_atomic(self.storage.lake_dir, self.storage.catalog_path)
