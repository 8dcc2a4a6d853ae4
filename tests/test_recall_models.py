"""Recall models on a small synthetic catalog with real structure (4 latent genres).

Users like items of their own genre (popularity-skewed within the genre) plus a little
noise; they were shown, and skipped, items of other genres. One positive per user is held
out; every personalised model must find it clearly more often than popularity does.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.core.recall.ann import ann_search, build_ann_index, load_index, recall_vs_exact, save_index
from recsys_assets.core.recall.base import TrainingData
from recsys_assets.core.recall.models import (
    MODELS,
    SESSION_CUTOFF_TAUS,
    ALSModel,
    BPRModel,
    ContentColdStartModel,
    EASEModel,
    ImpressionBPRModel,
    ItemCFModel,
    PopularityModel,
    load_model,
    session_gram,
)

N_USERS, N_ITEMS, N_GENRES, N_TAGS = 300, 200, 4, 8
K = 10

# small but faithful settings (fast enough for the < 60 s budget); the platform's defaults are
# tuned for larger data (tests/test_recall_model_contract.py checks them)
FAST_PARAMS = {
    "popularity": {"half_life_days": None},
    "recent_popularity": {"half_life_days": 7.0},
    "item_cf": {"neighbours": 30, "shrinkage": 5.0, "half_life_days": 30.0},
    "als": {"factors": 16, "regularization": 0.05, "iterations": 10, "alpha": 10.0, "num_threads": 1},
    "bpr": {"factors": 16, "learning_rate": 0.05, "iterations": 60, "num_threads": 1},
    "bpr_impressions": {"factors": 16, "epochs": 30, "batch_size": 512},
    "bpr_uniform": {"factors": 16, "epochs": 30, "batch_size": 512},
    "ease": {"lambda_": 50.0},
    "content": {},
}


def _synthetic(seed: int = 7):
    rng = np.random.default_rng(seed)
    item_genre = np.arange(N_ITEMS) % N_GENRES
    item_tag = item_genre * 2 + (np.arange(N_ITEMS) // N_GENRES) % 2  # 2 sub-genres per genre
    user_genre = rng.integers(0, N_GENRES, N_USERS)
    # popularity skew inside each genre
    pop = 1.0 / (rng.permutation(N_ITEMS) % (N_ITEMS // N_GENRES) + 3.0) ** 0.9
    rows, cols = [], []
    for u in range(N_USERS):
        own = np.flatnonzero(item_genre == user_genre[u])
        n_pos = int(rng.integers(8, 20))
        liked = rng.choice(own, size=n_pos, replace=False, p=pop[own] / pop[own].sum())
        noise = rng.choice(N_ITEMS, size=int(rng.integers(0, 3)), replace=False)
        items = np.unique(np.concatenate([liked, noise]))
        rows += [u] * len(items)
        cols += list(items)
    rows, cols = np.array(rows), np.array(cols)
    signal = rng.uniform(0.3, 1.0, len(rows)).astype(np.float32)
    ages = rng.uniform(0, 30, len(rows)).astype(np.float32)
    ages[rng.random(len(rows)) < 0.1] = 0.0  # "last training day": implicit zeros in days_ago

    # hold out one positive per user
    order = rng.permutation(len(rows))
    _, first = np.unique(rows[order], return_index=True)
    held = order[first]
    held_items = np.full(N_USERS, -1)
    held_items[rows[held]] = cols[held]
    train = np.ones(len(rows), bool)
    train[held] = False

    shape = (N_USERS, N_ITEMS)
    positives = sp.csr_matrix((signal[train], (rows[train], cols[train])), shape=shape)
    days = sp.csr_matrix((ages[train], (rows[train], cols[train])), shape=shape)
    days.eliminate_zeros()
    s_rows, s_cols = [], []
    for u in range(N_USERS):
        other = np.flatnonzero(item_genre != user_genre[u])
        shown = rng.choice(other, size=12, replace=False)
        s_rows += [u] * len(shown)
        s_cols += list(shown)
    shown = sp.csr_matrix((np.ones(len(s_rows), np.float32), (s_rows, s_cols)), shape=shape)
    genres = sp.csr_matrix((np.ones(N_ITEMS, np.float32), (np.arange(N_ITEMS), item_genre)), shape=(N_ITEMS, N_GENRES))
    tags = sp.csr_matrix((np.ones(N_ITEMS, np.float32), (np.arange(N_ITEMS), item_tag)), shape=(N_ITEMS, N_TAGS))
    data = TrainingData(
        positives=positives,
        shown_negatives=shown,
        days_ago=days,
        item_genres=genres,
        item_tags=tags,
        genre_names=[f"g{g}" for g in range(N_GENRES)],
    )
    return data, held_items, user_genre, item_genre


@pytest.fixture(scope="module")
def world():
    return _synthetic()


@pytest.fixture(scope="module")
def fitted(world):
    data = world[0]
    return {name: MODELS[name](**FAST_PARAMS[name]).fit(data, seed=3) for name in MODELS}


def _hit_rate(model, data, held) -> float:
    users = np.arange(N_USERS)
    items, _ = model.recommend(users, K, exclude=data.positives)
    return float(np.mean((items == held[:, None]).any(axis=1)))


def test_registry_covers_every_model():
    assert set(MODELS) == {
        "popularity",
        "recent_popularity",
        "item_cf",
        "als",
        "bpr",
        "bpr_uniform",
        "bpr_impressions",
        "ease",
        "content",
    }
    for name, cls in MODELS.items():
        assert cls.name == name


def test_popularity_beats_random(world, fitted):
    data, held, _, _ = world
    hr = _hit_rate(fitted["popularity"], data, held)
    # random recommendation of K unseen items: expected hit rate K / (#unseen items)
    unseen = N_ITEMS - np.diff(data.positives.indptr)
    random_hr = float(np.mean(K / unseen))
    assert hr > 1.5 * random_hr, (hr, random_hr)


# the margins leave room for seeds/BLAS differences but require learning the genre structure
@pytest.mark.parametrize(
    "name, margin",
    [
        ("als", 0.2),
        ("bpr", 0.2),
        ("bpr_uniform", 0.2),
        ("bpr_impressions", 0.2),
        ("item_cf", 0.2),
        ("ease", 0.2),
        ("content", 0.1),
    ],
)
def test_personalised_models_beat_popularity(world, fitted, name, margin):
    data, held, _, _ = world
    pop_hr = _hit_rate(fitted["popularity"], data, held)
    hr = _hit_rate(fitted[name], data, held)
    assert hr >= pop_hr + margin, f"{name}: hit rate {hr:.3f} vs popularity {pop_hr:.3f}"


def test_recommend_excludes_training_positives(world, fitted):
    data = world[0]
    users = np.arange(N_USERS)
    for name, model in fitted.items():
        items, scores = model.recommend(users, K, exclude=data.positives)
        seen = data.positives[users[:, None].repeat(K, 1).ravel(), items.ravel()]
        assert np.asarray(seen).ravel().max() == 0, name
        assert np.isfinite(scores).all(), name
        assert (np.diff(scores, axis=1) <= 0).all(), name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_round_trip(world, fitted, name, tmp_path):
    model = fitted[name]
    model.save(tmp_path / name)
    for path in (tmp_path / name).glob("*.npy"):
        np.load(path, allow_pickle=False)  # raises if anything needed pickling
    loaded = load_model(tmp_path / name)
    assert type(loaded) is type(model) and loaded.params == model.params
    users = np.arange(0, N_USERS, 7)
    got, want = loaded.score(users), model.score(users)
    assert got.dtype == np.float32 and got.shape == (len(users), N_ITEMS)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError):
        PopularityModel.load(tmp_path / name) if name != "popularity" else EASEModel.load(tmp_path / name)


@pytest.mark.parametrize("name", ["popularity", "item_cf", "ease", "content", "bpr_impressions", "als", "bpr"])
def test_same_seed_same_scores(world, name):
    data = world[0]
    params = FAST_PARAMS[name]  # ALS and BPR with num_threads=1
    a = MODELS[name](**params).fit(data, seed=11).score(np.arange(N_USERS))
    b = MODELS[name](**params).fit(data, seed=11).score(np.arange(N_USERS))
    np.testing.assert_array_equal(a, b)


def test_seed_matters_for_stochastic_models(world):
    data = world[0]
    for name in ("als", "bpr_impressions"):
        a = MODELS[name](**FAST_PARAMS[name]).fit(data, seed=1).score(np.arange(5))
        b = MODELS[name](**FAST_PARAMS[name]).fit(data, seed=2).score(np.arange(5))
        assert not np.array_equal(a, b), name


def test_popularity_time_decay(world):
    data = world[0]
    plain = PopularityModel(half_life_days=None).fit(data).score(np.array([0]))[0]
    expected = np.asarray(data.positives.sum(axis=0)).ravel()
    np.testing.assert_allclose(plain, expected, rtol=1e-5)
    decayed = PopularityModel(half_life_days=7.0).fit(data).score(np.array([0, 1]))
    np.testing.assert_array_equal(decayed[0], decayed[1])
    # by hand: 0.5 ** (age / 7), age 0 where days_ago stores nothing
    coo = data.positives.tocoo()
    ages = np.asarray(data.days_ago[coo.row, coo.col]).ravel()
    by_hand = np.bincount(coo.col, weights=coo.data * 0.5 ** (ages / 7.0), minlength=N_ITEMS)
    np.testing.assert_allclose(decayed[0], by_hand, rtol=1e-5)
    assert (decayed[0] <= plain + 1e-6).all()


def test_recent_popularity_counts_each_positive_once_weighted_by_its_age(world):
    """score(i) = Σ 0.5 ** (age / half_life) over i's positives, whatever their signal value: an
    item chosen by fewer users lately outranks one chosen by more users long ago."""
    from recsys_assets.core.recall.models import RecentPopularityModel

    data = world[0]
    got = RecentPopularityModel(half_life_days=3.0).fit(data).score(np.array([0, 5]))
    np.testing.assert_array_equal(got[0], got[1])
    coo = data.positives.tocoo()
    ages = np.asarray(data.days_ago[coo.row, coo.col]).ravel()
    np.testing.assert_allclose(got[0], np.bincount(coo.col, weights=0.5 ** (ages / 3.0), minlength=N_ITEMS), rtol=1e-5)
    # two old positives (30 days) against one new one (0 days): the new one wins at a week's half-life
    positives = sp.csr_matrix(([0.3, 0.3, 1.0], ([0, 1, 2], [0, 0, 1])), shape=(3, 2), dtype=np.float32)
    days_ago = sp.csr_matrix(([30.0, 30.0, 1e-3], ([0, 1, 2], [0, 0, 1])), shape=(3, 2), dtype=np.float32)
    tiny = TrainingData(positives, sp.csr_matrix((3, 2)), days_ago, sp.csr_matrix((2, 0)), sp.csr_matrix((2, 0)))
    items, _ = RecentPopularityModel().fit(tiny).recommend(np.array([0]), 2)
    assert items[0].tolist() == [1, 0]
    with pytest.raises(ValueError):
        RecentPopularityModel(half_life_days=0)


def test_item_cf_similarity_is_sparse_and_pruned(world):
    data = world[0]
    k = 15
    model = ItemCFModel(neighbours=k, shrinkage=5.0, half_life_days=None, block_items=64).fit(data)  # several blocks
    sim = model.sim
    assert sp.issparse(sim) and sim.shape == (N_ITEMS, N_ITEMS)
    assert np.diff(sim.indptr).max() <= k
    assert sim.diagonal().max() == 0
    # the kept neighbours are the top-k cosine-with-shrinkage values (checked densely here only)
    x = (data.positives > 0).astype(np.float64).toarray()
    co = x.T @ x
    n = np.diag(co).copy()
    full = co / (np.sqrt(np.outer(n, n)) + 5.0)
    np.fill_diagonal(full, 0.0)
    for i in (0, 57, 199):
        row = sim.getrow(i)
        np.testing.assert_allclose(row.data, full[i, row.indices], rtol=1e-5)
        assert row.data.min() >= np.sort(full[i])[-k] - 1e-6
    # unpruned scores equal the dense user-row @ sim
    np.testing.assert_allclose(model.score(np.array([3])), x[[3]] @ sim.toarray(), rtol=1e-5)


def test_ease_fits_the_head_of_a_large_catalog(world):
    """Above max_items seen items EASE fits the most popular ones only; the rest are never listed."""
    data = world[0]
    users_per_item = np.diff(data.positives.tocsc().indptr)
    head = EASEModel(max_items=50).fit(data)
    assert len(head.items) == 50 and set(head.items) == set(np.argsort(-users_per_item, kind="stable")[:50])
    listed = head.recommend(np.arange(20), 10)[0]
    assert set(listed[listed >= 0].ravel()) <= set(head.items)
    model = EASEModel(lambda_=50.0).fit(data)
    assert np.abs(np.diag(model.weights)).max() == 0


def _sparse_catalog(n_users: int, n_items: int, n_pairs: int, seed: int, with_times: bool = False) -> TrainingData:
    """A catalog far larger than what its few training pairs touch (a sparse MovieLens day)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n_users, n_pairs)
    cols = rng.choice(n_items, size=n_pairs // 2, replace=False)[rng.integers(0, n_pairs // 2, n_pairs)]
    positives = sp.csr_matrix((np.ones(n_pairs, np.float32), (rows, cols)), shape=(n_users, n_items))
    positives.data[:] = 1.0  # duplicates summed: binary again
    pattern = positives.copy()
    pattern.data = rng.uniform(1, 30 * 86400, pattern.nnz).astype(np.float32)
    empty = sp.csr_matrix((n_users, n_items), dtype=np.float32)
    no_content = sp.csr_matrix((n_items, 0), dtype=np.float32)
    return TrainingData(positives, empty, empty, no_content, no_content, seconds_ago=pattern if with_times else None)


def _full_catalog_ease(data: TrainingData, lambda_: float, session_weight: float = 0.0, tau: float = 600.0):
    """EASE's B over every catalog item, as it was computed before only seen items were fitted."""
    x = (data.positives > 0).astype(np.float64).toarray()
    gram = x.T @ x
    if session_weight:
        session_gram(data.seconds_ago, tau, data.n_items, out=gram, weight=session_weight)
    gram[np.diag_indices(data.n_items)] += lambda_
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices(data.n_items)] = 0.0
    return b


@pytest.mark.parametrize("session_weight", [0.0, 2.0])
def test_ease_on_seen_items_scores_as_the_full_catalog_fit(session_weight):
    """An unseen item's row and column of the Gram matrix are λ on the diagonal alone, so
    fitting the seen items only changes no score: unseen items score 0 either way."""
    data = _sparse_catalog(n_users=120, n_items=900, n_pairs=700, seed=3, with_times=True)
    model = EASEModel(lambda_=50.0, session_weight=session_weight, session_tau_seconds=3600.0).fit(data)
    seen = np.flatnonzero(np.asarray((data.positives > 0).sum(axis=0)).ravel())
    assert 0 < len(seen) < 400 and model.items.tolist() == seen.tolist()
    assert model.weights.shape == (len(seen), len(seen))
    users = np.arange(data.n_users)
    full = _full_catalog_ease(data, 50.0, session_weight, 3600.0)
    expected = (data.positives > 0).astype(np.float64).toarray() @ full
    np.testing.assert_allclose(model.score(users), expected, rtol=1e-5, atol=1e-5)
    assert not model.score(users)[:, np.setdiff1d(np.arange(data.n_items), seen)].any()
    pairs_users, pairs_items = np.repeat(users[:20], 50), np.tile(np.arange(0, 900, 18), 20)
    np.testing.assert_allclose(
        model.score_pairs(pairs_users, pairs_items), expected[pairs_users, pairs_items], rtol=1e-5, atol=1e-5
    )
    # an artifact saved before (the whole catalog's weights, no item list) still loads and scores
    old = EASEModel()
    old.set_arrays({k: v for k, v in model.arrays().items() if k != "items"} | {"weights": full.astype(np.float32)})
    assert old.items.tolist() == list(range(data.n_items))
    np.testing.assert_allclose(old.score(users), expected, rtol=1e-5, atol=1e-5)


def test_ease_fits_only_the_seen_items_of_a_large_catalog(tmp_path):
    """10,000 catalog items, ~400 training pairs: the fit is a small seen × seen matrix (it was
    a dense 10,000² inverse: ~20 s and 380 MiB of weights), nothing unseen is ever listed, and
    the stored model round-trips."""
    import time

    data = _sparse_catalog(n_users=150, n_items=10_000, n_pairs=400, seed=1)
    seen = np.flatnonzero(np.asarray((data.positives > 0).sum(axis=0)).ravel())
    started = time.perf_counter()
    model = EASEModel().fit(data)
    assert time.perf_counter() - started < 2.0
    assert model.weights.shape == (len(seen), len(seen)) and len(seen) <= 200
    users = np.arange(data.n_users)
    exclude = (data.positives > 0).astype(np.float32).tocsr()
    items, scores = model.recommend(users, 300, exclude=exclude, blocked_items=seen[:5])
    assert items.shape == (data.n_users, 300)
    listed = items >= 0
    assert np.isin(items[listed], seen[5:]).all()  # seen, not blocked
    assert np.array_equal(listed, np.isfinite(scores)) and not listed[:, len(seen) :].any()  # -1 / -inf padding
    model.save(tmp_path / "ease")
    stored = {p.stem: np.load(p, allow_pickle=False).shape for p in (tmp_path / "ease").glob("*.npy")}
    assert stored["weights"] == (len(seen), len(seen)) and stored["items"] == (len(seen),)
    loaded = load_model(tmp_path / "ease")
    assert (
        loaded.recommend(users, 300, exclude=exclude)[0].tolist()
        == model.recommend(users, 300, exclude=exclude)[0].tolist()
    )
    np.testing.assert_array_equal(loaded.score(users[:10]), model.score(users[:10]))


def _session_gram_by_hand(seconds: sp.csr_matrix, tau: float, n_items: int) -> np.ndarray:
    gram = np.zeros((n_items, n_items))
    for u in range(seconds.shape[0]):
        row = seconds.getrow(u)
        for a, ta in zip(row.indices, row.data, strict=False):
            for b, tb in zip(row.indices, row.data, strict=False):
                if abs(ta - tb) <= SESSION_CUTOFF_TAUS * tau:
                    gram[a, b] += np.exp(-abs(ta - tb) / tau)
    return gram


def test_session_gram_equals_the_pairwise_sum():
    """Σ_u exp(-|t_ui - t_uj| / tau) over each user's pairs within the cutoff (ties = 1 apart 0 s)."""
    rng = np.random.default_rng(4)
    n_users, n_items = 40, 25
    chosen = rng.random((n_users, n_items)) < 0.3
    dense = np.zeros((n_users, n_items))  # ages in seconds, with ties and gaps beyond the cutoff
    dense[chosen] = rng.choice([5.0, 60.0, 61.0, 600.0, 6000.0, 86400.0], size=int(chosen.sum()))
    seconds = sp.csr_matrix(dense)
    for tau in (30.0, 600.0):
        np.testing.assert_allclose(
            session_gram(seconds, tau, n_items), _session_gram_by_hand(seconds, tau, n_items), rtol=1e-12, atol=1e-12
        )
    base = np.arange(n_items * n_items, dtype=np.float64).reshape(n_items, n_items)
    added = session_gram(seconds, 30.0, n_items, out=base.copy(), weight=2.5)
    np.testing.assert_allclose(added, base + 2.5 * _session_gram_by_hand(seconds, 30.0, n_items), rtol=1e-12)
    with pytest.raises(ValueError, match="tau"):
        session_gram(seconds, 0.0, n_items)


def _session_data():
    """30 users: each chose items 0 and 1 a minute apart, item 2 a month before, and one of 3-5;
    one newcomer (the last row) has only item 0. (data, positives, seconds_ago, n_users, n_items)"""
    n_users, n_items = 30, 6
    rows, cols, ages = [], [], []
    for u in range(n_users):
        base = 86400.0 * 40 + u
        for item, age in ((0, base), (1, base - 30.0), (2, base - 86400.0 * 30), (3 + u % 3, base - 86400.0 * 10)):
            rows.append(u)
            cols.append(item)
            ages.append(age)
    shape = (n_users + 1, n_items)
    positives = sp.csr_matrix((np.ones(len(rows) + 1, np.float32), (rows + [n_users], cols + [0])), shape=shape)
    seconds = sp.csr_matrix((np.array(ages + [100.0]), (rows + [n_users], cols + [0])), shape=shape)
    empty = sp.csr_matrix(shape, dtype=np.float32)
    data = TrainingData(
        positives=positives,
        shown_negatives=empty,
        days_ago=empty,
        item_genres=sp.csr_matrix((n_items, 0)),
        item_tags=sp.csr_matrix((n_items, 0)),
        seconds_ago=seconds,
    )
    return data, positives, seconds, n_users, n_items


def test_ease_session_kernel_prefers_items_chosen_close_in_time():
    """Items 0 and 1 are chosen in the same minute by every user, items 0 and 2 a month apart,
    equally often. Plain EASE cannot tell 1 from 2 for a user who has only item 0; with the
    session kernel item 1 ranks first. Without the positives' times the kernel refuses."""
    data, positives, seconds, n_users, n_items = _session_data()
    newcomer = np.array([n_users])  # only item 0
    plain = EASEModel(lambda_=5.0).fit(data).score(newcomer)[0]
    assert plain[1] == pytest.approx(plain[2], rel=1e-5)
    session = EASEModel(lambda_=5.0, session_weight=2.0, session_tau_seconds=600.0).fit(data).score(newcomer)[0]
    assert session[1] > session[2] + 0.05
    items, _ = (
        EASEModel(lambda_=5.0, session_weight=2.0, session_tau_seconds=600.0)
        .fit(data)
        .recommend(newcomer, 1, exclude=positives)
    )
    assert items[0, 0] == 1
    no_times = dataclasses.replace(data, seconds_ago=None)
    with pytest.raises(ValueError, match="seconds_ago"):
        EASEModel(session_weight=1.0).fit(no_times)
    assert np.array_equal(EASEModel(lambda_=5.0).fit(no_times).weights, EASEModel(lambda_=5.0).fit(data).weights)


def test_item_cf_session_kernel_prefers_items_chosen_close_in_time():
    """The EASE test's data: items 0-1 chosen a minute apart by every user, 0-2 a month apart,
    equally often, so plain item-CF ties 1 and 2 for a user with only item 0. With the session
    kernel item 1 ranks first, the scores match the cosine over XᵀX + w·session_gram by hand, and
    without the positives' times the kernel refuses."""
    data, positives, seconds, n_users, n_items = _session_data()
    newcomer = np.array([n_users])  # only item 0
    params = dict(neighbours=5, shrinkage=1.0, half_life_days=None)
    plain = ItemCFModel(**params).fit(data).score(newcomer)[0]
    assert plain[1] == pytest.approx(plain[2], rel=1e-6)
    model = ItemCFModel(**params, session_weight=2.0, session_tau_seconds=600.0).fit(data)
    session = model.score(newcomer)[0]
    assert session[1] > session[2] * 1.5
    gram = (positives.T @ positives).toarray() + session_gram(seconds, 600.0, n_items, weight=2.0)
    norms = np.sqrt(np.diag(gram))
    expected = gram[0] / (norms[0] * norms + 1.0)
    np.testing.assert_allclose(session[1:], expected[1:], rtol=1e-5)
    items, _ = model.recommend(newcomer, 1, exclude=positives)
    assert items[0, 0] == 1
    no_times = dataclasses.replace(data, seconds_ago=None)
    with pytest.raises(ValueError, match="seconds_ago"):
        ItemCFModel(session_weight=1.0).fit(no_times)


def test_content_model_cold_users_and_new_items(world):
    data, _, user_genre, item_genre = world
    model = ContentColdStartModel().fit(data)
    scores = model.score(np.arange(N_USERS))
    best = scores.argmax(axis=1)
    assert np.mean(item_genre[best] == user_genre) > 0.9
    # a user with no positives gets the global profile: the same scores as a fresh empty row
    empty = model.score_profiles(sp.csr_matrix((1, model.user_profiles.shape[1])))
    assert empty.shape == (1, N_ITEMS) and np.isfinite(empty).all() and empty.max() > 0


def test_content_model_projects_a_wide_content_space(world, tmp_path):
    """A content space wider than max_dims (a release's whole tag vocabulary) is projected onto
    its leading directions: exactly the cosine scores when the content's rank fits in max_dims,
    the same lists through faiss as by dense scoring, and the projection survives save/load.
    A narrow space is not projected."""
    data = world[0]
    # 600 tag columns of rank <= 12: each item mixes 12 latent tag groups
    groups = sp.random(N_ITEMS, 12, density=0.3, random_state=12, format="csr")
    wide = sp.csr_matrix(groups @ sp.random(12, 600, density=0.05, random_state=13, format="csr"))
    data = dataclasses.replace(data, item_tags=wide)
    exact = ContentColdStartModel(max_dims=10_000).fit(data)
    projected = ContentColdStartModel(max_dims=40).fit(data)  # rank <= 12 + N_GENRES
    assert not exact.projected and projected.projection.shape == (600 + N_GENRES, 40)
    users = np.arange(N_USERS)
    np.testing.assert_allclose(projected.score(users), exact.score(users), atol=1e-4)
    newcomer = sp.csr_matrix((1, 600 + N_GENRES))  # no profile: the global one
    np.testing.assert_allclose(projected.score_profiles(newcomer), exact.score_profiles(newcomer), atol=1e-4)
    assert ContentColdStartModel().fit(world[0]).projected is False  # 4 genres + 8 tags < 128
    # a narrower projection approximates: most of each list survives
    coarse = ContentColdStartModel(max_dims=6).fit(data)
    top_exact = np.argsort(-exact.score(users), axis=1)[:, :20]
    top_coarse = np.argsort(-coarse.score(users), axis=1)[:, :20]
    overlap = np.mean([len(np.intersect1d(a, b)) / 20 for a, b in zip(top_exact, top_coarse, strict=True)])
    assert overlap > 0.5, overlap
    projected.save(tmp_path / "content")
    loaded = load_model(tmp_path / "content")
    assert loaded.projected
    seen = data.positives
    projected.faiss_min_items = 10**9
    dense_items, dense_scores = projected.recommend(users, 10, exclude=seen)
    loaded.faiss_min_items = 0
    fast_items, fast_scores = loaded.recommend(users, 10, exclude=seen)
    np.testing.assert_allclose(fast_scores, dense_scores, atol=1e-4)
    assert np.mean(fast_items == dense_items) > 0.95  # (tied scores may swap)


def test_als_fold_in_matches_trained_vectors(world, fitted):
    data, _, user_genre, item_genre = world
    model: ALSModel = fitted["als"]
    users = np.arange(0, N_USERS, 5)
    folded = model.fold_in(data.positives[users])
    trained = model.user_factors[users]
    cos = np.sum(folded * trained, axis=1) / (np.linalg.norm(folded, axis=1) * np.linalg.norm(trained, axis=1))
    assert cos.min() > 0.9, cos.min()
    scores = folded @ model.item_factors.T
    scores[data.positives[users].nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :K]
    assert np.mean(item_genre[top] == user_genre[users, None]) > 0.8
    norms = model.factor_norms()
    assert norms["user"].shape == (N_USERS,) and norms["item"].shape == (N_ITEMS,)


def test_als_fold_in_after_load(world, fitted, tmp_path):
    data = world[0]
    model = fitted["als"]
    model.save(tmp_path / "als")
    loaded = load_model(tmp_path / "als")
    rows = data.positives[[0, 1, 2]]
    np.testing.assert_allclose(loaded.fold_in(rows), model.fold_in(rows), rtol=1e-4, atol=1e-5)


def test_bpr_fold_in_recommends_the_users_genre(world, fitted):
    data, _, user_genre, item_genre = world
    model: BPRModel = fitted["bpr"]
    users = np.arange(0, N_USERS, 5)
    folded = model.fold_in(data.positives[users], seed=0)
    assert folded.shape == (len(users), model.item_factors.shape[1])
    assert np.all(folded[:, -1] == 1.0)  # bias column untouched
    scores = folded @ model.item_factors.T
    scores[data.positives[users].nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :K]
    assert np.mean(item_genre[top] == user_genre[users, None]) > 0.8
    np.testing.assert_array_equal(folded, model.fold_in(data.positives[users], seed=0))


def test_bpr_popularity_correction_adds_log_popularity(world, tmp_path):
    """β only adds β·ln(1 + users per item) at scoring: same seed, same factors, and the score
    difference is exactly that bias; it survives save/load, and an old save without it loads as 0."""
    data = world[0]
    params = dict(FAST_PARAMS["bpr"])
    plain = BPRModel(**params, popularity_correction=0.0).fit(data, seed=3)
    corrected = BPRModel(**params).fit(data, seed=3)  # the default: beta = 1
    assert corrected.params["popularity_correction"] == 1.0
    np.testing.assert_array_equal(plain.item_factors, corrected.item_factors)
    users_per_item = np.asarray((data.positives > 0).sum(axis=0)).ravel()
    np.testing.assert_allclose(corrected.item_bias, np.log1p(users_per_item), rtol=1e-6)
    assert not plain.item_bias.any()
    users = np.arange(0, N_USERS, 3)
    np.testing.assert_allclose(
        corrected.score(users) - plain.score(users),
        np.broadcast_to(np.log1p(users_per_item), (len(users), N_ITEMS)),
        atol=1e-4,
    )
    corrected.save(tmp_path / "c")
    loaded = load_model(tmp_path / "c")
    np.testing.assert_array_equal(loaded.score(users), corrected.score(users))
    (tmp_path / "c" / "item_bias.npy").unlink()  # a model saved before the correction existed
    old = load_model(tmp_path / "c")
    np.testing.assert_array_equal(old.score(users), plain.score(users))
    assert old.params["popularity_correction"] == 0.0


def test_bpr_epochs_are_capped_by_a_sample_budget(world):
    """A large log needs fewer epochs: iterations are capped at max_samples / positives, so a fit
    on many positives stops early (and a capped fit equals a fit asked for that many epochs)."""
    model = BPRModel()
    assert model.epochs(575_000) == 100  # ml-1m's positives: the configured 100
    assert model.epochs(16_000_000) == 12  # ml-32m's
    assert model.epochs(10**12) == 1 and model.epochs(0) == 100
    data = world[0]
    nnz = int((data.positives > 0).sum())
    params = dict(FAST_PARAMS["bpr"]) | {"iterations": 50}
    capped = BPRModel(**params, max_samples=3 * nnz).fit(data, seed=3)
    three = BPRModel(**params | {"iterations": 3}).fit(data, seed=3)
    full = BPRModel(**params).fit(data, seed=3)
    np.testing.assert_array_equal(capped.item_factors, three.item_factors)
    assert not np.array_equal(capped.item_factors, full.item_factors)


def test_bpr_popularity_correction_recovers_popularity():
    """implicit draws BPR negatives in proportion to item popularity, so on data where only
    popularity matters plain implicit BPR sinks popular items (hit rate far below popularity's);
    the correction β = 1 brings back much of the popularity signal (here 0.04 -> 0.38 vs 0.67)."""
    rng = np.random.default_rng(0)
    n_users, n_items = 400, 150
    pop = 1.0 / np.arange(1, n_items + 1) ** 1.1
    pop /= pop.sum()
    rows, cols = [], []
    for u in range(n_users):
        items = rng.choice(n_items, size=15, replace=False, p=pop)
        rows += [u] * len(items)
        cols += list(items)
    rows, cols = np.array(rows), np.array(cols)
    held = np.zeros(len(rows), bool)
    held[np.arange(0, len(rows), 15)] = True  # the first sampled item of every user is held out
    shape = (n_users, n_items)
    positives = sp.csr_matrix((np.ones((~held).sum(), np.float32), (rows[~held], cols[~held])), shape=shape)
    empty = sp.csr_matrix(shape, dtype=np.float32)
    data = TrainingData(
        positives=positives,
        shown_negatives=empty,
        days_ago=empty,
        item_genres=sp.csr_matrix((n_items, 0), dtype=np.float32),
        item_tags=sp.csr_matrix((n_items, 0), dtype=np.float32),
    )
    held_items = cols[held]

    def hit_rate(model):
        items, _ = model.recommend(np.arange(n_users), K, exclude=positives)
        return float(np.mean((items == held_items[:, None]).any(axis=1)))

    params = dict(factors=16, iterations=200, learning_rate=0.05, num_threads=1)
    plain = hit_rate(BPRModel(**params, popularity_correction=0.0).fit(data, seed=1))
    corrected = hit_rate(BPRModel(**params, popularity_correction=1.0).fit(data, seed=1))
    popularity = hit_rate(PopularityModel().fit(data))
    assert plain <= 0.25 * popularity, (plain, corrected, popularity)
    assert corrected >= plain + 0.2, (plain, corrected, popularity)
    assert corrected >= 0.4 * popularity, (plain, corrected, popularity)


def test_impression_bpr_uses_shown_negatives(world):
    """Shown-and-skipped items are random other-genre items: only the hard negatives can tell
    them apart from the other-genre items the user never saw. With hard_ratio=1 they must
    score clearly lower than those; with hard_ratio=0 they look alike."""
    data, _, user_genre, item_genre = world
    shown = data.shown_negatives.toarray() > 0
    unseen_other = (item_genre[None, :] != user_genre[:, None]) & ~shown & (data.positives.toarray() == 0)

    def gap(hard_ratio):
        model = ImpressionBPRModel(factors=8, epochs=10, batch_size=512, hard_ratio=hard_ratio).fit(data, seed=0)
        s = model.score(np.arange(N_USERS)).astype(np.float64)
        s = (s - s.mean(axis=1, keepdims=True)) / s.std(axis=1, keepdims=True)
        per_user = ((s * shown).sum(1) / shown.sum(1)) - ((s * unseen_other).sum(1) / unseen_other.sum(1))
        return float(per_user.mean())

    hard, uniform = gap(1.0), gap(0.0)
    assert hard < uniform - 0.1, (hard, uniform)


# ---------------------------------------------------------------------------------------- ANN
def test_hnsw_recall_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    items = rng.standard_normal((2000, 64)).astype(np.float32)
    users = rng.standard_normal((200, 64)).astype(np.float32)
    index = build_ann_index(items, kind="hnsw", M=32, ef_search=128)
    recall = recall_vs_exact(index, items, users, k=10)
    assert recall >= 0.95, recall
    save_index(index, tmp_path / "items.faiss")
    loaded = load_index(tmp_path / "items.faiss")
    ids_a, scores_a = ann_search(index, users, 10)
    ids_b, scores_b = ann_search(loaded, users, 10)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(scores_a, scores_b)
    assert (np.diff(scores_a, axis=1) <= 0).all()


def test_ivf_and_flat_indexes():
    rng = np.random.default_rng(1)
    items = rng.standard_normal((2000, 32)).astype(np.float32)
    users = rng.standard_normal((50, 32)).astype(np.float32)
    assert recall_vs_exact(build_ann_index(items, kind="flat"), items, users, k=10) == 1.0
    ivf = build_ann_index(items, kind="ivf", nlist=32, nprobe=32)  # probing all lists = exact
    assert recall_vs_exact(ivf, items, users, k=10) >= 0.99
    with pytest.raises(ValueError):
        build_ann_index(items, kind="lsh")


def test_exact_faiss_top_k_equals_dense_scoring_with_exclusions(tmp_path):
    """Large catalogs of dot-product models go through faiss's exact flat search (popularity:
    the head of its one global ranking): the same top-k (items and scores) as dense scoring,
    with seen and blocked items removed."""
    import scipy.sparse as sp

    from recsys_assets.core.recall.base import KEPT_FAISS_INDEXES
    from recsys_assets.core.recall.models import (
        ALSModel,
        BPRModel,
        ContentColdStartModel,
        PopularityModel,
        _row_normalise,
    )

    rng = np.random.default_rng(3)
    n_users, n_items, d, k = 300, 2_000, 16, 50
    als = ALSModel()
    als.user_factors, als.item_factors = (rng.normal(size=(n, d)).astype(np.float32) for n in (n_users, n_items))
    bpr = BPRModel()
    bpr.user_factors, bpr.item_factors = (rng.normal(size=(n, d)).astype(np.float32) for n in (n_users, n_items))
    bpr.item_bias = rng.random(n_items).astype(np.float32)
    popularity = PopularityModel()
    popularity.item_scores = rng.permutation(n_items).astype(np.float32)  # distinct: no ties
    seen = sp.random(n_users, n_items, density=0.05, random_state=4, format="csr", dtype=np.float32).tolil()
    heavy = rng.choice(n_users, 3, replace=False)  # users who consumed most of the catalog
    for user, n_seen in zip(heavy, (1_500, 900, 300), strict=True):
        seen[user, rng.choice(n_items, n_seen, replace=False)] = 1
    seen = seen.tocsr()
    seen.data[:] = 1
    blocked = rng.choice(n_items, 300, replace=False)
    users = np.union1d(rng.choice(n_users, 120, replace=False), heavy)
    # the searches go as deep as each group of similar exclusion counts needs: every user once,
    # each group retrieving at least its members' exclusions
    from recsys_assets.core.recall.base import exclusion_depth_batches

    groups = exclusion_depth_batches(seen, users, batch=16)
    assert np.array_equal(np.sort(np.concatenate([g for g, _ in groups])), np.arange(len(users)))
    assert all(np.diff(seen.indptr)[users[g]].max() == depth and len(g) <= 16 for g, depth in groups)
    assert len({depth for _, depth in groups}) >= 4
    content = ContentColdStartModel()
    profiles = sp.random(n_users, 24, density=0.3, random_state=5, format="csr", dtype=np.float32)
    profiles[:5] = 0  # users without a profile get the global one
    content.user_profiles = _row_normalise(profiles.tocsr()).astype(np.float32)
    content.item_vectors = _row_normalise(sp.csr_matrix(rng.random((n_items, 24)).astype(np.float32))).astype(
        np.float32
    )
    content.global_profile = (np.ones(24) / np.sqrt(24)).astype(np.float32)
    users = np.concatenate([np.arange(5), users])
    for model in (als, bpr, popularity, content):
        model.faiss_min_items = 10**9
        dense_items, dense_scores = model.recommend(users, k, exclude=seen, blocked_items=blocked)
        model.faiss_min_items = 0
        fast_items, fast_scores = model.recommend(users, k, exclude=seen, blocked_items=blocked)
        assert fast_items.shape == (len(users), k)
        assert np.array_equal(fast_items, dense_items), model.name
        assert np.allclose(fast_scores, dense_scores, rtol=1e-4, atol=1e-4)
        assert not np.isin(fast_items, blocked).any()
        assert all(seen[u, fast_items[i]].nnz == 0 for i, u in enumerate(users))
        # a model loaded from disk keeps its search vectors and faiss index (popularity: its
        # ranking) between calls (the online path asks for one user at a time): the same lists,
        # whatever was blocked before
        model.save(tmp_path / model.name)
        loaded = type(model).load(tmp_path / model.name)
        loaded.faiss_min_items = 0
        for block in (blocked, None, blocked, blocked[:10]):
            fresh = model.recommend(users, k, exclude=seen, blocked_items=block)
            again = loaded.recommend(users, k, exclude=seen, blocked_items=block)
            assert np.array_equal(fresh[0], again[0]) and np.allclose(fresh[1], again[1], rtol=1e-5), model.name
        if model is popularity:
            assert len(loaded._loaded_cache["rankings"]) == 3  # blocked, nothing, blocked[:10]
        if model is content:  # a loaded model's profiles, normalised once, score as the fitted one's
            assert np.array_equal(loaded.score(users), model.score(users))
            assert np.array_equal(loaded.score(users[:3]), model.score(users[:3]))
        if model is not popularity:  # (its fast path is the global ranking, no faiss index)
            # recall (nothing blocked) and the ranker's rank features (the day's blocked items)
            # alternate on the online path: each set's index is kept, not rebuilt on every switch
            kept = {key: entry[0] for key, entry in loaded._loaded_cache["indexes"].items()}
            assert len(kept) == 3  # blocked, nothing, blocked[:10]
            for block in (None, blocked, None, blocked[:10]):
                loaded.recommend(users[:1], k, blocked_items=block)
            now = loaded._loaded_cache["indexes"]
            assert now.keys() == kept.keys() and all(now[key][0] is index for key, index in kept.items())
            for extra in range(KEPT_FAISS_INDEXES):  # bounded: the oldest go
                loaded.recommend(users[:1], k, blocked_items=blocked[: 20 + extra])
            assert len(loaded._loaded_cache["indexes"]) == KEPT_FAISS_INDEXES


def test_item_cf_sparse_top_k_equals_dense_scoring_with_exclusions(world):
    """On a large catalog item-CF ranks the stored entries of its sparse score rows: the same
    top-k as dense scoring wherever a user has k scored items, and for a user with fewer only
    the scored ones, padded with -1 / -inf instead of arbitrary zero-score items."""
    data = world[0]
    model = ItemCFModel(neighbours=8, shrinkage=5.0, half_life_days=30.0).fit(data)  # decay: few ties; 12-31 scored
    rng = np.random.default_rng(11)
    users = rng.choice(N_USERS, 150, replace=False)
    seen = (data.positives > 0).astype(np.float32).tocsr()
    blocked = rng.choice(N_ITEMS, 20, replace=False)
    k = 15
    model.sparse_min_items = 10**9
    dense_items, dense_scores = model.recommend(users, k, exclude=seen, blocked_items=blocked)
    model.sparse_min_items = 0
    sparse_items, sparse_scores = model.recommend(users, k, exclude=seen, blocked_items=blocked, batch=37)
    assert sparse_items.shape == (len(users), k) and sparse_scores.dtype == np.float32
    scored = sparse_items >= 0
    # scored entries come first, in score order, and every padded slot is -1 / -inf
    assert (np.diff(scored.astype(int), axis=1) <= 0).all()
    assert np.isneginf(sparse_scores[~scored]).all() and (sparse_scores[scored] > 0).all()
    assert all((np.diff(sparse_scores[r][scored[r]]) <= 1e-7).all() for r in range(len(users)))
    dense_positive = dense_scores > 0
    full_rows = scored.all(axis=1)
    assert full_rows.any() and (~full_rows).any()  # both cases occur
    np.testing.assert_allclose(sparse_scores[full_rows], dense_scores[full_rows], rtol=1e-5)
    assert np.array_equal(sparse_items[full_rows], dense_items[full_rows])
    for row in np.flatnonzero(~full_rows):  # short rows: exactly the dense path's positive-score items
        n = int(scored[row].sum())
        assert n == int(dense_positive[row].sum())
        assert np.array_equal(sparse_items[row, :n], dense_items[row, :n])
    assert not np.isin(sparse_items, blocked).any()
    assert all(seen[u, sparse_items[i][sparse_items[i] >= 0]].nnz == 0 for i, u in enumerate(users))


def test_score_pairs_equal_the_full_score_rows(world, fitted):
    """score_pairs (the ranker's score_<channel> feature) is score() read at the pair, for
    every model: dot products, item-CF's sparse rows and the full-row fallback alike."""
    rng = np.random.default_rng(2)
    users = rng.integers(0, N_USERS, 3000)
    items = rng.integers(0, N_ITEMS, 3000)
    for name, model in fitted.items():
        full = model.score(np.arange(N_USERS))
        np.testing.assert_allclose(
            model.score_pairs(users, items, block=37), full[users, items], rtol=1e-4, atol=1e-5, err_msg=name
        )


def test_item_cf_scores_one_users_pairs_bit_for_bit(fitted):
    """One user's pairs (a request's candidates, repeats and unscored items included) take
    the neighbour-row path: the same float32 bits as the sparse score rows of several users."""
    model = fitted["item_cf"]
    assert model.sim.dtype == model.user_items.dtype == np.float32
    rng = np.random.default_rng(5)
    other = 0
    for user in rng.choice(N_USERS, 60, replace=False):
        items = np.append(rng.integers(0, N_ITEMS, 80), [3, 3])
        one = model.score_pairs(np.full(len(items), user), items)
        # a second user sends the pairs through the sparse score rows
        several = model.score_pairs(np.append(np.full(len(items), user), (user + 1) % N_USERS), np.append(items, 0))
        assert np.array_equal(one, several[:-1]), user
        other += int((one == 0).sum())
    assert other > 0  # unscored items (no neighbour among the user's items) score 0
    assert model.score_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0,)


def test_rank_features_are_exact_within_the_rank_depth(world, fitted):
    """rank_<channel> is the item's full-catalog rank when it is within the channel's top
    rank_depth, rank_depth + 1 below; score_<channel> is the pair's score."""
    from types import SimpleNamespace

    from recsys_assets.core.ranking.features import Channel, _channel_columns

    als = fitted["als"]
    depth = 25
    ctx = SimpleNamespace(
        channel_names=("als",),
        rank_depth=depth,
        exclude=None,
        blocked_items=None,
        window_users=None,
        channels={"als": Channel(als, n_users=N_USERS - 10, n_items=N_ITEMS)},
    )
    rng = np.random.default_rng(4)
    users = rng.integers(0, N_USERS, 5000)
    full = als.score(np.arange(N_USERS))
    order = np.argsort(-full, axis=1)
    full_rank = np.empty_like(order)
    np.put_along_axis(full_rank, order, np.arange(1, N_ITEMS + 1)[None, :], axis=1)
    top_items = order[users, rng.integers(0, depth, len(users))]  # half the pairs inside the depth
    items = np.where(rng.random(len(users)) < 0.5, top_items, rng.integers(0, N_ITEMS, len(users)))
    out = _channel_columns(ctx, users, items, chunk=64)
    known = users < N_USERS - 10
    expected = np.where(full_rank[users, items] <= depth, full_rank[users, items], depth + 1)
    assert np.array_equal(out["rank_als"][known], expected[known].astype(np.float32))
    assert (expected[known] <= depth).mean() > 0.4
    np.testing.assert_allclose(out["score_als"][known], full[users, items][known], rtol=1e-4, atol=1e-5)
    assert np.isnan(out["rank_als"][~known]).all() and np.isnan(out["score_als"][~known]).all()

    # with recall's exclusions (training positives, blocked items): the position among the items
    # recall may propose, i.e. in the channel list recall_candidates fuses
    seen = (world[0].positives > 0).astype(np.float32).tocsr()
    blocked = np.arange(0, N_ITEMS, 17)
    ctx.exclude, ctx.blocked_items = seen, blocked
    masked = full.copy()
    masked[seen.nonzero()] = -np.inf
    masked[:, blocked] = -np.inf
    order = np.argsort(-masked, axis=1, kind="stable")
    list_rank = np.empty_like(order)
    np.put_along_axis(list_rank, order, np.arange(1, N_ITEMS + 1)[None, :], axis=1)
    in_list = (list_rank[users, items] <= depth) & np.isfinite(masked[users, items])
    expected = np.where(in_list, list_rank[users, items], depth + 1).astype(np.float32)
    excluded = _channel_columns(ctx, users, items, chunk=64)
    assert np.array_equal(excluded["rank_als"][known], expected[known])
    assert (excluded["rank_als"][known] != out["rank_als"][known]).mean() > 0.1  # the exclusions matter
    # positions given by recall lists (0 = absent; a deeper list's position > depth) are used as
    # they are; the other rows are searched: the same features either way
    given = np.where(in_list, list_rank[users, items], np.where(rng.random(len(users)) < 0.5, 0, depth + 7))
    given = np.where(rng.random(len(users)) < 0.6, given, np.nan).astype(np.float32)
    reused = _channel_columns(ctx, users, items, chunk=64, listed={"als": given})
    assert np.array_equal(reused["rank_als"][known], expected[known])
    assert np.isnan(reused["rank_als"][~known]).all()
    row = int(np.flatnonzero(known & ~np.isnan(given) & (expected != 3))[0])
    given[row] = 3
    assert (
        _channel_columns(ctx, users, items, chunk=64, listed={"als": given})["rank_als"][row] == 3
    )  # read, not searched


def test_a_user_without_training_positives_has_no_personal_list(world, fitted):
    """Personal channels rank from the user's own history; a user with none has no list there
    (rank_depth + 1 without a search), while popularity still ranks the item for them."""
    from types import SimpleNamespace

    from recsys_assets.core.ranking.features import Channel, _channel_columns

    depth = 25
    seen = (world[0].positives > 0).astype(np.float32).tocsr()
    keep = np.ones(seen.shape[0], bool)
    keep[np.arange(0, 40, 2)] = False  # these 20 users lose their history
    seen = sp.diags(keep.astype(np.float32)) @ seen
    seen.eliminate_zeros()
    # per user: the top 3 of the ALS list with history, the top 2 of popularity
    als_top = fitted["als"].recommend(np.arange(40), 3, exclude=(world[0].positives > 0).astype(np.float32).tocsr())[0]
    pop_top = fitted["popularity"].recommend(np.arange(40), 2, exclude=seen.tocsr())[0]
    users = np.repeat(np.arange(40), 5)
    items = np.concatenate([als_top, pop_top], axis=1).reshape(-1)
    fresh = users % 2 == 0
    ctx = SimpleNamespace(
        channel_names=("als", "popularity"),
        rank_depth=depth,
        exclude=seen.tocsr(),
        blocked_items=None,
        window_users=None,
        channels={c: Channel(fitted[c], n_users=N_USERS, n_items=N_ITEMS) for c in ("als", "popularity")},
    )
    out = _channel_columns(ctx, users, items, chunk=7)
    assert (out["rank_als"][fresh] == depth + 1).all()
    assert (out["rank_als"][~fresh] <= depth).any()
    top = fitted["popularity"].recommend(np.arange(40), depth, exclude=ctx.exclude)[0]
    hit = top[users] == items[:, None]
    expected = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, depth + 1)
    assert np.array_equal(out["rank_popularity"], expected.astype(np.float32))
    assert (out["rank_popularity"][fresh] <= depth).any()
    # items consumed before the window fill those users' exclusion rows: still no training
    # positive (window_users), so still no personal list
    old = sp.csr_matrix((np.ones(20, np.float32), (np.arange(0, 40, 2), np.full(20, N_ITEMS - 1))), shape=seen.shape)
    ctx.exclude, ctx.window_users = (seen + old).tocsr(), keep
    assert (_channel_columns(ctx, users, items, chunk=7)["rank_als"][fresh] == depth + 1).all()
