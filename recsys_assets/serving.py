"""Loading what the ranking stage needs for a day from the lake and the model store, and the
funnel for a set of users: shared by the ranking assets (batch) and the `recsys` CLI
(online), so both build the same features and lists."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pyarrow as pa

from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking import funnel, ranker as ranker_lib
from recsys_assets.core.ranking.rerank import RerankRules
from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.storage import write_parquet_atomic
from recsys_assets.core.tables import connect
from resources import ModelStoreResource, RankingSettings, StorageResource

GENRE_WINDOW_DAYS = 28


class MissingInput(RuntimeError):
    """A required input partition or artifact is not there (the message says what to run)."""


def days_before(day: str, n: int) -> list[str]:
    end = date.fromisoformat(day)
    return [(end - timedelta(days=k)).isoformat() for k in range(n, 0, -1)]


def load_channels(model_store: ModelStoreResource, day: str, names) -> dict[str, F.Channel]:
    """The recall models of `day` that are published (checksums verified), by channel name."""
    out = {}
    for name in names:
        if model_store.exists(f"recall_{name}", day):
            manifest = model_store.verify(f"recall_{name}", day)
            model = recall_models.load_model(model_store.path(f"recall_{name}", day))
            out[name] = F.Channel(model, manifest["metadata"]["n_users"], manifest["metadata"]["n_items"])
    return out


def feature_context(storage: StorageResource, model_store: ModelStoreResource, day: str,
                    channel_names) -> F.FeatureContext:
    required = {"user_features": storage.partition_path("user_features", day),
                "item_features": storage.partition_path("item_features", day),
                "raw_users": storage.partition_path("raw_users"), "raw_items": storage.partition_path("raw_items"),
                "user_id_dictionary": storage.partition_path("user_id_dictionary"),
                "item_id_dictionary": storage.partition_path("item_id_dictionary")}
    missing = [f"{name} ({path})" for name, path in required.items() if not path.exists()]
    if missing:
        raise MissingInput(f"ranking features for {day} need {', '.join(missing)}; materialize them first")
    genre_window = storage.existing_partitions("user_genre_daily", days_before(day, GENRE_WINDOW_DAYS))
    return F.load_context(day, user_features=required["user_features"], item_features=required["item_features"],
                          genre_window=genre_window, users=required["raw_users"], items=required["raw_items"],
                          user_dictionary=required["user_id_dictionary"], item_dictionary=required["item_id_dictionary"],
                          channel_names=tuple(channel_names),
                          channels=load_channels(model_store, day, channel_names))


def load_ranker(model_store: ModelStoreResource, day: str) -> ranker_lib.Ranker:
    model_store.verify("ranker", day)  # checksums first: a corrupt file never loads
    return ranker_lib.load(model_store.path("ranker", day))


def rules(settings: RankingSettings) -> RerankRules:
    return RerankRules(mmr_lambda=settings.mmr_lambda, genre_cap=settings.genre_cap,
                       freshness_boost=settings.freshness_boost,
                       freshness_half_life_days=settings.freshness_half_life_days,
                       popularity_beta=settings.popularity_beta)


def read_candidates(storage: StorageResource, day: str, limit: int, users: np.ndarray | None = None) -> pl.DataFrame:
    """recall_candidates of `day` (RRF fusion), the first `limit` per user, with channel ranks."""
    path = storage.partition_path("recall_candidates", day)
    if not path.exists():
        raise MissingInput(f"recall_candidates is not materialized for {day} ({path})")
    frame = pl.read_parquet(path).filter((pl.col("method") == "rrf") & (pl.col("rank") <= limit))
    if users is not None:
        frame = frame.filter(pl.col("user_id").is_in(pl.Series(users, dtype=pl.Int64)))
    # channel ranks inside the candidate lists become in_<channel> (0 = absent), so they never
    # shadow the ranker's own full-catalog rank_<channel> features
    return frame.rename({"rank": "recall_rank", "score": "recall_score"} |
                        {c: "in_" + c.removeprefix("rank_") for c in frame.columns if c.startswith("rank_")}
                        ).drop("method", "day")


def write_frame(frame: pl.DataFrame | pa.Table, path, order_by: str | None = None) -> None:
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    con = connect()
    try:
        con.register("frame", table)
        write_parquet_atomic(con, "SELECT * FROM frame" + (f" ORDER BY {order_by}" if order_by else ""), path)
    finally:
        con.close()
