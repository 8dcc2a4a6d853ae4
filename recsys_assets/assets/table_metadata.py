"""Table metadata for the UI: a `dagster/column_schema` from an Arrow schema and a small
table preview (`MetadataValue.table`) from a few rows."""

import math

import dagster as dg
import pyarrow as pa

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "large_string": "VARCHAR",
    "double": "DOUBLE",
    "float": "FLOAT",
    "int64": "BIGINT",
    "int32": "INTEGER",
    "int16": "SMALLINT",
    "int8": "TINYINT",
    "bool": "BOOLEAN",
    "date32[day]": "DATE",
}


def column_schema(
    schema: pa.Schema, descriptions: dict[str, str] | None = None, types: dict[str, str] | None = None
) -> dg.TableSchema:
    """The table's columns with DuckDB type names; `types` overrides (e.g. a day stored as DATE)."""
    descriptions, types = descriptions or {}, types or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                f.name,
                types.get(f.name, _DUCKDB_TYPES.get(str(f.type), str(f.type).upper())),
                description=descriptions.get(f.name),
            )
            for f in schema
        ]
    )


def _cell(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item"):  # numpy scalar
        return _cell(value.item())
    return str(value)


def preview(rows: list[dict], columns: list[tuple[str, str]]) -> dg.MetadataValue:
    """A table of `rows` restricted to `columns` [(name, duckdb type)], floats rounded to 4 places."""

    def fmt(v):
        v = _cell(v)
        return round(v, 4) if isinstance(v, float) else v

    return dg.MetadataValue.table(
        records=[dg.TableRecord({name: fmt(row.get(name)) for name, _ in columns}) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, type_) for name, type_ in columns]),
    )
