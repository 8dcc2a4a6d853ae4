"""Offline top-K metrics: hand-computed examples, conventions, bootstrap, properties, scale."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_assets.core import metrics as m

L2 = math.log2


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-12)


def check(result, k, expected):
    for name, value in expected.items():
        assert result[f"{name}@{k}"] == approx(value), name


# --------------------------------------------------------------------------- hand-computed


def test_worked_example_from_the_brief():
    # recommended [3, 1, 7, 2], relevant {1, 2, 9}, k = 4 -> hits at positions 2 (item 1), 4 (item 2)
    r = m.per_user_metrics(np.array([[3, 1, 7, 2]]), [np.array([1, 2, 9])], k=4)
    assert set(r) == {f"{n}@4" for n in m.METRIC_NAMES}
    assert all(v.dtype == np.float64 and v.shape == (1,) for v in r.values())
    check(
        r,
        4,
        {
            "recall": 2 / 3,  # 2 hits / |rel| 3
            "precision": 2 / 4,  # 2 hits / k 4
            "hr": 1.0,
            # DCG = 1/log2(2+1) + 1/log2(4+1); IDCG over min(3, 4) = 3 positions: 1 + 1/log2 3 + 1/log2 4
            "ndcg": (1 / L2(3) + 1 / L2(5)) / (1 + 1 / L2(3) + 1 / L2(4)),
            # precision@2 = 1/2, precision@4 = 2/4, divided by min(|rel|, k) = 3
            "map": (1 / 2 + 2 / 4) / 3,
            "mrr": 1 / 2,  # first hit at position 2
        },
    )


def test_worked_example_cut_at_k2():
    # top-2 = [3, 1]: one hit at position 2; IDCG and MAP use min(|rel| 3, k 2) = 2
    r = m.per_user_metrics(np.array([[3, 1, 7, 2]]), [np.array([1, 2, 9])], k=2)
    check(
        r,
        2,
        {
            "recall": 1 / 3,
            "precision": 1 / 2,
            "hr": 1.0,
            "ndcg": (1 / L2(3)) / (1 + 1 / L2(3)),
            "map": (1 / 2) / 2,
            "mrr": 1 / 2,
        },
    )


def test_several_users_are_independent_rows():
    rec = np.array(
        [
            [3, 1, 7, 2],  # user 0: example above
            [5, 6, 8, 0],  # user 1: relevant {8}: hit at position 3
            [4, 5, 6, 7],  # user 2: relevant {0}: no hit
            [0, 9, 1, 2],  # user 3: relevant {0, 1}: hits at 1 and 3
        ]
    )
    rel = [np.array([1, 2, 9]), np.array([8]), np.array([0]), np.array([1, 0])]
    r = m.per_user_metrics(rec, rel, k=4)
    np.testing.assert_allclose(r["recall@4"], [2 / 3, 1, 0, 1])
    np.testing.assert_allclose(r["precision@4"], [2 / 4, 1 / 4, 0, 2 / 4])
    np.testing.assert_allclose(r["hr@4"], [1, 1, 0, 1])
    np.testing.assert_allclose(
        r["ndcg@4"],
        [
            (1 / L2(3) + 1 / L2(5)) / (1 + 1 / L2(3) + 1 / L2(4)),
            (1 / L2(4)) / 1,  # IDCG over min(1, 4) = 1 position
            0,
            (1 + 1 / L2(4)) / (1 + 1 / L2(3)),  # DCG pos 1 and 3; IDCG 2 positions
        ],
    )
    np.testing.assert_allclose(
        r["map@4"],
        [
            (1 / 2 + 2 / 4) / 3,
            (1 / 3) / 1,  # precision@3 = 1/3
            0,
            (1 / 1 + 2 / 3) / 2,  # precision@1 = 1, precision@3 = 2/3
        ],
    )
    np.testing.assert_allclose(r["mrr@4"], [1 / 2, 1 / 3, 0, 1])
    s = m.summarize(r)
    assert s["recall@4"] == approx((2 / 3 + 1 + 0 + 1) / 4)
    assert s["mrr@4"] == approx((1 / 2 + 1 / 3 + 0 + 1) / 4)
    assert all(isinstance(v, float) for v in s.values())


def test_minus_one_padding_is_never_a_hit():
    # tail padding: list [2, -1, -1, -1], relevant {2, 3}: one hit at position 1
    r = m.per_user_metrics(np.array([[2, -1, -1, -1]]), [np.array([2, 3])], k=4)
    check(
        r,
        4,
        {
            "recall": 1 / 2,
            "precision": 1 / 4,  # still divided by k
            "hr": 1.0,
            "ndcg": 1 / (1 + 1 / L2(3)),  # IDCG over min(2, 4) = 2 positions
            "map": (1 / 1) / 2,
            "mrr": 1.0,
        },
    )
    # all padding: zero everywhere, and -1 never collides with another user's item key
    rec = np.array([[9, -1], [-1, -1]])
    rel = [np.array([9]), np.array([9, 0])]
    r = m.per_user_metrics(rec, rel, k=2)
    for name in m.METRIC_NAMES:
        assert r[f"{name}@2"][1] == 0.0
    assert r["recall@2"][0] == 1.0


def test_padding_in_the_middle_keeps_its_slot():
    # [-1, 5]: item 5 is at position 2 (column rank), the padded slot is a miss
    r = m.per_user_metrics(np.array([[-1, 5]]), [np.array([5])], k=2)
    check(r, 2, {"mrr": 1 / 2, "ndcg": 1 / L2(3), "map": 1 / 2})


def test_k_larger_than_the_list_width_counts_missing_positions_as_padding():
    # width 2 but k = 4: same as [3, 1, -1, -1]
    short = m.per_user_metrics(np.array([[3, 1]]), [np.array([1, 2, 9])], k=4)
    padded = m.per_user_metrics(np.array([[3, 1, -1, -1]]), [np.array([1, 2, 9])], k=4)
    check(
        short,
        4,
        {
            "recall": 1 / 3,
            "precision": 1 / 4,
            "hr": 1.0,
            "ndcg": (1 / L2(3)) / (1 + 1 / L2(3) + 1 / L2(4)),
            "map": (1 / 2) / 3,
            "mrr": 1 / 2,
        },
    )
    for key in short:
        np.testing.assert_array_equal(short[key], padded[key])


def test_repeated_recommendation_counts_once():
    # [1, 1, 2, -1], relevant {1, 2}: item 1 counts at position 1 only, item 2 at position 3
    r = m.per_user_metrics(np.array([[1, 1, 2, -1]]), [np.array([1, 2])], k=4)
    check(
        r,
        4,
        {
            "recall": 1.0,
            "precision": 2 / 4,
            "ndcg": (1 + 1 / L2(4)) / (1 + 1 / L2(3)),
            "map": (1 / 1 + 2 / 3) / 2,
            "mrr": 1.0,
        },
    )


def test_duplicate_relevant_entries_count_once():
    a = m.per_user_metrics(np.array([[3, 1, 7, 2]]), [np.array([1, 1, 2, 9, 9])], k=4)
    b = m.per_user_metrics(np.array([[3, 1, 7, 2]]), [np.array([1, 2, 9])], k=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_relevant_accepts_sets_lists_and_int32():
    rec = np.array([[3, 1, 7, 2]], dtype=np.int32)
    ref = m.per_user_metrics(rec.astype(np.int64), [np.array([1, 2, 9])], k=4)
    for rel in ([{1, 2, 9}], [[1, 2, 9]], [np.array([9, 2, 1], dtype=np.int32)]):
        got = m.per_user_metrics(rec, rel, k=4)
        for key in ref:
            np.testing.assert_array_equal(got[key], ref[key])


def test_csr_input_equals_list_input():
    rng = np.random.default_rng(3)
    n_users, n_items, width = 300, 60, 25
    rec = np.stack([rng.permutation(n_items)[:width] for _ in range(n_users)])
    rec[rng.random(rec.shape) < 0.05] = -1
    rel = [rng.choice(n_items, size=rng.integers(1, 12), replace=False) for _ in range(n_users)]
    rows = np.repeat(np.arange(n_users), [len(x) for x in rel])
    cols = np.concatenate(rel)
    csr = sp.csr_matrix((np.ones(cols.size), (rows, cols)), shape=(n_users, n_items))
    # a non-canonical csr (unsorted indices, a duplicated entry, explicit zeros on
    # non-relevant items) describes the same relevant sets
    rows_idx, rows_data = [], []
    for _u, items in enumerate(rel):
        zero = [i for i in range(n_items) if i not in set(items)][:2]
        idx = list(items[::-1]) + [items[0]] + zero
        rows_idx.append(idx)
        rows_data.append([1.0] * (len(items) + 1) + [0.0] * len(zero))
    indptr = np.r_[0, np.cumsum([len(x) for x in rows_idx])]
    noisy = sp.csr_matrix((np.concatenate(rows_data), np.concatenate(rows_idx), indptr), shape=(n_users, n_items))
    assert not noisy.has_canonical_format and noisy.nnz > csr.nnz
    for k in (1, 10, 25, 40):
        a = m.per_user_metrics(rec, rel, k)
        for mat in (csr, noisy, csr.tocsc()):
            b = m.per_user_metrics(rec, mat, k)
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])


def test_explicit_zero_in_csr_is_not_relevant():
    csr = sp.csr_matrix((np.array([1.0, 0.0]), np.array([1, 3]), np.array([0, 2])), shape=(1, 5))
    assert csr.nnz == 2  # item 3 stored, but zero
    r = m.per_user_metrics(np.array([[3, 1]]), csr, k=2)
    check(r, 2, {"recall": 1.0, "mrr": 1 / 2})  # only item 1 is relevant
    with pytest.raises(ValueError, match="no relevant"):
        m.per_user_metrics(np.array([[3, 1]]), sp.csr_matrix(np.array([[0, 0, 0, 0.0]])), k=2)


def test_evaluate_matches_summarize_for_every_k():
    rng = np.random.default_rng(5)
    rec = np.stack([rng.permutation(500)[:120] for _ in range(50)])
    rel = [rng.choice(500, size=rng.integers(1, 40), replace=False) for _ in range(50)]
    out = m.evaluate(rec, rel)  # KS goes to 200 > width 120
    assert set(out) == {f"{n}@{k}" for n in m.METRIC_NAMES for k in m.KS}
    for k in m.KS:
        expected = m.summarize(m.per_user_metrics(rec, rel, k))
        for key, value in expected.items():
            assert out[key] == approx(value)
    assert list(m.evaluate(rec, rel, ks=[3]).keys()) == [f"{n}@3" for n in m.METRIC_NAMES]


# --------------------------------------------------------------------------- errors


def test_user_without_relevant_items_is_an_error():
    rec = np.array([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="no relevant"):
        m.per_user_metrics(rec, [np.array([1]), np.array([], dtype=np.int64)], k=2)
    with pytest.raises(ValueError, match="no relevant"):
        m.per_user_metrics(rec, sp.csr_matrix(np.array([[0, 1, 0], [0, 0, 0]])), k=2)
    with pytest.raises(ValueError, match="no relevant"):
        m.evaluate(rec, [[1], []], ks=[1])


@pytest.mark.parametrize(
    "rec, rel, k",
    [
        (np.array([[1, 2]]), [[1], [2]], 2),  # user count mismatch
        (np.array([[1, -2]]), [[1]], 2),  # only -1 is padding
        (np.array([1, 2]), [[1]], 2),  # not 2-D
        (np.array([[1.0, 2.0]]), [[1]], 2),  # not integer
        (np.array([[1, 2]]), [[-3]], 2),  # negative relevant item
        (np.array([[1, 2]]), [[1.5]], 2),  # non-integer relevant item
        (np.array([[1, 2]]), [[1]], 0),  # k < 1
        (np.array([[1, 2]]), sp.csr_matrix(np.ones((2, 3))), 2),  # row count mismatch
    ],
)
def test_invalid_inputs_raise(rec, rel, k):
    with pytest.raises(ValueError):
        m.per_user_metrics(rec, rel, k)


def test_dense_relevant_array_is_rejected_as_ambiguous():
    with pytest.raises(TypeError):
        m.per_user_metrics(np.array([[1, 2]]), np.array([[0, 1, 1]]), 2)


# --------------------------------------------------------------------------- coverage, novelty


def test_catalog_coverage():
    rec = np.array([[0, 1, -1], [1, 2, 3]])
    assert m.catalog_coverage(rec, n_items=10, k=2) == approx(3 / 10)  # {0, 1} | {1, 2}
    assert m.catalog_coverage(rec, n_items=10, k=3) == approx(4 / 10)  # {0, 1} | {1, 2, 3}
    assert m.catalog_coverage(rec, n_items=4, k=50) == approx(1.0)
    assert m.catalog_coverage(np.full((3, 2), -1), n_items=5, k=2) == 0.0
    with pytest.raises(ValueError):
        m.catalog_coverage(rec, n_items=3, k=3)  # item 3 outside catalog


def test_novelty():
    # counts [3, 1, 0, 0]: sum 4 + n_items 4 = 8 -> p = [4/8, 2/8, 1/8, 1/8]
    # -log2 p = [1, 2, 3, 3] bits
    pop = np.array([3, 1, 0, 0])
    assert m.novelty(np.array([[0, 1], [2, 3]]), pop, k=2) == approx((1 + 2 + 3 + 3) / 4)
    assert m.novelty(np.array([[0, 1], [2, 3]]), pop, k=1) == approx((1 + 3) / 2)
    # padding skipped: user means 1 and (3 + 3) / 2 = 3 -> 2
    assert m.novelty(np.array([[0, -1], [2, 3]]), pop, k=2) == approx(2.0)
    assert math.isnan(m.novelty(np.array([[-1, -1]]), pop, k=2))
    # recommending only popular items is less novel than only long-tail items
    assert m.novelty(np.array([[0], [0]]), pop, 1) < m.novelty(np.array([[3], [2]]), pop, 1)
    with pytest.raises(ValueError):
        m.novelty(np.array([[4]]), pop, k=1)
    with pytest.raises(ValueError):
        m.novelty(np.array([[0]]), np.array([1, -1]), k=1)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_users():
    rng = np.random.default_rng(0)
    small = rng.binomial(1, 0.3, size=100).astype(float)
    large = rng.binomial(1, 0.3, size=10_000).astype(float)
    lo_s, hi_s = m.bootstrap_ci(small)
    lo_l, hi_l = m.bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    assert lo_s < hi_s
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # ~ 1/sqrt(100) of the width
    # ~ normal width 2 * 1.96 * sd / sqrt(n) for n = 10_000
    assert (hi_l - lo_l) == pytest.approx(2 * 1.96 * large.std() / 100, rel=0.15)
    assert m.bootstrap_ci(small, seed=1) != (lo_s, hi_s)
    assert m.bootstrap_ci(small) == (lo_s, hi_s)  # deterministic for a seed
    assert m.bootstrap_ci(np.full(7, 0.25)) == (0.25, 0.25)
    with pytest.raises(ValueError):
        m.bootstrap_ci(np.array([]))
    with pytest.raises(ValueError):
        m.bootstrap_ci(np.array([1.0, np.nan]))


def test_paired_bootstrap_identical_models():
    a = np.random.default_rng(1).random(500)
    out = m.paired_bootstrap(a, a.copy())
    assert set(out) == {"mean_diff", "ci_low", "ci_high", "p_value", "lift"}
    assert out["mean_diff"] == 0.0
    assert out["ci_low"] == 0.0 and out["ci_high"] == 0.0
    assert out["p_value"] == 1.0
    assert out["lift"] == approx(0.0)


def test_paired_bootstrap_clearly_better_model():
    rng = np.random.default_rng(2)
    b = rng.binomial(1, 0.2, size=2000).astype(float)
    a = np.maximum(b, rng.binomial(1, 0.15, size=2000))  # a hits wherever b does, and more
    out = m.paired_bootstrap(a, b)
    assert out["mean_diff"] == approx(a.mean() - b.mean())
    assert 0 < out["ci_low"] <= out["mean_diff"] <= out["ci_high"]
    assert out["p_value"] < 0.01
    assert out["lift"] == approx(a.mean() / b.mean() - 1)
    swapped = m.paired_bootstrap(b, a)
    assert swapped["ci_high"] < 0 and swapped["p_value"] < 0.01


def test_paired_bootstrap_noise_is_not_significant_and_lift_nan():
    rng = np.random.default_rng(4)
    a, b = rng.random(300), rng.random(300)
    b_shift = b + (a.mean() - b.mean())  # same mean, different users
    out = m.paired_bootstrap(a, b_shift)
    assert out["ci_low"] < 0 < out["ci_high"]
    assert out["p_value"] > 0.5
    assert math.isnan(m.paired_bootstrap(a, np.zeros(300))["lift"])
    with pytest.raises(ValueError):
        m.paired_bootstrap(a, b[:-1])


# --------------------------------------------------------------------------- properties


def reference(rec_row, rel_set, k):
    """Straightforward per-user implementation of the documented definitions."""
    seen, hit_positions = set(), []
    for i, item in enumerate(list(rec_row[:k]), start=1):
        if item >= 0 and item in rel_set and item not in seen:
            hit_positions.append(i)
        seen.add(item)
    n_rel = len(rel_set)
    cut = min(n_rel, k)
    hits = len(hit_positions)
    return {
        "recall": hits / n_rel,
        "precision": hits / k,
        "hr": float(hits > 0),
        "ndcg": sum(1 / L2(i + 1) for i in hit_positions) / sum(1 / L2(i + 1) for i in range(1, cut + 1)),
        "map": sum((j + 1) / i for j, i in enumerate(hit_positions)) / cut,
        "mrr": 1 / hit_positions[0] if hit_positions else 0.0,
    }


@st.composite
def ranking_case(draw):
    n_items = draw(st.integers(1, 30))
    n_users = draw(st.integers(1, 8))
    width = draw(st.integers(0, 12))
    rec = np.array(
        draw(
            st.lists(
                st.lists(st.integers(-1, n_items - 1), min_size=width, max_size=width),
                min_size=n_users,
                max_size=n_users,
            )
        ),
        dtype=np.int64,
    ).reshape(n_users, width)
    rel = [
        np.array(sorted(draw(st.sets(st.integers(0, n_items - 1), min_size=1))), dtype=np.int64) for _ in range(n_users)
    ]
    k = draw(st.integers(1, 15))
    return rec, rel, k


@settings(max_examples=300, deadline=None)
@given(ranking_case())
def test_matches_reference_and_is_bounded(case):
    rec, rel, k = case
    got = m.per_user_metrics(rec, rel, k)
    for u in range(rec.shape[0]):
        exp = reference(rec[u], set(rel[u].tolist()), k)
        for name, value in exp.items():
            assert got[f"{name}@{k}"][u] == pytest.approx(value, rel=1e-12, abs=1e-12), (name, u)
    for key, values in got.items():
        assert values.shape == (rec.shape[0],)
        assert np.all((values >= 0) & (values <= 1 + 1e-12)), key


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_ndcg_is_one_when_the_top_k_is_exactly_the_relevant_set(data):
    n_items = data.draw(st.integers(1, 40))
    rel = data.draw(st.sets(st.integers(0, n_items - 1), min_size=1))
    k = data.draw(st.integers(len(rel), len(rel) + 10))
    order = data.draw(st.permutations(sorted(rel)))
    others = [i for i in range(n_items) if i not in rel]
    filler = (
        data.draw(st.lists(st.sampled_from(others + [-1]), min_size=k - len(rel), max_size=k - len(rel)))
        if others
        else [-1] * (k - len(rel))
    )
    rec = np.array([list(order) + filler])
    r = m.per_user_metrics(rec, [np.array(sorted(rel))], k)
    for name in ("ndcg", "recall", "map", "mrr", "hr"):
        assert r[f"{name}@{k}"][0] == approx(1.0), name
    assert r[f"precision@{k}"][0] == approx(len(rel) / k)


# --------------------------------------------------------------------------- scale


def test_100k_users_at_k200_is_correct():
    # Correctness at scale only; speed belongs in benchmarks, not in timed assertions.
    rng = np.random.default_rng(7)
    n_users, width, n_items = 100_000, 200, 20_000
    # distinct items per row: a random offset plus a per-row random stride coprime to n_items
    start = rng.integers(0, n_items, size=(n_users, 1))
    rec = (start + np.arange(width) * 7919) % n_items
    n_rel = rng.integers(1, 20, size=n_users)
    users = np.repeat(np.arange(n_users), n_rel)
    items = rng.integers(0, n_items, size=users.size)
    planted = rng.random(users.size) < 0.3
    items[planted] = rec[users[planted], rng.integers(0, width, planted.sum())]
    csr = sp.csr_matrix((np.ones(users.size), (users, items)), shape=(n_users, n_items))

    got = m.per_user_metrics(rec, csr, 200)

    indptr, indices = csr.indptr, csr.indices
    for u in rng.choice(n_users, size=200, replace=False):
        exp = reference(rec[u], set(indices[indptr[u] : indptr[u + 1]].tolist()), 200)
        for name, value in exp.items():
            assert got[f"{name}@200"][u] == pytest.approx(value, rel=1e-12, abs=1e-12)
    assert got["hr@200"].mean() > 0.5  # the planted hits were found


def test_cached_resample_counts_give_the_drawn_resample_means():
    """The bootstrap's cached count matrix resamples exactly the users a direct draw would
    (same seed, same draws): the same means up to float summation order, for any values."""
    rng = np.random.default_rng(8)
    for n in (1, 5, 300, 5000):
        values = rng.random(n)
        for seed in (0, 3):
            drawn = m._draw_means(values, 200, seed)
            np.testing.assert_allclose(m._bootstrap_means(values, 200, seed), drawn, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(
                m._bootstrap_means(values * -2.5, 200, seed), drawn * -2.5, rtol=1e-12, atol=1e-14
            )


def test_popularity_bias_metrics_on_constructed_lists():
    lists = np.array([[0, 1, -1], [0, 2, 3]])  # -1 = padding
    popularity = np.array([10.0, 5.0, 0.0, 1.0, 0.0])
    assert m.average_popularity(lists, popularity, 3) == pytest.approx((10 + 5 + 10 + 0 + 1) / 5)
    assert m.short_head(popularity).tolist() == [True, False, False, False, False]  # top 20% of 5 items
    assert m.long_tail_share(lists, popularity, 3) == pytest.approx(3 / 5)
    assert m.long_tail_share(lists, popularity, 1) == 0.0  # both lists open with the head item
    # exposure [2, 1, 1, 1, 0] over 5 items
    assert m.exposure_gini(lists, 5, 3) == pytest.approx(0.32)
    assert m.exposure_gini(np.arange(5)[:, None], 5, 1) == pytest.approx(0.0)  # everyone shown once
    assert m.exposure_gini(np.zeros((4, 1), np.int64), 5, 1) == pytest.approx(0.8)  # one item: (n-1)/n
    assert np.isnan(m.average_popularity(np.full((2, 3), -1), popularity, 3))
    with pytest.raises(ValueError, match="outside the catalog"):
        m.exposure_gini(np.array([[7]]), 5, 1)
