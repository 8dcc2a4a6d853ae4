"""Which source a data root holds: `<data_root>/SOURCE.json` (no Dagster import).

One data root (landing zone, lake, catalog, models) holds one source. Switching sources
means another data root; a data root that already holds a different source is refused,
so a warehouse never mixes, say, MovieLens ratings with synthetic impressions.
"""

from __future__ import annotations

import json
from pathlib import Path

from recsys_assets.core.adapters.landing import SOURCE_MARKER

SOURCES = ("synthetic", "movielens", "trivago", "landing")  # landing: the user's own contract-format zone


class SourceConflict(RuntimeError):
    pass


def read_marker(data_root: Path) -> dict | None:
    path = Path(data_root) / SOURCE_MARKER
    if path.exists():
        return json.loads(path.read_text())
    # Data roots made before the marker existed hold the synthetic logs.
    if (Path(data_root) / "landing" / "users.jsonl").exists():
        return {"source": "synthetic", "path": None}
    return None


def _same(marker: dict, source: str, path: str | None) -> bool:
    return marker.get("source") == source and (source == "synthetic" or marker.get("path") == path)


def check_compatible(data_root: Path, source: str, path: str | Path | None) -> dict | None:
    """The data root's marker when it holds this same source (None when it is empty);
    SourceConflict with a clear message when it holds another one."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; one of {SOURCES}")
    resolved = str(Path(path).resolve()) if path is not None else None
    marker = read_marker(data_root)
    if marker is not None and not _same(marker, source, resolved):
        held = marker["source"] + (f" from {marker['path']}" if marker.get("path") else "")
        wanted = source + (f" from {resolved}" if resolved else "")
        raise SourceConflict(
            f"{data_root} already holds {held}; refusing to add {wanted} to the same warehouse. "
            f"Use another --data-root (or delete {data_root})."
        )
    return marker


def write_marker(data_root: Path, source: str, path: str | Path | None, first_day: str, last_day: str, **extra) -> dict:
    marker = {
        "source": source,
        "path": str(Path(path).resolve()) if path is not None else None,
        "first_day": first_day,
        "last_day": last_day,
        **extra,
    }
    (Path(data_root) / SOURCE_MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    return marker
