"""Approximate nearest-neighbour retrieval over item factors (faiss, inner product).

Indexes are saved with faiss.write_index / read_index (faiss's own binary format, no pickle).
HNSW's efSearch and IVF's nprobe are stored in the index file by faiss, so a loaded index
searches with the settings it was saved with.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import faiss
import numpy as np

from recsys_assets.core import local_cache


def _f32(matrix: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-d array, got shape {matrix.shape}")
    return matrix


def build_ann_index(item_factors: np.ndarray, kind: str = "hnsw", **params) -> faiss.Index:
    """An inner-product index over item_factors (row id = item index).

    kind="hnsw": IndexHNSWFlat; params M (32), ef_construction (200), ef_search (128).
    kind="ivf":  IndexIVFFlat over a flat IP quantizer; params nlist (≈ 4·sqrt(n_items)),
                 nprobe (nlist // 8, at least 1). Training uses faiss's k-means with its
                 fixed default seed.
    kind="flat": exact IndexFlatIP (the reference; no params).
    """
    x = _f32(item_factors)
    n, d = x.shape
    index: faiss.Index
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, int(params.pop("M", 32)), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params.pop("ef_construction", 200))
        index.hnsw.efSearch = int(params.pop("ef_search", 128))
    elif kind == "ivf":
        nlist = int(params.pop("nlist", max(1, min(n, int(4 * np.sqrt(max(n, 1)))))))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        # faiss's Python wrapper keeps `quantizer` referenced by `index`; no own_fields juggling
        index.train(x)
        index.nprobe = int(params.pop("nprobe", max(1, nlist // 8)))
    elif kind == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        raise ValueError(f"unknown ANN index kind {kind!r} (hnsw, ivf, flat)")
    if params:
        raise TypeError(f"unknown parameters for a {kind} index: {sorted(params)}")
    index.add(x)
    return index


def mips_to_l2(item_vectors: np.ndarray, query_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum inner product search as nearest-neighbour search (Bachrach et al. 2014): items
    get one extra coordinate sqrt(M² − ‖x‖²) (M = the largest item norm), queries a 0, so the
    L2 nearest items are exactly the largest inner products. Graph indexes (HNSW) search L2
    neighbourhoods far more reliably than raw inner products over vectors of unequal norms."""
    items = _f32(item_vectors)
    norms = np.einsum("ij,ij->i", items, items)
    extra = np.sqrt(np.maximum(norms.max() - norms, 0.0)).astype(np.float32).reshape(-1, 1)
    queries = _f32(query_vectors)
    return (
        np.hstack([items, extra]).astype(np.float32),
        np.hstack([queries, np.zeros((len(queries), 1), np.float32)]).astype(np.float32),
    )


def build_mips_hnsw(
    item_vectors: np.ndarray,
    M: int = 32,
    ef_construction: int = 200,
    ef_search: int = 256,
    ids: np.ndarray | None = None,
) -> faiss.Index:
    """HNSW (L2) over mips_to_l2-augmented item vectors; query it with augmented queries. With
    `ids` (one per row), searches return those ids instead of row numbers."""
    x = _f32(item_vectors)
    hnsw = faiss.IndexHNSWFlat(x.shape[1], M)
    hnsw.hnsw.efConstruction = ef_construction
    hnsw.hnsw.efSearch = ef_search
    if ids is None:
        hnsw.add(x)
        return hnsw
    index = faiss.IndexIDMap(hnsw)
    index.add_with_ids(x, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def save_index(index: faiss.Index, path: Path | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(path))


def load_index(path: Path | str) -> faiss.Index:
    return faiss.read_index(str(path))


def ann_search(index: faiss.Index, user_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items per user: (item ids int64, scores float32), best first, like recommend().
    Missing results (k > items reachable) are id -1 with score -inf."""
    scores, ids = index.search(_f32(user_vectors), int(k))
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    return ids.astype(np.int64), scores


def exact_search(item_factors: np.ndarray, user_vectors: np.ndarray, k: int) -> np.ndarray:
    """Brute-force inner-product top-k item ids (numpy), best first."""
    scores = _f32(user_vectors) @ _f32(item_factors).T
    k = min(int(k), scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def recall_vs_exact(
    index: faiss.Index, item_factors: np.ndarray, user_vectors: np.ndarray, k: int, ids: np.ndarray | None = None
) -> float:
    """Mean over users of |ANN top-k ∩ exact top-k| / k (exact = brute-force inner product);
    `ids`: the id of each row of item_factors, as the index was built with them."""
    ann_ids, _ = ann_search(index, user_vectors, k)
    exact_ids = exact_search(item_factors, user_vectors, k)
    if ids is not None:
        exact_ids = np.asarray(ids, np.int64)[exact_ids]
    hits = [len(np.intersect1d(a[a >= 0], e)) for a, e in zip(ann_ids, exact_ids, strict=False)]
    return float(np.mean(hits) / k) if hits else 0.0


# graphs kept in a cache directory: a day's channels (up to ~4 large ones) for a few days
CACHED_GRAPHS = 16


class MipsHnsw:
    """An HNSW graph over item vectors searched like a flat inner-product index
    (`search(queries, k)` -> (scores, row numbers), best first, -1 / -inf when fewer): the
    graph walks the mips_to_l2 space for `ef_search` candidates, which are then scored by
    their exact inner product and ordered (ties by row), so scores are exact and only the
    items the graph missed differ from exact search.

    With `cache_dir` the graph is kept there by the vectors and build settings: building takes
    seconds per 100k items (faiss HNSW, multi-threaded, so two builds differ), loading a
    fraction of that, and every server process then searches the same graph."""

    def __init__(
        self,
        item_vectors: np.ndarray,
        M: int = 32,
        ef_construction: int = 100,
        ef_search: int = 200,
        cache_dir: Path | None = None,
    ):
        self.items = _f32(item_vectors)
        self.ef_search = ef_search
        self.cached = "not cached"  # or "built", "loaded": what `cache_dir` gave

        def build() -> faiss.Index:
            norms = np.einsum("ij,ij->i", self.items, self.items)
            extra = np.sqrt(np.maximum(norms.max(initial=0.0) - norms, 0.0)).astype(np.float32).reshape(-1, 1)
            return build_mips_hnsw(
                np.hstack([self.items, extra]), M=M, ef_construction=ef_construction, ef_search=ef_search
            )

        cache = local_cache.private_dir(cache_dir, "HNSW graphs") if cache_dir is not None else None
        if cache is None:
            self.graph = build()
            return
        # the graph depends on the vectors, its build settings and the faiss that made it
        key = hashlib.sha256(f"faiss {faiss.__version__} M {M} efc {ef_construction} {self.items.shape}\n".encode())
        key.update(self.items.tobytes())
        target = cache / f"{key.hexdigest()[:32]}.faiss"
        with local_cache.locked(target.with_suffix(".lock")):  # one process builds, the others load it
            if target.exists():
                self.graph = faiss.read_index(str(target))
                faiss.ParameterSpace().set_index_parameter(self.graph, "efSearch", ef_search)
                self.cached = "loaded"
                local_cache.touch(target)
                return
            self.graph = build()
            partial = local_cache.partial_path(target)
            faiss.write_index(self.graph, str(partial))
            local_cache.publish(partial, target)
            self.cached = "built"
        local_cache.prune(cache, ".faiss", CACHED_GRAPHS)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _f32(queries)
        augmented = np.hstack([queries, np.zeros((len(queries), 1), np.float32)])
        _, rows = self.graph.search(augmented, max(int(k), self.ef_search))
        scores = np.einsum("uj,ukj->uk", queries, self.items[np.maximum(rows, 0)])
        scores = np.where(rows >= 0, scores, -np.inf).astype(np.float32)
        order = np.lexsort((np.where(rows >= 0, rows, np.iinfo(np.int64).max), -scores), axis=1)[:, : int(k)]
        rows, scores = np.take_along_axis(rows, order, axis=1), np.take_along_axis(scores, order, axis=1)
        return np.where(np.isfinite(scores), scores, -np.inf), np.where(np.isfinite(scores), rows, -1)
