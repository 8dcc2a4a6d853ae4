"""Recall quality and speed on the default synthetic data: every model of the last day,
trained on the days before it, evaluated on that day (full catalog, seen items removed),
NDCG@10 / Recall@10 with bootstrap 95% CIs beside popularity; and the ALS and BPR assets'
fit times against calling `implicit` directly on the same matrix in the same run.

    .venv/bin/python benchmarks/bench_recall.py [--days 14] [--no-record] [--tune]

--tune also reruns the small BPR grids that picked the defaults in core/recall/models.py, on an
earlier day than the reported one (TUNE_DAY_INDEX: day 8, trained on days 1-7), never on the
test day: implicit BPR (factors × iterations × popularity_correction) and the numpy BPR
shared by bpr_uniform / bpr_impressions (factors × epochs, scored with uniform negatives).
"""

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
import numpy as np  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.core.generator import GeneratorConfig, generate  # noqa: E402
from recsys_assets.core.recall import models as M  # noqa: E402
from recsys_assets.definitions import build_defs, build_resources  # noqa: E402
from recsys_assets.quickstart import materialize_all  # noqa: E402

# Entries of the random matrix each speed comparison fits (BPR's 100 single-threaded
# iterations take ~47 s on 1M entries: a quarter of that keeps ten fits near two minutes).
SPEED_NNZ = {"als": 1_000_000, "bpr": 250_000}


def fit_speed(
    resources, name: str, repeats: int = 5, users: int = 20_000, items: int = 5_000, nnz: int = 1_000_000
) -> tuple[float, float]:
    """Median fit seconds of the `name` asset's model ("als" or "bpr") vs calling implicit
    directly on the matrix that model hands it (ALS: confidence 1 + alpha * signal; BPR: the
    binary positives), same params, seed and threads. The day's real matrix fits in ~0.1 s
    (too short to time), so a random users × items matrix with `nnz` entries is used;
    alternating runs, one BLAS thread."""
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    from recsys_assets.core.recall.base import TrainingData

    settings = resources["recall"]
    rng = np.random.default_rng(0)
    positives = sp.csr_matrix(
        (rng.random(nnz).astype(np.float32), (rng.integers(0, users, nnz), rng.integers(0, items, nnz))),
        shape=(users, items),
    )
    positives.sum_duplicates()
    empty = sp.csr_matrix((users, items), dtype=np.float32)
    data = TrainingData(
        positives=positives,
        shown_negatives=empty,
        days_ago=empty,
        item_genres=sp.csr_matrix((items, 0), dtype=np.float32),
        item_tags=sp.csr_matrix((items, 0), dtype=np.float32),
    )
    params = settings.model_params(name)
    matrix = data.positives.copy().tocsr()
    if name == "als":
        matrix.data = (1.0 + params["alpha"] * matrix.data).astype(np.float32)

        def direct_fit():
            AlternatingLeastSquares(
                factors=params["factors"],
                regularization=params["regularization"],
                iterations=params["iterations"],
                random_state=settings.seed,
            ).fit(matrix, show_progress=False)
    else:
        matrix.data[:] = 1.0

        def direct_fit():
            BayesianPersonalizedRanking(
                factors=params["factors"],
                learning_rate=params["learning_rate"],
                regularization=params["regularization"],
                iterations=params["iterations"],
                num_threads=params["num_threads"],
                random_state=settings.seed,
                dtype=np.float32,
            ).fit(matrix, show_progress=False)

    ours, direct = [], []
    with threadpool_limits(1, "blas"):  # implicit's advice: one BLAS thread, its own threads do the work
        for _ in range(repeats):
            t = time.perf_counter()
            M.MODELS[name](**params).fit(data, seed=settings.seed)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            direct_fit()
            direct.append(time.perf_counter() - t)
    return float(np.median(ours)), float(np.median(direct))


TUNE_DAY_INDEX = 7  # 0-based: day 8, trained on the 7 days before it
TUNE_GRID = [
    (
        "bpr",
        dict(
            factors=f, learning_rate=0.01, regularization=0.01, iterations=it, popularity_correction=beta, num_threads=1
        ),
    )
    for f in (32, 128)
    for it in (50, 100, 200)
    for beta in (0.0, 1.0)
] + [
    ("bpr_uniform", dict(factors=f, learning_rate=0.05, regularization=0.01, epochs=ep))
    for f in (64, 128)
    for ep in (30, 60)
]


def tune(resources, day: str) -> list[tuple[str, dict, float]]:
    """NDCG@10 of every TUNE_GRID configuration and of popularity on `day` (trained on the window
    before it), evaluated exactly like recall_evaluation (full catalog, seen and unavailable items
    removed)."""
    from recsys_assets.core import metrics
    from recsys_assets.services.channels import exclusion_matrix
    from recsys_assets.services.training import load_day

    settings = resources["recall"]
    data, test, info, _, _ = load_day(resources["storage"], day, settings, None)
    exclude = exclusion_matrix(data.positives, test.users, np.flatnonzero(~info["available_items"]), info["consumed"])
    relevant = test.relevant[test.users]
    rows = []
    for name, params in [("popularity", settings.model_params("popularity"))] + TUNE_GRID:
        model = M.MODELS[name](**params).fit(data, seed=settings.seed)
        recs, _ = model.recommend(test.users, 10, exclude=exclude)
        value = float(metrics.per_user_metrics(recs, relevant, 10)["ndcg@10"].mean())
        rows.append((name, params, value))
        print(f"  tune {day} {name:12s} {json.dumps(params)}: NDCG@10 {value:.4f}", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--tune", action="store_true", help="also run the BPR grids on an earlier day (day 8)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_recall_"))
    generate(GeneratorConfig(days=args.days), root)
    resources = build_resources(str(root))
    days = [d.isoformat() for d in GeneratorConfig(days=args.days).dates]
    t = time.perf_counter()
    materialize_all(build_defs(resources=resources), days, dg.DagsterInstance.ephemeral(), model_days=1)
    total = time.perf_counter() - t
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    rows = con.execute(
        """
        SELECT n.model, n.value, n.ci_low, n.ci_high, n.lift_vs_popularity, n.diff_ci_low, r.value, n.n_users
        FROM recall_evaluation n JOIN recall_evaluation r USING (day, model, segment, k)
        WHERE n.metric = 'ndcg' AND r.metric = 'recall' AND n.k = 10 AND n.segment = 'all' AND n.day = ?
        ORDER BY n.value DESC""",
        [days[-1]],
    ).fetchall()
    (winner,) = con.execute("SELECT champion FROM recall_champion WHERE day = ?", [days[-1]]).fetchone()
    if args.tune:
        tune(resources, days[TUNE_DAY_INDEX])
    speed = {name: fit_speed(resources, name, nnz=nnz) for name, nnz in SPEED_NNZ.items()}
    print(
        f"{args.days} days of default synthetic data, test day {days[-1]}, {rows[0][7]} test users "
        f"(whole pipeline {total:.0f}s)"
    )
    print("model              NDCG@10  95% CI              lift vs pop  diff CI low  Recall@10")
    for m, v, lo, hi, lift, dlo, rec, _ in rows:
        print(
            f"{m:18s} {v:.4f}   [{lo:.4f}, {hi:.4f}]   {'' if lift is None else f'{lift:+.1%}':>10s}  "
            f"{'' if dlo is None else f'{dlo:+.4f}':>10s}  {rec:.4f}"
        )
    print(f"champion: {winner}")
    for name, (ours, direct) in speed.items():
        print(
            f"{name.upper()} fit (20k users x 5k items, {SPEED_NNZ[name]:,} nnz, median of 5): asset's model {ours:.3f}s vs implicit "
            f"direct {direct:.3f}s = {ours / direct:.2f}x (target <= 1.10)"
        )
    if not args.no_record:
        table = " <br> ".join(f"{m} {v:.4f} [{lo:.4f}, {hi:.4f}]" for m, v, lo, hi, *_ in rows)
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_recall.py --days "
            f"{args.days}` | {machine()} | {rows[0][7]} | {table} | {winner} | "
            + " <br> ".join(
                f"{name.upper()} ({SPEED_NNZ[name] // 1000}k nnz) {ours:.3f}s vs {direct:.3f}s ({ours / direct:.2f}x)"
                for name, (ours, direct) in speed.items()
            )
            + " |",
            section="Recall quality",
        )


if __name__ == "__main__":
    main()
