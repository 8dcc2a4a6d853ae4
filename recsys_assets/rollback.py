"""Roll the recall champion back to an earlier published model, in one command:

    python -m recsys_assets.rollback --to als@2026-01-10 [--reason "..."] [--day 2026-01-14] [--data-root data]

The target artifact (`data/models/recall_<model>/<training day>`) must exist, pass every
checksum of its manifest and load. Then a registry row with decision `rollback` is written
next to the day's decision as `lake/recall_champion/<day>.rollback-<UTC time>.parquet`
(`<day>` defaults to the latest day of the registry). From then on `current_champion` /
`serving_champion` return the rolled-back model: the serving index of that day (re-materialize
`recall_ann_index` for it) and the next day's gated promotion compare against it. The day's
original decision file is kept; `SELECT * FROM recall_champion ORDER BY day` shows both.
A missing or corrupt target is refused with a message naming the file, exit status 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from recsys_assets.assets.evaluation import REGISTRY_SCHEMA, _write_rows, registry_entries, serving_champion
from recsys_assets.assets.recall import model_assets
from resources import ModelStoreResource, RecallSettings, StorageResource
from resources.model_store import CorruptModelError

_TARGET = re.compile(r"^(?P<model>[a-z_]+)@(?P<day>\d{4}-\d{2}-\d{2})$")


class RollbackRefused(RuntimeError):
    pass


@dataclass
class Rollback:
    row: dict
    path: Path
    superseded_by: list[str]  # later registry days whose decisions still come after this rollback


def parse_target(text: str) -> tuple[str, str]:
    match = _TARGET.match(text.strip())
    if not match:
        raise RollbackRefused(f"target {text!r} is not <model>@<YYYY-MM-DD>, e.g. als@2026-01-10")
    return match["model"], match["day"]


def rollback(
    storage: StorageResource,
    model_store: ModelStoreResource,
    model: str,
    trained_day: str,
    reason: str,
    day: str | None = None,
    metric: str | None = None,
    now: datetime | None = None,
) -> Rollback:
    """Record `model`@`trained_day` as the serving recall champion from registry day `day` on."""
    from recsys_assets.core.recall import models as recall_models

    if model not in model_assets:
        raise RollbackRefused(f"{model!r} is not a recall model; one of {', '.join(model_assets)}")
    try:
        manifest = model_store.verify(f"recall_{model}", trained_day)
        recall_models.load_model(model_store.path(f"recall_{model}", trained_day))
    except CorruptModelError as corrupt:  # names the missing or altered file
        raise RollbackRefused(f"cannot roll back to {model}@{trained_day}: {corrupt}") from corrupt
    except Exception as broken:  # noqa: BLE001 — any load failure refuses the rollback
        raise RollbackRefused(
            f"cannot roll back to {model}@{trained_day}: "
            f"{model_store.path(f'recall_{model}', trained_day)} does not load: {broken}"
        ) from broken
    days = sorted({d for d, _ in registry_entries(storage)})
    if day is None:
        if not days:
            raise RollbackRefused(
                f"the champion registry {storage.lake_dir / 'recall_champion'} is empty: "
                "nothing is serving, so there is nothing to roll back"
            )
        day = days[-1]
    if trained_day > day:
        raise RollbackRefused(
            f"{model}@{trained_day} was trained after registry day {day}; "
            "a rollback serves a model trained on or before that day"
        )
    incumbent = serving_champion(storage, day)
    if incumbent == (model, trained_day):
        raise RollbackRefused(f"{model}@{trained_day} is already the serving champion after {day}")
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    row = {
        "day": day,
        "metric": metric or RecallSettings().champion_metric,
        "candidate": None,
        "candidate_value": None,
        "incumbent": incumbent[0] if incumbent else None,
        "incumbent_day": incumbent[1] if incumbent else None,
        "incumbent_value": None,
        "decision": "rollback",
        "champion": model,
        "champion_day": trained_day,
        "popularity_value": None,
        "candidates": json.dumps({"rolled_back_at": stamp, "artifact_files": sorted(manifest["files"])}),
        "reason": f"rollback at {stamp} from "
        f"{f'{incumbent[0]}@{incumbent[1]}' if incumbent else 'no champion'} to {model}@{trained_day} "
        f"(checksums verified): {reason}",
    }
    path = storage.lake_dir / "recall_champion" / f"{day}.rollback-{now.strftime('%Y%m%dT%H%M%S%fZ')}.parquet"
    _write_rows([row], REGISTRY_SCHEMA, path)
    return Rollback(row=row, path=path, superseded_by=[d for d in days if d > day])


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--to", required=True, metavar="MODEL@DAY", help="published recall model to serve, e.g. als@2026-01-10"
    )
    parser.add_argument("--reason", default="manual rollback", help="why (recorded in the registry)")
    parser.add_argument("--day", help="registry day the rollback applies after (default: the latest registry day)")
    parser.add_argument("--data-root", default=os.getenv("RECSYS_DATA_ROOT", "data"))
    args = parser.parse_args(argv)
    storage = StorageResource(data_root=args.data_root)
    model_store = ModelStoreResource(models_root=str(storage.root / "models"))
    try:
        model, trained_day = parse_target(args.to)
        done = rollback(storage, model_store, model, trained_day, args.reason, day=args.day)
    except RollbackRefused as refused:
        print(f"rollback refused: {refused}", file=sys.stderr)
        return 1
    from recsys_assets.core.storage import refresh_catalog_if_needed

    refresh_catalog_if_needed(storage.lake_dir, storage.catalog_path)
    row = done.row
    print(
        f"recall champion after {row['day']}: {row['champion']}@{row['champion_day']} "
        f"(was {row['incumbent']}@{row['incumbent_day']}); registry row {done.path}"
    )
    print(
        f"rebuild the serving index: dagster asset materialize -m recsys_assets.definitions "
        f"--select recall_ann_index --partition {row['day']}"
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
