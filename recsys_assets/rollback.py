"""Roll the recall champion back to an earlier published model, in one command:

    python -m recsys_assets.rollback --to als@2026-01-10 [--reason "..."] [--day 2026-01-14] [--data-root data]

The target artifact (`data/models/recall_<model>/<training day>`) must exist, pass every
checksum of its manifest and load. Then a registry row with decision `rollback` is written
next to the day's decision as `lake/recall_champion/<day>.rollback-<UTC time>.parquet`
(`<day>` defaults to the latest day of the registry). From then on `current_champion` /
`serving_champion` return the rolled-back model: the serving index and, when no ranker serves,
the lists of that day (re-materialize `recall_ann_index` and `recommendations` for it; a running
server reloads by itself) and the next day's gated promotion compare against it. The day's
original decision file is kept; `SELECT * FROM recall_champion ORDER BY day` shows both.
A missing or corrupt target is refused with a message naming the file, exit status 1.
"""

from __future__ import annotations

import argparse
import sys

from recsys_assets.core.storage import refresh_catalog_if_needed
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.rollback import RollbackRefused, parse_target, rollback
from recsys_assets.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--to", required=True, metavar="MODEL@DAY", help="published recall model to serve, e.g. als@2026-01-10"
    )
    parser.add_argument("--reason", default="manual rollback", help="why (recorded in the registry)")
    parser.add_argument("--day", help="registry day the rollback applies after (default: the latest registry day)")
    parser.add_argument("--data-root", help="default: RECSYS_DATA_ROOT or ./data")
    args = parser.parse_args(argv)
    settings = Settings.load(**({"data_root": args.data_root} if args.data_root else {}))
    storage = Lake(data_root=settings.data_root)
    model_store = ModelStore(models_root=settings.models_root, cache_dir=settings.model_cache)
    try:
        model, trained_day = parse_target(args.to)
        done = rollback(storage, model_store, model, trained_day, args.reason, day=args.day)
    except RollbackRefused as refused:
        print(f"rollback refused: {refused}", file=sys.stderr)
        return 1
    refresh_catalog_if_needed(storage.lake_dir, storage.catalog_path)
    row = done.row
    print(
        f"recall champion after {row['day']}: {row['champion']}@{row['champion_day']} "
        f"(was {row['incumbent']}@{row['incumbent_day']}); registry row {done.path}"
    )
    print(
        f"rebuild the serving index and the lists: dagster asset materialize -m recsys_assets.definitions "
        f"--select recall_ann_index,recommendations --partition {row['day']}"
    )
    if done.superseded_by:
        print(
            f"warning: the registry has later decisions ({', '.join(done.superseded_by)}) that still come after this "
            "rollback; re-materialize recall_champion for those days to gate them against it",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
