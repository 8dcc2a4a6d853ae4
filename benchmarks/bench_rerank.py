"""Re-ranking many users: rerank_batch (vectorised over users, what `recommendations` runs)
against rerank() called once per user (the reference it must equal), on the same synthetic
lists in the same run. Reports users/s of both, the ratio and whether every list is equal.

    .venv/bin/python benchmarks/bench_rerank.py [--users 20000] [--candidates 100] [--k 20] [--no-record]

Lists: `--candidates` scored items per user, 20 genres (1-3 per item), 10% watched items,
the default rules (MMR lambda 0.8, genre cap 4).
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.core.ranking.rerank import RerankRules, rerank, rerank_batch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n, p, g = args.users, args.candidates, 20
    scores = rng.normal(size=(n, p))
    vectors = np.zeros((n, p, g))
    for _ in range(3):
        vectors[np.arange(n)[:, None], np.arange(p)[None, :], rng.integers(0, g, (n, p))] = 1.0
    primary = vectors.argmax(axis=2)
    age, popularity = rng.uniform(0, 60, (n, p)), rng.integers(0, 1000, (n, p)).astype(float)
    watched = rng.random((n, p)) < 0.1
    items = np.arange(p)[None, :] + np.arange(n)[:, None] * p  # distinct ids per user
    rules = RerankRules()
    names = np.array([f"g{j}" for j in range(g)], dtype=object)

    started = time.perf_counter()
    batch_items, _ = rerank_batch(
        items,
        scores,
        args.k,
        rules,
        valid=~watched,
        genre_vectors=vectors,
        primary_genre=primary,
        age_days=age,
        popularity=popularity,
    )
    batch_s = time.perf_counter() - started
    started = time.perf_counter()
    equal = True
    for u in range(n):
        ref, _ = rerank(
            items[u],
            scores[u],
            args.k,
            rules,
            seen=set(items[u][watched[u]].tolist()),
            genre_vectors=vectors[u],
            primary_genre=names[primary[u]],
            age_days=age[u],
            popularity=popularity[u],
        )
        equal &= ref.tolist() == batch_items[u][batch_items[u] >= 0].tolist()
    loop_s = time.perf_counter() - started
    ratio = loop_s / batch_s
    print(
        f"{n:,} users x {p} candidates, top-{args.k}: per-user rerank() {n / loop_s:,.0f} users/s, "
        f"rerank_batch {n / batch_s:,.0f} users/s ({ratio:.1f}x); identical lists: {equal}"
    )
    if not args.no_record:
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_rerank.py --users {n} "
            f"--candidates {p} --k {args.k}` | {machine()} | per-user {n / loop_s:,.0f} users/s, batch "
            f"{n / batch_s:,.0f} users/s (**{ratio:.1f}x**), identical lists: {equal} |",
            section="Re-ranking",
        )


if __name__ == "__main__":
    main()
