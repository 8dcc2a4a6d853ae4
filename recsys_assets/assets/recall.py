"""Recall layer: one daily model asset per channel (trained on the window before D), the
evaluation table on day D, and the champion registry."""

import resource
import time
from datetime import date, timedelta

import dagster as dg
import numpy as np

from recsys_assets.assets import ownership
from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.recall import registry
from recsys_assets.core.storage import file_sha256
from recsys_assets.core.training_data import load_training_data
from recsys_assets.partitions import START_DATE, daily_partitions, window_mapping
from resources import ModelStoreResource, RecallSettings, StorageResource

GROUP = "recall"
# Learned channels must beat popularity to be promoted; content is a cold-start channel.
LEARNED = registry.LEARNED


class NoTrainingData(Exception):
    pass


def training_days(day: str, window: int) -> list[str]:
    end = date.fromisoformat(day)
    first = max(date.fromisoformat(START_DATE), end - timedelta(days=window))
    return [(first + timedelta(days=k)).isoformat() for k in range((end - first).days)]


def load_day(storage: StorageResource, day: str, settings: RecallSettings, with_shown: bool = False):
    """Training data of the window before `day`, the held-out truth of `day`, and a data version.
    Shown-but-not-chosen counts (every impression row) are read only when asked for."""
    train_days = training_days(day, settings.window_days)
    if not train_days:
        raise NoTrainingData(f"{day} is the first partition: there is no earlier day to train on")
    train = [storage.partition_path("interactions", d) for d in train_days]
    test = [storage.partition_path("interactions", day)]
    inputs = (
        train
        + test
        + [
            storage.partition_path("user_id_dictionary"),
            storage.partition_path("item_id_dictionary"),
            storage.partition_path("raw_items"),
        ]
    )
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise dg.Failure(
            f"recall training for {day} needs {missing[:3]}{'...' if len(missing) > 3 else ''}; "
            "materialize interactions for the window and the id dictionaries first."
        )
    data, test_set, info = load_training_data(
        day, train, test, inputs[-3], inputs[-2], inputs[-1], click_weight=settings.click_weight, with_shown=with_shown
    )
    if info["train_pairs"] == 0:  # a model fitted on nothing would publish noise as a "model"
        raise dg.Failure(
            f"the training window of {day} ({train_days[0]}..{train_days[-1]}) has no positive "
            "interactions, so there is nothing to train on: check that interactions are materialized "
            "for those days and that their landing files hold data."
        )
    data_version = file_sha256_many(inputs)
    return data, test_set, info, data_version, train_days


def file_sha256_many(paths) -> str:
    import hashlib

    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.name.encode() + file_sha256(p).encode())
    return digest.hexdigest()[:16]


def score_range(model, data, seed: int) -> dict:
    users = np.flatnonzero(np.diff(data.positives.indptr) > 0)
    if len(users) == 0:
        return {}
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(users, size=min(500, len(users)), replace=False))
    scores = model.score(sample).ravel()
    scores = scores[np.isfinite(scores)]
    return {
        "min": float(scores.min()),
        "max": float(scores.max()),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "p01": float(np.quantile(scores, 0.01)),
        "p99": float(np.quantile(scores, 0.99)),
    }


def _model_asset(name: str):
    spec = registry.spec(name)

    @dg.asset(
        name=f"recall_{name}",
        group_name=GROUP,
        kinds=set(spec.kinds),
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        **ownership.layer("recall"),
        deps=[
            dg.AssetDep("interactions", partition_mapping=window_mapping(28)),
            "user_id_dictionary",
            "item_id_dictionary",
            "raw_items",
        ],
        description=f"{spec.description} The `{name}` recall model of day D, trained on the interactions of the "
        "window before D (RecallSettings.window_days, default 28) and stored as .npy + JSON in the model store "
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
        for day in context.partition_keys:
            try:
                data, _, info, data_version, train_days = load_day(storage, day, recall, with_shown=spec.needs_shown)
            except NoTrainingData as nothing:
                context.log.warning(f"recall_{name} skipped: {nothing}")
                meta = {"skipped": True, "reason": str(nothing)}
                continue
            params = recall.model_params(name)
            model = spec.model(**params)
            started = time.perf_counter()
            try:
                model.fit(data, seed=recall.seed)
            except recall_models.ModelSkipped as skipped:
                context.log.warning(f"{name} skipped for {day}: {skipped}")
                meta = {"skipped": True, "reason": str(skipped)}
                continue
            fit_seconds = time.perf_counter() - started
            metadata = {
                "params": params,
                "train_seconds": round(fit_seconds, 3),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "data_version": data_version,
                "train_days": [train_days[0], train_days[-1]],
                "train_pairs": info["train_pairs"],
                "n_users": info["n_users"],
                "n_items": info["n_items"],
                "score_range": score_range(model, data, recall.seed),
            }
            arrays = model.arrays()
            norms = {
                k: float(np.linalg.norm(v, axis=1).mean())
                for k, v in arrays.items()
                if k.endswith("factors") and v.ndim == 2
            }
            if norms:
                metadata["mean_factor_norms"] = norms
            staging = model_store.staging_dir(f"recall_{name}")
            model.save(staging)
            version = model_store.publish(f"recall_{name}", day, staging, metadata)
            meta = {
                "train_seconds": metadata["train_seconds"],
                "peak_rss_mib": metadata["peak_rss_mib"],
                "data_version": data_version,
                "train_pairs": info["train_pairs"],
                "params": dg.MetadataValue.json(params),
                "score_range": dg.MetadataValue.json(metadata["score_range"]),
                "path": dg.MetadataValue.path(str(version)),
            }
            meta |= {f"mean_norm_{k}": v for k, v in norms.items()}
        return dg.MaterializeResult(metadata=meta)

    return _asset


model_assets = {name: _model_asset(name) for name in registry.REGISTRY}


def _factors_finite_check(name: str):
    @dg.asset_check(
        asset=f"recall_{name}",
        name="finite_and_verified",
        blocking=True,
        partitions_def=daily_partitions,
        description="The published model's files match their checksums and every array is finite.",
    )
    def _check(context: dg.AssetCheckExecutionContext, model_store: ModelStoreResource) -> dg.AssetCheckResult:
        bad = {}
        for day in context.partition_keys:
            if not model_store.exists(f"recall_{name}", day):
                continue  # skipped (e.g. EASE above its catalog limit): nothing to verify
            model_store.verify(f"recall_{name}", day)
            model = recall_models.load_model(model_store.path(f"recall_{name}", day))
            for key, array in model.arrays().items():
                if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                    bad[f"{day}/{key}"] = int((~np.isfinite(array)).sum())
        return dg.AssetCheckResult(passed=not bad, metadata={"non_finite_values": dg.MetadataValue.json(bad)})

    return _check


model_checks = [_factors_finite_check(name) for name in model_assets]
