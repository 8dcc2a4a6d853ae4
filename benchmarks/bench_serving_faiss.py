"""Batch serving with faiss: top-K items for EVERY user of a tier from the ALS model of a day,
through faiss indexes (IVF and HNSW over MIPS-augmented vectors) versus exact numpy scoring
measured in the same run on a user sample. Reports users per second, recall@K against exact
and peak RSS; appends a row to benchmarks/RESULTS.md ("Scale tiers").

    .venv/bin/python benchmarks/bench_serving_faiss.py --data-root /tmp/tier_L [--day 2026-01-30] [--k 20]

Needs a data root where recall_als was materialized (e.g. by bench_tiers.py). Seen items are
not filtered here (the measured cost is the retrieval); `recommendations` adds the ranker.
"""

import argparse
import resource
import sys
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.core.recall import ann  # noqa: E402
from recsys_assets.core.recall.models import load_model  # noqa: E402
from resources import ModelStoreResource  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--day", default=None, help="model day (default: the latest published recall_als)")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--exact-sample", type=int, default=20_000)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    store = ModelStoreResource(models_root=str(Path(args.data_root) / "models"))
    days = sorted(p.name for p in (Path(args.data_root) / "models" / "recall_als").iterdir() if p.name[:2] == "20")
    day = args.day or days[-1]
    store.verify("recall_als", day)
    model = load_model(store.path("recall_als", day))
    users, items = model.arrays()["user_factors"], model.arrays()["item_factors"]
    n_users, k = len(users), args.k
    print(
        f"recall_als of {day}: {n_users:,} users, {len(items):,} items, {items.shape[1]} factors; faiss threads "
        f"{faiss.omp_get_max_threads()}"
    )

    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n_users, size=min(args.exact_sample, n_users), replace=False))
    started = time.perf_counter()
    for chunk in np.array_split(sample, max(1, len(sample) // 1024)):
        ann.exact_search(items, users[chunk], k)
    exact_ups = len(sample) / (time.perf_counter() - started)
    print(f"exact numpy (sample of {len(sample):,}): {exact_ups:,.0f} users/s")

    results = {}
    for kind in ("ivf", "hnsw"):
        started = time.perf_counter()
        if kind == "ivf":
            index = ann.build_ann_index(items, "ivf")
            queries = users
        else:
            item_x, queries = ann.mips_to_l2(items, users)
            index = ann.build_mips_hnsw(item_x)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        ids = np.empty((n_users, k), np.int64)
        for start in range(0, n_users, 100_000):
            _, ids[start : start + 100_000] = index.search(np.ascontiguousarray(queries[start : start + 100_000]), k)
        search_s = time.perf_counter() - started
        exact = ann.exact_search(items, users[sample[:2000]], k)
        recall = float(
            np.mean([len(np.intersect1d(a, e)) / k for a, e in zip(ids[sample[:2000]], exact, strict=False)])
        )
        results[kind] = (build_s, search_s, n_users / search_s, recall)
        print(
            f"{kind}: build {build_s:.1f}s, all {n_users:,} users in {search_s:.1f}s = {n_users / search_s:,.0f} "
            f"users/s ({n_users / search_s / exact_ups:.1f}x exact), recall@{k} vs exact {recall:.3f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MiB")
    if args.no_record:
        return
    ivf, hnsw = results["ivf"], results["hnsw"]
    append_result(
        f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_serving_faiss.py --data-root "
        f"{args.data_root} --k {k}` (batch top-{k} from recall_als of {day} for all {n_users:,} users, "
        f"{len(items):,} items) | {machine()} | - | IVF: {ivf[1]:.0f}s = {ivf[2]:,.0f} users/s "
        f"({ivf[2] / exact_ups:.1f}x exact numpy {exact_ups:,.0f} users/s), recall@{k} {ivf[3]:.3f}; HNSW: "
        f"{hnsw[1]:.0f}s = {hnsw[2]:,.0f} users/s ({hnsw[2] / exact_ups:.1f}x), recall@{k} {hnsw[3]:.3f} "
        f"(build {ivf[0]:.0f}s / {hnsw[0]:.0f}s) | {peak:,.0f} MiB | - | - | - |",
        section="Scale tiers",
    )


if __name__ == "__main__":
    main()
