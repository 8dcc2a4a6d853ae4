"""Id dictionaries: contiguous integer indices for users and items, append-only.

An id keeps its index for ever; new ids get the next indices in (first_seen_day, id)
order. So an incremental build over days that arrived in order equals a rebuild from
scratch, and late data for an old day never renumbers anyone (a late new id is appended).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recsys_assets.core.ingest import read_sql
from recsys_assets.core.storage import write_parquet_atomic
from recsys_assets.core.tables import bind, connect

EMPTY_DICTIONARY = (
    "SELECT CAST(NULL AS BIGINT) AS id, CAST(NULL AS BIGINT) AS index, CAST(NULL AS DATE) AS first_seen_day, "
    "CAST(NULL AS DATE) AS last_seen_day, CAST(NULL AS BIGINT) AS frequency LIMIT 0"
)


@dataclass(frozen=True)
class IdSource:
    """Where an entity's ids are observed."""

    daily_table: str  # user_daily_stats / item_daily_stats
    entity_table: str  # raw_users / raw_items
    id_column: str
    since_column: str  # registration / catalog timestamp
    extra_frequency: str  # added to impressions to count interactions


USERS = IdSource("user_daily_stats", "raw_users", "user_id", "registered_at", "organic_watches")
ITEMS = IdSource("item_daily_stats", "raw_items", "item_id", "added_at", "0")


def update_id_dictionary(
    source: IdSource, previous: Path | None, daily_files: list[Path], entity_file: Path, out_path: Path
) -> dict:
    """Merge what the data says about every id into the previous dictionary; write it atomically."""
    con = connect()
    try:
        bind(con, "daily", daily_files, source.daily_table)
        bind(con, "entities", [entity_file], source.entity_table)
        if previous is not None and previous.exists():
            con.execute(f"CREATE TEMP VIEW previous AS SELECT * FROM read_parquet('{previous}')")
        else:
            con.execute(f"CREATE TEMP VIEW previous AS {EMPTY_DICTIONARY}")
        observed = read_sql("id_observed.sql").format(
            id=source.id_column, since=source.since_column, extra=source.extra_frequency
        )
        con.execute(f"CREATE TEMP VIEW observed AS {observed}")
        con.execute(f"CREATE TEMP TABLE result AS {read_sql('id_dictionary.sql')}")
        row = con.execute(
            "SELECT count(*), count(*) - (SELECT count(*) FROM previous), max(index), "
            "count(*) = coalesce(max(index) + 1, 0) AND count(DISTINCT index) = count(*) FROM result"
        ).fetchone()
        assert row is not None  # an aggregate query returns one row
        stats = dict(zip(("entries", "new_entries", "max_index", "contiguous"), row, strict=False))
        if not stats["contiguous"]:
            raise AssertionError(f"{out_path.name}: indices are not contiguous")
        write_parquet_atomic(con, "SELECT * FROM result ORDER BY index", out_path)
        return stats
    finally:
        con.close()
