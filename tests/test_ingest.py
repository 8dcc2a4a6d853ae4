"""Ingestion of hand-written landing files: every bad-record kind is quarantined with the
right reason, every valid row loads exactly once, and read = loaded + quarantined."""

import json
from datetime import date

import duckdb
import pytest

from recsys_assets.core import contract as c
from recsys_assets.core.ingest import ingest_file, ingest_files, read_lines, strict_json_reason

DAY = date(2026, 1, 5)


def imp(i, **over):
    rec = {
        "impression_id": i,
        "user_id": 1,
        "item_id": 10,
        "surface": "home",
        "position": 0,
        "shown_at": "2026-01-05T12:00:00+01:00",
        "request_id": f"req-{i}",
        "device_type": "tv",
    }
    rec.update(over)
    return {k: v for k, v in rec.items() if v is not ...}


def line(rec):
    return json.dumps(rec)


@pytest.fixture
def dims(tmp_path, write_jsonl):
    """raw_users / raw_items snapshots with users 1, 2 and items 10, 11."""
    out = {}
    users = write_jsonl(tmp_path / "landing/users.jsonl", [line({"user_id": u, "country": "NL"}) for u in (1, 2)])
    items = write_jsonl(tmp_path / "landing/items.jsonl", [line({"item_id": i, "genres": ["drama"]}) for i in (10, 11)])
    for contract, src, ref in ((c.USERS, users, "user_id"), (c.ITEMS, items, "item_id")):
        path = tmp_path / f"lake/{contract.asset_name}/snapshot.parquet"
        ingest_file(contract, src, src.name, "snapshot", None, path, tmp_path / f"q/{contract.asset_name}.parquet")
        out[ref] = str(path)
    return out


def run(tmp_path, contract, src, dims, **kw):
    data, quarantine = tmp_path / "out/data.parquet", tmp_path / "out/q.parquet"
    result = ingest_file(contract, src, src.name, DAY.isoformat(), DAY, data, quarantine, known_ids=dims, **kw)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    return result, con.sql(f"FROM '{data}'"), con.sql(f"FROM '{quarantine}' ORDER BY line_no")


CASES = [
    # (description, raw line, expected reason)
    ("malformed", b'{"impression_id": 1, "user_id"', "malformed_json"),
    ("not json at all", b"hello world", "malformed_json"),
    ("NaN literal", b'{"impression_id": 2, "x": NaN}', "non_standard_number"),
    ("Infinity literal", b'{"impression_id": 2, "position": Infinity}', "non_standard_number"),
    ("lowercase nan outside typed fields", line(imp(20, x="@")).replace('"@"', "nan").encode(), "non_standard_number"),
    ("-Inf nested", line(imp(21, x={"a": [1, "@"]})).replace('"@"', "-Inf").encode(), "non_standard_number"),
    (
        "INFINITY in a typed field",
        line(imp(22, position="@")).replace('"@"', "INFINITY").encode(),
        "non_standard_number",
    ),
    ("trailing comma in the object", line(imp(23))[:-1].encode() + b",}", "trailing_comma"),
    ("trailing comma in an array", line(imp(24, x="@")).replace('"@"', "[1, 2,]").encode(), "trailing_comma"),
    ("both", line(imp(25, x="@")).replace('"@"', "[nan,]").encode(), "trailing_comma; non_standard_number"),
    ("null in an array of strings", line(imp(26, filters=[None])).encode(), "null_in_list:filters"),
    ("null after a string", line(imp(27, filters=["a", None])).encode(), "null_in_list:filters"),
    ("invalid utf-8", line(imp(3, surface="h")).replace('"h"', '"h\xff"').encode("latin-1"), "invalid_utf8"),
    ("array", b"[1, 2, 3]", "not_an_object"),
    ("missing user", line(imp(4, user_id=...)).encode(), "missing_required:user_id"),
    ("null user", line(imp(5, user_id=None)).encode(), "missing_required:user_id"),
    ("number as string", line(imp(6, user_id="1")).encode(), "wrong_type:user_id"),
    ("float position", line(imp(7, position=1.5)).encode(), "wrong_type:position"),
    ("no offset", line(imp(8, shown_at="2026-01-05T12:00:00")).encode(), "bad_timestamp:shown_at"),
    ("not a date", line(imp(9, shown_at="yesterday")).encode(), "bad_timestamp:shown_at"),
    # DuckDB reads T24:00:00 as the next midnight: the previous day's record would move days
    ("hour 24 of the previous day", line(imp(28, shown_at="2026-01-04T24:00:00Z")).encode(), "bad_timestamp:shown_at"),
    ("hour 24 of the day", line(imp(29, shown_at="2026-01-05T24:00:00+00:00")).encode(), "bad_timestamp:shown_at"),
    ("negative position", line(imp(10, position=-1)).encode(), "out_of_domain:position"),
    ("other day", line(imp(11, shown_at="2026-01-06T00:30:00+00:00")).encode(), "outside_partition:shown_at"),
    (
        "local time is another UTC day",
        line(imp(12, shown_at="2026-01-05T00:30:00+03:00")).encode(),
        "outside_partition:shown_at",
    ),
    ("unknown user", line(imp(13, user_id=999)).encode(), "unknown_user"),
    ("unknown item", line(imp(14, item_id=999)).encode(), "unknown_item"),
]


def test_every_bad_kind_is_quarantined_with_its_reason(tmp_path, write_jsonl, dims):
    good = [line(imp(100)).encode(), line(imp(101, shown_at="2026-01-05T23:59:59-00:00", position=3)).encode()]
    bad = [raw for _, raw, _ in CASES] + [good[0]]  # the last one duplicates impression 100
    src = write_jsonl(tmp_path / "landing/2026-01-05/impressions.jsonl", [good[0], *bad[:-1], good[1], bad[-1]])
    result, loaded, quarantined = run(tmp_path, c.IMPRESSIONS, src, dims)

    assert loaded.fetchall() and sorted(r[0] for r in loaded.fetchall()) == [100, 101]
    got = [r[0] for r in quarantined.select("reason").fetchall()]
    assert got == [reason for _, _, reason in CASES] + ["duplicate_id"]
    assert result.rows_read == len(good) + len(bad) == result.rows_loaded + result.rows_quarantined
    rows = quarantined.select("line_no, source_file, partition, asset").fetchall()
    assert rows[0] == (2, "impressions.jsonl", "2026-01-05", "raw_impressions")  # line 1 is the first good row


def test_timestamps_are_stored_as_utc(tmp_path, write_jsonl, dims):
    src = write_jsonl(tmp_path / "i.jsonl", [line(imp(1, shown_at="2026-01-05T12:00:00+05:30"))])
    _, loaded, _ = run(tmp_path, c.IMPRESSIONS, src, dims)
    (shown,) = loaded.select("strftime(timezone('UTC', shown_at), '%Y-%m-%d %H:%M:%S')").fetchall()[0]
    assert shown == "2026-01-05 06:30:00"


def test_bom_crlf_and_blank_lines(tmp_path, write_jsonl, dims):
    lines = [b"\xef\xbb\xbf" + line(imp(1)).encode(), b"", line(imp(2)).encode(), b"   "]
    src = write_jsonl(tmp_path / "i.jsonl", lines, newline=b"\r\n")
    result, loaded, quarantined = run(tmp_path, c.IMPRESSIONS, src, dims)
    assert [r[0] for r in loaded.select("impression_id").fetchall()] == [1, 2]
    assert result.rows_quarantined == 0 and result.blank_lines == 2


def test_empty_file_loads_nothing(tmp_path, write_jsonl, dims):
    src = write_jsonl(tmp_path / "i.jsonl", [])
    result, loaded, quarantined = run(tmp_path, c.IMPRESSIONS, src, dims)
    assert result.rows_read == 0 and loaded.fetchall() == [] and quarantined.fetchall() == []


def test_huge_line_is_capped_and_quarantined(tmp_path, write_jsonl, dims):
    huge = b'{"impression_id": 5, "pad": "' + b"x" * 3_000_000 + b'"}'
    src = write_jsonl(tmp_path / "i.jsonl", [line(imp(1)).encode(), huge, line(imp(2)).encode()])
    result, loaded, quarantined = run(tmp_path, c.IMPRESSIONS, src, dims, max_line_bytes=100_000)
    assert [r[0] for r in loaded.select("impression_id").fetchall()] == [1, 2]
    reason, line_no, raw_len = quarantined.select("reason, line_no, length(raw_line)").fetchall()[0]
    assert (reason, line_no) == ("line_too_long", 2) and raw_len <= 64 * 1024


def test_deeply_nested_json_does_not_crash(tmp_path, write_jsonl, dims):
    nested = b'{"impression_id": 7, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    src = write_jsonl(tmp_path / "i.jsonl", [nested, line(imp(1)).encode()])
    result, loaded, _ = run(tmp_path, c.IMPRESSIONS, src, dims)
    assert [r[0] for r in loaded.select("impression_id").fetchall()] == [1]
    assert result.rows_quarantined == 1


@pytest.mark.parametrize(
    "contract, record, reason",
    [
        (
            c.EVENTS,
            {"event_id": "e1", "user_id": 1, "item_id": 10, "type": "teleport", "occurred_at": "2026-01-05T10:00:00Z"},
            "out_of_domain:type",
        ),
        (
            c.EVENTS,
            {
                "event_id": "e2",
                "user_id": 1,
                "item_id": 10,
                "type": "rate",
                "value": -2,
                "occurred_at": "2026-01-05T10:00:00Z",
            },
            "out_of_domain:value",
        ),
        (
            c.WATCH_STATS,
            {
                "watch_id": "w1",
                "user_id": 1,
                "item_id": 10,
                "started_at": "2026-01-05T10:00:00Z",
                "watch_time_sec": 60,
                "completion": 1.5,
            },
            "out_of_domain:completion",
        ),
        (
            c.WATCH_STATS,
            {
                "watch_id": "w2",
                "user_id": 1,
                "item_id": 10,
                "started_at": "2026-01-05T10:00:00Z",
                "watch_time_sec": -1,
                "completion": 0.5,
            },
            "out_of_domain:watch_time_sec",
        ),
        (
            c.WATCH_STATS,
            {
                "watch_id": "w3",
                "user_id": 1,
                "item_id": 10,
                "started_at": "2026-01-05T10:00:00Z",
                "ended_at": "2026-01-05T09:00:00Z",
                "watch_time_sec": 1,
                "completion": 0.5,
            },
            "out_of_domain:ended_at",
        ),
    ],
)
def test_domain_rules_of_events_and_watches(tmp_path, write_jsonl, dims, contract, record, reason):
    src = write_jsonl(tmp_path / f"{contract.name}.jsonl", [line(record)])
    result, loaded, quarantined = run(tmp_path, contract, src, dims)
    assert loaded.fetchall() == []
    assert quarantined.select("reason").fetchall()[0][0] == reason


def test_integers_are_accepted_for_float_fields(tmp_path, write_jsonl, dims):
    rec = {
        "watch_id": "w1",
        "user_id": 1,
        "item_id": 10,
        "started_at": "2026-01-05T10:00:00Z",
        "watch_time_sec": 60,
        "completion": 1,
    }
    src = write_jsonl(tmp_path / "w.jsonl", [line(rec)])
    _, loaded, _ = run(tmp_path, c.WATCH_STATS, src, dims)
    assert loaded.select("watch_time_sec, completion").fetchall()[0] == (60.0, 1.0)


def test_reference_check_needs_the_snapshots(tmp_path, write_jsonl):
    src = write_jsonl(tmp_path / "i.jsonl", [line(imp(1))])
    with pytest.raises(ValueError, match="snapshot"):
        ingest_file(c.IMPRESSIONS, src, "i.jsonl", "2026-01-05", DAY, tmp_path / "d.parquet", tmp_path / "q.parquet")


def test_read_lines_keeps_line_numbers(tmp_path, write_jsonl):
    src = write_jsonl(tmp_path / "x.jsonl", [b"a", b"", b"b"])
    table = read_lines(src)
    assert table.column("line_no").to_pylist() == [1, 2, 3]
    assert table.column("raw_line").to_pylist() == ["a\n", "\n", "b\n"]
    assert table.column("is_blank").to_pylist() == [False, True, False]


@pytest.mark.parametrize("block_bytes", [1 << 24, 300, 7])
def test_bad_lines_inside_a_block_are_split_out_one_by_one(tmp_path, write_jsonl, dims, monkeypatch, block_bytes):
    """A block holding invalid UTF-8 or an over-long line keeps its good lines (valid
    non-ASCII ones too) on the bulk path: whatever the block size, the outputs are the
    same rows, in line order, with the same reasons."""
    from functools import partial

    from recsys_assets.core import ingest

    monkeypatch.setattr(ingest, "read_lines", partial(ingest.read_lines, block_bytes=block_bytes))
    good = [line(imp(100 + i, surface="hóme" if i % 3 == 0 else "home")).encode() for i in range(40)]
    lines, expected = [], {}
    for i, (_, raw, reason) in enumerate(CASES):
        lines += good[2 * i : 2 * i + 2] + [raw]
        expected[len(lines)] = reason
    lines.append(b'{"pad": "' + b"x" * 3000 + b'"}')  # over the cap below, in the middle of a block
    expected[len(lines)] = "line_too_long"
    lines += good[2 * len(CASES) :]
    src = write_jsonl(tmp_path / "i.jsonl", lines)
    result, data, quarantine = run(tmp_path, c.IMPRESSIONS, src, dims, max_line_bytes=2048)
    assert dict(quarantine.select("line_no, reason").fetchall()) == expected
    assert [r[0] for r in data.select("impression_id").fetchall()] == [100 + i for i in range(len(good))]
    assert [r[0] for r in data.select("surface").fetchall()] == [
        "hóme" if i % 3 == 0 else "home" for i in range(len(good))
    ]
    assert result.rows_loaded == len(good) and result.rows_quarantined == len(expected)


def test_string_escapes_and_number_forms_are_read_exactly(tmp_path, write_jsonl, dims):
    """Field values come from json_transform's JSON text: escaped strings decode exactly,
    integers written as 1e2 or beyond BIGINT are wrong types, -0 is an integer."""
    src = write_jsonl(
        tmp_path / "i.jsonl",
        [
            line(imp(1, surface='ho"me\\', request_id="r\u00e9q/\u0001")),
            b'{"impression_id": 2, "user_id": 1, "item_id": 10, "surface": "h\\u00f3me\\/", "position": -0, '
            b'"shown_at": "2026-01-05T12:00:00\\u002B01:00", "request_id": "r2"}',
            line(imp(3, position=1e2)).encode(),
            b'{"impression_id": 4, "user_id": 123456789012345678901234567890, "item_id": 10, "surface": "s", '
            b'"position": 0, "shown_at": "2026-01-05T12:00:00Z", "request_id": "r4"}',
            line(imp(5, device_type=True)).encode(),
            line(imp(6, surface=["home"])).encode(),
        ],
    )
    _, data, quarantine = run(tmp_path, c.IMPRESSIONS, src, dims)
    assert data.select("impression_id, surface, request_id, position").fetchall() == [
        (1, 'ho"me\\', "r\u00e9q/\u0001", 0),
        (2, "h\u00f3me/", "r2", 0),
    ]
    assert quarantine.select("line_no, reason").fetchall() == [
        (3, "wrong_type:position"),
        (4, "wrong_type:user_id"),
        (5, "wrong_type:device_type"),
        (6, "wrong_type:surface"),
    ]


def test_loaded_rows_keep_line_order_when_a_rule_is_planned_as_a_join(tmp_path, write_jsonl, dims, monkeypatch):
    """`type IN (...)` becomes a join in DuckDB's plan, which reorders rows once the scan
    runs in parallel (many Arrow batches: small blocks): the loaded rows must still come
    out in line order."""
    from functools import partial

    from recsys_assets.core import ingest

    monkeypatch.setattr(ingest, "read_lines", partial(ingest.read_lines, block_bytes=1 << 16))
    n = 60_000
    lines = [
        json.dumps(
            {
                "event_id": f"e{n - i}",
                "user_id": 1,
                "item_id": 10,
                "type": ("click", "like")[i % 2],
                "occurred_at": "2026-01-05T10:00:00Z",
            }
        )
        for i in range(n)
    ]
    src = write_jsonl(tmp_path / "events.jsonl", lines)
    result, data, _ = run(tmp_path, c.EVENTS, src, dims)
    assert result.rows_loaded == n
    assert [r[0] for r in data.select("event_id").fetchall()] == [f"e{n - i}" for i in range(n)]


def test_quarantined_lines_are_taken_chunk_by_chunk():
    """The raw text of quarantined lines is read from the file's chunks without concatenating
    them: the same values as indexing the whole column, across chunk borders, and none."""
    import pyarrow as pa

    from recsys_assets.core.ingest import _take_in_order

    column = pa.chunked_array([["a", "b", "c"], [], ["d"], ["e", "f"]])
    rows = pa.array([0, 2, 3, 5], pa.int64())
    assert _take_in_order(column, rows).to_pylist() == ["a", "c", "d", "f"]
    assert _take_in_order(column, pa.array([], pa.int64())).to_pylist() == []
    assert _take_in_order(column, pa.array([4], pa.int64())).to_pylist() == ["e"]


# Each JSON spelling against each contract type: (field, JSON text, loaded value or reason).
# The validation SQL reads a value's JSON type from its text's first character and casts
# once; these pin that to the contract's types exactly.
JSON_TYPE_MATRIX = [
    ("release_year", "2000", 2000),
    ("release_year", '"2000"', "wrong_type:release_year"),
    ("release_year", "2000.0", "wrong_type:release_year"),
    ("release_year", "2E3", "wrong_type:release_year"),
    ("release_year", "true", "wrong_type:release_year"),
    ("release_year", "false", "wrong_type:release_year"),
    ("release_year", "[2000]", "wrong_type:release_year"),
    ("release_year", '{"y": 2000}', "wrong_type:release_year"),
    ("release_year", "null", None),
    ("release_year", "-0", "out_of_domain:release_year"),
    ("release_year", "99999999999999999999", "wrong_type:release_year"),
    ("title", '"x"', "x"),
    ("title", '""', ""),
    ("title", '"a\\"b\\u00e9"', 'a"b\u00e9'),
    ("title", "5", "wrong_type:title"),
    ("title", "true", "wrong_type:title"),
    ("title", '["x"]', "wrong_type:title"),
    ("title", '{"a": "b"}', "wrong_type:title"),
    ("genres", '["a", "b"]', ["a", "b"]),
    ("genres", "[]", []),
    ("genres", '"a"', "wrong_type:genres"),
    ("genres", '["a", 1]', "wrong_type:genres"),
    ("genres", '[["a"]]', "wrong_type:genres"),
    ("genres", "5", "wrong_type:genres"),
    ("genres", '{"a": 1}', "wrong_type:genres"),
    ("added_at", '"2026-01-05T12:00:00Z"', "2026-01-05 12:00:00+00"),
    ("added_at", "20260105", "wrong_type:added_at"),
    ("added_at", '"2026-01-05"', "bad_timestamp:added_at"),
    ("added_at", "true", "wrong_type:added_at"),
    ("added_at", '"2026-01-05T12:00:00+24:00"', "bad_timestamp:added_at"),
]


@pytest.mark.parametrize("field,text,expected", JSON_TYPE_MATRIX)
def test_each_json_type_is_checked_against_the_contract_type(tmp_path, field, text, expected):
    src = tmp_path / "items.jsonl"
    src.write_text(f'{{"item_id": 7, "{field}": {text}}}\n')
    data, quarantine = tmp_path / "d.parquet", tmp_path / "q.parquet"
    result = ingest_file(c.ITEMS, src, src.name, "snapshot", None, data, quarantine)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    if isinstance(expected, str) and expected.split(":")[0] in ("wrong_type", "bad_timestamp", "out_of_domain"):
        assert result.rows_quarantined == 1
        assert con.execute(f"SELECT reason FROM '{quarantine}'").fetchone()[0] == expected
    else:
        assert result.rows_loaded == 1
        value = con.execute(f"SELECT CAST({field} AS VARCHAR) AS v, {field} FROM '{data}'").fetchone()
        assert (value[0] if field == "added_at" else value[1]) == expected


def test_many_files_in_chunks_equal_one_pass(tmp_path):
    """A history partition's files validated a chunk at a time give the same rows, the same
    quarantine (each bad line naming its own file and line) and the same counts as one pass."""
    days = [date(2026, 1, d) for d in (1, 2, 3, 4)]
    sources = []
    for n, day in enumerate(days):
        path = tmp_path / day.isoformat() / "events.jsonl"
        path.parent.mkdir()
        good = [
            {"event_id": f"e{n}-{i}", "user_id": 1, "item_id": 1, "type": "click", "value": None,
             "occurred_at": f"{day.isoformat()}T10:00:0{i}Z", "request_id": None}
            for i in range(3)
        ]  # fmt: skip
        path.write_text("\n".join(json.dumps(r) for r in good) + "\nnot json\n")
        sources.append((path, f"{day.isoformat()}/events.jsonl"))
    dims = {}
    dimensions = (
        ("user_id", c.USERS, {"user_id": 1}),
        ("item_id", c.ITEMS, {"item_id": 1, "title": "t", "genres": []}),
    )
    for key, contract, row in dimensions:
        src = tmp_path / f"{contract.name}.jsonl"
        src.write_text(json.dumps(row) + "\n")
        out = tmp_path / f"{contract.asset_name}.parquet"
        ingest_file(contract, src, src.name, "snapshot", None, out, tmp_path / f"q{contract.name}.parquet")
        dims[key] = str(out)
    results = {}
    for name, chunk_bytes in (("one", 1 << 30), ("chunked", 1)):
        data, quarantine = tmp_path / f"{name}.parquet", tmp_path / f"{name}_q.parquet"
        result = ingest_files(
            c.EVENTS, sources, "2026-01-04", (days[0], days[-1]), data, quarantine, known_ids=dims,
            chunk_bytes=chunk_bytes,
        )  # fmt: skip
        rows = duckdb.sql(f"SELECT event_id FROM '{data}'").fetchall()
        bad = duckdb.sql(f"SELECT source_file, line_no, reason FROM '{quarantine}'").fetchall()
        results[name] = (result.rows_read, result.rows_loaded, result.rows_quarantined, rows, bad)
    assert results["one"] == results["chunked"]
    assert results["one"][:3] == (16, 12, 4)
    assert [b[:2] for b in results["one"][4]] == [(f"{d.isoformat()}/events.jsonl", 4) for d in days]


def test_dimension_snapshots_refuse_non_strict_json_and_nulls_in_lists(tmp_path, write_jsonl):
    """users.genre_pref is stored as JSON and items.genres as an array of strings: neither may
    keep a NaN literal or a null element."""
    users = write_jsonl(
        tmp_path / "users.jsonl",
        [
            line({"user_id": 1, "genre_pref": {"drama": 0.5}}),
            line({"user_id": 2, "genre_pref": {"a": "@"}}).replace('"@"', "nan"),
            line({"user_id": 3, "genre_pref": {"a": "@"}}).replace('"@"', "Infinity"),
            line({"user_id": 4, "genre_pref": {"a": [1]}}).replace("[1]", "[1,]"),
        ],
    )
    items = write_jsonl(
        tmp_path / "items.jsonl",
        [
            line({"item_id": 10, "genres": ["drama"]}),
            line({"item_id": 11, "genres": [None]}),
            line({"item_id": 12, "genres": ["drama", None], "tags": []}),
            line({"item_id": 13, "genres": [], "tags": ["a", "NaN"]}),
        ],
    )
    con = duckdb.connect()
    for contract, src, loaded_ids, reasons in (
        (c.USERS, users, [1], ["non_standard_number", "non_standard_number", "trailing_comma"]),
        (c.ITEMS, items, [10, 13], ["null_in_list:genres", "null_in_list:genres"]),
    ):
        data, q = tmp_path / f"{contract.name}.parquet", tmp_path / f"q_{contract.name}.parquet"
        result = ingest_file(contract, src, src.name, "snapshot", None, data, q)
        assert [r[0] for r in con.execute(f"SELECT {contract.id_field} FROM '{data}'").fetchall()] == loaded_ids
        assert [r[0] for r in con.execute(f"SELECT reason FROM '{q}' ORDER BY line_no").fetchall()] == reasons
        assert result.rows_read == result.rows_loaded + result.rows_quarantined == 4
    assert con.execute(f"SELECT genres FROM '{tmp_path / 'items.parquet'}' ORDER BY item_id").fetchall() == [
        (["drama"],),
        ([],),
    ]


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"a": 1}', None),
        ('{"a": "x, ]", "b": ":nan"}', None),  # look-alikes inside strings are data
        ('{"a": [1, 2, ]}', "trailing_comma"),
        ('{"a": -iNf}', "non_standard_number"),
        ('{"a": NaN}', "non_standard_number"),
        ('{"a": [nan,], }', "trailing_comma; non_standard_number"),
        ('{"a": nan, "b": +x}', "malformed_json"),
        ('{"s": "x, }", "a": nan}', "non_standard_number"),  # a look-alike in a string decides nothing
        ('{"s": ":nan", "a": [1,]}', "trailing_comma"),
    ],
)
def test_strict_json_reason(text, reason):
    assert strict_json_reason(text) == reason


@pytest.mark.parametrize("batch_lines", [1, 3, 7])
def test_validation_in_batches_gives_the_bytes_of_one_pass(tmp_path, write_jsonl, dims, monkeypatch, batch_lines):
    """Per-line rules run a batch of lines at a time and each batch's bad rows are written out
    at once (memory does not grow with the number of bad lines). Small batches give the same
    data bytes and the same quarantine rows, in line order, as one batch, also when a cross-record reason (a duplicate id,
    an unknown user) falls in a batch of its own, before, between or after the other bad lines."""
    from recsys_assets.core import ingest

    lines = [
        line(imp(1)),
        "{}",
        line(imp(2, user_id=999)),  # unknown user: flagged after the per-line batches
        line(imp(3)),
        line(imp(1)),  # duplicate of line 1
        "[1, 2,]",
        "",
        "{}",
        line(imp(4)),
        line(imp(5, item_id=999)),
        line(imp(6)),
        line(imp(6)),
    ]
    src = write_jsonl(tmp_path / "i.jsonl", lines)
    outputs = {}
    for name, batch in (("one", 1 << 20), ("batched", batch_lines)):
        monkeypatch.setattr(ingest, "VALIDATION_BATCH_LINES", batch)
        data, quarantine = tmp_path / f"{name}.parquet", tmp_path / f"{name}_q.parquet"
        result = ingest_file(c.IMPRESSIONS, src, src.name, DAY.isoformat(), DAY, data, quarantine, known_ids=dims)
        rows = duckdb.sql(f"SELECT * FROM '{quarantine}'").fetchall()
        outputs[name] = (data.read_bytes(), rows, result.rows_loaded, dict(result.reasons))
    assert outputs["batched"] == outputs["one"]
    reasons = [row[4] for row in outputs["one"][1]]
    assert [r.split(":")[0].split(";")[0] for r in reasons] == [
        "missing_required", "unknown_user", "duplicate_id", "trailing_comma", "missing_required", "unknown_item",
        "duplicate_id",
    ]  # fmt: skip
    assert outputs["one"][2] == 4
