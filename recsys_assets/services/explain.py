"""Explanations a person can read: item titles instead of ids, and a plain reason for an item."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from recsys_assets.services.lake import Lake

CHANNEL_REASONS = {
    "popularity": "popular overall",
    "recent_popularity": "popular this week",
    "item_cf": "watched by people who watched what you watched",
    "als": "matches your taste",
    "bpr": "matches your taste",
    "bpr_uniform": "matches your taste",
    "bpr_impressions": "matches what you pick from what you are shown",
    "ease": "often watched together with your films",
    "content": "similar in genre and tags to what you liked",
    "cold_start": "popular with new viewers",
}


def item_titles(lake: Lake) -> dict[int, tuple[str, list[str]]]:
    """item_id -> (title, genres) from the catalog snapshot (empty when it is not there)."""
    path = lake.partition_path("raw_items")
    if not path.exists():
        return {}
    con = duckdb.connect()
    try:
        rows = con.execute("SELECT item_id, title, genres FROM read_parquet($path)", {"path": str(path)}).fetchall()
    finally:
        con.close()
    return {item: (title or f"item {item}", list(genres or [])) for item, title, genres in rows}


def title_of(item: int, titles: dict[int, tuple[str, list[str]]]) -> str:
    return titles.get(item, (f"item {item}", []))[0]


def plain_reason(
    because_you_watched: Sequence[int] | None,
    channels: Sequence[str] | None,
    titles: dict[int, tuple[str, list[str]]],
    item: int | None = None,
) -> str:
    """ "because you watched X and Y" when the list came from the user's own films; otherwise what
    the channel that proposed it means ("popular this week in Drama")."""
    watched = [title_of(i, titles) for i in (because_you_watched or [])[:2]]
    if watched:
        return "because you watched " + " and ".join(watched)
    for channel in channels or []:
        if channel in CHANNEL_REASONS:
            reason = CHANNEL_REASONS[channel]
            genres = titles.get(item, ("", []))[1] if item is not None else []
            if channel in ("popularity", "recent_popularity", "cold_start") and genres:
                reason += f" in {genres[0]}"
            return reason
    return ""
