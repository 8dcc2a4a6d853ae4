"""The trivago RecSys Challenge 2019 session log into a landing zone (no Dagster import).

Input: the challenge's ``train.csv`` schema (``user_id, session_id, timestamp, step,
action_type, reference, platform, city, device, current_filters, impressions, prices``)
as Parquet or (gzipped) CSV, e.g. ``../shared/data/trivago-recsys2019-100k/``.

Mapping (everything streams through DuckDB):

* **request**: one per clickout step, ``request_id = <session_id>:<step>``.
* **impressions**: each clickout's ``impressions`` list, in display order, one record per
  entry with ``position`` 0-based, ``surface = 'search'``, ``device_type`` = the device,
  ``shown_at`` = the clickout's time (the log has no separate display time), the entry's
  ``price``, the ``session_id`` and the request context: ``platform``, ``filters`` (the
  clickout's ``current_filters``), ``sort_order`` (the session's last ``change of sort
  order`` before the clickout) and ``query`` (the session's last ``search for destination``
  / ``search for poi`` before it, else the clickout's city). Lists are kept whole: count in
  = count out is asserted.
* **click**: the clickout is a ``click`` event on the clicked item (``reference``) with
  the request's id. The **positive**: a watch record on the same (request, user, item)
  with ``completion = 1.0`` (``watch_time_sec = 0``, unknown). A clickout hands the user
  to the booking site — the end of the funnel, like a finished film — and a completion of
  1.0 is positive for every ``min_pos_completion`` in [0, 1] and independent of
  ``like_is_positive``, so ``interactions.is_positive`` marks exactly the clicked item of
  each list. A click on an item that is not in its own list (1 of 13,597 in the sample)
  cannot resolve to an impression: its event and watch get ``request_id`` null (organic)
  instead of failing the ``request_ids_resolve`` check.
* **users**: string ids → dense integers in id order (``source_user_id`` kept as an extra
  field); ``country`` = the platform of the user's first action (trivago's platform codes:
  two letters, mostly ISO, but ``UK`` and ``AA`` are not).
* **items**: every hotel shown or clicked, with no genres (empty list) and no title.
* **views**: every action on an item (``interaction item image / info / deals / rating``,
  ``search for item``) is a ``view`` event with subtype ``image / info / deals / rating /
  search``, ``request_id`` null, the session's id: engagement, never a positive by itself.
* Actions without an item (``filter selection``, ``change of sort order``, ``search for
  destination / poi``) become the request context of the session's later clickouts (above);
  they are counted in the manifest.

A list entry or a clicked reference that is not an integer becomes a landing record with
``item_id`` as its source text, which raw ingestion quarantines (``wrong_type:item_id``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from recsys_assets.core.adapters import landing as lz

CLICKOUT = "clickout item"
SURFACE = "search"
# action type -> view subtype (actions on one item that are not a clickout)
VIEW_SUBTYPES = {
    "interaction item image": "image",
    "interaction item info": "info",
    "interaction item deals": "deals",
    "interaction item rating": "rating",
    "search for item": "search",
}
SORT_CHANGE = "change of sort order"
PLACE_SEARCHES = ("search for destination", "search for poi")
COLUMNS = {
    "user_id": "VARCHAR",
    "session_id": "VARCHAR",
    "timestamp": "BIGINT",
    "step": "BIGINT",
    "action_type": "VARCHAR",
    "reference": "VARCHAR",
    "platform": "VARCHAR",
    "city": "VARCHAR",
    "device": "VARCHAR",
    "current_filters": "VARCHAR",
    "impressions": "VARCHAR",
    "prices": "VARCHAR",
}


def find_log(source: Path) -> Path:
    source = Path(source)
    if source.is_file():
        return source
    for pattern in ("*.parquet*", "*.csv.gz", "*.csv"):
        found = sorted(source.glob(pattern))
        if found:
            return found[0]
    raise FileNotFoundError(f"{source}: no Parquet or CSV session log (train.csv schema) found")


def _scan(path: Path) -> str:
    if ".parquet" in path.name:
        cols = ", ".join(COLUMNS)
        return f"(SELECT {cols} FROM read_parquet({lz.sql_str(path)}))"
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items()) + "}"
    return f"read_csv({lz.sql_str(path)}, header=true, columns={columns}, auto_detect=false)"


def convert(source: Path, data_root: Path) -> dict:
    """Write <data_root>/landing from a trivago session log; returns the manifest."""
    log = find_log(Path(source)).resolve()
    data_root = Path(data_root).resolve()
    tmp = lz.staging_landing(data_root)
    con = lz.connect(tmp)
    try:
        # Timestamps have whole seconds, steps give the order within one: the k-th action of a
        # session in a second is written k milliseconds after it, so "strictly before a request"
        # keeps the actions the log says came first (and never the clickout's own click).
        con.execute(f"""CREATE TEMP TABLE src AS
                        SELECT *, timestamp + (row_number() OVER (PARTITION BY session_id, timestamp ORDER BY step) - 1)
                                  / 1000.0 AS t
                        FROM {_scan(log)}""")
        con.execute("""CREATE TEMP TABLE user_map AS
                       SELECT user_id AS source_user_id, row_number() OVER (ORDER BY user_id) - 1 AS uid,
                              arg_min(platform, (timestamp, step)) AS platform
                       FROM src GROUP BY user_id""")
        # The request context of a clickout: the session's last sort change and place search
        # before it (by step), the active filters, the platform.
        places = ", ".join(lz.sql_str(a) for a in PLACE_SEARCHES)
        con.execute(
            f"""CREATE TEMP TABLE clk AS
                       SELECT s.session_id || ':' || s.step AS request_id, u.uid AS user_id, s.t AS ts,
                              s.session_id, s.step, s.device, s.reference, s.platform,
                              coalesce(string_split(s.impressions, '|'), []) AS imp,
                              coalesce(string_split(s.prices, '|'), []) AS pr,
                              coalesce(string_split(s.current_filters, '|'), []) AS filters,
                              (SELECT arg_max(b.reference, b.step) FROM src AS b
                               WHERE b.session_id = s.session_id AND b.step < s.step
                                 AND b.action_type = {lz.sql_str(SORT_CHANGE)}) AS sort_order,
                              coalesce((SELECT arg_max(b.reference, b.step) FROM src AS b
                                        WHERE b.session_id = s.session_id AND b.step < s.step
                                          AND b.action_type IN ({places})), s.city) AS query
                       FROM src AS s JOIN user_map AS u ON u.source_user_id = s.user_id
                       WHERE s.action_type = $a""",
            {"a": CLICKOUT},
        )
        # One row per list entry, numbered in (time, session, step, position) order.
        con.execute("""CREATE TEMP TABLE imp AS
                       SELECT row_number() OVER (ORDER BY ts, session_id, step, position) - 1 AS impression_id, *
                       FROM (SELECT request_id, user_id, ts, session_id, step, device, platform, filters,
                                    sort_order, query,
                                    unnest(imp) AS item_text, unnest(range(len(imp))) AS position,
                                    unnest(pr[1:len(imp)]) AS price_text
                             FROM clk)""")
        n_in_row = con.execute("SELECT coalesce(sum(len(imp)), 0) FROM clk").fetchone()
        assert n_in_row is not None  # an aggregate query returns one row
        n_in = n_in_row[0]
        span = con.execute("SELECT min(timestamp), max(timestamp) FROM src").fetchone()
        assert span is not None  # an aggregate query returns one row
        t0, t1 = span
        if t0 is None:
            raise ValueError(f"{log}: empty log")
        first_day, last_day = lz.utc_day(t0), lz.utc_day(t1)

        lz.copy_by_day(
            con,
            f"""
            SELECT {lz.day_sql("ts")} AS day, impression_id, user_id, TRY_CAST(item_text AS BIGINT) AS item_id,
                   '{SURFACE}' AS surface, position, {lz.iso_utc_sql("ts", millis=True)} AS shown_at, request_id,
                   device AS device_type, session_id, TRY_CAST(price_text AS DOUBLE) AS price, platform,
                   sort_order, filters, query
            FROM imp WHERE TRY_CAST(item_text AS BIGINT) IS NOT NULL""",
            tmp,
            "impressions",
            "impression_id",
        )
        bad_imp = con.execute(f"""
            SELECT {lz.day_sql("ts")}, impression_id, user_id, item_text, position, {lz.iso_utc_sql("ts", millis=True)}, request_id,
                   device, session_id, TRY_CAST(price_text AS DOUBLE), platform, sort_order, filters, query
            FROM imp WHERE TRY_CAST(item_text AS BIGINT) IS NULL ORDER BY impression_id""").fetchall()
        for day, iid, uid, text, pos, when, rid, device, session, price, platform, sort, filters, query in bad_imp:
            lz.append_jsonl(
                tmp / day / "impressions.jsonl",
                [
                    {
                        "impression_id": iid,
                        "user_id": uid,
                        "item_id": text,
                        "surface": SURFACE,
                        "position": pos,
                        "shown_at": when,
                        "request_id": rid,
                        "device_type": device,
                        "session_id": session,
                        "price": price,
                        "platform": platform,
                        "sort_order": sort,
                        "filters": filters,
                        "query": query,
                    }
                ],
            )

        # The click and the positive watch; a click outside its own list is organic (see above).
        rid = "CASE WHEN list_contains(imp, reference) THEN request_id END"
        follow = f"""SELECT {lz.day_sql("ts")} AS day, 'tv:' || request_id AS id, user_id, TRY_CAST(reference AS BIGINT) AS item_id,
                            {lz.iso_utc_sql("ts", millis=True)} AS at_iso, {rid} AS request_id, device, session_id
                     FROM clk WHERE TRY_CAST(reference AS BIGINT) IS NOT NULL"""
        view_types = ", ".join(lz.sql_str(a) for a in VIEW_SUBTYPES)
        view_cases = " ".join(f"WHEN {lz.sql_str(a)} THEN {lz.sql_str(t)}" for a, t in VIEW_SUBTYPES.items())
        events = lz.copy_by_day(
            con,
            f"""SELECT day, id AS event_id, user_id, item_id, 'click' AS type, NULL::DOUBLE AS value,
                       at_iso AS occurred_at, request_id, NULL::VARCHAR AS subtype, session_id FROM ({follow})
                UNION ALL
                SELECT {lz.day_sql("s.t")}, 'tv:view:' || s.session_id || ':' || s.step, u.uid,
                       TRY_CAST(s.reference AS BIGINT), 'view', NULL::DOUBLE, {lz.iso_utc_sql("s.t", millis=True)},
                       NULL::VARCHAR, CASE s.action_type {view_cases} END, s.session_id
                FROM src AS s JOIN user_map AS u ON u.source_user_id = s.user_id
                WHERE s.action_type IN ({view_types}) AND TRY_CAST(s.reference AS BIGINT) IS NOT NULL""",
            tmp,
            "events",
            "occurred_at, event_id",
        )
        watches = lz.copy_by_day(
            con,
            f"""SELECT day, id AS watch_id, user_id, item_id, at_iso AS started_at, 0.0::DOUBLE AS watch_time_sec,
                                                 1.0::DOUBLE AS completion, device AS device_type, session_id, request_id
                                          FROM ({follow})""",
            tmp,
            "watch_stats",
            "started_at, watch_id",
        )
        bad_clk = con.execute(f"""SELECT {lz.day_sql("ts")}, 'tv:' || request_id, user_id, reference, {lz.iso_utc_sql("ts", millis=True)},
                                         device, session_id
                                  FROM clk WHERE TRY_CAST(reference AS BIGINT) IS NULL ORDER BY ts, session_id, step""").fetchall()
        for day, key, uid, ref, when, device, session in bad_clk:
            lz.append_jsonl(
                tmp / day / "events.jsonl",
                [
                    {
                        "event_id": key,
                        "user_id": uid,
                        "item_id": ref,
                        "type": "click",
                        "value": None,
                        "occurred_at": when,
                        "request_id": None,
                        "session_id": session,
                    }
                ],
            )
            lz.append_jsonl(
                tmp / day / "watch_stats.jsonl",
                [
                    {
                        "watch_id": key,
                        "user_id": uid,
                        "item_id": ref,
                        "started_at": when,
                        "watch_time_sec": 0.0,
                        "completion": 1.0,
                        "device_type": device,
                        "session_id": session,
                        "request_id": None,
                    }
                ],
            )
        bad_views = con.execute(f"""SELECT {lz.day_sql("s.t")}, 'tv:view:' || s.session_id || ':' || s.step, u.uid,
                                           s.reference, {lz.iso_utc_sql("s.t", millis=True)}, s.action_type, s.session_id
                                    FROM src AS s JOIN user_map AS u ON u.source_user_id = s.user_id
                                    WHERE s.action_type IN ({view_types}) AND TRY_CAST(s.reference AS BIGINT) IS NULL
                                    ORDER BY s.t, s.session_id, s.step""").fetchall()
        for day, key, uid, ref, when, action, session in bad_views:
            lz.append_jsonl(
                tmp / day / "events.jsonl",
                [
                    {
                        "event_id": key,
                        "user_id": uid,
                        "item_id": ref,
                        "type": "view",
                        "value": None,
                        "occurred_at": when,
                        "request_id": None,
                        "subtype": VIEW_SUBTYPES[action],
                        "session_id": session,
                    }
                ],
            )
        days = lz.finish_days(tmp, first_day, last_day)
        n_out = sum(lz.count_lines(tmp / d / "impressions.jsonl") for d in days)
        if n_out != n_in:  # never lose or duplicate a shown item
            raise AssertionError(f"impression list entries in {n_in} != impression records out {n_out}")

        con.execute(f"""COPY (SELECT uid AS user_id, CASE WHEN length(platform) = 2 THEN platform END AS country,
                                     source_user_id FROM user_map ORDER BY uid)
                        TO {lz.sql_str(tmp / "users.jsonl")} (FORMAT json)""")
        con.execute(f"""COPY (SELECT item_id, []::VARCHAR[] AS genres FROM (
                                  SELECT TRY_CAST(item_text AS BIGINT) AS item_id FROM imp
                                  UNION SELECT TRY_CAST(reference AS BIGINT) FROM clk
                                  UNION SELECT TRY_CAST(reference AS BIGINT) FROM src WHERE action_type IN ({view_types}))
                              WHERE item_id IS NOT NULL ORDER BY item_id)
                        TO {lz.sql_str(tmp / "items.jsonl")} (FORMAT json)""")
        stats = con.execute("""SELECT (SELECT count(*) FROM clk),
                                      (SELECT count(*) FROM clk WHERE NOT list_contains(imp, reference)),
                                      (SELECT count(*) FROM clk WHERE len(pr) <> len(imp)),
                                      (SELECT count(*) FROM user_map),
                                      (SELECT count(DISTINCT session_id) FROM src)""").fetchone()
        assert stats is not None  # an aggregate query returns one row
        actions = dict(con.execute("SELECT action_type, count(*) FROM src GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
        manifest = {
            "source": "trivago",
            "path": str(log),
            "has_impressions": True,
            "first_day": first_day,
            "last_day": last_day,
            "days": len(days),
            "clickouts": stats[0],
            "clicks_outside_their_list": stats[1],
            "lists_with_price_count_mismatch": stats[2],
            "impressions_in": int(n_in),
            "impressions_out": int(n_out),
            "bad_impression_items": len(bad_imp),
            "bad_click_references": len(bad_clk),
            "users": stats[3],
            "sessions": stats[4],
            "items": lz.count_lines(tmp / "items.jsonl"),
            "events": sum(events.values()) + len(bad_clk) + len(bad_views),
            "views": sum(actions.get(a, 0) for a in VIEW_SUBTYPES),
            "bad_view_references": len(bad_views),
            "watch_stats": sum(watches.values()) + len(bad_clk),
            "positive": "a watch with completion 1.0 on the clicked item, same request_id as the click",
            "actions": actions,
            "request_context_actions": {
                a: actions.get(a, 0) for a in (SORT_CHANGE, *PLACE_SEARCHES, "filter selection")
            },
        }
        return manifest | {"landing": str(lz.publish_landing(tmp, data_root, manifest))}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        con.close()
