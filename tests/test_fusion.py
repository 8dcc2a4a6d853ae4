import numpy as np
import pytest

from recsys_assets.core.fusion import channel_ranks, fuse


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
