"""Ingestion of one landing file into loaded rows and quarantined rows.

Python only splits the file into lines (so it can cap line size, catch invalid UTF-8
and keep line numbers); DuckDB parses and validates every line against the contract in
bulk. Every line read ends up either loaded or quarantined with a reason.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_assets.core.contract import TableContract
from recsys_assets.core.storage import duckdb_connect, not_a_regular_file, write_parquet_atomic

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
DEFAULT_MAX_LINE_BYTES = 1 << 20  # 1 MiB: far above any real record, small enough for memory
QUARANTINE_HEAD_BYTES = 64 << 10  # how much of an over-long line the quarantine keeps
_BOM = b"\xef\xbb\xbf"

QUARANTINE_COLUMNS = (
    "asset VARCHAR, partition VARCHAR, source_file VARCHAR, line_no BIGINT, reason VARCHAR, raw_line VARCHAR"
)


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


# What DuckDB's JSON reader accepts and strict JSON (RFC 8259) does not: a comma before a
# closing bracket, and NaN / Infinity / nan / inf / -Inf / INFINITY ... as a value.
_TRAILING_COMMA = re.compile(r",(\s*[\]}])")
_NON_STANDARD_NUMBER = re.compile(r"([:\[,]\s*)[+-]?(?:nan|inf(?:inity)?)\b", re.IGNORECASE)
# The SQL pre-filter for both (a superset: lines it finds are re-checked by Python's parser).
_SUSPECT_SQL = r"regexp_matches(raw_line, '(?i)([:\[,]\s*[+-]?(nan|inf))|(,\s*[\]}])')"


def strict_json_reason(text: str) -> str | None:
    """None when `text` is strict JSON (or not JSON at all: DuckDB gives that its reason);
    else the precise reason: trailing_comma, non_standard_number (both, joined by '; ',
    when the line has both) or malformed_json for any other leniency."""
    try:
        json.loads(text, parse_constant=_reject_constant)
        return None
    except RecursionError:  # deeply nested: leave the verdict to DuckDB
        return None
    except ValueError:
        pass
    # Which repair makes it strict JSON tells the reason (a repair that only touches a string's
    # contents repairs nothing, so look-alikes inside strings never decide it).
    without_literals = _NON_STANDARD_NUMBER.sub(r"\1null", text)
    without_commas = _TRAILING_COMMA.sub(r"\1", text)
    for repaired, reason in (
        (without_literals, "non_standard_number"),
        (without_commas, "trailing_comma"),
        (_NON_STANDARD_NUMBER.sub(r"\1null", without_commas), "trailing_comma; non_standard_number"),
    ):
        if repaired != text and _is_strict_json(repaired):
            return reason
    return "malformed_json"


def _is_strict_json(text: str) -> bool:
    try:
        json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False
    return True


def _flag_non_standard_json(con: duckdb.DuckDBPyConnection, lines: pa.Table) -> pa.Table:
    """DuckDB's JSON reader accepts trailing commas and NaN/Infinity literals in any spelling,
    strict JSON does not: the few lines that may hold them are re-checked exactly by Python's
    parser and get their pre_reason (trailing_comma, non_standard_number)."""
    suspects = con.execute(f"""SELECT line_no, raw_line FROM file_lines WHERE pre_reason IS NULL AND NOT is_blank
                               AND {_SUSPECT_SQL}""").fetchall()
    flagged = [(line_no, reason) for line_no, text in suspects if (reason := strict_json_reason(text))]
    if not flagged:
        return lines
    flagged.sort()
    positions = np.searchsorted(lines.column("line_no").to_numpy(), [line_no for line_no, _ in flagged])
    mask = np.zeros(lines.num_rows, dtype=bool)
    mask[positions] = True
    pre_reason = pc.replace_with_mask(
        lines.column("pre_reason").combine_chunks(), pa.array(mask), pa.array([r for _, r in flagged], pa.string())
    )
    return lines.set_column(lines.schema.get_field_index("pre_reason"), "pre_reason", pre_reason)


def _take_in_order(column: pa.ChunkedArray, rows: pa.Array) -> pa.Array:
    """column[rows] for ascending `rows`, chunk by chunk: ChunkedArray.take would first
    concatenate every chunk (a copy of the whole file's text) even for a few rows."""
    rows = np.asarray(rows.to_numpy(zero_copy_only=False), np.int64) if len(rows) else np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum([len(chunk) for chunk in column.chunks])])
    parts = []
    for k, chunk in enumerate(column.chunks):
        lo, hi = np.searchsorted(rows, [starts[k], starts[k + 1]])
        if hi > lo:
            parts.append(chunk.take(pa.array(rows[lo:hi] - starts[k])))
    return pa.concat_arrays(parts) if parts else pa.array([], column.type)


class _TooLong(bytes):
    """The head of a line longer than the cap (the rest was skipped unread)."""


def _blocks(fh, max_line_bytes: int, block_bytes: int):
    """Yield the file as byte blocks of whole lines (each ending in a newline), with an
    over-long line replaced by a _TooLong head. Memory stays bounded by
    block_bytes + max_line_bytes, whatever the file holds."""
    head = fh.read(len(_BOM))
    carry = b"" if head == _BOM else head  # a leading byte-order mark is not data
    keep = min(QUARANTINE_HEAD_BYTES, max_line_bytes)  # the same head whatever the block size
    while block := fh.read(block_bytes):
        data = carry + block
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        carry = data[cut:]
        if len(carry) > max_line_bytes:  # a line outgrew the cap: keep its head, skip to its end
            yield _TooLong(carry[:keep])
            carry = b""
            while rest := fh.read(block_bytes):
                newline = rest.find(b"\n")
                if newline >= 0:
                    carry = rest[newline + 1 :]
                    break
    if carry:  # the last line may lack its newline
        yield carry if carry.endswith(b"\n") else carry + b"\n"


def _decode_slow(lines: list[bytes]) -> tuple[list[str], list[str | None]]:
    """Line by line, for the rare blocks that hold invalid UTF-8 or an over-long line."""
    texts: list[str] = []
    reasons: list[str | None] = []
    for raw in lines:
        if isinstance(raw, _TooLong):
            texts.append(raw.decode("utf-8", "backslashreplace"))
            reasons.append("line_too_long")
            continue
        try:
            texts.append(raw.decode("utf-8"))
            reasons.append(None)
        except UnicodeDecodeError:
            texts.append(raw.decode("utf-8", "backslashreplace"))
            reasons.append("invalid_utf8")
    return texts, reasons


_SCHEMA = pa.schema(
    [("line_no", pa.int64()), ("raw_line", pa.string()), ("pre_reason", pa.string()), ("is_blank", pa.bool_())]
)
_BLANK_CANDIDATE_BYTES = 64  # only lines this short are inspected for being whitespace-only


def _blank_mask(texts: pa.StringArray) -> pa.BooleanArray:
    lengths = pc.binary_length(texts).to_numpy(zero_copy_only=False)
    mask = np.zeros(len(texts), dtype=bool)
    for i in np.flatnonzero(lengths <= _BLANK_CANDIDATE_BYTES):
        mask[i] = not texts[i].as_py().strip()
    return pa.array(mask)


def _line_array(data: bytes, ends: np.ndarray) -> pa.StringArray:
    """Arrow strings over `data` (one per line, newline included), zero-copy and unvalidated."""
    offsets = np.concatenate(([0], ends)).astype(np.int32)
    return pa.StringArray.from_buffers(len(ends), pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))


def _fast_block(data: bytes, max_line_bytes: int) -> pa.StringArray | None:
    """Zero-copy Arrow strings (one per line, newline included) if every line is valid
    UTF-8 and under the cap; None sends the block to the per-line path."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1
    if len(ends) and np.diff(ends, prepend=0).max() > max_line_bytes + 1:
        return None
    arr = _line_array(data, ends)
    if not data.isascii():  # ASCII is valid UTF-8: only other blocks need the full check
        try:
            arr.validate(full=True)  # checks UTF-8
        except pa.ArrowInvalid:
            return None
    return arr


def _mixed_block(data: bytes, max_line_bytes: int) -> tuple[pa.StringArray, pa.StringArray]:
    """A block holding invalid UTF-8 or an over-long line: only the lines that are
    over the cap or not ASCII are looked at one by one (decoded as `_decode_slow` does);
    runs of good lines stay zero-copy slices of the block."""
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == 10) + 1
    starts = np.concatenate(([0], ends[:-1]))
    suspect = (ends - starts) > max_line_bytes + 1
    if len(ends):
        suspect |= np.logical_or.reduceat(buf >= 0x80, starts)
    arr = _line_array(data, ends)
    pieces, reasons, prev = [], [], 0
    for i in np.flatnonzero(suspect).tolist():
        raw = data[starts[i] : ends[i] - 1]  # without its newline, like _decode_slow's lines
        if len(raw) > max_line_bytes:
            raw = _TooLong(raw[: min(QUARANTINE_HEAD_BYTES, max_line_bytes)])
        else:
            try:
                raw.decode("utf-8")
                continue  # valid non-ASCII line: it stays in the zero-copy run
            except UnicodeDecodeError:
                pass
        (text,), (reason,) = _decode_slow([raw])
        pieces += [arr.slice(prev, i - prev), pa.array([text], pa.string())]
        reasons += [None] * (i - prev) + [reason]
        prev = i + 1
    pieces.append(arr.slice(prev))
    reasons += [None] * (len(ends) - prev)
    return pa.concat_arrays(pieces), pa.array(reasons, pa.string())


def read_lines(
    path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, block_bytes: int = 16 << 20, first_line_no: int = 1
) -> pa.Table:
    """Split a JSONL file into (line_no, raw_line, pre_reason) rows, in bounded memory.

    Lines keep their line ending (JSON ignores it; ingestion trims it). A leading BOM is
    removed; `is_blank` marks whitespace-only lines. A line over `max_line_bytes` keeps only its head (pre_reason line_too_long);
    invalid UTF-8 is kept with \\xNN escapes (pre_reason invalid_utf8).
    """
    batches, next_line_no = [], first_line_no
    with path.open("rb") if hasattr(path, "open") else open(path, "rb") as fh:
        for block in _blocks(fh, max_line_bytes, block_bytes):
            fast = None if isinstance(block, _TooLong) else _fast_block(block, max_line_bytes)
            if fast is not None:
                texts, reasons = fast, pa.nulls(len(fast), pa.string())
            elif isinstance(block, _TooLong):
                decoded, slow_reasons = _decode_slow([block])
                texts, reasons = pa.array(decoded, pa.string()), pa.array(slow_reasons, pa.string())
            else:
                texts, reasons = _mixed_block(block, max_line_bytes)
            line_nos = pa.array(np.arange(next_line_no, next_line_no + len(texts), dtype=np.int64))
            next_line_no += len(texts)
            batches.append(pa.record_batch([line_nos, texts, reasons, _blank_mask(texts)], schema=_SCHEMA))
    return pa.Table.from_batches(batches, schema=_SCHEMA)


# ISO-8601 with an explicit offset; without one DuckDB would assume the session zone.
# Offsets are at most 23:59 (DuckDB would otherwise accept e.g. +25:00 and shift the day).
# Hours are 00-23: DuckDB reads T24:00:00 as midnight of the next day (another partition).
_OFFSET_RE = r"^\d{4}-\d{2}-\d{2}[T ]([01]\d|2[0-3]):\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)$"
# A field's JSON text `v` is minified JSON, so its JSON type shows in its first character:
# '"' string, '{' object, '[' array, 't'/'f' boolean, anything else a number (JSON null is
# SQL NULL). Per contract type, written with {v} (the JSON text), {k} (is it the wanted
# JSON type), {s} (its SQL text) and {c} (the work done once per value, which both the
# typed value and the rule flags read). These are the cheapest forms measured; each is
# equal to testing the JSON type first (tests/test_ingest.py holds the edge cases):
#   int: no '.', 'e' or 'E' (those are floats; out-of-range integers fail the cast all the
#        same) and the text casts to BIGINT. A string, object, array or boolean never
#        casts ('"5"' does not), and true/false hold an 'e'.
# A JSON string's text (->> '$' on its JSON text; measured cheaper than slicing between
# the quotes). Computed for every value and read only where the kind is a string.
_UNQUOTED = "{v} ->> '$'"
_TYPES = {
    "int": {
        "kind": "NOT (contains({v}, '.') OR contains({v}, 'e') OR contains({v}, 'E'))",
        "once": "CASE WHEN {k} THEN TRY_CAST(CAST({v} AS VARCHAR) AS BIGINT) END",
        "ok": "{c} IS NOT NULL",
        "value": "{c}",
    },
    "float": {
        "kind": "NOT contains('\"{{[tf', left({v}, 1))",
        "text": "CAST({v} AS VARCHAR)",
        "ok": "{k}",
        "value": "CAST({s} AS DOUBLE)",
    },
    "string": {"kind": "starts_with({v}, '\"')", "text": _UNQUOTED, "ok": "{k}", "value": "{s}"},
    # NULL when the text is not ISO-8601 with an offset (bad_timestamp)
    "timestamp": {
        "kind": "starts_with({v}, '\"')",
        "text": _UNQUOTED,
        "once": "CASE WHEN {k} AND regexp_matches({s}, '"
        + _OFFSET_RE.replace("{", "{{").replace("}", "}}")
        + "') THEN TRY_CAST({s} AS TIMESTAMPTZ) END",
        "ok": "{k}",
        "value": "{c}",
    },
    "string_list": {
        "kind": "starts_with({v}, '[')",
        "once": "{k} AND coalesce(list_bool_and(list_transform("
        "TRY_CAST({v} AS JSON[]), lambda x: json_type(x) = 'VARCHAR')), true)",
        "ok": "{c}",
        "value": "list_transform(CAST({v} AS JSON[]), lambda x: x->>'$')",
        # a JSON null element (SQL NULL in the list; list_bool_and above skips it)
        "nulls": "{k} AND list_contains(list_transform(TRY_CAST({v} AS JSON[]), lambda x: x IS NULL), true)",
    },
    "json": {"kind": "starts_with({v}, '{{')", "ok": "{k}", "value": "{v}"},
}


def _extracted_from_lines_sql(contract: TableContract) -> str:
    """Relation `lines` (one row per line's text) parsed: `line_no`, `pre_reason`,
    `is_json`, `json_kind` and each field's JSON text `v_<field>`."""
    # One validity parse, then json_transform picks every field's JSON text out of the
    # object at once (NULL when absent or JSON null, as $.path does; the first of
    # duplicate keys, as $.path does).
    structure = "json_object(" + ", ".join(f"'{f.name}', 'JSON'" for f in contract.fields) + ")"  # contract names
    values = ",\n        ".join(f"r.{f.name} AS v_{f.name}" for f in contract.fields)
    # Any field present proves an object; only lines without any (e.g. `{}`, `[1]`, `3`)
    # need the line's own JSON type.
    any_field = " OR ".join(f"r.{f.name} IS NOT NULL" for f in contract.fields)
    return f"""
    SELECT line_no, pre_reason, j IS NOT NULL AS is_json,
           CASE WHEN j IS NULL THEN NULL WHEN {any_field} THEN 'OBJECT' ELSE json_type(j) END AS json_kind,
        {values}
    FROM (SELECT line_no, pre_reason, j, json_transform(j, {structure}) AS r
          FROM (SELECT line_no, pre_reason, CASE WHEN pre_reason IS NULL THEN TRY_CAST(raw_line AS JSON) END AS j
                FROM lines))"""


def validation_sql(contract: TableContract, partition_day: date | tuple[date, date] | None) -> str:
    """SQL over relation `lines` giving `line_no`, one typed column per field and
    `row_reason` (in no guaranteed order: a domain rule may be planned as a join).

    Each rule becomes a boolean flag column; the reason text is only assembled for rows
    with a raised flag, so valid rows cost a handful of boolean operations.
    """
    kinds, texts, once_cols, typed_cols, type_rules, domain_rules = (
        [],
        [],
        [],
        [],
        [],
        [],
    )  # rules: (flag condition, reason)
    for f in contract.fields:
        spec = _TYPES[f.type]
        names = {"v": f"v_{f.name}", "k": f"k_{f.name}", "s": f"s_{f.name}", "c": f"c_{f.name}"}
        kinds.append(f"{spec['kind'].format(**names)} AS {names['k']}")
        if "text" in spec:
            texts.append(f"{spec['text'].format(**names)} AS {names['s']}")
        if "once" in spec:
            once_cols.append(f"{spec['once'].format(**names)} AS {names['c']}")
        ok, value = spec["ok"].format(**names), spec["value"].format(**names)
        present = f"{names['v']} IS NOT NULL"
        if f.type == "timestamp":
            ok_ts = f"{names['c']} IS NOT NULL"
            typed_cols.append(f"CASE WHEN {present} AND {ok} AND {ok_ts} THEN {value} END AS {f.name}")
            type_rules.append((f"{present} AND {ok} AND NOT ({ok_ts})", f"bad_timestamp:{f.name}"))
        else:
            typed_cols.append(f"CASE WHEN {present} AND {ok} THEN {value} END AS {f.name}")
        if f.required:
            type_rules.append((f"NOT {present}", f"missing_required:{f.name}"))
        type_rules.append((f"{present} AND NOT ({ok})", f"wrong_type:{f.name}"))
        if "nulls" in spec:
            type_rules.append((f"{present} AND {spec['nulls'].format(**names)}", f"null_in_list:{f.name}"))
        if f.domain_sql:
            domain_rules.append(
                (f"{f.name} IS NOT NULL AND NOT coalesce({f.domain_sql}, false)", f"out_of_domain:{f.name}")
            )
    for reason, rule in contract.row_rules:
        domain_rules.append((f"NOT coalesce({rule}, true)", reason))
    if contract.time_field and partition_day is not None:
        t = contract.time_field
        first, last = partition_day if isinstance(partition_day, tuple) else (partition_day, partition_day)
        domain_rules.append(
            (
                f"{t} IS NOT NULL AND CAST(timezone('UTC', {t}) AS DATE) "
                f"NOT BETWEEN DATE '{first.isoformat()}' AND DATE '{last.isoformat()}'",
                f"outside_partition:{t}",
            )
        )
    rules = type_rules + domain_rules
    flags = [f"flag_{i}" for i in range(len(rules))]
    type_flags = ",\n        ".join(f"coalesce({cond}, false) AS flag_{i}" for i, (cond, _) in enumerate(type_rules))
    domain_flags = (
        ",\n        ".join(
            f"coalesce({cond}, false) AS flag_{i}" for i, (cond, _) in enumerate(domain_rules, start=len(type_rules))
        )
        or "true AS no_domain_rules"
    )
    reasons = ", ".join(
        f"CASE WHEN {flag} THEN '{reason}' END" for flag, (_, reason) in zip(flags, rules, strict=False)
    )
    field_names = ", ".join(f.name for f in contract.fields)
    return f"""
WITH extracted AS ({_extracted_from_lines_sql(contract)}
), kinds AS (
    SELECT *, {", ".join(kinds)}
    FROM extracted
), texts AS (
    SELECT *{"".join(", " + col for col in texts)}
    FROM kinds
), once AS (
    SELECT *{"".join(", " + col for col in once_cols)}
    FROM texts
), valued AS (
    SELECT line_no, pre_reason, is_json, json_kind,
        {", ".join(typed_cols)},
        {type_flags}
    FROM once
), flagged AS (
    SELECT *,
        {domain_flags}
    FROM valued
)
SELECT line_no, {field_names},
    CASE
        WHEN pre_reason IS NOT NULL THEN pre_reason
        WHEN NOT is_json THEN 'malformed_json'
        WHEN json_kind <> 'OBJECT' THEN 'not_an_object'
        WHEN NOT ({" OR ".join(flags)}) THEN NULL
        ELSE concat_ws('; ', {reasons})
    END AS row_reason
FROM flagged
"""


def _cross_record_sql(contract: TableContract, known_ids: dict[str, str]) -> str:
    """sql/raw_table_rows.sql filled in: the (few) rows it quarantines, with their reason."""
    ref_cols, joins, reasons = [], [], []
    for ref in contract.references:
        entity = ref.removesuffix("_id")  # user / item
        source = known_ids[ref]
        ref_cols.append(f", {ref}")
        joins.append(
            f"LEFT JOIN (SELECT DISTINCT {ref} AS known_{entity} FROM read_parquet('{source}')) AS k_{entity} "
            f"ON valid.{ref} = k_{entity}.known_{entity}"
        )
        reasons.append(f", CASE WHEN valid.{ref} IS NOT NULL AND known_{entity} IS NULL THEN 'unknown_{entity}' END")
    return read_sql("raw_table_rows.sql").format(
        id_field=contract.id_field,
        reference_columns="".join(ref_cols),
        reference_joins="\n".join(joins),
        reference_reasons="\n        ".join(reasons),
    )


def _in_line_order(table: pa.Table) -> pa.Table:
    """DuckDB may plan a domain rule as a join (`type IN (...)` becomes a mark join), which
    does not keep row order: restore it when needed (the check is one pass over line_no)."""
    line_no = table.column("line_no").to_numpy()
    if len(line_no) < 2 or bool((line_no[1:] > line_no[:-1]).all()):
        return table
    return table.take(pc.sort_indices(table.column("line_no")))


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
    return ingest_files(
        contract,
        [(landing_file, source_name)],
        partition,
        partition_day,
        data_path,
        quarantine_path,
        known_ids=known_ids,
        max_line_bytes=max_line_bytes,
    )


def _lines_of(sources: list[tuple[Path, str]], max_line_bytes: int) -> tuple[pa.Table, np.ndarray]:
    """The lines of every source in order, numbered on through the files (row i is line i + 1),
    and the first line number of each file."""
    tables, starts, next_line_no = [], [], 1
    for path, _ in sources:
        starts.append(next_line_no)
        tables.append(read_lines(path, max_line_bytes, first_line_no=next_line_no))
        next_line_no += tables[-1].num_rows
    if not tables:
        return _SCHEMA.empty_table(), np.array([1], np.int64)
    return (pa.concat_tables(tables) if len(tables) > 1 else tables[0]), np.array(starts, np.int64)


# A history partition may hold decades of logs: validated this many bytes of files at a time.
DEFAULT_CHUNK_BYTES = 256 << 20


class NotARegularFileError(ValueError):
    """A landing path that is a directory, a FIFO, a socket or a device."""


def _chunks(sources: list[tuple[Path, str]], chunk_bytes: int) -> list[list[tuple[Path, str]]]:
    """Consecutive groups of whole files of at most `chunk_bytes` (a bigger file is a group)."""
    chunks: list[list[tuple[Path, str]]] = [[]]
    size = 0
    for path, name in sources:
        if kind := not_a_regular_file(path):  # never opened: a FIFO would block the run forever
            raise NotARegularFileError(f"{name}: {path} is {kind}, not a regular file; a landing file must be one")
        n = path.stat().st_size
        if chunks[-1] and size + n > chunk_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append((path, name))
        size += n
    return chunks


def _ingest_chunks(
    contract: TableContract,
    chunks: list[list[tuple[Path, str]]],
    partition: str,
    partition_day: date | tuple[date, date] | None,
    data_path: Path,
    quarantine_path: Path,
    known_ids: dict[str, str] | None,
    max_line_bytes: int,
) -> IngestResult:
    """ingest_files one chunk at a time into private part files, then each output as one
    streaming COPY of its parts in order, published atomically like a single file."""
    scratch = Path(tempfile.mkdtemp(prefix=f"recsys-ingest-{contract.name}-"))  # outside the lake: no view reads it
    try:
        parts = [
            ingest_files(
                contract,
                chunk,
                partition,
                partition_day,
                scratch / f"data-{i:05d}.parquet",
                scratch / f"quarantine-{i:05d}.parquet",
                known_ids=known_ids,
                max_line_bytes=max_line_bytes,
                chunk_bytes=1 << 62,
            )
            for i, chunk in enumerate(chunks)
        ]
        con = duckdb_connect()
        try:
            for stem, path in (("data", data_path), ("quarantine", quarantine_path)):
                listing = ", ".join(f"'{scratch / f'{stem}-{i:05d}.parquet'}'" for i in range(len(chunks)))
                write_parquet_atomic(con, f"SELECT * FROM read_parquet([{listing}])", path)
        finally:
            con.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = IngestResult(contract.asset_name, partition, f"{sum(len(c) for c in chunks)} files")
    for part in parts:
        result.rows_read += part.rows_read
        result.rows_loaded += part.rows_loaded
        result.rows_quarantined += part.rows_quarantined
        result.blank_lines += part.blank_lines
        result.reasons.update(part.reasons)
    return result


# Lines validated per batch: per-line rules hold within a line, so batches change nothing
# but the memory a file of bad lines needs (each batch's bad rows are written out at once).
VALIDATION_BATCH_LINES = 1 << 18


class _QuarantineWriter:
    """The quarantine of one partition, streamed: each batch of bad rows is written at once to
    a part file (in line order), and the parts are published as one file at the end. Rows a
    cross-record rule flags later are merged into the parts they belong to, one part at a time."""

    def __init__(self, con, contract, partition, file_lines, file_starts, names, scratch: Path):
        self.con, self.contract, self.partition = con, contract, partition
        self.raw_lines, self.file_starts, self.names, self.scratch = (
            file_lines.column("raw_line"),
            file_starts,
            np.array(names or [""], dtype=object),
            scratch,
        )
        self.parts: list[tuple[Path, int, int]] = []  # (file, first line_no, last line_no)
        self.rows = 0
        self.reasons: Counter = Counter()

    def _table(self, bad: pa.Table) -> pa.Table:
        raw = _take_in_order(self.raw_lines, pc.subtract(bad.column("line_no"), 1))
        line_no = bad.column("line_no").to_numpy()
        # the file each bad line came from, and its line number in that file
        file_of = np.searchsorted(self.file_starts, line_no, side="right") - 1
        n = bad.num_rows
        return pa.table(
            {
                "asset": pa.array([self.contract.asset_name] * n, pa.string()),
                "partition": pa.array([self.partition] * n, pa.string()),
                "source_file": pa.array(self.names[file_of], pa.string()),
                "line_no": pa.array(line_no - self.file_starts[file_of] + 1),
                "reason": bad.column("reason"),
                "raw_line": raw,
                "global_line_no": pa.array(line_no),
            }
        )

    def _write(self, table: pa.Table, path: Path) -> None:
        self.con.register("quarantine_part", table)
        self.con.execute(f"COPY (SELECT * FROM quarantine_part) TO '{path}' (FORMAT parquet)")  # scratch path
        self.con.unregister("quarantine_part")

    def add(self, bad: pa.Table) -> None:
        """`bad` (line_no, reason) in line order, after every earlier batch."""
        if not bad.num_rows:
            return
        path = self.scratch / f"part-{len(self.parts):06d}.parquet"
        self._write(self._table(bad), path)
        line_no = bad.column("line_no")
        self.parts.append((path, line_no[0].as_py(), line_no[-1].as_py()))
        self._count(bad.column("reason"))

    def _count(self, reasons) -> None:
        self.rows += len(reasons)
        for reason, n in zip(*pc.value_counts(reasons).flatten(), strict=False):
            self.reasons[reason.as_py()] += n.as_py()

    def merge_cross_record(self, cross: pa.Table) -> None:
        """Add the rows the cross-record rules flagged (line_no, reason; in line order): each
        part they fall in is rewritten in line order, the rest go to parts of their own."""
        if not cross.num_rows:
            return
        self._count(cross.column("reason"))
        line_no = cross.column("line_no").to_numpy()
        bounds = [first for _, first, _ in self.parts[1:]]
        owner = np.searchsorted(np.array(bounds, np.int64), line_no, side="right") if self.parts else None
        extra = []
        for k in range(len(self.parts) + 1 if self.parts else 1):
            rows = np.flatnonzero(owner == k) if owner is not None else np.arange(len(line_no))
            if not len(rows):
                continue
            flagged = self._table(cross.take(pa.array(rows)))
            if k < len(self.parts):
                path, first, last = self.parts[k]
                self.con.register("flagged", flagged)
                merged = self.scratch / f"merged-{k:06d}.parquet"
                self.con.execute(
                    f"COPY (SELECT * FROM (SELECT * FROM read_parquet('{path}') UNION ALL SELECT * FROM flagged) "
                    f"ORDER BY global_line_no) TO '{merged}' (FORMAT parquet)"  # scratch paths
                )
                self.con.unregister("flagged")
                fl = flagged.column("global_line_no")
                self.parts[k] = (merged, min(first, fl[0].as_py()), max(last, fl[-1].as_py()))
            else:
                extra.append(flagged)
        for flagged in extra:
            path = self.scratch / f"part-{len(self.parts):06d}.parquet"
            self._write(flagged, path)
            fl = flagged.column("global_line_no")
            self.parts.append((path, fl[0].as_py(), fl[-1].as_py()))
        self.parts.sort(key=lambda part: part[1])

    def publish(self, path: Path) -> None:
        columns = "asset, partition, source_file, line_no, reason, rtrim(raw_line, chr(13) || chr(10)) AS raw_line"
        if not self.parts:
            self._write(
                self._table(pa.table({"line_no": pa.array([], pa.int64()), "reason": pa.array([], pa.string())})),
                self.scratch / "empty.parquet",
            )
            self.parts.append((self.scratch / "empty.parquet", 0, 0))
        listing = ", ".join(f"'{part}'" for part, _, _ in self.parts)  # scratch paths
        # the parts are in line order and do not overlap: read in list order, they stay so. One
        # thread streams them (several would buffer row groups to keep the order).
        threads = self.con.execute("SELECT current_setting('threads')").fetchone()[0]
        self.con.execute("SET threads = 1")
        try:
            write_parquet_atomic(self.con, f"SELECT {columns} FROM read_parquet([{listing}])", path)
        finally:
            self.con.execute(f"SET threads = {int(threads)}")


def ingest_files(
    contract: TableContract,
    sources: list[tuple[Path, str]],
    partition: str,
    partition_day: date | tuple[date, date] | None,
    data_path: Path,
    quarantine_path: Path,
    known_ids: dict[str, str] | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> IngestResult:
    """Validate landing files (path, name as recorded in the quarantine) into one partition and
    atomically write its loaded and quarantined rows. `partition_day` is the day every row's
    time must fall on, or a (first, last) range (a history partition holding many days; no
    files: an empty partition). A quarantined line names its own file and line number. Files
    over `chunk_bytes` in all are validated a chunk of whole files at a time (memory stays
    bounded by one chunk; checks across records, such as duplicate ids, hold within a chunk,
    as they hold within a day's file).

    Per-line rules run a batch of lines at a time (VALIDATION_BATCH_LINES); each batch's rows
    are put in line order in Arrow (`_in_line_order`), its bad rows go straight to a quarantine
    part file and only the rows that pass are kept. The cross-record query (joins) over those
    returns only the rows it flags, merged into the quarantine parts by line_no. Memory grows
    with the file's bytes and its valid rows, not with its number of bad lines.
    """
    missing_refs = [r for r in contract.references if not (known_ids or {}).get(r)]
    if missing_refs:
        raise ValueError(f"{contract.asset_name}: reference check needs the snapshot for {missing_refs}")
    chunks = _chunks(sources, chunk_bytes)
    if len(chunks) > 1:
        return _ingest_chunks(
            contract, chunks, partition, partition_day, data_path, quarantine_path, known_ids, max_line_bytes
        )
    scratch = Path(tempfile.mkdtemp(prefix=f"recsys-quarantine-{contract.name}-"))  # outside the lake
    con = duckdb_connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        file_lines, file_starts = _lines_of(sources, max_line_bytes)  # row i is line i + 1
        con.register("file_lines", file_lines)
        file_lines = _flag_non_standard_json(con, file_lines)
        blank = pc.sum(file_lines.column("is_blank")).as_py() or 0
        names = [name for _, name in sources]
        result = IngestResult(
            contract.asset_name,
            partition,
            names[0] if len(names) == 1 else f"{len(names)} files",
            rows_read=file_lines.num_rows - blank,
            blank_lines=blank,
        )
        quarantine = _QuarantineWriter(con, contract, partition, file_lines, file_starts, names, scratch)

        # Per-line rules, a batch of lines at a time: only the rows that pass them are kept (in
        # Arrow, as they are the data); each batch's bad rows go straight to a quarantine part
        # file, so memory does not grow with the number of bad lines.
        valid_parts = []
        for offset in range(0, max(file_lines.num_rows, 1), VALIDATION_BATCH_LINES):
            # Blank lines carry no record and are only counted. Line endings stay on the text
            # (JSON ignores them) and are trimmed only where the raw line is kept: quarantine.
            con.register("batch_lines", file_lines.slice(offset, VALIDATION_BATCH_LINES))
            con.execute(
                "CREATE OR REPLACE TEMP VIEW lines AS SELECT line_no, raw_line, pre_reason FROM batch_lines "
                "WHERE NOT is_blank"
            )
            validated = _in_line_order(con.sql(validation_sql(contract, partition_day)).to_arrow_table())
            is_bad = pc.is_valid(validated.column("row_reason"))
            quarantine.add(
                validated.select(["line_no", "row_reason"]).filter(is_bad).rename_columns(["line_no", "reason"])
            )
            valid_parts.append(validated.filter(pc.invert(is_bad)))
            del validated, is_bad
        con.unregister("batch_lines")
        valid = pa.concat_tables(valid_parts) if len(valid_parts) > 1 else valid_parts[0]
        del valid_parts

        # Cross-record rules over the rows that passed the per-line ones (duplicate ids, references).
        con.register("validated", valid)
        cross = con.sql(_cross_record_sql(contract, known_ids or {})).to_arrow_table()
        con.unregister("validated")
        if cross.num_rows:
            valid = valid.filter(pc.invert(pc.is_in(valid.column("line_no"), value_set=cross.column("line_no"))))
        con.register("checked", valid)
        fields = ", ".join(f"CAST({f.name} AS {f.duckdb_type}) AS {f.name}" for f in contract.fields)
        write_parquet_atomic(con, f"SELECT {fields} FROM checked", data_path)
        con.unregister("checked")
        result.rows_loaded = valid.num_rows
        del valid

        quarantine.merge_cross_record(cross)
        quarantine.publish(quarantine_path)
        result.rows_quarantined = quarantine.rows
        result.reasons.update(quarantine.reasons)
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if result.rows_loaded + result.rows_quarantined != result.rows_read:  # the nothing-is-lost invariant
        raise AssertionError(f"{result.source_file}: read {result.rows_read} != loaded + quarantined")
    return result
