"""Atomic Parquet partitions and the DuckDB catalog over them.

Every asset partition is one Parquet file. A writer never touches the visible file: it
writes a temporary file in the same folder and publishes it with os.replace, which is
atomic on POSIX, so readers see the old file or the new one, never half of one. Parallel
processes write different files and never share a DuckDB database, so nothing can fail
on a DuckDB lock.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import duckdb

PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"


def _temp_sibling(path: Path) -> Path:
    # Starts with a dot and does not end in .parquet, so catalog globs never match it.
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _publish(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_parquet_atomic(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> Path:
    """Write the result of `query` to `path` so that it appears complete or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        con.execute(f"COPY ({query}) TO '{tmp}' ({PARQUET_OPTIONS})")
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def table_glob(lake_dir: Path, table: str) -> str:
    # ** also matches nested folders, e.g. quarantine/<asset>/<partition>.parquet
    return str(lake_dir / table / "**" / "*.parquet")


def create_views(con: duckdb.DuckDBPyConnection, lake_dir: Path) -> list[str]:
    """Expose every table folder of the lake that has data as a view named after it."""
    created = []
    if not lake_dir.exists():
        return created
    for table_dir in sorted(p for p in lake_dir.iterdir() if p.is_dir()):
        if not any(table_dir.rglob("*.parquet")):
            continue
        glob = table_glob(lake_dir, table_dir.name)
        # union_by_name: a partition written by an older schema version still reads.
        con.execute(
            f'CREATE OR REPLACE VIEW "{table_dir.name}" AS '
            f"SELECT * FROM read_parquet('{glob}', union_by_name = true)"
        )
        created.append(table_dir.name)
    return created


def lake_tables(lake_dir: Path) -> list[str]:
    if not lake_dir.exists():
        return []
    return sorted(p.name for p in lake_dir.iterdir() if p.is_dir() and any(p.rglob("*.parquet")))


def refresh_catalog_if_needed(lake_dir: Path, catalog_path: Path) -> bool:
    """Rebuild the catalog only when a lake table has no view yet.

    Views read their folder's glob at query time, so new partitions of a known table need
    no rebuild; skipping it keeps a materialization's cost independent of history length.
    """
    listing = catalog_path.with_name(catalog_path.name + ".tables")
    # The lake's own path is part of the listing: views hold absolute paths, so a moved
    # data root must rebuild them too.
    wanted = [str(lake_dir)] + lake_tables(lake_dir)
    if catalog_path.exists() and listing.exists() and listing.read_text().splitlines() == wanted:
        return False
    views = write_catalog_atomic(lake_dir, catalog_path)
    tmp = _temp_sibling(listing)
    tmp.write_text("\n".join([str(lake_dir)] + views))
    os.replace(tmp, listing)
    return True


def write_catalog_atomic(lake_dir: Path, catalog_path: Path) -> list[str]:
    """Rebuild the DuckDB catalog file (views only) and publish it atomically.

    The catalog holds no data, so rebuilding it is cheap; publishing by rename means a
    user who has the old file open keeps reading it and no writer ever waits on a lock.
    """
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(catalog_path)
    try:
        con = duckdb.connect(str(tmp))
        try:
            views = create_views(con, lake_dir)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        _publish(tmp, catalog_path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
    return views
