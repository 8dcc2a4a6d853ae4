"""Fusion of recall channels into one candidate list per user.

Reciprocal-rank fusion: score(u, i) = Σ_c w_c / (rrf_k + rank_c(u, i)), ranks 1-based,
an item absent from a channel's top list contributes nothing. Weighted fusion: each
channel's scores are min-max normalised with the p01/p99 of its score range recorded at
training (clipped to [0, 1]), then summed with the channel weights. Both keep every
candidate's per-channel rank for the ranker.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import scipy.sparse as sp

RRF_K = 60


def _channel_matrix(items: np.ndarray, values: np.ndarray, n_items: int) -> sp.csr_matrix:
    n_users, k = items.shape
    rows = np.repeat(np.arange(n_users), k)
    valid = items.ravel() >= 0
    return sp.csr_matrix((values.ravel()[valid], (rows[valid], items.ravel()[valid])), shape=(n_users, n_items))


def _top_k(matrix: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns per row of a sparse score matrix (missing = -1 / nan), ties by item index.
    One lexsort over all stored entries (row, -score, column): no Python loop per user."""
    matrix.sum_duplicates()
    n = matrix.shape[0]
    items = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), np.nan, dtype=np.float64)
    rows = np.repeat(np.arange(n), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    position = np.arange(order.size) - matrix.indptr[rows[order]]  # 0-based rank inside the row
    keep = position < k
    chosen = order[keep]
    items[rows[chosen], position[keep]] = matrix.indices[chosen]
    scores[rows[chosen], position[keep]] = matrix.data[chosen]
    return items, scores


def fuse(
    channels: dict[str, tuple[np.ndarray, np.ndarray]],
    n_items: int,
    k: int,
    score_ranges: dict[str, tuple[float, float]] | None = None,
    weights: dict[str, float] | None = None,
    rrf_k: int = RRF_K,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """channels: name -> (items (n_users × L), scores) for the same users in the same order.
    Returns {"rrf": (items, scores), "weighted": (items, scores)} with top-k per user."""
    weights = weights or {}
    if channels and all(float(weights.get(name, 1.0)) > 0 for name in channels):
        return _fuse_positive(channels, n_items, k, score_ranges, weights, rrf_k)
    rrf: Any = None  # a scipy sparse matrix once a channel is added (None without channels)
    weighted = None
    for name, (items, scores) in channels.items():
        w = float(weights.get(name, 1.0))
        ranks = np.broadcast_to(np.arange(1, items.shape[1] + 1, dtype=np.float64), items.shape)
        part = _channel_matrix(items, w / (rrf_k + ranks), n_items)
        rrf = part if rrf is None else rrf + part
        if score_ranges and name in score_ranges:
            lo, hi = score_ranges[name]
            norm = np.clip((scores.astype(np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
            # +1e-9 keeps an item with normalised score 0 as a stored candidate
            part = _channel_matrix(items, w * norm + 1e-9, n_items)
            weighted = part if weighted is None else weighted + part
    out = {"rrf": _top_k(rrf.tocsr(), k)}
    if weighted is not None:
        out["weighted"] = _top_k(weighted.tocsr(), k)
    return out


def _fuse_positive(
    channels: dict[str, tuple[np.ndarray, np.ndarray]],
    n_items: int,
    k: int,
    score_ranges: dict[str, tuple[float, float]] | None,
    weights: dict[str, float],
    rrf_k: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """fuse() when every weight is positive: every RRF contribution is then > 0, so no sum is
    zero and the sparse sums keep exactly the listed (user, item) pairs. Each pair's
    contributions are added in channel order, as the chain of sparse additions does (the same
    floats), without building a sparse matrix per channel (which costs more than fusing a
    request's few lists)."""
    n_users = next(iter(channels.values()))[0].shape[0]
    keys, values = [], []
    for name, (items, _) in channels.items():
        w = float(weights.get(name, 1.0))
        ranks = np.broadcast_to(np.arange(1, items.shape[1] + 1, dtype=np.float64), items.shape)
        listed = items >= 0
        rows = np.broadcast_to(np.arange(n_users, dtype=np.int64)[:, None], items.shape)
        keys.append(rows[listed] * n_items + items[listed])
        values.append((w / (rrf_k + ranks))[listed])
    pairs, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    sums = np.zeros(len(pairs), np.float64)
    np.add.at(sums, inverse.ravel(), np.concatenate(values))  # in order: channel by channel
    out = {"rrf": _top_k_entries(pairs // n_items, pairs % n_items, sums, n_users, k)}
    if score_ranges and any(name in score_ranges for name in channels):
        weighted = None
        for name, (items, scores) in channels.items():
            if name not in score_ranges:
                continue
            w = float(weights.get(name, 1.0))
            lo, hi = score_ranges[name]
            norm = np.clip((scores.astype(np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
            # +1e-9 keeps an item with normalised score 0 as a stored candidate
            part = _channel_matrix(items, w * norm + 1e-9, n_items)
            weighted = part if weighted is None else weighted + part
        out["weighted"] = _top_k(cast(sp.csr_matrix, weighted).tocsr(), k)
    return out


def _top_k_entries(
    rows: np.ndarray, cols: np.ndarray, data: np.ndarray, n: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """_top_k of the matrix whose stored entries are (rows, cols, data), (row, col) unique."""
    items = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), np.nan, dtype=np.float64)
    order = np.lexsort((cols, -data, rows))
    counts = np.bincount(rows, minlength=n)
    starts = np.cumsum(counts) - counts
    position = np.arange(order.size) - starts[rows[order]]  # 0-based rank inside the row
    keep = position < k
    chosen = order[keep]
    items[rows[chosen], position[keep]] = cols[chosen]
    scores[rows[chosen], position[keep]] = data[chosen]
    return items, scores


def channel_ranks(channels: dict[str, tuple[np.ndarray, np.ndarray]], candidates: np.ndarray) -> dict[str, np.ndarray]:
    """Per channel, the 1-based rank of each candidate (users × k) in that channel's list, 0 if absent.
    A (user row, item) key lookup by binary search: O(n log n), not a pass per list position."""
    n_users = candidates.shape[0]
    stride = np.int64(max(int(candidates.max(initial=-1)), *(int(i.max(initial=-1)) for i, _ in channels.values())) + 2)
    row = np.arange(n_users, dtype=np.int64)[:, None]
    wanted = row * stride + (candidates + 1)
    out = {}
    for name, (items, _) in channels.items():
        listed = items >= 0
        keys = (row * stride + (items + 1))[listed]
        positions = np.broadcast_to(np.arange(1, items.shape[1] + 1, dtype=np.int32), items.shape)[listed]
        order = np.argsort(keys, kind="stable")
        keys, positions = keys[order], positions[order]
        # a channel lists an item once per user; with duplicates the first (best) position wins
        first = np.ones(keys.size, bool)
        first[1:] = keys[1:] != keys[:-1]
        keys, positions = keys[first], positions[first]
        at = np.minimum(np.searchsorted(keys, wanted), max(keys.size - 1, 0))
        found = (keys.size > 0) & (candidates >= 0)
        found &= keys[at] == wanted if keys.size else False
        out[name] = np.where(found, positions[at] if keys.size else 0, 0).astype(np.int32)
    return out


def fuse_zscore(
    channels: dict[str, tuple[np.ndarray, np.ndarray]], n_items: int, k: int, weights: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted score fusion with per-user z-score normalisation of each channel's list.

    channels: name -> (items (n_users × L), scores), the same users in the same order; an entry
    with item < 0 or a non-finite score is absent. For user u and channel c, the finite scores of
    c's list are standardised, z = (s - mean) / std over that list (std 0 -> every z = 0), and
    floor_c(u) = the lowest z of the list. fused(u, i) = Σ_c w_c · z_c(u, i), where an item absent
    from c's list counts as floor_c(u) (as good as c's last listed item, never better); a channel
    with an empty list for u contributes nothing. Weights default to 1; a weight of 0 drops the
    channel. Returns the top-k (items, fused scores) per user, best first, ties by item index,
    missing = -1 / nan. Unlike `fuse`'s weighted fusion this needs no training score range: the
    scale is each user's own list, so channels with different score scales weigh as their weights.
    """
    weights = weights or {}
    total, offset = None, None
    for name, (items, scores) in channels.items():
        w = float(weights.get(name, 1.0))
        if w == 0.0:
            continue
        items = np.asarray(items)
        values = np.asarray(scores, dtype=np.float64)
        valid = (items >= 0) & np.isfinite(values)
        count = valid.sum(axis=1)
        masked = np.where(valid, values, 0.0)
        mean = masked.sum(axis=1) / np.maximum(count, 1)
        var = np.where(valid, (values - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(count, 1)
        std = np.sqrt(var)
        z = np.where(valid, (values - mean[:, None]) / np.where(std > 0, std, 1.0)[:, None], np.inf)
        floor = np.where(count > 0, z.min(axis=1), 0.0)
        floor = np.where(np.isfinite(floor), floor, 0.0)
        # the part above the floor is sparse (listed items only); +1e-9 keeps an item at the floor stored
        above = np.where(valid, w * (z - floor[:, None]) + 1e-9, 0.0)
        part = _channel_matrix(np.where(valid, items, -1), above, n_items)
        total = part if total is None else total + part
        offset = w * floor if offset is None else offset + w * floor
    if total is None:
        n_users = next(iter(channels.values()))[0].shape[0] if channels else 0
        return np.full((n_users, k), -1, dtype=np.int64), np.full((n_users, k), np.nan)
    assert offset is not None  # set with total, channel by channel
    items, fused = _top_k(total.tocsr(), k)
    return items, fused + offset[:, None]
