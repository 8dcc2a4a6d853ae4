"""Labelled pairs for the ranker besides the shown impressions (sql/ranking_samples.sql).

candidate_groups(): the serving distribution. The ranker orders recall candidates at serving
time, most of which were never shown; a ranker trained only on shown slates learns to
separate items inside a slate (position, genre) and orders candidates worse than recall
itself (measured: NDCG@10 0.08 vs 0.15 on the default data). So each day also contributes,
for every user with a positive among that day's recall candidates, the candidate list as one
group labelled by what the user did that day.

sampled_negative_pairs(): sources without impressions (MovieLens-style ratings). With impressions, "shown but not chosen" is the negative (sql/ranking_samples.sql). Without
them, each positive of the day is grouped with `ratio` sampled negatives: a `hard_share` of
them from the user's recall candidates that were not positives (hard: plausible but not
chosen) and the rest uniformly from the available catalog (easy), never a positive of the
user on that day. Default ratio 1:9, as one seed did.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def sampled_negative_pairs(
    positives: pl.DataFrame,
    candidates: pl.DataFrame,
    catalog: np.ndarray,
    day: str,
    ratio: int = 9,
    hard_share: float = 0.5,
    seed: int = 0,
) -> pl.DataFrame:
    """positives: (user_id, item_id) of the day; candidates: (user_id, item_id) recall
    candidates; catalog: item ids that may be sampled. Returns rows shaped like
    sql/ranking_samples.sql (request_id = user and day, position/surface/device null)."""
    if not 0.0 <= hard_share <= 1.0:
        raise ValueError(f"hard_share must be in [0, 1], got {hard_share}")
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1, got {ratio}")
    rng = np.random.default_rng(seed)
    catalog = np.unique(np.asarray(catalog, np.int64))
    pos = (
        positives.select(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64))
        .unique()
        .sort("user_id", "item_id")
    )
    cand = candidates.select(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64))
    hard_pool = cand.join(pos, on=["user_id", "item_id"], how="anti")
    hard_by_user = {u: g["item_id"].to_numpy() for (u,), g in hard_pool.group_by("user_id", maintain_order=True)}
    rows_user, rows_item, rows_label = [], [], []
    for (user,), group in pos.group_by("user_id", maintain_order=True):
        chosen = group["item_id"].to_numpy()
        n_neg = ratio * len(chosen)
        hard = hard_by_user.get(user, np.zeros(0, np.int64))
        n_hard = min(int(round(hard_share * n_neg)), len(hard))
        picked_hard = rng.choice(hard, size=n_hard, replace=False) if n_hard else np.zeros(0, np.int64)
        excluded = np.concatenate([chosen, picked_hard])
        pool = catalog[~np.isin(catalog, excluded)]
        n_easy = min(n_neg - n_hard, len(pool))
        picked_easy = rng.choice(pool, size=n_easy, replace=False) if n_easy else np.zeros(0, np.int64)
        items = np.concatenate([chosen, picked_hard, picked_easy])
        rows_user.append(np.full(len(items), user, np.int64))
        rows_item.append(items)
        rows_label.append(np.concatenate([np.full(len(chosen), 2), np.zeros(n_hard + n_easy, np.int64)]))
    if not rows_user:
        return _empty()
    user = np.concatenate(rows_user)
    label = np.concatenate(rows_label)
    return pl.DataFrame(
        {
            "request_id": [f"{u}@{day}" for u in user],
            "user_id": user,
            "item_id": np.concatenate(rows_item),
            "position": pl.Series([None] * len(user), dtype=pl.Int64),
            "surface": pl.Series([None] * len(user), dtype=pl.String),
            "device_type": pl.Series([None] * len(user), dtype=pl.String),
            "clicked": label > 0,
            "is_positive": label > 0,
            "label": label.astype(np.int32),
        }
    )


def candidate_groups(
    candidates: pl.DataFrame, day_interactions: pl.DataFrame, day: str, surface: str | None
) -> pl.DataFrame:
    """candidates: (user_id, item_id, ...) recall candidates of `day`; day_interactions:
    (user_id, item_id, is_positive, clicked) of the same day. One group per user with at
    least one clicked or positive candidate; label 2 = positive, 1 = clicked, 0 = neither.
    Rows are in the serving context (surface = the serving surface, no position/device)."""
    labels = day_interactions.group_by("user_id", "item_id").agg(pl.col("is_positive").any(), pl.col("clicked").any())
    rows = (
        candidates.select(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64))
        .join(labels, on=["user_id", "item_id"], how="left")
        .with_columns(pl.col("is_positive").fill_null(False), pl.col("clicked").fill_null(False))
    )
    rows = rows.with_columns(
        pl.when(pl.col("is_positive"))
        .then(2)
        .when(pl.col("clicked"))
        .then(1)
        .otherwise(0)
        .cast(pl.Int32)
        .alias("label")
    )
    useful = rows.group_by("user_id").agg((pl.col("label").max() > 0).alias("ok")).filter("ok").select("user_id")
    rows = rows.join(useful, on="user_id", how="semi").sort("user_id", "item_id")
    return rows.select(
        (pl.col("user_id").cast(pl.String) + f"@{day}").alias("request_id"),
        "user_id",
        "item_id",
        pl.lit(None, pl.Int64).alias("position"),
        pl.lit(surface, pl.String).alias("surface"),
        pl.lit(None, pl.String).alias("device_type"),
        "clicked",
        "is_positive",
        "label",
    )


def _empty() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "request_id": pl.String,
            "user_id": pl.Int64,
            "item_id": pl.Int64,
            "position": pl.Int64,
            "surface": pl.String,
            "device_type": pl.String,
            "clicked": pl.Boolean,
            "is_positive": pl.Boolean,
            "label": pl.Int32,
        }
    )


def sample_users(user_ids: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most `limit` of the distinct `user_ids`: those with the smallest seeded multiplicative
    hash of the id (not the first ones, which would favour old accounts), the same whatever order
    the ids come in; sorted. limit None keeps everyone."""
    users = np.unique(np.asarray(user_ids, dtype=np.int64))
    if limit is None or users.size <= limit:
        return users
    z = users.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)  # splitmix64 finaliser
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return np.sort(users[np.argsort(z, kind="stable")[:limit]])
