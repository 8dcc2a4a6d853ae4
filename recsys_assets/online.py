"""Online path: one user through the same funnel as the batch `recommendations` asset.

Loads once (the day's recall models, the ranker if it was promoted, features, dictionaries),
then answers a user in milliseconds: candidates from every recall channel fused by RRF
(exactly as recall_candidates), ranked, re-ranked and explained by the same functions as
the batch path. Users active since the models were trained (positives on the serving day
itself) get a fresh ALS vector by fold-in, item factors frozen. Unknown users and users
without history take the cold-start path (popular items through the ranker) - never an error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_assets import serving
from recsys_assets.assets.ranking import serving_ranker_day
from recsys_assets.assets.recall import model_assets
from recsys_assets.core import fusion
from recsys_assets.core.recall.base import RecallModel
from resources import ModelStoreResource, RankingSettings, RecallSettings, StorageResource


class FoldedALS(RecallModel):
    """An ALS channel whose vectors for some users are replaced by fold-in vectors."""

    name = "als"

    def __init__(self, base, vectors: dict[int, np.ndarray]):
        super().__init__(**base.params)
        self.base, self.vectors = base, vectors
        self.item_factors = base.item_factors

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, np.int64)
        rows = np.stack([self.vectors[u] if u in self.vectors else self.base.user_factors[u] for u in users])
        return rows @ self.item_factors.T

    def arrays(self) -> dict[str, np.ndarray]:
        return self.base.arrays()


def latest_model_day(model_store: ModelStoreResource) -> str:
    days = sorted({day for name in model_assets for day in model_store.published_days(f"recall_{name}")})
    if not days:
        raise serving.MissingInput(
            f"no recall model is published under {model_store.root}; run the quickstart or "
            "materialize the recall assets first"
        )
    return days[-1]


@dataclass
class Answer:
    user_id: int
    path: str  # "known", "known+fold_in" or "cold_start"
    day: str
    stage: str
    table: pl.DataFrame
    timings_ms: dict


class OnlineRecommender:
    def __init__(
        self,
        storage: StorageResource,
        model_store: ModelStoreResource,
        ranking: RankingSettings,
        recall: RecallSettings,
        day: str | None = None,
    ):
        self.storage, self.ranking, self.recall = storage, ranking, recall
        self.day = day or latest_model_day(model_store)
        channel_names = list(dict.fromkeys([*ranking.channels, *model_assets]))
        self.ranker_day, self.why = serving_ranker_day(storage, self.day)
        self.model = serving.load_ranker(model_store, self.ranker_day) if self.ranker_day else None
        self.ctx = serving.feature_context(
            storage,
            model_store,
            self.day,
            self.model.channel_names if self.model else ranking.channels,
            recall,
            self.model.rank_depth if self.model else ranking.rank_depth,
        )
        # recall shares the ranker's loaded models (one copy in memory, one faiss index each)
        loaded = self.ctx.channels | serving.load_channels(
            model_store, self.day, [c for c in channel_names if c not in self.ctx.channels]
        )
        self.recall_channels = {c: loaded[c] for c in channel_names if c in loaded}
        self.ranges = {}
        for name in self.recall_channels:
            score_range = model_store.verify(f"recall_{name}", self.day)["metadata"].get("score_range") or {}
            if score_range:
                self.ranges[name] = (score_range["p01"], score_range["p99"])
        self.user_index = dict(
            zip(self.ctx.user_index["user_id"].to_list(), self.ctx.user_index["user_idx"].to_list(), strict=False)
        )
        self.item_of = np.full(int(self.ctx.item_index["item_idx"].max()) + 1, -1, np.int64)
        self.item_of[self.ctx.item_index["item_idx"].to_numpy()] = self.ctx.item_index["item_id"].to_numpy()
        self.idx_of = dict(
            zip(self.ctx.item_index["item_id"].to_list(), self.ctx.item_index["item_idx"].to_list(), strict=False)
        )
        available = set(self.ctx.items.filter("available")["item_id"].to_list())
        self.unavailable = np.array(sorted(idx for item, idx in self.idx_of.items() if item not in available), np.int64)
        # the window's positives plus the serving day's own (those are newer than the models)
        days = serving.days_before(self.day, recall.window_days) + [self.day]
        self.history = serving.user_history(storage, days)
        # recall never proposes what the user already had a positive signal on (clicks included)
        self.seen_signal = serving.user_history(storage, days, with_clicks=True)

    def _history(self, user_id: int) -> pl.DataFrame:
        return self.history.filter(pl.col("user_id") == user_id)

    def _candidates(self, user_id: int, history: pl.DataFrame) -> tuple[pl.DataFrame, str]:
        uidx = self.user_index.get(user_id)
        if uidx is None or history.height == 0:
            return serving.popular_candidates(self.ctx, [user_id], self.ranking.rank_candidates, history), "cold_start"
        n_items = len(self.item_of)
        seen = [self.idx_of[i] for i in history["item_id"].to_list() if i in self.idx_of]
        signal = self.seen_signal.filter(pl.col("user_id") == user_id)["item_id"].to_list()
        blocked = np.unique(
            np.concatenate(
                [np.asarray([self.idx_of[i] for i in signal if i in self.idx_of], np.int64), self.unavailable]
            )
        )
        path = "known"
        channels = dict(self.recall_channels)
        fresh = history.filter(pl.col("last_day") >= pl.lit(self.day).str.to_date())
        if fresh.height and "als" in channels:  # active since training: fold in, item factors frozen
            als = channels["als"]
            rows = (
                sp.csr_matrix(
                    (np.ones(len(seen), np.float32), (np.zeros(len(seen), np.int64), seen)), shape=(1, als.n_items)
                )
                if seen
                else sp.csr_matrix((1, als.n_items), dtype=np.float32)
            )
            vector = als.model.fold_in(rows[:, : als.n_items])[0]
            channels["als"] = serving.F.Channel(
                FoldedALS(als.model, {uidx: vector}), max(als.n_users, uidx + 1), als.n_items
            )
            self.ctx.channels = (
                {**self.ctx.channels, "als": channels["als"]} if "als" in self.ctx.channels else self.ctx.channels
            )
            path = "known+fold_in"
        tops = {}
        for name, channel in channels.items():
            if uidx >= channel.n_users:
                continue
            # recommend() reads the exclusion row of the user's own index
            exclude = sp.csr_matrix(
                (np.ones(len(blocked), np.float32), (np.full(len(blocked), uidx), blocked)), shape=(uidx + 1, n_items)
            )[:, : channel.n_items]
            items, scores = channel.model.recommend(np.array([uidx]), self.recall.candidates_k, exclude=exclude)
            tops[name] = (items, scores)
        if not tops:
            return serving.popular_candidates(self.ctx, [user_id], self.ranking.rank_candidates, history), "cold_start"
        items, scores = fusion.fuse(tops, n_items, self.recall.candidates_k, score_ranges=self.ranges)["rrf"]
        ranks = fusion.channel_ranks(tops, items)
        keep = (items[0] >= 0) & (np.arange(items.shape[1]) < self.ranking.rank_candidates)
        frame = pl.DataFrame(
            {
                "user_id": np.full(int(keep.sum()), user_id, np.int64),
                "item_id": self.item_of[items[0][keep]],
                "recall_rank": np.arange(1, int(keep.sum()) + 1, dtype=np.int64),
                "recall_score": scores[0][keep].astype(np.float64),
            }
            | {f"in_{c}": r[0][keep].astype(np.int32) for c, r in ranks.items()}
        )
        return frame, path

    def recommend(self, user_id: int, k: int = 10, explain: bool = False) -> Answer:
        base_channels = self.ctx.channels
        timings = {}
        try:
            started = time.perf_counter()
            history = self._history(user_id)
            candidates, path = self._candidates(user_id, history)
            timings["recall_ms"] = (time.perf_counter() - started) * 1000
            settings = self.ranking.model_copy(update={"top_k": k})
            table = serving.recommend_users(
                self.ctx, self.model, candidates, history, settings, explain=explain, timings=timings
            )
        finally:
            self.ctx.channels = base_channels  # a fold-in vector is per request
        timings["total_ms"] = sum(timings.values())
        return Answer(
            user_id=user_id,
            path=path,
            day=self.day,
            stage="ranker_rerank" if self.model is not None else "recall_rerank",
            table=table,
            timings_ms=timings,
        )
