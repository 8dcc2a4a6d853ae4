"""What a published recommendations partition must hold: one list for every active user, ranks
1..n within top_k and no item twice in a list, only catalog items, and recall candidates behind
it whenever recall models were trained for the day (else every list is the popularity fallback).
The asset check judges the published partition with it; the asset judges its staged partition
with it before publishing it (services/publication.py)."""

from __future__ import annotations

from pathlib import Path

from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.storage import duckdb_connect
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.publication import Verdict


def verdict(audit: dict) -> Verdict:
    """An audit of audit_recommendations as the verdict of one_sound_list_per_active_user."""
    return Verdict(not audit["problems"], {"problems": audit["problems"]})


def audit_recommendations(lake: Lake, model_store: ModelStore, day: str, top_k: int, path: Path | None = None) -> dict:
    """Counts of each kind of defect of the day's recommendations (all 0 when it is sound), the
    coverage of active users and of the catalog (`path`: the file to judge instead of the
    published partition, such as a staged one)."""
    path = path or lake.partition_path("recommendations", day)
    if not path.exists():
        return {"problems": [f"{day}: recommendations not materialized"]}
    params = {
        "recs": str(path),
        "features": str(lake.partition_path("user_features", day)),
        "items": str(lake.partition_path("raw_items")),
    }
    con = duckdb_connect()
    try:
        con.execute(
            "CREATE TEMP TABLE recs AS SELECT user_id, rank, item_id FROM read_parquet($recs)", {"recs": params["recs"]}
        )
        row = con.execute(
            """
            WITH lists AS (
                SELECT user_id, count(*) AS n, count(DISTINCT item_id) AS items, count(DISTINCT rank) AS ranks,
                       min(rank) AS first_rank, max(rank) AS last_rank
                FROM recs GROUP BY user_id)
            SELECT count(*),
                   count(*) FILTER (WHERE n > $top_k OR items <> n OR ranks <> n OR first_rank <> 1 OR last_rank <> n),
                   (SELECT count(*) FROM recs WHERE item_id NOT IN (SELECT item_id FROM read_parquet($items))),
                   (SELECT count(DISTINCT item_id) FROM recs),
                   (SELECT count(*) FROM read_parquet($items))
            FROM lists""",
            {"items": params["items"], "top_k": top_k},
        ).fetchone()
        assert row is not None
        users, bad_lists, unknown_items, distinct_items, catalog = (int(x) for x in row)
        active_without = 0
        active = 0
        if lake.partition_path("user_features", day).exists():
            found = con.execute(
                """SELECT count(*), count(*) FILTER (WHERE user_id NOT IN (SELECT user_id FROM recs))
                   FROM read_parquet($features) WHERE impressions_28d IS NOT NULL OR positives_28d IS NOT NULL""",
                {"features": params["features"]},
            ).fetchone()
            assert found is not None
            active, active_without = int(found[0]), int(found[1])
    finally:
        con.close()
    trained = [name for name in recall_models.MODELS if model_store.exists(f"recall_{name}", day)]
    candidates = lake.partition_path("recall_candidates", day)
    problems = []
    if active_without:
        problems.append(f"{day}: {active_without} of {active} active users have no list")
    if bad_lists:
        problems.append(f"{day}: {bad_lists} lists are not ranks 1..n of distinct items within top_k {top_k}")
    if unknown_items:
        problems.append(f"{day}: {unknown_items} rows recommend items that are not in raw_items")
    if trained and not candidates.exists():
        problems.append(
            f"{day}: recall models were trained ({', '.join(trained[:3])}, ...) but recall_candidates is missing: "
            "every list would be the popularity fallback; materialize recall_candidates first"
        )
    return {
        "problems": problems,
        "users": users,
        "active_users": active,
        "active_user_coverage": (active - active_without) / active if active else 1.0,
        "catalog_coverage": distinct_items / catalog if catalog else 0.0,
    }
