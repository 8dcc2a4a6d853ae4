"""MovieLens-100K on the production-like protocol: a global temporal split. All 100,000
ratings sorted by time; the last 20% are the test set, the first 80% the training set; every
rating is an implicit positive; a test user's relevant items are their test ratings; seen
(training) items are removed; the full training catalog is ranked (items first rated in the
test period cannot be recommended by any model and count as misses); K=10. Only users with
training data are scored (the rest are cold and reported as a count).

Hyperparameters and fusion weights are picked the same way as in bench_ml100k.py, on a
temporal validation split of the training data (its last 20% by time), then refitted on
the whole training set and scored once on the test set.

    .venv/bin/python benchmarks/bench_ml100k_temporal.py [--no-record]
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from bench_ml100k import CONFIGS, FUSION_CHANNELS, SHARED, fusion_zscore_top10, training_data, tune  # noqa: E402
from recording import append_result, git_commit  # noqa: E402

from recsys_assets.core import fusion, metrics  # noqa: E402
from recsys_assets.core.recall import models as M  # noqa: E402

TEST_SHARE = 0.2


def temporal_split(ratings: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """(earlier, later) rows: the last `share` of the rows by timestamp (ties by user, item)."""
    order = np.lexsort((ratings[:, 1], ratings[:, 0], ratings[:, 3]))
    cut = int(round(len(order) * (1 - share)))
    return ratings[order[:cut]], ratings[order[cut:]]


def matrix(rows: np.ndarray, u_idx: dict, i_idx: dict, shape, values: np.ndarray | None = None) -> sp.csr_matrix:
    """users × items of the rows that map into the dictionaries: 1 per rating, or `values`."""
    keep = np.array([u in u_idx and i in i_idx for u, i in rows[:, :2]], dtype=bool)
    r = np.array([u_idx[u] for u in rows[keep, 0]], dtype=np.int64)
    c = np.array([i_idx[i] for i in rows[keep, 1]], dtype=np.int64)
    if values is not None:
        return sp.csr_matrix((np.asarray(values, np.float64)[keep], (r, c)), shape=shape)
    m = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=shape)
    m.data[:] = 1.0
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    path = SHARED / "data/ml-100k/u.data"
    if not path.exists():
        print(f"skipped: {path} is not available (the dataset cannot be redistributed)")
        return
    ratings = np.loadtxt(path, dtype=np.int64, ndmin=2)
    train_rows, test_rows = temporal_split(ratings, TEST_SHARE)
    users, items = np.unique(train_rows[:, 0]), np.unique(train_rows[:, 1])
    u_idx, i_idx = {u: k for k, u in enumerate(users)}, {i: k for k, i in enumerate(items)}
    shape = (len(users), len(items))
    train = matrix(train_rows, u_idx, i_idx, shape)
    # EASE's session kernel reads each rating's age in seconds before the newest training rating
    data = training_data(train, matrix(train_rows, u_idx, i_idx, shape, train_rows[:, 3].max() - train_rows[:, 3] + 1))
    # relevant = every test rating of a warm user (items unknown to training stay relevant: misses)
    warm = [u for u in np.unique(test_rows[:, 0]) if u in u_idx]
    relevant = [test_rows[test_rows[:, 0] == u, 1] for u in warm]
    eval_users = np.array([u_idx[u] for u in warm])
    cold_users = len(np.unique(test_rows[:, 0])) - len(warm)

    fit_rows, val_rows = temporal_split(train_rows, TEST_SHARE)
    fit, held = matrix(fit_rows, u_idx, i_idx, shape), matrix(val_rows, u_idx, i_idx, shape)
    held = (held - held.multiply(fit > 0)).tocsr()  # re-watches of fitted items are not new
    # validate like the test: warm users only (users first seen in the validation period have
    # no fitted vector and would only add noise to the choice)
    warm_in_fit = sp.diags((np.diff(fit.indptr) > 0).astype(np.float32))
    held = (warm_in_fit @ held).tocsr()
    held.eliminate_zeros()
    print(
        f"temporal split: {len(train_rows)} train / {len(test_rows)} test ratings, {len(warm)} warm test users, "
        f"{cold_users} cold; tuning on the last 20% of train by time"
    )
    chosen, fusion_configs, weights, report = tune(data, splits=[(fit, held)])
    configs = dict(CONFIGS) | chosen

    results, channels = {}, {}
    seen = (train > 0).astype(np.float32).tocsr()
    for name, params in configs.items():
        started = time.perf_counter()
        model = M.MODELS[name](**params).fit(data, seed=42)
        fit_s = time.perf_counter() - started
        recs, scores = model.recommend(eval_users, 100, exclude=seen)
        channels[name] = (recs, scores)
        results[name] = (recs[:, :10], round(fit_s, 2))
    results["fusion_rrf"] = (fusion.fuse({k: channels[k] for k in ("als", "ease")}, data.n_items, 10)["rrf"][0], "")
    fitted = {c: channels[c] for c in FUSION_CHANNELS if fusion_configs[c] == configs[c]}
    results["fusion_zscore"] = (fusion_zscore_top10(data, fusion_configs, weights, fitted, users=eval_users), "")
    print("model          NDCG@10  P@10    R@10    fit")
    rows = {}
    for name, (recs, fit_s) in results.items():
        ids = np.where(recs >= 0, items[np.maximum(recs, 0)], -1)
        m = metrics.summarize(metrics.per_user_metrics(ids, relevant, 10))
        rows[name] = m
        print(f"{name:14s} {m['ndcg@10']:.4f}   {m['precision@10']:.4f}  {m['recall@10']:.4f}  {fit_s}")
    print(
        "picked on temporal validation: "
        + json.dumps({k: round(v, 4) for k, v in report.items()})
        + f"; fusion weights {json.dumps(weights)}, fusion EASE {json.dumps(fusion_configs['ease'])}"
    )
    if not args.no_record:
        line = " <br> ".join(
            f"{n} {m['ndcg@10']:.4f} / {m['precision@10']:.4f} / {m['recall@10']:.4f}" for n, m in rows.items()
        )
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_ml100k_temporal.py` | "
            f"{len(warm)} warm users ({cold_users} cold) | {line} | params `{json.dumps(chosen)}`, "
            f"weights `{json.dumps(weights)}` with EASE `{json.dumps(fusion_configs['ease'])}` |",
            section="MovieLens-100K, global temporal split",
        )


if __name__ == "__main__":
    main()
