"""The machine-local cache of objects a server derives at load (core/local_cache.py): HNSW
graphs made once and loaded after, only in a private directory, and pruned."""

import fcntl
import os
import time

import numpy as np
import pytest

from recsys_assets.core import local_cache
from recsys_assets.core.recall import ann
from recsys_assets.core.recall.ann import MipsHnsw


def _vectors(n=3000, d=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32) * rng.uniform(0.5, 2, (n, 1)).astype(np.float32)


def test_a_cached_hnsw_graph_is_built_once_then_loaded_and_searches_the_same(tmp_path, monkeypatch):
    items, queries = _vectors(), _vectors(40, seed=1)
    first = MipsHnsw(items, ef_search=120, cache_dir=tmp_path)
    assert first.cached == "built" and len(list(tmp_path.glob("*.faiss"))) == 1

    def no_build(*args, **kwargs):
        raise AssertionError("the cached graph should have been loaded")

    monkeypatch.setattr(ann, "build_mips_hnsw", no_build)
    second = MipsHnsw(items, ef_search=120, cache_dir=tmp_path)
    assert second.cached == "loaded" and second.graph.hnsw.efSearch == 120
    for a, b in zip(first.search(queries, 50), second.search(queries, 50), strict=True):
        np.testing.assert_array_equal(a, b)
    # other vectors are another graph, never the cached one
    with pytest.raises(AssertionError, match="should have been loaded"):
        MipsHnsw(items[:-1], ef_search=120, cache_dir=tmp_path)


def test_no_cache_in_a_directory_other_users_can_write(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    graph = MipsHnsw(_vectors(500), cache_dir=shared)
    assert graph.cached == "not cached" and not list(shared.iterdir())
    assert local_cache.private_dir(tmp_path / "own" / "graphs", "HNSW graphs") == tmp_path / "own" / "graphs"


def test_prune_keeps_the_most_recently_used_and_spares_a_locked_file(tmp_path):
    now = time.time()
    for n in range(5):
        (tmp_path / f"g{n}.faiss").write_bytes(b"x")
        (tmp_path / f"g{n}.lock").touch()
        os.utime(tmp_path / f"g{n}.faiss", (now - 100 * n, now - 100 * n))  # g0 newest
    local_cache.touch(tmp_path / "g4.faiss")  # used just now: kept
    with open(tmp_path / "g3.lock", "a") as held:  # another process reads g3
        fcntl.flock(held, fcntl.LOCK_EX)
        deleted = local_cache.prune(tmp_path, ".faiss", keep=2)
    assert sorted(p.name for p in deleted) == ["g1.faiss", "g2.faiss"]
    assert sorted(p.name for p in tmp_path.glob("*.faiss")) == ["g0.faiss", "g3.faiss", "g4.faiss"]
    assert not (tmp_path / "g1.lock").exists()


def test_the_graph_cache_is_pruned_when_a_graph_is_built(tmp_path, monkeypatch):
    monkeypatch.setattr(ann, "CACHED_GRAPHS", 2)
    for seed in range(4):
        MipsHnsw(_vectors(300, seed=seed), cache_dir=tmp_path)
        time.sleep(0.01)  # distinct modification times
    assert len(list(tmp_path.glob("*.faiss"))) == 2
