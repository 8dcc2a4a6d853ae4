"""Tests of the synthetic log generator (recsys_assets.core.generator) and its CLI."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from recsys_assets.core import contract
from recsys_assets.core.generator import (
    GENRES,
    LOG_BAD_KINDS,
    SNAPSHOT_BAD_KINDS,
    GeneratorConfig,
    generate,
)
from recsys_assets.generate import main as cli_main

BASE = dict(n_users=400, n_items=300, days=4, impressions_per_day=8000, slate_size=10, seed=11)
LOGS = ("impressions", "events", "watch_stats")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _gen(root: Path, **overrides) -> dict:
    return generate(GeneratorConfig(**{**BASE, **overrides}), root)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _day_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "landing").iterdir() if p.is_dir())


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def _loads(line: bytes):
    return json.loads(line.decode("utf-8"), parse_constant=_reject_constant)


def _read(path: Path) -> list[dict]:
    return [_loads(line) for line in path.read_bytes().splitlines()]


def _parse_ts(value: str) -> dt.datetime:
    assert TS_RE.match(value), value
    t = dt.datetime.fromisoformat(value)
    assert t.tzinfo is not None, value
    return t


def _utc_day(value: str) -> dt.date:
    return _parse_ts(value).astimezone(dt.UTC).date()


def _type_ok(ftype: str, v) -> bool:
    if ftype == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if ftype == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if ftype in ("string", "timestamp"):
        return isinstance(v, str)
    if ftype == "string_list":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if ftype == "json":
        return True
    raise AssertionError(ftype)


_DB = duckdb.connect()
_DB.execute("SET TimeZone = 'UTC'")


def _domain_reasons(table: contract.TableContract, rec: dict) -> list[str]:
    """Evaluate the contract's own SQL domain predicates and row rules on one typed record."""
    scalar = [f for f in table.fields if f.type in ("int", "float", "string", "timestamp")]
    select = ", ".join(f"CAST(? AS {f.duckdb_type}) AS {f.name}" for f in scalar)
    _DB.execute(f"CREATE OR REPLACE TEMP TABLE r AS SELECT {select}", [rec.get(f.name) for f in scalar])
    out = []
    for f in scalar:
        if f.domain_sql and _DB.execute(f"SELECT {f.name} IS NOT NULL AND NOT ({f.domain_sql}) FROM r").fetchone()[0]:
            out.append(f"out_of_domain:{f.name}")
    for reason, rule in table.row_rules:
        if _DB.execute(f"SELECT NOT coalesce(({rule}), TRUE) FROM r").fetchone()[0]:
            out.append(reason)
    return out


def _reasons(
    table: contract.TableContract, line: bytes, *, day: dt.date | None, seen_ids: set, users: set, items: set
) -> list[str]:
    """An independent reference classifier: every quarantine reason that applies to a line."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return ["invalid_utf8"]
    try:
        rec = json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:
        return ["non_standard_number" if "non-standard JSON constant" in str(error) else "malformed_json"]
    if not isinstance(rec, dict):
        return ["not_an_object"]
    out = []
    for f in table.fields:
        v = rec.get(f.name)
        if v is None:
            if f.required:
                out.append(f"missing_required:{f.name}")
            continue
        if not _type_ok(f.type, v):
            out.append(f"wrong_type:{f.name}")
        elif f.type == "timestamp" and not (TS_RE.match(v) and dt.datetime.fromisoformat(v).tzinfo):
            out.append(f"bad_timestamp:{f.name}")
    if out:
        return out
    out += _domain_reasons(table, rec)
    if table.time_field and _utc_day(rec[table.time_field]) != day:
        out.append(f"outside_partition:{table.time_field}")
    if rec[table.id_field] in seen_ids:
        out.append("duplicate_id")
    if "user_id" in table.references and rec["user_id"] not in users:
        out.append("unknown_user")
    if "item_id" in table.references and rec["item_id"] not in items:
        out.append("unknown_item")
    return out


def _check_contract_bulk(path: Path, table: contract.TableContract) -> list[dict]:
    """Every line parses and satisfies types / required / domain / row rules of contract.py."""
    recs = _read(path)
    names = {f.name for f in table.fields}
    for rec in recs:
        assert isinstance(rec, dict)
        # only the contract's keys, every required one (optional ones the generator has no value
        # for, e.g. a shown price, are left out as the contract allows)
        assert set(rec) <= names and {f.name for f in table.fields if f.required} <= set(rec), (path, set(rec) ^ names)
        for f in table.fields:
            v = rec.get(f.name)
            if v is None:
                assert not f.required, (path, f.name, rec)
                continue
            assert _type_ok(f.type, v), (path, f.name, rec)
            if f.type == "timestamp":
                _parse_ts(v)
    # the contract's SQL predicates, evaluated by DuckDB over the whole file
    cols = ", ".join(f"'{f.name}': '{f.duckdb_type}'" for f in table.fields)
    rel = f"read_json('{path}', format='newline_delimited', columns={{{cols}}})"
    for f in table.fields:
        if f.domain_sql:
            bad = _DB.execute(
                f"SELECT count(*) FROM {rel} WHERE {f.name} IS NOT NULL AND NOT ({f.domain_sql})"
            ).fetchone()[0]
            assert bad == 0, (path, f.name, f.domain_sql)
    for reason, rule in table.row_rules:
        assert _DB.execute(f"SELECT count(*) FROM {rel} WHERE NOT coalesce(({rule}), TRUE)").fetchone()[0] == 0, reason
    ids = [r[table.id_field] for r in recs]
    assert len(ids) == len(set(ids)), f"duplicate ids in {path}"
    return recs


def _load_logs(root: Path) -> dict[str, pl.DataFrame]:
    out: dict[str, list[pl.DataFrame]] = {n: [] for n in LOGS}
    for day_dir in _day_dirs(root):
        for n in LOGS:
            overrides = {"request_id": pl.String} | ({"value": pl.Float64} if n == "events" else {})
            df = pl.read_ndjson(day_dir / f"{n}.jsonl", schema_overrides=overrides)
            out[n].append(df.with_columns(day=pl.lit(day_dir.name)))
    return {n: pl.concat(v, how="vertical_relaxed") for n, v in out.items()}


def _affinity_matrix(root: Path) -> tuple[np.ndarray, np.ndarray]:
    users = sorted(_read(root / "landing" / "users.jsonl"), key=lambda r: r["user_id"])
    items = sorted(_read(root / "landing" / "items.jsonl"), key=lambda r: r["item_id"])
    pref = np.array([[u["genre_pref"][g] for g in GENRES] for u in users])
    gi = {g: i for i, g in enumerate(GENRES)}
    genre_mat = np.zeros((len(items), len(GENRES)))
    for it in items:
        for g in it["genres"]:
            genre_mat[it["item_id"], gi[g]] = 1.0 / len(it["genres"])
    return pref, genre_mat


def _with_clicks(logs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    clicks = (
        logs["events"]
        .filter(pl.col("type") == "click")
        .select("request_id", "item_id", "user_id")
        .unique()
        .with_columns(clicked=pl.lit(True))
    )
    return (
        logs["impressions"]
        .join(clicks, on=["request_id", "item_id", "user_id"], how="left")
        .with_columns(pl.col("clicked").fill_null(False))
    )


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("clean")
    return root, _gen(root)


@pytest.fixture(scope="module")
def clean_logs(clean) -> dict[str, pl.DataFrame]:
    return _load_logs(clean[0])


# ------------------------------------------------------------------------------------------
# determinism, layout, contract
# ------------------------------------------------------------------------------------------


def test_same_seed_is_byte_identical_and_other_seed_differs(clean, tmp_path):
    root, _ = clean
    again = tmp_path / "again"
    _gen(again)
    a, b = _files(root), _files(again)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name
    other = tmp_path / "other"
    _gen(other, seed=BASE["seed"] + 1)
    c = _files(other)
    assert c.keys() == a.keys()
    for name in (
        "landing/users.jsonl",
        "landing/items.jsonl",
        "landing/2026-01-02/impressions.jsonl",
        "landing/2026-01-03/events.jsonl",
        "landing/2026-01-04/watch_stats.jsonl",
    ):
        assert a[name] != c[name], name


def test_layout_summary_and_markers(clean):
    root, summary = clean
    landing = root / "landing"
    days = [d.name for d in _day_dirs(root)]
    assert days == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    assert sorted(summary["days"]) == days
    assert not list(landing.rglob("*.tmp")) and not list(landing.rglob(".*"))  # no temp files left
    assert not list(landing.rglob("_injected_bad.jsonl"))  # no manifests without injection
    for d in _day_dirs(root):
        assert sorted(p.name for p in d.iterdir()) == [
            "_SUCCESS",
            "events.jsonl",
            "impressions.jsonl",
            "watch_stats.jsonl",
        ]
        marker = d / "_SUCCESS"
        assert marker.stat().st_size == 0
        for n in LOGS:  # the marker is written after the data files
            assert marker.stat().st_mtime_ns >= (d / f"{n}.jsonl").stat().st_mtime_ns
            assert summary["days"][d.name][n] == len((d / f"{n}.jsonl").read_bytes().splitlines())
        assert summary["days"][d.name]["impressions"] == BASE["impressions_per_day"]
    assert summary["totals"]["items"] == len((landing / "items.jsonl").read_bytes().splitlines()) == BASE["n_items"]
    assert summary["totals"]["users"] == len((landing / "users.jsonl").read_bytes().splitlines()) == BASE["n_users"]


def test_every_line_satisfies_the_contract(clean):
    root, _ = clean
    landing = root / "landing"
    items = _check_contract_bulk(landing / "items.jsonl", contract.ITEMS)
    users = _check_contract_bulk(landing / "users.jsonl", contract.USERS)
    item_ids, user_ids = {r["item_id"] for r in items}, {r["user_id"] for r in users}
    assert item_ids == set(range(BASE["n_items"])) and user_ids == set(range(BASE["n_users"]))
    for it in items:
        assert 1 <= len(it["genres"]) <= 3 and set(it["genres"]) <= set(GENRES)
    for u in users:
        assert re.fullmatch(r"[A-Z]{2}", u["country"])
        assert set(u["genre_pref"]) == set(GENRES) and abs(sum(u["genre_pref"].values()) - 1) < 0.01
    all_imp_ids: list[int] = []
    for d in _day_dirs(root):
        for table in contract.LOGS:
            recs = _check_contract_bulk(d / f"{table.name}.jsonl", table)
            for r in recs:  # references and partition day
                assert r["user_id"] in user_ids and r["item_id"] in item_ids
                assert _utc_day(r[table.time_field]).isoformat() == d.name
            if table is contract.IMPRESSIONS:
                all_imp_ids += [r["impression_id"] for r in recs]
                assert all(re.fullmatch(r"req-\d{12}", r["request_id"]) for r in recs)
                assert all(0 <= r["position"] < BASE["slate_size"] for r in recs)
            if table is contract.EVENTS:
                for r in recs:
                    assert r["type"] in contract.EVENT_TYPES
                    assert (r["value"] is None) == (r["type"] != "rate")
                    if r["type"] == "rate":
                        assert r["value"] >= 0
            if table is contract.WATCH_STATS:
                for r in recs:
                    assert 0.0 <= r["completion"] <= 1.0 and r["watch_time_sec"] >= 0
                    assert _parse_ts(r["ended_at"]) >= _parse_ts(r["started_at"])
    assert len(all_imp_ids) == len(set(all_imp_ids)), "impression_id must be unique across days"


def test_timestamps_carry_offsets_and_land_in_their_utc_day(clean_logs):
    offsets = Counter()
    for name, col in (("impressions", "shown_at"), ("events", "occurred_at"), ("watch_stats", "started_at")):
        df = clean_logs[name]
        for value, day in zip(df[col].to_list(), df["day"].to_list(), strict=False):
            t = _parse_ts(value)
            offsets[value[19:]] += 1
            assert t.astimezone(dt.UTC).date().isoformat() == day
    assert len(offsets) >= 5, offsets  # per-country offsets, not everything in UTC
    assert "+00:00" in offsets and any(o.startswith("-") for o in offsets)
    assert "+05:30" in offsets or "+03:00" in offsets


# ------------------------------------------------------------------------------------------
# realism
# ------------------------------------------------------------------------------------------


def test_clicks_follow_genre_affinity(clean, clean_logs):
    pref, genre_mat = _affinity_matrix(clean[0])
    imp = _with_clicks(clean_logs)
    aff = (pref[imp["user_id"].to_numpy()] * genre_mat[imp["item_id"].to_numpy()]).sum(axis=1) * len(GENRES)
    clicked = imp["clicked"].to_numpy()
    assert 300 < clicked.sum() < 0.2 * len(clicked)
    assert aff[clicked].mean() > 1.8 * aff[~clicked].mean(), (aff[clicked].mean(), aff[~clicked].mean())
    # completion rises with affinity too
    ws = clean_logs["watch_stats"]
    w_aff = (pref[ws["user_id"].to_numpy()] * genre_mat[ws["item_id"].to_numpy()]).sum(axis=1) * len(GENRES)
    comp = ws["completion"].to_numpy()
    hi = w_aff > np.median(w_aff)
    assert comp[hi].mean() > comp[~hi].mean() + 0.05


def test_position_bias(clean_logs):
    ctr = _with_clicks(clean_logs).group_by("position").agg(pl.col("clicked").mean()).sort("position")
    ctr_by_pos = dict(ctr.rows())
    assert ctr_by_pos[0] > 2.0 * ctr_by_pos[BASE["slate_size"] - 1], ctr_by_pos
    assert ctr_by_pos[0] > ctr_by_pos[3] > ctr_by_pos[BASE["slate_size"] - 1]


def test_popularity_is_heavy_tailed(clean_logs):
    counts = np.sort(clean_logs["impressions"].group_by("item_id").len()["len"].to_numpy())[::-1]
    top = counts[: BASE["n_items"] // 10].sum() / counts.sum()
    assert top > 0.45, top  # uniform would give ~0.10
    # popularity order is unrelated to item_id
    per_item = clean_logs["impressions"].group_by("item_id").len().sort("item_id")
    corr = np.corrcoef(per_item["item_id"].to_numpy(), per_item["len"].to_numpy())[0, 1]
    assert abs(corr) < 0.3


def test_events_and_watches_link_to_their_impression(clean_logs):
    imp = (
        clean_logs["impressions"]
        .select("request_id", "user_id", "item_id", shown=pl.col("shown_at"))
        .unique(subset=["request_id", "user_id", "item_id"])
    )
    for name, tcol in (("events", "occurred_at"), ("watch_stats", "started_at")):
        df = clean_logs[name]
        linked = df.filter(pl.col("request_id").is_not_null())
        joined = linked.join(imp, on=["request_id", "user_id", "item_id"], how="left")
        assert joined["shown"].null_count() == 0, f"{name}: request_id without a matching impression"
        # follow-ups happen after the impression was shown
        later = [
            _parse_ts(a) >= _parse_ts(b)
            for a, b in zip(joined[tcol].to_list(), joined["shown"].to_list(), strict=False)
        ]
        assert all(later)
    ws = clean_logs["watch_stats"]
    organic = ws["request_id"].null_count() / ws.height
    assert 0.02 < organic < 0.10, organic
    ev = clean_logs["events"]
    types = Counter(ev["type"].to_list())
    assert set(types) == set(contract.EVENT_TYPES)
    assert types["click"] > types["play_start"] > types["like"] > 0
    # every request-linked play_start has a click before it, every watch a play_start
    keys = lambda df: set(zip(df["request_id"].to_list(), df["item_id"].to_list(), strict=False))  # noqa: E731
    linked = ev.filter(pl.col("request_id").is_not_null())
    assert keys(linked.filter(pl.col("type") == "play_start")) <= keys(linked.filter(pl.col("type") == "click"))
    assert keys(ws.filter(pl.col("request_id").is_not_null())) == keys(linked.filter(pl.col("type") == "play_start"))


def test_new_items_and_users_appear_over_time(clean, clean_logs):
    landing = clean[0] / "landing"
    added = {r["item_id"]: _utc_day(r["added_at"]) for r in _read(landing / "items.jsonl")}
    reg = {r["user_id"]: _parse_ts(r["registered_at"]) for r in _read(landing / "users.jsonl")}
    start = dt.date(2026, 1, 1)
    late_items = {i for i, day in added.items() if day > start}
    late_users = {u for u, t in reg.items() if t.astimezone(dt.UTC).date() > start}
    assert 0.1 * BASE["n_items"] < len(late_items) < 0.3 * BASE["n_items"]
    assert 0.1 * BASE["n_users"] < len(late_users) < 0.3 * BASE["n_users"]
    imp = clean_logs["impressions"]
    shown_late = set()
    for item, user, shown, day in imp.select("item_id", "user_id", "shown_at", "day").iter_rows():
        assert added[item] <= dt.date.fromisoformat(day), "item shown before it was added"
        assert reg[user] <= _parse_ts(shown), "user active before registering"
        if item in late_items:
            shown_late.add(item)
    assert len(shown_late) > 0.5 * len([i for i in late_items if added[i] <= dt.date(2026, 1, 4)])
    day0 = set(imp.filter(pl.col("day") == "2026-01-01")["item_id"].to_list())
    assert not day0 & late_items


# ------------------------------------------------------------------------------------------
# shifts
# ------------------------------------------------------------------------------------------


def _click_genre_mix(root: Path, logs: dict[str, pl.DataFrame], days: set[str]) -> np.ndarray:
    _, genre_mat = _affinity_matrix(root)
    clicks = logs["events"].filter((pl.col("type") == "click") & pl.col("day").is_in(sorted(days)))
    mix = genre_mat[clicks["item_id"].to_numpy()].sum(axis=0)
    return mix / mix.sum()


def test_genre_shift_changes_the_click_genre_mix(tmp_path):
    cfg = dict(days=6, impressions_per_day=6000)
    shift = dt.date(2026, 1, 4)
    _gen(tmp_path / "base", **cfg)
    _gen(tmp_path / "shift", **cfg, shift_date=shift, shift_kind="genre")
    before = {"2026-01-01", "2026-01-02", "2026-01-03"}
    after = {"2026-01-04", "2026-01-05", "2026-01-06"}
    base_logs, shift_logs = _load_logs(tmp_path / "base"), _load_logs(tmp_path / "shift")
    tv = lambda a, b: 0.5 * np.abs(a - b).sum()  # noqa: E731
    control = tv(
        _click_genre_mix(tmp_path / "base", base_logs, before), _click_genre_mix(tmp_path / "base", base_logs, after)
    )
    shifted = tv(
        _click_genre_mix(tmp_path / "shift", shift_logs, before),
        _click_genre_mix(tmp_path / "shift", shift_logs, after),
    )
    assert shifted > 0.15 and shifted > 3 * control, (shifted, control)
    # days before the shift are untouched
    for day in sorted(before):
        for n in LOGS:
            assert (tmp_path / "base" / "landing" / day / f"{n}.jsonl").read_bytes() == (
                tmp_path / "shift" / "landing" / day / f"{n}.jsonl"
            ).read_bytes()


def test_traffic_and_new_items_shifts(tmp_path):
    cfg = dict(days=4, impressions_per_day=6000)
    _gen(tmp_path / "traffic", **cfg, shift_date=dt.date(2026, 1, 3), shift_kind="traffic")
    logs = _load_logs(tmp_path / "traffic")
    imp = logs["impressions"]
    pre, post = imp.filter(pl.col("day") <= "2026-01-02"), imp.filter(pl.col("day") >= "2026-01-03")
    share = lambda df, col, v: (df[col] == v).mean()  # noqa: E731
    assert share(post, "device_type", "mobile") > share(pre, "device_type", "mobile") + 0.1
    assert share(post, "surface", "search") > share(pre, "surface", "search") + 0.1
    users_pre = Counter(pre["user_id"].to_list())
    users_post = Counter(post["user_id"].to_list())
    top_pre = {u for u, _ in users_pre.most_common(40)}
    top_post = {u for u, _ in users_post.most_common(40)}
    assert len(top_pre & top_post) < 30

    _gen(tmp_path / "base", **cfg)
    _gen(tmp_path / "burst", **cfg, shift_date=dt.date(2026, 1, 3), shift_kind="new_items")
    base_items = _read(tmp_path / "base" / "landing" / "items.jsonl")
    items = _read(tmp_path / "burst" / "landing" / "items.jsonl")
    burst = {b["item_id"] for a, b in zip(base_items, items, strict=False) if a != b}  # only added_at moved
    assert all(_utc_day(r["added_at"]) == dt.date(2026, 1, 3) for r in items if r["item_id"] in burst)
    assert all(_utc_day(r["added_at"]) < dt.date(2026, 1, 3) for r in base_items if r["item_id"] in burst)
    imp = _load_logs(tmp_path / "burst")["impressions"]
    day3 = imp.filter(pl.col("day") == "2026-01-03")
    assert len(burst) >= 0.05 * BASE["n_items"]
    assert day3["item_id"].is_in(sorted(burst)).mean() > 0.25
    assert not imp.filter(pl.col("day") < "2026-01-03")["item_id"].is_in(sorted(burst)).any()


# ------------------------------------------------------------------------------------------
# bad records
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dirty(clean, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("dirty")
    return root, _gen(root, bad_record_rate=0.02)


def _good_lines(path: Path, manifest: list[dict], file_name: str) -> list[bytes]:
    bad = {m["line_no"] for m in manifest if m["file"] == file_name}
    return [line for i, line in enumerate(path.read_bytes().splitlines(keepends=True), start=1) if i not in bad]


def test_good_lines_are_identical_with_injection(clean, dirty):
    (croot, _), (droot, summary) = clean, dirty
    cl, dl = croot / "landing", droot / "landing"
    snap_manifest = _read(dl / "_injected_bad.jsonl")
    for name in ("items.jsonl", "users.jsonl"):
        assert _good_lines(dl / name, snap_manifest, name) == (cl / name).read_bytes().splitlines(keepends=True)
    for d in _day_dirs(droot):
        manifest = _read(d / "_injected_bad.jsonl")
        assert (d / "_SUCCESS").exists()
        assert (d / "_SUCCESS").stat().st_mtime_ns >= (d / "_injected_bad.jsonl").stat().st_mtime_ns
        for n in LOGS:
            clean_lines = (cl / d.name / f"{n}.jsonl").read_bytes().splitlines(keepends=True)
            assert _good_lines(d / f"{n}.jsonl", manifest, f"{n}.jsonl") == clean_lines
            n_bad = sum(m["file"] == f"{n}.jsonl" for m in manifest)
            assert n_bad == summary["days"][d.name]["bad"][n] >= len(LOG_BAD_KINDS[n])
            assert n_bad >= round(0.02 * len(clean_lines))
            total = len((d / f"{n}.jsonl").read_bytes().splitlines())
            assert total == len(clean_lines) + n_bad


def test_manifest_points_at_really_bad_lines_with_the_exact_reason(clean, dirty):
    croot, (droot, _) = clean[0], dirty
    cl, dl = croot / "landing", droot / "landing"
    users = {r["user_id"] for r in _read(cl / "users.jsonl")}
    items = {r["item_id"] for r in _read(cl / "items.jsonl")}
    kinds_seen: dict[str, set] = {}
    reasons_seen: set[str] = set()
    jobs = [(dl / "_injected_bad.jsonl", dl, None, ("items", "users"))]
    jobs += [(d / "_injected_bad.jsonl", d, dt.date.fromisoformat(d.name), LOGS) for d in _day_dirs(droot)]
    for manifest_path, folder, day, names in jobs:
        manifest = _read(manifest_path)
        assert all(set(m) == {"file", "line_no", "kind", "reason"} for m in manifest)
        for name in names:
            table = contract.BY_NAME[name]
            entries = sorted((m for m in manifest if m["file"] == f"{name}.jsonl"), key=lambda m: m["line_no"])
            assert entries, f"no bad lines injected into {folder / name}"
            lines = (folder / f"{name}.jsonl").read_bytes().splitlines()
            by_line = {m["line_no"]: m for m in entries}
            assert len(by_line) == len(entries)
            seen_ids: set = set()
            for line_no, line in enumerate(lines, start=1):
                m = by_line.get(line_no)
                if m is not None:
                    got = _reasons(table, line, day=day, seen_ids=seen_ids, users=users, items=items)
                    assert got == [m["reason"]], (folder.name, name, line_no, m, got, line[:300])
                    assert m["reason"] in _allowed_reasons()
                    kinds_seen.setdefault(name, set()).add(m["kind"])
                    reasons_seen.add(m["reason"])
                    if m["kind"] == "duplicate_id":
                        assert line in lines[: line_no - 1]  # exact copy of an earlier line
                try:  # first line wins: remember ids of every parseable object line
                    rec = _loads(line)
                    if isinstance(rec, dict) and table.id_field in rec:
                        seen_ids.add(rec[table.id_field])
                except ValueError:
                    pass
    for name in LOGS:
        assert kinds_seen[name] == {k for k, _ in LOG_BAD_KINDS[name]}, name
    for name in ("items", "users"):
        assert kinds_seen[name] == {k for k, _ in SNAPSHOT_BAD_KINDS}, name
    expected = {
        "malformed_json",
        "non_standard_number",
        "invalid_utf8",
        "not_an_object",
        "missing_required:user_id",
        "wrong_type:user_id",
        "bad_timestamp:shown_at",
        "bad_timestamp:occurred_at",
        "bad_timestamp:started_at",
        "out_of_domain:position",
        "out_of_domain:type",
        "out_of_domain:value",
        "out_of_domain:completion",
        "out_of_domain:watch_time_sec",
        "out_of_domain:ended_at",
        "duplicate_id",
        "outside_partition:shown_at",
        "outside_partition:occurred_at",
        "outside_partition:started_at",
        "unknown_user",
        "unknown_item",
        "missing_required:item_id",
        "wrong_type:item_id",
    }
    assert reasons_seen == expected, reasons_seen ^ expected


def _allowed_reasons() -> set[str]:
    out = set()
    for pattern in contract.QUARANTINE_REASONS:
        if "<field>" in pattern:
            out |= {pattern.replace("<field>", f.name) for t in contract.ALL_TABLES for f in t.fields}
        else:
            out.add(pattern)
    return out


def test_injected_ids_are_fresh(dirty):
    """Only duplicate_id lines repeat an id; every other bad line carries a fresh one."""
    droot = dirty[0]
    for d in _day_dirs(droot):
        manifest = _read(d / "_injected_bad.jsonl")
        for name in LOGS:
            id_field = contract.BY_NAME[name].id_field
            ids: Counter = Counter()
            for line in (d / f"{name}.jsonl").read_bytes().splitlines():
                try:
                    rec = _loads(line)
                except ValueError:  # invalid UTF-8 / malformed JSON
                    continue
                if isinstance(rec, dict) and id_field in rec:
                    ids[str(rec[id_field])] += 1  # str(): a wrong_type id must not reuse a good id either
            surplus = sum(v - 1 for v in ids.values() if v > 1)
            expected = sum(m["file"] == f"{name}.jsonl" and m["kind"] == "duplicate_id" for m in manifest)
            assert surplus == expected, (d.name, name, surplus, expected)


def test_rerun_without_injection_restores_clean_output(clean, tmp_path):
    root = tmp_path / "r"
    _gen(root, bad_record_rate=0.01)
    assert (root / "landing" / "_injected_bad.jsonl").exists()
    _gen(root)
    assert _files(root) == _files(clean[0])


# ------------------------------------------------------------------------------------------
# config & CLI
# ------------------------------------------------------------------------------------------


def test_config_validation():
    with pytest.raises(ValueError):
        GeneratorConfig(shift_kind="weather")
    with pytest.raises(ValueError):
        GeneratorConfig(bad_record_rate=-0.1)
    assert GeneratorConfig(start_date="2026-02-01").start_date == dt.date(2026, 2, 1)


def test_chunk_size_does_not_change_output(clean, tmp_path):
    _gen(tmp_path / "c", chunk_rows=777)
    assert _files(tmp_path / "c") == _files(clean[0])


def test_cli(tmp_path, capsys):
    summary = cli_main(
        [
            "--root",
            str(tmp_path / "data"),
            "--users",
            "50",
            "--items",
            "40",
            "--days",
            "2",
            "--start",
            "2026-03-01",
            "--impressions-per-day",
            "500",
            "--seed",
            "3",
            "--shift-date",
            "2026-03-02",
            "--shift-kind",
            "genre",
            "--bad-rate",
            "0.01",
        ]
    )
    out = capsys.readouterr().out
    assert "landing" in out and "impressions" in out
    landing = tmp_path / "data" / "landing"
    assert (landing / "2026-03-02" / "_SUCCESS").exists()
    assert (landing / "2026-03-01" / "_injected_bad.jsonl").exists()
    assert summary["totals"]["impressions"] == 1000
    assert summary["days"]["2026-03-01"]["impressions"] == 500


def test_sessions_carry_the_signal_request_time_features_read(clean_logs):
    """Requests come in sessions; users look at items (views) before choosing; a later list of
    the session shows again what the session looked at, and such an item is chosen far more
    often: the default data holds what session features can learn (and nothing before the
    request gives away the choice)."""
    imp, ev = clean_logs["impressions"], clean_logs["events"]
    assert imp["session_id"].null_count() == 0
    per_session = imp.group_by("session_id").agg(pl.col("request_id").n_unique().alias("requests"))
    assert 2.0 < per_session["requests"].mean() < 3.0  # mean session length 1 / _SESSION_P = 2.5
    views = ev.filter(pl.col("type") == "view")
    assert views.height > 0 and set(views["subtype"].unique()) <= set(contract.VIEW_SUBTYPES)
    assert ev.filter(pl.col("type") != "view")["subtype"].null_count() == ev.filter(pl.col("type") != "view").height
    t = pl.col("occurred_at").str.to_datetime(time_zone="UTC")
    looked = views.select("session_id", "item_id", t.alias("viewed_at"))
    shown = imp.select("request_id", "session_id", "item_id", pl.col("shown_at").str.to_datetime(time_zone="UTC"))
    seen_before = (
        shown.join(looked, on=["session_id", "item_id"])
        .filter(pl.col("viewed_at") < pl.col("shown_at"))
        .select("request_id", "item_id")
        .unique()
        .with_columns(pl.lit(True).alias("seen"))
    )
    clicks = ev.filter(pl.col("type") == "click").select("request_id", "item_id").unique()
    rates = (
        shown.join(seen_before, on=["request_id", "item_id"], how="left")
        .join(clicks.with_columns(pl.lit(1).alias("clicked")), on=["request_id", "item_id"], how="left")
        .group_by(pl.col("seen").fill_null(False))
        .agg(pl.col("clicked").fill_null(0).mean().alias("ctr"), pl.len())
    )
    ctr = dict(zip(rates["seen"].to_list(), rates["ctr"].to_list(), strict=True))
    assert rates.filter("seen")["len"][0] > 500
    assert ctr[True] > 3 * ctr[False], ctr


def test_the_oracle_comes_from_the_truth_and_predicts_the_positives(clean):
    """true_positive_rates() needs only the config (no log: it cannot see the labels) and ranks
    what users actually went on to watch far above a popularity ranking of the same day."""
    from recsys_assets.core.generator import GeneratorConfig, true_positive_rates

    root, _ = clean
    config = GeneratorConfig(**BASE)
    day = config.dates[-1]
    rates = true_positive_rates(config, day)
    assert rates.shape == (BASE["n_users"], BASE["n_items"]) and np.array_equal(rates, true_positive_rates(config, day))
    watches = pl.read_ndjson(root / "landing" / day.isoformat() / "watch_stats.jsonl")
    positives = watches.filter(pl.col("completion") >= 0.6).select("user_id", "item_id").unique()
    users = positives["user_id"].unique().to_numpy()
    observed = np.zeros(rates.shape, bool)
    observed[positives["user_id"].to_numpy(), positives["item_id"].to_numpy()] = True
    oracle_top = np.argsort(-rates[users], axis=1)[:, :10]
    popular_top = np.tile(np.argsort(-rates.sum(axis=0))[:10], (len(users), 1))
    hits = {
        name: np.take_along_axis(observed[users], top, axis=1).sum()
        for name, top in (("oracle", oracle_top), ("popularity", popular_top))
    }
    assert hits["oracle"] > 1.2 * hits["popularity"], hits
    with pytest.raises(ValueError, match="outside the generated days"):
        true_positive_rates(config, config.start_date - dt.timedelta(days=1))
