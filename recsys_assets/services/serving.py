"""Loading what the ranking stage needs for a day from the lake and the model store, and the
funnel for a set of users: shared by the ranking assets (batch) and the `recsys` CLI
(online), so both build the same features and lists."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import scipy.sparse as sp

from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking import funnel
from recsys_assets.core.ranking import ranker as ranker_lib
from recsys_assets.core.ranking.request_path import RequestTables, excluded_items, request_matrix
from recsys_assets.core.ranking.rerank import RerankRules
from recsys_assets.core.ranking.session_features import SessionState
from recsys_assets.core.storage import local_scratch_dir, scan_polars, write_parquet_atomic
from recsys_assets.core.tables import connect
from recsys_assets.core.training_data import load_recall_exclusions, seen_matrix
from recsys_assets.services.candidates import scan_candidates
from recsys_assets.services.channels import load_channels
from recsys_assets.services.days import days_before
from recsys_assets.services.errors import MissingInput
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.registry import serving_champion_model, serving_ranker_day
from recsys_assets.services.training import history_partitions, read_training_data
from recsys_assets.settings import RankingConfig, RecallConfig

GENRE_WINDOW_DAYS = 28
CONTEXT_FEATURES = ("position", "surface_idx", "device_type_idx")
# The cold path's list when the day's model is published: on MovieLens-100K's held-out period its
# NDCG@10 for cold users is 0.345 against 0.320 for the 7-day positives ranking of item_features
# (benchmarks/RESULTS.md, "Held-out period of a long source"), which stays the fallback.
COLD_START_CHANNEL = "recent_popularity"
# past any channel depth: in champion_order, a fused rank never outranks a champion rank
CHAMPION_RANK_OFFSET = 1_000_000.0


def feature_context(
    lake: Lake,
    model_store: ModelStore,
    day: str,
    channel_names,
    recall: RecallConfig,
    rank_depth: int,
    first_day: str | None,
) -> F.FeatureContext:
    """Everything the ranking features of `day` need: point-in-time user/item features, the
    user's genre history, the recall models of `day` and what recall excludes from their lists
    (the training window's positives, every item consumed before `day`, items not yet
    available), so rank_<channel> is the position in the same list recall_candidates fused.
    The served lists leave out the same pairs (drop_excluded)."""
    required = {
        "user_features": lake.partition_path("user_features", day),
        "item_features": lake.partition_path("item_features", day),
        "raw_users": lake.partition_path("raw_users"),
        "raw_items": lake.partition_path("raw_items"),
        "user_id_dictionary": lake.partition_path("user_id_dictionary"),
        "item_id_dictionary": lake.partition_path("item_id_dictionary"),
    }
    missing = [f"{name} ({path})" for name, path in required.items() if not path.exists()]
    if missing:
        raise MissingInput(f"ranking features for {day} need {', '.join(missing)}; materialize them first")
    genre_window = lake.existing_partitions("user_genre_daily", days_before(day, GENRE_WINDOW_DAYS))
    stored = read_training_data(lake, model_store, day, recall, first_day)
    if stored is not None:  # the day's recall_training_data: the same pairs, already read
        data, _, info, _, _ = stored
        exclude, blocked = seen_matrix(data.positives, info["consumed"]), np.flatnonzero(~info["available_items"])
        window_users = np.diff(data.positives.indptr) > 0
    else:
        exclude, blocked, window_users = load_recall_exclusions(
            day,
            lake.existing_partitions("interactions", days_before(day, recall.window_days, first_day)),
            history_partitions(lake, day, first_day),
            required["user_id_dictionary"],
            required["item_id_dictionary"],
            required["raw_items"],
            click_weight=recall.click_weight,
        )
    channels = load_channels(model_store, day, channel_names)
    cold_start = channels.get(COLD_START_CHANNEL) or load_channels(model_store, day, [COLD_START_CHANNEL]).get(
        COLD_START_CHANNEL
    )
    ctx = F.load_context(
        day,
        user_features=required["user_features"],
        item_features=required["item_features"],
        genre_window=genre_window,
        users=required["raw_users"],
        items=required["raw_items"],
        user_dictionary=required["user_id_dictionary"],
        item_dictionary=required["item_id_dictionary"],
        channel_names=tuple(channel_names),
        channels=channels,
        rank_depth=rank_depth,
        exclude=exclude,
        blocked_items=blocked,
        window_users=window_users,
    )
    ctx.cold_start = cold_start
    return ctx


def load_ranker(model_store: ModelStore, day: str) -> ranker_lib.Ranker:
    model_store.verify("ranker", day)  # checksums first: a corrupt file never loads
    return ranker_lib.load(model_store.path("ranker", day))


def rules(settings: RankingConfig) -> RerankRules:
    return RerankRules(
        mmr_lambda=settings.mmr_lambda,
        genre_cap=settings.genre_cap,
        freshness_boost=settings.freshness_boost,
        freshness_half_life_days=settings.freshness_half_life_days,
        popularity_beta=settings.popularity_beta,
    )


# ------------------------------------------------------------------------------ recommendations
def write_recommendations(
    path,
    root,
    day: str,
    users: np.ndarray,
    candidates: pl.LazyFrame | None,
    ctx: F.FeatureContext,
    model: ranker_lib.Ranker | None,
    history: pl.DataFrame,
    settings: RankingConfig,
    columns: list[str],
    recall_champion: str | None = None,
) -> dict:
    """The recommendations partition of `day` for `users` (sorted ids): serving_batch_users
    users at a time, each batch's candidates read by user-id range (users without candidates
    get popular items), ranked, re-ranked and explained (recommend_users), then spilled to a
    Parquet part; the parts are sorted into the partition and published atomically, so memory
    stays bounded by one batch and a crash leaves no partial partition."""
    scratch = local_scratch_dir(root, ".tmp")
    scratch.mkdir(parents=True, exist_ok=True)
    parts_dir = Path(tempfile.mkdtemp(prefix=f"recommendations-{day}-", dir=scratch))
    history = history.sort("user_id", maintain_order=True)  # keeps each user's own order
    history_users = history["user_id"].to_numpy()
    stats: dict[str, Any] = {"rows": 0, "users": 0, "cold_start_users": 0, "preview": None}
    items = []
    try:
        step = settings.serving_batch_users
        for start in range(0, max(len(users), 1), step):
            batch = users[start : start + step]
            lo, hi = (int(batch[0]), int(batch[-1])) if len(batch) else (0, -1)
            first = int(np.searchsorted(history_users, lo, "left"))
            last = int(np.searchsorted(history_users, hi, "right"))
            batch_history = history.slice(first, max(last - first, 0))
            batch_candidates = (
                candidates.filter(pl.col("user_id").is_between(lo, hi)).collect()
                if candidates is not None
                else pl.DataFrame(
                    schema={
                        "user_id": pl.Int64,
                        "item_id": pl.Int64,
                        "recall_rank": pl.Int64,
                        "recall_score": pl.Float64,
                    }
                )
            )
            cold = np.setdiff1d(batch, batch_candidates["user_id"].to_numpy())
            if len(cold):
                batch_candidates = pl.concat(
                    [batch_candidates, popular_candidates(ctx, cold, settings.rank_candidates, batch_history)],
                    how="diagonal_relaxed",
                )
            out = recommend_users(
                ctx, model, batch_candidates, batch_history, settings, recall_champion=recall_champion
            )
            out = out.with_columns(pl.lit(day).str.to_date().alias("day")).select(columns)
            out.write_parquet(parts_dir / f"{start:012d}.parquet")
            stats["rows"] += out.height
            stats["users"] += out["user_id"].n_unique()
            stats["cold_start_users"] += len(cold)
            items.append(out["item_id"].unique().to_numpy())
            if stats["preview"] is None:
                stats["preview"] = out.filter(pl.col("user_id") == out["user_id"].min()) if out.height else out
        con = connect()
        try:
            write_parquet_atomic(
                con, f"SELECT * FROM read_parquet('{parts_dir}/*.parquet') ORDER BY user_id, rank", path
            )
        finally:
            con.close()
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    stats["distinct_items"] = len(np.unique(np.concatenate(items))) if items else 0
    return stats


def user_history(lake: Lake, days: list[str], users=None, with_clicks: bool = False) -> pl.DataFrame:
    """(user_id, item_id, last_day) of every positive in the interactions of `days` (and of
    every click too with with_clicks: what recall excludes as already seen)."""
    files = lake.existing_partitions("interactions", days)
    if not files:
        return pl.DataFrame(schema={"user_id": pl.Int64, "item_id": pl.Int64, "last_day": pl.Date})
    keep = pl.col("is_positive") | pl.col("clicked") if with_clicks else pl.col("is_positive")
    frame = scan_polars(files).filter(keep).group_by("user_id", "item_id").agg(pl.col("day").max().alias("last_day"))
    if users is not None:
        frame = frame.filter(pl.col("user_id").is_in(pl.Series(list(users), dtype=pl.Int64).implode()))
    return frame.collect().sort("user_id", "last_day", "item_id", descending=[False, True, False])


def _id_to_index(ctx: F.FeatureContext) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sorted user ids, their indices, sorted item ids, their indices), built once per context."""
    cached = ctx.derived.get("id_to_index")
    if cached is None:
        users, items = ctx.user_index.sort("user_id"), ctx.item_index.sort("item_id")
        cached = ctx.derived["id_to_index"] = (
            users["user_id"].to_numpy(),
            users["user_idx"].to_numpy(),
            items["item_id"].to_numpy(),
            items["item_idx"].to_numpy(),
        )
    return cached


def prepare_context(ctx: F.FeatureContext) -> None:
    """Build now what requests would otherwise build on first use (the catalog's re-ranking
    attributes, explanation vectors, cold-start ranking, id lookups), so a freshly loaded
    recommender answers its first request as fast as the others."""
    attrs = funnel.ItemAttributes.from_context(ctx)
    _ = attrs.genre_code
    item_vectors(ctx, attrs)
    cold_start_ranking(ctx)
    _id_to_index(ctx)
    F.prepare_lookups(ctx)


def drop_excluded(ctx: F.FeatureContext, pairs: pl.DataFrame, exclude: sp.csr_matrix | None = None) -> pl.DataFrame:
    """`pairs` (user_id, item_id, ...) without those recall excludes on ctx's day (`exclude`,
    default ctx.exclude: the window's positives and clicks, every item consumed before the day):
    one sparse lookup per pair, no per-user sets."""
    exclude = ctx.exclude if exclude is None else exclude
    if exclude is None or pairs.height == 0:
        return pairs
    user_ids, user_idx, item_ids, item_idx = _id_to_index(ctx)
    u, i = _lookup(user_ids, pairs["user_id"].to_numpy()), _lookup(item_ids, pairs["item_id"].to_numpy())
    known = (u >= 0) & (i >= 0)
    u, i = np.where(known, user_idx[np.maximum(u, 0)], -1), np.where(known, item_idx[np.maximum(i, 0)], -1)
    known &= (u < exclude.shape[0]) & (i < exclude.shape[1])
    hit = np.zeros(pairs.height, bool)
    if known.any():
        hit[known] = np.asarray(exclude[u[known], i[known]]).ravel() > 0
    return pairs.filter(~hit) if hit.any() else pairs


def cold_start_ranking(ctx: F.FeatureContext) -> tuple[pl.DataFrame, str]:
    """(item_id, pop = rank from 1) of every available item for users without a history, and the
    channel it comes from: the day's recent_popularity model when published, else the 7-day
    positives ranking of the day's item features (popularity_rank_7d). Built once per context."""
    cached = ctx.derived.get("cold_start_ranking")
    if cached is not None:
        return cached
    if ctx.cold_start is not None:
        scores = ctx.cold_start.model.score(np.zeros(1, np.int64))[0]  # the same list for every user
        known = ctx.item_index.filter(pl.col("item_idx") < len(scores))
        ranked = (
            known.with_columns(pl.Series("score", scores[known["item_idx"].to_numpy()]))
            .join(ctx.items.select("item_id"), on="item_id")  # available on the day
            .sort(["score", "item_id"], descending=[True, False])
        )
        cached = (ranked.select("item_id", pl.int_range(1, ranked.height + 1).alias("pop")), COLD_START_CHANNEL)
    else:
        top = ctx.items.filter(pl.col("i_popularity_rank_7d").is_not_null()).sort("i_popularity_rank_7d")
        cached = (top.select("item_id", pl.col("i_popularity_rank_7d").alias("pop")), "popularity")
    ctx.derived["cold_start_ranking"] = cached
    return cached


def popular_candidates(
    ctx: F.FeatureContext, users, n: int, history: pl.DataFrame, exclude: sp.csr_matrix | None = None
) -> pl.DataFrame:
    """Cold-start candidates: the n first items of cold_start_ranking (recent_popularity of the
    day, else popularity_rank_7d of the day's item features) for each user, minus what the user
    already watched and what recall excludes (drop_excluded); in_<channel> = the item's rank in
    that list. A user short of n after that looks deeper into the ranking."""
    ranked, channel = cold_start_ranking(ctx)
    todo, depth, parts = pl.Series(list(users), dtype=pl.Int64).unique(maintain_order=True), n + 50, []
    while len(todo):
        pairs = pl.DataFrame({"user_id": todo}).join(ranked.head(depth), how="cross")
        pairs = pairs.join(history.select("user_id", "item_id"), on=["user_id", "item_id"], how="anti")
        pairs = drop_excluded(ctx, pairs, exclude)
        pairs = pairs.sort("user_id", "pop").group_by("user_id", maintain_order=True).head(n)
        if depth >= ranked.height:
            parts.append(pairs)
            break
        full = pairs.group_by("user_id").len().filter(pl.col("len") >= n)["user_id"]
        parts.append(pairs.filter(pl.col("user_id").is_in(full.implode())))
        todo, depth = todo.filter(~todo.is_in(full.implode())), depth * 4  # heavy consumers only
    pairs = (
        pl.concat(parts).sort("user_id", "pop")
        if parts
        else pl.DataFrame(schema={"user_id": pl.Int64, "item_id": pl.Int64, "pop": ranked.schema["pop"]})
    )
    return pairs.with_columns(
        pl.col("pop").rank("ordinal").over("user_id").cast(pl.Int64).alias("recall_rank"),
        (1.0 / pl.col("pop")).alias("recall_score"),
        pl.col("pop").cast(pl.Int64).alias(f"in_{channel}"),
    ).drop("pop")


def item_vectors(ctx: F.FeatureContext, attrs: funnel.ItemAttributes) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, unit vectors) for "because you watched": the ALS item factors of the day when
    published, else the items' genre vectors. Built once per context and factor array."""
    als = ctx.channels.get("als")
    factors = als.model.arrays().get("item_factors") if als is not None else None
    source = factors if factors is not None else attrs
    cached = ctx.derived.get("because_vectors")
    if cached is None or cached[0] is not source:  # the same factor array (a fold-in shares the base's)
        cached = ctx.derived["because_vectors"] = (source, _unit_item_vectors(ctx, attrs, factors))
    return cached[1]


def _unit_item_vectors(ctx: F.FeatureContext, attrs: funnel.ItemAttributes, factors) -> tuple[np.ndarray, np.ndarray]:
    if factors is not None:
        index = ctx.item_index.filter(pl.col("item_idx") < factors.shape[0])
        ids, vectors = index["item_id"].to_numpy(), factors[index["item_idx"].to_numpy()]
    else:
        ids, vectors = attrs.ids, attrs.genre_vectors
    order = np.argsort(ids)
    vectors = np.asarray(vectors, np.float64)[order]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return ids[order], np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _lookup(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    pos = np.clip(np.searchsorted(ids, wanted), 0, max(len(ids) - 1, 0))
    return np.where((len(ids) > 0) & (ids[pos] == wanted), pos, -1)


def because_you_watched(
    ids: np.ndarray, vectors: np.ndarray, out: pl.DataFrame, history: pl.DataFrame, n: int
) -> pl.Series:
    """For each row of `out` (user_id, item_id): up to n of the user's watched items (history
    order) whose unit vectors are closest to the item's, similarity > 0 only, as a list column.
    One small matrix product per user (watched × recommended), not one per row; the lists are
    assembled as one flat Arrow array (a Python list per row would cost more than the products)."""
    counts = np.zeros(out.height, np.int64)
    chunks_rows, chunks_items = [], []
    if n > 0 and out.height and history.height:
        hist_user = history["user_id"].to_numpy()
        hist_rows = _lookup(ids, history["item_id"].to_numpy())
        hist_items = history["item_id"].to_numpy()
        keep = hist_rows >= 0
        hist_user, hist_rows, hist_items = hist_user[keep], hist_rows[keep], hist_items[keep]
        order = np.argsort(hist_user, kind="stable")  # history order within each user
        hist_user, hist_rows, hist_items = hist_user[order], hist_rows[order], hist_items[order]
        out_user = out["user_id"].to_numpy()
        out_rows = _lookup(ids, out["item_id"].to_numpy())
        out_order = np.argsort(out_user, kind="stable")
        users, first = np.unique(out_user[out_order], return_index=True)
        bounds = np.append(first, len(out_order))
        h_lo = np.searchsorted(hist_user, users, side="left")
        h_hi = np.searchsorted(hist_user, users, side="right")
        for j in np.flatnonzero(h_hi > h_lo):
            rows_out = out_order[bounds[j] : bounds[j + 1]]
            rows_out = rows_out[out_rows[rows_out] >= 0]
            if not len(rows_out):
                continue
            watched_rows, watched_items = hist_rows[h_lo[j] : h_hi[j]], hist_items[h_lo[j] : h_hi[j]]
            sims = vectors[watched_rows] @ vectors[out_rows[rows_out]].T  # watched × recommended
            top = np.argsort(-sims, axis=0, kind="stable")[:n].T  # per recommended row, best first
            positive = np.take_along_axis(sims.T, top, axis=1) > 0
            counts[rows_out] = positive.sum(axis=1)
            chunks_rows.append(np.repeat(rows_out, positive.sum(axis=1)))
            chunks_items.append(watched_items[top][positive])  # row-major: each row's picks in order
    if chunks_rows:
        value_rows, values = np.concatenate(chunks_rows), np.concatenate(chunks_items)
        values = values[np.argsort(value_rows, kind="stable")]  # grouped by output row, picks kept in order
    else:
        values = np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values.astype(np.int64), pa.int64()))
    return pl.Series("because_you_watched", pl.from_arrow(lists), dtype=pl.List(pl.Int64))


def proposing_channels(candidates: pl.DataFrame, out: pl.DataFrame) -> pl.Series:
    """`channels` of each row of `out` (user_id, item_id): the channels whose list held the
    pair among `candidates` (in_<channel> > 0), in column order; null for a pair not there."""
    names = [c.removeprefix("in_") for c in candidates.columns if c.startswith("in_")]
    row = funnel.pair_index(
        out["user_id"].to_numpy(),
        out["item_id"].to_numpy(),
        candidates["user_id"].to_numpy(),
        candidates["item_id"].to_numpy(),
    )
    listed = np.zeros((out.height, len(names)), bool)
    if len(names):
        # (a column with nulls comes out as float with NaN, which is not > 0: absent)
        held = np.column_stack([candidates[f"in_{n}"].to_numpy() > 0 for n in names])
        listed[row >= 0] = held[row[row >= 0]]
    rows, cols = np.nonzero(listed)  # row by row, channels in column order
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=out.height))]).astype(np.int32)
    lists = pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(names, pa.string()).take(pa.array(cols)), mask=pa.array(row < 0)
    )
    return pl.Series("channels", pl.from_arrow(lists), dtype=pl.List(pl.String))


def champion_order(candidates: pl.DataFrame, recall_champion: str | None) -> pl.DataFrame:
    """Recall order when no ranker serves: the items the serving recall champion's channel
    proposed first, in its own rank (in_<champion>), then the rest in the fused order
    (recall_rank), as `ranker_score` (higher first). Without a champion, or when it is not one
    of the day's channels, the fused order alone."""
    fused = pl.col("recall_rank").cast(pl.Float64)
    column = f"in_{recall_champion}"
    if recall_champion is None or column not in candidates.columns:
        return candidates.with_columns((-fused).alias("ranker_score"))
    rank = pl.col(column).fill_null(0).cast(pl.Float64)
    # the champion's ranks (1..depth) come before every fused rank (offset past any depth)
    return candidates.with_columns(
        pl.when(rank > 0).then(-rank).otherwise(-(fused + CHAMPION_RANK_OFFSET)).alias("ranker_score")
    )


def recommend_users(
    ctx: F.FeatureContext,
    model: ranker_lib.Ranker | None,
    candidates: pl.DataFrame,
    history: pl.DataFrame,
    settings: RankingConfig,
    explain: bool = True,
    timings: dict | None = None,
    exclude: sp.csr_matrix | None = None,
    session: SessionState | None = None,
    at: dt.datetime | None = None,
    recall_champion: str | None = None,
) -> pl.DataFrame:
    """The funnel's final lists: rank candidates with the ranker (with a live `session`, as its
    request at `at`; when model is None, in the serving `recall_champion`'s order, see
    champion_order), re-rank (seen items
    removed, MMR, genre cap, ...), explain. One row per
    (user, rank): item, score, stage, channels, because_you_watched, top_features. Candidates
    recall excludes (drop_excluded with `exclude`, default ctx.exclude) are never served, even
    from a recall_candidates partition written with older exclusions."""
    timings = {} if timings is None else timings
    attrs = funnel.ItemAttributes.from_context(ctx)
    started = time.perf_counter()
    candidates = drop_excluded(ctx, candidates, exclude)
    if model is not None:
        scored = funnel.score_candidates(model, ctx, candidates, settings.serving_surface, session, at)
        stage = "ranker_rerank"
    else:
        scored = champion_order(candidates, recall_champion)
        stage = "recall_rerank"
    timings["rank_ms"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    out = funnel.rerank_frame(scored, settings.top_k, rules(settings), attrs, history)
    labels: list[pl.Expr | pl.Series] = [pl.lit(stage).alias("stage"), proposing_channels(candidates, out)]
    timings["rerank_ms"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    if not explain or out.height == 0:
        return out.with_columns(
            *labels,
            pl.lit([], pl.List(pl.Int64)).alias("because_you_watched"),
            pl.lit([], pl.List(pl.String)).alias("top_features"),
        ).sort("user_id", "rank")
    out = out.with_columns(*labels)
    # because you watched: the user's history items closest to the recommended item
    ids, vectors = item_vectors(ctx, attrs)
    out = out.with_columns(because_you_watched(ids, vectors, out, history, settings.explain_history_items))
    if model is None:
        timings["explain_ms"] = (time.perf_counter() - started) * 1000
        return out.with_columns(pl.lit([], pl.List(pl.String)).alias("top_features")).sort("user_id", "rank")
    # top contributing features (TreeSHAP) of the first explain_top_n pairs of each list;
    # serving-context features (position, surface, device) are the same for every candidate
    # and explain nothing to a user, so they are left out
    head = out.with_row_index("__row").filter(pl.col("rank") <= settings.explain_top_n)
    if head.height == 0:  # explain_top_n = 0: no TreeSHAP at all (LightGBM cannot explain zero rows)
        timings["explain_ms"] = (time.perf_counter() - started) * 1000
        return out.with_columns(pl.lit([], pl.List(pl.String)).alias("top_features")).sort("user_id", "rank")
    final = head.select("user_id", "item_id").join(scored, on=["user_id", "item_id"], how="left")
    contrib = model.contributions(final)[:, :-1]
    names = np.asarray(model.feature_names)
    contrib[:, np.isin(names, list(CONTEXT_FEATURES))] = -np.inf
    top = np.argsort(-contrib, axis=1)[:, : settings.explain_features]
    features: list[list[str]] = [[] for _ in range(out.height)]
    for k, (i, row) in enumerate(zip(head["__row"].to_list(), top, strict=False)):
        features[i] = [str(names[j]) for j in row if contrib[k, j] > 0]
    timings["explain_ms"] = (time.perf_counter() - started) * 1000
    return out.with_columns(pl.Series("top_features", features, dtype=pl.List(pl.String))).sort("user_id", "rank")


def recommend_request(
    ctx: F.FeatureContext,
    model: ranker_lib.Ranker,
    tables: RequestTables,
    user_id: int,
    candidates: dict[str, np.ndarray],
    history: pl.DataFrame,
    settings: RankingConfig,
    timings: dict | None = None,
    exclude: sp.csr_matrix | None = None,
    session: SessionState | None = None,
    at: dt.datetime | None = None,
) -> list[dict]:
    """recommend_users(explain=False) of one user's candidates (serving_candidates' columns as
    arrays) through the ranker, in arrays (core/ranking/request_path.py): the same table as
    rows (answer_table(rows) is the frame), without a polars step per stage."""
    timings = {} if timings is None else timings
    attrs = funnel.ItemAttributes.from_context(ctx)
    started = time.perf_counter()
    items = candidates["item_id"].astype(np.int64)
    hit = excluded_items(tables, ctx.exclude if exclude is None else exclude, user_id, items)
    if hit.any():
        candidates = {c: v[~hit] for c, v in candidates.items()}
        items = items[~hit]
    if session is not None and at is None:
        raise ValueError("a session request needs its time (at)")
    matrix = request_matrix(
        ctx,
        tables,
        model,
        user_id,
        items,
        settings.serving_surface,
        listed=F.listed_ranks(ctx, candidates),
        session_values=session.request_values(items, at) if session is not None and at is not None else None,
    )
    scores = model.score_matrix(matrix)
    timings["rank_ms"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    watched = np.isin(items, history["item_id"].to_numpy()) if history.height else np.zeros(len(items), bool)
    top_items, top_scores = funnel.rerank_list(items, scores, watched, settings.top_k, rules(settings), attrs)
    names = [c.removeprefix("in_") for c in candidates if c.startswith("in_")]
    order = np.argsort(items, kind="stable")
    row = order[np.searchsorted(items[order], top_items)] if len(items) else np.zeros(0, np.int64)
    held = [candidates[f"in_{n}"][row] > 0 for n in names]
    # rows, not a frame: on ten rows polars' construction (list columns above all) costs more
    # than the re-rank; answer_table() makes the frame when one is asked for
    out = [
        {
            "user_id": user_id,
            "rank": rank,
            "item_id": item,
            "score": score,
            "stage": "ranker_rerank",
            "channels": [n for n, h in zip(names, held, strict=True) if h[rank - 1]],
            "because_you_watched": [],
            "top_features": [],
        }
        for rank, (item, score) in enumerate(zip(top_items.tolist(), top_scores.tolist(), strict=True), start=1)
    ]
    timings["rerank_ms"] = (time.perf_counter() - started) * 1000
    return out


ANSWER_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "user_id": pl.Int64,
    "rank": pl.Int64,
    "item_id": pl.Int64,
    "score": pl.Float64,
    "stage": pl.String,
    "channels": pl.List(pl.String),
    "because_you_watched": pl.List(pl.Int64),
    "top_features": pl.List(pl.String),
}


def answer_table(rows: list[dict]) -> pl.DataFrame:
    """recommend_request's rows as the table recommend_users gives."""
    return pl.DataFrame(rows, schema=ANSWER_SCHEMA)


RECOMMENDATION_COLUMNS = [
    "day",
    "user_id",
    "rank",
    "item_id",
    "score",
    "stage",
    "channels",
    "because_you_watched",
    "top_features",
]


def recommend_day(
    day: str,
    lake: Lake,
    model_store: ModelStore,
    ranking: RankingConfig,
    recall: RecallConfig,
    first_day: str | None,
    log=None,
    out: Path | None = None,
) -> dict:
    """The recommendations partition of `day`: every active user (and every user with recall
    candidates) through the serving ranker (or the serving recall champion's order when no
    ranker is promoted), re-rank
    and explanations, written to `out` (default: the published partition). Returns the write
    statistics with the serving ranker and why."""
    ranker_day, why = serving_ranker_day(lake, day)
    model = load_ranker(model_store, ranker_day) if ranker_day else None
    recall_champion = serving_champion_model(lake, day)
    ctx = feature_context(
        lake,
        model_store,
        day,
        model.channel_names if model else ranking.channels,
        recall,
        model.rank_depth if model else ranking.rank_depth,
        first_day,
    )
    if log:
        order = (
            f"ranker of {ranker_day}"
            if model
            else f"recall order of the recall champion {recall_champion or '(none: fused)'}"
        )
        log.info(f"recommendations {day}: {order} ({why})")
    try:
        candidates = scan_candidates(lake, day, ranking.rank_candidates)
    except MissingInput as missing:  # e.g. the first day: no model could be trained yet
        if log:
            log.warning(f"recommendations {day}: {missing}; every active user gets the cold-start path")
        candidates = None
    history = user_history(lake, days_before(day, recall.window_days, first_day))
    active = np.sort(
        ctx.users.filter(pl.col("u_impressions_28d").is_not_null() | pl.col("u_positives_28d").is_not_null())[
            "user_id"
        ].to_numpy()
    )
    with_candidates = (
        candidates.select(pl.col("user_id").unique()).collect()["user_id"].to_numpy()
        if candidates is not None
        else np.zeros(0, np.int64)
    )
    users = np.union1d(active, with_candidates)
    started = time.perf_counter()
    stats = write_recommendations(
        out or lake.partition_path("recommendations", day),
        lake.root,
        day,
        users,
        candidates,
        ctx,
        model,
        history,
        ranking,
        RECOMMENDATION_COLUMNS,
        recall_champion=recall_champion,
    )
    seconds = time.perf_counter() - started
    if log:
        log.info(
            f"recommendations {day}: {len(users)} users ({stats['cold_start_users']} cold start), "
            f"{stats['rows']} rows in {seconds:.0f}s"
        )
    return stats | {
        "ranker_day": ranker_day,
        "recall_champion": recall_champion,
        "why": why,
        "n_users": len(users),
        "catalog_items": ctx.items.height,
        "seconds": seconds,
    }
