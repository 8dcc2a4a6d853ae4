"""The recall training data of one day: read from the interactions (what every consumer did
before recall_training_data: each model, recall_candidates, the evaluation, the champion
comparison, the funnel and the ranking features read the window themselves) against reading
the day's published artifact, measured in the same run on a materialized data root.

    .venv/bin/python benchmarks/bench_training_data.py --data-root data [--day 2026-01-14] [--no-record]

The data root needs recall_training_data of the day (the quickstart materializes it for the
model days). Prints best-of-3 seconds and the per-day saving for the consumers of a day.
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.services.training import TRAINING_DATA, compute_day, read_training_data  # noqa: E402
from recsys_assets.settings import Settings  # noqa: E402
from resources import ModelStoreResource, StorageResource  # noqa: E402

# load_day calls of one model day before the artifact: 8 recall models, recall_candidates,
# recall_evaluation, the champion comparison, funnel_evaluation, and the exclusions of the
# ranking features (ranking_samples, ranker_champion, recommendations).
CONSUMERS = 15


def best_of(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--day", help="default: the latest day with a published artifact")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    settings = Settings.load(data_root=args.data_root)
    lake = StorageResource(data_root=settings.data_root)
    store = ModelStoreResource(models_root=settings.models_root)
    days = store.published_days(TRAINING_DATA)
    if not days:
        raise SystemExit(f"no {TRAINING_DATA} under {store.root}: materialize it first (the quickstart does)")
    day = args.day or days[-1]
    recall, first = settings.recall, settings.start_date
    assert read_training_data(lake, store, day, recall, first) is not None, "the artifact is stale for these settings"
    full = best_of(lambda: compute_day(lake, day, recall, first, with_shown=True))
    lean = best_of(lambda: compute_day(lake, day, recall, first, with_shown=False))
    artifact = best_of(lambda: read_training_data(lake, store, day, recall, first))
    before = full + (CONSUMERS - 1) * lean  # bpr_impressions read the shown counts, the rest the lean rows
    after = full + CONSUMERS * artifact  # the asset reads once, every consumer loads the artifact
    data = read_training_data(lake, store, day, recall, first)[0]
    print(
        f"day {day}: {data.n_users} users x {data.n_items} items, {data.positives.nnz} positives, "
        f"{data.shown_negatives.nnz} shown pairs"
    )
    print(
        f"read from interactions: full {full:.3f}s, lean {lean:.3f}s; artifact {artifact:.3f}s ({lean / artifact:.1f}x)"
    )
    print(f"per model day, {CONSUMERS} consumers: {before:.2f}s before, {after:.2f}s after ({before / after:.2f}x)")
    if not args.no_record:
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | "
            f"`python benchmarks/bench_training_data.py --data-root {args.data_root} --day {day}` | {machine()} | "
            f"{data.n_users} x {data.n_items}, {data.positives.nnz} positives | {full:.3f} / {lean:.3f} s | "
            f"{artifact:.3f} s ({lean / artifact:.1f}x) | {before:.2f} s -> {after:.2f} s ({before / after:.2f}x) |",
            section="Recall training data",
        )


if __name__ == "__main__":
    main()
