"""Where the platform's files live: the Parquet lake (one file per asset partition), the
quarantine and the catalog file, with every path checked to stay inside its root."""

from __future__ import annotations

import os
import re
import uuid
from datetime import date
from pathlib import Path

from pydantic import BaseModel

from recsys_assets.core.storage import is_remote, root_path

SNAPSHOT = "snapshot"  # the file name stem of an unpartitioned asset
_TABLE = re.compile(r"^[a-z][a-z0-9_]*$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Characters DuckDB's file globbing treats as a pattern in every path it is given.
_GLOB_CHARACTERS = frozenset("[]*?")


class UnsafePathError(ValueError):
    """A configured path or a name that would place a file outside its root, or break SQL quoting."""


def validate_partition_key(key: str) -> str:
    """A daily partition key (a real YYYY-MM-DD date) or "snapshot"; anything else is refused."""
    if key == SNAPSHOT:
        return key
    try:
        if isinstance(key, str) and _DAY.match(key) and date.fromisoformat(key):
            return key
    except ValueError:
        pass
    raise UnsafePathError(f"invalid partition key {key!r}: expected a date YYYY-MM-DD (or {SNAPSHOT!r})")


def validate_table_name(name: str) -> str:
    if not (isinstance(name, str) and _TABLE.match(name)):
        raise UnsafePathError(f"invalid table name {name!r}: expected lower-case letters, digits and _")
    return name


def validated_root(path: str, what: str) -> Path:
    """The resolved root (a local folder, or a UPath for an object-store URL such as
    s3://bucket/prefix); refused if it contains a quote (paths are quoted into DuckDB SQL) or a glob character
    (DuckDB expands [ ] * ? in every path, even in a list of files)."""
    resolved = root_path(path)
    if "'" in str(resolved) or "\x00" in str(resolved):
        raise UnsafePathError(f"{what} {str(resolved)!r} contains a quote: use a path without ' characters")
    glob = sorted({ch for ch in str(resolved) if ch in _GLOB_CHARACTERS})
    if glob:
        raise UnsafePathError(
            f"{what} {str(resolved)!r} contains the glob character(s) {' '.join(glob)}: DuckDB reads its paths "
            "as patterns, so it would find no files or read a sibling folder's; use a path without "
            f"{' '.join(sorted(_GLOB_CHARACTERS))}"
        )
    return resolved


def ensure_within(path: Path, root: Path, what: str) -> Path:
    """`path` with every symlink followed, refused if it leaves `root`."""
    if is_remote(root):
        # No symlinks on an object store; names are validated before they are joined.
        return path
    real, real_root = path.resolve(), root.resolve()
    if real != real_root and real_root not in real.parents:
        raise UnsafePathError(
            f"{what} {path} resolves to {real}, outside {real_root}: refusing to read or write it "
            "(a symlink or a path that escapes its root)"
        )
    return path


class Lake(BaseModel):
    """Root of everything the platform writes: a folder or an object-store URL
    (s3://bucket/prefix). The Dagster resource StorageResource is this, configurable."""

    data_root: str = "data"

    @property
    def root(self) -> Path:
        return validated_root(self.data_root, "data root")

    @property
    def lake_dir(self) -> Path:
        return self.root / "lake"

    @property
    def catalog_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    def partition_path(self, table: str, partition: str = SNAPSHOT) -> Path:
        """lake/<table>/<partition>.parquet; names are validated and a symlinked folder may
        not lead out of the data root."""
        path = self.lake_dir / validate_table_name(table) / f"{validate_partition_key(partition)}.parquet"
        return ensure_within(path, self.root, f"{table} partition {partition}")

    def report_path(self, report: str, partition: str) -> Path:
        """reports/<report>/<partition>.html: pages people open, beside the lake."""
        path = self.root / "reports" / validate_table_name(report) / f"{validate_partition_key(partition)}.html"
        return ensure_within(path, self.root, f"{report} page {partition}")

    def quarantine_path(self, asset: str, partition: str = SNAPSHOT) -> Path:
        # quarantine/<asset>/<partition>.parquet, exposed as the `quarantine` view
        path = (
            self.lake_dir / "quarantine" / validate_table_name(asset) / f"{validate_partition_key(partition)}.parquet"
        )
        return ensure_within(path, self.root, f"quarantine of {asset} {partition}")

    def staged_path(self, final: Path) -> Path:
        """A fresh file to write and audit a partition bound for `final` (a lake file) in:
        <root>/.staging/<same relative path>.<pid>-<random>, private to this writer (two runs over
        the same day never judge or move each other's file). Outside lake/, so no view, glob or
        reader sees it; under the root, so publishing is a rename on the same disk. A refused one
        is kept as <root>/.staging/<same relative path> (publication.refused_path)."""
        relative = Path(str(final)[len(str(self.root)) :].lstrip("/"))
        return self.root / ".staging" / f"{relative.as_posix()}.{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def existing_partitions(self, table: str, partitions: list[str]) -> list[Path]:
        return [p for p in (self.partition_path(table, k) for k in partitions) if p.exists()]

    def first_partition(self, table: str) -> str | None:
        """The earliest daily partition key of `table` in the lake (None: none yet)."""
        folder = self.lake_dir / validate_table_name(table)
        if not folder.exists():
            return None
        return min((p.stem for p in folder.iterdir() if p.suffix == ".parquet" and _DAY.match(p.stem)), default=None)

    def hash_dictionary_version_path(self, version: str) -> Path:
        """Every hash dictionary version ever published stays readable, so a model can encode
        with the one it was trained on."""
        return self.root / "dictionary_versions" / "hash_dictionaries" / f"{version}.parquet"
