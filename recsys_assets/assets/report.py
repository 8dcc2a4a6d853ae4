"""The daily report: an HTML page per day with charts (services/daily_report.py), linked from
the asset's page in the UI."""

import dagster as dg

from recsys_assets.assets import ownership
from recsys_assets.services.daily_report import write_report
from recsys_assets.settings import Settings
from resources import StorageResource


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    @dg.asset(
        kinds={"html"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[
            "recall_evaluation",
            "recall_champion",
            "funnel_evaluation",
            "ranker_champion",
            "feature_drift_report",
            "recommendations",
        ],
        **ownership.layer("report"),
        # rebuilt by Dagster's automation when a day's evaluations or recommendations change
        automation_condition=dg.AutomationCondition.eager(),
        description="One page per day to look at rather than read: recall NDCG@10 of every model with 95% CIs, "
        "the trend over the 28 days before, the ranking funnel and slate orderings against their baselines, "
        "worst PSI per day and the day's most drifted features, the last week's champion decisions, and a "
        "sample of recommendations with titles and a plain reason. Written to reports/daily_report/<day>.html "
        "(charts embedded: it opens offline); the link is in each partition's metadata.",
    )
    def daily_report(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        for day in context.partition_keys:
            path, summary = write_report(storage, day)
            context.add_asset_metadata(
                {
                    "report": dg.MetadataValue.url(path.resolve().as_uri()),
                    "path": dg.MetadataValue.path(str(path)),
                    **summary,
                },
                partition_key=day,
            )
        return dg.MaterializeResult()

    return [daily_report], []
