"""Serving layer wiring: the ANN index over the serving recall champion's item factors
(services/ann_index.py) and the recommendations served on day D (services/serving.py)."""

from datetime import timedelta

import dagster as dg
import polars as pl

from recsys_assets.assets import ownership
from recsys_assets.assets._wiring import failures
from recsys_assets.checks.per_day import asset_check
from recsys_assets.services.ann_index import ANN_K, MIN_ANN_RECALL, build_champion_index, indexed_recall
from recsys_assets.services.parallel import DayLog, each_day
from recsys_assets.services.publication import publish_partition
from recsys_assets.services.serving import RECOMMENDATION_COLUMNS, recommend_day
from recsys_assets.services.serving_audit import audit_recommendations, verdict
from recsys_assets.settings import Settings
from resources import ModelStoreResource, RankingSettings, RecallSettings, StorageResource, WarehouseResource

SOUND_LISTS_CHECK = "one_sound_list_per_active_user"
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
assert [c.name for c in COLUMNS.columns] == RECOMMENDATION_COLUMNS


def _markdown(frame: pl.DataFrame) -> str:
    cols = [c for c in frame.columns if c != "day"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.select(cols).iter_rows():
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    """recall_ann_index (+ its recall check) and recommendations."""
    first_day = settings.start_date

    @dg.asset(
        kinds={"faiss"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["recall_champion"],
        **ownership.layer("serving"),
        description=f"A faiss HNSW index over the item factors of day D's recall champion (inner-product search "
        "turned into L2 search by one extra coordinate), saved in "
        f"faiss's own format in the model store, with recall@{ANN_K} against exact search on the champion's "
        "users reported (check: >= 0.95). Items whose factors are all zero (never seen in training) are left "
        "out; the index returns catalog item indices. Skipped when the champion has no factors (item-CF, EASE).",
    )
    def recall_ann_index(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        recall: RecallSettings,
    ) -> dg.MaterializeResult:
        for day in context.partition_keys:
            with failures():
                meta = build_champion_index(day, storage, model_store, recall.seed)
            context.add_asset_metadata(meta, partition_key=day)  # the day's own, whatever the run's range
        return dg.MaterializeResult()

    @asset_check(
        asset=recall_ann_index,
        name="recall_vs_exact",
        blocking=True,
        partitions_def=partitions,
        description=f"The ANN index finds at least {MIN_ANN_RECALL:.0%} of the exact top-{ANN_K} items.",
    )
    def ann_recall_check(
        context: dg.AssetCheckExecutionContext, model_store: ModelStoreResource
    ) -> dg.AssetCheckResult:
        measured = indexed_recall(model_store, context.partition_keys)
        worst = min(measured.values()) if measured else 1.0
        return dg.AssetCheckResult(
            passed=worst >= MIN_ANN_RECALL,
            metadata={"worst_recall_vs_exact": float(worst), "indexed_days": len(measured)},
        )

    @dg.asset(
        kinds={"lightgbm", "parquet"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[
            "ranker_champion",
            "ranker",
            "recall_champion",
            "recall_candidates",
            "item_features",
            "user_features",
            "interactions",
        ],
        # a day's list is due the day after it (the daily job at 01:00 UTC, then training)
        freshness_policy=dg.FreshnessPolicy.time_window(
            warn_window=timedelta(hours=settings.automation.recommendations_warn_hours),
            fail_window=timedelta(hours=settings.automation.recommendations_fail_hours),
        ),
        description="The top-K (RankingSettings.top_k) list served on day D to every user active in the 28 days "
        "before D: recall candidates of D (users without any positive get popular items), ordered by the serving "
        "ranker of ranker_champion (without one, by the serving recall champion of recall_champion: its channel's "
        "items first, in its rank, then the fused recall order), re-ranked (watched items "
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
        served = {}
        logs = {day: DayLog() for day in context.partition_keys}

        def recommend(day: str) -> dict:
            out = storage.partition_path("recommendations", day)
            staged = storage.staged_path(out)
            stats = recommend_day(day, storage, model_store, ranking, recall, first_day, logs[day], out=staged)
            # published only if the rule of one_sound_list_per_active_user passes on the staged lists
            publish_partition(
                "recommendations",
                day,
                [(staged, out)],
                [
                    (
                        SOUND_LISTS_CHECK,
                        lambda: verdict(audit_recommendations(storage, model_store, day, ranking.top_k, staged)),
                    )
                ],
            )
            return stats

        for day, outcome in each_day(recommend, context.partition_keys, recall.parallel_days):
            try:
                with failures():
                    stats = outcome()
            finally:
                logs[day].replay(context.log)
            served[day] = {"ranker_day": stats["ranker_day"], "why": stats["why"], "users": stats["users"]}
            meta = {
                "dagster/row_count": stats["rows"],
                "users": stats["users"],
                "cold_start_users": stats["cold_start_users"],
                "ranker_day": stats["ranker_day"] or "none (recall order)",
                "recall_champion": stats["recall_champion"] or "none",
                "why": stats["why"],
                "dagster/column_schema": COLUMNS,
                "catalog_coverage": stats["distinct_items"] / max(stats["catalog_items"], 1),
                "users_per_second": round(stats["n_users"] / max(stats["seconds"], 1e-9), 1),
                "preview": dg.MetadataValue.md(_markdown(stats["preview"].head(10))),
            }
            context.add_asset_metadata(meta, partition_key=day)  # the day's own, whatever the run's range
        warehouse.refresh_catalog()
        # which ranker (or recall order) served each day of the run, and why
        return dg.MaterializeResult(metadata={"days_of_run": dg.MetadataValue.json(served)})

    @asset_check(
        asset=recommendations,
        name=SOUND_LISTS_CHECK,
        blocking=True,
        partitions_def=partitions,
        description="Every user active in the 28 days before D has exactly one list (ranks 1..n of distinct "
        "items, at most RankingSettings.top_k), every item is in raw_items, and recall_candidates exists "
        "whenever recall models were trained for D (without it every list is the popularity fallback).",
    )
    def one_sound_list_per_active_user(
        context: dg.AssetCheckExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        ranking: RankingSettings,
    ) -> dg.AssetCheckResult:
        audits = [audit_recommendations(storage, model_store, day, ranking.top_k) for day in context.partition_keys]
        problems = [p for audit in audits for p in audit["problems"]]
        last = audits[-1]
        return dg.AssetCheckResult(
            passed=not problems,
            metadata={
                "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:20]) or "none"),
                "active_user_coverage": float(last.get("active_user_coverage", 0.0)),
                "catalog_coverage": float(last.get("catalog_coverage", 0.0)),
                "users_with_a_list": int(last.get("users", 0)),
            },
        )

    return [recall_ann_index, recommendations], [ann_recall_check, one_sound_list_per_active_user]
