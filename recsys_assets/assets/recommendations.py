"""Serving layer: the per-user recommendations of day D (the funnel's final lists), as a table."""

import time

import dagster as dg
import numpy as np
import polars as pl

from recsys_assets import serving
from recsys_assets.assets import ownership
from recsys_assets.assets.ranking import serving_ranker_day
from recsys_assets.partitions import daily_partitions
from resources import ModelStoreResource, RankingSettings, RecallSettings, StorageResource, WarehouseResource

COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("day", "date"),
        dg.TableColumn("user_id", "int64"),
        dg.TableColumn("rank", "int64"),
        dg.TableColumn("item_id", "int64"),
        dg.TableColumn("score", "float64"),
        dg.TableColumn(
            "stage", "string", description="ranker_rerank, or recall_rerank when the ranker is not promoted"
        ),
        dg.TableColumn("channels", "list<string>", description="recall channels that proposed the item"),
        dg.TableColumn("because_you_watched", "list<int64>", description="the user's watched items closest to it"),
        dg.TableColumn("top_features", "list<string>", description="features pushing its ranker score up most"),
    ]
)


@dg.asset(
    group_name="serving",
    kinds={"lightgbm", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["ranker_champion", "ranker", "recall_candidates", "item_features", "user_features", "interactions"],
    description="The top-K (RankingSettings.top_k) list served on day D to every user active in the 28 days before D: "
    "recall candidates of D (users without any positive get popular items), ordered by the serving "
    "ranker of ranker_champion (else by recall), re-ranked (watched items "
    "removed, MMR, genre cap), each with its score, the recall channels it came from, the user's watched "
    "items most similar to it and the top contributing features. `SELECT * FROM recommendations`.",
    **ownership.layer("serving"),
)
def recommendations(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    model_store: ModelStoreResource,
    ranking: RankingSettings,
    recall: RecallSettings,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    meta = {}
    for day in context.partition_keys:
        ranker_day, why = serving_ranker_day(storage, day)
        model = serving.load_ranker(model_store, ranker_day) if ranker_day else None
        ctx = serving.feature_context(
            storage,
            model_store,
            day,
            model.channel_names if model else ranking.channels,
            recall,
            model.rank_depth if model else ranking.rank_depth,
        )
        context.log.info(f"recommendations {day}: {f'ranker of {ranker_day}' if model else 'recall order'} ({why})")
        try:
            candidates = serving.scan_candidates(storage, day, ranking.rank_candidates)
        except serving.MissingInput as missing:  # e.g. the first day: no model could be trained yet
            context.log.warning(f"recommendations {day}: {missing}; every active user gets the cold-start path")
            candidates = None
        history = serving.user_history(storage, serving.days_before(day, recall.window_days))
        active = np.sort(
            ctx.users.filter(pl.col("u_impressions_28d").is_not_null() | pl.col("u_positives_28d").is_not_null())[
                "user_id"
            ].to_numpy()
        )
        with_candidates = (
            candidates.select(pl.col("user_id").unique()).collect()["user_id"].to_numpy()
            if candidates is not None
            else np.zeros(0, np.int64)
        )
        users = np.union1d(active, with_candidates)
        started = time.perf_counter()
        stats = serving.write_recommendations(
            storage.partition_path("recommendations", day),
            storage.root,
            day,
            users,
            candidates,
            ctx,
            model,
            history,
            ranking,
            [c.name for c in COLUMNS.columns],
        )
        context.log.info(
            f"recommendations {day}: {len(users)} users ({stats['cold_start_users']} cold start), "
            f"{stats['rows']} rows in {time.perf_counter() - started:.0f}s"
        )
        preview = stats["preview"]
        meta = {
            "dagster/row_count": stats["rows"],
            "users": stats["users"],
            "cold_start_users": stats["cold_start_users"],
            "ranker_day": ranker_day or "none (recall order)",
            "why": why,
            "dagster/column_schema": COLUMNS,
            "catalog_coverage": stats["distinct_items"] / max(ctx.items.height, 1),
            "users_per_second": round(len(users) / max(time.perf_counter() - started, 1e-9), 1),
            "preview": dg.MetadataValue.md(_markdown(preview.head(10))),
        }
    warehouse.refresh_catalog()
    return dg.MaterializeResult(metadata=meta)


def _markdown(frame: pl.DataFrame) -> str:
    cols = [c for c in frame.columns if c != "day"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.select(cols).iter_rows():
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


serving_assets = [recommendations]
