"""Evaluation layer wiring: every recall model of day D evaluated on day D
(services/recall_evaluation.py), the gated recall champion (services/promotion.py) and, for a
source with a held-out period, the models of its first day tested on the whole period
(services/holdout_evaluation.py)."""

import json

import dagster as dg
import pyarrow as pa

from recsys_assets.assets import ownership, table_metadata
from recsys_assets.assets._wiring import failures
from recsys_assets.checks.per_day import asset_check
from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.storage import read_arrow
from recsys_assets.services.backtest import BACKTEST_SCHEMA, backtest, backtest_page
from recsys_assets.services.daily_report import write_page
from recsys_assets.services.errors import NoTrainingData
from recsys_assets.services.holdout_evaluation import HOLDOUT_SCHEMA, evaluate_holdout
from recsys_assets.services.promotion import choose_candidate, promote_recall
from recsys_assets.services.publication import Verdict, publish_partition
from recsys_assets.services.recall_evaluation import EVAL_SCHEMA, evaluate_day, unevaluated_models
from recsys_assets.services.registry import REGISTRY_SCHEMA
from recsys_assets.services.tables import write_frame, write_rows
from recsys_assets.settings import Settings
from resources import ModelStoreResource, RecallSettings, StorageResource, WarehouseResource
from resources.storage import SNAPSHOT

EVALUATED_CHECK = "every_trained_model_evaluated"

EVAL_COLUMNS = table_metadata.column_schema(
    EVAL_SCHEMA,
    types={"day": "DATE"},
    descriptions={
        "segment": "all, cold / light / heavy users, or cold_items",
        "k": "cut-off",
        "value": "mean over test users",
        "lift_vs_popularity": "relative paired lift over popularity",
    },
)
NDCG_PREVIEW = [
    ("model", "VARCHAR"),
    ("value", "DOUBLE"),
    ("ci_low", "DOUBLE"),
    ("ci_high", "DOUBLE"),
    ("lift_vs_popularity", "DOUBLE"),
    ("p_value", "DOUBLE"),
    ("n_users", "BIGINT"),
]


REGISTRY_COLUMNS = table_metadata.column_schema(
    REGISTRY_SCHEMA,
    types={"day": "DATE"},
    descriptions={
        "day": "the day the decision applies to",
        "decision": "promoted / rejected / kept / none / rollback",
        "champion": "the model serving after this decision",
        "champion_day": "the training day of its artifact",
        "candidates": "JSON: every learned model's value, lift and eligibility",
    },
)
REGISTRY_PREVIEW = [
    ("day", "VARCHAR"),
    ("decision", "VARCHAR"),
    ("candidate", "VARCHAR"),
    ("candidate_value", "DOUBLE"),
    ("incumbent", "VARCHAR"),
    ("incumbent_day", "VARCHAR"),
    ("incumbent_value", "DOUBLE"),
    ("champion", "VARCHAR"),
    ("champion_day", "VARCHAR"),
    ("reason", "VARCHAR"),
]


def _pct(x) -> str:
    return "" if x is None else f"{x:+.1%}"


HOLDOUT_COLUMNS = table_metadata.column_schema(
    HOLDOUT_SCHEMA,
    types={"day": "DATE"},
    descriptions={
        "day": "evaluation_start: the day of the models tested (trained on everything before it)",
        "test_end": "the last held-out partition read",
        "segment": "warm (a training positive), cold (none: non-personalised models only) or all",
        "value": "mean over the segment's test users",
        "n_positives": "held-out positives of those users (items consumed before the period removed)",
        "lift_vs_all_time": "relative paired lift over all-time popularity (same users)",
        "lift_vs_recent": "relative paired lift over recent_popularity (same users)",
    },
)
HOLDOUT_PREVIEW = [
    ("model", "VARCHAR"),
    ("value", "DOUBLE"),
    ("ci_low", "DOUBLE"),
    ("ci_high", "DOUBLE"),
    ("lift_vs_all_time", "DOUBLE"),
    ("lift_vs_recent", "DOUBLE"),
    ("n_users", "BIGINT"),
]


def build_holdout(settings: Settings) -> list[dg.AssetsDefinition]:
    """holdout_evaluation, for a source with a held-out period (Settings.evaluation_start)."""
    start, first_day = settings.evaluation_start, settings.start_date
    if start is None:
        return []
    of_start = dg.SpecificPartitionsPartitionMapping([start])

    @dg.asset(
        kinds={"numpy", "parquet"},
        deps=[
            dg.AssetDep("recall_training_data", partition_mapping=of_start),
            *(dg.AssetDep(f"recall_{name}", partition_mapping=of_start) for name in recall_models.MODELS),
            # the held-out period's positives, and what each user consumed before it
            dg.AssetDep("interactions", partition_mapping=dg.AllPartitionMapping()),
            "user_id_dictionary",
            "item_id_dictionary",
        ],
        **ownership.layer("evaluation"),
        description=f"The held-out period of the source ({start} to the latest interactions partition): the recall "
        f"models of {start}, trained on the whole history before it, tested on every positive of the period. "
        "Full-catalog ranking without what each user consumed before the period (plays, ratings, positives; "
        "and training clicks), "
        "which never counts as a hit; only users with held-out positives; NDCG, Recall and Precision at 10 with "
        "bootstrap 95% CIs; warm users (a training positive) and cold users (none: only the non-personalised "
        "lists exist for them) apart; paired lifts over all-time popularity and recent_popularity. "
        "See docs/evaluation.md.",
    )
    def holdout_evaluation(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        recall: RecallSettings,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        with failures():
            rows, info = evaluate_holdout(storage, model_store, recall, start, first_day)
        write_rows(rows, HOLDOUT_SCHEMA, storage.partition_path("holdout_evaluation"))
        warehouse.refresh_catalog()
        ndcg = [r for r in rows if r["metric"] == "ndcg"]
        warm = sorted((r for r in ndcg if r["segment"] == "warm"), key=lambda r: -r["value"])
        cold = sorted((r for r in ndcg if r["segment"] == "cold"), key=lambda r: -r["value"])
        context.log.info(
            f"holdout_evaluation {info['test_days'][0]}..{info['test_days'][1]}: {info['warm_users']} warm and "
            f"{info['cold_users']} cold test users, {info['test_positives']} positives"
        )
        return dg.MaterializeResult(
            metadata={
                **{f"warm_ndcg_at_10_{r['model']}": r["value"] for r in warm},
                **{f"cold_ndcg_at_10_{r['model']}": r["value"] for r in cold},
                "test_users": info["test_users"],
                "warm_users": info["warm_users"],
                "cold_users": info["cold_users"],
                "test_positives": info["test_positives"],
                "test_days": dg.MetadataValue.json(info["test_days"]),
                "train_days": dg.MetadataValue.json(info["train_days"]),
                "summary": dg.MetadataValue.md(
                    f"Warm test users ({info['warm_users']}):\n\n"
                    "| model | NDCG@10 | 95% CI | vs all-time popularity | vs recent_popularity |\n|---|---|---|---|---|\n"
                    + "\n".join(
                        f"| {r['model']} | {r['value']:.4f} | [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | "
                        f"{_pct(r['lift_vs_all_time'])} | {_pct(r['lift_vs_recent'])} |"
                        for r in warm
                    )
                    + f"\n\nCold test users ({info['cold_users']}): "
                    + ", ".join(f"{r['model']} {r['value']:.4f}" for r in cold)
                ),
                "warm_ndcg_at_10": table_metadata.preview(warm, HOLDOUT_PREVIEW),
                "dagster/row_count": len(rows),
                "dagster/column_schema": HOLDOUT_COLUMNS,
            }
        )

    return [holdout_evaluation]


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    """recall_evaluation, recall_champion and the check that learned models beat popularity."""
    first_day = settings.start_date
    models = [f"recall_{name}" for name in recall_models.MODELS]

    @dg.asset(
        kinds={"numpy", "parquet"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[*models, "interactions"],
        **ownership.layer("evaluation"),
        description="Every recall model of day D evaluated on day D's held-out positives: full-catalog ranking with "
        "training positives and not-yet-available items removed; Recall, Precision, HR, NDCG, MAP, MRR at "
        "K in RecallSettings.k_eval, coverage, novelty, latency; overall and for cold / light / heavy users; "
        "bootstrap 95% CIs (users resampled) and paired lift over popularity. See docs/evaluation.md.",
    )
    def recall_evaluation(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        recall: RecallSettings,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        for day in context.partition_keys:
            try:
                with failures():
                    rows, info = evaluate_day(day, storage, model_store, recall, first_day)
            except NoTrainingData as nothing:  # the first day: no model exists, nothing to evaluate
                rows, info = [], {"test_users": 0}
                context.log.warning(f"recall_evaluation {day}: {nothing}")
            out = storage.partition_path("recall_evaluation", day)
            staged = storage.staged_path(out)
            write_rows(rows, EVAL_SCHEMA, staged)
            # published only if the rule of every_trained_model_evaluated passes on these rows
            unevaluated = unevaluated_models(rows, day, model_store, recall)
            rule = Verdict(not unevaluated, {"trained_but_not_evaluated": unevaluated})
            with failures():
                publish_partition("recall_evaluation", day, [(staged, out)], [(EVALUATED_CHECK, lambda v=rule: v)])
            headline = {r["model"]: r for r in rows if r["segment"] == "all" and r["metric"] == "ndcg" and r["k"] == 10}
            meta = {f"ndcg_at_10_{m}": r["value"] for m, r in headline.items()}  # plain floats: plotted per day
            meta["test_users"] = info["test_users"]
            meta["summary"] = dg.MetadataValue.md(
                "| model | NDCG@10 | 95% CI | lift vs popularity |\n|---|---|---|---|\n"
                + "\n".join(
                    f"| {m} | {r['value']:.4f} | [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | "
                    f"{_pct(r['lift_vs_popularity'])} |"
                    for m, r in sorted(headline.items(), key=lambda kv: -kv[1]["value"])
                )
            )
            meta["ndcg_at_10"] = table_metadata.preview(
                sorted(headline.values(), key=lambda r: -r["value"]), NDCG_PREVIEW
            )
            meta["dagster/row_count"] = len(rows)
            context.add_asset_metadata(meta, partition_key=day)  # the day's own, whatever the run's range
        warehouse.refresh_catalog()
        return dg.MaterializeResult(metadata={"dagster/column_schema": EVAL_COLUMNS})

    @dg.asset(
        kinds={"parquet"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[recall_evaluation],
        **ownership.layer("evaluation"),
        description="Gated promotion of the recall champion. The candidate of day D is the best learned model by "
        "RecallSettings.champion_metric (default NDCG@10) among those that beat popularity (lift above "
        "min_lift_over_popularity, paired 95% CI above 0). It replaces the serving champion only if, "
        "evaluated on day D on the same users, it is not worse than the serving champion by more than "
        "promotion_tolerance; otherwise the champion keeps serving. An evaluation of fewer than "
        "min_evaluated_users test users (or a non-finite metric) promotes nothing. One registry row per day with both "
        "values, the decision and the reason: `SELECT * FROM recall_champion`.",
    )
    def recall_champion(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        recall: RecallSettings,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        decisions = []
        for day in context.partition_keys:  # in order: each day sees the decisions of the days before
            with failures():
                decision = promote_recall(day, storage, model_store, recall, first_day, context.log)
            decisions.append(decision)
            context.log.info(
                f"recall champion {day}: {decision['decision']} -> {decision['champion']} ({decision['reason']})"
            )
            context.add_asset_metadata(  # the day's own decision, whatever the run's range
                {
                    "decision": decision.get("decision", "none"),
                    "champion": decision.get("champion") or "none",
                    "candidate_value": decision.get("candidate_value") or 0.0,
                    "incumbent_value": decision.get("incumbent_value") or 0.0,
                    "reason": decision.get("reason", ""),
                    "candidates": dg.MetadataValue.json(json.loads(decision.get("candidates", "{}"))),
                    "dagster/row_count": 1,
                },
                partition_key=day,
            )
        warehouse.refresh_catalog()
        return dg.MaterializeResult(
            metadata={
                "registry_of_run": table_metadata.preview(decisions, REGISTRY_PREVIEW),
                "dagster/column_schema": REGISTRY_COLUMNS,
            }
        )

    @asset_check(
        asset=recall_evaluation,
        name="learned_models_beat_popularity",
        partitions_def=partitions,
        description="Each learned model (item_cf, als, bpr, bpr_uniform, bpr_impressions, ease) beats popularity "
        "on the champion metric by more than min_lift_over_popularity with a paired 95% CI above "
        "0. Warns, listing the models that do not; those are never promoted (recall_champion "
        "applies the same rule).",
    )
    def learned_models_beat_popularity(
        context: dg.AssetCheckExecutionContext, storage: StorageResource, recall: RecallSettings
    ) -> dg.AssetCheckResult:
        failing = {}
        for day in context.partition_keys:
            rows = read_arrow(storage.partition_path("recall_evaluation", day)).to_pylist()
            if not rows:
                continue
            candidates = choose_candidate(rows, recall.champion_metric, recall.min_lift_over_popularity)["candidates"]
            for name, c in json.loads(candidates).items():
                if not c["eligible"]:
                    failing[f"{day} {name}"] = c.get("lift")
        return dg.AssetCheckResult(
            passed=not failing,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"not_beating_popularity": dg.MetadataValue.json(failing)},
        )

    @dg.asset(
        kinds={"parquet"},
        deps=[
            dg.AssetDep(recall_evaluation, partition_mapping=dg.AllPartitionMapping()),
            dg.AssetDep(recall_champion, partition_mapping=dg.AllPartitionMapping()),
            # the final lists' rows; read where present (a day without a ranker has no funnel)
            dg.AssetDep("funnel_evaluation", partition_mapping=dg.AllPartitionMapping()),
        ],
        **ownership.layer("evaluation"),
        description="The rolling back-test: the last RecallSettings.backtest_periods evaluated days (each a "
        "rolling-origin period: the models of D trained on the days before D, tested on D). Per model: mean "
        "NDCG@10 and mean CI width, win rate and significant wins (paired CI above 0) over popularity, mean "
        "paired lift over popularity, win rate and mean lift over the champion serving that day (decided the "
        "day before), and the trend (slope per period). The final lists (final:ranker, final:ranker_rerank, "
        "scope funnel) over the recall-only order and the recall champion's order of the same users. "
        "Per-period values with CIs: recall_evaluation, funnel_evaluation. See docs/evaluation.md.",
    )
    def backtest_report(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        recall: RecallSettings,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        with failures():
            summary, periods = backtest(storage, recall.backtest_periods)
        write_frame(
            pa.Table.from_pylist(summary, schema=BACKTEST_SCHEMA),
            storage.partition_path("backtest_report"),
            "mean DESC",
        )
        warehouse.refresh_catalog()
        days = sorted(periods["day"].unique().to_list()) if periods.height else []
        matrix = (
            "| model | "
            + " | ".join(days)
            + " |\n|---|"
            + "---|" * len(days)
            + "\n"
            + "\n".join(
                f"| {r['model']} | "
                + " | ".join(
                    f"{v:.4f} [{lo:.4f}, {hi:.4f}]"
                    for v, lo, hi in periods.filter(periods["model"] == r["model"])
                    .sort("day")
                    .select("value", "ci_low", "ci_high")
                    .iter_rows()
                )
                + " |"
                for r in summary
            )
            if days
            else "no evaluated period yet"
        )
        page = write_page(storage, "backtest_report", SNAPSHOT, backtest_page(summary, periods))
        context.log.info(f"backtest_report: {len(days)} periods, {len(summary)} models")
        return dg.MaterializeResult(
            metadata={
                "chart": dg.MetadataValue.url(page.resolve().as_uri()),  # the page with the charts
                "periods": len(days),
                "first_day": days[0] if days else "",
                "last_day": days[-1] if days else "",
                **{f"mean_ndcg_at_10_{r['model']}": r["mean"] for r in summary},
                **{
                    f"win_rate_vs_popularity_{r['model']}": r["win_rate_vs_popularity"]
                    for r in summary
                    if r["win_rate_vs_popularity"] is not None
                },
                "ndcg_at_10_per_period": dg.MetadataValue.md(matrix),
                "dagster/row_count": len(summary),
            }
        )

    @asset_check(
        asset=recall_evaluation,
        name=EVALUATED_CHECK,
        blocking=True,
        partitions_def=partitions,
        description="Every enabled recall model published for day D has rows in its evaluation: a model "
        "that trained but was not evaluated can never be judged, so the champion is not chosen without it. "
        "A day with no trained model (the first day) says so.",
    )
    def every_trained_model_evaluated(
        context: dg.AssetCheckExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        recall: RecallSettings,
    ) -> dg.AssetCheckResult:
        missing, empty_days = {}, []
        for day in context.partition_keys:
            path = storage.partition_path("recall_evaluation", day)
            if not path.exists():
                missing[day] = ["recall_evaluation partition not materialized"]
                continue
            rows = read_arrow(path).to_pylist()
            if not rows:
                empty_days.append(day)
            unevaluated = unevaluated_models(rows, day, model_store, recall)
            if unevaluated:
                missing[day] = unevaluated
        return dg.AssetCheckResult(
            passed=not missing,
            metadata={
                "trained_but_not_evaluated": dg.MetadataValue.json(missing),
                "days_without_a_trained_model": ", ".join(d for d in empty_days if d not in missing) or "none",
            },
        )

    checks = [learned_models_beat_popularity, every_trained_model_evaluated]
    return [recall_evaluation, recall_champion, backtest_report, *build_holdout(settings)], checks
