"""Recall layer wiring: one daily model asset per channel (trained on the window before D,
recsys_assets/services/training.py) and the fused candidates of each day
(services/candidates.py)."""

import json
import time

import dagster as dg

from recsys_assets.assets import ownership, table_metadata
from recsys_assets.assets._wiring import code_version, failures
from recsys_assets.checks.per_day import asset_check
from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.recall import registry
from recsys_assets.services import model_audit, training
from recsys_assets.services.candidates import candidates_day
from recsys_assets.services.errors import NoTrainingData
from recsys_assets.services.parallel import each_day
from recsys_assets.services.tables import write_rows
from recsys_assets.services.training import publish_training_data, train_recall_model
from recsys_assets.services.tuning import RETUNE_TRIGGERS, TUNING_SCHEMA, tune_day, tuned_params
from recsys_assets.settings import Settings
from resources import ModelStoreResource, RecallSettings, StorageResource, WarehouseResource

# The declared window of window_days=None (the whole history): every partition before D.
WHOLE_HISTORY_DAYS = 36500


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    """recall_training_data, recall_<channel> for every registered channel, their checks, and
    recall_candidates. The declared window is the one the models read (settings.recall.window_days)."""
    first_day = settings.start_date
    # the training window and the day itself (its held-out truth, read only by the evaluation); the
    # consumed matrix reads every older day too, which a mapping of thousands of partitions would
    # make costly to resolve: the artifact's input stamps catch a changed older day instead
    window_and_day = dg.TimeWindowPartitionMapping(
        start_offset=-(settings.recall.window_days or WHOLE_HISTORY_DAYS),
        end_offset=0,
        allow_nonexistent_upstream_partitions=True,
    )

    @dg.asset(
        kinds={"numpy", "scipy"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[
            dg.AssetDep("interactions", partition_mapping=window_and_day),
            "user_id_dictionary",
            "item_id_dictionary",
            "raw_items",
        ],
        **ownership.layer("recall"),
        description="What every recall consumer of day D reads, built once: the sparse user x item matrices of "
        "the window before D (positives with their signal, shown-but-not-chosen counts, ages in days and "
        "seconds), every (user, item) consumed on any day before D (sql/consumed_pairs.sql: never recommended "
        "again), item genres and tags, the items available on D, and D's held-out positives (read only by "
        "the evaluation). Stored as .npz / .npy in the model store (checksummed, never pickled); a consumer "
        "reads the interactions itself when the artifact's settings or inputs differ from its own.",
    )
    def recall_training_data(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        recall: RecallSettings,
    ) -> dg.MaterializeResult:
        for day in context.partition_keys:
            started = time.perf_counter()
            try:
                with failures():
                    published = publish_training_data(storage, model_store, day, recall, first_day)
            except NoTrainingData as nothing:
                context.log.warning(f"recall_training_data skipped: {nothing}")
                context.add_asset_metadata({"skipped": True, "reason": str(nothing)}, partition_key=day)
                continue
            info = published["info"]
            meta = {
                "train_pairs": info["train_pairs"],
                "consumed_pairs": info["consumed_pairs"],
                "test_users": info["test_users"],
                "n_users": info["n_users"],
                "n_items": info["n_items"],
                "train_days": dg.MetadataValue.json([published["train_days"][0], published["train_days"][-1]]),
                "data_version": published["data_version"],
                "seconds": round(time.perf_counter() - started, 3),
                "path": dg.MetadataValue.path(published["path"]),
            }
            context.add_asset_metadata(meta, partition_key=day)  # the day's own, whatever the run's range
        return dg.MaterializeResult()

    training_data = recall_training_data
    # the tuning of D validates on the tune_validation_days before D and trains on the window
    # before those, never reading D
    window_before_yesterday = dg.TimeWindowPartitionMapping(
        start_offset=-(settings.recall.window_days or WHOLE_HISTORY_DAYS) - settings.recall.tune_validation_days,
        end_offset=-1,
        allow_nonexistent_upstream_partitions=True,
    )

    @dg.asset(
        kinds={"optuna", "parquet"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[
            dg.AssetDep("interactions", partition_mapping=window_before_yesterday),
            "user_id_dictionary",
            "item_id_dictionary",
            "raw_items",
        ],
        **ownership.layer("recall"),
        description="Hyper-parameter tuning of the models in RecallSettings.tune (none by default): each model's "
        "registry search_space searched with Optuna (TPE, seeded; the current settings are trial 0) on the "
        "tune_validation_days before D (1; ratings sources 14) — trained on the window before them, scored by NDCG@10 "
        "on their held-out positives — never on D. "
        "Every trial is a row (params, value, seconds); the best goes to the recall models of D and later days. "
        "A new study runs every tune_every_days days; in between the last best carries forward. "
        "`SELECT * FROM recall_tuning WHERE is_best`.",
    )
    def recall_tuning(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        recall: RecallSettings,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        # a retrain that drift or a quality drop triggered (retrain_sensor's tag) re-tunes now
        trigger = context.run.tags.get("trigger", "")
        force = trigger in RETUNE_TRIGGERS
        for day in context.partition_keys:
            with failures():
                rows = tune_day(day, storage, model_store, recall, first_day, context.log, force=force)
            write_rows(rows, TUNING_SCHEMA, storage.partition_path("recall_tuning", day))
            meta: dict = {"tuned_models": dg.MetadataValue.json(list(recall.tune))}
            if force:
                meta["new_study_because"] = trigger
            for r in rows:
                if r["is_best"]:
                    meta[f"best_valid_ndcg_at_10_{r['model']}"] = r["value"]
                    meta[f"best_params_{r['model']}"] = dg.MetadataValue.json(json.loads(r["params"]))
            meta["trials"] = sum(r["carried_from"] is None for r in rows)
            context.add_asset_metadata(meta, partition_key=day)  # the day's own, whatever the run's range
        warehouse.refresh_catalog()
        return dg.MaterializeResult()

    def model_asset(name: str) -> dg.AssetsDefinition:
        spec = registry.spec(name)

        @dg.asset(
            name=f"recall_{name}",
            kinds=set(spec.kinds),
            code_version=code_version(recall_models, registry, training),
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
            **ownership.layer("recall"),
            deps=[training_data, recall_tuning],
            description=f"{spec.description} The `{name}` recall model of day D, trained on the interactions of the window before D "
            "(RecallSettings.window_days: 28 days, or the whole history for ratings sources; read once per day by "
            "recall_training_data) and stored as "
            ".npy + JSON in the model store "
            "(never pickled), with params, training time, memory, data version and score range.",
        )
        def _asset(
            context: dg.AssetExecutionContext,
            storage: StorageResource,
            model_store: ModelStoreResource,
            recall: RecallSettings,
        ) -> dg.MaterializeResult:
            meta = {}
            if name not in recall.channels:  # switched off (e.g. too slow for the data size)
                context.log.warning(f"recall_{name} skipped: not in RecallSettings.channels {recall.channels}")
                return dg.MaterializeResult(metadata={"skipped": True, "reason": "not in RecallSettings.channels"})
            plans = {}
            for day in context.partition_keys:
                params, source = recall.model_params(name), "settings"
                if name in recall.tune:  # the latest best of recall_tuning at or before D
                    tuned = tuned_params(storage, day, name)
                    if tuned is not None:
                        params, source = registry.params(name, tuned[0]), f"recall_tuning of {tuned[1]}"
                plans[day] = (params, source)

            def train(day: str) -> training.Trained:
                return train_recall_model(
                    name, plans[day][0], day, storage, model_store, recall, first_day, with_shown=spec.needs_shown
                )

            workers = 1 if spec.model.limits_blas else recall.parallel_days
            for day, outcome in each_day(train, context.partition_keys, workers):
                params, source = plans[day]
                try:
                    with failures():
                        trained = outcome()
                except NoTrainingData as nothing:
                    context.log.warning(f"recall_{name} skipped: {nothing}")
                    context.add_asset_metadata({"skipped": True, "reason": str(nothing)}, partition_key=day)
                    continue
                except recall_models.ModelSkipped as skipped:
                    context.log.warning(f"{name} skipped for {day}: {skipped}")
                    context.add_asset_metadata({"skipped": True, "reason": str(skipped)}, partition_key=day)
                    continue
                metadata = trained.metadata
                meta = {
                    "train_seconds": metadata["train_seconds"],
                    "peak_rss_mib": metadata["peak_rss_mib"],
                    "data_version": metadata["data_version"],
                    "train_pairs": metadata["train_pairs"],
                    "params": dg.MetadataValue.json(params),
                    "params_from": source,
                    "score_range": dg.MetadataValue.json(metadata["score_range"]),
                    "path": dg.MetadataValue.path(str(trained.version)),
                }
                meta |= {f"mean_norm_{k}": v for k, v in trained.norms.items()}
                context.add_asset_metadata(meta, partition_key=day)  # the day's own, whatever the run's range
            return dg.MaterializeResult()

        return _asset

    def finite_check(name: str):
        @asset_check(
            asset=f"recall_{name}",
            name=model_audit.FINITE_CHECK,
            blocking=True,
            partitions_def=partitions,
            description="The published model's files match their checksums and every array is finite.",
        )
        def _check(context: dg.AssetCheckExecutionContext, model_store: ModelStoreResource) -> dg.AssetCheckResult:
            bad = {}
            for day in context.partition_keys:
                if not model_store.exists(f"recall_{name}", day):
                    continue  # skipped (e.g. EASE above its catalog limit): nothing to verify
                model_store.verify(f"recall_{name}", day)
                model = recall_models.load_model(model_store.path(f"recall_{name}", day))
                bad |= model_audit.non_finite_values(model.arrays(), prefix=f"{day}/")
            # the rule training ran before publishing the model
            verdict = model_audit.finite(bad)
            return dg.AssetCheckResult(
                passed=verdict.passed, metadata={"non_finite_values": dg.MetadataValue.json(bad)}
            )

        return _check

    models = [model_asset(name) for name in registry.REGISTRY]

    @dg.asset(
        kinds={"numpy", "parquet"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=models,
        **ownership.layer("recall"),
        description="Candidates for day D: for every user with training positives in the window, the top "
        "RecallSettings.candidates_k items of reciprocal-rank fusion (method='rrf') and of score-normalised "
        "weighted fusion (method='weighted', p01/p99 of each channel's training score range) over all recall "
        "channels, seen and unavailable items removed, with each candidate's rank in every channel (0 = absent).",
    )
    def recall_candidates(
        context: dg.AssetExecutionContext,
        storage: StorageResource,
        model_store: ModelStoreResource,
        recall: RecallSettings,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult:
        table = None

        def candidates(day: str):
            started = time.perf_counter()
            return *candidates_day(day, storage, model_store, recall, first_day), time.perf_counter() - started

        for day, outcome in each_day(candidates, context.partition_keys, recall.parallel_days):
            try:
                with failures():
                    n, n_users, table, per_method, seconds = outcome()
            except NoTrainingData as nothing:
                context.log.warning(f"recall_candidates {day}: {nothing}")
                continue
            context.log.info(f"recall_candidates {day}: {n_users} users, {n} rows in {seconds:.0f}s")
            per_day = [{"method": m, "users": u, "candidates": c} for m, (u, c) in per_method.items()]
            context.add_asset_metadata(
                {
                    "dagster/row_count": n,
                    "per_method": table_metadata.preview(
                        per_day, [("method", "VARCHAR"), ("users", "BIGINT"), ("candidates", "BIGINT")]
                    ),
                },
                partition_key=day,
            )
        warehouse.refresh_catalog()
        meta = {}
        if table is not None:  # the last day written: its columns and candidates per fusion method
            meta["dagster/column_schema"] = table_metadata.column_schema(
                table.schema,
                descriptions={
                    "rank": "rank in the fused list (1 = best)",
                    "method": "rrf or weighted fusion",
                    "channel_depth": "length of each channel's list (candidates_k): rank_<channel> 0 = not in its "
                    "top channel_depth",
                }
                | {
                    c: "rank of the item in that channel's list (0 = absent)"
                    for c in table.column_names
                    if c.startswith("rank_")
                },
            )
        return dg.MaterializeResult(metadata=meta)

    return [recall_training_data, recall_tuning, *models, recall_candidates], [
        finite_check(name) for name in registry.REGISTRY
    ]
