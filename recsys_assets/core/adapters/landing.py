"""Writing a landing zone in the contract format from a public dataset (no Dagster import).

Adapters build DuckDB queries over the source files; these helpers stream a query's rows
into one JSONL file per UTC day (``COPY ... PARTITION_BY``, never materialised in Python),
fill the days without records with empty files, mark every day complete and record what
the source was. A landing zone is built in a temporary sibling folder and renamed into
place at the end, so a failed conversion never leaves half a landing zone behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

import duckdb

LOG_TABLES = ("impressions", "events", "watch_stats")
SUCCESS_MARKER = "_SUCCESS"
SOURCE_MANIFEST = "_source.json"  # inside the landing zone: what the adapter read and wrote
ADAPTER_REJECTS = "_adapter_rejects.jsonl"  # every malformed source line, with its reason
SOURCE_MARKER = "SOURCE.json"  # in the data root: which source this warehouse holds


def sql_str(value: str | os.PathLike) -> str:
    """A SQL string literal (paths go into COPY / read_csv, which take no parameters)."""
    return "'" + str(value).replace("'", "''") + "'"


def iso_utc_sql(epoch_seconds_expr: str) -> str:
    """SQL for an ISO-8601 UTC string with an explicit offset, as the contract requires."""
    return f"strftime(make_timestamp(({epoch_seconds_expr}) * 1000000), '%Y-%m-%dT%H:%M:%SZ')"


def day_sql(epoch_seconds_expr: str) -> str:
    return f"strftime(make_timestamp(({epoch_seconds_expr}) * 1000000), '%Y-%m-%d')"


def iso_utc(epoch_seconds: int) -> str:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_day(epoch_seconds: int) -> str:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.timezone.utc).strftime("%Y-%m-%d")


def copy_by_day(con: duckdb.DuckDBPyConnection, query: str, landing: Path, table: str, order_by: str) -> dict[str, int]:
    """Stream `query` (a column `day` = 'YYYY-MM-DD' plus the record's fields) into
    <landing>/<day>/<table>.jsonl, each file in `order_by` order. Returns rows per day.

    `COPY ... PARTITION_BY` does not keep row order inside a partition, so the rows are
    spilled once to a Parquet file sorted by day (DuckDB sorts out of core) and each day
    is then copied with its own ORDER BY; the day's row groups are found by their min/max
    statistics, so a day costs its own rows, not the whole file."""
    spill = landing / f".spill-{table}.parquet"
    con.execute(f"COPY (SELECT * FROM ({query}) ORDER BY day, {order_by}) TO {sql_str(spill)} "
                "(FORMAT parquet, ROW_GROUP_SIZE 100000)")
    counts = dict(con.execute(f"SELECT day, count(*) FROM read_parquet({sql_str(spill)}) GROUP BY day ORDER BY day").fetchall())
    for day in counts:
        dt.date.fromisoformat(day)  # a valid day: safe to inline below
        target = landing / day / f"{table}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT * EXCLUDE (day) FROM read_parquet({sql_str(spill)}) WHERE day = '{day}' "
                    f"ORDER BY {order_by}) TO {sql_str(target)} (FORMAT json)")
    spill.unlink()
    return counts


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


def append_jsonl(path: Path, records: Iterable[dict]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
            n += 1
    return n


def finish_days(landing: Path, first_day: str, last_day: str) -> list[str]:
    """Every day of the range gets all three log files (empty when the source has nothing
    that day, e.g. impressions of a ratings dataset) and a _SUCCESS marker."""
    days = []
    d, end = dt.date.fromisoformat(first_day), dt.date.fromisoformat(last_day)
    while d <= end:
        folder = landing / d.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        for table in LOG_TABLES:
            (folder / f"{table}.jsonl").touch()
        (folder / SUCCESS_MARKER).touch()
        days.append(d.isoformat())
        d += dt.timedelta(days=1)
    return days


def staging_landing(data_root: Path) -> Path:
    """A fresh temporary landing folder next to the final one."""
    data_root.mkdir(parents=True, exist_ok=True)
    final = data_root / "landing"
    if final.exists() and any(final.iterdir()):
        raise FileExistsError(f"{final} already holds a landing zone; use another --data-root "
                              "(one data root holds one source)")
    tmp = data_root / f".landing.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def publish_landing(tmp: Path, data_root: Path, manifest: dict) -> Path:
    (tmp / SOURCE_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    final = data_root / "landing"
    if final.exists():
        final.rmdir()  # empty (checked in staging_landing)
    os.replace(tmp, final)
    return final


def connect(temp_dir: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    # Sorting tens of millions of ratings spills here instead of holding them in memory.
    con.execute(f"SET temp_directory = {sql_str(temp_dir)}")
    con.execute("SET preserve_insertion_order = true")
    return con
