"""The promotion registries: which recall model and which ranker serve after each day's
decision (lake/recall_champion, lake/ranker_champion; rollbacks are extra files of a day)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from recsys_assets.core.storage import read_arrow
from recsys_assets.services.lake import Lake

REGISTRY_SCHEMA = pa.schema(
    [
        ("day", pa.string()),
        ("metric", pa.string()),
        ("candidate", pa.string()),
        ("candidate_value", pa.float64()),
        ("incumbent", pa.string()),
        ("incumbent_day", pa.string()),
        ("incumbent_value", pa.float64()),
        ("decision", pa.string()),
        ("champion", pa.string()),
        ("champion_day", pa.string()),
        ("popularity_value", pa.float64()),
        ("candidates", pa.string()),
        ("reason", pa.string()),
    ]
)


RANKER_REGISTRY = pa.schema(
    [
        ("day", pa.string()),
        ("metric", pa.string()),
        ("candidate_day", pa.string()),
        ("candidate_value", pa.float64()),
        ("recall_only_value", pa.float64()),
        ("incumbent_day", pa.string()),
        ("incumbent_value", pa.float64()),
        ("decision", pa.string()),
        ("champion_day", pa.string()),
        ("reason", pa.string()),
    ]
)


def registry_entries(lake: Lake) -> list[tuple[str, Path]]:
    """[(day, path)] of the registry, latest first. A day has its decision `<day>.parquet` and
    possibly rollbacks `<day>.rollback-<UTC time>.parquet` (recsys_assets/rollback.py), which
    come after the decision: the newest rollback of a day is what serves after that day."""
    entries = []
    for path in (lake.lake_dir / "recall_champion").glob("*.parquet"):
        day, _, suffix = path.stem.partition(".")
        entries.append((day, suffix, path))
    return [(day, path) for day, _, path in sorted(entries, key=lambda e: (e[0], e[1]), reverse=True)]


def _champion_where(lake: Lake, include) -> tuple[str, str] | None:

    for day, path in registry_entries(lake):
        if not include(day):
            continue
        row = read_arrow(path).to_pylist()[0]
        if row.get("champion"):
            return row["champion"], row["champion_day"]
    return None


def current_champion(lake: Lake, before_day: str) -> tuple[str, str] | None:
    """(model, training day) serving before `before_day`, from the registry (rollbacks included)."""
    return _champion_where(lake, lambda day: day < before_day)


def serving_champion(lake: Lake, day: str) -> tuple[str, str] | None:
    """(model, training day) serving after the decisions of `day`: its promotion decision, or a
    rollback recorded for it later."""
    return _champion_where(lake, lambda d: d <= day)


def ranker_champion_before(lake: Lake, day: str) -> str | None:
    """Training day of the ranker serving before `day` (from the registry)."""
    for path in sorted((lake.lake_dir / "ranker_champion").glob("*.parquet"), reverse=True):
        if path.stem < day:
            champion = read_arrow(path).column("champion_day")[0].as_py()
            if champion:
                return champion
    return None


def serving_champion_model(lake: Lake, day: str) -> str | None:
    """The name of the recall model serving after `day`'s decisions (serving_champion), the one
    that orders the lists when no ranker serves; None when there is no champion."""
    champion = serving_champion(lake, day)
    return champion[0] if champion else None


def serving_ranker_day(lake: Lake, day: str) -> tuple[str | None, str]:
    """(training day of the ranker that serves on `day`, why); None = serve in recall order."""
    path = lake.partition_path("ranker_champion", day)
    if not path.exists():
        return None, f"ranker_champion is not materialized for {day}: recall order"
    row = read_arrow(path).to_pylist()[0]
    return row["champion_day"], row["reason"]
