"""Offline top-K recommendation metrics (plain numpy / scipy, no Dagster import).

Protocol
--------
Full-catalog ranking: for every evaluated user the model ranks the whole catalog, the caller
removes items the user has already seen (training interactions) and keeps the top ``K``.
``recommended`` is then an ``(n_users, width)`` integer array of item indices, best first;
``-1`` marks padding (a user with fewer than ``width`` candidates). ``relevant`` holds the
held-out positives of the same users, either as a list of per-user index arrays or as a
``scipy.sparse`` users x items matrix (stored non-zero = relevant). Users without any relevant
item must be dropped by the caller: they would make recall / nDCG / MAP undefined, and silently
scoring them 0 (or skipping them) would bias the means, so a ``ValueError`` is raised instead.

Definitions (per user, binary relevance, ``rel`` = set of relevant items, ``|rel| >= 1``;
``hit_i = 1`` if the item at 1-based position ``i <= k`` is in ``rel``, else 0)
------------------------------------------------------------------------------------------
* ``recall@k    = sum_i hit_i / |rel|``
* ``precision@k = sum_i hit_i / k``
* ``hr@k        = 1 if sum_i hit_i > 0 else 0``            (hit rate)
* ``ndcg@k      = DCG@k / IDCG@k`` with ``DCG@k = sum_i hit_i / log2(i + 1)`` and
  ``IDCG@k = sum_{i=1}^{min(|rel|, k)} 1 / log2(i + 1)``
* ``map@k       = (1 / min(|rel|, k)) * sum_i hit_i * precision@i`` (``precision@i`` = hits in
  the first ``i`` positions / ``i``)
* ``mrr@k       = 1 / (position of the first hit)`` if there is a hit within the top k, else 0

Conventions
-----------
* Position = column index + 1. A ``-1`` is never a hit; padding is expected at the tail, a
  ``-1`` in the middle of a list still occupies its slot (later items keep their column rank).
* ``k`` larger than the list width: the missing positions count as padding (no hit); the
  denominators stay as defined (``precision@k`` still divides by ``k``).
* An item recommended twice to the same user counts once (at its first, best position); the
  repeated slot is a wasted miss. So ``hits <= min(|rel|, k)`` and every metric is in [0, 1].
* Duplicate relevant entries count once; explicit zeros in a sparse ``relevant`` are not
  relevant.

Implementation: hits are found with one vectorised membership test of the keys
``user * M + item + 1`` against the sorted relevant keys (a bit-table hash prefilter, then an
exact ``searchsorted`` check of the few candidates), in row chunks that stay in cache; the
metrics are then ``bincount`` reductions over the hit coordinates. No per-user Python loop
(except converting a *list* ``relevant`` input, which is one ``np.concatenate``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

KS = (10, 20, 50, 100, 200)

METRIC_NAMES = ("recall", "precision", "hr", "ndcg", "map", "mrr")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier
_CHUNK_ELEMENTS = 1 << 16  # recommended cells per membership-test chunk (cache sized)
_BOOT_CHUNK_ELEMENTS = 1 << 21  # resampled cells per bootstrap chunk (memory bound)


# --------------------------------------------------------------------------- validation


def _check_k(k) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be a positive int, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def _as_recommended(recommended) -> np.ndarray:
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be 2-D (n_users, K), got shape {rec.shape}")
    if rec.dtype.kind not in "iu":
        if rec.size == 0 and rec.dtype.kind == "f":
            return rec.astype(np.int64)
        raise ValueError(f"recommended must hold integer item indices, got dtype {rec.dtype}")
    return rec


def _top(rec: np.ndarray, k: int) -> np.ndarray:
    """The first ``min(k, width)`` columns, validated (items >= 0, or -1 padding)."""
    top = rec[:, : min(k, rec.shape[1])]
    if top.size and top.dtype.kind == "i" and int(top.min()) < -1:
        raise ValueError("recommended items must be >= 0 (or -1 for padding)")
    return top


def _max_item(top: np.ndarray) -> int:
    return int(top.max()) if top.size else -1


def _relevant_pairs(relevant, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) int64 arrays of the relevant entries (duplicates possible)."""
    if sp.issparse(relevant):
        if relevant.shape[0] != n_users:
            raise ValueError(f"relevant matrix has {relevant.shape[0]} rows, recommended has {n_users} users")
        coo = relevant.tocoo()
        keep = coo.data != 0
        return coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64)
    if isinstance(relevant, np.ndarray) and relevant.dtype != object:
        raise TypeError(
            "relevant must be a list of per-user item arrays or a scipy.sparse matrix; "
            "a dense array is ambiguous (index lists or an indicator matrix?)"
        )
    rel = list(relevant)
    if len(rel) != n_users:
        raise ValueError(f"relevant has {len(rel)} users, recommended has {n_users}")
    if n_users == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    arrays = [np.asarray(list(x) if isinstance(x, (set, frozenset)) else x).ravel() for x in rel]
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=n_users)
    items = np.concatenate(arrays)
    if items.dtype.kind == "f":
        if items.size and not np.all(np.isfinite(items) & (items == np.floor(items))):
            raise ValueError("relevant items must be integer indices")
        items = items.astype(np.int64)
    elif items.dtype.kind not in "iu":
        raise ValueError(f"relevant items must be integer indices, got dtype {items.dtype}")
    items = items.astype(np.int64, copy=False)
    if items.size and int(items.min()) < 0:
        raise ValueError("relevant items must be >= 0")
    users = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    return users, items


class _Prepared:
    """Relevant keys and hit coordinates of one (recommended, relevant) pair at width kk."""

    __slots__ = ("n_users", "n_rel", "hit_user", "hit_pos")

    def __init__(self, n_users, n_rel, hit_user, hit_pos):
        self.n_users = n_users
        self.n_rel = n_rel
        self.hit_user = hit_user
        self.hit_pos = hit_pos


def _prepare(recommended, relevant, k_max: int) -> _Prepared:
    rec = _as_recommended(recommended)
    n_users = rec.shape[0]
    top = _top(rec, k_max)
    users, items = _relevant_pairs(relevant, n_users)

    # keys: user * M + item + 1 (the +1 maps the -1 padding to user * M, never a relevant key)
    m = max(_max_item(top), int(items.max()) if items.size else -1) + 2
    if n_users and n_users * m >= 2**62:
        raise ValueError("too many users x items for int64 keys")
    keys = np.sort(users * m + items + 1)
    if keys.size > 1:  # drop duplicate relevant entries (np.unique's hash path is slow here)
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    n_rel = np.bincount(keys // m, minlength=n_users).astype(np.int64)
    if n_users and n_rel.min() == 0:
        empty = np.flatnonzero(n_rel == 0)
        raise ValueError(
            f"{empty.size} user(s) have no relevant items (e.g. rows {empty[:5].tolist()}); "
            "exclude them before evaluating"
        )
    flat = _hit_flat_indices(top, keys, m)
    kk = top.shape[1]
    hit_user = flat // kk if kk else flat
    hit_pos = flat - hit_user * kk
    if flat.size:
        # an item repeated in a user's list counts once, at its first position; flat indices
        # are row-major so np.unique's first occurrence is the best position
        hit_keys = hit_user * m + top[hit_user, hit_pos].astype(np.int64)
        order = np.argsort(hit_keys, kind="stable")
        sorted_keys = hit_keys[order]
        repeated = order[1:][sorted_keys[1:] == sorted_keys[:-1]]
        if repeated.size:
            keep = np.ones(flat.size, dtype=bool)
            keep[repeated] = False
            hit_user, hit_pos = hit_user[keep], hit_pos[keep]
    return _Prepared(n_users, n_rel, hit_user, hit_pos)


def _hit_flat_indices(top: np.ndarray, keys: np.ndarray, m: int) -> np.ndarray:
    """Row-major flat indices of the cells of ``top`` whose (user, item) key is in ``keys``."""
    n, kk = top.shape
    if n == 0 or kk == 0 or keys.size == 0:
        return np.empty(0, np.int64)
    # bit table of ~16 bits per key: false-positive rate ~ 1/16, verified exactly below
    bits = int(min(33, max(10, math.ceil(math.log2(keys.size * 16)))))
    shift = np.uint64(64 - bits)
    h = ((keys.view(np.uint64) * _GOLDEN) >> shift).view(np.int64)
    table = np.zeros(1 << bits, dtype=bool)
    table[h] = True
    table = np.packbits(table, bitorder="little")
    three, seven = np.uint64(3), np.uint64(7)
    last = keys.size - 1

    rows = max(1, _CHUNK_ELEMENTS // kk)
    out = []
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        block = top[r0:r1].astype(np.int64, copy=False)
        q = (block + (np.arange(r0, r1, dtype=np.int64) * m + 1)[:, None]).reshape(-1)
        hq = q.view(np.uint64) * _GOLDEN
        hq >>= shift
        g = np.take(table, (hq >> three).view(np.int64), mode="wrap")
        g >>= (hq & seven).astype(np.uint8)
        g &= 1
        cand = np.flatnonzero(g)
        if cand.size:
            qc = q[cand]
            pos = np.searchsorted(keys, qc)
            np.minimum(pos, last, out=pos)
            found = cand[keys[pos] == qc]
            if found.size:
                out.append(found + r0 * kk)
    return np.concatenate(out) if out else np.empty(0, np.int64)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # position i -> 1/log2(i+1)


def _metrics_at(prep: _Prepared, k: int) -> dict[str, np.ndarray]:
    n = prep.n_users
    keep = prep.hit_pos < k
    u, p = prep.hit_user[keep], prep.hit_pos[keep]  # still sorted by (user, position)
    n_rel = prep.n_rel
    n_hits = np.bincount(u, minlength=n).astype(np.float64)
    disc = _discounts(k)
    cut = np.minimum(n_rel, k)  # >= 1 (checked in _prepare)

    dcg = np.bincount(u, weights=disc[p], minlength=n)
    idcg = np.cumsum(disc)[cut - 1] if n else np.empty(0)

    starts = (np.cumsum(n_hits) - n_hits).astype(np.int64)  # index of each user's first hit
    rank_among_hits = np.arange(u.size, dtype=np.float64) - starts[u] + 1.0
    ap = np.bincount(u, weights=rank_among_hits / (p + 1.0), minlength=n) / cut

    has = n_hits > 0
    mrr = np.zeros(n, dtype=np.float64)
    mrr[has] = 1.0 / (p[starts[has]] + 1.0)

    return {
        f"recall@{k}": n_hits / n_rel,
        f"precision@{k}": n_hits / k,
        f"hr@{k}": has.astype(np.float64),
        f"ndcg@{k}": dcg / idcg,
        f"map@{k}": ap,
        f"mrr@{k}": mrr,
    }


# --------------------------------------------------------------------------- ranking metrics


def per_user_metrics(
    recommended: np.ndarray, relevant: list[np.ndarray] | sp.csr_matrix, k: int
) -> dict[str, np.ndarray]:
    """Per-user recall/precision/hr/ndcg/map/mrr at ``k`` (float64 arrays of length n_users).

    Keys are ``"recall@{k}"``, ``"precision@{k}"``, ``"hr@{k}"``, ``"ndcg@{k}"``, ``"map@{k}"``
    and ``"mrr@{k}"``. See the module docstring for the exact definitions.
    """
    k = _check_k(k)
    return _metrics_at(_prepare(recommended, relevant, k), k)


def summarize(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean of every per-user metric array (``nan`` for an empty array)."""
    out = {}
    for name, values in per_user.items():
        values = np.asarray(values, dtype=np.float64)
        out[name] = float(values.mean()) if values.size else float("nan")
    return out


def evaluate(recommended, relevant, ks: Iterable[int] = KS) -> dict[str, float]:
    """Mean metrics for every ``k`` in ``ks`` (hits are computed once, at ``max(ks)``)."""
    ks = [_check_k(k) for k in ks]
    if not ks:
        raise ValueError("ks must not be empty")
    ks = list(dict.fromkeys(ks))
    prep = _prepare(recommended, relevant, max(ks))
    out: dict[str, float] = {}
    for k in ks:
        out.update(summarize(_metrics_at(prep, k)))
    return out


# --------------------------------------------------------------------------- beyond accuracy


def catalog_coverage(recommended: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalog (``n_items``) appearing in at least one top-k list (padding ignored)."""
    k = _check_k(k)
    n_items = int(n_items)
    if n_items < 1:
        raise ValueError("n_items must be >= 1")
    top = _top(_as_recommended(recommended), k)
    if top.size and _max_item(top) >= n_items:
        raise ValueError(f"recommended item {_max_item(top)} is outside the catalog of {n_items}")
    seen = np.zeros(n_items + 1, dtype=bool)
    seen[top.reshape(-1)] = True  # -1 lands in the spare last slot
    return float(np.count_nonzero(seen[:n_items]) / n_items)


def _popularity(item_popularity: np.ndarray) -> np.ndarray:
    pop = np.asarray(item_popularity, dtype=np.float64)
    if pop.ndim != 1 or pop.size == 0:
        raise ValueError("item_popularity must be a non-empty 1-D array of counts")
    if not np.all(np.isfinite(pop)) or pop.min() < 0:
        raise ValueError("item_popularity counts must be finite and >= 0")
    return pop


def _valid_top(recommended: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """The non-padding entries of the top-k lists, flattened (checked against the catalog)."""
    top = _top(_as_recommended(recommended), _check_k(k))
    if top.size and _max_item(top) >= n_items:
        raise ValueError(f"recommended item {_max_item(top)} is outside the catalog of {n_items}")
    return top[top >= 0]


def average_popularity(recommended: np.ndarray, item_popularity: np.ndarray, k: int) -> float:
    """Average recommended popularity (ARP): the mean training-interaction count of the items in
    the top-k lists, over every (user, position) entry (padding skipped; nan if none)."""
    pop = _popularity(item_popularity)
    items = _valid_top(recommended, pop.size, k)
    return float(pop[items].mean()) if items.size else float("nan")


def short_head(item_popularity: np.ndarray, head_share: float = 0.2) -> np.ndarray:
    """Boolean per item: among the `head_share` most popular items (by count, ties by id), the
    "short head"; every other item, including those never interacted with, is the long tail."""
    pop = _popularity(item_popularity)
    if not 0.0 < head_share < 1.0:
        raise ValueError(f"head_share must be in (0, 1), got {head_share}")
    head = np.zeros(pop.size, bool)
    order = np.lexsort((np.arange(pop.size), -pop))  # most popular first, ties by id
    head[order[: int(np.ceil(head_share * pop.size))]] = True
    return head & (pop > 0)


def long_tail_share(recommended: np.ndarray, item_popularity: np.ndarray, k: int, head_share: float = 0.2) -> float:
    """Share of the top-k entries that are long-tail items (outside short_head(); nan if none)."""
    head = short_head(item_popularity, head_share)
    items = _valid_top(recommended, head.size, k)
    return float((~head[items]).mean()) if items.size else float("nan")


def exposure_gini(recommended: np.ndarray, n_items: int, k: int) -> float:
    """Gini coefficient of exposure over the catalog: how unequally the top-k slots of all lists
    are spread over the `n_items` items (0 = every item shown equally often, -> 1 = all slots on
    one item; items never recommended count as zero exposure). nan if the lists are empty."""
    items = _valid_top(recommended, int(n_items), k)
    if items.size == 0:
        return float("nan")
    exposure = np.sort(np.bincount(items, minlength=int(n_items)).astype(np.float64))
    n = exposure.size
    ranks = np.arange(1, n + 1)
    return float((2.0 * (ranks * exposure).sum()) / (n * exposure.sum()) - (n + 1.0) / n)


def novelty(recommended: np.ndarray, item_popularity: np.ndarray, k: int) -> float:
    """Mean self-information ``-log2(p_i)`` of the recommended items, in bits.

    ``p_i = (count_i + 1) / (sum(count) + n_items)`` (add-one smoothing, ``n_items =
    len(item_popularity)``, counts usually = training interactions per item). Averaged over the
    top-k positions of each user, then over users; ``-1`` padding is skipped (users with an empty
    list are left out; ``nan`` if no user has any item). Without padding this equals the plain
    mean over all users x positions.
    """
    k = _check_k(k)
    pop = np.asarray(item_popularity, dtype=np.float64)
    if pop.ndim != 1 or pop.size == 0:
        raise ValueError("item_popularity must be a non-empty 1-D array of counts")
    if not np.all(np.isfinite(pop)) or pop.min() < 0:
        raise ValueError("item_popularity counts must be finite and >= 0")
    n_items = pop.size
    top = _top(_as_recommended(recommended), k)
    if top.size and _max_item(top) >= n_items:
        raise ValueError(f"recommended item {_max_item(top)} is outside the catalog of {n_items}")
    info = -np.log2((pop + 1.0) / (pop.sum() + n_items))
    info = np.append(info, 0.0)  # slot for the -1 padding
    valid = top >= 0
    per_user_sum = info[top].sum(axis=1)  # top == -1 reads the 0.0 slot
    count = valid.sum(axis=1)
    has = count > 0
    if not has.any():
        return float("nan")
    return float(np.mean(per_user_sum[has] / count[has]))


# --------------------------------------------------------------------------- uncertainty


def _as_values(values, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per user), got shape {v.shape}")
    if v.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains nan or inf")
    return v


def _check_boot(n_boot, alpha) -> None:
    if int(n_boot) < 1:
        raise ValueError("n_boot must be >= 1")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError("alpha must be in (0, 1)")


_BOOT_CACHE_BYTES = 1 << 29  # resample count matrices up to 512 MiB are cached (float64)


@functools.lru_cache(maxsize=4)
def _resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot × n) float64: how often each user is drawn in each resample (users drawn with
    replacement, the same draws as _draw_means). One evaluation computes many CIs over the
    same users with the same seed, so the draws are made once and each CI is one
    matrix-vector product (~12x faster at 80k users)."""
    rng = np.random.default_rng(seed)
    counts = np.empty((n_boot, n), dtype=np.float64)
    step = max(1, _BOOT_CHUNK_ELEMENTS // n)
    for b0 in range(0, n_boot, step):
        b1 = min(n_boot, b0 + step)
        idx = rng.integers(0, n, size=(b1 - b0, n))
        flat = (idx + np.arange(b1 - b0, dtype=np.int64)[:, None] * n).ravel()
        counts[b0:b1] = np.bincount(flat, minlength=(b1 - b0) * n).reshape(b1 - b0, n)
    counts.setflags(write=False)
    return counts


def _draw_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    n = values.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    step = max(1, _BOOT_CHUNK_ELEMENTS // n)
    for b0 in range(0, n_boot, step):
        b1 = min(n_boot, b0 + step)
        idx = rng.integers(0, n, size=(b1 - b0, n))
        means[b0:b1] = values[idx].mean(axis=1)
    return means


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of ``n_boot`` resamples (users drawn with replacement), chunked to bound memory;
    through the cached resample counts when they fit _BOOT_CACHE_BYTES."""
    if values.size * n_boot * 8 > _BOOT_CACHE_BYTES:
        return _draw_means(values, n_boot, seed)
    return (_resample_counts(values.size, n_boot, seed) @ values) / values.size


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile ``1 - alpha`` confidence interval of the mean of per-user ``values``."""
    v = _as_values(values, "values")
    _check_boot(n_boot, alpha)
    means = _bootstrap_means(v, int(n_boot), seed)
    lo, hi = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict:
    """Paired bootstrap of model A vs model B on the same users (same order).

    Resamples users jointly, i.e. resamples the per-user differences ``d = a - b``. Returns
    ``mean_diff`` (= mean(a) - mean(b)), the percentile CI ``ci_low`` / ``ci_high`` of the mean
    difference, ``p_value`` = ``min(1, 2 * min(share(boot <= 0), share(boot >= 0)))`` over the
    resampled mean differences (two-sided; resolution ``1 / n_boot``, so 0 means
    ``< 1 / n_boot``), and ``lift`` = ``mean(a) / mean(b) - 1`` (``nan`` if ``mean(b) == 0``).
    """
    a = _as_values(a, "a")
    b = _as_values(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must be paired (same users), got {a.shape} and {b.shape}")
    _check_boot(n_boot, alpha)
    d = a - b
    boot = _bootstrap_means(d, int(n_boot), seed)
    lo, hi = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0])
    p = min(1.0, 2.0 * min(float(np.mean(boot <= 0.0)), float(np.mean(boot >= 0.0))))
    mean_b = float(b.mean())
    return {
        "mean_diff": float(d.mean()),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": p,
        "lift": float(a.mean()) / mean_b - 1.0 if mean_b != 0.0 else float("nan"),
    }


__all__ = [
    "KS",
    "METRIC_NAMES",
    "per_user_metrics",
    "summarize",
    "evaluate",
    "catalog_coverage",
    "average_popularity",
    "short_head",
    "long_tail_share",
    "exposure_gini",
    "novelty",
    "bootstrap_ci",
    "paired_bootstrap",
]
