"""Build a DuckDB table from an SQL file in sql/ over named input relations, and write it
as one atomic Parquet partition.

SQL files refer to their inputs by relation name (`impressions`, `interactions`,
`stats_window`, ...); this module binds each name to a list of Parquet files, or, when no
file exists yet (the first days of a window), to an empty relation with the right schema.
Schemas of empty relations come from the contract for raw tables and from running the
producing SQL over empty inputs for derived ones, so no schema is written twice.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import duckdb

from recsys_assets.core.contract import BY_NAME
from recsys_assets.core.ingest import read_sql
from recsys_assets.core.storage import duckdb_connect, write_parquet_atomic

# Derived tables: their SQL file and which stored table each input relation name reads.
DERIVED = {
    "interactions": (
        "interactions.sql",
        {"impressions": "raw_impressions", "events": "raw_events", "watches": "raw_watch_stats"},
    ),
    "user_daily_stats": ("user_daily_stats.sql", {"interactions": "interactions"}),
    "item_daily_stats": ("item_daily_stats.sql", {"interactions": "interactions"}),
    "user_genre_daily": ("user_genre_daily.sql", {"interactions": "interactions", "items": "raw_items"}),
    "categorical_daily_counts": (
        "categorical_daily_counts.sql",
        {"interactions": "interactions", "items": "raw_items", "users": "raw_users"},
    ),
}
# Parameter values used only to derive schemas of empty relations.
SCHEMA_PARAMS = {"day": "2000-01-01", "min_pos_completion": 0.6, "like_is_positive": True, "history_partition": False}


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb_connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _params_for(sql: str, params: dict) -> dict:
    """Only the parameters the statement mentions (DuckDB rejects unused named ones)."""
    return {k: v for k, v in params.items() if f"${k}" in sql}


@cache
def empty_select(table: str) -> str:
    """A zero-row SELECT with the exact column names and types of a stored table."""
    if table.startswith("raw_") and table.removeprefix("raw_") in BY_NAME:
        fields = BY_NAME[table.removeprefix("raw_")].fields
        return "SELECT " + ", ".join(f"CAST(NULL AS {f.duckdb_type}) AS {f.name}" for f in fields) + " LIMIT 0"
    sql_file, inputs = DERIVED[table]
    con = connect()
    try:
        for name, source in inputs.items():
            con.execute(f"CREATE TEMP VIEW {name} AS {empty_select(source)}")
        sql = read_sql(sql_file)
        columns = con.execute(f"DESCRIBE {sql}", _params_for(sql, SCHEMA_PARAMS)).fetchall()
    finally:
        con.close()
    return "SELECT " + ", ".join(f'CAST(NULL AS {c[1]}) AS "{c[0]}"' for c in columns) + " LIMIT 0"


def bind(con: duckdb.DuckDBPyConnection, name: str, files: list[Path], table: str) -> None:
    """Make relation `name` read `files` (Parquet of stored `table`), or be empty if none."""
    if files:
        listing = ", ".join(f"'{f}'" for f in files)
        scan = f"SELECT * FROM read_parquet([{listing}], union_by_name = true)"
        if table.startswith("raw_") and table.removeprefix("raw_") in BY_NAME:
            # a partition written under an older contract version lacks the newer (optional)
            # columns: they read as NULL, so an upgraded data root needs no re-ingestion
            scan = f"({empty_select(table)}) UNION ALL BY NAME ({scan})"
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {scan}")
    else:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {empty_select(table)}")


def build_table(sql_file: str, inputs: dict[str, tuple[str, list[Path]]], params: dict, out_path: Path) -> int:
    """Run sql/<sql_file> with `inputs` {relation name: (stored table, files)} bound and write
    the result atomically to `out_path`. Returns the row count."""
    con = connect()
    try:
        for name, (table, files) in inputs.items():
            bind(con, name, files, table)
        sql = read_sql(sql_file)
        con.execute(f"CREATE TEMP TABLE result AS {sql}", _params_for(sql, params))
        write_parquet_atomic(con, "SELECT * FROM result", out_path)
        row = con.execute("SELECT count(*) FROM result").fetchone()
        assert row is not None  # an aggregate query returns one row
        return row[0]
    finally:
        con.close()
