"""Request-time features (core/ranking/session_features.py) and contract v2's session fields:
nothing at or after a request's time is ever read, the online session state gives the same
vectors as the day's samples, the session-first slate baseline, the slate gate of the ranker,
and version-1 logs load exactly as before."""

import datetime as dt
import json

import duckdb
import numpy as np
import polars as pl
import pytest

from recsys_assets.core import contract as c
from recsys_assets.core.ingest import ingest_file
from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking import session_features as S
from recsys_assets.services.promotion import apply_slate_gate

T0 = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def log_of(rows) -> pl.DataFrame:
    return pl.DataFrame(
        [{"session_id": s, "item_id": i, "type": t, "occurred_at": at(x)} for s, i, t, x in rows], schema=S.LOG_SCHEMA
    )


def request(request_id, session, seconds, items, prices=None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "request_id": request_id,
            "session_id": session,
            "requested_at": [at(seconds)] * len(items),
            "item_id": items,
            "position": list(range(len(items))),
            "price": prices or [None] * len(items),
        },
        schema_overrides={"requested_at": pl.Datetime("us", "UTC"), "price": pl.Float64},
    )


def test_only_actions_strictly_before_the_request_count():
    log = log_of(
        [
            ("a", 1, "view", 1),
            ("a", 2, "view", 2),
            ("a", 1, "click", 3),
            ("a", 3, "view", 10),  # at the request's time: the answer to it, never a feature
            ("a", 2, "click", 11),  # after it
            ("b", 1, "view", 1),  # another session
        ]
    )
    out = S.request_features(request("r", "a", 10, [1, 2, 3], [100.0, 50.0, 150.0]), log)
    by_item = {row["item_id"]: row for row in out.to_dicts()}
    assert [by_item[i]["s_item_actions"] for i in (1, 2, 3)] == [2, 1, 0]
    assert [by_item[i]["s_item_views"] for i in (1, 2, 3)] == [1, 1, 0]
    assert [by_item[i]["s_item_clicks"] for i in (1, 2, 3)] == [1, 0, 0]
    assert [by_item[i]["s_item_steps_ago"] for i in (1, 2, 3)] == [0, 1, None]
    assert [by_item[i]["s_item_seconds_ago"] for i in (1, 2, 3)] == [7, 8, None]
    assert [by_item[i]["s_item_is_last"] for i in (1, 2, 3)] == [1, 0, 0]
    assert {r["s_actions"] for r in out.to_dicts()} == {3}  # three actions before t=10, not five
    assert {r["s_seconds"] for r in out.to_dicts()} == {9}
    assert {r["s_distinct_items"] for r in out.to_dicts()} == {2}
    assert {(r["s_prev_is_click"], r["s_prev_is_view"]) for r in out.to_dicts()} == {(1, 0)}
    # the list: item 2 is the cheapest, item 1 the last touched (position 0)
    assert [by_item[i]["l_price_rank_share"] for i in (1, 2, 3)] == pytest.approx([1 / 3, 0, 2 / 3])
    assert [by_item[i]["l_price_to_touched_mean"] for i in (1, 2, 3)] == pytest.approx([100 / 75, 50 / 75, 150 / 75])
    assert [by_item[i]["l_last_touched_offset"] for i in (1, 2, 3)] == [0, 1, 2]
    assert [by_item[i]["l_touched_recency_rank"] for i in (1, 2, 3)] == [1, 2, None]
    assert {r["l_touched_in_list"] for r in out.to_dicts()} == {2}


def test_a_request_without_a_session_gets_no_session_features():
    rows = request("r", None, 10, [1, 2]).with_columns(pl.lit(None, pl.String).alias("session_id"))
    out = S.request_features(rows, log_of([("a", 1, "view", 1)]))
    assert out.select(S.SESSION_ITEM + S.SESSION).null_count().row(0) == (2,) * len(S.SESSION_ITEM + S.SESSION)
    assert out["l_list_size"].to_list() == [2, 2]


def _random_day(seed: int):
    rng = np.random.default_rng(seed)
    actions = [
        (f"s{rng.integers(4)}", int(rng.integers(8)), str(rng.choice(["view", "click", "play_start"])), float(x))
        for x in rng.integers(0, 60, 80)
    ]
    requests = [
        request(f"r{n}", f"s{rng.integers(4)}", float(rng.integers(0, 60)), rng.permutation(8)[:5].tolist(), None)
        for n in range(12)
    ]
    return log_of(actions), pl.concat(requests)


@pytest.mark.parametrize("seed", range(5))
def test_offline_samples_equal_the_online_session_state(seed):
    """The day's samples featurise every request against the whole day's log; a server holds,
    per session, only the actions it has seen so far. Both give the same vector, and adding any
    action at or after a request's time changes nothing."""
    log, rows = _random_day(seed)
    offline = S.request_features(rows, log)
    for (request_id,), one in rows.group_by("request_id", maintain_order=True):
        session, when = one["session_id"][0], one["requested_at"][0]
        state = S.SessionState(session)
        for item, kind, occurred in (
            log.filter((pl.col("session_id") == session) & (pl.col("occurred_at") < when))
            .select("item_id", "type", "occurred_at")
            .iter_rows()
        ):
            state.add(item, kind, occurred)
        online = S.request_features(one, state.log())
        expected = offline.filter(pl.col("request_id") == request_id)
        assert online.select(S.SESSION_NUMERIC).equals(expected.select(S.SESSION_NUMERIC)), request_id


def test_feature_frame_appends_request_features_only_for_requests():
    """feature_frame(): pairs that carry their request get the session families; the serving
    candidates (no request) get nulls, as the candidate groups the ranker trained on did."""
    pairs = request("r", "a", 10, [1, 2]).with_columns(
        pl.lit(1).alias("user_id"),
        pl.lit(None, pl.String).alias("surface"),
        pl.lit(None, pl.String).alias("device_type"),
    )
    featured = F._with_request_features(pairs, log_of([("a", 2, "view", 5)]))
    assert featured["s_item_views"].to_list() == [0, 1]
    bare = F._with_request_features(pairs.drop("request_id", "session_id", "requested_at", "price"), None)
    assert bare.select(S.SESSION_NUMERIC).null_count().row(0) == (2,) * len(S.SESSION_NUMERIC)
    assert set(S.SESSION_NUMERIC) <= set(F.numeric_features(()))


def test_session_state_from_records_names_a_bad_event():
    state = S.SessionState.from_records("x", [{"item_id": 3, "type": "view", "occurred_at": "2026-01-05T12:00:00Z"}])
    assert state.log()["item_id"].to_list() == [3]
    with pytest.raises(ValueError, match="session event 1"):
        S.SessionState.from_records("x", [{"item_id": "3", "type": "view", "occurred_at": "2026-01-05T12:00:00Z"}])
    with pytest.raises(ValueError, match="no time zone"):
        S.SessionState.from_records("x", [{"item_id": 3, "type": "view", "occurred_at": "2026-01-05T12:00:00"}])


def _slates(**mrr):
    return [{"scope": "slates", "stage": s, "metric": "mrr", "value": v, "n": 500} for s, v in mrr.items()]


def test_the_ranker_must_beat_the_strongest_slate_ordering():
    promoted = {"day": "d", "decision": "promoted", "champion_day": "d", "reason": "beats recall-only"}
    weak = apply_slate_gate(promoted, _slates(ranker=0.55, shown_order=0.45, session_first=0.60), 50)
    assert weak["decision"] == "rejected" and "session_first 0.6000" in weak["reason"]
    strong = apply_slate_gate(promoted, _slates(ranker=0.62, shown_order=0.45, session_first=0.60), 50)
    assert strong["decision"] == "promoted"
    # the funnel cannot tell orderings apart (recall never holds the choice): the slates decide
    silent = {
        "day": "d",
        "decision": "rejected",
        "candidate_day": "d",
        "candidate_value": 0.0,
        "recall_only_value": 0.0,
        "champion_day": None,
        "reason": "does not beat recall-only",
    }
    assert apply_slate_gate(silent, _slates(ranker=0.62, session_first=0.60), 50)["decision"] == "promoted"
    assert apply_slate_gate(silent, _slates(ranker=0.58, session_first=0.60), 50)["decision"] == "rejected"
    # too few slates: no say
    assert apply_slate_gate(promoted, _slates(ranker=0.1, session_first=0.6), 1000) == promoted


def test_version_1_logs_load_unchanged_and_v2_fields_are_checked(tmp_path, write_jsonl):
    """A log written before sessions existed loads every row, the new columns null; each new
    field has its quarantine rule."""
    users = write_jsonl(tmp_path / "landing/users.jsonl", [json.dumps({"user_id": 1})])
    items = write_jsonl(tmp_path / "landing/items.jsonl", [json.dumps({"item_id": 10})])
    known = {}
    for contract, src, ref in ((c.USERS, users, "user_id"), (c.ITEMS, items, "item_id")):
        path = tmp_path / f"lake/{contract.asset_name}/snapshot.parquet"
        ingest_file(contract, src, src.name, "snapshot", None, path, tmp_path / f"q/{contract.asset_name}.parquet")
        known[ref] = str(path)
    day = dt.date(2026, 1, 5)
    base = {"user_id": 1, "item_id": 10, "occurred_at": "2026-01-05T10:00:00Z"}
    v1 = [base | {"event_id": "e1", "type": "click"}, base | {"event_id": "e2", "type": "rate", "value": 4.0}]
    v2_bad = [
        base | {"event_id": "e3", "type": "click", "subtype": "image"},  # a subtype only on views
        base | {"event_id": "e4", "type": "view", "subtype": "teleport"},
        base | {"event_id": "e5", "type": "view", "session_id": ""},
    ]
    v2_good = [base | {"event_id": "e6", "type": "view", "subtype": "info", "session_id": "s1"}]
    src = write_jsonl(tmp_path / "events.jsonl", [json.dumps(r) for r in v1 + v2_bad + v2_good])
    data, quarantine = tmp_path / "out/data.parquet", tmp_path / "out/q.parquet"
    ingest_file(c.EVENTS, src, src.name, day.isoformat(), day, data, quarantine, known_ids=known)
    con = duckdb.connect()
    rows = con.sql(f"SELECT event_id, type, value, subtype, session_id FROM '{data}' ORDER BY event_id").fetchall()
    assert rows == [
        ("e1", "click", None, None, None),
        ("e2", "rate", 4.0, None, None),
        ("e6", "view", None, "info", "s1"),
    ]
    reasons = con.sql(f"SELECT line_no, reason FROM '{quarantine}' ORDER BY line_no").fetchall()
    assert reasons == [(3, "out_of_domain:subtype"), (4, "out_of_domain:subtype"), (5, "out_of_domain:session_id")]
    imp = {
        "impression_id": 1,
        "user_id": 1,
        "item_id": 10,
        "surface": "search",
        "position": 0,
        "shown_at": "2026-01-05T10:00:00Z",
        "request_id": "q1",
    }
    src = write_jsonl(
        tmp_path / "impressions.jsonl",
        [
            json.dumps(imp),
            json.dumps(imp | {"impression_id": 2, "price": -5.0}),
            json.dumps(imp | {"impression_id": 3, "price": 80.5, "filters": ["wifi"]}),
        ],
    )
    ingest_file(c.IMPRESSIONS, src, src.name, day.isoformat(), day, data, quarantine, known_ids=known)
    assert con.sql(f"SELECT impression_id, price, filters FROM '{data}' ORDER BY 1").fetchall() == [
        (1, None, None),
        (3, 80.5, ["wifi"]),
    ]
    assert con.sql(f"SELECT reason FROM '{quarantine}'").fetchall() == [("out_of_domain:price",)]


def test_partitions_written_before_version_2_still_build(tmp_path):
    """An upgraded data root: raw partitions written under contract v1 lack the v2 columns;
    interactions and the session log read them as null, no re-ingestion needed."""
    from recsys_assets.core.tables import build_table
    from recsys_assets.services.lake import Lake
    from recsys_assets.services.sessions import day_session_log

    con = duckdb.connect()
    lake = Lake(data_root=str(tmp_path))
    imp, ev = lake.partition_path("raw_impressions", "2026-01-05"), lake.partition_path("raw_events", "2026-01-05")
    imp.parent.mkdir(parents=True)
    ev.parent.mkdir(parents=True)
    con.execute(f"""COPY (SELECT 1::BIGINT AS impression_id, 1::BIGINT AS user_id, 10::BIGINT AS item_id,
                            'home' AS surface, 0::BIGINT AS position, TIMESTAMPTZ '2026-01-05 10:00:00+00' AS shown_at,
                            'q1' AS request_id, 'tv' AS device_type) TO '{imp}'""")
    con.execute(f"""COPY (SELECT 'e1' AS event_id, 1::BIGINT AS user_id, 10::BIGINT AS item_id, 'click' AS type,
                            NULL::DOUBLE AS value, TIMESTAMPTZ '2026-01-05 10:00:05+00' AS occurred_at,
                            'q1' AS request_id) TO '{ev}'""")
    out = tmp_path / "interactions.parquet"
    params = {"day": "2026-01-05", "min_pos_completion": 0.6, "like_is_positive": True}
    inputs = {
        "impressions": ("raw_impressions", [imp]),
        "events": ("raw_events", [ev]),
        "watches": ("raw_watch_stats", []),
    }
    assert build_table("interactions.sql", inputs, params, out) == 1
    assert con.sql(f"SELECT clicked, session_id, price FROM '{out}'").fetchall() == [(True, None, None)]
    assert day_session_log(lake, "2026-01-05").height == 0


@pytest.mark.parametrize("seed", range(8))
def test_a_live_sessions_request_features_equal_the_log_path(seed):
    """SessionState.request_features (the server's one request, no shown list) gives exactly
    what request_features() gives the same request's rows against the session's log: random
    sessions with repeated items, equal timestamps, actions at and after the request time,
    candidates touched and untouched."""
    rng = np.random.default_rng(seed)
    state = S.SessionState(f"s{seed}")
    kinds = ["view", "click", "play", "view"]
    for _ in range(int(rng.integers(0, 15))):
        state.add(int(rng.integers(1, 8)), kinds[int(rng.integers(0, 4))], at(float(rng.integers(0, 12)) * 7.5))
    when = at(float(rng.integers(0, 100)))
    items = np.array(sorted(set(rng.integers(1, 12, size=9).tolist())), np.int64)
    rows = state.request(pl.DataFrame({"item_id": items, "position": [None] * len(items)}), when)
    expected = S.request_features(rows, state.log()).select(S.SESSION_NUMERIC)
    got = state.request_features(items, when)
    assert got.columns == list(S.SESSION_NUMERIC)
    assert got.equals(expected), (state.actions, when)
