"""Atomic Parquet partitions and the DuckDB catalog over them.

Every asset partition is one Parquet file. A writer never touches the visible file: it
writes a temporary file in the same folder and publishes it with os.replace, which is
atomic on POSIX, so readers see the old file or the new one, never half of one. Parallel
processes write different files and never share a DuckDB database, so nothing can fail
on a DuckDB lock.

The data root may also be an object-store URL (s3://bucket/prefix). Paths under it are
UPath objects (the pathlib API over fsspec), DuckDB reads them through the same fsspec
filesystem registered on its connection, and a partition is published by one PUT of a
finished local file: an object store shows an object complete or not at all, which is
the guarantee os.replace gives locally. Credentials and endpoint come only from the
environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, cast

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

# Several processes write to one root: a cached listing would hide files another process
# published after this one listed the folder, so fsspec's listing cache stays off.
REMOTE_STORAGE_OPTIONS: dict[str, Any] = {"use_listings_cache": False}
_remote_filesystems: dict[str, Any] = {}  # protocol -> fsspec filesystem in use by this process


def is_remote(location: Any) -> bool:
    """True for an object-store URL such as s3://bucket/prefix (file:// counts as local)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def root_path(location: str) -> Path:
    """A local folder (resolved) or, for a URL, a UPath whose filesystem DuckDB will use too."""
    if not is_remote(location):
        return Path(location.removeprefix("file://")).resolve()
    path = UPath(location, **REMOTE_STORAGE_OPTIONS)
    _remote_filesystems.setdefault(path.protocol, path.fs)
    # The layers take a Path; a UPath has the same API (it is not a pathlib.Path subclass).
    return cast(Path, path)


def as_upath(path: Path) -> UPath:
    """A remote path (is_remote) as the UPath root_path made it, for its fs and bucket path."""
    return cast("UPath", path)


# One in-memory database per process, (pid, database): opening a DuckDB database costs ~25 ms
# and a step opens one per partition and table, a cursor on a shared one ~0.3 ms. A cursor is
# a connection of its own (its temp views, registered tables and TimeZone are private).
_memory_database: tuple[int, duckdb.DuckDBPyConnection] | None = None
_memory_database_lock = threading.Lock()


def not_a_regular_file(path: Path) -> str | None:
    """What `path` is when it is not a regular file ("a directory", "a FIFO (named pipe)",
    ...), without opening it (opening a FIFO blocks until a writer comes); None for a regular
    file (symlinks followed) or one that does not exist."""
    if is_remote(path):
        return None if not path.exists() or path.is_file() else "a directory"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def duckdb_connect(database: str = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that can read (and COPY to) every remote root this process uses.

    DuckDB's own httpfs extension is downloaded at run time and may be unreachable, so
    object stores go through the fsspec filesystem registered here instead."""
    global _memory_database
    if database != ":memory:":
        con = duckdb.connect(database, read_only=read_only)
        _register_filesystems(con)
        return con
    with _memory_database_lock:  # days of one step may open their cursors from several threads
        if _memory_database is None or _memory_database[0] != os.getpid():  # a forked child opens its own
            _memory_database = (os.getpid(), duckdb.connect())
        _register_filesystems(_memory_database[1])  # a database's filesystems are shared by its cursors
        return _memory_database[1].cursor()


def _register_filesystems(con: duckdb.DuckDBPyConnection) -> None:
    registered = set(con.list_filesystems())
    for fs in _remote_filesystems.values():
        names = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        if not names & registered:
            con.register_filesystem(fs)


def local_scratch_dir(root: Path, name: str) -> Path:
    """The folder for a step's private temporary files: under the root when it is local (same
    disk as the output), else the system temp folder. Callers remove what they create."""
    if is_remote(root):
        return Path(tempfile.gettempdir())
    return root / name


def read_arrow(path: Path, columns: list[str] | None = None, filters=None) -> pa.Table:
    """The Parquet file's `columns` (default all), only the rows matching pyarrow `filters`."""
    if is_remote(path):
        return pq.read_table(as_upath(path).path, columns=columns, filters=filters, filesystem=as_upath(path).fs)
    return pq.read_table(path, columns=columns, filters=filters)


def read_polars(path: Path):
    if is_remote(path):
        return pl.read_parquet(io.BytesIO(path.read_bytes()))
    return pl.read_parquet(path)


def scan_polars(paths: list[Path]):
    """A lazy frame over Parquet partitions (local: polars' own scan; remote: read each)."""
    if paths and is_remote(paths[0]):
        return pl.concat([read_polars(p).lazy() for p in paths])
    return pl.scan_parquet([str(p) for p in paths])


def upload_landing(local: Path, remote: Path) -> str:
    """Copy a local landing zone to an object store: snapshots first, then each day with its
    _SUCCESS marker last (a sensor polling the bucket sees a day only once it is whole)."""
    files = sorted(p for p in local.rglob("*") if p.is_file())
    for path in sorted(files, key=lambda p: (len(p.relative_to(local).parts) > 1, p.parent.name, p.name == "_SUCCESS")):
        as_upath(remote).fs.put_file(str(path), as_upath(remote / path.relative_to(local).as_posix()).path)
    return str(remote)


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


def publish_file(staged: Path, final: Path) -> Path:
    """Move a finished file into its visible place in one step: os.replace locally (both live
    under the data root, so on one disk), one server-side copy on an object store (the object
    appears complete or not at all)."""
    if is_remote(final):
        fs = as_upath(final).fs
        fs.copy(as_upath(staged).path, as_upath(final).path)
        fs.rm(as_upath(staged).path)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _publish(staged, final)
    return final


def move_file(source: Path, target: Path) -> Path:
    """Rename a file within one root (a copy and a delete on an object store)."""
    if is_remote(target):
        fs = as_upath(target).fs
        fs.copy(as_upath(source).path, as_upath(target).path)
        fs.rm(as_upath(source).path)
        return target
    os.replace(source, target)
    return target


def write_parquet_atomic(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> Path:
    """Write the result of `query` to `path` so that it appears complete or not at all."""
    if is_remote(path):
        return _write_parquet_remote(con, query, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        con.execute(f"COPY ({query}) TO '{tmp}' ({PARQUET_OPTIONS})")
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_parquet_remote(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> Path:
    # The object appears only when its single upload completes (a PUT, or a multipart
    # upload's final request): readers never see a partial partition.
    fd, tmp = tempfile.mkstemp(suffix=".parquet", prefix="recsys-upload-")
    os.close(fd)
    try:
        con.execute(f"COPY ({query}) TO '{tmp}' ({PARQUET_OPTIONS})")
        as_upath(path).fs.put_file(tmp, as_upath(path).path)
    finally:
        os.unlink(tmp)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def table_glob(lake_dir: Path, table: str) -> str:
    # ** also matches nested folders, e.g. quarantine/<asset>/<partition>.parquet
    return str(lake_dir / table / "**" / "*.parquet")


def create_views(con: duckdb.DuckDBPyConnection, lake_dir: Path) -> list[str]:
    """Expose every table folder of the lake that has data as a view named after it."""
    created: list[str] = []
    if not lake_dir.exists():
        return created
    for table_dir in sorted(p for p in lake_dir.iterdir() if p.is_dir()):
        if not any(table_dir.rglob("*.parquet")):
            continue
        glob = table_glob(lake_dir, table_dir.name)
        # union_by_name: a partition written by an older schema version still reads.
        con.execute(
            f"CREATE OR REPLACE VIEW \"{table_dir.name}\" AS SELECT * FROM read_parquet('{glob}', union_by_name = true)"
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
    if is_remote(catalog_path):
        return False  # a DuckDB file cannot be written in place on an object store (docs/scaling.md)
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
    if is_remote(catalog_path):
        raise ValueError(
            f"the catalog file cannot live on an object store ({catalog_path}); "
            "open the lake with `recsys_assets.core.storage.duckdb_connect` + create_views instead"
        )
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
