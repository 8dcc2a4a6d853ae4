"""Storage paths: the Parquet lake (one file per asset partition) and the catalog file."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

SNAPSHOT = "snapshot"  # the file name stem of an unpartitioned asset


class StorageResource(dg.ConfigurableResource):
    """Root of everything the platform writes. Default: $RECSYS_DATA_ROOT or ./data."""

    data_root: str = os.getenv("RECSYS_DATA_ROOT", "data")

    @property
    def root(self) -> Path:
        return Path(self.data_root).resolve()

    @property
    def lake_dir(self) -> Path:
        return self.root / "lake"

    @property
    def catalog_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    def partition_path(self, table: str, partition: str = SNAPSHOT) -> Path:
        return self.lake_dir / table / f"{partition}.parquet"

    def quarantine_path(self, asset: str, partition: str = SNAPSHOT) -> Path:
        # quarantine/<asset>/<partition>.parquet, exposed as the `quarantine` view
        return self.lake_dir / "quarantine" / asset / f"{partition}.parquet"

    def existing_partitions(self, table: str, partitions: list[str]) -> list[Path]:
        return [p for p in (self.partition_path(table, k) for k in partitions) if p.exists()]
