"""What a server process pays at load for one channel's HNSW graph: building it (the baseline:
what every worker did on every start) against loading the graph an earlier process left in the
model cache (core/local_cache.py). Same vectors, same run; the loaded graph's lists are compared
with the built one's.

    .venv/bin/python benchmarks/bench_hnsw_cache.py [--items 100000] [--dim 64] [--no-record]

Data: random factors at the L tier's catalog size (100k items; ALS's 64 factors, plus the one
column of the MIPS transform inside MipsHnsw).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.core.recall.ann import MipsHnsw  # noqa: E402

EF_SEARCH = 256  # ServingConfig.ann_ef_search's default


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    items = (rng.normal(size=(args.items, args.dim)) * rng.uniform(0.5, 2, (args.items, 1))).astype(np.float32)
    queries = rng.normal(size=(200, args.dim)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="bench_hnsw_") as tmp:
        cache = Path(tmp) / "hnsw-graphs"
        started = time.perf_counter()
        built = MipsHnsw(items, ef_search=EF_SEARCH, cache_dir=cache)
        build_s = time.perf_counter() - started
        size_mb = sum(p.stat().st_size for p in cache.glob("*.faiss")) / 2**20
        started = time.perf_counter()
        loaded = MipsHnsw(items, ef_search=EF_SEARCH, cache_dir=cache)
        load_s = time.perf_counter() - started
        assert (built.cached, loaded.cached) == ("built", "loaded")
        same = all(
            np.array_equal(a, b) for a, b in zip(built.search(queries, 100), loaded.search(queries, 100), strict=True)
        )
    print(
        f"{args.items} items x {args.dim}: build {build_s:.2f} s (faiss threads {faiss.omp_get_max_threads()}), "
        f"load from the cache {load_s:.2f} s = {load_s / build_s:.3f} of the build; {size_mb:.0f} MiB on disk; "
        f"same lists for 200 queries: {same}"
    )
    if not args.no_record:
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_hnsw_cache.py` | {machine()} | "
            f"{args.items:,} x {args.dim} | {build_s:.2f} s | {load_s:.2f} s | {load_s / build_s:.3f} | {size_mb:.0f} MiB | "
            f"{same} |",
            section="HNSW graph cache",
        )


if __name__ == "__main__":
    main()
