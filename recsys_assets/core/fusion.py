"""Fusion of recall channels into one candidate list per user.

Reciprocal-rank fusion: score(u, i) = Σ_c w_c / (rrf_k + rank_c(u, i)), ranks 1-based,
an item absent from a channel's top list contributes nothing. Weighted fusion: each
channel's scores are min-max normalised with the p01/p99 of its score range recorded at
training (clipped to [0, 1]), then summed with the channel weights. Both keep every
candidate's per-channel rank for the ranker.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

RRF_K = 60


def _channel_matrix(items: np.ndarray, values: np.ndarray, n_items: int) -> sp.csr_matrix:
    n_users, k = items.shape
    rows = np.repeat(np.arange(n_users), k)
    valid = items.ravel() >= 0
    return sp.csr_matrix((values.ravel()[valid], (rows[valid], items.ravel()[valid])), shape=(n_users, n_items))


def _top_k(matrix: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns per row of a sparse score matrix (missing = -1 / nan), ties by item index."""
    n = matrix.shape[0]
    items = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), np.nan, dtype=np.float64)
    for u in range(n):  # rows hold at most (channels × list length) entries
        start, end = matrix.indptr[u], matrix.indptr[u + 1]
        cols, vals = matrix.indices[start:end], matrix.data[start:end]
        order = np.lexsort((cols, -vals))[:k]
        items[u, :len(order)] = cols[order]
        scores[u, :len(order)] = vals[order]
    return items, scores


def fuse(channels: dict[str, tuple[np.ndarray, np.ndarray]], n_items: int, k: int,
         score_ranges: dict[str, tuple[float, float]] | None = None, weights: dict[str, float] | None = None,
         rrf_k: int = RRF_K) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """channels: name -> (items (n_users × L), scores) for the same users in the same order.
    Returns {"rrf": (items, scores), "weighted": (items, scores)} with top-k per user."""
    weights = weights or {}
    rrf = weighted = None
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


def channel_ranks(channels: dict[str, tuple[np.ndarray, np.ndarray]], candidates: np.ndarray) -> dict[str, np.ndarray]:
    """Per channel, the 1-based rank of each candidate (users × k) in that channel's list, 0 if absent."""
    out = {}
    for name, (items, _) in channels.items():
        ranks = np.zeros(candidates.shape, dtype=np.int32)
        for pos in range(items.shape[1]):
            ranks[(candidates == items[:, pos:pos + 1]) & (candidates >= 0)] = pos + 1
        out[name] = ranks
    return out
