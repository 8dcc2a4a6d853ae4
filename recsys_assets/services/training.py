"""Recall training of day D: the training data of the window before D, and one model fitted and
published per channel."""

from __future__ import annotations

import hashlib
import resource
import time
from dataclasses import dataclass

import numpy as np

from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.storage import file_sha256
from recsys_assets.core.training_data import load_training_data
from recsys_assets.services.days import days_before
from recsys_assets.services.errors import MissingInput, NoTrainingData
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.settings import RecallConfig


def training_days(day: str, window: int, first_day: str | None) -> list[str]:
    return days_before(day, window, first_day)


def load_day(lake: Lake, day: str, settings: RecallConfig, first_day: str | None, with_shown: bool = False):
    """Training data of the window before `day`, the held-out truth of `day`, and a data version.
    Shown-but-not-chosen counts (every impression row) are read only when asked for."""
    train_days = training_days(day, settings.window_days, first_day)
    if not train_days:
        raise NoTrainingData(f"{day} is the first partition: there is no earlier day to train on")
    train = [lake.partition_path("interactions", d) for d in train_days]
    test = [lake.partition_path("interactions", day)]
    inputs = (
        train
        + test
        + [
            lake.partition_path("user_id_dictionary"),
            lake.partition_path("item_id_dictionary"),
            lake.partition_path("raw_items"),
        ]
    )
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise MissingInput(
            f"recall training for {day} needs {missing[:3]}{'...' if len(missing) > 3 else ''}; "
            "materialize interactions for the window and the id dictionaries first."
        )
    data, test_set, info = load_training_data(
        day,
        train,
        test,
        inputs[-3],
        inputs[-2],
        inputs[-1],
        click_weight=settings.click_weight,
        with_shown=with_shown,
    )
    if info["train_pairs"] == 0:  # a model fitted on nothing would publish noise as a "model"
        raise MissingInput(
            f"the training window of {day} ({train_days[0]}..{train_days[-1]}) has no positive "
            "interactions, so there is nothing to train on: check that interactions are materialized "
            "for those days and that their landing files hold data."
        )
    data_version = file_sha256_many(inputs)
    return data, test_set, info, data_version, train_days


def file_sha256_many(paths) -> str:
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


@dataclass
class Trained:
    """A published recall model: its manifest metadata, version folder and mean factor norms."""

    metadata: dict
    version: object
    norms: dict[str, float]


def train_recall_model(
    name: str,
    params: dict,
    day: str,
    lake: Lake,
    model_store: ModelStore,
    settings: RecallConfig,
    first_day: str | None,
    with_shown: bool = False,
) -> Trained:
    """Fit channel `name` with `params` on the window before `day` and publish it as
    recall_<name>/<day>. Raises NoTrainingData on the first day, ModelSkipped when the model
    declines the data (e.g. EASE above its catalog limit)."""
    data, _, info, data_version, train_days = load_day(lake, day, settings, first_day, with_shown=with_shown)
    model = recall_models.MODELS[name](**params)
    started = time.perf_counter()
    model.fit(data, seed=settings.seed)
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
        "score_range": score_range(model, data, settings.seed),
    }
    arrays = model.arrays()
    norms = {
        k: float(np.linalg.norm(v, axis=1).mean()) for k, v in arrays.items() if k.endswith("factors") and v.ndim == 2
    }
    if norms:
        metadata["mean_factor_norms"] = norms
    staging = model_store.staging_dir(f"recall_{name}")
    model.save(staging)
    version = model_store.publish(f"recall_{name}", day, staging, metadata)
    return Trained(metadata=metadata, version=version, norms=norms)
