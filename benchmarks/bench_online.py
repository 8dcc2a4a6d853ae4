"""Online path latency on a materialized data root (e.g. a scale tier's): what `recsys
recommend` runs per request (OnlineRecommender: recall of every channel + fusion, ranking
features + ranker, re-rank, explanations), p50 / p95 per stage over known and unknown users,
against the recall stage alone as the baseline measured in the same run.

    .venv/bin/python benchmarks/bench_online.py --data-root /tmp/tier_L --tier L [--day D] [--no-record]

--tier applies that tier's settings from bench_tiers.py (the ones its data root was built with).
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from bench_ranking import serving_latency  # noqa: E402
from bench_tiers import TIER_SETTINGS  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.definitions import build_resources  # noqa: E402
from recsys_assets.services.online import latest_model_day  # noqa: E402
from resources import RankingSettings, RecallSettings  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--tier", default=None, choices=sorted(TIER_SETTINGS))
    ap.add_argument("--day", default=None, help="serving day (default: the latest model day, as `recsys recommend`)")
    ap.add_argument("--known", type=int, default=200)
    ap.add_argument("--unknown", type=int, default=50)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    root = Path(args.data_root).resolve()
    settings = TIER_SETTINGS.get(args.tier, {})
    res = build_resources(
        str(root),
        recall=RecallSettings(**settings.get("recall", {})),
        ranking=RankingSettings(**settings.get("ranking", {})),
    )
    day = args.day or latest_model_day(res["model_store"])  # what `recsys recommend` serves by default
    latency, load = serving_latency(root, day, args.known, args.unknown, res=res)
    recall_p50 = latency["recall_ms"][0]
    summary = ", ".join(f"{k.removesuffix('_ms')} {p50:.1f}/{p95:.1f}" for k, (p50, p95) in latency.items())
    ratio = latency["total_ms"][0] / recall_p50
    print(f"day {day}, load {load:.1f}s; p50/p95 ms: {summary}; total / recall alone at p50 = {ratio:.2f}x")
    if not args.no_record:
        command = (
            f"python benchmarks/bench_online.py --data-root {args.data_root}"
            + (f" --tier {args.tier}" if args.tier else "")
            + (f" --day {args.day}" if args.day else "")
        )
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `{command}` | {machine()} | {day} | "
            f"{args.known} known + {args.unknown} unknown | {load:.1f}s | {summary} | {ratio:.2f}x |",
            section="Online latency",
        )


if __name__ == "__main__":
    main()
