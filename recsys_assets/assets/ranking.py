"""Ranking layer wiring: labelled samples of day D, the LightGBM ranker of D (trained on the
days before D), the funnel evaluation on D and the gated serving ranker. The work is in
services/ranking.py, services/funnel_evaluation.py and services/promotion.py."""

import dagster as dg
import polars as pl
import pyarrow as pa

from recsys_assets.assets import ownership
from recsys_assets.assets._wiring import code_version, failures
from recsys_assets.checks.per_day import asset_check
from recsys_assets.core.ranking import ranker as ranker_model
from recsys_assets.core.recall import models as recall_models
from recsys_assets.services import ranking as ranking_service
from recsys_assets.services.errors import Skipped
from recsys_assets.services.funnel_evaluation import FUNNEL_SCHEMA, STAGES, evaluate_funnel
from recsys_assets.services.parallel import DayLog, each_day
from recsys_assets.services.promotion import beats_recall_only, headline, promote_ranker
from recsys_assets.services.ranking import RankerSkipped, build_samples, train_ranker
from recsys_assets.services.serving import load_ranker
from recsys_assets.services.tables import write_frame
from recsys_assets.settings import Settings
from resources import ModelStoreResource, RankingSettings, RecallSettings, StorageResource, WarehouseResource


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    """ranking_samples, ranker, funnel_evaluation, ranker_champion and their checks. The ranker's
    declared sample window is the one it reads (settings.ranking train_days + valid_days)."""
    first_day = settings.start_date
    sample_days = settings.ranking.train_days + settings.ranking.valid_days
    sample_window = dg.TimeWindowPartitionMapping(
        start_offset=-sample_days, end_offset=-1, allow_nonexistent_upstream_partitions=True
    )

    @dg.asset(
        kinds={"polars", "parquet"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[
            "interactions",
            "user_features",
            "item_features",
            "user_genre_daily",
            "raw_users",
            "raw_items",
            "user_id_dictionary",
            "item_id_dictionary",
            "recall_candidates",
            *(f"recall_{name}" for name in recall_models.MODELS),
        ],
        description="Labelled pairs of day D with point-in-time features (user/item features of D are built from the "
        "days before D; recall channels are the models of D, trained before D). kind='impressions': every "
        "shown item, grouped by request, label 2 = positive, 1 = clicked, 0 = shown but not chosen. "
        "kind='candidates': per user with a positive among D's recall candidates, the candidate list "
        "labelled by what the user did on D (the serving distribution; read from recall_candidates, or "
        "computed for the sampled users alone when D's partition was never materialized). kind='sampled': for sources "
        "without impressions, positives with sampled negatives (RankingSettings.negative_ratio, hard share "
        "from candidates). Features: user, item, user x item genre crosses, position, hashed categoricals "
        "(as strings), every channel's score and the item's position in that channel's recall list "
        "(RankingSettings.rank_depth deep; column rank_depth records it).",
        **ownership.layer("ranking"),
    )
    def ranking_samples(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        ranking: RankingSettings,
        recall: RecallSettings,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        empty = []
        logs = {day: DayLog() for day in context.partition_keys}

        def samples(day: str) -> dict:
            frame, info = build_samples(storage, model_store, ranking, recall, day, first_day, logs[day])
            # an empty day still gets its (empty) partition: the rankers after it read it as "no samples"
            write_frame(frame, storage.partition_path("ranking_samples", day), order_by="kind, request_id, item_id")
            return info

        for day, outcome in each_day(samples, context.partition_keys, recall.parallel_days):
            try:
                with failures():
                    info = outcome()
            finally:
                logs[day].replay(context.log)
            if not info["rows"]:
                empty.append(day)
                context.log.warning(f"ranking_samples {day}: no labelled pair (no activity on {day}); empty partition")
            meta = {k: v for k, v in info.items() if not isinstance(v, list)}
            meta |= {
                "dagster/row_count": info["rows"],
                "channels_present": dg.MetadataValue.json(info["channels_present"]),
                "channels_missing": dg.MetadataValue.json(info["channels_missing"]),
            }
            context.add_asset_metadata(meta, partition_key=day)  # the day's own, whatever the run's range
        warehouse.refresh_catalog()
        return dg.MaterializeResult(metadata={"empty_days_of_run": dg.MetadataValue.json(empty)})

    @dg.asset(
        kinds={"lightgbm"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetDep(ranking_samples, partition_mapping=sample_window), "hash_dictionaries"],
        code_version=code_version(ranker_model, ranking_service),
        description="The ranker of day D: LightGBM lambdarank grouped by request (graded labels) and a binary click "
        "model, trained on the ranking_samples of the train_days before the last valid_days before D, "
        "early-stopped on those later held-out days; categoricals through the hash dictionary (frozen into "
        "the artifact). Saved in LightGBM's text format with params, feature list, dictionary version and "
        "data version; gain importance in the `ranker_feature_importance` table.",
        **ownership.layer("ranking"),
    )
    def ranker(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        ranking: RankingSettings,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        skipped_days = {}
        for day in context.partition_keys:
            try:
                with failures():
                    trained = train_ranker(day, storage, model_store, ranking)
            except RankerSkipped as skipped:  # this day only: the other days of the run still train
                context.log.warning(str(skipped))
                skipped_days[day] = str(skipped)
                context.add_asset_metadata({"skipped": True, "reason": str(skipped)}, partition_key=day)
                continue
            model, importance = trained.model, trained.importance
            top = importance.filter(pl.col("model") == "lambdarank").head(10)
            meta = {
                "validation": model.meta["validation"],
                "valid_ndcg_at_10": model.meta["valid_ndcg_at_10"],
                "valid_auc": model.meta["valid_auc"],
                "valid_logloss": model.meta["valid_logloss"],
                "best_iteration": model.meta["best_iteration"],
                "train_rows": model.meta["train_rows"],
                "train_seconds": round(trained.train_seconds, 3),
                "data_version": model.meta["data_version"],
                "path": dg.MetadataValue.path(str(trained.version)),
                "top_features": dg.MetadataValue.table(
                    records=[
                        dg.TableRecord({"feature": r["feature"], "gain_share": round(r["gain_share"], 4)})
                        for r in top.to_dicts()
                    ],
                    schema=dg.TableSchema(
                        columns=[dg.TableColumn("feature", "string"), dg.TableColumn("gain_share", "float")]
                    ),
                ),
            }
            context.add_asset_metadata(meta, partition_key=day)  # the day's own, whatever the run's range
        warehouse.refresh_catalog()
        return dg.MaterializeResult(metadata={"skipped_days_of_run": dg.MetadataValue.json(skipped_days)})

    @asset_check(
        asset=ranker,
        name="artifact_verified",
        blocking=True,
        partitions_def=partitions,
        description="The published ranker's files match their checksums, load, and list the features and "
        "dictionary version they were trained with.",
    )
    def ranker_artifact_verified(
        context: dg.AssetCheckExecutionContext, model_store: ModelStoreResource
    ) -> dg.AssetCheckResult:
        checked = []
        for day in context.partition_keys:
            if model_store.exists("ranker", day):
                model = load_ranker(model_store, day)
                checked.append({"day": day, "features": len(model.feature_names)})
        return dg.AssetCheckResult(passed=True, metadata={"verified": dg.MetadataValue.json(checked)})

    @dg.asset(
        kinds={"lightgbm", "parquet"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[ranker, ranking_samples, "recall_candidates", "interactions"],
        description="The funnel on day D's held-out data (the ranker of D never saw D). scope='funnel': for users with "
        "new positives on D, the top-10 of recall-only ordering (RRF candidates), the ranker over the "
        "candidates, and ranker + re-rank: NDCG, Recall, MRR with bootstrap CIs and paired differences vs "
        "recall-only, coverage, intra-list similarity, latency per user per stage. scope='slates': D's "
        "shown lists re-ordered by popularity-by-position, shown order, recall RRF and the ranker (MRR, "
        "NDCG@10), and the binary click model's AUC and LogLoss next to a constant-rate LogLoss.",
        **ownership.layer("ranking"),
    )
    def funnel_evaluation(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        recall: RecallSettings,
        ranking: RankingSettings,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        skipped_days = {}
        for day in context.partition_keys:
            if not model_store.exists("ranker", day):
                rows, info = [], {"test_users": 0}
                skipped_days[day] = f"no ranker is published for {day}"
                context.log.warning(f"funnel_evaluation {day}: no ranker is published for {day}; empty table")
            else:
                try:
                    with failures():
                        rows, info = evaluate_funnel(day, storage, model_store, recall, ranking, first_day)
                except Skipped as nothing:  # e.g. a day without activity: an empty table for it alone
                    rows, info = [], {"test_users": 0}
                    skipped_days[day] = str(nothing)
                    context.log.warning(f"funnel_evaluation {day}: {nothing}")
            write_frame(
                pa.Table.from_pylist(rows, schema=FUNNEL_SCHEMA),
                storage.partition_path("funnel_evaluation", day),
                order_by="scope, stage, metric",
            )
            meta = {"test_users": info["test_users"], "dagster/row_count": len(rows)}
            for scope, stage, metric in (("funnel", s, "ndcg") for s in STAGES):
                value = headline(rows, scope, stage, metric)
                if value is not None:
                    meta[f"ndcg_at_10_{stage}"] = value
            for stage in ("popularity", "ranker"):
                value = headline(rows, "slates", stage, "mrr")
                if value is not None:
                    meta[f"slate_mrr_{stage}"] = value
            for metric in ("auc", "logloss"):
                value = headline(rows, "slates", "ctr_binary", metric)
                if value is not None:
                    meta[f"ctr_{metric}"] = value
            meta["summary"] = dg.MetadataValue.md(
                "| scope | stage | metric | value | diff vs baseline [95% CI] |\n|---|---|---|---|---|\n"
                + "\n".join(
                    f"| {r['scope']} | {r['stage']} | {r['metric']}@{r['k']} | {r['value']:.4f} | "
                    + (
                        f"{r['diff']:+.4f} [{r['diff_ci_low']:+.4f}, {r['diff_ci_high']:+.4f}] vs {r['baseline']}"
                        if r["diff"] is not None
                        else ""
                    )
                    + " |"
                    for r in rows
                    if r["metric"] in ("ndcg", "mrr", "auc", "logloss")
                )
            )
            if day in skipped_days:
                meta["skipped"] = skipped_days[day]
            context.add_asset_metadata(meta, partition_key=day)  # the day's own, whatever the run's range
        warehouse.refresh_catalog()
        return dg.MaterializeResult(metadata={"skipped_days_of_run": dg.MetadataValue.json(skipped_days)})

    @asset_check(
        asset=funnel_evaluation,
        name="ranker_beats_recall_only",
        partitions_def=partitions,
        description="Fails if the ranker does not beat the recall order on NDCG@10 (funnel scope): the stronger "
        "of recall-only and the recall champion's order, the lists it would replace. "
        "A failing ranker is never promoted (ranker_champion applies the same rule). A day evaluated on "
        "fewer than RecallSettings.min_evaluated_users users is not judged.",
    )
    def ranker_beats_recall_only(
        context: dg.AssetCheckExecutionContext, storage: StorageResource, recall: RecallSettings
    ) -> dg.AssetCheckResult:
        results = {day: beats_recall_only(storage, day, recall.min_evaluated_users) for day in context.partition_keys}
        evaluated = {d: r for d, r in results.items() if not r[1].startswith(("no ranker", "funnel_evaluation is not"))}
        failing = {d: why for d, (ok, why) in evaluated.items() if not ok}
        return dg.AssetCheckResult(
            passed=not failing,
            metadata={
                "days": dg.MetadataValue.json({d: why for d, (_, why) in results.items()}),
                "failing": dg.MetadataValue.json(failing),
            },
        )

    @dg.asset(
        kinds={"parquet"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[funnel_evaluation],
        description="Gated promotion of the ranker: the ranker of D serves from D on only if it beats recall-only "
        "ordering on D's funnel NDCG@10 and is not worse than the serving ranker, evaluated on the same day, "
        "by more than RecallSettings.promotion_tolerance. A funnel of fewer than "
        "RecallSettings.min_evaluated_users users (or a non-finite NDCG) decides nothing. Otherwise the serving ranker stays (if it still "
        "beats recall-only on D) or recommendations fall back to recall order. One registry row per day: "
        "`SELECT * FROM ranker_champion`.",
        **ownership.layer("ranking"),
    )
    def ranker_champion(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        recall: RecallSettings,
        ranking: RankingSettings,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        decisions = {}
        for day in context.partition_keys:  # in order: each day sees the decisions of the days before
            with failures():
                decision = promote_ranker(day, storage, model_store, recall, ranking, first_day, context.log)
            decisions[day] = {k: decision[k] for k in ("decision", "champion_day", "reason")}
            context.log.info(
                f"ranker champion {day}: {decision['decision']} -> {decision['champion_day']} ({decision['reason']})"
            )
            context.add_asset_metadata(  # the day's own decision, whatever the run's range
                {
                    "decision": decision.get("decision", "none"),
                    "champion_day": decision.get("champion_day") or "none",
                    "candidate_value": decision.get("candidate_value") or 0.0,
                    "incumbent_value": decision.get("incumbent_value") or 0.0,
                    "recall_only_value": decision.get("recall_only_value") or 0.0,
                    "reason": decision.get("reason", ""),
                },
                partition_key=day,
            )
        warehouse.refresh_catalog()
        return dg.MaterializeResult(metadata={"days_of_run": dg.MetadataValue.json(decisions)})

    return (
        [ranking_samples, ranker, funnel_evaluation, ranker_champion],
        [ranker_artifact_verified, ranker_beats_recall_only],
    )
