"""`recsys` console script. `recsys recommend --user U [--k 10] [--explain] [--json]` serves one
user from the latest published models through the same funnel as the batch assets."""

from __future__ import annotations

import argparse
import json
import os
import sys

from recsys_assets.definitions import build_resources


def _recommend(args) -> int:
    from recsys_assets.online import OnlineRecommender

    resources = build_resources(args.data_root)
    recommender = OnlineRecommender(
        resources["storage"], resources["model_store"], resources["ranking"], resources["recall"], day=args.day
    )
    answer = recommender.recommend(args.user, k=args.k, explain=args.explain)
    rows = answer.table.drop("stage").to_dicts()
    if args.json:
        print(
            json.dumps(
                {
                    "user_id": answer.user_id,
                    "path": answer.path,
                    "day": answer.day,
                    "stage": answer.stage,
                    "timings_ms": {k: round(v, 3) for k, v in answer.timings_ms.items()},
                    "items": rows,
                },
                default=str,
            )
        )
        return 0
    print(
        f"user {answer.user_id}: {answer.path} path, models of {answer.day}, {answer.stage} "
        f"({answer.timings_ms['total_ms']:.1f} ms after load)"
    )
    for row in rows:
        line = f"{row['rank']:>3}. item {row['item_id']:<8} score {row['score']:+.4f}  via {','.join(row['channels'] or [])}"
        if args.explain:
            line += f"  because you watched {row.get('because_you_watched') or []}; top features {row.get('top_features') or []}"
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("recommend", help="top-K for one user from the latest published models")
    rec.add_argument("--user", type=int, required=True)
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--explain", action="store_true", help="add because-you-watched items and top features")
    rec.add_argument("--json", action="store_true", help="print one JSON object")
    rec.add_argument("--day", default=None, help="serve with the models of this day (default: the latest)")
    rec.add_argument("--data-root", default=os.getenv("RECSYS_DATA_ROOT", "data"))
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("--k must be >= 1")
    try:
        return _recommend(args)
    except Exception as error:  # a clear message, not a traceback, for missing/corrupt artifacts
        from recsys_assets.serving import MissingInput
        from resources.model_store import CorruptModelError

        if isinstance(error, (MissingInput, CorruptModelError)):
            print(f"recsys: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
