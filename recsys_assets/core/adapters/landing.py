"""Writing a landing zone in the contract format from a public dataset (no Dagster import).

Adapters build DuckDB queries over the source files; these helpers stream a query's rows
into one JSONL file per UTC day (sorted and rendered by DuckDB, written from Arrow batches),
fill the days without records with empty files, mark every day complete and record what
the source was. A landing zone is built in a temporary sibling folder and renamed into
place at the end, so a failed conversion never leaves half a landing zone behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LOG_TABLES = ("impressions", "events", "watch_stats")
SUCCESS_MARKER = "_SUCCESS"
SOURCE_MANIFEST = "_source.json"  # inside the landing zone: what the adapter read and wrote
ADAPTER_REJECTS = "_adapter_rejects.jsonl"  # every malformed source line, with its reason
SOURCE_MARKER = "SOURCE.json"  # in the data root: which source this warehouse holds


def sql_str(value: str | os.PathLike) -> str:
    """A SQL string literal (paths go into COPY / read_csv, which take no parameters)."""
    return "'" + str(value).replace("'", "''") + "'"


def iso_utc_sql(epoch_seconds_expr: str, millis: bool = False) -> str:
    """SQL for an ISO-8601 UTC string with an explicit offset, as the contract requires;
    `millis` keeps the milliseconds of a fractional epoch."""
    fmt = "%Y-%m-%dT%H:%M:%S.%gZ" if millis else "%Y-%m-%dT%H:%M:%SZ"
    return f"strftime(make_timestamp(CAST(round(({epoch_seconds_expr}) * 1000000) AS BIGINT)), '{fmt}')"


def day_sql(epoch_seconds_expr: str) -> str:
    return f"strftime(make_timestamp(CAST(round(({epoch_seconds_expr}) * 1000000) AS BIGINT)), '%Y-%m-%d')"


def iso_utc(epoch_seconds: int) -> str:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_day(epoch_seconds: int) -> str:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.UTC).strftime("%Y-%m-%d")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copy_by_day(
    con: duckdb.DuckDBPyConnection, query: str, landing: Path, table: str, order_by: str, batch_rows: int = 1 << 18
) -> dict[str, int]:
    """Stream `query` (a column `day` = 'YYYY-MM-DD' plus the record's fields) into
    <landing>/<day>/<table>.jsonl, each file in `order_by` order. Returns rows per day.

    DuckDB sorts (out of core) and renders each record as one JSON line; Python receives
    ordered Arrow batches and writes each day's slice of the batch's string buffer as is,
    so no per-row Python work and at most one batch in memory. (`COPY ... PARTITION_BY`
    would be one statement, but it does not keep row order inside a partition.)"""
    cols = [name for name, *_ in con.execute(f"DESCRIBE ({query})").fetchall() if name != "day"]
    record = "{" + ", ".join(f"{sql_str(c)}: {quote_ident(c)}" for c in cols) + "}"
    reader = con.sql(
        f"SELECT day, to_json({record})::VARCHAR || chr(10) AS line FROM ({query}) ORDER BY day, {order_by}"
    ).to_arrow_reader(batch_rows)
    counts: dict[str, int] = {}
    out, out_day = None, None
    try:
        for batch in reader:
            days = batch.column(0)
            lines = batch.column(1)
            _, offset_buf, data_buf = lines.buffers()
            width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
            # absolute positions of each line in the data buffer
            offsets = np.frombuffer(offset_buf, dtype=width)[lines.offset : lines.offset + len(lines) + 1]
            data = memoryview(data_buf)
            # rows are sorted by day: a day is one run; its starts are where the value changes
            changes = (
                np.flatnonzero(pc.not_equal(days.slice(1), days.slice(0, len(days) - 1)).to_numpy(zero_copy_only=False))
                + 1
            )
            bounds = [0, *changes.tolist(), len(days)]
            for start, end in zip(bounds[:-1], bounds[1:], strict=False):
                day = days[start].as_py()
                if day != out_day:
                    if out is not None:
                        out.close()
                    dt.date.fromisoformat(day)
                    folder = landing / day
                    folder.mkdir(parents=True, exist_ok=True)
                    out, out_day = open(folder / f"{table}.jsonl", "ab"), day
                assert out is not None  # opened above at the run's first day
                out.write(data[int(offsets[start]) : int(offsets[end])])
                counts[day] = counts.get(day, 0) + end - start
    finally:
        if out is not None:
            out.close()
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


def finish_days(landing: Path, first_day: str, last_day: str, days_with_data_only: bool = False) -> list[str]:
    """Every day of the range gets all three log files (empty when the source has nothing
    that day, e.g. impressions of a ratings dataset) and a _SUCCESS marker; with
    `days_with_data_only`, only the days that have a folder already (a sparse landing zone:
    SOURCE.json says `empty_days: absent`, and a day without a folder is a day without data)."""
    days = []
    d, end = dt.date.fromisoformat(first_day), dt.date.fromisoformat(last_day)
    while d <= end:
        folder = landing / d.isoformat()
        if days_with_data_only and not folder.is_dir():
            d += dt.timedelta(days=1)
            continue
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
        raise FileExistsError(
            f"{final} already holds a landing zone; use another --data-root (one data root holds one source)"
        )
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
    con.execute("SET memory_limit = '512MB'")  # bounded: sorts spill to temp_directory
    con.execute("SET enable_progress_bar = false")
    return con
