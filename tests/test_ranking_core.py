"""Ranking building blocks without Dagster: sampled negatives, slate metrics, AUC/LogLoss,
and a deterministic LightGBM ranker that round-trips through its text format."""

import json

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from recsys_assets.core.hashing import build_hash_dictionary
from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking import funnel, samples
from recsys_assets.core.ranking import ranker as ranker_lib


def test_sampled_negatives_ratio_hard_share_and_no_positive_as_negative():
    positives = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 10]})
    candidates = pl.DataFrame({"user_id": [1] * 6 + [2] * 6, "item_id": [10, 11, 12, 13, 14, 15] * 2})
    catalog = np.arange(10, 60)
    out = samples.sampled_negative_pairs(positives, candidates, catalog, "2026-01-05", ratio=4, hard_share=0.5, seed=3)
    assert out.filter(pl.col("label") > 0).height == 3
    for user, n_pos in ((1, 2), (2, 1)):
        rows = out.filter(pl.col("user_id") == user)
        negatives = rows.filter(pl.col("label") == 0)["item_id"].to_list()
        assert len(negatives) == 4 * n_pos and len(set(negatives)) == len(negatives)
        assert not set(negatives) & set(positives.filter(pl.col("user_id") == user)["item_id"].to_list())
        hard = [i for i in negatives if i in (12, 13, 14, 15)]
        assert len(hard) >= min(2 * n_pos, 4)  # half the negatives from the candidates (capped by the pool)
        assert rows["request_id"].unique().to_list() == [f"{user}@2026-01-05"]
    again = samples.sampled_negative_pairs(
        positives, candidates, catalog, "2026-01-05", ratio=4, hard_share=0.5, seed=3
    )
    assert again.equals(out)
    with pytest.raises(ValueError):
        samples.sampled_negative_pairs(positives, candidates, catalog, "d", hard_share=2.0)


def test_candidate_groups_label_what_the_user_did_and_drop_users_without_signal():
    candidates = pl.DataFrame({"user_id": [1, 1, 1, 2, 2], "item_id": [10, 11, 12, 10, 11]})
    day = pl.DataFrame(
        {
            "user_id": [1, 1, 2],
            "item_id": [11, 12, 30],
            "is_positive": [True, False, True],
            "clicked": [True, True, False],
        }
    )
    out = samples.candidate_groups(candidates, day, "2026-01-05", "home")
    assert out["user_id"].unique().to_list() == [1]  # user 2's positive was not a candidate
    assert dict(zip(out["item_id"].to_list(), out["label"].to_list(), strict=False)) == {10: 0, 11: 2, 12: 1}
    assert out["surface"].unique().to_list() == ["home"] and out["position"].null_count() == 3


def test_slate_metrics_auc_logloss_by_hand():
    frame = pl.DataFrame(
        {
            "request_id": ["a"] * 3 + ["b"] * 3 + ["c"] * 2,
            "label": [0, 2, 0, 1, 0, 0, 0, 0],
            "s": [3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 1.0, 2.0],
        }
    )
    out = funnel.slate_metrics(frame, {"s": "s"}, k=10)["s"]
    assert out["mrr"].tolist() == pytest.approx([1 / 2, 1 / 3])  # request c has no chosen item: left out
    assert out["ndcg"].tolist() == pytest.approx([(3 / np.log2(3)) / 3, (1 / np.log2(4)) / 1])
    assert funnel.auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.4, 0.4])) == pytest.approx(0.875)
    assert funnel.logloss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))


def _synthetic_rows(n_requests: int, seed: int) -> pl.DataFrame:
    """Shown slates where the chosen item is the one closest to the user's taste (genre share)."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_requests):
        share = rng.random(8)
        best = int(np.argmax(share + rng.normal(0, 0.1, 8)))
        for pos in range(8):
            label = 2 if pos == best else (1 if rng.random() < 0.05 else 0)
            rows.append(
                {
                    "request_id": f"r{seed}-{r:05d}",
                    "user_id": r % 50,
                    "item_id": pos + 8 * (r % 7),
                    "position": pos,
                    "surface": "home",
                    "device_type": "tv",
                    "clicked": label > 0,
                    "is_positive": label == 2,
                    "label": label,
                    "kind": "impressions",
                    "genre_share_sum": share[pos],
                    "country": "DE",
                    "ui_language": "de",
                    "item_genre": "drama",
                }
            )
    frame = pl.DataFrame(rows)
    for col in F.numeric_features(("als",)):
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(rng.random(), pl.Float32).alias(col))
    return frame


def _dictionary() -> pa.Table:
    counts = pa.table(
        {
            "field": ["surface", "device_type", "country", "genres"],
            "value": ["home", "tv", "DE", "drama"],
            "count": [100, 100, 100, 100],
        }
    )
    return build_hash_dictionary(counts, None, n_buckets=64, min_count=1)


def test_ranker_learns_is_deterministic_and_round_trips(tmp_path):
    train, valid = _synthetic_rows(400, 1), _synthetic_rows(150, 2)
    kwargs = dict(params={"min_data_in_leaf": 20}, num_boost_round=60, early_stopping_rounds=10, seed=7)
    model = ranker_lib.train(train, valid, _dictionary(), ("als",), **kwargs)
    again = ranker_lib.train(train, valid, _dictionary(), ("als",), **kwargs)
    assert model.lambdarank.model_to_string() == again.lambdarank.model_to_string()
    test = _synthetic_rows(100, 3).with_columns(pl.Series("s", np.zeros(800)))
    scored = test.with_columns(
        pl.Series("ranker", model.score(test)), (-pl.col("position").cast(pl.Float64)).alias("shown")
    )
    per = funnel.slate_metrics(scored, {"ranker": "ranker", "shown": "shown"})
    assert per["ranker"]["mrr"].mean() > per["shown"]["mrr"].mean() + 0.3  # it learned the taste signal

    ranker_lib.save(model, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {
        "lambdarank.txt",
        "ctr_binary.txt",
        "ranker.json",
        "hash_dictionary.parquet",
    }
    assert (tmp_path / "lambdarank.txt").read_text().startswith("tree")  # LightGBM's own text format
    loaded = ranker_lib.load(tmp_path)
    np.testing.assert_allclose(loaded.score(test), model.score(test), rtol=1e-6)
    importance = ranker_lib.feature_importance(model)
    top = importance.filter(pl.col("model") == "lambdarank").row(0, named=True)
    assert top["feature"] == "genre_share_sum" and importance["gain_share"].min() >= 0

    meta = json.loads((tmp_path / "ranker.json").read_text())
    meta["dictionary_version"] = "something-else"
    (tmp_path / "ranker.json").write_text(json.dumps(meta))
    with pytest.raises(ranker_lib.RankerMismatchError, match="hash_dictionary.parquet"):
        ranker_lib.load(tmp_path)


def test_split_requests_keeps_requests_whole_and_is_seeded():
    rows = _synthetic_rows(200, 4)
    train, valid = ranker_lib.split_requests(rows, 0.25, seed=1)
    assert train.height + valid.height == rows.height
    assert not set(train["request_id"]) & set(valid["request_id"])
    assert 0.1 < valid["request_id"].n_unique() / rows["request_id"].n_unique() < 0.4
    assert ranker_lib.split_requests(rows, 0.25, seed=1)[1].equals(valid)
    with pytest.raises(ValueError):
        ranker_lib.split_requests(rows, 1.0)


def test_informative_requests_count_requests_a_ranker_can_learn_from():
    rows = pl.DataFrame({"request_id": ["a", "a", "b", "b", "c"], "label": [2, 0, 0, 0, 1]})
    assert ranker_lib.informative_requests(rows) == 1  # only "a" has a chosen and a not-chosen item
    assert ranker_lib.informative_requests(rows.clear()) == 0  # an empty day


def test_sample_users_is_a_seeded_subset_independent_of_order():
    from recsys_assets.core.ranking.samples import sample_users

    ids = np.arange(1, 10_001, dtype=np.int64)
    picked = sample_users(np.repeat(ids, 3), 500, seed=42)  # duplicates count once
    assert len(picked) == 500 and np.all(np.diff(picked) > 0) and np.isin(picked, ids).all()
    shuffled = np.random.default_rng(0).permutation(ids)
    assert np.array_equal(sample_users(shuffled, 500, seed=42), picked)
    assert not np.array_equal(sample_users(ids, 500, seed=7), picked)  # the seed matters
    assert picked.max() > 9_000 and picked.min() < 1_000  # spread over the id range, not the first 500
    assert np.array_equal(sample_users(ids[:300], 500, seed=42), ids[:300])  # fewer than the limit: everyone
    assert np.array_equal(sample_users(ids, None, seed=42), ids)


def _genre_context(user_genres: pl.DataFrame) -> F.FeatureContext:
    items = pl.DataFrame(
        {
            "item_id": [10, 11, 12, 13],
            "genres": [["drama", "comedy"], ["comedy"], None, ["horror", None, "drama"]],
        }
    )
    users = pl.DataFrame({"user_id": [1, 2, 3], "top_genre": ["comedy", None, "western"]})
    empty = pl.DataFrame({"user_id": [], "user_idx": []})
    return F.FeatureContext(
        day="2026-01-08",
        users=users,
        items=items,
        user_genres=user_genres,
        user_index=empty,
        item_index=pl.DataFrame({"item_id": [], "item_idx": []}),
        channel_names=(),
    )


def test_genre_crosses_by_lookup_equal_the_join():
    user_genres = pl.DataFrame(
        {
            "user_id": [1, 1, 2, 3],
            "genre": ["comedy", "drama", "horror", "drama"],
            "positives": [3.0, 1.0, 2.0, 0.0],
            "clicks": [5.0, 0.0, 1.0, 4.0],
            "share": [0.6, 0.4, 1.0, 0.0],
        }
    )
    ctx = _genre_context(user_genres)
    # every item with every user, plus an unknown user (9) and an unknown item (99)
    pairs = pl.DataFrame({"user_id": [1, 2, 3, 9] * 5, "item_id": [10] * 4 + [11] * 4 + [12] * 4 + [13] * 4 + [99] * 4})
    frame = (
        pairs.with_row_index("__row")
        .join(ctx.users, on="user_id", how="left")
        .join(ctx.items, on="item_id", how="left")
        .sort("__row")
    )
    looked_up = F._genre_crosses(ctx, frame)
    joined = F._genre_crosses_by_join(ctx, frame, pl.lit(True))
    assert looked_up is not None
    for name, values in looked_up.items():
        np.testing.assert_array_equal(values.astype(np.float32), joined[name].cast(pl.Float32).to_numpy(), err_msg=name)
    by_row = dict(zip(zip(pairs["user_id"], pairs["item_id"], strict=True), range(pairs.height), strict=True))
    row = by_row[(1, 10)]  # drama + comedy against user 1's history
    assert looked_up["genre_share_sum"][row] == pytest.approx(1.0)
    assert looked_up["genre_share_max"][row] == pytest.approx(0.6)
    assert looked_up["genre_positives"][row] == 4.0 and looked_up["top_genre_match"][row] == 1.0
    assert looked_up["genre_clicks"][by_row[(2, 13)]] == 1.0  # the null genre in 13's list is skipped
    assert looked_up["top_genre_match"][by_row[(3, 10)]] == 0.0
    assert all(looked_up[name][by_row[(9, 10)]] == 0.0 for name in looked_up)


def test_genre_crosses_with_repeated_user_genre_rows_fall_back_to_the_join():
    repeated = pl.DataFrame(
        {
            "user_id": [1, 1],
            "genre": ["comedy", "comedy"],
            "positives": [1.0, 2.0],
            "clicks": [0.0, 0.0],
            "share": [0.5, 0.5],
        }
    )
    ctx = _genre_context(repeated)
    frame = (
        pl.DataFrame({"user_id": [1], "item_id": [11]})
        .with_row_index("__row")
        .join(ctx.users, on="user_id", how="left")
        .join(ctx.items, on="item_id", how="left")
    )
    assert F._genre_crosses(ctx, frame) is None
    # the join counts both rows
    assert F._genre_crosses_by_join(ctx, frame, pl.lit(True))["genre_positives"].to_list() == [3.0]


def test_pair_index_matches_whole_pairs_of_ids_of_any_size():
    big = 2**62
    users = np.array([1, 1, 2, big, big, 3])
    items = np.array([10, 11, 10, 7, big, 10])
    other_users, other_items = np.array([1, 2, big, 9, big]), np.array([11, 11, big, 10, big])
    # (2, 10) is absent although user 2 and item 10 each appear in another pair; a repeated
    # pair gives its first position
    for join_rows in (10**9, 0):  # sorted arrays (a request) and the hash join (a batch)
        found = funnel.pair_index(users, items, other_users, other_items, join_rows=join_rows)
        assert found.tolist() == [-1, 0, -1, -1, 2, -1]
        none = np.zeros(0, np.int64)
        assert (funnel.pair_index(users, items, none, none, join_rows=join_rows) == -1).all()


def test_proposing_channels_name_the_lists_that_held_each_pair():
    from recsys_assets.services.serving import proposing_channels

    candidates = pl.DataFrame(
        {"user_id": [1, 1, 2], "item_id": [10, 11, 10], "in_als": [3, 0, None], "in_ease": [1, 2, 5]}
    )
    out = pl.DataFrame({"user_id": [2, 1, 1, 3], "item_id": [10, 11, 10, 10]})
    assert proposing_channels(candidates, out).to_list() == [["ease"], ["ease"], ["als", "ease"], None]
    bare = candidates.select("user_id", "item_id")
    assert proposing_channels(bare, out).to_list() == [[], [], [], None]
