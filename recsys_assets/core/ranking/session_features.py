"""Request-time features: what the session and the shown list say at the moment of a request.

Every other ranking feature is known at the start of the day. These are computed as of each
request's time from the session's own log, **strictly before** the request: an event at the
request's timestamp or later never counts (the click that answers a request happens at or
after it). One function serves training samples (all requests of a day against the day's
session log) and online serving (one request against the session state the server holds),
so the two cannot disagree.

Families (docs/ranking.md has the leakage argument for each):

* session x item: how often and how recently the session touched the item (views by any
  subtype, clicks, any action), in steps and seconds, and whether it was the last item touched;
* session: how long the session has been going (actions, seconds, distinct items) and what
  the previous action was;
* list: the item's place in the shown list (position share, list length), its price against
  the list (rank, ratio to the mean) and against the items the session touched in this list,
  how many items of the list the session touched and where this one ranks among them by
  recency, and its offset and distance in positions from the last touched item.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

SESSION_ITEM = (
    "s_item_actions",
    "s_item_views",
    "s_item_clicks",
    "s_item_steps_ago",
    "s_item_seconds_ago",
    "s_item_is_last",
)
SESSION = ("s_actions", "s_seconds", "s_distinct_items", "s_prev_is_view", "s_prev_is_click")
LIST = (
    "l_list_size",
    "l_position_share",
    "l_price_rank_share",
    "l_price_to_list_mean",
    "l_price_to_touched_mean",
    "l_touched_in_list",
    "l_touched_recency_rank",
    "l_last_touched_offset",
    "l_last_touched_distance",
)
SESSION_NUMERIC = SESSION_ITEM + SESSION + LIST
FAMILIES = {"session_item": SESSION_ITEM, "session": SESSION, "list": LIST}

# The session log: every action of the session, in any order (sorted here).
LOG_SCHEMA = pl.Schema(
    [
        ("session_id", pl.String()),
        ("item_id", pl.Int64()),
        ("type", pl.String()),
        ("occurred_at", pl.Datetime("us", "UTC")),
    ]
)
# Rows to featurise: one per (request, item); requested_at and session_id are the request's.
REQUEST_COLUMNS = ("request_id", "session_id", "requested_at", "item_id", "position", "price")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def empty_log() -> pl.DataFrame:
    return pl.DataFrame(schema=LOG_SCHEMA)


def _prepared_log(log: pl.DataFrame, sessions: pl.Series) -> pl.DataFrame:
    """The log of the requested sessions, numbered per session in time order (ties by type and
    item, so the numbering is the same however the rows arrived)."""
    log = log.select(
        pl.col("session_id").cast(pl.String),
        pl.col("item_id").cast(pl.Int64),
        pl.col("type").cast(pl.String),
        pl.col("occurred_at").cast(pl.Datetime("us", "UTC")),
    ).filter(pl.col("session_id").is_in(sessions.unique().drop_nulls().implode()))
    return log.sort("session_id", "occurred_at", "type", "item_id").with_columns(
        pl.int_range(pl.len()).over("session_id").alias("step")
    )


def request_features(rows: pl.DataFrame, log: pl.DataFrame) -> pl.DataFrame:
    """`rows` (REQUEST_COLUMNS; price and position may be null) with SESSION_NUMERIC appended,
    row order kept. A row without a session or request time gets nulls in the session
    families (its list features still apply)."""
    missing = [c for c in REQUEST_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"request rows need columns {missing}")
    frame = rows.with_row_index("__r").with_columns(
        pl.col("session_id").cast(pl.String),
        pl.col("requested_at").cast(pl.Datetime("us", "UTC")),
        pl.col("item_id").cast(pl.Int64),
        pl.col("position").cast(pl.Float64),
        pl.col("price").cast(pl.Float64),
    )
    log = _prepared_log(log, frame["session_id"])

    # --- session: the last action strictly before each request (join_asof, no exact matches)
    requests = (
        frame.filter(pl.col("session_id").is_not_null() & pl.col("requested_at").is_not_null())
        .select("request_id", "session_id", "requested_at")
        .unique()
        .sort("requested_at")
    )
    last = requests.join_asof(
        log.select(
            "session_id",
            pl.col("occurred_at").alias("requested_at"),
            pl.col("occurred_at").alias("last_at"),
            pl.col("item_id").alias("last_item"),
            pl.col("type").alias("last_type"),
            "step",
        ).sort("requested_at"),
        on="requested_at",
        by="session_id",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,  # sorted by time overall, so within every session too
    )
    first = log.group_by("session_id").agg(pl.col("occurred_at").min().alias("first_at"))
    before = (
        log.join(requests.select("request_id", "session_id", "requested_at"), on="session_id")
        .filter(pl.col("occurred_at") < pl.col("requested_at"))
        .group_by("request_id")
        .agg(pl.col("item_id").n_unique().alias("s_distinct_items"))
    )
    session = (
        last.join(first, on="session_id", how="left")
        .join(before, on="request_id", how="left")
        .select(
            "request_id",
            "last_item",
            pl.col("step").alias("last_step"),
            (pl.col("step") + 1).fill_null(0).cast(pl.Float64).alias("s_actions"),
            pl.when(pl.col("step").is_not_null())
            .then((pl.col("requested_at") - pl.col("first_at")).dt.total_seconds())
            .otherwise(0)
            .cast(pl.Float64)
            .alias("s_seconds"),
            pl.col("s_distinct_items").fill_null(0).cast(pl.Float64),
            (pl.col("last_type") == "view").fill_null(False).cast(pl.Float64).alias("s_prev_is_view"),
            (pl.col("last_type") == "click").fill_null(False).cast(pl.Float64).alias("s_prev_is_click"),
        )
    )

    # --- session x item: the session's actions on the row's item before the request
    touched = (
        frame.select("__r", "session_id", "requested_at", "item_id")
        .join(log, on=["session_id", "item_id"])
        .filter(pl.col("occurred_at") < pl.col("requested_at"))
        .group_by("__r")
        .agg(
            pl.len().cast(pl.Float64).alias("s_item_actions"),
            (pl.col("type") == "view").sum().cast(pl.Float64).alias("s_item_views"),
            (pl.col("type") == "click").sum().cast(pl.Float64).alias("s_item_clicks"),
            pl.col("step").max().alias("item_last_step"),
            (pl.col("requested_at").first() - pl.col("occurred_at").max())
            .dt.total_seconds()
            .cast(pl.Float64)
            .alias("s_item_seconds_ago"),
        )
    )
    frame = (
        frame.join(session, on="request_id", how="left")
        .join(touched, on="__r", how="left")
        .sort("__r")
        .with_columns(
            pl.col("s_item_actions", "s_item_views", "s_item_clicks").fill_null(0.0),
            (pl.col("last_step") - pl.col("item_last_step")).cast(pl.Float64).alias("s_item_steps_ago"),
            (pl.col("item_id") == pl.col("last_item")).fill_null(False).cast(pl.Float64).alias("s_item_is_last"),
        )
    )
    in_session = pl.col("session_id").is_not_null() & pl.col("requested_at").is_not_null()
    frame = frame.with_columns(
        [pl.when(in_session).then(pl.col(c)).otherwise(None).alias(c) for c in SESSION_ITEM + SESSION]
    )

    # --- list: the row's place and price within its own request's list
    by_request = pl.col("request_id")
    shown = pl.col("position").is_not_null()  # a list feature needs a shown list
    touched_price = pl.when(pl.col("s_item_actions") > 0).then(pl.col("price"))
    last_position = pl.when(pl.col("s_item_is_last") > 0).then(pl.col("position"))
    frame = frame.with_columns(
        pl.when(shown).then(pl.len().over(by_request)).cast(pl.Float64).alias("l_list_size"),
        (pl.col("position") / (pl.len().over(by_request) - 1).clip(lower_bound=1)).alias("l_position_share"),
        ((pl.col("price").rank("min").over(by_request) - 1) / pl.col("price").count().over(by_request)).alias(
            "l_price_rank_share"
        ),
        (pl.col("price") / pl.col("price").mean().over(by_request)).alias("l_price_to_list_mean"),
        (pl.col("price") / touched_price.mean().over(by_request)).alias("l_price_to_touched_mean"),
        pl.when(shown).then((pl.col("s_item_actions") > 0).sum().over(by_request)).alias("l_touched_in_list"),
        pl.when(shown).then(pl.col("s_item_steps_ago").rank("min").over(by_request)).alias("l_touched_recency_rank"),
        (pl.col("position") - last_position.max().over(by_request)).alias("l_last_touched_offset"),
        (pl.col("position") - last_position.max().over(by_request)).abs().alias("l_last_touched_distance"),
    )
    return rows.hstack(frame.select(pl.col(SESSION_NUMERIC).cast(pl.Float32).fill_nan(None)))


@dataclass
class SessionState:
    """What a server holds for one live session: its actions so far. `log()` is the session
    log request_features() reads, so a request scored online sees exactly what the same
    request sees in the day's samples (tests/test_session_features.py proves it)."""

    session_id: str
    actions: list[tuple[int, str, dt.datetime]] = field(default_factory=list)

    def add(self, item_id: int, type: str, occurred_at: dt.datetime) -> None:
        if occurred_at.tzinfo is None:
            raise ValueError(f"session action at {occurred_at} has no time zone")
        self.actions.append((int(item_id), str(type), occurred_at))

    @classmethod
    def from_records(cls, session_id: str, records: list[dict]) -> SessionState:
        """A session from event records ({item_id, type, occurred_at: ISO-8601 with an offset});
        a record that is not one raises ValueError naming it."""
        state = cls(session_id)
        for n, record in enumerate(records, 1):
            try:
                item, kind, when = record["item_id"], record["type"], record["occurred_at"]
                if not isinstance(item, int) or isinstance(item, bool) or not isinstance(kind, str):
                    raise TypeError("item_id must be an integer and type a string")
                state.add(item, kind, dt.datetime.fromisoformat(when))
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"session event {n} ({record!r}) is not an event: {error}") from error
        return state

    def log(self) -> pl.DataFrame:
        if not self.actions:
            return empty_log()
        items, types, times = zip(*self.actions, strict=True)
        return pl.DataFrame(
            {"session_id": [self.session_id] * len(items), "item_id": items, "type": types, "occurred_at": times},
            schema=LOG_SCHEMA,
        )

    def request_features(self, items: np.ndarray, at: dt.datetime) -> pl.DataFrame:
        """SESSION_NUMERIC of one request of this session at `at` for `items`, with no shown
        list (the online case: list features null): the values request_features() gives the
        rows of self.request() against self.log() (tests/test_session_features.py proves it),
        by arithmetic over the session's few actions - a server's ~100 candidates and ~10
        actions cost polars more in per-call planning than in work."""
        values = self.request_values(items, at)
        return pl.DataFrame([pl.Series(name, v, nan_to_null=True) for name, v in values.items()])

    def request_values(self, items: np.ndarray, at: dt.datetime) -> dict[str, np.ndarray]:
        """request_features() as float32 arrays, NaN where the feature is null."""
        n = len(items)
        at_us = (at - _EPOCH) // _MICROSECOND
        # the log's numbering: time order, ties by type, then item (as _prepared_log)
        actions = sorted(((when - _EPOCH) // _MICROSECOND, kind, item) for item, kind, when in self.actions)
        before = [a for a in actions if a[0] < at_us]  # a prefix: strictly before the request
        values = {name: np.full(n, np.nan) for name in SESSION_NUMERIC}
        if before:
            last_step = len(before) - 1
            _, last_type, last_item = before[-1]
            values["s_actions"][:] = len(before)
            values["s_seconds"][:] = (at_us - actions[0][0]) // 1_000_000
            values["s_distinct_items"][:] = len({item for _, _, item in before})
            values["s_prev_is_view"][:] = float(last_type == "view")
            values["s_prev_is_click"][:] = float(last_type == "click")
        else:
            last_step, last_item = None, None
            for name in ("s_actions", "s_seconds", "s_distinct_items", "s_prev_is_view", "s_prev_is_click"):
                values[name][:] = 0.0
        per_item: dict[int, list] = {}  # item -> [actions, views, clicks, last step, last time]
        for step, (when, kind, item) in enumerate(before):
            seen = per_item.setdefault(item, [0, 0, 0, step, when])
            seen[0] += 1
            seen[1] += kind == "view"
            seen[2] += kind == "click"
            seen[3], seen[4] = max(seen[3], step), max(seen[4], when)
        for row, item in enumerate(np.asarray(items, np.int64).tolist()):
            touched = per_item.get(item)
            if touched is not None:
                values["s_item_actions"][row], values["s_item_views"][row], values["s_item_clicks"][row] = touched[:3]
                values["s_item_seconds_ago"][row] = (at_us - touched[4]) // 1_000_000
                values["s_item_steps_ago"][row] = last_step - touched[3]
            else:
                values["s_item_actions"][row] = values["s_item_views"][row] = values["s_item_clicks"][row] = 0.0
            values["s_item_is_last"][row] = float(item == last_item)
        return {name: v.astype(np.float32) for name, v in values.items()}

    def request(self, candidates: pl.DataFrame, at: dt.datetime) -> pl.DataFrame:
        """`candidates` (user_id, item_id, ...) as the rows of one request of this session at
        `at`: no shown list (position and price null), so only the session families apply."""
        return candidates.with_columns(
            pl.lit(f"{self.session_id}@{at.isoformat()}").alias("request_id"),
            pl.lit(self.session_id, pl.String).alias("session_id"),
            pl.lit(at).cast(pl.Datetime("us", "UTC")).alias("requested_at"),
            pl.lit(None, pl.Float64).alias("price"),
        )
