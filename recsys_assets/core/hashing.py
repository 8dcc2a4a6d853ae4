"""Hash dictionaries for categorical features, identical in DuckDB SQL and in Python.

Each categorical field (country, ui_language, device_type, surface, genres, tags, ...) has
its own index space:

    0                          missing value (None / SQL NULL / empty string)
    1 .. n_buckets             hashed out-of-vocabulary buckets (index = 1 + bucket)
    n_buckets + 1, + 2, ...    kept values (seen at least ``min_count`` times), append-only

The OOV bucket of a value is

    md5_upper64(field + "\\x1f" + value) % n_buckets

where ``md5_upper64(s)`` reads the first 8 bytes of MD5(UTF-8 of s) as a little-endian
unsigned integer. That is exactly DuckDB's ``md5_number_upper(s)``, so the training path
(SQL, :func:`encode_sql` / :func:`encode_table_sql`) and the serving path (Python,
:class:`HashEncoder`) give the same index for every value, in every process, on every
machine. Python's ``hash()`` is salted per process and is never used here.

Kept indices are stable forever: a value kept by an earlier dictionary keeps its index in
every later one (even if its count falls to zero); values newly reaching ``min_count`` are
appended after the field's largest existing index, ordered by (count desc, value asc).

The ``version`` of a dictionary is a hash of what defines the encoding (n_buckets and the
kept (field, value, index) triples), not of the counts and not of the OOV values seen, so it
changes exactly when some value would be encoded differently.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import polars as pl
import pyarrow as pa

HASH_SEPARATOR = "\x1f"
DEFAULT_OOV_BUCKETS = 16
MISSING_INDEX = 0

_INT32_MAX = 2**31 - 1

DICTIONARY_SCHEMA = pa.schema(
    [
        pa.field("field", pa.string(), nullable=False),
        pa.field("value", pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("index", pa.int32(), nullable=False),
        pa.field("bucket", pa.int32()),
        pa.field("bucket_collisions", pa.int32()),
        pa.field("n_buckets", pa.int32(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
    ]
)


# --------------------------------------------------------------------------- hashing


def md5_upper64(text: str) -> int:
    """First 8 bytes of MD5(UTF-8 of ``text``) as a little-endian unsigned int.

    Equal to DuckDB's ``md5_number_upper(text)``.
    """
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:8], "little")


def _check_n_buckets(n_buckets: int) -> int:
    if isinstance(n_buckets, bool) or not isinstance(n_buckets, (int, np.integer)):
        raise TypeError(f"n_buckets must be an int, got {type(n_buckets).__name__}")
    n_buckets = int(n_buckets)
    if not 1 <= n_buckets < _INT32_MAX:
        raise ValueError(f"n_buckets must be in [1, 2**31 - 1), got {n_buckets}")
    return n_buckets


def oov_bucket(field: str, value: str, n_buckets: int) -> int:
    """The OOV bucket (0 .. n_buckets-1) of ``value`` in ``field``; the index is 1 + bucket."""
    return md5_upper64(field + HASH_SEPARATOR + value) % _check_n_buckets(n_buckets)


def _sql_literal(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    if "\x00" in text:
        raise ValueError("NUL characters cannot appear in a SQL string literal")
    return "'" + text.replace("'", "''") + "'"


def _sql_identifier(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError("an SQL identifier must be a non-empty str")
    return '"' + name.replace('"', '""') + '"'


def bucket_sql(field_sql: str, value_sql: str, n_buckets: int) -> str:
    """DuckDB SQL expression (INTEGER) equal to :func:`oov_bucket`.

    ``field_sql`` and ``value_sql`` are SQL expressions (e.g. ``'country'`` and ``t.country``).
    NULL in, NULL out.
    """
    n = _check_n_buckets(n_buckets)
    return (
        f"CAST(md5_number_upper(CAST(({field_sql}) AS VARCHAR) || chr(31) || "
        f"CAST(({value_sql}) AS VARCHAR)) % {n} AS INTEGER)"
    )


# --------------------------------------------------------------------------- building


def _dictionary_version(n_buckets: int, kept: Iterable[tuple[str, str, int]]) -> str:
    canonical = {
        "scheme": "md5_upper64(field+\\x1f+value)%n_buckets; 0=missing; 1+bucket=oov",
        "n_buckets": n_buckets,
        "kept": sorted([f, v, int(i)] for f, v, i in kept),
    }
    payload = json.dumps(canonical, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _previous_kept(previous: pa.Table, n_buckets: int) -> dict[str, dict[str, int]]:
    """Validate an earlier dictionary and return its kept values: field -> value -> index."""
    missing = {"field", "value", "kept", "index", "n_buckets"} - set(previous.column_names)
    if missing:
        raise ValueError(f"previous dictionary lacks columns {sorted(missing)}")
    prev_n = {x for x in previous.column("n_buckets").to_pylist()}
    if None in prev_n or len(prev_n) > 1:
        raise ValueError(f"previous dictionary has inconsistent n_buckets {prev_n}")
    if prev_n and prev_n != {n_buckets}:
        raise ValueError(
            f"previous dictionary has n_buckets={prev_n.pop()}, but n_buckets={n_buckets} was "
            "requested; changing the bucket count changes every OOV index (build a new "
            "dictionary from scratch instead)"
        )
    kept: dict[str, dict[str, int]] = defaultdict(dict)
    used: dict[str, set[int]] = defaultdict(set)
    cols = previous.select(["field", "value", "kept", "index"]).to_pydict()
    for f, v, k, i in zip(cols["field"], cols["value"], cols["kept"], cols["index"], strict=False):
        if not k:
            continue
        if f is None or not v or i is None:
            raise ValueError(f"previous dictionary has an invalid kept row {(f, v, i)}")
        if i <= n_buckets:
            raise ValueError(f"previous kept value {(f, v)} has index {i} <= n_buckets")
        if v in kept[f]:
            raise ValueError(f"previous dictionary keeps {(f, v)} twice")
        if i in used[f]:
            raise ValueError(f"previous dictionary uses index {i} twice in field {f!r}")
        kept[f][v] = int(i)
        used[f].add(int(i))
    return kept


def _current_counts(counts: pa.Table) -> dict[tuple[str, str], int]:
    missing = {"field", "value", "count"} - set(counts.column_names)
    if missing:
        raise ValueError(f"counts lacks columns {sorted(missing)}")
    cols = counts.select(["field", "value", "count"]).to_pydict()
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for f, v, c in zip(cols["field"], cols["value"], cols["count"], strict=False):
        if v is None or v == "":
            continue
        if not isinstance(f, str) or f == "":
            raise ValueError(f"counts has a row with a null or empty field (value {v!r})")
        if c is None:
            continue
        c = int(c)
        if c < 0:
            raise ValueError(f"negative count {c} for {(f, v)}")
        totals[(f, v)] += c
    return totals


def build_hash_dictionary(
    counts: pa.Table,
    previous: pa.Table | None = None,
    *,
    min_count: int = 5,
    n_buckets: int = DEFAULT_OOV_BUCKETS,
) -> pa.Table:
    """Build (or extend) the hash dictionary from per-(field, value) occurrence counts.

    ``counts`` has columns field, value, count; repeated (field, value) rows are summed,
    null/empty values ignored. ``previous`` is an earlier output of this function: its kept
    values keep their indices, new kept values are appended. Returns one row per (field,
    value) seen now or kept before, sorted by (field, index, value), with schema
    :data:`DICTIONARY_SCHEMA`.
    """
    n_buckets = _check_n_buckets(n_buckets)
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise ValueError(f"min_count must be a positive int, got {min_count!r}")
    min_count = int(min_count)

    kept = _previous_kept(previous, n_buckets) if previous is not None else defaultdict(dict)
    totals = _current_counts(counts)

    by_field: dict[str, dict[str, int]] = defaultdict(dict)
    for (f, v), c in totals.items():
        by_field[f][v] = c
    for f, values in kept.items():
        for v in values:
            by_field[f].setdefault(v, 0)

    rows: list[tuple] = []  # field, value, count, kept, index, bucket
    for f in sorted(by_field):
        values = by_field[f]
        field_kept = kept.get(f, {})
        next_index = max(field_kept.values(), default=n_buckets) + 1
        newly = sorted(
            (v for v, c in values.items() if c >= min_count and v not in field_kept),
            key=lambda v: (-values[v], v),
        )
        field_kept = dict(field_kept)
        for v in newly:
            field_kept[v] = next_index
            next_index += 1
        if next_index - 1 > _INT32_MAX:
            raise ValueError(f"field {f!r} has too many kept values for int32 indices")
        kept[f] = field_kept
        for v, c in values.items():
            if v in field_kept:
                rows.append((f, v, c, True, field_kept[v], None))
            else:
                b = oov_bucket(f, v, n_buckets)
                rows.append((f, v, c, False, 1 + b, b))

    collisions: dict[tuple[str, int], int] = defaultdict(int)
    for f, _v, _c, k, _i, b in rows:
        if not k:
            collisions[(f, b)] += 1

    rows.sort(key=lambda r: (r[0], r[4], r[1]))
    version = _dictionary_version(n_buckets, ((f, v, i) for f, vals in kept.items() for v, i in vals.items()))
    n = len(rows)
    return pa.table(
        {
            "field": pa.array([r[0] for r in rows], pa.string()),
            "value": pa.array([r[1] for r in rows], pa.string()),
            "count": pa.array([r[2] for r in rows], pa.int64()),
            "kept": pa.array([r[3] for r in rows], pa.bool_()),
            "index": pa.array([r[4] for r in rows], pa.int32()),
            "bucket": pa.array([r[5] for r in rows], pa.int32()),
            "bucket_collisions": pa.array([None if r[3] else collisions[(r[0], r[5])] for r in rows], pa.int32()),
            "n_buckets": pa.array([n_buckets] * n, pa.int32()),
            "version": pa.array([version] * n, pa.string()),
        },
        schema=DICTIONARY_SCHEMA,
    )


def dictionary_stats(dictionary: pa.Table) -> list[dict]:
    """Per-field summary of a dictionary, sorted by field.

    oov_rate = oov_occurrences / occurrences (0.0 when the field has no occurrences now);
    max_bucket_collisions and buckets_used are 0 when the field has no OOV values.
    """
    cols = dictionary.select(["field", "count", "kept", "bucket"]).to_pydict()
    acc: dict[str, dict] = {}
    for f, c, k, b in zip(cols["field"], cols["count"], cols["kept"], cols["bucket"], strict=False):
        s = acc.setdefault(f, {"kept": 0, "oov": 0, "occ": 0, "oov_occ": 0, "per_bucket": defaultdict(int)})
        s["occ"] += c
        if k:
            s["kept"] += 1
        else:
            s["oov"] += 1
            s["oov_occ"] += c
            s["per_bucket"][b] += 1
    return [
        {
            "field": f,
            "kept_values": s["kept"],
            "oov_values": s["oov"],
            "occurrences": s["occ"],
            "oov_occurrences": s["oov_occ"],
            "oov_rate": s["oov_occ"] / s["occ"] if s["occ"] else 0.0,
            "max_bucket_collisions": max(s["per_bucket"].values(), default=0),
            "buckets_used": len(s["per_bucket"]),
        }
        for f, s in sorted(acc.items())
    ]


# --------------------------------------------------------------------------- serving


class HashEncoder:
    """Online encoder: a dict lookup for kept values, MD5 for the rest."""

    def __init__(self, kept: dict[str, dict[str, int]], n_buckets: int, version: str):
        self.n_buckets = _check_n_buckets(n_buckets)
        self.version = version
        self._kept = {f: dict(vals) for f, vals in kept.items()}
        # codes of values already encoded, per field (a request's few rows then need no hashing)
        self._codes: dict[str, dict[str | None, int]] = {}

    @classmethod
    def from_table(cls, dictionary: pa.Table) -> HashEncoder:
        if dictionary.num_rows == 0:
            raise ValueError("empty dictionary: n_buckets and version are unknown")
        n = set(dictionary.column("n_buckets").to_pylist())
        versions = set(dictionary.column("version").to_pylist())
        if len(n) != 1 or None in n:
            raise ValueError(f"dictionary has inconsistent n_buckets {n}")
        if len(versions) != 1 or None in versions:
            raise ValueError(f"dictionary has inconsistent versions {versions}")
        n_buckets = n.pop()
        kept = _previous_kept(dictionary, n_buckets)
        return cls(kept, n_buckets, versions.pop())

    def encode(self, field: str, value: str | None) -> int:
        if value is None or value == "":
            return MISSING_INDEX
        if not isinstance(value, str):
            raise TypeError(f"values must be str or None, got {type(value).__name__}")
        index = self._kept.get(field, {}).get(value)
        if index is not None:
            return index
        return 1 + md5_upper64(field + HASH_SEPARATOR + value) % self.n_buckets

    def encode_many(self, field: str, values) -> np.ndarray:
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            values = values.to_pylist()
        kept = self._kept.get(field, {})
        n = self.n_buckets
        prefix = field + HASH_SEPARATOR
        out = []
        for value in values:
            if value is None or value == "":
                out.append(MISSING_INDEX)
                continue
            index = kept.get(value)
            if index is None:
                if not isinstance(value, str):
                    raise TypeError(f"values must be str or None, got {type(value).__name__}")
                index = 1 + md5_upper64(prefix + value) % n
            out.append(index)
        return np.asarray(out, dtype=np.int32)

    def encode_column(self, field: str, column: pl.Series) -> np.ndarray:
        """encode_many of a polars column, hashing each distinct value once (a ranking batch
        has millions of rows but a handful of surfaces, countries or genres)."""
        if column.dtype == pl.Null or column.null_count() == len(column):
            return np.full(len(column), MISSING_INDEX, np.int32)
        if len(column) <= SMALL_COLUMN:
            return self._encode_small(field, column.to_list())
        distinct = column.drop_nulls().unique()
        codes = self.encode_many(field, distinct.to_list())
        return column.replace_strict(
            distinct, pl.Series(codes, dtype=pl.Int32), default=MISSING_INDEX, return_dtype=pl.Int32
        ).to_numpy()

    def _encode_small(self, field: str, values: list) -> np.ndarray:
        """encode_many of a few rows through the field's memo of codes (categorical fields hold
        a handful of distinct values; the memo stops growing at MEMO_VALUES)."""
        codes = self._codes.setdefault(field, {})
        new = [v for v in dict.fromkeys(values) if v not in codes]
        if new:
            fresh = dict(zip(new, self.encode_many(field, new).tolist(), strict=True))
            if len(codes) < MEMO_VALUES:
                codes.update(fresh)
            else:
                codes = {**codes, **fresh}
        return np.fromiter((codes[v] for v in values), np.int32, len(values))


# encode_column hashes a column this short row by row through the memo, not with polars
SMALL_COLUMN = 4096
MEMO_VALUES = 100_000

# --------------------------------------------------------------------------- training (SQL)


def _n_buckets_guard(dictionary_relation: str, n: int) -> str:
    """Uncorrelated boolean: the dictionary was built with another bucket count."""
    msg = _sql_literal(f"hash dictionary {dictionary_relation} was not built with n_buckets={n}")
    return (
        f"(SELECT CASE WHEN coalesce(bool_or(n_buckets <> {n}), false) THEN error({msg}) "
        f"ELSE false END FROM {dictionary_relation})"
    )


def encode_sql(dictionary_relation: str, field: str, value_sql: str, n_buckets: int) -> str:
    """DuckDB scalar SQL expression (INTEGER) encoding ``value_sql`` for ``field``.

    Same result as :meth:`HashEncoder.encode`. The kept-value lookup is a correlated
    subquery over a renamed projection of the dictionary (so an unqualified ``value`` in
    ``value_sql`` still refers to the outer query); DuckDB decorrelates it into a join.
    Fails (SQL error) if the dictionary was built with a different n_buckets.
    """
    n = _check_n_buckets(n_buckets)
    v = f"CAST(({value_sql}) AS VARCHAR)"
    lookup = (
        f"(SELECT __hash_d.__hash_index FROM (SELECT value AS __hash_value, "
        f'"index" AS __hash_index FROM {dictionary_relation} '
        f"WHERE field = {_sql_literal(field)} AND kept) AS __hash_d "
        f"WHERE __hash_d.__hash_value = {v})"
    )
    return (
        f"CAST(CASE WHEN {_n_buckets_guard(dictionary_relation, n)} THEN NULL "
        f"WHEN {v} IS NULL OR {v} = '' THEN {MISSING_INDEX} "
        f"ELSE coalesce({lookup}, 1 + {bucket_sql(_sql_literal(field), v, n)}) END AS INTEGER)"
    )


def encode_table_sql(
    dictionary_relation: str,
    source_relation: str,
    field: str,
    value_column: str,
    n_buckets: int,
) -> str:
    """A SELECT returning ``source_relation.*`` plus ``<value_column>_idx`` (INTEGER).

    Bulk path: one LEFT JOIN against the field's kept values (unique per value, so the row
    count is preserved; row order is not guaranteed). Same indices as :func:`encode_sql`.
    Fails (SQL error) if the dictionary was built with a different n_buckets.
    """
    n = _check_n_buckets(n_buckets)
    col = _sql_identifier(value_column)
    out = _sql_identifier(f"{value_column}_idx")
    v = f"CAST(__hash_s.{col} AS VARCHAR)"
    return (
        f"SELECT __hash_s.*, CAST(CASE WHEN {v} IS NULL OR {v} = '' THEN {MISSING_INDEX} "
        f"WHEN __hash_d.__hash_index IS NOT NULL THEN __hash_d.__hash_index "
        f"ELSE 1 + {bucket_sql(_sql_literal(field), v, n)} END AS INTEGER) AS {out} "
        f"FROM {source_relation} AS __hash_s "
        f'LEFT JOIN (SELECT value AS __hash_value, "index" AS __hash_index '
        f"FROM {dictionary_relation} WHERE field = {_sql_literal(field)} AND kept "
        f"AND NOT {_n_buckets_guard(dictionary_relation, n)}) AS __hash_d "
        f"ON {v} = __hash_d.__hash_value"
    )
