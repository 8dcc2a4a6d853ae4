"""The session log a day's requests are featurised against: every action with a session id on
the day and the day before it (a session that began before midnight keeps its history)."""

from __future__ import annotations

import polars as pl

from recsys_assets.core.ranking import session_features as S
from recsys_assets.core.tables import bind, connect
from recsys_assets.services.days import days_before
from recsys_assets.services.lake import Lake


def day_session_log(lake: Lake, day: str) -> pl.DataFrame:
    """Events (S.LOG_SCHEMA) of `day` and the day before that carry a session_id; empty when the
    source has no sessions. Request-time features count only the ones before each request."""
    files = lake.existing_partitions("raw_events", [*days_before(day, 1), day])
    if not files:
        return S.empty_log()
    con = connect()
    try:
        bind(con, "events", files, "raw_events")  # partitions older than contract v2 read as sessionless
        frame = con.sql("SELECT session_id, item_id, type, occurred_at FROM events WHERE session_id IS NOT NULL").pl()
    finally:
        con.close()
    return frame.cast(dict(S.LOG_SCHEMA))
