"""Recall models: popularity, recent popularity, item-CF, ALS, BPR, impression-aware BPR, EASE and content.

Every model follows the RecallModel protocol of base.py: hyperparameters are keyword
params checked by the model's typed config (defined right above its class; its defaults are
the one set of defaults, the values the platform trains with; self.params is the validated
config as a JSON-serialisable dict), fit(data, seed) learns, score(users) returns dense
float32 scores over the full catalog, and arrays()/set_arrays() expose the learned state as
plain numeric arrays (saved as .npy, loaded with allow_pickle=False). registry.py lists every
model with its config and how the platform runs it.

Determinism: every model is a pure function of (data, params, seed) except when implicit
runs with several threads: implicit's BPR is hogwild SGD, so with num_threads != 1 two fits
with the same seed differ. ALS is solved row by row, so it is in practice reproducible for
any thread count, but only num_threads=1 is guaranteed (and tested) to be bit-identical.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field, field_validator
from threadpoolctl import threadpool_limits

from .base import (
    RecallConfig,
    RecallModel,
    TrainingData,
    excluded_entries,
    exclusion_depth_batches,
    first_not_excluded,
)


class ModelSkipped(RuntimeError):
    """The model deliberately refuses this data set (e.g. the catalog is too large for it)."""


class _NotFitted(TypeError, AttributeError):
    """A learned array used before fit() or set_arrays() set it: a TypeError and an
    AttributeError, the failures that using its None value raises."""


_T = TypeVar("_T")


def _fitted(value: _T | None, name: str) -> _T:
    """`value`, a learned array of the model; _NotFitted while it is still None."""
    if value is None:
        raise _NotFitted(f"{name} is not set: fit() or load the model first")
    return value


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _canonical_csr(matrix: sp.spmatrix, dtype=np.float32) -> sp.csr_matrix:
    """CSR copy with summed duplicates, sorted indices and no explicitly stored zeros."""
    out = sp.csr_matrix(matrix, dtype=dtype, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _ages_on_pattern(pattern: sp.csr_matrix, ages, name: str) -> sp.csr_matrix:
    """`ages` (days_ago / seconds_ago) on exactly the sparsity of the binary `pattern`, float64,
    every entry stored; a positive whose age is not stored counts as 0 (a sparse matrix may drop
    the value 0)."""
    ages = sp.csr_matrix(ages, dtype=np.float64)
    if ages.shape != pattern.shape:
        raise ValueError(f"{name} has shape {ages.shape}, positives {pattern.shape}")
    # pattern + pattern∘ages has exactly the pattern's sparsity (ages >= 0), values 1 + age.
    aligned = _canonical_csr(pattern + pattern.multiply(ages), np.float64)
    if aligned.nnz != pattern.nnz:  # only possible with negative ages
        raise ValueError(f"{name} must be >= 0 on every positive")
    aligned.data = np.maximum(aligned.data - 1.0, 0.0)
    return aligned


def _positive_weights(data: TrainingData, half_life_days: float | None) -> sp.csr_matrix:
    """Positives' sparsity pattern with value = time-decay weight 0.5 ** (days_ago / half_life).

    days_ago is aligned onto the positives' pattern; a positive whose days_ago entry is not
    stored counts as 0 days old (a sparse matrix may drop the value 0 = "last training day").
    Without a half-life every weight is 1.
    """
    pattern = _canonical_csr(data.positives, np.float64)
    pattern.data[:] = 1.0
    if half_life_days is None:
        return pattern.astype(np.float32)
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be > 0, got {half_life_days}")
    ages = _ages_on_pattern(pattern, data.days_ago, "days_ago").data
    weights = pattern.copy()
    weights.data = np.power(0.5, ages / float(half_life_days))
    return weights.astype(np.float32)


def _csr_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    matrix = sp.csr_matrix(matrix)
    return {
        f"{prefix}_data": np.ascontiguousarray(matrix.data),
        f"{prefix}_indices": matrix.indices.astype(np.int64),
        f"{prefix}_indptr": matrix.indptr.astype(np.int64),
        f"{prefix}_shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def _csr_from_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(v) for v in arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=shape
    )


def _dense(matrix) -> np.ndarray:
    if sp.issparse(matrix):
        matrix = matrix.toarray()
    return np.ascontiguousarray(np.asarray(matrix), dtype=np.float32)


def _as_users(users) -> np.ndarray:
    return np.asarray(users, dtype=np.int64).reshape(-1)


def _row_normalise(matrix: sp.csr_matrix) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv) @ matrix)


def _blas_single_thread():
    """Context limiting BLAS to one thread (implicit's own advice: its solvers are already
    parallel, a BLAS thread pool on top oversubscribes the cores). No-op without threadpoolctl.

    The BLAS libraries must already be loaded when the limit is set (a library loaded inside
    the block is not limited), hence the imports of implicit and scipy.linalg here first.
    The limit is process-wide, so models that use it declare limits_blas (their days train
    one at a time)."""
    import implicit.cpu.als  # noqa: F401  (loads scipy's OpenBLAS)
    import scipy.linalg  # noqa: F401

    return threadpool_limits(limits=1, user_api="blas")


# --------------------------------------------------------------------------------------------
# 1. popularity
# --------------------------------------------------------------------------------------------
class PopularityConfig(RecallConfig):
    half_life_days: float | None = 7.0  # None: no time decay


class PopularityModel(RecallModel):
    """item score = Σ_users positive value × 0.5 ** (days_ago / half_life_days); same for all users.

    The positive's value (its confidence signal) is summed, not just counted; with a click/like
    value of 1 this is the count of positives. half_life_days=None means no time decay.
    """

    personal = False

    name = "popularity"
    config: ClassVar[type[RecallConfig]] = PopularityConfig  # RecentPopularityModel has its own

    def __init__(self, **params):
        super().__init__(**params)
        self.item_scores: np.ndarray | None = None

    def fit(self, data: TrainingData, seed: int = 0) -> PopularityModel:
        positives = _canonical_csr(data.positives)
        weights = _positive_weights(data, self.params["half_life_days"])
        weighted = positives.multiply(weights)
        self.item_scores = np.asarray(weighted.sum(axis=0), dtype=np.float64).ravel().astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        item_scores = _fitted(self.item_scores, "item_scores")
        users = _as_users(users)
        return np.broadcast_to(item_scores, (len(users), len(item_scores))).copy()

    def recommend(
        self,
        users: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None = None,
        batch: int = 4096,
        blocked_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k like RecallModel.recommend. On a large catalog: every user's list is the one
        global ranking minus their excluded items, so only its head (k + the largest exclusion
        count of a batch of users with similar counts) is ranked per user, never the whole
        catalog (ties: lower item index first)."""
        item_scores = _fitted(self.item_scores, "item_scores")
        users = _as_users(users)
        n_items = len(item_scores)
        if n_items < self.faiss_min_items:
            return super().recommend(users, k, exclude=exclude, blocked_items=blocked_items)
        ranking = self._ranking(item_scores, blocked_items)
        kk = min(k, len(ranking))
        out_items = np.full((len(users), kk), -1, dtype=np.int64)
        out_scores = np.full((len(users), kk), -np.inf, dtype=np.float32)
        for positions, most_excluded in exclusion_depth_batches(exclude, users, batch):
            chunk = users[positions]
            rows = exclude[chunk] if exclude is not None else sp.csr_matrix((len(chunk), n_items), dtype=np.float32)
            head = ranking[: kk + most_excluded]
            out_items[positions], out_scores[positions] = first_not_excluded(
                np.broadcast_to(head, (len(chunk), len(head))),
                np.broadcast_to(item_scores[head], (len(chunk), len(head))),
                rows,
                n_items,
                kk,
            )
        return out_items, out_scores

    def _ranking(self, item_scores: np.ndarray, blocked_items: np.ndarray | None) -> np.ndarray:
        """The items not blocked, best first (ties: lower index first); kept per blocked-item
        set by a loaded model: sorting 100k scores costs ~10 ms, more than the rest of an online
        request's search."""

        def build(blocked: np.ndarray) -> np.ndarray:
            allowed = np.ones(len(item_scores), bool)
            allowed[blocked] = False
            candidates = np.flatnonzero(allowed)
            return candidates[np.argsort(-item_scores[candidates], kind="stable")]

        return self._kept_per_blocked_set("rankings", blocked_items, build)

    def search_item_vectors(self) -> np.ndarray:
        return _fitted(self.item_scores, "item_scores")[:, None]

    def search_user_vectors(self, users: np.ndarray) -> np.ndarray:
        return np.ones((len(_as_users(users)), 1), np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"item_scores": _fitted(self.item_scores, "item_scores")}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_scores = np.asarray(arrays["item_scores"], dtype=np.float32)


class RecentPopularityConfig(RecallConfig):
    # Measured on MovieLens-100K's temporal validation (the last 20% by time of the ratings before
    # the held-out period, 1998-01-24 .. 1998-03-06; benchmarks/bench_history_protocol.py prints the
    # grid): NDCG@10 over the validation users 0.3051 at 7 days, 0.3015 at 5, 0.3037 at 10, 0.2952
    # at 14, 0.2656 at 30, 0.2531 without decay; a week's half-life is the peak for warm and all users.
    half_life_days: float = Field(default=7.0, gt=0.0)


class RecentPopularityModel(PopularityModel):
    """item score = Σ_positives 0.5 ** (days_ago / half_life_days): every positive counts once
    (its signal value does not matter), weighted by how recent it is; the same list for
    everyone. The non-personalised list of users without a history (the serving cold path)."""

    name = "recent_popularity"
    config = RecentPopularityConfig

    def fit(self, data: TrainingData, seed: int = 0) -> RecentPopularityModel:
        weights = _positive_weights(data, self.params["half_life_days"])
        self.item_scores = np.asarray(weights.sum(axis=0), dtype=np.float64).ravel().astype(np.float32)
        return self


# --------------------------------------------------------------------------------------------
# 2. item-based collaborative filtering
# --------------------------------------------------------------------------------------------
def _top_k_per_row(rows: np.ndarray, vals: np.ndarray, n_rows: int, k: int, budget: int = 1 << 24) -> np.ndarray:
    """Boolean mask keeping, per row, the k largest values (rows sorted ascending, i.e. CSR
    order). Rows with <= k entries keep everything; longer rows are padded into dense
    (rows × their max length) chunks of at most `budget` cells and cut with argpartition.
    Ties at the k-th value are broken arbitrarily but deterministically."""
    counts = np.bincount(rows, minlength=n_rows)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = counts[rows] <= k
    long_rows = np.flatnonzero(counts > k)
    start = 0
    while start < len(long_rows):
        width = int(counts[long_rows[start]])
        stop = start + 1
        while stop < len(long_rows):  # grow the chunk while it fits the budget
            width_next = max(width, int(counts[long_rows[stop]]))
            if (stop + 1 - start) * width_next > budget:
                break
            width, stop = width_next, stop + 1
        chunk = long_rows[start:stop]
        lengths = counts[chunk]
        offsets = np.arange(width)[None, :]
        valid = offsets < lengths[:, None]
        positions = np.where(valid, first[chunk][:, None] + offsets, 0)
        padded = np.where(valid, vals[positions], -np.inf)
        top = np.argpartition(-padded, k - 1, axis=1)[:, :k]
        keep[np.take_along_axis(positions, top, axis=1).ravel()] = True
        start = stop
    return keep


class ItemCFConfig(RecallConfig):
    neighbours: int = 100
    shrinkage: float = 10.0
    half_life_days: float | None = 14.0  # None: no time decay
    block_items: int = 2048  # rows of the co-occurrence computed per sparse product (memory, not results)
    # EASE's session kernel on the co-occurrence (0 = off): on MovieLens-100K's random split it lifts
    # item-CF alone from 0.238 to 0.259 validation NDCG@10 (weight 4, tau 180). It is a dense items²
    # matrix, so it is refused above SESSION_MAX_ITEMS items.
    session_weight: float = Field(default=0.0, ge=0.0)
    session_tau_seconds: float = Field(default=600.0, gt=0.0)


class ItemCFModel(RecallModel):
    """Item–item cosine with shrinkage over the (time-decayed) binarised positives.

    X = binarised positives × decay weight. c_ij = Σ_u x_ui x_uj, n_i = Σ_u x_ui² (= the
    number of users of i without decay), sim(i, j) = c_ij / (sqrt(n_i n_j) + shrinkage),
    self-similarity removed, only the top `neighbours` per row kept. The co-occurrence is
    computed in blocks of `block_items` rows with scipy sparse products and pruned per block,
    so a dense items × items matrix never exists. user score = X[u] @ sim.

    Session kernel (session_weight > 0, needs data.seconds_ago): c = XᵀX + session_weight ·
    session_gram(τ) and n_i = c_ii, so two items one user chose minutes apart count as more alike
    (as in EASEModel). The kernel is dense items × items: only for catalogs up to SESSION_MAX_ITEMS.
    """

    name = "item_cf"
    config = ItemCFConfig

    def __init__(self, **params):
        super().__init__(**params)
        self.sim: sp.csr_matrix | None = None
        self.user_items: sp.csr_matrix | None = None

    def fit(self, data: TrainingData, seed: int = 0) -> ItemCFModel:
        k = int(self.params["neighbours"])
        if k < 1:
            raise ValueError(f"neighbours must be >= 1, got {k}")
        shrink = float(self.params["shrinkage"])
        x = _positive_weights(data, self.params["half_life_days"])  # binarised × decay
        n_items = x.shape[1]
        xt = sp.csr_matrix(x.T)
        norms = np.asarray(x.multiply(x).sum(axis=0), dtype=np.float64).ravel()
        kernel = self._session_kernel(data, x)
        if kernel is not None:
            norms = norms + np.diag(kernel)
        norms = np.sqrt(norms)
        blocks = []
        step = max(1, int(self.params["block_items"]))
        for start in range(0, n_items, step):
            stop = min(n_items, start + step)
            co = sp.csr_matrix(xt[start:stop] @ x)  # (block × items), sparse
            if kernel is not None:
                co = sp.csr_matrix(co.toarray() + kernel[start:stop])
            co.sort_indices()
            rows = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(co.indptr))
            cols = co.indices.astype(np.int64)
            vals = co.data.astype(np.float64) / (norms[rows + start] * norms[cols] + shrink)
            keep = ((rows + start) != cols) & (vals > 0)
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
            keep = _top_k_per_row(rows, vals, stop - start, k)
            blocks.append(
                sp.csr_matrix((vals[keep].astype(np.float32), (rows[keep], cols[keep])), shape=(stop - start, n_items))
            )
        sim = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_items), dtype=np.float32)
        sim.sort_indices()
        self.sim = sim.astype(np.float32)
        self.user_items = x
        return self

    SESSION_MAX_ITEMS = 20_000  # the session kernel's dense items² float64 matrix: 3.2 GB here

    def _session_kernel(self, data: TrainingData, x: sp.csr_matrix) -> np.ndarray | None:
        """session_weight × session_gram over the positives' times (None when the kernel is off)."""
        weight = float(self.params["session_weight"])
        if weight <= 0:
            return None
        if data.seconds_ago is None:
            raise ValueError("item_cf with session_weight > 0 needs the positives' times (TrainingData.seconds_ago)")
        if x.shape[1] > self.SESSION_MAX_ITEMS:
            raise ValueError(f"item_cf's session kernel is dense: {x.shape[1]} items > {self.SESSION_MAX_ITEMS}")
        pattern = _canonical_csr(x, np.float64)
        pattern.data[:] = 1.0
        ages = _ages_on_pattern(pattern, data.seconds_ago, "seconds_ago")
        return session_gram(ages, float(self.params["session_tau_seconds"]), x.shape[1], weight=weight)

    def score_rows(self, user_rows: sp.csr_matrix) -> np.ndarray:
        """Scores for arbitrary (e.g. new) users given their weighted item rows."""
        return _dense(sp.csr_matrix(user_rows, dtype=np.float32) @ self.sim)

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.score_rows(_fitted(self.user_items, "user_items")[_as_users(users)])

    def score_pairs(self, users: np.ndarray, items: np.ndarray, block: int = 4096) -> np.ndarray:
        """score(u, i) per pair, read from the sparse score rows X[u] @ sim of the pairs'
        distinct users, `block` users at a time (never a dense catalog row)."""
        sim, user_items = _fitted(self.sim, "sim"), _fitted(self.user_items, "user_items")
        users, items = _as_users(users), _as_users(items)
        out = np.zeros(len(users), np.float32)
        n_items = sim.shape[1]
        distinct, inverse = np.unique(users, return_inverse=True)
        if len(distinct) == 1 and sim.dtype == user_items.dtype == np.float32:
            out[:] = self._one_user_pairs(int(distinct[0]), items)
            return out
        order = np.argsort(inverse, kind="stable")  # pairs grouped by user
        bounds = np.searchsorted(inverse[order], np.arange(0, len(distinct) + block, block))
        for b, start in enumerate(range(0, len(distinct), block)):
            rows = order[bounds[b] : bounds[b + 1]]
            scores = sp.csr_matrix(user_items[distinct[start : start + block]] @ sim)
            scores.sum_duplicates()
            scores.sort_indices()  # (row, item) keys ascending: binary-searchable
            keys = (
                np.repeat(np.arange(scores.shape[0], dtype=np.int64), np.diff(scores.indptr)) * n_items + scores.indices
            )
            if len(keys) == 0:
                continue
            wanted = (inverse[rows] - start) * n_items + items[rows]
            at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
            out[rows] = np.where(keys[at] == wanted, scores.data[at], 0.0)
        return out

    def _one_user_pairs(self, user: int, items: np.ndarray) -> np.ndarray:
        """score_pairs of one user (a request's candidates): the neighbour rows of the user's
        items, summed into the asked items only, without building the sparse score row. The
        float32 products are added in the order the sparse product adds them (the user's items
        in stored order, each neighbour row in stored order), so the scores are the same bits."""
        sim, user_items = _fitted(self.sim, "sim"), _fitted(self.user_items, "user_items")
        if not len(items):
            return np.zeros(0, np.float32)
        lo, hi = user_items.indptr[user], user_items.indptr[user + 1]
        neighbours_of, weights = user_items.indices[lo:hi], user_items.data[lo:hi]
        starts, lengths = sim.indptr[neighbours_of], np.diff(sim.indptr)[neighbours_of]
        # the positions of every neighbour row's entries, row after row
        at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        slot = np.full(sim.shape[1], -1, np.int32)  # each asked item's sum, by item index
        wanted = np.unique(items)
        slot[wanted] = np.arange(len(wanted), dtype=np.int32)
        found = slot[sim.indices[at]]
        keep = found >= 0
        sums = np.zeros(len(wanted), np.float32)
        np.add.at(sums, found[keep], np.repeat(weights, lengths)[keep] * sim.data[at[keep]])
        return sums[slot[items]]

    # Catalogs at least this large are ranked from the sparse score rows (recommend below).
    sparse_min_items = 20_000

    def recommend(
        self,
        users: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None = None,
        batch: int = 4096,
        blocked_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k like RecallModel.recommend. On a large catalog a user's score row is sparse
        (only the neighbours of their items score), so the top-k comes from the stored entries
        of the sparse product X[users] @ sim instead of a dense users × items argpartition
        (at 100k items: ~3k stored scores per user instead of 100k). Items without a score
        are not candidates there: a user with fewer than k scored, unexcluded items gets -1 /
        -inf padding where the dense path would fill in arbitrary zero-score items."""
        sim, user_items = _fitted(self.sim, "sim"), _fitted(self.user_items, "user_items")
        users = _as_users(users)
        n_items = sim.shape[1]
        if n_items < self.sparse_min_items:
            return super().recommend(users, k, exclude=exclude, blocked_items=blocked_items)
        kk = min(k, n_items)
        out_items = np.full((len(users), kk), -1, dtype=np.int64)
        out_scores = np.full((len(users), kk), -np.inf, dtype=np.float32)
        blocked = np.zeros(n_items, dtype=bool)
        if blocked_items is not None and len(blocked_items):
            blocked[np.asarray(blocked_items, dtype=np.int64)] = True
        for start in range(0, len(users), batch):
            chunk = users[start : start + batch]
            scores = sp.csr_matrix(user_items[chunk] @ sim)
            rows = np.repeat(np.arange(len(chunk), dtype=np.int64), np.diff(scores.indptr))
            cols = scores.indices.astype(np.int64)
            vals = scores.data
            drop = blocked[cols] | ~(vals > 0)
            if exclude is not None:
                seen = sp.csr_matrix(exclude[chunk])
                seen_keys = (
                    np.repeat(np.arange(len(chunk), dtype=np.int64), np.diff(seen.indptr)) * n_items + seen.indices
                )
                drop |= np.isin(rows * n_items + cols, seen_keys, kind="sort")  # not a key-range table
            rows, cols, vals = rows[~drop], cols[~drop], vals[~drop]  # rows stay ascending (CSR order)
            keep = _top_k_per_row(rows, vals, len(chunk), kk)
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
            order = np.lexsort((cols, -vals, rows))  # per user: score descending, ties by item index
            rows, cols, vals = rows[order], cols[order], vals[order]
            rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
            out_items[start + rows, rank] = cols
            out_scores[start + rows, rank] = vals
        return out_items, out_scores

    def arrays(self) -> dict[str, np.ndarray]:
        return {**_csr_arrays("sim", self.sim), **_csr_arrays("user_items", self.user_items)}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.sim = _csr_from_arrays("sim", arrays)
        self.user_items = _csr_from_arrays("user_items", arrays)


# --------------------------------------------------------------------------------------------
# 3. ALS (implicit)
# --------------------------------------------------------------------------------------------
# ALS, implicit BPR and the numpy BPRs: picked by small grids on the synthetic default data
# (day 8 after 7 days, NDCG@10; `benchmarks/bench_recall.py --tune` reruns the BPR grids; see
# benchmarks/RESULTS.md and docs/evaluation.md); the other models keep their plain defaults.
class ALSConfig(RecallConfig):
    factors: int = Field(default=64, ge=1, le=4096)
    regularization: float = 30.0
    iterations: int = Field(default=15, ge=1, le=1000)
    alpha: float = Field(default=2.0, ge=0.0)  # confidence 1 + alpha * signal on the positives
    num_threads: int = 0  # implicit's threads, 0 = all cores; only 1 is guaranteed bit-identical
    use_cg: bool = True


class ALSModel(RecallModel):
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) via implicit.cpu.als.

    Confidence: c_ui = 1 + alpha * signal_ui on positives, 1 elsewhere (preference p_ui = 1 on
    positives). NOTE on implicit 0.7.3: its solver uses the stored value *itself* as the
    confidence c_ui (A = YᵀY + λI + Σ (c-1) y yᵀ, b = Σ c y; checked against the closed form),
    not 1 + value. So the matrix passed to implicit holds 1 + alpha * signal on the positives,
    and implicit's own `alpha` is left at 1.0 (it would otherwise multiply the whole matrix,
    1 included). Passing `positives * alpha` would give c = alpha * signal, which for signals
    < 1/alpha is a confidence below that of unobserved items.

    BLAS is limited to one thread during fit/fold-in, as implicit recommends (its own OpenMP
    threads do the parallel work). num_threads=0 uses all cores; use 1 for bit-exact
    reproducibility.
    """

    name = "als"
    limits_blas = True  # its fit holds _blas_single_thread
    config = ALSConfig

    def __init__(self, **params):
        super().__init__(**params)
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self._implicit = None
        self._blas = None  # the BLAS libraries to limit during a loaded model's fold-in

    def _confidence(self, rows: sp.spmatrix) -> sp.csr_matrix:
        conf = _canonical_csr(rows)
        conf.data = (1.0 + float(self.params["alpha"]) * conf.data).astype(np.float32)
        return conf

    def _new_implicit(self, seed: int | None):
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=int(self.params["factors"]),
            regularization=float(self.params["regularization"]),
            alpha=1.0,
            iterations=int(self.params["iterations"]),
            use_cg=bool(self.params["use_cg"]),
            num_threads=int(self.params["num_threads"]),
            random_state=seed,
            dtype=np.float32,
        )

    def fit(self, data: TrainingData, seed: int = 0) -> ALSModel:
        conf = self._confidence(data.positives)
        with _blas_single_thread():
            model = self._new_implicit(seed)
            model.fit(conf, show_progress=False)
        self._implicit = model
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        user_factors = _fitted(self.user_factors, "user_factors")
        item_factors = _fitted(self.item_factors, "item_factors")
        return _dense(user_factors[_as_users(users)] @ item_factors.T)

    def search_item_vectors(self) -> np.ndarray:
        return _fitted(self.item_factors, "item_factors")

    def search_user_vectors(self, users: np.ndarray) -> np.ndarray:
        return _fitted(self.user_factors, "user_factors")[_as_users(users)]

    def fold_in(self, user_rows: sp.csr_matrix) -> np.ndarray:
        """Fresh user vectors (len(rows) × factors) for new/updated users, item factors frozen.

        user_rows holds the users' positive signals (same meaning as TrainingData.positives);
        each vector is the exact least-squares ALS user solve (implicit's recalculate_user,
        Cholesky, not CG), so for a trained user it is close to, not bit-equal with, its
        trained vector (training uses a few CG steps per iteration).
        """
        item_factors = _fitted(self.item_factors, "item_factors")
        rows = self._confidence(user_rows)
        if rows.shape[1] != item_factors.shape[0]:
            raise ValueError(f"user_rows has {rows.shape[1]} columns, model has {item_factors.shape[0]} items")
        if self._implicit is None:  # loaded from disk: rebuild the solver around the factors
            # built whole before it is published: a concurrent request never sees it half set.
            # A loaded model folds in the online path's one user per call: one solver thread (each
            # user's solve is one thread's work whatever the count, so the vectors are the same)
            # spares waking an OpenMP team per request, which on a busy machine costs more than
            # the solve; the BLAS libraries are found once, not per call
            import implicit.cpu.als  # noqa: F401  (loads scipy's OpenBLAS, as _blas_single_thread)
            import scipy.linalg  # noqa: F401
            from threadpoolctl import ThreadpoolController

            controller = ThreadpoolController()
            with controller.limit(limits=1, user_api="blas"):  # implicit warns of a BLAS thread pool
                solver = self._new_implicit(None)
            solver.num_threads = 1
            solver.item_factors = self.item_factors
            solver.user_factors = self.user_factors
            self._blas = controller
            self._implicit = solver
        blas = self._blas.limit(limits=1, user_api="blas") if self._blas is not None else _blas_single_thread()
        with blas:
            vectors = self._implicit.recalculate_user(np.arange(rows.shape[0]), rows)
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(rows.shape[0], -1)

    def factor_norms(self) -> dict[str, np.ndarray]:
        """L2 norms of the user and item factor rows (monitoring: exploding/dead factors)."""
        user_factors = _fitted(self.user_factors, "user_factors")
        item_factors = _fitted(self.item_factors, "item_factors")
        return {"user": np.linalg.norm(user_factors, axis=1), "item": np.linalg.norm(item_factors, axis=1)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": _fitted(self.user_factors, "user_factors"),
            "item_factors": _fitted(self.item_factors, "item_factors"),
        }

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors = np.ascontiguousarray(arrays["user_factors"], dtype=np.float32)
        self.item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        self._implicit = None


# --------------------------------------------------------------------------------------------
# 4. BPR (implicit)
# --------------------------------------------------------------------------------------------
def _sample_uniform_negatives(
    rng: np.random.Generator, users: np.ndarray, n_items: int, positive_codes: np.ndarray, tries: int = 10
) -> np.ndarray:
    """Uniform items not in the user's positives (rejection sampling; positive_codes = the
    sorted u * n_items + i codes of all positives). After `tries` rounds a rare leftover
    collision is kept (only matters for users who like almost the whole catalog)."""
    negs = rng.integers(0, n_items, size=len(users))
    if len(positive_codes) == 0:
        return negs
    todo = np.arange(len(users))
    for _ in range(tries):
        codes = users[todo] * n_items + negs[todo]
        pos = np.minimum(np.searchsorted(positive_codes, codes), len(positive_codes) - 1)
        todo = todo[positive_codes[pos] == codes]
        if len(todo) == 0:
            break
        negs[todo] = rng.integers(0, n_items, size=len(todo))
    return negs


def _scatter_add(target: np.ndarray, index: np.ndarray, values: np.ndarray) -> None:
    """target[index] += values with repeated indices accumulated. Same result as np.add.at,
    faster: a stable sort groups the indices and a (unique × batch) 0/1 CSR matrix sums the
    value rows of each group (deterministic summation order)."""
    # a stable sort is unique, and numpy radix-sorts 16-bit keys (several times faster)
    key = index.astype(np.uint16) if len(target) <= 1 << 16 else index
    order = np.argsort(key, kind="stable")
    sorted_index = index[order]
    starts = np.flatnonzero(np.r_[True, sorted_index[1:] != sorted_index[:-1]])
    groups = sp.csr_matrix(
        (np.ones(len(index), dtype=values.dtype), order, np.r_[starts, len(index)]), shape=(len(starts), len(index))
    )
    target[sorted_index[starts]] += groups @ values


def _positive_codes(matrix: sp.csr_matrix) -> np.ndarray:
    coo = matrix.tocoo()
    return np.sort(coo.row.astype(np.int64) * matrix.shape[1] + coo.col.astype(np.int64))


class BPRConfig(RecallConfig):
    factors: int = Field(default=128, ge=1, le=4096)
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = Field(default=100, ge=1, le=100000)
    # An epoch samples every positive once, so a large log needs fewer of them: the epochs are
    # capped at max_samples / positives (at least 1). 100 epochs of ml-1m's 575k positives stay
    # 100; ml-32m's 16M positives get 12 (100 took over 10 min on one thread).
    max_samples: int = Field(default=200_000_000, ge=1)
    # implicit's BPR is hogwild SGD: with more than one thread two fits of the same seed differ
    # (and so do the evaluation, the champion decision and the candidates downstream). 1 keeps
    # every re-run bit-identical (tests/test_reliability.py); 0 = all cores, faster, not reproducible.
    num_threads: int = 1
    fold_in_epochs: int = 30
    fold_in_learning_rate: float | None = None  # None: learning_rate
    # implicit samples negatives by item frequency; scoring adds beta * log(1 + popularity) back
    popularity_correction: float = 1.0


class BPRModel(RecallModel):
    """Bayesian Personalised Ranking via implicit.cpu.bpr on the binarised positives.

    implicit's BPR stores factors + 1 columns: the user's last column is fixed to 1 and the
    item's last column is the item bias, so scores = user_factors @ item_factors.T include the
    bias; the arrays are kept as implicit returns them. implicit samples the negative of a
    pair as the item of a random *entry* of the matrix (verify_negative_samples=True), i.e. in
    proportion to item popularity, not uniformly: positives and negatives then come from the
    same item distribution, so the learned scores estimate log p(i | u) - log q(i), a lift over
    popularity, and the longer it trains the further popular items sink.
    `popularity_correction` (β) adds the log of that sampling distribution back at scoring (the
    "logQ correction" of sampled-softmax training, Bengio & Senécal 2008; Yi et al. 2019):
    item_bias_i = β · ln(1 + n_i), n_i = the number of users with a positive on i, and
    score = user_factors @ item_factors.T + item_bias. β = 0 is plain implicit BPR; β = 1 (the
    default) is the correction the sampling implies. fold_in learns against the uncorrected factors (the
    objective it was trained on) and the bias is added at scoring only. implicit's BPR is
    hogwild SGD: only num_threads=1 (the default) is reproducible for a fixed seed (0 = all
    cores, not reproducible).
    """

    name = "bpr"
    limits_blas = True  # its fit holds _blas_single_thread
    config = BPRConfig

    def __init__(self, **params):
        super().__init__(**params)
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self.item_bias: np.ndarray | None = None

    def fit(self, data: TrainingData, seed: int = 0) -> BPRModel:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        binary = _canonical_csr(data.positives)
        binary.data[:] = 1.0
        with _blas_single_thread():
            model = BayesianPersonalizedRanking(
                factors=int(self.params["factors"]),
                learning_rate=float(self.params["learning_rate"]),
                regularization=float(self.params["regularization"]),
                iterations=self.epochs(binary.nnz),
                num_threads=int(self.params["num_threads"]),
                random_state=seed,
                dtype=np.float32,
            )
            model.fit(binary, show_progress=False)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        users_per_item = np.asarray(binary.sum(axis=0), dtype=np.float64).ravel()
        beta = float(self.params.get("popularity_correction") or 0.0)
        self.item_bias = (beta * np.log1p(users_per_item)).astype(np.float32)
        return self

    def epochs(self, positives: int) -> int:
        """The configured iterations, capped so that one fit samples at most max_samples positives."""
        return max(1, min(int(self.params["iterations"]), int(self.params["max_samples"]) // max(positives, 1)))

    def score(self, users: np.ndarray) -> np.ndarray:
        user_factors = _fitted(self.user_factors, "user_factors")
        item_factors = _fitted(self.item_factors, "item_factors")
        item_bias = _fitted(self.item_bias, "item_bias")
        return _dense(user_factors[_as_users(users)] @ item_factors.T + item_bias[None, :])

    def search_item_vectors(self) -> np.ndarray:  # the item bias as one more coordinate
        item_factors, item_bias = _fitted(self.item_factors, "item_factors"), _fitted(self.item_bias, "item_bias")
        return np.hstack([item_factors, item_bias[:, None].astype(item_factors.dtype)])

    def search_user_vectors(self, users: np.ndarray) -> np.ndarray:
        user = _fitted(self.user_factors, "user_factors")[_as_users(users)]
        return np.hstack([user, np.ones((len(user), 1), user.dtype)])

    def fold_in(self, user_rows: sp.csr_matrix, seed: int = 0) -> np.ndarray:
        """User vectors (len(rows) × (factors + 1)) for new/updated users, item factors frozen.

        numpy SGD on the user vector only, same BPR objective as training: start from 0 (bias
        column fixed to 1), then `fold_in_epochs` epochs; each epoch visits every positive of
        every user once in random order, paired with a uniform negative the user has not
        liked, update u += lr * (σ(-x_uij) (y_i - y_j) - reg * u) on the non-bias columns.
        The loop runs over "rounds" (the t-th positive of every user at once), vectorised
        across users, so its length is epochs × the largest row size. Deterministic for a seed.
        """
        item_factors = _fitted(self.item_factors, "item_factors")
        rows = _canonical_csr(user_rows)
        rows.data[:] = 1.0
        n_users, n_items = rows.shape
        if n_items != item_factors.shape[0]:
            raise ValueError(f"user_rows has {n_items} columns, model has {item_factors.shape[0]} items")
        lr = self.params["fold_in_learning_rate"] or self.params["learning_rate"]
        reg = float(self.params["regularization"])
        rng = np.random.default_rng(seed)
        y = item_factors.astype(np.float64)
        f = y.shape[1] - 1
        vectors = np.zeros((n_users, f + 1), dtype=np.float64)
        vectors[:, f] = 1.0
        counts = np.diff(rows.indptr)
        codes = _positive_codes(rows)
        active_users = np.flatnonzero(counts)
        for _ in range(int(self.params["fold_in_epochs"])):
            # random permutation of each user's positives: sort by (user, random key)
            keys = rng.random(rows.nnz)
            owner = np.repeat(np.arange(n_users), counts)
            order = np.lexsort((keys, owner))
            shuffled = rows.indices[order]
            for t in range(int(counts.max()) if rows.nnz else 0):
                users = active_users[counts[active_users] > t]
                pos = shuffled[rows.indptr[users] + t]
                neg = _sample_uniform_negatives(rng, users, n_items, codes)
                diff = y[pos] - y[neg]
                u = vectors[users]
                x = np.einsum("ij,ij->i", u, diff)
                g = 1.0 / (1.0 + np.exp(x))  # σ(-x)
                step = g[:, None] * diff - reg * u
                step[:, f] = 0.0
                vectors[users] = u + lr * step
        return vectors.astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": _fitted(self.user_factors, "user_factors"),
            "item_factors": _fitted(self.item_factors, "item_factors"),
            "item_bias": _fitted(self.item_bias, "item_bias"),
        }

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors = np.ascontiguousarray(arrays["user_factors"], dtype=np.float32)
        self.item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        # models saved before the correction existed have no item_bias: they scored without it
        bias = arrays.get("item_bias")
        if bias is None:
            self.params["popularity_correction"] = 0.0
            bias = np.zeros(len(self.item_factors), np.float32)
        self.item_bias = np.ascontiguousarray(bias, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# 5. impression-aware BPR (numpy)
# --------------------------------------------------------------------------------------------
class ImpressionBPRConfig(RecallConfig):
    # bpr_impressions (a share of hard negatives) has its own day-8 best: hard negatives overfit
    # sooner, 128 factors / 60 epochs (bpr_uniform's) drop it from 0.1449 to 0.1266 on day 8. Run
    # both with identical params for the like-for-like comparison (benchmarks/RESULTS.md has both).
    # Learning rate and regularization are bpr_uniform's.
    factors: int = 64
    learning_rate: float = 0.05
    regularization: float = 0.01
    epochs: int = 30
    batch_size: int = 4096
    hard_ratio: float = 0.3  # share of negatives drawn from shown-but-not-chosen items


class ImpressionBPRModel(RecallModel):
    """BPR with hard negatives from impressions, numpy mini-batch SGD.

    Each epoch visits every positive (u, i) once in random order, in mini-batches of
    batch_size. Its negative j is, with probability hard_ratio, an item shown to u and not
    chosen (uniform over the distinct items of u's shown_negatives row, positives removed),
    falling back to uniform when u has none; otherwise uniform over items not in u's
    positives (rejection sampling). x_uij = p_u·(q_i - q_j) + b_i - b_j, gradient ascent on
    ln σ(x_uij) with L2 `regularization`; a batch's updates use the parameters as they were at
    the batch start and are summed per row when a user/item repeats in a batch.
    Init N(0, 0.1² / factors) for factors, 0 for biases. score = p_u·q_i + b_i.
    Deterministic for a fixed seed (numpy only, single thread apart from BLAS).
    """

    name = "bpr_impressions"
    # UniformBPRModel replaces it with its own config
    config: ClassVar[type[RecallConfig]] = ImpressionBPRConfig

    def __init__(self, **params):
        super().__init__(**params)
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self.item_bias: np.ndarray | None = None

    def fit(self, data: TrainingData, seed: int = 0) -> ImpressionBPRModel:
        rng = np.random.default_rng(seed)
        f = int(self.params["factors"])
        lr = float(self.params["learning_rate"])
        reg = float(self.params["regularization"])
        batch = max(1, int(self.params["batch_size"]))
        hard_ratio = float(self.params["hard_ratio"])

        positives = _canonical_csr(data.positives)
        positives.data[:] = 1.0
        n_users, n_items = positives.shape
        shown = _canonical_csr(data.shown_negatives)
        if shown.shape != positives.shape:
            raise ValueError(f"shown_negatives has shape {shown.shape}, positives {positives.shape}")
        shown.data[:] = 1.0
        shown = _canonical_csr(shown - shown.multiply(positives))  # shown and never chosen
        shown_counts = np.diff(shown.indptr)

        pos_users = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(positives.indptr))
        pos_items = positives.indices.astype(np.int64)
        codes = _positive_codes(positives)

        scale = 0.1 / np.sqrt(f)
        p = rng.normal(0.0, scale, size=(n_users, f))
        q = rng.normal(0.0, scale, size=(n_items, f))
        b = np.zeros(n_items)

        reg_pu_buf, grad_q_buf = np.empty((batch, f)), np.empty((2 * batch, f))
        for _ in range(int(self.params["epochs"])):
            order = rng.permutation(len(pos_users))
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                u, i = pos_users[idx], pos_items[idx]
                j = _sample_uniform_negatives(rng, u, n_items, codes)
                hard = (rng.random(len(u)) < hard_ratio) & (shown_counts[u] > 0)
                if hard.any():
                    hu = u[hard]
                    pick = (rng.random(len(hu)) * shown_counts[hu]).astype(np.int64)
                    j[hard] = shown.indices[shown.indptr[hu] + pick]
                n = len(u)
                pu, qi, qj = p[u], q[i], q[j]
                diff = qi - qj
                bi, bj = b[i], b[j]
                x = np.einsum("ij,ij->i", pu, diff) + bi - bj
                g = 1.0 / (1.0 + np.exp(np.clip(x, -35.0, 35.0)))  # σ(-x)
                gc = g[:, None]
                # The updates below are lr·(σ(-x)·(q_i - q_j) - reg·p_u) for p and
                # lr·[σ(-x)·p_u - reg·q_i ; -σ(-x)·p_u - reg·q_j] for q, computed in place into
                # reused buffers: each (batch × factors) pass costs as much as the arithmetic.
                np.multiply(diff, gc, out=diff)
                np.subtract(diff, np.multiply(pu, reg, out=reg_pu_buf[:n]), out=diff)
                diff *= lr
                grad_q = grad_q_buf[: 2 * n]
                np.multiply(qi, reg, out=grad_q[:n])
                np.multiply(qj, reg, out=grad_q[n:])
                np.multiply(pu, gc, out=pu)
                np.subtract(pu, grad_q[:n], out=grad_q[:n])
                np.negative(pu, out=pu)
                np.subtract(pu, grad_q[n:], out=grad_q[n:])
                grad_q *= lr
                _scatter_add(p, u, diff)
                ij = np.concatenate([i, j])
                _scatter_add(q, ij, grad_q)
                _scatter_add(b, ij, lr * np.concatenate([g - reg * bi, -g - reg * bj]))

        self.user_factors = p.astype(np.float32)
        self.item_factors = q.astype(np.float32)
        self.item_bias = b.astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        user_factors = _fitted(self.user_factors, "user_factors")
        item_factors = _fitted(self.item_factors, "item_factors")
        item_bias = _fitted(self.item_bias, "item_bias")
        return _dense(user_factors[_as_users(users)] @ item_factors.T + item_bias[None, :])

    def search_item_vectors(self) -> np.ndarray:  # the item bias as one more coordinate
        item_factors, item_bias = _fitted(self.item_factors, "item_factors"), _fitted(self.item_bias, "item_bias")
        return np.hstack([item_factors, item_bias[:, None].astype(item_factors.dtype)])

    def search_user_vectors(self, users: np.ndarray) -> np.ndarray:
        user = _fitted(self.user_factors, "user_factors")[_as_users(users)]
        return np.hstack([user, np.ones((len(user), 1), user.dtype)])

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": _fitted(self.user_factors, "user_factors"),
            "item_factors": _fitted(self.item_factors, "item_factors"),
            "item_bias": _fitted(self.item_bias, "item_bias"),
        }

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors = np.asarray(arrays["user_factors"], dtype=np.float32)
        self.item_factors = np.asarray(arrays["item_factors"], dtype=np.float32)
        self.item_bias = np.asarray(arrays["item_bias"], dtype=np.float32)


# --------------------------------------------------------------------------------------------
# 6. EASE
# --------------------------------------------------------------------------------------------
SESSION_CUTOFF_TAUS = 10.0  # pairs further apart than this many tau weigh < exp(-10) and are skipped


def session_gram(
    seconds_ago: sp.csr_matrix, tau_seconds: float, n_items: int, out: np.ndarray | None = None, weight: float = 1.0
) -> np.ndarray:
    """Σ_u K_u with K_u[i, j] = exp(-|t_ui - t_uj| / tau) over each user's positives: a
    co-occurrence count in which two items of one user weigh more the closer in time they were
    chosen (1 on the diagonal, so the diagonal counts each item's users). Dense items × items,
    float64. Pairs more than SESSION_CUTOFF_TAUS × tau apart are left out. With `out`,
    weight × the kernel is added into it in place (no second items² matrix) and it is returned.

    Vectorised over lags: with each user's positives sorted by time, lag k pairs every positive
    with its k-th successor; a positive whose k-th successor is another user's or too far away
    has no valid pair at any larger lag either, so it drops out and the loop ends when none is left.
    """
    if tau_seconds <= 0:
        raise ValueError(f"tau_seconds must be > 0, got {tau_seconds}")
    coo = sp.coo_matrix(seconds_ago)
    order = np.lexsort((-coo.data, coo.row))  # per user, oldest (most seconds ago) first
    users, items, times = coo.row[order], coo.col[order].astype(np.int64), -coo.data[order].astype(np.float64)
    gram = np.zeros((n_items, n_items), dtype=np.float64) if out is None else out
    weight = float(weight)
    np.add.at(gram, (items, items), weight)
    cutoff = SESSION_CUTOFF_TAUS * float(tau_seconds)
    alive = np.arange(len(items))
    lag = 1
    while len(alive):
        alive = alive[alive + lag < len(items)]
        later = alive + lag
        gap = times[later] - times[alive]
        alive = alive[(users[later] == users[alive]) & (gap <= cutoff)]
        later = alive + lag
        pair = weight * np.exp(-(times[later] - times[alive]) / float(tau_seconds))
        np.add.at(gram, (items[alive], items[later]), pair)
        np.add.at(gram, (items[later], items[alive]), pair)
        lag += 1
    return gram


class EASEConfig(RecallConfig):
    lambda_: float = 500.0
    # EASE fits at most this many items, the most popular seen ones: the fit is a dense items²
    # float64 inverse, O(items³) — 2.4 min for 15k items on 2 cores, ~35 s for 10k — and items
    # beyond the head of a large catalog rarely enter a top-k (the other channels still rank them).
    max_items: int = Field(default=10000, ge=1)
    # EASE's session kernel: items one user chose within ~tau seconds of each other count as more
    # alike (0 = off, plain EASE). On MovieLens-100K's random split it lifts EASE's NDCG@10 from
    # 0.487 to 0.498 (weight 2, tau 180), on its temporal split it does not help (docs/evaluation.md).
    # Off by default: on the synthetic data before its generator had sessions it moved EASE by -1%
    # to +2%, within noise (not re-measured since the generator's requests come in sessions).
    session_weight: float = Field(default=0.0, ge=0.0)
    session_tau_seconds: float = Field(default=600.0, gt=0.0)


class EASEModel(RecallModel):
    """EASE^R (Steck 2019), closed form on the dense Gram matrix of the binarised positives.

    G = XᵀX + λI, P = G⁻¹, B = I - P / diag(P) (column-wise), diag(B) = 0; score = X[u] @ B.
    The hyperparameter is called `lambda_` (`lambda` is a Python keyword).

    Only the items seen in training (a positive in X) are fitted: an unseen item's row and
    column of G are λ on the diagonal alone, so G⁻¹ is block diagonal in them and B restricted
    to the seen items is exactly B of the whole catalog; an unseen item's column of B is zero.
    So `items` (the seen item indices) and `weights` (seen × seen) are stored; score() gives
    unseen items 0, as the full matrix did, and recommend() never lists them (a day's catalog
    may be 25x the items its window saw). With more than max_items seen items only the
    max_items most popular are fitted (the Gram matrix is dense fitted² float64, inverted in
    place; B is kept as float32); the others score 0 and are never listed, as unseen ones.

    Session kernel (session_weight > 0): G = XᵀX + session_weight · session_gram(τ) + λI, so
    items one user chose within minutes of each other count as more alike than items the same
    user chose months apart (needs data.seconds_ago). On MovieLens-100K this lifts EASE from
    below ALS to above it (benchmarks/RESULTS.md); 0 = plain EASE.
    """

    name = "ease"
    config = EASEConfig

    def __init__(self, **params):
        super().__init__(**params)
        self.items: np.ndarray | None = None  # catalog indices of the fitted (seen) items, ascending
        self.weights: np.ndarray | None = None  # B over `items` (len(items)²)
        self.user_items: sp.csr_matrix | None = None  # users × catalog

    def fit(self, data: TrainingData, seed: int = 0) -> EASEModel:
        x = _canonical_csr(data.positives)
        x.data[:] = 1.0
        users_per_item = np.diff(x.tocsc().indptr)
        items = np.flatnonzero(users_per_item > 0).astype(np.int64)
        if len(items) > int(self.params["max_items"]):  # the head of the catalog (ties: lower index)
            head = np.argsort(-users_per_item[items], kind="stable")[: int(self.params["max_items"])]
            items = np.sort(items[head])
        n_seen = len(items)
        import scipy.linalg

        seen = sp.csr_matrix(x[:, items])
        gram = np.asarray((seen.T @ seen).toarray(), dtype=np.float64)
        session_weight = float(self.params["session_weight"])
        if session_weight > 0:
            if data.seconds_ago is None:
                raise ValueError("EASE with session_weight > 0 needs the positives' times (TrainingData.seconds_ago)")
            ages = _ages_on_pattern(x, data.seconds_ago, "seconds_ago")[:, items]
            session_gram(ages, float(self.params["session_tau_seconds"]), n_seen, out=gram, weight=session_weight)
        gram[np.diag_indices(n_seen)] += float(self.params["lambda_"])
        p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False) if n_seen else gram
        del gram
        p /= -np.diag(p)[None, :]
        p[np.diag_indices(n_seen)] = 0.0
        self.items = items
        self.weights = p.astype(np.float32)
        self.user_items = x
        return self

    @property
    def n_items(self) -> int:
        return _fitted(self.user_items, "user_items").shape[1]

    def _seen_scores(self, users: np.ndarray) -> np.ndarray:
        """Scores over the fitted items only (len(users) × len(items))."""
        items, weights = _fitted(self.items, "items"), _fitted(self.weights, "weights")
        rows = _fitted(self.user_items, "user_items")[_as_users(users)][:, items]
        return _dense(rows @ weights)

    def score(self, users: np.ndarray) -> np.ndarray:
        users = _as_users(users)
        out = np.zeros((len(users), self.n_items), np.float32)
        out[:, _fitted(self.items, "items")] = self._seen_scores(users)
        return out

    def score_pairs(self, users: np.ndarray, items: np.ndarray, block: int = 1 << 16) -> np.ndarray:
        """score(u, i) per pair from the seen-item score rows of the pairs' distinct users, 512
        at a time; an item the model never saw scores 0."""
        users, items = _as_users(users), _as_users(items)
        position = np.full(self.n_items, -1, np.int64)
        position[_fitted(self.items, "items")] = np.arange(len(_fitted(self.items, "items")))
        columns = position[items]
        out = np.zeros(len(users), np.float32)
        distinct, inverse = np.unique(users, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(0, len(distinct) + 512, 512))
        for b, start in enumerate(range(0, len(distinct), 512)):
            rows = order[bounds[b] : bounds[b + 1]]
            rows = rows[columns[rows] >= 0]
            if len(rows):
                scores = self._seen_scores(distinct[start : start + 512])
                out[rows] = scores[inverse[rows] - start, columns[rows]]
        return out

    def recommend(
        self,
        users: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None = None,
        batch: int = 1024,
        blocked_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k like RecallModel.recommend, over the seen items only: an item the model never
        saw has no score and is never listed (-1 / -inf padding when fewer than k are left)."""
        items = _fitted(self.items, "items")
        users = _as_users(users)
        n_items = self.n_items
        kk = min(k, n_items)
        position = np.full(n_items, -1, np.int64)
        position[items] = np.arange(len(items))
        blocked = position[np.asarray(blocked_items, np.int64)] if blocked_items is not None else position[:0]
        blocked = blocked[blocked >= 0]
        out_items = np.full((len(users), kk), -1, dtype=np.int64)
        out_scores = np.full((len(users), kk), -np.inf, dtype=np.float32)
        width = min(kk, len(items))
        if width == 0:
            return out_items, out_scores
        for start in range(0, len(users), batch):
            chunk = users[start : start + batch]
            scores = self._seen_scores(chunk)
            if exclude is not None:
                owners, excluded = excluded_entries(exclude, chunk)
                columns = position[excluded]
                scores[owners[columns >= 0], columns[columns >= 0]] = -np.inf
            scores[:, blocked] = -np.inf
            top = np.argpartition(-scores, width - 1, axis=1)[:, :width]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(scores, top, axis=1)
            listed = ~np.isneginf(top_scores)  # excluded or blocked: padding
            out_items[start : start + len(chunk), :width] = np.where(listed, items[top], -1)
            out_scores[start : start + len(chunk), :width] = top_scores
        return out_items, out_scores

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "items": _fitted(self.items, "items"),
            "weights": _fitted(self.weights, "weights"),
            **_csr_arrays("user_items", self.user_items),
        }

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        # C order: scipy's sparse @ dense copies a Fortran-ordered operand (the inverse is saved
        # that way) on every product, 9 MB per call at 1.5k items, the online path's largest cost
        self.weights = np.ascontiguousarray(arrays["weights"], dtype=np.float32)
        # artifacts saved before only the seen items were fitted hold the whole catalog
        items = arrays.get("items")
        self.items = np.arange(len(self.weights), dtype=np.int64) if items is None else np.asarray(items, np.int64)
        self.user_items = _csr_from_arrays("user_items", arrays)


# --------------------------------------------------------------------------------------------
# 7. content-based (cold start)
# --------------------------------------------------------------------------------------------
class ContentConfig(RecallConfig):
    tag_weight: float = 0.5  # weight of the tags against the genres in an item's content vector
    # A content space wider than this (genres + a release's whole tag vocabulary: 3.6k columns
    # at ml-32m) is projected onto its top principal directions: exact cosine there costs a
    # near-dense users x items x width product (25 s per 4k users at ml-32m).
    max_dims: int = Field(default=128, ge=1)


class ContentColdStartModel(RecallModel):
    """Content recall for users with few interactions and for new (interaction-less) items.

    item content vector v_i = [genres_i, tag_weight × tags_i]; user profile = L2-normalised
    Σ_{i ∈ positives(u)} signal_ui × v_i (positives weighted by their confidence value);
    score = cosine(profile_u, v_i), 0 for items with no content. Users without positives get
    the global profile Σ_{u,i} signal_ui × v_i (the popularity-weighted genre mix).
    When the content space is wider than max_dims, profiles and items are projected onto the
    max_dims leading eigenvectors W of the normalised items' Gram matrix and score = (p W)·(v W):
    the cosine restricted to the directions the catalog's content varies in (exact when the
    content has rank ≤ max_dims). Many items share one content vector, so scores tie a lot;
    recommend() breaks ties arbitrarily (but deterministically).
    """

    name = "content"
    config = ContentConfig

    def __init__(self, **params):
        super().__init__(**params)
        self.user_profiles: sp.csr_matrix | None = None
        self.item_vectors: sp.csr_matrix | None = None
        self.global_profile: np.ndarray | None = None
        self.projection: np.ndarray = np.zeros((0, 0), np.float32)  # (width, max_dims); empty = none

    def _content(self, data: TrainingData) -> sp.csr_matrix:
        genres = sp.csr_matrix(data.item_genres, dtype=np.float64)
        tags = sp.csr_matrix(data.item_tags, dtype=np.float64)
        if genres.shape[0] != data.n_items or tags.shape[0] != data.n_items:
            raise ValueError("item_genres/item_tags must have one row per item")
        return sp.csr_matrix(sp.hstack([genres, float(self.params["tag_weight"]) * tags], format="csr"))

    def fit(self, data: TrainingData, seed: int = 0) -> ContentColdStartModel:
        import scipy.linalg

        content = self._content(data)
        positives = _canonical_csr(data.positives, np.float64)
        profiles = sp.csr_matrix(positives @ content)
        global_profile = np.asarray(profiles.sum(axis=0), dtype=np.float64).ravel()
        norm = np.linalg.norm(global_profile)
        self.global_profile = (global_profile / norm if norm > 0 else global_profile).astype(np.float32)
        self.user_profiles = _row_normalise(profiles).astype(np.float32)
        items = _row_normalise(content)
        self.item_vectors = items.astype(np.float32)
        width, dims = items.shape[1], int(self.params["max_dims"])
        self.projection = np.zeros((0, 0), np.float32)
        if width > dims:
            gram = (items.T @ items).toarray()
            _, vectors = scipy.linalg.eigh(gram, subset_by_index=[width - dims, width - 1])
            self.projection = np.ascontiguousarray(vectors[:, ::-1], dtype=np.float32)  # leading first
        return self

    @property
    def projected(self) -> bool:
        return self.projection.size > 0

    def _user_space(self, normalised: sp.csr_matrix) -> np.ndarray:
        """Dense search vectors of L2-normalised profile rows (projected when the model is);
        an empty row gets the global profile."""
        empty, fallback = np.diff(normalised.indptr) == 0, _fitted(self.global_profile, "global_profile")
        if self.projected:  # (the sparse rows times the projection: never densified at full width)
            normalised, fallback = normalised @ self.projection, fallback @ self.projection
        dense = _dense(normalised)
        dense[empty] = fallback
        return dense

    def score_profiles(self, profiles: sp.csr_matrix) -> np.ndarray:
        """Scores for raw (unnormalised) profiles, e.g. rows of positives @ content of new users."""
        return self._score_normalised(_row_normalise(sp.csr_matrix(profiles)).astype(np.float32))

    def _score_normalised(self, profiles: sp.csr_matrix) -> np.ndarray:
        item_vectors = _fitted(self.item_vectors, "item_vectors")
        if self.projected:
            return self._user_space(profiles) @ _fitted(self._item_vectors(), "item_vectors").T
        scores = _dense(profiles @ item_vectors.T)
        empty = np.diff(profiles.indptr) == 0
        if empty.any():
            scores[empty] = item_vectors @ _fitted(self.global_profile, "global_profile")
        return scores

    def score(self, users: np.ndarray) -> np.ndarray:
        profiles = _fitted(self.user_profiles, "user_profiles")
        if self._loaded_cache is None:
            return self.score_profiles(profiles[_as_users(users)])
        # a loaded model answers one user per call online: its profiles normalised once (row by
        # row, so each row exactly as score_profiles would normalise it)
        if "normalised_profiles" not in self._loaded_cache:
            self._loaded_cache["normalised_profiles"] = _row_normalise(profiles).astype(np.float32)
        return self._score_normalised(self._loaded_cache["normalised_profiles"][_as_users(users)])

    def search_item_vectors(self) -> np.ndarray | None:
        """Cosine = normalised profile · normalised item vector (both projected when the model
        is). None (dense scoring) when the content space is too wide to densify."""
        item_vectors = _fitted(self.item_vectors, "item_vectors")
        if self.projected:
            return _dense(item_vectors @ self.projection)
        if item_vectors.shape[1] > 512:
            return None
        return item_vectors.toarray().astype(np.float32)

    def search_user_vectors(self, users: np.ndarray) -> np.ndarray:
        return self._user_space(_fitted(self.user_profiles, "user_profiles")[_as_users(users)])

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            **_csr_arrays("user_profiles", self.user_profiles),
            **_csr_arrays("item_vectors", self.item_vectors),
            "global_profile": _fitted(self.global_profile, "global_profile"),
            "projection": self.projection,
        }

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_profiles = _csr_from_arrays("user_profiles", arrays)
        self.item_vectors = _csr_from_arrays("item_vectors", arrays)
        self.global_profile = np.asarray(arrays["global_profile"], dtype=np.float32)
        # artifacts saved before wide content was projected have none
        self.projection = np.asarray(arrays.get("projection", np.zeros((0, 0))), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# 8. BPR with uniform negatives (numpy)
# --------------------------------------------------------------------------------------------
class UniformBPRConfig(RecallConfig):
    factors: int = 128
    learning_rate: float = 0.05
    regularization: float = 0.01
    epochs: int = 60
    batch_size: int = 4096
    hard_ratio: float = 0.0

    @field_validator("hard_ratio")
    @classmethod
    def _uniform_only(cls, hard_ratio: float) -> float:
        if hard_ratio != 0.0:
            raise ValueError("bpr_uniform always samples uniform negatives (hard_ratio = 0)")
        return hard_ratio


class UniformBPRModel(ImpressionBPRModel):
    """Plain BPR with uniform negatives: ImpressionBPRModel with hard_ratio fixed at 0.

    The baseline that impression-aware BPR is compared with. implicit's BPR (BPRModel)
    draws its negatives from the entries of the interaction matrix, i.e. in proportion to
    item popularity, which pushes popular items down; on popularity-heavy data (the
    synthetic logs, MovieLens-100K) it ranks below popularity, while uniform negatives do not.
    """

    name = "bpr_uniform"
    config = UniformBPRConfig


# --------------------------------------------------------------------------------------------
# every registered model
# --------------------------------------------------------------------------------------------
class _RegisteredModels(Mapping[str, type[RecallModel]]):
    """name -> model class of every model in registry.REGISTRY, in channel order (a live view:
    a model registered later is in it too)."""

    @staticmethod
    def _registry():
        from .registry import REGISTRY  # registry.py imports this module: looked up at use

        return REGISTRY

    def __getitem__(self, name: str) -> type[RecallModel]:
        return self._registry()[name].model

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry())

    def __len__(self) -> int:
        return len(self._registry())

    def __repr__(self) -> str:
        return f"MODELS({dict(self)!r})"


MODELS: Mapping[str, type[RecallModel]] = _RegisteredModels()


def load_model(directory: Path | str) -> RecallModel:
    """Load any saved recall model: params.json's "model" picks the class."""
    import json

    directory = Path(directory)
    meta = json.loads((directory / "params.json").read_text())
    try:
        cls = MODELS[meta["model"]]
    except KeyError:
        raise ValueError(f"{directory}: unknown recall model {meta.get('model')!r}; known: {sorted(MODELS)}") from None
    return cls.load(directory)
