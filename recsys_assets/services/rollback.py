"""Rolling the recall champion back to an earlier published model: the target artifact must
pass every checksum and load; a `rollback` row is then written next to the day's decision
(`lake/recall_champion/<day>.rollback-<UTC time>.parquet`) and serves from then on."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from recsys_assets.core.recall import models as recall_models
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import CorruptModelError, ModelStore
from recsys_assets.services.registry import REGISTRY_SCHEMA, registry_entries, serving_champion
from recsys_assets.services.tables import write_rows
from recsys_assets.settings import RecallConfig

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
    lake: Lake,
    model_store: ModelStore,
    model: str,
    trained_day: str,
    reason: str,
    day: str | None = None,
    metric: str | None = None,
    now: datetime | None = None,
) -> Rollback:
    """Record `model`@`trained_day` as the serving recall champion from registry day `day` on."""
    if model not in recall_models.MODELS:
        raise RollbackRefused(f"{model!r} is not a recall model; one of {', '.join(recall_models.MODELS)}")
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
    days = sorted({d for d, _ in registry_entries(lake)})
    if day is None:
        if not days:
            raise RollbackRefused(
                f"the champion registry {lake.lake_dir / 'recall_champion'} is empty: "
                "nothing is serving, so there is nothing to roll back"
            )
        day = days[-1]
    if trained_day > day:
        raise RollbackRefused(
            f"{model}@{trained_day} was trained after registry day {day}; "
            "a rollback serves a model trained on or before that day"
        )
    incumbent = serving_champion(lake, day)
    if incumbent == (model, trained_day):
        raise RollbackRefused(f"{model}@{trained_day} is already the serving champion after {day}")
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    row = {
        "day": day,
        "metric": metric or RecallConfig().champion_metric,
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
    path = lake.lake_dir / "recall_champion" / f"{day}.rollback-{now.strftime('%Y%m%dT%H%M%S%fZ')}.parquet"
    write_rows([row], REGISTRY_SCHEMA, path)
    return Rollback(row=row, path=path, superseded_by=[d for d in days if d > day])
