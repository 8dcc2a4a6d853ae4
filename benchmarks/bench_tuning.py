"""Tuned vs default on the next held-out period, per source.

On a materialized data root (the quickstart's): for the last day D with recall models, the
tuning of D (services/tuning.py: each model's search_space, Optuna TPE, validated on D-1,
never on D) chooses each model's settings; then both the defaults and the tuned settings are
fitted on the window before D and scored on D's held-out positives (the period the tuning
never saw), NDCG@10 per test user, with the paired bootstrap 95% CI of the difference.

    .venv/bin/python benchmarks/bench_tuning.py --data-root DIR [--models als ease bpr item_cf]
        [--trials 20] [--day D] [--test-days N] [--no-record]

--day picks the tuning day (default: the last day with recall models), --test-days scores the
N days from D on instead of D alone (a ratings source: its held-out period, e.g. MovieLens-100K
--day 1998-03-07 --test-days 47; one day holds a handful of test users).
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.core import metrics  # noqa: E402
from recsys_assets.core.recall import models as recall_models  # noqa: E402
from recsys_assets.core.recall import registry  # noqa: E402
from recsys_assets.core.training_data import seen_matrix  # noqa: E402
from recsys_assets.services.lake import Lake  # noqa: E402
from recsys_assets.services.model_store import ModelStore  # noqa: E402
from recsys_assets.services.training import load_day  # noqa: E402
from recsys_assets.services.tuning import period_truth, study  # noqa: E402
from recsys_assets.settings import Settings  # noqa: E402

K = 10


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=["als", "bpr", "ease", "item_cf"])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--day")
    ap.add_argument("--test-days", type=int, default=1)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    settings = Settings.load(
        data_root=str(args.data_root), recall={"tune": args.models, "tune_trials": args.trials, "tune_seconds": 600}
    )
    recall = settings.recall
    lake = Lake(data_root=settings.data_root)
    store = ModelStore(models_root=settings.models_root, cache_dir=settings.model_cache)
    source = json.loads((args.data_root / "SOURCE.json").read_text()).get("source", "?")
    day = args.day or max(store.published_days("recall_als") or store.published_days("recall_popularity"))
    test_days = [d for d in sorted(p.stem for p in (lake.lake_dir / "interactions").glob("*.parquet")) if d >= day]
    test_days = test_days[: args.test_days]
    first = str(settings.start_date)
    cells, started = [], time.perf_counter()
    for name in args.models:
        spec = registry.spec(name)
        trials = study(name, lake, store, recall, day, first)
        best = next(t for t in trials if t["is_best"])
        data, test, info, _, _ = load_day(lake, day, recall, first, with_shown=spec.needs_shown, model_store=store)
        exclude, blocked = seen_matrix(data.positives, info["consumed"]), np.flatnonzero(~info["available_items"])
        relevant = test.relevant if len(test_days) == 1 else period_truth(lake, test_days, data, exclude)
        users = np.flatnonzero(np.diff(relevant.indptr) > 0)
        per_user = {}
        for label, params in (("default", recall.model_params(name)), ("tuned", json.loads(best["params"]))):
            model = recall_models.MODELS[name](**registry.params(name, params))
            model.fit(data, seed=recall.seed)
            recs, _ = model.recommend(users, K, exclude=exclude, blocked_items=blocked)
            per_user[label] = metrics.per_user_metrics(recs, relevant[users], K)[f"ndcg@{K}"]
        paired = metrics.paired_bootstrap(per_user["tuned"], per_user["default"], n_boot=1000, seed=0)
        diff = per_user["tuned"].mean() - per_user["default"].mean()
        changed = {k: v for k, v in json.loads(best["params"]).items() if recall.model_params(name).get(k) != v}
        print(
            f"{source} {day} {name:8s} default {per_user['default'].mean():.4f} tuned {per_user['tuned'].mean():.4f} "
            f"diff {diff:+.4f} [{paired['ci_low']:+.4f}, {paired['ci_high']:+.4f}] (n={len(users)}; validation "
            f"{best['validation_day']}: best trial {best['trial']} of {len(trials)}, {best['value']:.4f}; {changed})"
        )
        cells.append(
            f"{name}: {per_user['default'].mean():.4f} → {per_user['tuned'].mean():.4f} "
            f"({diff:+.4f} [{paired['ci_low']:+.4f}, {paired['ci_high']:+.4f}]"
            + (", defaults kept" if best["trial"] == 0 else "")
            + ")"
        )
    total = time.perf_counter() - started
    if not args.no_record:
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_tuning.py --data-root "
            f"<{source}> --trials {args.trials}"
            + (f" --day {day} --test-days {args.test_days}" if args.day else "")
            + f"` | {machine()} | {source} | {test_days[0]}..{test_days[-1]} (n={len(users)}) | "
            + " <br> ".join(cells)
            + f" | {total:.0f}s |",
            section="Tuned vs default",
        )


if __name__ == "__main__":
    main()
