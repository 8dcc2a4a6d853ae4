"""One request's ranking features in arrays: the ranker's matrix for one user's candidates, built
by row lookups into tables prepared once per context and ranker. The values are those
feature_frame() and encode() give the same pairs in the serving context (tests/test_request_path.py
proves it); on a request's ~100 rows polars' fixed cost per step is most of the work, so the
server takes this path and batches keep the frame path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys_assets.core.hashing import MISSING_INDEX
from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking import session_features as S
from recsys_assets.core.ranking.ranker import Ranker

# the user's categoricals (from ctx.users) and the item's (from ctx.items), as CATEGORICAL orders them
USER_CATEGORICAL = ("country", "ui_language")
ITEM_CATEGORICAL = ("item_genre",)


@dataclass
class RequestTables:
    """ctx's users and items as float32 rows in the ranker's column order (numeric features,
    then encoded categoricals), each table with a last all-missing row for an id it does not
    hold, plus each user's top genre, the dictionary indices of both and the genre cross
    lookup; built once per context and ranker."""

    user_lookup: tuple[np.ndarray, np.ndarray]  # (sorted ids, their rows)
    user_values: np.ndarray  # rows x (USER_NUMERIC + USER_CATEGORICAL)
    top_genre: list  # per user row: its top genre (None: none)
    item_lookup: tuple[np.ndarray, np.ndarray]
    item_values: np.ndarray  # rows x (ITEM_NUMERIC + ITEM_CATEGORICAL)
    user_index: tuple[np.ndarray, np.ndarray]  # (sorted user ids, their dictionary index)
    item_index: tuple[np.ndarray, np.ndarray]
    genres: F.GenreCrossLookup
    codes: dict  # categorical field -> {value: code} of values met by requests (surface, device)

    @classmethod
    def of(cls, ctx: F.FeatureContext, ranker: Ranker) -> RequestTables | None:
        """ctx's tables for `ranker` (cached in ctx.derived per ranker encoder); None when a
        table cannot be looked up by id (see features._row_lookup): the frame path then serves."""
        cache = ctx.derived.setdefault("request_tables", {})
        key = id(ranker.encoder)
        if key not in cache or cache[key][0] is not ranker.encoder:
            cache[key] = (ranker.encoder, cls._build(ctx, ranker))
        return cache[key][1]

    @classmethod
    def _build(cls, ctx: F.FeatureContext, ranker: Ranker) -> RequestTables | None:
        users, items, user_index, item_index = (F._row_lookup(ctx, name, key) for name, key in F.CONTEXT_TABLES)
        genres = F._genre_cross_lookup(ctx)
        if users is None or items is None or user_index is None or item_index is None or genres is None:
            return None
        if ranker.feature_names != F.feature_names(ranker.channel_names):
            return None

        def values(lookup, numeric: list[str], categorical: tuple[str, ...]) -> np.ndarray:
            rest = lookup[2]  # the table without its key, plus one all-null row
            numbers = rest.select(pl.col(numeric).cast(pl.Float32)).to_numpy().astype(np.float32)
            cats = [ranker.encoder.encode_column(F.CATEGORICAL[c], rest[c]).astype(np.float32) for c in categorical]
            return np.column_stack([numbers, *cats]).astype(np.float32)

        return cls(
            user_lookup=users[:2],
            user_values=values(users, [f"u_{c}" for c in F.USER_NUMERIC], USER_CATEGORICAL),
            top_genre=users[2]["top_genre"].to_list(),
            item_lookup=items[:2],
            item_values=values(items, [f"i_{c}" for c in F.ITEM_NUMERIC], ITEM_CATEGORICAL),
            user_index=(user_index[0], _dictionary_index(user_index[2]["user_idx"], user_index[1])),
            item_index=(item_index[0], _dictionary_index(item_index[2]["item_idx"], item_index[1])),
            genres=genres,
            codes={},
        )

    def code(self, ranker: Ranker, column: str, value: str | None) -> float:
        """encode()'s index of a column holding `value` on every row (a request's surface, device)."""
        if value is None:
            return float(MISSING_INDEX)
        memo = self.codes.setdefault(column, {})
        if value not in memo:
            memo[value] = float(ranker.encoder.encode_many(F.CATEGORICAL[column], [value])[0])
        return memo[value]


def _dictionary_index(column: pl.Series, rows: np.ndarray) -> np.ndarray:
    """The dictionary index of each sorted id (-1 where null), from its table row."""
    values = F._index_array(column)
    return values[rows]


def _find(lookup: tuple[np.ndarray, np.ndarray], wanted: np.ndarray, missing: int) -> np.ndarray:
    """The rows (or indices) of `wanted` ids through a (sorted ids, values) pair; `missing` where absent."""
    ids, values = lookup
    if not len(ids):
        return np.full(len(wanted), missing, np.int64)
    at = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return np.where(ids[at] == wanted, values[at], missing)


def excluded_items(tables: RequestTables, exclude, user_id: int, item_ids: np.ndarray) -> np.ndarray:
    """Per item: whether `exclude` (users x items by dictionary index) holds the pair, as
    serving.drop_excluded finds it, from the user's one CSR row."""
    hit = np.zeros(len(item_ids), bool)
    uidx = int(_find(tables.user_index, np.array([user_id], np.int64), -1)[0])
    if exclude is None or uidx < 0 or uidx >= exclude.shape[0]:
        return hit
    lo, hi = exclude.indptr[uidx], exclude.indptr[uidx + 1]
    row = np.unique(exclude.indices[lo:hi][exclude.data[lo:hi] != 0])
    items = _find(tables.item_index, np.asarray(item_ids, np.int64), -1)
    return (items >= 0) & (items < exclude.shape[1]) & np.isin(items, row)


def request_matrix(
    ctx: F.FeatureContext,
    tables: RequestTables,
    ranker: Ranker,
    user_id: int,
    item_ids: np.ndarray,
    surface: str | None,
    listed: dict[str, np.ndarray] | None = None,
    session_values: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """ranker.matrix(feature_frame(ctx, pairs)) for the pairs (user_id, item_ids) in the
    serving context (no position, `surface`, no device): `listed` = the channel list positions
    the candidates carry (features._listed_ranks), `session_values` = SESSION_NUMERIC of a live
    session's request (SessionState.request_values), else null."""
    n = len(item_ids)
    item_ids = np.asarray(item_ids, np.int64)
    users = np.full(n, user_id, np.int64)
    user_row = int(_find(tables.user_lookup, users[:1], len(tables.user_values) - 1)[0])
    item_rows = _find(tables.item_lookup, item_ids, len(tables.item_values) - 1)
    n_user, n_item = len(F.USER_NUMERIC), len(F.ITEM_NUMERIC)
    top = tables.top_genre[user_row]
    crosses = F.genre_cross_values(
        tables.genres,
        np.where(item_rows < len(tables.item_values) - 1, item_rows, -1),
        users,
        [top] * n,
    )
    channels = F._channel_columns(
        ctx,
        np.repeat(_find(tables.user_index, users[:1], -1), n),
        _find(tables.item_index, item_ids, -1),
        listed=listed,
    )
    session = session_values or {}
    nan = np.full(n, np.nan, np.float32)
    columns = (
        [np.broadcast_to(tables.user_values[user_row, :n_user], (n, n_user))]
        + [tables.item_values[item_rows, :n_item]]
        + [crosses[c][:, None] if c in crosses else nan[:, None] for c in F.CROSS]  # position: null
        + [session.get(c, nan)[:, None] for c in S.SESSION_NUMERIC]
        + [channels[f"{kind}_{c}"][:, None] for c in ranker.channel_names for kind in ("score", "rank")]
        + [
            np.full((n, 1), tables.code(ranker, "surface", surface), np.float32),
            np.full((n, 1), tables.code(ranker, "device_type", None), np.float32),
            np.broadcast_to(tables.user_values[user_row, n_user:], (n, len(USER_CATEGORICAL))),
            tables.item_values[item_rows, n_item:],
        ]
    )
    return np.hstack([np.asarray(c, np.float32) for c in columns])
