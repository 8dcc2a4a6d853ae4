"""The cold path (users without a history, batch and online): the day's recent_popularity list
when that model is published, the 7-day positives ranking of the item features otherwise;
available items only, minus what the user already watched."""

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_assets.core.ranking.features import Channel, FeatureContext
from recsys_assets.core.recall.base import TrainingData
from recsys_assets.core.recall.models import RecentPopularityModel
from recsys_assets.services.serving import popular_candidates

N_ITEMS = 6


def context(with_recent: bool) -> FeatureContext:
    # item ids 10..15 at indices 0..5; item 15 is not available on the day (not in the features)
    items = pl.DataFrame({"item_id": [10, 11, 12, 13, 14], "i_popularity_rank_7d": [1, 2, 3, 4, 5]})
    cold_start = None
    if with_recent:
        # recent positives on items 14 (index 4) and 15 (index 5), old ones on item 10 (index 0)
        rows, cols, ages = [0, 1, 2, 0, 1, 2], [0, 0, 0, 4, 4, 5], [40.0, 40.0, 40.0, 1.0, 2.0, 0.5]
        shape = (3, N_ITEMS)
        data = TrainingData(
            positives=sp.csr_matrix((np.ones(6, np.float32), (rows, cols)), shape=shape),
            shown_negatives=sp.csr_matrix(shape, dtype=np.float32),
            days_ago=sp.csr_matrix((np.array(ages, np.float32), (rows, cols)), shape=shape),
            item_genres=sp.csr_matrix((N_ITEMS, 0), dtype=np.float32),
            item_tags=sp.csr_matrix((N_ITEMS, 0), dtype=np.float32),
        )
        cold_start = Channel(RecentPopularityModel().fit(data), 3, N_ITEMS)
    return FeatureContext(
        day="2026-01-10",
        users=pl.DataFrame({"user_id": [1]}),
        items=items,
        user_genres=pl.DataFrame(),
        user_index=pl.DataFrame({"user_id": [1], "user_idx": [0]}),
        item_index=pl.DataFrame({"item_id": list(range(10, 16)), "item_idx": list(range(N_ITEMS))}),
        channel_names=("popularity",),
        cold_start=cold_start,
    )


def test_cold_users_get_recent_popularity_when_it_is_published():
    history = pl.DataFrame({"user_id": [7], "item_id": [14]}, schema={"user_id": pl.Int64, "item_id": pl.Int64})
    got = popular_candidates(context(with_recent=True), [7, 8], 3, history)
    lists = {u: g.sort("recall_rank")["item_id"].to_list() for (u,), g in got.group_by("user_id")}
    # 14: two positives of the last days; 10: three 40 days old; 15 is unavailable; 11-13 tie: by id
    assert lists == {7: [10, 11, 12], 8: [14, 10, 11]}
    assert "in_recent_popularity" in got.columns and "in_popularity" not in got.columns
    assert got.filter(pl.col("user_id") == 8)["in_recent_popularity"].to_list() == [1, 2, 3]


def test_without_it_the_seven_day_ranking_of_the_item_features():
    history = pl.DataFrame({"user_id": [7], "item_id": [10]}, schema={"user_id": pl.Int64, "item_id": pl.Int64})
    got = popular_candidates(context(with_recent=False), [7], 2, history)
    assert got.sort("recall_rank")["item_id"].to_list() == [11, 12] and "in_popularity" in got.columns
