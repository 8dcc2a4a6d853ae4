"""Hash dictionaries: Python (serving) and DuckDB SQL (training) must encode identically."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys_assets.core.hashing import (
    DEFAULT_OOV_BUCKETS,
    HASH_SEPARATOR,
    MISSING_INDEX,
    HashEncoder,
    bucket_sql,
    build_hash_dictionary,
    dictionary_stats,
    encode_sql,
    encode_table_sql,
    md5_upper64,
    oov_bucket,
)

ROOT = Path(__file__).resolve().parents[1]

# Strings DuckDB can hold: no surrogates (not UTF-8 encodable), no NUL.
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)

TRICKY = [
    "a",
    "A",
    " ",
    "  ",
    "\t",
    "\n",
    "0",
    "null",
    "NULL",
    "None",
    "'",
    "''",
    '"',
    "\\",
    "%",
    "_",
    HASH_SEPARATOR,
    "a" + HASH_SEPARATOR + "b",
    "é",
    "e\u0301",
    "日本語",
    "😀",
    "ü" * 3,
    "x" * 10_000,
    "de-DE",
    "pt_BR",
    "Ω≈ç√∫",
    "\u200b",
    "\ufeff",
    "\U0010ffff",
]


def counts_table(rows) -> pa.Table:
    fields, values, counts = zip(*rows, strict=False) if rows else ((), (), ())
    return pa.table(
        {
            "field": pa.array(fields, pa.string()),
            "value": pa.array(values, pa.string()),
            "count": pa.array(counts, pa.int64()),
        }
    )


def kept_map(d: pa.Table) -> dict[tuple[str, str], int]:
    rows = d.filter(d["kept"]).to_pydict()
    return {(f, v): i for f, v, i in zip(rows["field"], rows["value"], rows["index"], strict=False)}


# --------------------------------------------------------------------------- hashing


def test_known_answers():
    # Pinned forever: changing these changes every OOV index ever trained.
    assert md5_upper64("a") == 12157170054180749580
    assert oov_bucket("country", "xx", 16) == md5_upper64("country\x1fxx") % 16
    assert HASH_SEPARATOR == "\x1f" and MISSING_INDEX == 0 and DEFAULT_OOV_BUCKETS == 16


def test_python_matches_duckdb_for_many_strings():
    rng = random.Random(7)
    values = list(TRICKY)
    for _ in range(300):
        n = rng.randint(1, 30)
        values.append(
            "".join(
                chr(rng.choice([rng.randint(32, 126), rng.randint(0xA0, 0x2FFF), rng.randint(0x1F300, 0x1FAFF)]))
                for _ in range(n)
            )
        )
    fields = ["country", "ui_language", "tags", "a'b", "日本"]
    rows = [(f, v) for f in fields for v in values]
    t = pa.table({"f": [r[0] for r in rows], "v": [r[1] for r in rows]})
    con = duckdb.connect()
    con.register("t", t)
    for n_buckets in (1, 7, 16, 1000, 2**31 - 2):
        got = con.sql(
            f"SELECT md5_number_upper(f || chr(31) || v) AS h, {bucket_sql('f', 'v', n_buckets)} AS b FROM t"
        ).fetchall()
        assert [h for h, _ in got] == [md5_upper64(f + "\x1f" + v) for f, v in rows]
        assert [b for _, b in got] == [oov_bucket(f, v, n_buckets) for f, v in rows]
    # literal field expression, as used by encode_sql
    got = con.sql(f"SELECT {bucket_sql(chr(39) + 'country' + chr(39), 'v', 16)} FROM t").fetchall()
    assert [b for (b,) in got] == [oov_bucket("country", v, 16) for _, v in rows]
    assert con.sql(f"SELECT {bucket_sql(chr(39) + 'f' + chr(39), 'NULL', 16)}").fetchall() == [(None,)]


def test_same_buckets_across_processes_with_different_hash_seeds():
    script = (
        "import pyarrow as pa\n"
        "from recsys_assets.core.hashing import build_hash_dictionary, HashEncoder, oov_bucket\n"
        "c = pa.table({'field': ['country']*4, 'value': ['DE','FR','US','ZZ'], 'count': [9,9,9,1]})\n"
        "e = HashEncoder.from_table(build_hash_dictionary(c, min_count=5))\n"
        "vals = ['DE','FR','US','ZZ','xx','日本','😀','', None, 'a\\x1fb']\n"
        "print(e.version, e.encode_many('country', vals).tolist(), e.encode_many('tags', vals).tolist(),\n"
        "      [oov_bucket('f', str(v), 1000) for v in vals])\n"
    )
    outs = []
    for seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        res = subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0, res.stderr
        outs.append(res.stdout)
    assert outs[0] == outs[1]
    # and the same as in this process
    c = pa.table({"field": ["country"] * 4, "value": ["DE", "FR", "US", "ZZ"], "count": [9, 9, 9, 1]})
    e = HashEncoder.from_table(build_hash_dictionary(c, min_count=5))
    assert outs[0].split(" ", 1)[0] == e.version


# --------------------------------------------------------------------------- building


def test_threshold_layout_collisions_and_stats():
    rows = [
        ("country", "DE", 10),
        ("country", "FR", 3),
        ("country", "FR", 2),  # FR sums to 5: kept
        ("country", "US", 10),
        ("country", "IT", 4),
        ("country", "ES", 1),
        ("country", "PT", 1),
        ("country", None, 50),
        ("country", "", 50),  # ignored
        ("device_type", "tv", 7),
        ("device_type", "phone", 100),
        ("device_type", "fridge", 2),
    ]
    n_buckets = 4
    d = build_hash_dictionary(counts_table(rows), min_count=5, n_buckets=n_buckets)
    assert d.schema.field("index").type == pa.int32()
    assert d.schema.field("count").type == pa.int64()
    p = d.to_pylist()
    assert [(r["field"], r["index"], r["value"]) for r in p] == sorted((r["field"], r["index"], r["value"]) for r in p)
    assert len({r["version"] for r in p}) == 1 and {r["n_buckets"] for r in p} == {n_buckets}

    # kept: count desc, value asc, starting at n_buckets + 1
    assert kept_map(d) == {
        ("country", "DE"): 5,
        ("country", "US"): 6,
        ("country", "FR"): 7,
        ("device_type", "phone"): 5,
        ("device_type", "tv"): 6,
    }
    by = {(r["field"], r["value"]): r for r in p}
    assert by[("country", "FR")]["count"] == 5
    assert ("country", "") not in by and ("country", None) not in by
    for r in p:
        if r["kept"]:
            assert r["bucket"] is None and r["bucket_collisions"] is None
        else:
            assert r["bucket"] == oov_bucket(r["field"], r["value"], n_buckets)
            assert r["index"] == 1 + r["bucket"]
            expected = sum(1 for q in p if not q["kept"] and q["field"] == r["field"] and q["bucket"] == r["bucket"])
            assert r["bucket_collisions"] == expected

    oov_country = ["IT", "ES", "PT"]
    buckets = [oov_bucket("country", v, n_buckets) for v in oov_country]
    stats = {s["field"]: s for s in dictionary_stats(d)}
    assert stats["country"] == {
        "field": "country",
        "kept_values": 3,
        "oov_values": 3,
        "occurrences": 31,
        "oov_occurrences": 6,
        "oov_rate": pytest.approx(6 / 31),
        "max_bucket_collisions": max(buckets.count(b) for b in buckets),
        "buckets_used": len(set(buckets)),
    }
    assert stats["device_type"]["oov_rate"] == pytest.approx(2 / 109)
    assert stats["device_type"]["max_bucket_collisions"] == 1


def test_collisions_with_one_bucket():
    d = build_hash_dictionary(counts_table([("f", v, 1) for v in "abcde"]), n_buckets=1)
    assert set(d["index"].to_pylist()) == {1}
    assert set(d["bucket_collisions"].to_pylist()) == {5}
    assert dictionary_stats(d)[0]["max_bucket_collisions"] == 5
    assert dictionary_stats(d)[0]["oov_rate"] == 1.0


A_ROWS = [
    ("country", "DE", 50),
    ("country", "US", 40),
    ("country", "FR", 6),
    ("country", "IT", 2),
    ("tags", "funny", 20),
    ("tags", "sad", 5),
    ("tags", "rare", 1),
]
B_ROWS = [
    ("country", "DE", 60),
    ("country", "US", 3),  # US drops below threshold: stays kept
    ("country", "IT", 30),
    ("country", "BR", 30),
    ("country", "AR", 8),  # IT was OOV, now kept
    ("tags", "funny", 10),
    ("tags", "new", 99),
    ("tags", "other", 1),  # "sad" not seen: count 0
    ("genres", "drama", 12),  # brand-new field
]


def test_append_only_stability():
    v1 = build_hash_dictionary(counts_table(A_ROWS), min_count=5, n_buckets=8)
    v2 = build_hash_dictionary(counts_table(B_ROWS), v1, min_count=5, n_buckets=8)
    k1, k2 = kept_map(v1), kept_map(v2)
    for key, index in k1.items():
        assert k2[key] == index
    for field in ("country", "tags"):
        max1 = max(i for (f, _), i in k1.items() if f == field)
        new = sorted((i, v) for (f, v), i in k2.items() if f == field and (f, v) not in k1)
        assert new and all(i > max1 for i, _ in new)
        assert [i for i, _ in new] == list(range(max1 + 1, max1 + 1 + len(new)))
    # count desc, then value asc among newly kept
    assert [v for (f, v), _ in sorted(k2.items(), key=lambda kv: kv[1]) if f == "country"] == [
        "DE",
        "US",
        "FR",
        "BR",
        "IT",
        "AR",
    ]
    assert k2[("genres", "drama")] == 9
    rows2 = {(r["field"], r["value"]): r for r in v2.to_pylist()}
    assert rows2[("tags", "sad")]["kept"] and rows2[("tags", "sad")]["count"] == 0
    assert rows2[("country", "US")]["kept"] and rows2[("country", "US")]["count"] == 3
    assert ("tags", "rare") not in rows2  # OOV and not seen now: dropped
    assert v1["version"][0].as_py() != v2["version"][0].as_py()

    again = build_hash_dictionary(counts_table(B_ROWS), v1, min_count=5, n_buckets=8)
    assert again.equals(v2)
    shuffled = list(B_ROWS) + [("country", "BR", 0)]
    random.Random(3).shuffle(shuffled)
    assert build_hash_dictionary(
        counts_table(shuffled), v1.take(np.random.default_rng(1).permutation(v1.num_rows)), min_count=5, n_buckets=8
    ).equals(v2)
    # v3 from v2 with no new kept values: same encoding, same version
    v3 = build_hash_dictionary(counts_table([("country", "zz", 1)]), v2, min_count=5, n_buckets=8)
    assert kept_map(v3) == k2 and v3["version"][0].as_py() == v2["version"][0].as_py()


def test_version_ignores_counts_but_not_encoding():
    a = build_hash_dictionary(counts_table(A_ROWS), min_count=5)
    more = [(f, v, c * 3) for f, v, c in A_ROWS if c >= 5] + [("tags", "x", 1), ("tags", "y", 2)]
    b = build_hash_dictionary(counts_table(more), min_count=5)
    assert kept_map(a) == kept_map(b) and a["version"][0].as_py() == b["version"][0].as_py()
    c = build_hash_dictionary(counts_table(A_ROWS), min_count=5, n_buckets=32)
    assert c["version"][0].as_py() != a["version"][0].as_py()
    d = build_hash_dictionary(counts_table(A_ROWS), min_count=2)
    assert d["version"][0].as_py() != a["version"][0].as_py()


def test_n_buckets_mismatch_raises():
    v1 = build_hash_dictionary(counts_table(A_ROWS), n_buckets=8)
    with pytest.raises(ValueError, match="n_buckets"):
        build_hash_dictionary(counts_table(B_ROWS), v1, n_buckets=16)
    with pytest.raises(ValueError, match="n_buckets"):
        build_hash_dictionary(counts_table(B_ROWS), v1)  # default 16
    with pytest.raises(ValueError):
        build_hash_dictionary(counts_table(A_ROWS), n_buckets=0)
    # the SQL paths refuse a dictionary built with another bucket count
    con = duckdb.connect()
    con.register("dict", v1)
    con.register("src", pa.table({"country": ["DE", "zz"]}))
    with pytest.raises(duckdb.Error, match="n_buckets"):
        con.sql(f"SELECT {encode_sql('dict', 'country', 'country', 16)} FROM src").fetchall()
    with pytest.raises(duckdb.Error, match="n_buckets"):
        con.sql(encode_table_sql("dict", "src", "country", "country", 16)).fetchall()


def test_empty_counts():
    d = build_hash_dictionary(counts_table([]))
    assert d.num_rows == 0 and dictionary_stats(d) == []
    with pytest.raises(ValueError):
        HashEncoder.from_table(d)


# --------------------------------------------------------------------------- Python == SQL


@pytest.fixture(scope="module")
def dictionary() -> pa.Table:
    v1 = build_hash_dictionary(counts_table(A_ROWS), min_count=5, n_buckets=8)
    return build_hash_dictionary(counts_table(B_ROWS), v1, min_count=5, n_buckets=8)


def _sql_indices(con, d: pa.Table, field: str, values: list) -> tuple[list, list]:
    con.register("dict", d)
    src = pa.table({"rid": pa.array(range(len(values)), pa.int64()), "value": pa.array(values, pa.string())})
    con.register("src", src)
    # unqualified `value` on purpose: must refer to src, not to the dictionary's column
    scalar = con.sql(f"SELECT {encode_sql('dict', field, 'value', 8)} AS i FROM src ORDER BY rid")
    bulk = con.sql(f"SELECT rid, value_idx FROM ({encode_table_sql('dict', 'src', field, 'value', 8)}) ORDER BY rid")
    bulk_rows = bulk.fetchall()
    assert [r for r, _ in bulk_rows] == list(range(len(values)))  # row count preserved
    return [i for (i,) in scalar.fetchall()], [i for _, i in bulk_rows]


def test_python_and_sql_agree_on_sample(dictionary):
    enc = HashEncoder.from_table(dictionary)
    assert enc.n_buckets == 8 and enc.version == dictionary["version"][0].as_py()
    con = duckdb.connect()
    for field in ("country", "tags", "genres", "never_seen_field"):
        values = [
            "DE",
            "US",
            "IT",
            "BR",
            "AR",
            "FR",
            "ES",
            "funny",
            "sad",
            "new",
            "other",
            "drama",
            None,
            "",
            " ",
            "DE",
            None,
        ] + TRICKY
        py = enc.encode_many(field, values)
        assert py.dtype == np.int32
        assert py.tolist() == [enc.encode(field, v) for v in values]
        # the column form (one hash per distinct value) gives the same indices
        import polars as pl

        assert enc.encode_column(field, pl.Series(values, dtype=pl.String)).tolist() == py.tolist()
        scalar, bulk = _sql_indices(con, dictionary, field, values)
        assert scalar == py.tolist()
        assert bulk == py.tolist()
    kept = kept_map(dictionary)
    for (f, v), i in kept.items():
        assert enc.encode(f, v) == i
    assert enc.encode("country", None) == 0 and enc.encode("country", "") == 0
    assert enc.encode("country", "DE") == kept[("country", "DE")]
    assert enc.encode("tags", "rare") == 1 + oov_bucket("tags", "rare", 8)
    assert enc.encode_many("country", pa.array(["DE", None])).tolist() == [kept[("country", "DE")], 0]
    import polars as pl

    assert enc.encode_column("country", pl.Series([None, None])).tolist() == [0, 0]
    with pytest.raises(TypeError):
        enc.encode_column("country", pl.Series([1, 2]))


def test_encode_table_sql_keeps_other_columns_and_duplicates(dictionary):
    con = duckdb.connect()
    con.register("dict", dictionary)
    src = pa.table({"user": [1, 2, 3, 4], "country": ["DE", "DE", None, "qq"], "x": [0.5] * 4})
    con.register("users", src)
    out = con.sql(encode_table_sql("dict", "users", "country", "country", 8) + " ORDER BY user").arrow()
    if not isinstance(out, pa.Table):
        out = out.read_all()
    assert out.column_names == ["user", "country", "x", "country_idx"]
    assert out.num_rows == 4
    enc = HashEncoder.from_table(dictionary)
    assert out["country_idx"].to_pylist() == enc.encode_many("country", src["country"]).tolist()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.one_of(st.none(), TEXT, st.sampled_from(["DE", "US", "funny", "new"])), min_size=1, max_size=30),
    field=st.sampled_from(["country", "tags", "genres", "brand_new"]),
)
def test_python_and_sql_agree_on_random_strings(dictionary, values, field):
    enc = HashEncoder.from_table(dictionary)
    con = duckdb.connect()
    py = enc.encode_many(field, values).tolist()
    scalar, bulk = _sql_indices(con, dictionary, field, values)
    assert scalar == py and bulk == py
    kept = kept_map(dictionary)
    for v, i in zip(values, py, strict=False):
        if v is None or v == "":
            assert i == MISSING_INDEX
        elif (field, v) in kept:
            assert i == kept[(field, v)]
        else:
            assert 1 <= i <= 8
