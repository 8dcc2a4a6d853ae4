"""The one protocol every recall channel follows, and the data it trains on.

A model is fitted on a TrainingData (sparse user × item matrices built from a time window
of interactions), scores users against the full catalog, recommends top-K with already
seen items removed, and saves itself in safe formats only: .npy arrays (loaded with
allow_pickle=False) plus a params.json. Nothing is ever pickled. Its hyperparameters are a
typed config (a RecallConfig next to the model class) that holds their one set of defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError

# faiss indexes a loaded model keeps, one per blocked-item set (recall's and the ranker's)
KEPT_FAISS_INDEXES = 4


@dataclass
class TrainingData:
    """Everything a recall model may learn from, indexed by the id dictionaries.

    positives:   users × items, float32; value = the interaction's confidence signal
                 (e.g. completion, or 1 for a click/like); zero = no positive.
    shown_negatives: users × items, float32; how often an item was shown to the user and
                 not chosen (impression-aware models use these as hard negatives).
    days_ago:    users × items, float32, same sparsity as positives: age in days of the
                 latest positive at the end of the window (0 = the last training day).
    item_genres: items × genres, float32 binary (content features; may have 0 columns).
    item_tags:   items × tags, float32 binary.
    seconds_ago: users × items, float32, same sparsity as positives (optional): age in seconds
                 of the latest positive at the end of the window; only models that look at
                 how close in time two choices were (EASE's session kernel) need it.
    """

    positives: sp.csr_matrix
    shown_negatives: sp.csr_matrix
    days_ago: sp.csr_matrix
    item_genres: sp.csr_matrix
    item_tags: sp.csr_matrix
    genre_names: list[str] = field(default_factory=list)
    seconds_ago: sp.csr_matrix | None = None

    @property
    def n_users(self) -> int:
        return self.positives.shape[0]

    @property
    def n_items(self) -> int:
        return self.positives.shape[1]


def first_not_excluded(
    items: np.ndarray, scores: np.ndarray, exclude_rows: sp.csr_matrix, n_items: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first k of `items` (each row best first; -1 = no item) that the row's
    `exclude_rows` row does not list, with their scores; -1 / -inf padding. The exclusions are
    matched as (row, item) keys by sorting, never a users × catalog mask."""
    if not exclude_rows.has_sorted_indices:
        exclude_rows = exclude_rows.sorted_indices()
    # rows ascending, items ascending within a row: the keys come sorted, so a binary search
    # finds them (np.isin sorts or hashes them again: ~35% of a factor channel's search at ml-32m)
    excluded = (
        np.repeat(np.arange(exclude_rows.shape[0], dtype=np.int64), np.diff(exclude_rows.indptr)) * n_items
        + exclude_rows.indices
    )
    keys = np.arange(len(items), dtype=np.int64)[:, None] * n_items + items
    found = np.searchsorted(excluded, keys)
    hit = excluded[np.minimum(found, len(excluded) - 1)] == keys if len(excluded) else np.zeros(keys.shape, bool)
    drop = (items < 0) | hit
    order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # kept items first, in list order
    keep = ~np.take_along_axis(drop, order, axis=1)
    return (
        np.where(keep, np.take_along_axis(items, order, axis=1), -1),
        np.where(keep, np.take_along_axis(scores, order, axis=1), -np.inf),
    )


def _blocked_set(blocked_items: np.ndarray | None) -> np.ndarray:
    """Blocked item indices as sorted unique int64 (the key of what is kept per blocked set)."""
    return np.unique(np.asarray(blocked_items, np.int64)) if blocked_items is not None else np.zeros(0, np.int64)


def excluded_entries(exclude: sp.spmatrix, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in `users`, item) of every entry of the users' `exclude` rows: the entries of
    exclude[users], read from a CSR matrix's arrays without building that matrix (scipy's
    fancy row indexing costs more than scoring one user)."""
    if not isinstance(exclude, sp.csr_matrix | sp.csr_array):
        rows = sp.csr_matrix(exclude[users])
        return np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices
    users = np.asarray(users, np.int64)
    n_rows = exclude.shape[0]
    if len(users) and (users.max() >= n_rows or users.min() < -n_rows):
        raise IndexError(f"user index out of range for {n_rows} exclusion rows")
    users = np.where(users < 0, users + n_rows, users)
    starts, stops = exclude.indptr[users], exclude.indptr[users + 1]
    counts = stops - starts
    owners = np.repeat(np.arange(len(users)), counts)
    # each entry's offset in exclude.indices: its row's start plus its place within the row
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(starts, counts)
    return owners, exclude.indices[offsets]


def exclusion_depth_batches(exclude: sp.spmatrix | None, users: np.ndarray, batch: int) -> list[tuple[np.ndarray, int]]:
    """[(positions in `users`, the largest exclusion count among them)]: the users grouped by
    the power of two above their exclusion count, each group cut into `batch`-sized pieces.
    A search that retrieves k + the exclusions it may have to skip then goes as deep as its
    group needs: one user with 13k ratings in a batch would otherwise make every user of the
    batch retrieve 13k items (ml-32m: ~10x the work)."""
    users = np.asarray(users, np.int64)
    if exclude is None or not len(users):
        counts = np.zeros(len(users), np.int64)
    else:
        indptr = (
            sp.csr_matrix(exclude).indptr if not isinstance(exclude, sp.csr_matrix | sp.csr_array) else exclude.indptr
        )
        counts = indptr[users + 1] - indptr[users]  # the asked rows only (one user of 1M: not 1M)
    depth = np.ceil(np.log2(counts + 1)).astype(np.int64)
    order = np.argsort(depth, kind="stable")
    bounds = np.flatnonzero(np.diff(depth[order])) + 1
    out = []
    for group in np.split(order, bounds):
        for start in range(0, len(group), batch):
            positions = group[start : start + batch]
            out.append((positions, int(counts[positions].max(initial=0))))
    return out


class RecallConfig(BaseModel):
    """Base of a recall model's hyperparameters: one field per keyword the model takes, with its
    default and bounds. Unknown fields are refused, and a config never changes once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def validated_params(config: type[BaseModel], params: dict, owner: str) -> dict:
    """`params` checked by `config` and completed with its defaults, as a plain dict in the
    config's field order. A bad value or an unknown field raises a ValueError that names `owner`
    and the field."""
    try:
        return config(**params).model_dump()
    except ValidationError as error:
        problems = []
        for e in error.errors():
            field = ".".join(str(part) for part in e["loc"]) or "(all)"
            if e["type"] == "extra_forbidden":
                problems.append(f"unknown parameter {field!r} (known: {', '.join(config.model_fields)})")
            else:
                problems.append(f"{field}: {e['msg']} (got {e['input']!r})")
        raise ValueError(f"{owner}: {'; '.join(problems)}") from None


class RecallModel:
    """Base class: subclasses implement fit/score and the arrays they persist."""

    name: ClassVar[str] = "base"
    # Whether a user's list comes from their own history (False: the same list for everyone).
    personal: ClassVar[bool] = True
    # The typed hyperparameters (None: any keywords, unchecked). With a config, self.params is the
    # validated config as a dict in its field order: that dict is what params.json stores.
    config: ClassVar[type[BaseModel] | None] = None
    # Whether fit changes process-wide state (a BLAS thread limit): such a model's days of one
    # run train one at a time (RecallConfig.parallel_days applies to the others).
    limits_blas: ClassVar[bool] = False

    def __init__(self, **params):
        if self.config is not None:
            params = validated_params(self.config, params, f"recall model {self.name!r}")
        self.params = params

    # --- learning and scoring -------------------------------------------------
    def fit(self, data: TrainingData, seed: int = 0) -> RecallModel:
        raise NotImplementedError

    def score(self, users: np.ndarray) -> np.ndarray:
        """Dense scores (len(users) × n_items), float32, higher = better."""
        raise NotImplementedError

    def score_pairs(self, users: np.ndarray, items: np.ndarray, block: int = 1 << 16) -> np.ndarray:
        """score(u, i) of aligned (user, item) pairs, float32. Dot-product models multiply the
        pair's two vectors; the others score the full rows of the pairs' distinct users."""
        users = np.asarray(users, np.int64).reshape(-1)
        items = np.asarray(items, np.int64).reshape(-1)
        out = np.empty(len(users), np.float32)
        item_vectors = self._item_vectors() if len(users) else None
        if item_vectors is not None:
            for start in range(0, len(users), block):
                stop = start + block
                out[start:stop] = np.einsum(
                    "ij,ij->i", self.search_user_vectors(users[start:stop]), item_vectors[items[start:stop]]
                )
            return out
        distinct, inverse = np.unique(users, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(0, len(distinct) + 512, 512))
        for b, start in enumerate(range(0, len(distinct), 512)):
            rows = order[bounds[b] : bounds[b + 1]]
            scores = self.score(distinct[start : start + 512])
            out[rows] = scores[inverse[rows] - start, items[rows]]
        return out

    # Catalogs at least this large go through faiss when the model is a dot product (see search_item_vectors()).
    faiss_min_items = 20_000

    def search_item_vectors(self) -> np.ndarray | None:
        """Item vectors such that score(u, i) = search_user_vectors([u]) · item vector i exactly,
        for models whose scores are a dot product; None otherwise (dense scoring)."""
        return None

    def search_user_vectors(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # A model loaded from disk is read-only: its search vectors and faiss index are built once
    # and kept (the online path searches one user per call; rebuilding them, a copy of every item
    # vector, would cost more than the search). A model being fitted has no cache.
    _loaded_cache: dict | None = None

    def _item_vectors(self) -> np.ndarray | None:
        """search_item_vectors(), computed once for a loaded model."""
        if self._loaded_cache is None:
            return self.search_item_vectors()
        if "vectors" not in self._loaded_cache:
            self._loaded_cache["vectors"] = self.search_item_vectors()
        return self._loaded_cache["vectors"]

    def _kept_per_blocked_set(self, name: str, blocked_items: np.ndarray | None, build):
        """build(blocked: sorted unique item indices) once per blocked-item set for a loaded
        model, which keeps the results of its last few sets under `name` (each call for a model
        being fitted). The online path alternates between recall (no blocked items) and the
        ranker's rank features (the day's blocked items): one kept result would be rebuilt on
        every call."""
        blocked = _blocked_set(blocked_items)
        key = blocked.tobytes()
        kept = self._loaded_cache.get(name, {}) if self._loaded_cache is not None else {}
        if key in kept:
            return kept[key]
        value = build(blocked)
        if self._loaded_cache is not None:
            # a new dict, not an update in place: concurrent requests read the old one safely
            newest = list(kept.items())[max(0, len(kept) - KEPT_FAISS_INDEXES + 1) :]
            self._loaded_cache[name] = dict(newest) | {key: value}
        return value

    def _faiss_index(self, item_vectors: np.ndarray, blocked_items: np.ndarray | None):
        """The flat inner-product index over the items not blocked, and those items' indices
        (kept per blocked-item set: rebuilding one copies every item vector)."""

        def build(blocked: np.ndarray):
            import faiss

            allowed = np.ones(len(item_vectors), bool)
            allowed[blocked] = False
            allowed_ids = np.flatnonzero(allowed)
            index = faiss.IndexFlatIP(item_vectors.shape[1])
            index.add(np.ascontiguousarray(item_vectors[allowed_ids], dtype=np.float32))
            return index, allowed_ids

        return self._kept_per_blocked_set("indexes", blocked_items, build)

    def approximate_search(
        self, blocked_items: np.ndarray | None, ef_search: int, cache_dir: Path | None = None
    ) -> str:
        """Search this loaded model's large catalog (minus `blocked_items`) through an HNSW
        graph from now on (core/recall/ann.py: the retrieved items re-scored exactly, so a list
        differs from the exact one only by items the graph missed). A server enables it only
        where it measured the lists' recall against exact search (services/online.py). With
        `cache_dir` the graph is loaded from there when an earlier load built it. Returns
        "built", "loaded" or "not cached"."""
        from recsys_assets.core.recall.ann import MipsHnsw

        item_vectors = self._item_vectors()
        if self._loaded_cache is None or item_vectors is None:
            raise ValueError(f"{self.name}: approximate search needs a loaded dot-product model")
        _, allowed_ids = self._faiss_index(item_vectors, blocked_items)  # the items the graph holds
        graph = MipsHnsw(np.asarray(item_vectors, np.float32)[allowed_ids], ef_search=ef_search, cache_dir=cache_dir)
        self._loaded_cache["approximate"] = (_blocked_set(blocked_items).tobytes(), graph)
        return graph.cached

    def exact_search(self) -> None:
        """Back to exact search (approximate_search undone)."""
        if self._loaded_cache is not None:
            self._loaded_cache.pop("approximate", None)

    def _recommend_exact_faiss(
        self,
        item_vectors: np.ndarray,
        users: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None,
        blocked_items: np.ndarray | None,
        batch: int = 4096,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by faiss's flat inner-product search (blocked items left out of the index;
        k + the largest exclusion count of a batch of users with similar counts retrieved, then
        excluded items dropped). faiss's
        multi-threaded heap top-k replaces a dense users × items argpartition (~10x faster at 100k items)."""
        n_items = len(item_vectors)
        index, allowed_ids = self._faiss_index(item_vectors, blocked_items)
        approximate = self._loaded_cache.get("approximate") if self._loaded_cache is not None else None
        if approximate is not None and approximate[0] == _blocked_set(blocked_items).tobytes():
            index = approximate[1]  # built over the same allowed items
        kk = min(k, len(allowed_ids))
        out_items = np.full((len(users), kk), -1, dtype=np.int64)
        out_scores = np.full((len(users), kk), -np.inf, dtype=np.float32)
        for positions, most_excluded in exclusion_depth_batches(exclude, users, batch):
            chunk = users[positions]
            rows = exclude[chunk] if exclude is not None else sp.csr_matrix((len(chunk), n_items), dtype=np.float32)
            fetch = min(kk + most_excluded, len(allowed_ids))
            user_vectors = self.search_user_vectors(chunk)
            scores, local = index.search(np.ascontiguousarray(user_vectors, dtype=np.float32), fetch)
            items = np.where(local >= 0, allowed_ids[np.maximum(local, 0)], -1)
            out_items[positions], out_scores[positions] = first_not_excluded(items, scores, rows, n_items, kk)
        return out_items, out_scores

    def recommend(
        self,
        users: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None = None,
        batch: int = 1024,
        blocked_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores per user over the full catalog, excluded items removed:
        `exclude` rows (indexed by user) per user, `blocked_items` (e.g. not yet in the catalog)
        for everyone. A catalog smaller than k gives min(k, n_items) columns (never uninitialised ones);
        a user with fewer than that many items left gets -1 / -inf padding after them."""
        users = np.asarray(users, dtype=np.int64)
        item_vectors = self._item_vectors() if len(users) else None
        if item_vectors is not None and len(item_vectors) >= self.faiss_min_items:
            return self._recommend_exact_faiss(item_vectors, users, k, exclude, blocked_items)
        out_items = np.empty((len(users), k), dtype=np.int64)
        out_scores = np.empty((len(users), k), dtype=np.float32)
        kk = k
        for start in range(0, len(users), batch):
            chunk = users[start : start + batch]
            scores = self.score(chunk).astype(np.float32, copy=True)
            if exclude is not None:
                scores[excluded_entries(exclude, chunk)] = -np.inf
            if blocked_items is not None and len(blocked_items):
                scores[:, blocked_items] = -np.inf
            kk = min(k, scores.shape[1])
            top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(scores, top, axis=1)
            # an excluded or blocked item (score -inf) that filled a slot is padding, as on the faiss path
            out_items[start : start + len(chunk), :kk] = np.where(np.isneginf(top_scores), -1, top)
            out_scores[start : start + len(chunk), :kk] = top_scores
        return out_items[:, :kk], out_scores[:, :kk]

    # --- persistence ------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The learned state to persist (name -> array)."""
        raise NotImplementedError

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, array in self.arrays().items():
            np.save(directory / f"{name}.npy", array, allow_pickle=False)
        (directory / "params.json").write_text(json.dumps({"model": self.name, "params": self.params}, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> RecallModel:
        meta = json.loads((directory / "params.json").read_text())
        if meta["model"] != cls.name:
            raise ValueError(f"{directory} holds a {meta['model']} model, not {cls.name}")
        model = cls(**meta["params"])
        model.set_arrays({p.stem: np.load(p, allow_pickle=False) for p in sorted(directory.glob("*.npy"))})
        model._loaded_cache = {}
        return model
