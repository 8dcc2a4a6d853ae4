"""Item-CF top-k at a large catalog: the sparse path (top-k over the stored entries of
X[users] @ sim, used from ItemCFModel.sparse_min_items items) against the dense path
(full users × items scores + argpartition, RecallModel.recommend) on the same fitted model,
the same users and the same exclusions, in the same run. Reports users/s of both, the ratio,
and the share of users whose top-k is identical (ties aside, it differs only for users with
fewer than k scored items, whom the dense path pads with arbitrary zero-score items).

    .venv/bin/python benchmarks/bench_item_cf_topk.py [--items 100000] [--users 200000]
        [--per-user 15] [--neighbours 100] [--k 100] [--sample 4096] [--no-record]

Data: users pick --per-user items from a Zipf(1.1)-skewed catalog, with 8 genre clusters so
neighbourhoods have structure (the L tier's shape: 100k items, ~10-30 positives per user).
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.core.recall.base import TrainingData  # noqa: E402
from recsys_assets.core.recall.models import ItemCFModel  # noqa: E402


def synthetic_positives(n_users: int, n_items: int, per_user: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    clusters = 8
    rank = np.arange(1, n_items // clusters + 1)
    p = rank**-1.1
    p /= p.sum()
    user_cluster = rng.integers(0, clusters, n_users)
    own = rng.choice(len(rank), size=(n_users, per_user), p=p) * clusters + user_cluster[:, None]
    stray = rng.integers(0, n_items, size=(n_users, 2))  # a little taste outside the cluster
    cols = np.minimum(np.concatenate([own, stray], axis=1), n_items - 1).ravel()
    rows = np.repeat(np.arange(n_users), per_user + 2)
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    x.data[:] = 1.0  # duplicates summed, then binarised
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--per-user", type=int, default=15)
    ap.add_argument("--neighbours", type=int, default=100)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--sample", type=int, default=4096, help="users ranked by each path")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    positives = synthetic_positives(args.users, args.items, args.per_user)
    empty = sp.csr_matrix(positives.shape, dtype=np.float32)
    data = TrainingData(
        positives=positives,
        shown_negatives=empty,
        days_ago=empty,
        item_genres=sp.csr_matrix((args.items, 0), dtype=np.float32),
        item_tags=sp.csr_matrix((args.items, 0), dtype=np.float32),
    )
    started = time.perf_counter()
    model = ItemCFModel(neighbours=args.neighbours, shrinkage=10.0).fit(data)
    fit_s = time.perf_counter() - started
    users = np.random.default_rng(1).choice(args.users, size=args.sample, replace=False)
    timings, results = {}, {}
    for name, threshold in (("dense", 10**12), ("sparse", 0)):
        model.sparse_min_items = threshold
        started = time.perf_counter()
        results[name] = model.recommend(users, args.k, exclude=positives)
        timings[name] = time.perf_counter() - started
    dense_items, dense_scores = results["dense"]
    sparse_items, _ = results["sparse"]
    full = (sparse_items >= 0).all(axis=1)
    same = np.array([np.array_equal(a, b) for a, b in zip(sparse_items[full], dense_items[full], strict=False)])
    rate = {n: args.sample / t for n, t in timings.items()}
    ratio = timings["dense"] / timings["sparse"]
    stored = model.user_items[users] @ model.sim
    print(
        f"item_cf fit on {args.users:,} users x {args.items:,} items ({positives.nnz:,} positives, "
        f"{args.neighbours} neighbours) in {fit_s:.1f}s; {stored.nnz / args.sample:,.0f} scored items per user"
    )
    print(f"dense  top-{args.k}: {rate['dense']:8,.0f} users/s")
    print(f"sparse top-{args.k}: {rate['sparse']:8,.0f} users/s  ({ratio:.1f}x dense)")
    print(f"users with >= k scored items: {full.mean():.1%}; identical top-{args.k} among them: {same.mean():.1%}")
    if not args.no_record:
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_item_cf_topk.py "
            f"--items {args.items} --users {args.users} --k {args.k}` | {machine()} | dense {rate['dense']:,.0f} "
            f"users/s, sparse {rate['sparse']:,.0f} users/s (**{ratio:.1f}x**); {stored.nnz / args.sample:,.0f} scored "
            f"items per user; identical top-{args.k} for {same.mean():.1%} of the {full.mean():.1%} users with >= k "
            f"scored items |",
            section="Item-CF top-k",
        )


if __name__ == "__main__":
    main()
