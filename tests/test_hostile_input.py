"""Hostile input end to end through the real ingestion function (`ingest_file`, the body of
every raw asset): hypothesis mixes valid contract records with generated bad ones of every
category (the contract's quarantine reasons plus huge lines, deep nesting, NaN/Infinity,
trailing commas, nulls in arrays of strings,
numbers as strings, missing or impossible offsets, BOMs, CRLF, empty and not-JSON files,
duplicated lines and files) and checks that nothing crashes, every valid row is loaded
exactly once, every bad one is quarantined with its reason, and read = loaded + quarantined.

The hand-written cases of each reason live in test_ingest.py; line splitting alone in
test_read_lines_property.py; events whose request belongs to another partition are a
linkage-check matter (test_raw_assets.py::test_events_for_requests_of_another_partition).
Figures for docs/reliability.md: RECSYS_HOSTILE_STATS=<file> appends one JSON line per example.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from recsys_assets.core import contract as c
from recsys_assets.core.ingest import DEFAULT_MAX_LINE_BYTES, ingest_file

DAY = date(2026, 1, 5)
USERS, ITEMS = (1, 2, 3), (10, 11, 12)
BOM = b"\xef\xbb\xbf"
CAP = DEFAULT_MAX_LINE_BYTES  # the real default cap: one huge line is over 1 MiB
GARBAGE_REASONS = {"malformed_json", "invalid_utf8", "not_an_object"}

# Every bad category the test generates (line level) and file-level shapes.
BAD = [
    "huge_line",
    "deep_nesting_in_field",
    "deep_nesting_line",
    "nan_infinity",
    "number_as_string",
    "no_offset",
    "impossible_offset",
    "offset_moves_day",
    "other_day",
    "bom_mid_file",
    "not_json",
    "invalid_utf8",
    "not_an_object",
    "missing_required",
    "null_required",
    "out_of_domain",
    "unknown_user",
    "unknown_item",
    "duplicate_line",
    "duplicate_id",
    "truncated",
    "float_for_int",
    "non_standard_spelling",
    "trailing_comma",
    "null_in_list",
    "hour_24",
]
# Kinds that need a field only some contracts have (an array of strings).
ONLY_FOR = {"null_in_list": {c.IMPRESSIONS.name}}
# Every spelling DuckDB's JSON reader accepts besides exactly NaN / Infinity / -Infinity.
NON_STANDARD_SPELLINGS = [
    b"nan",
    b"NAN",
    b"-nan",
    b"-NaN",
    b"nAn",
    b"inf",
    b"-inf",
    b"Inf",
    b"-Inf",
    b"INF",
    b"infinity",
    b"-infinity",
    b"INFINITY",
    b"iNf",
]
# Derandomized (the same examples in every CI run) and not shrunk: a failure prints the drawn
# file as generated; shrinking megabyte lines would cost minutes.
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]
FILE_SHAPES = ["mixed", "empty", "blank_only", "not_json_file", "valid_only"]


# --- valid records -----------------------------------------------------------------------


def _ts(instant: datetime, offset_min: int, style: int, fraction: int) -> str:
    """`instant` (UTC) written in local time with an explicit offset, in one of several spellings."""
    local = instant + timedelta(minutes=offset_min)
    sep = "T" if style % 2 == 0 else " "
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (f".{fraction:06d}" if fraction else "")
    if offset_min == 0 and style < 2:
        return text + "Z"
    sign, minutes = ("+" if offset_min >= 0 else "-"), abs(offset_min)
    colon = ":" if style < 4 else ""
    return f"{text}{sign}{minutes // 60:02d}{colon}{minutes % 60:02d}"


@st.composite
def timestamps(draw, day: date = DAY, no_offset: bool = False) -> str:
    instant = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 86_399)))
    offset = draw(st.integers(-48, 56)) * 15  # -12:00 .. +14:00 in quarter hours
    text = _ts(instant, offset, draw(st.integers(0, 5)), draw(st.sampled_from([0, 0, 123456])))
    if no_offset:
        return text[:19]
    return text


STRINGS = st.one_of(
    st.sampled_from(
        [
            "home",
            "NaN",
            "Infinity",
            "search \u2028 row",
            "h\u00e9me",
            "\u5bb6",
            'a"b\\c',
            "a,]",
            "x, }",
            ":nan",
            "[-inf",
        ]
    ),
    st.text(min_size=1, max_size=12).filter(lambda s: "\x00" not in s),
)


@st.composite
def valid_record(draw, contract: c.TableContract, n: int) -> dict:
    """A record that satisfies the contract; `n` makes its id unique in the file."""
    user, item = draw(st.sampled_from(USERS)), draw(st.sampled_from(ITEMS))
    if contract is c.IMPRESSIONS:
        rec = {
            "impression_id": n,
            "user_id": user,
            "item_id": item,
            "surface": draw(STRINGS),
            "position": draw(st.integers(0, 60)),
            "shown_at": draw(timestamps()),
            "request_id": f"req-{draw(st.integers(0, 5))}",
            "device_type": draw(st.sampled_from(["tv", None])),
            "filters": draw(st.sampled_from([None, [], ["a", "NaN"], ["x, ]"]])),
        }
    elif contract is c.EVENTS:
        kind = draw(st.sampled_from(c.EVENT_TYPES))
        rec = {
            "event_id": f"ev-{n}",
            "user_id": user,
            "item_id": item,
            "type": kind,
            "value": draw(st.one_of(st.integers(0, 5), st.floats(0, 5))) if kind == "rate" else None,
            "occurred_at": draw(timestamps()),
            "request_id": draw(st.sampled_from([None, "req-1", "req-9"])),
        }
    else:
        start = draw(timestamps())
        rec = {
            "watch_id": f"w-{n}",
            "user_id": user,
            "item_id": item,
            "started_at": start,
            "ended_at": draw(st.sampled_from([None, "2026-01-07T00:00:00Z"])),
            "watch_time_sec": draw(st.one_of(st.integers(0, 9000), st.floats(0, 9000))),
            "completion": draw(st.one_of(st.sampled_from([0, 1]), st.floats(0, 1))),
            "device_type": "tv",
            "session_id": draw(STRINGS),
            "request_id": None,
        }
    if draw(st.booleans()):  # unknown extra fields, even deeply nested ones, are ignored
        depth = draw(st.integers(1, 200))
        rec["extra"] = json.loads("[" * depth + "]" * depth)
    if draw(st.booleans()):
        rec = dict(reversed(list(rec.items())))
    return rec


def dump(rec: dict, ascii_only: bool = True) -> bytes:
    return json.dumps(rec, ensure_ascii=ascii_only).encode()


# --- bad records: (line bytes, expected reason) ------------------------------------------


def bad_line(draw, contract: c.TableContract, kind: str, n: int, earlier_valid: list[tuple[bytes, dict]]):
    rec = draw(valid_record(contract, n))
    t = contract.time_field
    if kind == "huge_line":
        rec["pad"] = "x" * (CAP + draw(st.sampled_from([1, 10, CAP])))  # 1 MiB + a little, or 2 MiB
        return dump(rec), "line_too_long"
    if kind == "deep_nesting_in_field":
        depth = draw(st.integers(1, 20_000))
        raw = dump({**rec, "user_id": "@@"}).replace(b'"@@"', b"[" * depth + b"1" + b"]" * depth)
        return raw, "wrong_type:user_id"
    if kind == "deep_nesting_line":
        depth = draw(st.integers(1, 100_000))
        if draw(st.booleans()):
            return b"[" * depth + b"]" * depth, "not_an_object"
        # an object without any contract field: every required field is reported, in field order
        return b'{"a":' * depth + b"1" + b"}" * depth, "; ".join(
            f"missing_required:{f.name}" for f in contract.fields if f.required
        )
    if kind == "nan_infinity":
        literal = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]))
        field = draw(st.sampled_from(["user_id", "item_id", "pad"]))
        return dump({**rec, field: "@@"}).replace(b'"@@"', literal), "non_standard_number"
    if kind == "non_standard_spelling":  # in a typed field, an unknown one, or nested in one
        literal = draw(st.sampled_from(NON_STANDARD_SPELLINGS))
        field = draw(st.sampled_from(["user_id", "item_id", "pad", "nested"]))
        if field == "nested":
            return dump({**rec, "pad": {"x": [1, "@@"]}}).replace(b'"@@"', literal), "non_standard_number"
        return dump({**rec, field: "@@"}).replace(b'"@@"', literal), "non_standard_number"
    if kind == "trailing_comma":
        where = draw(st.sampled_from(["object", "array", "nested_object", "spaced"]))
        if where == "object":
            return dump(rec)[:-1] + b",}", "trailing_comma"
        if where == "spaced":
            return dump(rec)[:-1] + b" , \t }", "trailing_comma"
        pad = b"[1, 2,]" if where == "array" else b'{"a": [1], }'
        return dump({**rec, "pad": "@@"}).replace(b'"@@"', pad), "trailing_comma"
    if kind == "hour_24":  # DuckDB reads T24:00:00 as the next midnight, i.e. the partition's day
        previous = (DAY - timedelta(days=1)).isoformat()
        return dump({**rec, t: f"{previous}T24:00:00" + draw(st.sampled_from(["Z", "+00:00"]))}), f"bad_timestamp:{t}"
    if kind == "null_in_list":
        if contract is not c.IMPRESSIONS:
            return None
        return dump({**rec, "filters": draw(st.sampled_from([[None], ["a", None]]))}), "null_in_list:filters"
    if kind == "number_as_string":
        field = draw(
            st.sampled_from(
                ["user_id", "item_id"]
                + (
                    ["position", "impression_id"]
                    if contract is c.IMPRESSIONS
                    else ["watch_time_sec"]
                    if contract is c.WATCH_STATS
                    else []
                )
            )
        )
        return dump({**rec, field: str(rec[field])}), f"wrong_type:{field}"
    if kind == "float_for_int":
        return dump({**rec, "item_id": rec["item_id"] + 0.5}), "wrong_type:item_id"
    if kind == "no_offset":
        return dump({**rec, t: draw(timestamps(no_offset=True))}), f"bad_timestamp:{t}"
    if kind == "impossible_offset":
        off = draw(st.sampled_from(["+24:00", "+25:00", "-99:00", "+05:60", "+0575", "z", "+5"]))
        return dump({**rec, t: draw(timestamps(no_offset=True)) + off}), f"bad_timestamp:{t}"
    if kind == "offset_moves_day":  # local date is DAY, the UTC instant is not
        hour = draw(st.integers(0, 2))
        return dump({**rec, t: f"{DAY.isoformat()}T0{hour}:30:00+0{hour + 3}:00"}), f"outside_partition:{t}"
    if kind == "other_day":
        other = DAY + timedelta(days=draw(st.sampled_from([-1, 1, 365])))
        rec |= {"ended_at": None} if contract is c.WATCH_STATS else {}  # one defect only: not ended before start
        return dump({**rec, t: draw(timestamps(day=other))}), f"outside_partition:{t}"
    if kind == "bom_mid_file":
        return BOM + dump(rec), "malformed_json"
    if kind == "not_json":
        text = draw(
            st.text(min_size=1, max_size=60).filter(lambda s: s.strip() and not s.lstrip().startswith(("{", "[")))
        )
        return text.replace("\n", " ").replace("\r", " ").encode(), GARBAGE_REASONS
    if kind == "invalid_utf8":
        return dump(rec).replace(b'"user_id"', b'"user_\xff\xfeid"', 1), "invalid_utf8"
    if kind == "not_an_object":
        return draw(
            st.sampled_from([b"[1, 2]", b"42", b'"a string"', b"null", b"true", b"[]", b"[{}]"])
        ), "not_an_object"
    if kind in ("missing_required", "null_required"):
        field = draw(st.sampled_from([f.name for f in contract.fields if f.required]))
        changed = {k: v for k, v in rec.items() if k != field} if kind == "missing_required" else {**rec, field: None}
        return dump(changed), f"missing_required:{field}"
    if kind == "out_of_domain":
        field, value = draw(
            st.sampled_from(
                {
                    "impressions": [("position", -1), ("user_id", -5), ("surface", "")],
                    "events": [("type", "teleport"), ("item_id", -1), ("event_id", "")],
                    "watch_stats": [("completion", 1.5), ("watch_time_sec", -1), ("completion", -0.1)],
                }[contract.name]
            )
        )
        return dump({**rec, field: value}), f"out_of_domain:{field}"
    if kind == "unknown_user":
        return dump({**rec, "user_id": 999}), "unknown_user"
    if kind == "unknown_item":
        return dump({**rec, "item_id": 999}), "unknown_item"
    if kind in ("duplicate_line", "duplicate_id"):
        if not earlier_valid:
            return None
        raw, first = draw(st.sampled_from(earlier_valid))
        if kind == "duplicate_line":
            return raw, "duplicate_id"
        return dump({**rec, contract.id_field: first[contract.id_field]}), "duplicate_id"
    if kind == "truncated":
        raw = dump(rec)
        return raw[: draw(st.integers(1, len(raw) - 1))], "malformed_json"
    raise AssertionError(kind)


@st.composite
def landing_file(draw, contract: c.TableContract, kinds: list[str] | None = None):
    """(file bytes, [(line_no, kind, expected reason | None, id)], shape). `kinds` forces the
    line kinds in order (blank lines may still be interleaved)."""
    shape = "mixed" if kinds else draw(st.sampled_from(FILE_SHAPES))
    n_lines = len(kinds) if kinds else 0 if shape == "empty" else draw(st.integers(1, 25))
    entries, valid = [], []
    for n in range(n_lines):
        if shape == "blank_only" or (shape == "mixed" and draw(st.integers(0, 9)) == 0):
            entries.append((draw(st.sampled_from([b"", b"   ", b"\t"])), "blank", None, None))
        if shape == "blank_only":
            continue
        kind = (
            kinds[n]
            if kinds
            else {"valid_only": "valid", "not_json_file": "not_json"}.get(shape)
            or draw(st.sampled_from(["valid"] * 6 + BAD))
        )
        if kind != "valid":
            made = bad_line(draw, contract, kind, n, valid)
            if made is not None:
                entries.append((made[0], kind, made[1], None))
                continue
            kind = "valid"
        rec = draw(valid_record(contract, n))
        raw = dump(rec, ascii_only=draw(st.booleans()))
        valid.append((raw, rec))
        entries.append((raw, "valid", None, rec[contract.id_field]))
    # a BOM opening the file is not data: a "mid-file" BOM on line 1 needs one before it
    bom = draw(st.booleans()) or bool(entries and entries[0][1] == "bom_mid_file")
    endings = [draw(st.sampled_from([b"\n", b"\r\n"])) for _ in entries]
    if entries and entries[-1][0] and draw(st.booleans()):
        endings[-1] = b""  # no newline at the end of the file
    data = (BOM if bom else b"") + b"".join(raw + end for (raw, *_), end in zip(entries, endings, strict=False))
    expected = [(no, kind, reason, rid) for no, (_, kind, reason, rid) in enumerate(entries, start=1)]
    return data, expected, shape


# --- the property ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dims(tmp_path_factory):
    root = tmp_path_factory.mktemp("dims")
    out = {}
    for contract, ref, ids in ((c.USERS, "user_id", USERS), (c.ITEMS, "item_id", ITEMS)):
        src = root / f"{contract.name}.jsonl"
        src.write_text("".join(json.dumps({ref: i}) + "\n" for i in ids))
        path = root / f"{contract.asset_name}.parquet"
        ingest_file(contract, src, src.name, "snapshot", None, path, root / f"q_{contract.name}.parquet")
        out[ref] = str(path)
    return out


def _ingest(contract, src, out, known_ids, day=DAY):
    data, quarantine = out / "data.parquet", out / "quarantine.parquet"
    result = ingest_file(contract, src, src.name, day.isoformat(), day, data, quarantine, known_ids=known_ids)
    con = duckdb.connect()
    loaded = [r[0] for r in con.execute(f"SELECT {contract.id_field} FROM '{data}'").fetchall()]
    quarantined = dict(con.execute(f"SELECT line_no, reason FROM '{quarantine}' ORDER BY line_no").fetchall())
    heads = con.execute(
        f"SELECT coalesce(max(length(raw_line)) FILTER (WHERE reason = 'line_too_long'), 0), bool_and(asset = '{contract.asset_name}' AND partition = "
        f"'{day.isoformat()}' AND source_file = '{src.name}') FROM '{quarantine}'"
    ).fetchone()
    con.close()
    return result, loaded, quarantined, heads, data, quarantine


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_file(contract, data: bytes, expected, tmp, known_ids, redeliver: bool = True):
    src = tmp / f"{contract.name}.jsonl"
    src.write_bytes(data)
    result, loaded, quarantined, (longest, labelled), data_path, q_path = _ingest(contract, src, tmp / "a", known_ids)

    valid_ids = [rid for _, kind, _, rid in expected if kind == "valid"]
    bad = {no: reason for no, kind, reason, _ in expected if kind not in ("valid", "blank")}
    # every valid row loaded exactly once, in line order; nothing else loaded
    assert loaded == valid_ids
    # every bad line quarantined, with its reason; no valid line quarantined
    assert sorted(quarantined) == sorted(bad)
    for no, reason in bad.items():
        ok = quarantined[no] in reason if isinstance(reason, set) else quarantined[no] == reason
        assert ok, (no, quarantined[no], reason)
    assert result.rows_read == result.rows_loaded + result.rows_quarantined == len(valid_ids) + len(bad)
    assert result.blank_lines == sum(kind == "blank" for _, kind, _, _ in expected)
    # quarantined rows say where they came from; a huge line keeps only its 64 KiB head
    assert result.rows_quarantined == 0 or (labelled and longest <= 64 << 10)

    if redeliver:
        check_redelivery(contract, src, expected, bad, loaded, result, data_path, q_path, tmp, known_ids)
    if os.environ.get("RECSYS_HOSTILE_STATS"):
        with open(os.environ["RECSYS_HOSTILE_STATS"], "a") as fh:
            fh.write(
                json.dumps(
                    {
                        "contract": contract.name,
                        "kinds": Counter(k for _, k, _, _ in expected),
                        "read": result.rows_read,
                        "loaded": result.rows_loaded,
                        "quarantined": result.rows_quarantined,
                        "bytes": len(data),
                    }
                )
                + "\n"
            )


def check_redelivery(contract, src, expected, bad, loaded, result, data_path, q_path, tmp, known_ids):
    """Duplicated files: the same file ingested again (a re-delivery or a re-run) changes
    nothing; delivered as the next day's file, none of its valid rows loads there."""
    first = (_sha(data_path), _sha(q_path))
    again = _ingest(contract, src, tmp / "a", known_ids)
    assert again[1] == loaded and (_sha(data_path), _sha(q_path)) == first
    # the same file delivered as the next day's file loads nothing: every valid row is outside that day
    other, other_loaded, other_q, *_ = _ingest(contract, src, tmp / "b", known_ids, day=DAY + timedelta(days=1))
    valid_lines = [no for no, kind, _, _ in expected if kind == "valid"]
    assert all(other_q[no] == f"outside_partition:{contract.time_field}" for no in valid_lines)
    # only lines that really belong to the next day (generated as "other_day") may load there
    may_load = {no for no, kind, _, _ in expected if kind == "other_day"}
    assert set(bad) - may_load <= set(other_q) and len(other_loaded) <= len(may_load)
    assert other.rows_read == other.rows_loaded + other.rows_quarantined == result.rows_read


@pytest.mark.parametrize("contract", c.LOGS, ids=lambda t: t.name)
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    phases=NO_SHRINK,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=st.data())
def test_hostile_files_load_every_valid_row_once_and_quarantine_every_bad_one(tmp_path_factory, dims, contract, case):
    data, expected, _ = case.draw(landing_file(contract))
    redeliver = case.draw(st.integers(0, 2)) == 0  # a third of the files are also re-delivered (cost: 2 ingests)
    check_file(contract, data, expected, tmp_path_factory.mktemp("h"), dims, redeliver)


@pytest.mark.parametrize("contract", c.LOGS, ids=lambda t: t.name)
@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    phases=NO_SHRINK,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=st.data())
def test_one_file_with_every_category(tmp_path_factory, dims, contract, case):
    """Every bad category at least once in one file, between valid rows (not left to chance)."""
    bad = [k for k in BAD if contract.name in ONLY_FOR.get(k, {contract.name})]
    kinds = ["valid", "valid"] + bad + ["valid"]
    data, expected, _ = case.draw(landing_file(contract, kinds=kinds))
    assert {k for _, k, _, _ in expected} - {"blank"} == {"valid", *bad}
    check_file(contract, data, expected, tmp_path_factory.mktemp("all"), dims)
