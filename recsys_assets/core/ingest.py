"""Ingestion of one landing file into loaded rows and quarantined rows.

Python only splits the file into lines (so it can cap line size, catch invalid UTF-8
and keep line numbers); DuckDB parses and validates every line against the contract in
bulk. Every line read ends up either loaded or quarantined with a reason.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from recsys_assets.core.contract import TableContract
from recsys_assets.core.storage import write_parquet_atomic

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
DEFAULT_MAX_LINE_BYTES = 1 << 20  # 1 MiB: far above any real record, small enough for memory
QUARANTINE_HEAD_BYTES = 64 << 10  # how much of an over-long line the quarantine keeps
_BATCH_LINES = 200_000
_BOM = b"\xef\xbb\xbf"
_NON_STANDARD_NUMBER = re.compile(rb"NaN|Infinity")

QUARANTINE_COLUMNS = "asset VARCHAR, partition VARCHAR, source_file VARCHAR, line_no BIGINT, reason VARCHAR, raw_line VARCHAR"


def read_sql(name: str) -> str:
    return (SQL_DIR / name).read_text()


@dataclass
class IngestResult:
    asset: str
    partition: str
    source_file: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    blank_lines: int = 0
    reasons: Counter = field(default_factory=Counter)

    @property
    def quarantine_rate(self) -> float:
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def _pre_reason(text: str) -> str | None:
    """Catch what DuckDB's JSON reader tolerates but strict JSON forbids (NaN, Infinity)."""
    if not _NON_STANDARD_NUMBER.search(text.encode()):
        return None
    try:
        json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        if "non-standard JSON constant" in str(exc):
            return "malformed_json"
    except RecursionError:  # deeply nested: leave the verdict to DuckDB
        pass
    return None


def read_lines(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> tuple[pa.Table, int]:
    """Split a JSONL file into (line_no, raw_line, pre_reason) rows; returns (table, blank lines).

    A line longer than `max_line_bytes` is never held whole in memory: its head is kept
    and the rest is skipped in bounded reads. CRLF endings and a leading BOM are removed.
    """
    batches, line_nos, texts, reasons = [], [], [], []
    blank = 0
    schema = pa.schema([("line_no", pa.int64()), ("raw_line", pa.string()), ("pre_reason", pa.string())])

    def flush():
        if line_nos:
            batches.append(pa.record_batch([pa.array(line_nos, pa.int64()), pa.array(texts, pa.string()),
                                            pa.array(reasons, pa.string())], schema=schema))
            line_nos.clear(), texts.clear(), reasons.clear()

    with open(path, "rb") as fh:
        line_no = 0
        while True:
            chunk = fh.readline(max_line_bytes + 1)
            if not chunk:
                break
            line_no += 1
            reason = None
            if len(chunk) > max_line_bytes and not chunk.endswith(b"\n"):
                head = chunk[:QUARANTINE_HEAD_BYTES]
                while (rest := fh.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                text, reason = head.decode("utf-8", "backslashreplace"), "line_too_long"
            else:
                if line_no == 1 and chunk.startswith(_BOM):
                    chunk = chunk[len(_BOM):]
                chunk = chunk.rstrip(b"\r\n")
                if not chunk.strip():
                    blank += 1
                    continue
                try:
                    text = chunk.decode("utf-8")
                except UnicodeDecodeError:
                    text, reason = chunk.decode("utf-8", "backslashreplace"), "invalid_utf8"
                if reason is None:
                    reason = _pre_reason(text)
            line_nos.append(line_no)
            texts.append(text)
            reasons.append(reason)
            if len(line_nos) >= _BATCH_LINES:
                flush()
    flush()
    return pa.Table.from_batches(batches, schema=schema), blank


_JSON_TYPE_OK = {
    "int": "{jt} IN ('BIGINT', 'UBIGINT') AND TRY_CAST({raw} AS BIGINT) IS NOT NULL",
    "float": "{jt} IN ('BIGINT', 'UBIGINT', 'DOUBLE')",
    "string": "{jt} = 'VARCHAR'",
    "timestamp": "{jt} = 'VARCHAR'",
    "string_list": "{jt} = 'ARRAY' AND coalesce(list_bool_and(list_transform("
                   "TRY_CAST(j->'$.{name}' AS JSON[]), lambda x: json_type(x) = 'VARCHAR')), true)",
    "json": "{jt} = 'OBJECT'",
}
_VALUE = {
    "int": "CAST({raw} AS BIGINT)",
    "float": "CAST({raw} AS DOUBLE)",
    "string": "{raw}",
    "timestamp": "TRY_CAST({raw} AS TIMESTAMPTZ)",
    "string_list": "list_transform(CAST(j->'$.{name}' AS JSON[]), lambda x: x->>'$')",
    "json": "CAST(j->'$.{name}' AS JSON)",
}
# ISO-8601 with an explicit offset; without one DuckDB would assume the session zone.
_OFFSET_RE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)$"


def validation_sql(contract: TableContract, partition_day: date | None) -> str:
    """SQL over relation `lines` giving one typed column per field and `row_reason`."""
    typed_cols, type_reasons, domain_reasons = [], [], []
    for f in contract.fields:
        jt, raw = f"jt_{f.name}", f"(j->>'$.{f.name}')"
        ok = _JSON_TYPE_OK[f.type].format(jt=jt, raw=raw, name=f.name)
        value = _VALUE[f.type].format(raw=raw, name=f.name)
        present = f"coalesce({jt}, 'NULL') <> 'NULL'"
        if f.type == "timestamp":
            ok_ts = f"regexp_matches({raw}, '{_OFFSET_RE}') AND {value} IS NOT NULL"
            typed_cols.append(f"CASE WHEN {present} AND {ok} AND {ok_ts} THEN {value} END AS {f.name}")
            type_reasons.append(f"CASE WHEN {present} AND {ok} AND NOT ({ok_ts}) THEN 'bad_timestamp:{f.name}' END")
        else:
            typed_cols.append(f"CASE WHEN {present} AND {ok} THEN {value} END AS {f.name}")
        if f.required:
            type_reasons.append(f"CASE WHEN NOT {present} THEN 'missing_required:{f.name}' END")
        type_reasons.append(f"CASE WHEN {present} AND NOT ({ok}) THEN 'wrong_type:{f.name}' END")
        if f.domain_sql:
            domain_reasons.append(
                f"CASE WHEN {f.name} IS NOT NULL AND NOT coalesce({f.domain_sql}, false) THEN 'out_of_domain:{f.name}' END")
    for reason, rule in contract.row_rules:
        domain_reasons.append(f"CASE WHEN NOT coalesce({rule}, true) THEN '{reason}' END")
    if contract.time_field and partition_day is not None:
        t = contract.time_field
        domain_reasons.append(
            f"CASE WHEN {t} IS NOT NULL AND CAST(timezone('UTC', {t}) AS DATE) <> DATE '{partition_day.isoformat()}' "
            f"THEN 'outside_partition:{t}' END")
    json_types = ",\n        ".join(f"json_type(j, '$.{f.name}') AS jt_{f.name}" for f in contract.fields)
    field_names = ", ".join(f.name for f in contract.fields)
    return f"""
WITH parsed AS (
    SELECT line_no, raw_line, pre_reason,
           CASE WHEN pre_reason IS NULL AND json_valid(raw_line) THEN CAST(raw_line AS JSON) END AS j
    FROM lines
), typed AS (
    SELECT line_no, raw_line, pre_reason, j, j IS NOT NULL AS is_json, json_type(j) AS json_kind,
        {json_types}
    FROM parsed
), valued AS (
    SELECT line_no, raw_line, pre_reason, is_json, json_kind,
        {", ".join(typed_cols)},
        [{", ".join(type_reasons)}] AS type_reasons
    FROM typed
)
SELECT line_no, raw_line, {field_names},
    CASE
        WHEN pre_reason IS NOT NULL THEN pre_reason
        WHEN NOT is_json THEN 'malformed_json'
        WHEN json_kind <> 'OBJECT' THEN 'not_an_object'
        ELSE nullif(array_to_string(list_filter(
            type_reasons || [{", ".join(domain_reasons) or "NULL"}], lambda r: r IS NOT NULL), '; '), '')
    END AS row_reason
FROM valued
"""


def _reference_sql(contract: TableContract, known_ids: dict[str, str]) -> tuple[str, str]:
    """LEFT JOINs against the dimension snapshots and the reasons they yield."""
    joins, reasons = [], []
    for ref in contract.references:
        entity = ref.removesuffix("_id")  # user / item
        source = known_ids[ref]
        joins.append(
            f"LEFT JOIN (SELECT DISTINCT {ref} AS known_{entity} FROM read_parquet('{source}')) AS k_{entity} "
            f"ON ranked.{ref} = k_{entity}.known_{entity}")
        reasons.append(f", CASE WHEN ranked.{ref} IS NOT NULL AND known_{entity} IS NULL THEN 'unknown_{entity}' END")
    return "\n".join(joins), "\n        ".join(reasons)


def ingest_file(
    contract: TableContract,
    landing_file: Path,
    source_name: str,
    partition: str,
    partition_day: date | None,
    data_path: Path,
    quarantine_path: Path,
    known_ids: dict[str, str] | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> IngestResult:
    """Validate one landing file and atomically write its loaded and quarantined rows.

    `known_ids` maps "user_id"/"item_id" to the Parquet path of the dimension snapshot
    used for reference checks. Re-running replaces both files, so it never duplicates.
    """
    missing_refs = [r for r in contract.references if not (known_ids or {}).get(r)]
    if missing_refs:
        raise ValueError(f"{contract.asset_name}: reference check needs the snapshot for {missing_refs}")
    lines, blank = read_lines(landing_file, max_line_bytes)
    result = IngestResult(contract.asset_name, partition, source_name, rows_read=lines.num_rows, blank_lines=blank)

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("lines", lines)
        con.execute(f"CREATE TEMP TABLE validated AS {validation_sql(contract, partition_day)}")
        joins, reasons = _reference_sql(contract, known_ids or {})
        checked = read_sql("raw_table_rows.sql").format(
            id_field=contract.id_field, reference_joins=joins, reference_reasons=reasons)
        con.execute(f"CREATE TEMP TABLE checked AS {checked}")

        fields = ", ".join(f"CAST({f.name} AS {f.duckdb_type}) AS {f.name}" for f in contract.fields)
        write_parquet_atomic(con, f"SELECT {fields} FROM checked WHERE reason IS NULL ORDER BY line_no", data_path)
        quarantine = (
            f"SELECT CAST(? AS VARCHAR) AS asset, CAST(? AS VARCHAR) AS partition, CAST(? AS VARCHAR) AS source_file, "
            f"line_no, reason, raw_line FROM checked WHERE reason IS NOT NULL ORDER BY line_no")
        con.execute("CREATE TEMP TABLE quarantined AS " + quarantine, [contract.asset_name, partition, source_name])
        write_parquet_atomic(con, "SELECT * FROM quarantined", quarantine_path)

        for reason, n in con.execute("SELECT reason, count(*) FROM quarantined GROUP BY ALL").fetchall():
            result.reasons[reason] = n
        result.rows_quarantined = sum(result.reasons.values())
        result.rows_loaded = con.execute("SELECT count(*) FROM checked WHERE reason IS NULL").fetchone()[0]
    finally:
        con.close()
    if result.rows_loaded + result.rows_quarantined != result.rows_read:  # the nothing-is-lost invariant
        raise AssertionError(f"{landing_file}: read {result.rows_read} != loaded + quarantined")
    return result
