import numpy as np
import pytest

from recsys_assets.core.fusion import channel_ranks, fuse, fuse_zscore


def test_rrf_by_hand():
    # user 0: channel a ranks [5, 7, 9], channel b ranks [7, 5, 3]
    a = (np.array([[5, 7, 9]]), np.array([[3.0, 2.0, 1.0]]))
    b = (np.array([[7, 5, 3]]), np.array([[0.9, 0.8, 0.1]]))
    out = fuse({"a": a, "b": b}, n_items=10, k=4, score_ranges={"a": (1.0, 3.0), "b": (0.1, 0.9)})
    items, scores = out["rrf"]
    # 5: 1/61 + 1/62, 7: 1/62 + 1/61 -> tie broken by item index; 9: 1/63, 3: 1/63
    assert items[0].tolist() == [5, 7, 3, 9]
    assert scores[0, 0] == pytest.approx(1 / 61 + 1 / 62)
    w_items, w_scores = out["weighted"]
    # weighted: 5 -> 1.0 + 0.875, 7 -> 0.5 + 1.0, 3 -> 0, 9 -> 0
    assert w_items[0, :2].tolist() == [5, 7]
    assert w_scores[0, 0] == pytest.approx(1.875, abs=1e-6)


def test_channel_weights_and_ranks():
    a = (np.array([[1, 2]]), np.array([[2.0, 1.0]]))
    b = (np.array([[2, 3]]), np.array([[2.0, 1.0]]))
    items, _ = fuse({"a": a, "b": b}, n_items=5, k=3, weights={"a": 0.0, "b": 1.0})["rrf"]
    assert items[0, :2].tolist() == [2, 3]
    ranks = channel_ranks({"a": a, "b": b}, np.array([[2, 3, 1]]))
    assert ranks["a"].tolist() == [[2, 0, 1]] and ranks["b"].tolist() == [[1, 2, 0]]


def test_padding_and_short_lists():
    a = (np.array([[4, -1]]), np.array([[1.0, np.nan]]))
    items, scores = fuse({"a": a}, n_items=6, k=3)["rrf"]
    assert items[0].tolist() == [4, -1, -1] and np.isnan(scores[0, 1])


def _zscore_example():
    # a: scores 3, 2, 1 -> mean 2, std sqrt(2/3): z = +1.2247, 0, -1.2247 (floor -1.2247)
    # b: scores 10, 0 -> mean 5, std 5: z = +1, -1 (floor -1)
    a = (np.array([[0, 1, 2]]), np.array([[3.0, 2.0, 1.0]]))
    b = (np.array([[2, 3]]), np.array([[10.0, 0.0]]))
    return a, b


def test_zscore_fusion_by_hand():
    a, b = _zscore_example()
    z = np.sqrt(1.5)
    items, scores = fuse_zscore({"a": a, "b": b}, n_items=5, k=5)
    # 0: z + floor_b, 2: -z + 1, 1: 0 + floor_b, 3: floor_a - 1; item 4 is in no list
    assert items[0].tolist() == [0, 2, 1, 3, -1]
    np.testing.assert_allclose(scores[0, :4], [z - 1, 1 - z, -1, -z - 1], atol=1e-6)
    assert np.isnan(scores[0, 4])
    # weights: b counts three times as much, so b's top item wins
    items, scores = fuse_zscore({"a": a, "b": b}, n_items=5, k=2, weights={"b": 3.0})
    assert items[0].tolist() == [2, 0]
    np.testing.assert_allclose(scores[0], [3 - z, z - 3], atol=1e-6)


def test_zscore_fusion_is_scale_free_and_weight_zero_drops():
    a, b = _zscore_example()
    base = fuse_zscore({"a": a, "b": b}, n_items=5, k=4)
    scaled = fuse_zscore({"a": a, "b": (b[0], 1000.0 * b[1] - 7.0)}, n_items=5, k=4)
    assert base[0].tolist() == scaled[0].tolist()
    np.testing.assert_allclose(base[1], scaled[1], atol=1e-6)
    only_a = fuse_zscore({"a": a, "b": b}, n_items=5, k=3, weights={"b": 0.0})
    assert only_a[0].tolist() == [[0, 1, 2]]


def test_zscore_fusion_absent_entries_and_constant_lists():
    # user 0: padding (-1) and a -inf score are absent; user 1: a constant list (std 0 -> z 0);
    # user 2: an empty list in a contributes nothing, b alone decides
    a = (
        np.array([[3, -1, 1], [0, 1, 2], [-1, -1, -1]]),
        np.array([[5.0, np.nan, -np.inf], [2.0, 2.0, 2.0], [np.nan, np.nan, np.nan]]),
    )
    b = (np.array([[1, 0, 2], [2, 3, 4], [4, 3, 0]]), np.array([[1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [3.0, 2.0, 1.0]]))
    items, scores = fuse_zscore({"a": a, "b": b}, n_items=6, k=3)
    # user 0: a has one finite score (item 3: z 0 = its floor), so b decides: 1 (z 1.22),
    # 0 (z 0), then 2 and 3 tie at b's floor -1.22 and the lower index wins
    assert items[0].tolist() == [1, 0, 2]
    np.testing.assert_allclose(scores[0], [np.sqrt(1.5), 0.0, -np.sqrt(1.5)], atol=1e-6)
    # user 1: a is flat (every z 0 = its floor), b orders 2 > 3; 4 (b's floor) ties with 0
    # (absent from b) and the lower index wins
    assert items[1].tolist() == [2, 3, 0]
    assert items[2].tolist() == [4, 3, 0]
    assert np.all(np.isfinite(scores))


def test_vectorised_top_k_and_channel_ranks_match_a_per_user_loop():
    """The vectorised fusion helpers give exactly what a per-user reference loop gives."""
    import scipy.sparse as sp

    from recsys_assets.core.fusion import _top_k

    rng = np.random.default_rng(7)
    n_users, n_items, length = 300, 80, 15
    channels = {}
    for name in ("a", "b", "c"):
        items = np.stack([rng.choice(n_items, length, replace=False) for _ in range(n_users)])
        items[rng.random(items.shape) < 0.1] = -1  # some lists are shorter
        channels[name] = (items, rng.random(items.shape).astype(np.float32))
    fused_items, _ = fuse(channels, n_items, 20)["rrf"]
    for name, ranks in channel_ranks(channels, fused_items).items():
        items = channels[name][0]
        for u in range(n_users):
            expected = [list(items[u]).index(i) + 1 if i >= 0 and i in items[u] else 0 for i in fused_items[u]]
            assert ranks[u].tolist() == expected

    scores = sp.random(n_users, n_items, density=0.2, random_state=3, format="csr")
    scores.data = np.round(scores.data * 4) / 4  # many ties: broken by item index
    top_items, top_scores = _top_k(scores.copy(), 10)
    for u in range(n_users):
        row = scores.getrow(u)
        order = sorted(zip(-row.data, row.indices, strict=False))[:10]
        assert top_items[u, : len(order)].tolist() == [int(i) for _, i in order]
        assert np.allclose(top_scores[u, : len(order)], [-v for v, _ in order])
        assert (top_items[u, len(order) :] == -1).all()
