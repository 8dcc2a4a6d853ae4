"""Serving layer: the per-user recommendations of day D (the funnel's final lists), as a table."""

import dagster as dg
import polars as pl

from recsys_assets import serving
from recsys_assets.assets import ownership
from recsys_assets.assets.ranking import serving_ranker_day
from recsys_assets.partitions import daily_partitions
from resources import ModelStoreResource, RankingSettings, RecallSettings, StorageResource, WarehouseResource

COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("day", "date"), dg.TableColumn("user_id", "int64"), dg.TableColumn("rank", "int64"),
    dg.TableColumn("item_id", "int64"), dg.TableColumn("score", "float64"),
    dg.TableColumn("stage", "string", description="ranker_rerank, or recall_rerank when the ranker is not promoted"),
    dg.TableColumn("channels", "list<string>", description="recall channels that proposed the item"),
    dg.TableColumn("because_you_watched", "list<int64>", description="the user's watched items closest to it"),
    dg.TableColumn("top_features", "list<string>", description="features pushing its ranker score up most")])


@dg.asset(
    group_name="serving", kinds={"lightgbm", "parquet"}, partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["ranker_champion", "ranker", "recall_candidates", "item_features", "user_features", "interactions"],
    description="The top-K (RankingSettings.top_k) list served on day D to every user active in the 28 days before D: "
                "recall candidates of D (users without any positive get popular items), ordered by the serving "
                "ranker of ranker_champion (else by recall), re-ranked (watched items "
                "removed, MMR, genre cap), each with its score, the recall channels it came from, the user's watched "
                "items most similar to it and the top contributing features. `SELECT * FROM recommendations`.",
    **ownership.layer("serving"),
)
def recommendations(context: dg.AssetExecutionContext, storage: StorageResource, model_store: ModelStoreResource,
                    ranking: RankingSettings, recall: RecallSettings, warehouse: WarehouseResource
                    ) -> dg.MaterializeResult:
    meta = {}
    for day in context.partition_keys:
        ranker_day, why = serving_ranker_day(storage, day)
        model = serving.load_ranker(model_store, ranker_day) if ranker_day else None
        ctx = serving.feature_context(storage, model_store, day, model.channel_names if model else ranking.channels)
        context.log.info(f"recommendations {day}: {f'ranker of {ranker_day}' if model else 'recall order'} ({why})")
        try:
            candidates = serving.read_candidates(storage, day, ranking.rank_candidates)
        except serving.MissingInput as missing:  # e.g. the first day: no model could be trained yet
            context.log.warning(f"recommendations {day}: {missing}; every active user gets the cold-start path")
            candidates = pl.DataFrame(schema={"user_id": pl.Int64, "item_id": pl.Int64, "recall_rank": pl.Int64,
                                              "recall_score": pl.Float64})
        history = serving.user_history(storage, serving.days_before(day, recall.window_days))
        active = ctx.users.filter(pl.col("u_impressions_28d").is_not_null() | pl.col("u_positives_28d").is_not_null())
        cold = sorted(set(active["user_id"].to_list()) - set(candidates["user_id"].to_list()))
        if cold:
            candidates = pl.concat([candidates, serving.popular_candidates(ctx, cold, ranking.rank_candidates, history)],
                                   how="diagonal_relaxed")
        out = serving.recommend_users(ctx, model, candidates, history, ranking)
        out = out.with_columns(pl.lit(day).str.to_date().alias("day")).select([c.name for c in COLUMNS.columns])
        serving.write_frame(out, storage.partition_path("recommendations", day), order_by="user_id, rank")
        preview = out.filter(pl.col("user_id") == out["user_id"].min()) if out.height else out
        meta = {"dagster/row_count": out.height, "users": out["user_id"].n_unique(), "cold_start_users": len(cold),
                "ranker_day": ranker_day or "none (recall order)", "why": why, "dagster/column_schema": COLUMNS,
                "catalog_coverage": out["item_id"].n_unique() / max(ctx.items.height, 1),
                "preview": dg.MetadataValue.md(_markdown(preview.head(10)))}
    warehouse.refresh_catalog()
    return dg.MaterializeResult(metadata=meta)


def _markdown(frame: pl.DataFrame) -> str:
    cols = [c for c in frame.columns if c != "day"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.select(cols).iter_rows():
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


serving_assets = [recommendations]
