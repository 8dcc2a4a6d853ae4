"""Re-ranking of one user's scored list: business rules and MMR diversification.

Each rule is a small pure function over parallel arrays (items, scores) and returns new
arrays; rerank() composes them in a fixed, documented order:
  1. remove_seen       - drop items the user already watched
  2. freshness_boost   - optional: add boost * 0.5 ** (age_days / half_life) to new items
  3. popularity_debias - optional: subtract beta * log1p(popularity)
  4. mmr               - greedy Maximal Marginal Relevance, lambda * relevance - (1 - lambda) * max similarity
  5. cap_per_genre     - at most `cap` items sharing a primary genre in the final list
Scores are min-max normalised per list before MMR so lambda means the same for any ranker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def remove_seen(items: np.ndarray, scores: np.ndarray, seen: set[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = ~np.isin(items, np.fromiter(seen, np.int64) if isinstance(seen, set) else np.asarray(seen, np.int64))
    return items[keep], scores[keep]


def freshness_boost(
    items: np.ndarray, scores: np.ndarray, age_days: np.ndarray, boost: float, half_life_days: float = 7.0
) -> tuple[np.ndarray, np.ndarray]:
    """age_days is aligned with items (NaN = unknown age: no boost)."""
    if boost == 0:
        return items, scores
    bonus = boost * np.power(0.5, np.nan_to_num(np.asarray(age_days, np.float64), nan=np.inf) / half_life_days)
    return items, scores + bonus


def popularity_debias(
    items: np.ndarray, scores: np.ndarray, popularity: np.ndarray, beta: float
) -> tuple[np.ndarray, np.ndarray]:
    """popularity is aligned with items (e.g. positives in the last 28 days)."""
    if beta == 0:
        return items, scores
    return items, scores - beta * np.log1p(np.maximum(np.nan_to_num(np.asarray(popularity, np.float64)), 0.0))


def _normalise(scores: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(scores)), float(np.max(scores))
    return np.ones_like(scores, np.float64) if hi <= lo else (scores - lo) / (hi - lo)


def mmr(
    items: np.ndarray, scores: np.ndarray, similarity: np.ndarray, lam: float, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy MMR: repeatedly pick argmax lam * rel(i) - (1 - lam) * max_{j picked} sim(i, j).
    similarity is the items x items matrix of this list; lam = 1 keeps the score order.
    Returns the picked items with their original scores, in pick order."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"MMR lambda must be in [0, 1], got {lam}")
    n = len(items)
    k = min(k, n)
    if n == 0 or k == 0:
        return items[:0], scores[:0]
    rel = _normalise(np.asarray(scores, np.float64))
    picked = np.empty(k, np.int64)
    max_sim = np.zeros(n)
    available = np.ones(n, bool)
    for step in range(k):
        value = np.where(available, lam * rel - (1 - lam) * max_sim, -np.inf)
        best = int(np.argmax(value))
        picked[step] = best
        available[best] = False
        max_sim = np.maximum(max_sim, similarity[best])
    return items[picked], scores[picked]


def cap_per_genre(items: np.ndarray, scores: np.ndarray, genre: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep list order, dropping an item once `cap` earlier items share its primary genre
    (items without a genre are never capped)."""
    if cap <= 0:
        return items, scores
    counts: dict = {}
    keep = np.ones(len(items), bool)
    for i, g in enumerate(genre):
        if g is None:
            continue
        counts[g] = counts.get(g, 0) + 1
        keep[i] = counts[g] <= cap
    return items[keep], scores[keep]


@dataclass(frozen=True)
class RerankRules:
    mmr_lambda: float = 0.8
    genre_cap: int = 4
    freshness_boost: float = 0.0
    freshness_half_life_days: float = 7.0
    popularity_beta: float = 0.0


def genre_similarity(genre_vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of rows of an items x genres 0/1 matrix (items without genres: 0)."""
    v = np.asarray(genre_vectors, np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    return v @ v.T


def rerank(
    items: np.ndarray,
    scores: np.ndarray,
    k: int,
    rules: RerankRules,
    *,
    seen=(),
    genre_vectors: np.ndarray,
    primary_genre: np.ndarray,
    age_days: np.ndarray,
    popularity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """All rules in order. The per-item arrays (genre_vectors rows, primary_genre, age_days,
    popularity) are aligned with `items`."""
    items = np.asarray(items, np.int64)
    scores = np.asarray(scores, np.float64)
    # Rules run on positions into `items`, so the aligned per-item arrays follow along.
    index, scores = remove_seen(
        np.arange(len(items)), scores, np.flatnonzero(np.isin(items, np.asarray(list(seen), np.int64)))
    )
    _, scores = freshness_boost(
        index, scores, np.asarray(age_days, np.float64)[index], rules.freshness_boost, rules.freshness_half_life_days
    )
    _, scores = popularity_debias(index, scores, np.asarray(popularity, np.float64)[index], rules.popularity_beta)
    # MMR over a generous prefix, so the genre cap still has items to fall back on
    pool = min(len(index), max(k * 3, k + 10))
    order = np.argsort(-scores, kind="stable")[:pool]
    index, scores = index[order], scores[order]
    sim = genre_similarity(np.asarray(genre_vectors)[index])
    picked_local, picked_scores = mmr(np.arange(len(index)), scores, sim, rules.mmr_lambda, len(index))
    index = index[picked_local]
    index, picked_scores = cap_per_genre(
        index, picked_scores, np.asarray(primary_genre, object)[index], rules.genre_cap
    )
    return items[index[:k]], picked_scores[:k]


def rerank_batch(
    items: np.ndarray,
    scores: np.ndarray,
    k: int,
    rules: RerankRules,
    *,
    valid: np.ndarray,
    genre_vectors: np.ndarray,
    primary_genre: np.ndarray,
    age_days: np.ndarray,
    popularity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """rerank() for many users at once, vectorised over users: row u of the (users × P) arrays
    is one user's list, `valid` False where the slot is padding or a watched item. Per-item
    arrays are aligned with `items`: genre_vectors (users × P × genres), primary_genre as
    integer codes (-1 = no genre), age_days and popularity. Each row's result equals rerank()
    on that row's valid entries. Returns (items, scores), users × k, padded with -1 / NaN."""
    items = np.asarray(items, np.int64)
    n_users, width = items.shape
    valid = np.asarray(valid, bool)
    scores = np.asarray(scores, np.float64)
    if rules.freshness_boost != 0:
        scores = scores + rules.freshness_boost * np.power(
            0.5, np.nan_to_num(np.asarray(age_days, np.float64), nan=np.inf) / rules.freshness_half_life_days
        )
    if rules.popularity_beta != 0:
        scores = scores - rules.popularity_beta * np.log1p(
            np.maximum(np.nan_to_num(np.asarray(popularity, np.float64)), 0.0)
        )
    if not 0.0 <= rules.mmr_lambda <= 1.0:
        raise ValueError(f"MMR lambda must be in [0, 1], got {rules.mmr_lambda}")
    out_items = np.full((n_users, k), -1, np.int64)
    out_scores = np.full((n_users, k), np.nan)
    if n_users == 0 or width == 0 or k == 0:
        return out_items, out_scores
    # the MMR pool: each row's valid entries, best score first (ties: list order), cut like rerank()
    order = np.lexsort((np.where(valid, -scores, 0.0), ~valid), axis=1)
    pool_n = np.minimum(valid.sum(axis=1), max(k * 3, k + 10))
    pool_width = int(pool_n.max())
    if pool_width == 0:
        return out_items, out_scores
    order = order[:, :pool_width]
    in_pool = np.arange(pool_width)[None, :] < pool_n[:, None]
    rows = np.arange(n_users)[:, None]
    pool_scores = scores[rows, order]
    lo = np.where(in_pool, pool_scores, np.inf).min(axis=1, keepdims=True)
    hi = np.where(in_pool, pool_scores, -np.inf).max(axis=1, keepdims=True)
    flat = hi <= lo
    rel = np.where(flat, 1.0, (pool_scores - lo) / np.where(flat, 1.0, hi - lo))
    vectors = np.asarray(genre_vectors, np.float64)[rows, order]
    norms = np.linalg.norm(vectors, axis=2, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    # greedy MMR, one pick per step for every row at once
    lam = rules.mmr_lambda
    picked = np.full((n_users, pool_width), -1, np.int64)
    max_sim = np.zeros((n_users, pool_width))
    available = in_pool.copy()
    every = np.arange(n_users)
    if n_users == 1:  # one request's list: the same steps on its row (a step costs a third)
        _mmr_row(picked[0], available[0], rel[0], vectors[0], lam)
    for step in range(pool_width if n_users > 1 else 0):
        value = np.where(available, lam * rel - (1 - lam) * max_sim, -np.inf)
        best = np.argmax(value, axis=1)
        live = available[every, best]
        picked[live, step] = best[live]
        available[every[live], best[live]] = False
        max_sim = np.maximum(max_sim, np.einsum("uwg,ug->uw", vectors, vectors[every, best]))
    # genre cap on the MMR order: an item is kept while its primary genre has <= cap picks so far
    slots = picked >= 0
    pick_pos = np.where(slots, order[rows, np.maximum(picked, 0)], 0)
    keep = slots.copy()
    if rules.genre_cap > 0:
        codes = np.where(slots, np.asarray(primary_genre)[rows, pick_pos], -1)
        r, s = np.nonzero(codes >= 0)
        c = codes[r, s]
        sort = np.lexsort((s, c, r))
        r, s, c = r[sort], s[sort], c[sort]
        new_group = np.r_[True, (r[1:] != r[:-1]) | (c[1:] != c[:-1])]
        start = np.maximum.accumulate(np.where(new_group, np.arange(len(r)), 0))
        keep[r, s] = (np.arange(len(r)) - start) < rules.genre_cap
    rank = np.cumsum(keep, axis=1) - 1
    put = keep & (rank < k)
    r, s = np.nonzero(put)
    out_items[r, rank[r, s]] = items[r, pick_pos[r, s]]
    out_scores[r, rank[r, s]] = scores[r, pick_pos[r, s]]
    return out_items, out_scores


def _mmr_row(picked: np.ndarray, available: np.ndarray, rel: np.ndarray, vectors: np.ndarray, lam: float) -> None:
    """rerank_batch's greedy MMR on one row (filled in place): each step picks the available
    entry of best lam * rel - (1 - lam) * max similarity to the picks so far."""
    max_sim = np.zeros(len(rel))
    available = available.copy()
    for step in range(len(rel)):
        best = int(np.argmax(np.where(available, lam * rel - (1 - lam) * max_sim, -np.inf)))
        if not available[best]:
            return
        picked[step] = best
        available[best] = False
        max_sim = np.maximum(max_sim, np.einsum("wg,g->w", vectors, vectors[best]))
