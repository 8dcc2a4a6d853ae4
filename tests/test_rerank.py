"""Each re-ranking rule does what it claims, on hand-made lists."""

import numpy as np
import pytest

from recsys_assets.core.ranking.rerank import (
    RerankRules,
    cap_per_genre,
    freshness_boost,
    genre_similarity,
    mmr,
    popularity_debias,
    remove_seen,
    rerank,
)

ITEMS = np.array([10, 11, 12, 13, 14])
SCORES = np.array([5.0, 4.0, 3.0, 2.0, 1.0])


def test_remove_seen_drops_exactly_the_watched_items():
    items, scores = remove_seen(ITEMS, SCORES, {11, 14, 99})
    assert items.tolist() == [10, 12, 13] and scores.tolist() == [5.0, 3.0, 2.0]


def test_freshness_boost_favours_new_items_and_halves_with_age():
    _, boosted = freshness_boost(ITEMS, SCORES, np.array([0, 7, 14, np.nan, 70]), boost=1.0, half_life_days=7)
    assert boosted.tolist() == pytest.approx([6.0, 4.5, 3.25, 2.0, 1.0 + 0.5**10])
    assert freshness_boost(ITEMS, SCORES, np.zeros(5), boost=0.0)[1] is SCORES


def test_popularity_debias_penalises_log_popularity():
    _, out = popularity_debias(ITEMS, SCORES, np.array([0, np.e - 1, 0, 0, 0]), beta=2.0)
    assert out.tolist() == pytest.approx([5.0, 2.0, 3.0, 2.0, 1.0])


def test_mmr_with_lambda_one_keeps_score_order_and_diversifies_below_one():
    sim = np.eye(4)
    sim[0, 1] = sim[1, 0] = 1.0  # items 0 and 1 are duplicates
    items, scores = np.array([0, 1, 2, 3]), np.array([1.0, 0.95, 0.5, 0.1])
    assert mmr(items, scores, sim, lam=1.0, k=4)[0].tolist() == [0, 1, 2, 3]
    picked, _ = mmr(items, scores, sim, lam=0.5, k=3)
    assert picked.tolist() == [0, 2, 3]  # the duplicate of the first pick falls to the end
    with pytest.raises(ValueError):
        mmr(items, scores, sim, lam=1.5, k=2)


def test_cap_per_genre_keeps_order_and_never_caps_items_without_genre():
    genre = np.array(["drama", "drama", None, "drama", "comedy"], dtype=object)
    items, _ = cap_per_genre(ITEMS, SCORES, genre, cap=2)
    assert items.tolist() == [10, 11, 12, 14]


def test_genre_similarity_is_cosine_and_zero_without_genres():
    sim = genre_similarity(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]]))
    assert sim[0, 1] == pytest.approx(1 / np.sqrt(2)) and sim[2].tolist() == [0, 0, 0]


def test_rerank_composes_the_rules():
    vectors = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]], dtype=float)
    genre = np.array(["a", "a", "a", "b", "b"], dtype=object)
    items, _ = rerank(
        ITEMS,
        SCORES,
        4,
        RerankRules(mmr_lambda=1.0, genre_cap=2),
        seen={10},
        genre_vectors=vectors,
        primary_genre=genre,
        age_days=np.zeros(5),
        popularity=np.zeros(5),
    )
    assert 10 not in items.tolist()  # watched: removed
    assert items.tolist() == [11, 12, 13, 14]  # score order kept, only two of genre "a"
    diverse, _ = rerank(
        ITEMS,
        SCORES,
        2,
        RerankRules(mmr_lambda=0.3, genre_cap=0),
        seen=set(),
        genre_vectors=vectors,
        primary_genre=genre,
        age_days=np.zeros(5),
        popularity=np.zeros(5),
    )
    assert diverse.tolist() == [10, 13]  # MMR jumps to the other genre


@pytest.mark.parametrize(
    "rules",
    [
        RerankRules(),
        RerankRules(mmr_lambda=1.0, genre_cap=0),
        RerankRules(mmr_lambda=0.3, genre_cap=2, freshness_boost=0.5, popularity_beta=0.2),
        RerankRules(mmr_lambda=0.0, genre_cap=1),
    ],
)
def test_rerank_batch_equals_rerank_row_by_row(rules):
    """The vectorised re-rank gives every user exactly what rerank() gives them alone: lists of
    different lengths (padding), watched items, items without genres, short lists below k."""
    from recsys_assets.core.ranking.rerank import rerank_batch

    rng = np.random.default_rng(5)
    n_users, width, n_genres, k = 60, 45, 6, 10
    lengths = rng.integers(0, width + 1, n_users)
    lengths[:3] = [0, 4, width]
    items = rng.integers(1000, 2000, (n_users, width))
    scores = rng.normal(size=(n_users, width))
    scores[7, :10] = 1.0  # ties keep list order
    vectors = (rng.random((n_users, width, n_genres)) < 0.3).astype(float)
    vectors[:, ::7] = 0  # items without genres
    primary = np.where(vectors.any(axis=2), vectors.argmax(axis=2), -1)
    age = np.where(rng.random((n_users, width)) < 0.2, np.nan, rng.uniform(0, 30, (n_users, width)))
    popularity = rng.integers(0, 500, (n_users, width)).astype(float)
    seen = rng.random((n_users, width)) < 0.15
    present = np.arange(width)[None, :] < lengths[:, None]
    batch_items, batch_scores = rerank_batch(
        items,
        scores,
        k,
        rules,
        valid=present & ~seen,
        genre_vectors=vectors,
        primary_genre=primary,
        age_days=age,
        popularity=popularity,
    )
    assert batch_items.shape == (n_users, k)
    genre_names = np.array([None] + [f"g{g}" for g in range(n_genres)], dtype=object)
    for u in range(n_users):
        n = lengths[u]
        # unique item ids per row so "seen" can be passed to rerank() by id
        row_items = np.arange(n) + 10_000 * (u + 1)
        expected_items, expected_scores = rerank(
            row_items,
            scores[u, :n],
            k,
            rules,
            seen=set(row_items[seen[u, :n]].tolist()),
            genre_vectors=vectors[u, :n],
            primary_genre=genre_names[primary[u, :n] + 1],
            age_days=age[u, :n],
            popularity=popularity[u, :n],
        )
        got = batch_items[u][batch_items[u] >= 0]
        expected_positions = (expected_items - 10_000 * (u + 1)).tolist()
        assert got.tolist() == items[u, expected_positions].tolist(), u
        np.testing.assert_allclose(batch_scores[u, : len(got)], expected_scores)
        assert np.isnan(batch_scores[u, len(got) :]).all()


def test_a_single_list_reranks_as_in_a_batch():
    """rerank_batch on one user's row (the server's request, its own MMR loop) gives exactly
    what the same row gets inside a batch: items and scores bit for bit, ties included."""
    from recsys_assets.core.ranking.rerank import rerank_batch

    rng = np.random.default_rng(9)
    for case in range(400):
        width, n_genres, k = int(rng.integers(1, 90)), int(rng.integers(1, 12)), int(rng.integers(1, 30))
        rules = RerankRules(
            mmr_lambda=float(rng.choice([0.0, 0.3, 0.8, 1.0])),
            genre_cap=int(rng.integers(0, 4)),
            freshness_boost=float(rng.choice([0.0, 0.2])),
            popularity_beta=float(rng.choice([0.0, 0.1])),
        )
        row = {
            "items": rng.permutation(5000)[:width],
            "scores": np.round(rng.random(width), int(rng.integers(1, 3))),  # ties
            "valid": rng.random(width) < 0.85,
            "genre_vectors": (rng.random((width, n_genres)) < rng.random()).astype(float),
            "primary_genre": rng.integers(-1, n_genres, width),
            "age_days": rng.uniform(0, 60, width),
            "popularity": rng.integers(0, 300, width).astype(float),
        }
        other = {name: rng.permutation(values) for name, values in row.items()}

        def run(rows, row=row, k=k, rules=rules):
            stacked = {name: np.stack([r[name] for r in rows]) for name in row}
            return rerank_batch(stacked.pop("items"), stacked.pop("scores"), k, rules, **stacked)

        alone_items, alone_scores = run([row])
        batch_items, batch_scores = run([row, other])
        assert np.array_equal(alone_items[0], batch_items[0]), case
        assert np.array_equal(alone_scores[0], batch_scores[0], equal_nan=True), case
