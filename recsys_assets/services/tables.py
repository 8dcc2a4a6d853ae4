"""Writing a service's rows as one atomic Parquet partition."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from recsys_assets.core.storage import write_parquet_atomic
from recsys_assets.core.tables import connect


def write_rows(rows: list[dict], schema: pa.Schema, path) -> None:
    """Rows with a string `day` column, written with `day` as a DATE."""
    con = connect()
    try:
        con.register("rows", pa.Table.from_pylist(rows, schema=schema))
        write_parquet_atomic(con, "SELECT CAST(day AS DATE) AS day, * EXCLUDE (day) FROM rows", path)
    finally:
        con.close()


def write_frame(frame: pl.DataFrame | pa.Table, path, order_by: str | None = None) -> None:
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    con = connect()
    try:
        con.register("frame", table)
        write_parquet_atomic(con, "SELECT * FROM frame" + (f" ORDER BY {order_by}" if order_by else ""), path)
    finally:
        con.close()
