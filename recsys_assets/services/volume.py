"""Volume of raw daily log partitions (rows, users, items) and its verdict against the
trailing partitions in the lake."""

from __future__ import annotations

from pathlib import Path

from recsys_assets.core.storage import duckdb_connect
from recsys_assets.core.volume import VolumeVerdict, volume_verdict
from recsys_assets.services.lake import Lake


def partition_volume(lake: Lake, table: str, day: str, path: Path | None = None) -> dict[str, int]:
    path = path or lake.partition_path(table, day)
    con = duckdb_connect()
    try:
        counts = con.execute(
            "SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id) FROM read_parquet($path)",
            {"path": str(path)},
        ).fetchone()
        assert counts is not None  # an aggregate returns one row
        rows, users, items = counts
    finally:
        con.close()
    return {"rows": int(rows), "users": int(users), "items": int(items)}


def check_volume(
    lake: Lake,
    table: str,
    day: str,
    *,
    window: int,
    min_ratio: float,
    min_history: int,
    exclude: frozenset[str] = frozenset(),
    current: Path | None = None,
) -> VolumeVerdict:
    """The verdict of `table`'s partition `day` against up to `window` earlier daily partitions
        in the lake (`exclude`: partitions that are no norm, such as a history partition; `current`: the
    file to judge instead of the published partition, such as a staged one)."""
    folder = lake.lake_dir / table
    earlier = sorted(
        p.stem
        for p in (folder.iterdir() if folder.exists() else [])
        if p.suffix == ".parquet" and p.stem < day and p.stem not in exclude and not p.name.startswith(".")
    )[-window:]
    trailing = [partition_volume(lake, table, d) for d in earlier]
    return volume_verdict(day, partition_volume(lake, table, day, current), trailing, min_ratio, min_history)
