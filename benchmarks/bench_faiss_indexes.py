"""The faiss indexes a loaded model keeps, on the online path's call pattern: one user per call,
alternating between recall (nothing blocked) and the ranker's rank features (the day's blocked
items). Keeping one index (the baseline, `KEPT_FAISS_INDEXES` = 1, as before) rebuilds it, a
copy of every item vector, on every switch; keeping a few does not. Same model, same users,
same run; the lists are compared too.

    .venv/bin/python benchmarks/bench_faiss_indexes.py [--items 100000] [--dim 64]
        [--blocked 5000] [--calls 60] [--no-record]

Data: random ALS factors at the L tier's catalog size (faiss's exact search is used from
RecallModel.faiss_min_items = 20k items).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.core.recall import base  # noqa: E402
from recsys_assets.core.recall.models import ALSModel  # noqa: E402


def per_call_ms(loaded: ALSModel, blocked: np.ndarray, calls: int, k: int) -> tuple[float, list]:
    for block in (None, blocked):  # the first build of each index is not what is compared
        loaded.recommend(np.array([0]), k, blocked_items=block)
    lists = []
    started = time.perf_counter()
    for call in range(calls):
        items, _ = loaded.recommend(np.array([call]), k, blocked_items=None if call % 2 else blocked)
        lists.append(items)
    return (time.perf_counter() - started) / calls * 1000, lists


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--blocked", type=int, default=5_000)
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    model = ALSModel()
    model.user_factors = rng.normal(size=(args.calls, args.dim)).astype(np.float32)
    model.item_factors = rng.normal(size=(args.items, args.dim)).astype(np.float32)
    blocked = rng.choice(args.items, args.blocked, replace=False)
    folder = Path(tempfile.mkdtemp(prefix="bench_faiss_"))
    model.save(folder)
    kept = base.KEPT_FAISS_INDEXES
    results = {}
    for label, keep in (("one kept (baseline)", 1), (f"{kept} kept", kept)):
        base.KEPT_FAISS_INDEXES = keep
        results[label] = per_call_ms(ALSModel.load(folder), blocked, args.calls, args.k)
    base.KEPT_FAISS_INDEXES = kept
    (old_ms, old_lists), (new_ms, new_lists) = results.values()
    same = all(np.array_equal(a, b) for a, b in zip(old_lists, new_lists, strict=True))
    print(f"{args.items:,} items x {args.dim}, {args.blocked:,} blocked, {args.calls} alternating calls, k={args.k}")
    for label, (ms, _) in results.items():
        print(f"  {label}: {ms:.1f} ms per call")
    print(f"  speed-up {old_ms / new_ms:.2f}x; identical lists: {same}")
    if not args.no_record:
        command = "python benchmarks/bench_faiss_indexes.py " + " ".join(argv if argv is not None else sys.argv[1:])
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `{command.strip()}` | {machine()} | "
            f"{args.items:,} x {args.dim}, {args.blocked:,} blocked | {old_ms:.1f} | {new_ms:.1f} | "
            f"{old_ms / new_ms:.2f}x | {same} |",
            section="faiss indexes kept by a loaded model",
        )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
