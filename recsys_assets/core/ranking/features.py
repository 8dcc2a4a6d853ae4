"""Ranking features of (user, item) pairs as known at the start of a day, plus the
request-time features of core/ranking/session_features.py when the pairs come with a request
(session, time, shown list).

One code path serves training samples, batch recommendations and the online CLI: a
FeatureContext holds everything known at the start of `day` (point-in-time user and item
features built from the days before it, the user's genre history, the recall models of the
day), and feature_frame() turns any table of pairs into the same columns in the same order.
Categorical values stay strings here; encode() maps them through a hash dictionary, so the
ranker can freeze the dictionary it was trained with and serving encodes identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_assets.core.hashing import HashEncoder
from recsys_assets.core.ingest import read_sql
from recsys_assets.core.ranking import session_features as S
from recsys_assets.core.recall.base import RecallModel
from recsys_assets.core.tables import connect

USER_NUMERIC = (
    "impressions_7d",
    "impressions_28d",
    "clicks_7d",
    "clicks_28d",
    "ctr_smoothed_7d",
    "ctr_smoothed_28d",
    "plays_7d",
    "positives_7d",
    "positives_28d",
    "watch_time_sec_28d",
    "mean_completion_28d",
    "active_days_28d",
    "days_since_active",
)
ITEM_NUMERIC = (
    "impressions_1d",
    "impressions_7d",
    "impressions_28d",
    "clicks_7d",
    "clicks_28d",
    "ctr_smoothed_7d",
    "ctr_smoothed_28d",
    "plays_7d",
    "positives_1d",
    "positives_7d",
    "positives_28d",
    "popularity_rank_7d",
    "age_days",
    "release_year",
    "duration_sec",
)
CROSS = ("genre_share_sum", "genre_share_max", "top_genre_match", "genre_positives", "genre_clicks", "position")
# categorical feature -> hash dictionary field
CATEGORICAL = {
    "surface": "surface",
    "device_type": "device_type",
    "country": "country",
    "ui_language": "ui_language",
    "item_genre": "genres",
}
PAIR_COLUMNS = ("user_id", "item_id", "position", "surface", "device_type")


def numeric_features(channel_names: tuple[str, ...]) -> list[str]:
    return (
        [f"u_{c}" for c in USER_NUMERIC]
        + [f"i_{c}" for c in ITEM_NUMERIC]
        + list(CROSS)
        + list(S.SESSION_NUMERIC)
        + [f"{kind}_{c}" for c in channel_names for kind in ("score", "rank")]
    )


def feature_names(channel_names: tuple[str, ...]) -> list[str]:
    """The ranker's input columns, in order: numeric ones, then the encoded categoricals."""
    return numeric_features(channel_names) + [f"{c}_idx" for c in CATEGORICAL]


@dataclass
class Channel:
    """A recall model with the dictionary sizes it was trained on (newer ids score NaN) and
    the (p01, p99) of its training scores (weighted fusion), when recorded."""

    model: RecallModel
    n_users: int
    n_items: int
    score_range: tuple[float, float] | None = None


@dataclass
class FeatureContext:
    day: str
    users: pl.DataFrame  # user_id, u_<USER_NUMERIC>, top_genre, country, ui_language
    items: pl.DataFrame  # item_id, i_<ITEM_NUMERIC>, genres, item_genre
    user_genres: pl.DataFrame  # user_id, genre, positives, clicks, share
    user_index: pl.DataFrame  # user_id, user_idx (the id dictionary)
    item_index: pl.DataFrame  # item_id, item_idx
    channel_names: tuple[str, ...]
    channels: dict[str, Channel] = field(default_factory=dict)
    # rank_<channel> is the item's position in the channel's recall list: its top rank_depth over
    # the catalog minus what recall removes (`exclude`: each user's training-window positives
    # and every item consumed before the day; `blocked_items`: not yet available), rank_depth + 1
    # below it. A full-catalog rank would sort every catalog row (100k items: ~10 ms per user and
    # channel); this one is the list recall_candidates already made, so serving reads it instead
    # of searching again.
    rank_depth: int = 200
    exclude: sp.csr_matrix | None = None
    blocked_items: np.ndarray | None = None
    # bool per user index: a training positive in the window (a personal channel has a list only
    # for those users); None: the users with a non-empty `exclude` row
    window_users: np.ndarray | None = None
    # the non-personalised model whose list users without a history get (serving's cold path);
    # not a ranker feature unless it is one of channel_names too
    cold_start: Channel | None = None
    # values derived from the context once and reused by every request / batch (e.g. the
    # catalog's re-ranking attributes): the online path serves one user per call
    derived: dict = field(default_factory=dict, repr=False)


def load_context(
    day: str,
    *,
    user_features: Path,
    item_features: Path,
    genre_window: list[Path],
    users: Path,
    items: Path,
    user_dictionary: Path,
    item_dictionary: Path,
    channel_names: tuple[str, ...],
    channels: dict[str, Channel],
    rank_depth: int = 200,
    exclude: sp.csr_matrix | None = None,
    blocked_items: np.ndarray | None = None,
    window_users: np.ndarray | None = None,
) -> FeatureContext:
    """Read what is known at the start of `day` (all inputs are point in time by construction:
    user/item_features of `day` and user_genre_daily are built from the days before it)."""
    con = connect()
    try:

        def view(name: str, paths) -> None:
            # views cannot take parameters: paths are quoted as SQL string literals
            paths = [str(p).replace("'", "''") for p in (paths if isinstance(paths, list) else [paths])]
            listing = ", ".join(f"'{p}'" for p in paths)
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet([{listing}], union_by_name = true)")

        view("user_features", user_features)
        view("item_features", item_features)
        view("users", users)
        view("items", items)
        if genre_window:
            view("genre_window", genre_window)
        else:
            con.execute(
                "CREATE TEMP VIEW genre_window AS SELECT NULL::DATE AS day, NULL::BIGINT AS user_id, "
                "NULL::VARCHAR AS genre, 0 AS positives, 0 AS clicks WHERE false"
            )
        params = {"day": day}
        user_rows = con.sql(read_sql("ranking_user_context.sql")).pl()
        item_rows = con.sql(read_sql("ranking_item_context.sql")).pl()
        genres = con.sql(read_sql("ranking_user_genre.sql"), params=params).pl()
        user_index = con.sql(
            "SELECT id AS user_id, index AS user_idx FROM read_parquet($f)", params={"f": str(user_dictionary)}
        ).pl()
        item_index = con.sql(
            "SELECT id AS item_id, index AS item_idx FROM read_parquet($f)", params={"f": str(item_dictionary)}
        ).pl()
    finally:
        con.close()
    user_rows = user_rows.rename({c: f"u_{c}" for c in USER_NUMERIC})
    item_rows = item_rows.rename({c: f"i_{c}" for c in ITEM_NUMERIC})
    return FeatureContext(
        day=day,
        users=user_rows,
        items=item_rows,
        user_genres=genres,
        user_index=user_index,
        item_index=item_index,
        channel_names=tuple(channel_names),
        channels=channels,
        rank_depth=rank_depth,
        exclude=exclude,
        blocked_items=blocked_items,
        window_users=window_users,
    )


def _without_window_positives(ctx: FeatureContext, exclude: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
    """Per user index: no training positive in the window. `exclude` also holds items consumed
    before the window, so an empty row is the test only when ctx has no window_users."""
    if ctx.window_users is None:
        return np.diff(exclude.indptr)[users] == 0
    if not len(ctx.window_users):
        return np.ones(len(users), bool)
    known = users < len(ctx.window_users)
    return ~(known & ctx.window_users[np.where(known, users, 0)])


def _recall_exclusions(ctx: FeatureContext, channel: Channel) -> tuple[sp.csr_matrix | None, np.ndarray | None]:
    """ctx's exclusions restricted to the channel's catalog (a newer dictionary may be wider)."""
    exclude, blocked = ctx.exclude, ctx.blocked_items
    shape = (max(channel.n_users, exclude.shape[0]), channel.n_items) if exclude is not None else None
    if exclude is not None and exclude.shape != shape:
        exclude = exclude.copy()
        exclude.resize(shape)  # drops columns the channel never saw, pads rows it knows
    if blocked is not None:
        blocked = blocked[blocked < channel.n_items]
    return exclude, blocked


def _channel_columns(
    ctx: FeatureContext,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    chunk: int = 4096,
    listed: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """score_<c>: the channel's score of the pair (RecallModel.score_pairs, never a catalog
    row for dot-product and item-CF channels); rank_<c>: the item's position (1 = best) in the
    channel's recall list (top `rank_depth` with ctx's exclusions removed: recommend(), so the
    faiss / sparse fast paths apply), rank_depth + 1 below it, and for a user without training
    positives in a personal channel (it has no list for them). `listed[c]` may give that position
    for some rows already (from recall_candidates: 0 = not in the list, NaN = unknown): those rows
    are not searched again. NaN where the channel is missing or does not know the user or the item."""
    n = len(user_idx)
    out = {}
    for name in ctx.channel_names:
        score = np.full(n, np.nan, np.float32)
        rank = np.full(n, np.nan, np.float32)
        channel = ctx.channels.get(name)
        if channel is not None:
            known = (user_idx >= 0) & (user_idx < channel.n_users) & (item_idx >= 0) & (item_idx < channel.n_items)
            rows = np.flatnonzero(known)
            score[rows] = channel.model.score_pairs(user_idx[rows], item_idx[rows])
            depth = min(ctx.rank_depth, channel.n_items)
            given = listed.get(name) if listed else None
            if given is not None:
                from_list = given[rows]
                has = ~np.isnan(from_list)
                rank[rows[has]] = np.where((from_list[has] >= 1) & (from_list[has] <= depth), from_list[has], depth + 1)
                rows = rows[~has]
            if not len(rows):  # every rank read from the lists: nothing to search
                out[f"score_{name}"], out[f"rank_{name}"] = score, rank
                continue
            exclude, blocked = _recall_exclusions(ctx, channel)
            if exclude is not None and channel.model.personal:
                # a user without any training positive has no history a personal channel could
                # rank from (its vector is an untrained init): no list, so nothing to search
                empty = _without_window_positives(ctx, exclude, user_idx[rows])
                rank[rows[empty]] = depth + 1
                rows = rows[~empty]
            rows = rows[np.argsort(user_idx[rows], kind="stable")]  # grouped by user
            row_users = user_idx[rows]
            users = np.unique(row_users)
            for start in range(0, len(users), chunk):
                block = users[start : start + chunk]
                top, _ = channel.model.recommend(block, depth, exclude=exclude, blocked_items=blocked)
                sel = rows[
                    np.searchsorted(row_users, block[0], "left") : np.searchsorted(row_users, block[-1], "right")
                ]
                lists = top[np.searchsorted(block, user_idx[sel])]
                hit = lists == item_idx[sel][:, None]
                rank[sel] = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, depth + 1)
        out[f"score_{name}"] = score
        out[f"rank_{name}"] = rank
    return out


def _listed_ranks(ctx: FeatureContext, frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """listed_ranks of a frame's rows."""
    wanted = ["channel_depth"] + [f"in_{name}" for name in ctx.channel_names]
    # an integer column with nulls comes out as float with NaN
    return listed_ranks(ctx, {c: frame[c].to_numpy() for c in wanted if c in frame.columns})


def listed_ranks(ctx: FeatureContext, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Channel list positions that rows of recall_candidates carry (in_<c>, 0 = absent; given
    as arrays, a null as NaN), usable when that list was at least rank_depth deep
    (channel_depth); NaN for every other row."""
    if "channel_depth" not in columns:
        return {}
    deep = columns["channel_depth"] >= ctx.rank_depth  # NaN (unknown depth) is not deep
    out = {}
    for name in ctx.channel_names:
        if f"in_{name}" in columns:
            values = columns[f"in_{name}"].astype(np.float32)
            values[~deep] = np.nan
            out[name] = values
    return out


# built once: a request without a session gets these null columns on every call
_NO_REQUEST_FEATURES = [pl.lit(None, pl.Float32).alias(c) for c in S.SESSION_NUMERIC]


def _with_request_features(
    pairs: pl.DataFrame, session_log: pl.DataFrame | None, request_features: pl.DataFrame | None = None
) -> pl.DataFrame:
    """pairs with S.SESSION_NUMERIC: `request_features` when given (a live session's, computed
    by its SessionState), computed when the pairs carry their request (request_id, session_id,
    requested_at, price; missing ones are null), null otherwise."""
    if request_features is not None:
        return pairs.hstack(request_features.select(S.SESSION_NUMERIC))
    if "request_id" not in pairs.columns:
        return pairs.with_columns(_NO_REQUEST_FEATURES)
    extra = {
        "session_id": pl.lit(None, pl.String),
        "requested_at": pl.lit(None, pl.Datetime("us", "UTC")),
        "price": pl.lit(None, pl.Float64),
    }
    rows = pairs.with_columns([v.alias(k) for k, v in extra.items() if k not in pairs.columns])
    featured = S.request_features(rows, S.empty_log() if session_log is None else session_log)
    return pairs.hstack(featured.select(S.SESSION_NUMERIC))


# Frames this small (a request's candidates) take the context tables' columns and the genre
# crosses by row lookup: the same values as the joins below, without their per-call planning
# and hashing (larger frames join: polars' joins run on every core)
GATHER_ROWS = 50_000
CONTEXT_TABLES = (("users", "user_id"), ("items", "item_id"), ("user_index", "user_id"), ("item_index", "item_id"))


def _row_lookup(ctx: FeatureContext, name: str, key: str) -> tuple[np.ndarray, np.ndarray, pl.DataFrame] | None:
    """(sorted ids, their rows, the table without `key` plus one all-null row) of ctx's table
    `name`, built once per context; None when `key` has nulls or repeats (a join would then
    match several rows or none, which a lookup cannot mirror)."""
    cache = ctx.derived.setdefault("row_lookup", {})
    if name not in cache:
        table = getattr(ctx, name)
        column = table[key]
        if column.null_count() or column.n_unique() != table.height:
            cache[name] = None
        else:
            ids = column.to_numpy()
            order = np.argsort(ids, kind="stable")
            rest = table.drop(key)
            # one chunk: a gather from a two-chunk frame (list columns above all) costs several times more
            cache[name] = (ids[order], order, pl.concat([rest, rest.clear(1)], rechunk=True))
    return cache[name]


def _lookup_rows(lookup: tuple[np.ndarray, np.ndarray, pl.DataFrame], wanted: np.ndarray) -> np.ndarray:
    """The table rows of the ids `wanted` through a _row_lookup; -1 where an id is absent."""
    ids, rows, _ = lookup
    if not len(ids):
        return np.full(len(wanted), -1, np.int64)
    at = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return np.where(ids[at] == wanted, rows[at], -1)


def prepare_lookups(ctx: FeatureContext) -> None:
    """Build the row lookups of feature_frame now (a loading server), not on the first request."""
    for name, key in CONTEXT_TABLES:
        _row_lookup(ctx, name, key)
    _genre_cross_lookup(ctx)


def _gathered(ctx: FeatureContext, frame: pl.DataFrame) -> pl.DataFrame | None:
    """`frame` left-joined with ctx's users, items, user_index and item_index (in that order)
    by row lookup; None when a lookup cannot mirror the join (see _row_lookup, or a column
    name the join would suffix)."""
    for name, key in CONTEXT_TABLES:
        lookup = _row_lookup(ctx, name, key)
        if lookup is None or frame[key].null_count():
            return None
        ids, rows, rest = lookup
        if set(rest.columns) & set(frame.columns):
            return None
        take = _lookup_rows(lookup, frame[key].to_numpy())
        frame = frame.hstack(rest[np.where(take >= 0, take, rest.height - 1)])  # the null row: no match
    return frame


def _genre_crosses_by_join(ctx: FeatureContext, frame: pl.DataFrame, users: pl.Expr) -> pl.DataFrame:
    """The genre crosses as joins (any context, e.g. one whose (user, genre) rows repeat)."""
    exploded = (
        frame.select("__row", "user_id", pl.col("genres").fill_null([]))
        .explode("genres")
        .rename({"genres": "genre"})
        .drop_nulls("genre")
    )
    cross = (
        exploded.join(ctx.user_genres.filter(users), on=["user_id", "genre"], how="inner")
        .group_by("__row")
        .agg(
            pl.col("share").sum().alias("genre_share_sum"),
            pl.col("share").max().alias("genre_share_max"),
            pl.col("positives").sum().alias("genre_positives"),
            pl.col("clicks").sum().alias("genre_clicks"),
        )
    )
    return (
        frame.join(cross, on="__row", how="left")
        .sort("__row")
        .with_columns(
            pl.col("genre_share_sum", "genre_share_max", "genre_positives", "genre_clicks").fill_null(0.0),
            # no top genre matches nothing (contains(null) would match a null in the list)
            pl.when(pl.col("top_genre").is_not_null())
            .then(pl.col("genres").fill_null([]).list.contains(pl.col("top_genre")))
            .fill_null(False)
            .cast(pl.Float32)
            .alias("top_genre_match"),
        )
    )


@dataclass
class GenreCrossLookup:
    """ctx's item genres and user genre history as arrays, built once per context: genre codes
    per item (CSR over ctx.items' rows, null genres dropped) and the (user, genre) rows of
    ctx.user_genres sorted by (user, genre code)."""

    code: dict[str, int]
    item_indptr: np.ndarray
    item_genres: np.ndarray
    users: np.ndarray  # sorted user ids of user_genres
    keys: np.ndarray  # user position * n_genres + genre code, sorted
    share: np.ndarray
    positives: np.ndarray
    clicks: np.ndarray

    @classmethod
    def build(cls, ctx: FeatureContext) -> GenreCrossLookup | None:
        table = ctx.user_genres
        if (
            table["user_id"].null_count()
            or table["genre"].null_count()
            or table.select("user_id", "genre").is_duplicated().any()
        ):
            return None  # an inner join would match several rows or none: only the join mirrors it
        item_lists = ctx.items["genres"].fill_null([]).to_list()
        names = set(table["genre"].unique().to_list()) | {g for gs in item_lists for g in gs if g is not None}
        code = {g: j for j, g in enumerate(sorted(names))}
        per_item = [[code[g] for g in gs if g is not None] for gs in item_lists]
        indptr = np.zeros(len(per_item) + 1, np.int64)
        indptr[1:] = np.cumsum([len(g) for g in per_item])
        genres = np.fromiter((g for gs in per_item for g in gs), np.int64, count=int(indptr[-1]))
        user_ids = table["user_id"].to_numpy()
        genre_codes = table["genre"].replace_strict(list(code), list(code.values()), return_dtype=pl.Int64).to_numpy()
        users = np.unique(user_ids)
        keys = np.searchsorted(users, user_ids) * max(len(code), 1) + genre_codes
        order = np.argsort(keys, kind="stable")
        return cls(
            code=code,
            item_indptr=indptr,
            item_genres=genres,
            users=users,
            keys=keys[order],
            share=table["share"].cast(pl.Float64).to_numpy()[order],
            positives=table["positives"].cast(pl.Float64).to_numpy()[order],
            clicks=table["clicks"].cast(pl.Float64).to_numpy()[order],
        )


def _genre_cross_lookup(ctx: FeatureContext) -> GenreCrossLookup | None:
    """ctx's GenreCrossLookup, built once per context."""
    if "genre_cross" not in ctx.derived:
        ctx.derived["genre_cross"] = GenreCrossLookup.build(ctx)
    return ctx.derived["genre_cross"]


def _genre_crosses(ctx: FeatureContext, frame: pl.DataFrame) -> dict[str, np.ndarray] | None:
    """The genre crosses of `frame`'s rows by array lookups (the same values as
    _genre_crosses_by_join, without its explode, join and group-by per call); None when the
    context's tables cannot be looked up (see GenreCrossLookup.build, _row_lookup)."""
    lookup = _genre_cross_lookup(ctx)
    items = _row_lookup(ctx, "items", "item_id")
    if lookup is None or items is None or frame["item_id"].null_count() or frame["user_id"].null_count():
        return None
    item_rows = _lookup_rows(items, frame["item_id"].to_numpy())  # -1: not in the catalog
    return genre_cross_values(lookup, item_rows, frame["user_id"].to_numpy(), frame["top_genre"].to_list())


def genre_cross_values(
    lookup: GenreCrossLookup, item_rows: np.ndarray, user_ids: np.ndarray, top_genres: list
) -> dict[str, np.ndarray]:
    """The genre crosses of pairs given as ctx.items rows (-1: not in the catalog), user ids
    and each pair's user top genre (None: none)."""
    n = len(item_rows)
    safe = np.maximum(item_rows, 0)
    counts = np.where(item_rows >= 0, lookup.item_indptr[safe + 1] - lookup.item_indptr[safe], 0)
    entry_row = np.repeat(np.arange(n), counts)
    # each row's genres: its item's CSR range, laid end to end
    first = np.repeat(lookup.item_indptr[safe] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    entry_genre = lookup.item_genres[first + np.arange(len(entry_row))]
    user_ids = user_ids[entry_row]
    pos = np.minimum(np.searchsorted(lookup.users, user_ids), max(len(lookup.users) - 1, 0))
    known = lookup.users[pos] == user_ids if len(lookup.users) else np.zeros(len(entry_row), bool)
    key = pos * max(len(lookup.code), 1) + entry_genre
    at = np.minimum(np.searchsorted(lookup.keys, key), max(len(lookup.keys) - 1, 0))
    hit = known & (lookup.keys[at] == key) if len(lookup.keys) else known
    rows, at = entry_row[hit], at[hit]
    share_max = np.full(n, -np.inf)
    np.maximum.at(share_max, rows, lookup.share[at])
    top_code = np.array([lookup.code.get(g, -1) if g is not None else -1 for g in top_genres], np.int64)
    matched = entry_genre == top_code[entry_row]
    return {
        "genre_share_sum": np.bincount(rows, lookup.share[at], minlength=n),
        "genre_share_max": np.where(np.isneginf(share_max), 0.0, share_max),
        "genre_positives": np.bincount(rows, lookup.positives[at], minlength=n),
        "genre_clicks": np.bincount(rows, lookup.clicks[at], minlength=n),
        "top_genre_match": (np.bincount(entry_row[matched], minlength=n) > 0).astype(np.float32),
    }


def feature_frame(
    ctx: FeatureContext,
    pairs: pl.DataFrame,
    session_log: pl.DataFrame | None = None,
    request_features: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """`pairs` (user_id, item_id, position, surface, device_type, any extra columns) with every
    ranking feature appended; row order and extra columns are kept. Pairs that carry their
    request (request_id, session_id, requested_at, price) get the request-time features from
    `session_log` (S.LOG_SCHEMA: the sessions' actions; only those before each request count);
    `request_features` gives them instead, row by row (a live session's, SessionState)."""
    missing = [c for c in PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs need columns {missing}")
    stale = [c for c in S.SESSION_NUMERIC if c in pairs.columns]
    pairs = _with_request_features(pairs.drop(stale) if stale else pairs, session_log, request_features)
    frame = pairs.with_row_index("__row").with_columns(
        pl.col("user_id").cast(pl.Int64),
        pl.col("item_id").cast(pl.Int64),
        pl.col("position").cast(pl.Float32),
        pl.col("surface").cast(pl.String),
        pl.col("device_type").cast(pl.String),
    )
    gathered = _gathered(ctx, frame) if frame.height <= GATHER_ROWS else None
    # the context's tables cover every user / item: keep the pairs' rows before joining (a join
    # would hash all 1M users at L for a request of one)
    users: pl.Expr | None = None
    if gathered is not None:
        frame = gathered
    else:
        users = pl.col("user_id").is_in(frame["user_id"].unique().implode())
        items = pl.col("item_id").is_in(frame["item_id"].unique().implode())
        frame = (
            frame.join(ctx.users.filter(users), on="user_id", how="left")
            .join(ctx.items.filter(items), on="item_id", how="left")
            .join(ctx.user_index.filter(users), on="user_id", how="left")
            .join(ctx.item_index.filter(items), on="item_id", how="left")
            .sort("__row")
        )
    # user x item genre crosses: the item's genres against the user's genre history
    crosses = _genre_crosses(ctx, frame) if frame.height <= GATHER_ROWS else None
    if crosses is None:
        frame = _genre_crosses_by_join(ctx, frame, users if users is not None else pl.lit(True))
    channels = _channel_columns(
        ctx, _index_array(frame["user_idx"]), _index_array(frame["item_idx"]), listed=_listed_ranks(ctx, frame)
    )
    # the computed columns appended in one step (a request pays polars' fixed cost per step)
    added = (crosses or {}) | channels
    replaced = [name for name in added if name in frame.columns]
    frame = (frame.drop(replaced) if replaced else frame).hstack(
        [pl.Series(name, values) for name, values in added.items()]
    )
    numeric = set(numeric_features(ctx.channel_names))
    keep = list(pairs.columns) + [c for c in numeric_features(ctx.channel_names) if c not in pairs.columns]
    keep += [c for c in CATEGORICAL if c not in pairs.columns]
    return frame.select([pl.col(c).cast(pl.Float32) if c in numeric else pl.col(c) for c in keep])


def _index_array(indices: pl.Series) -> np.ndarray:
    """A dictionary index column as int64, -1 where null (no polars step: a request's frames
    are small enough that each step's fixed cost shows)."""
    values = indices.to_numpy()
    if values.dtype.kind == "f":  # an integer column with nulls comes out as float with NaN
        values = np.where(np.isnan(values), -1, values)
    return values.astype(np.int64)


def encode(frame: pl.DataFrame, encoder: HashEncoder, channel_names: tuple[str, ...]) -> np.ndarray:
    """The float32 matrix the ranker sees (columns = feature_names(channel_names)): numeric
    features as they are (NaN = unknown), categoricals as hash-dictionary indices."""
    numeric = frame.select(numeric_features(channel_names)).to_numpy().astype(np.float32)
    cats = [encoder.encode_column(dict_field, frame[col]).astype(np.float32) for col, dict_field in CATEGORICAL.items()]
    return np.column_stack([numeric, *cats]) if cats else numeric
