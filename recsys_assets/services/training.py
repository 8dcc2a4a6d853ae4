"""Recall training of day D: the training data of the window before D, what every user consumed
on any day before D, and one model fitted and published per channel."""

from __future__ import annotations

import hashlib
import json
import resource
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.recall.base import TrainingData
from recsys_assets.core.storage import file_sha256
from recsys_assets.core.training_data import TestSet, held_out_from, load_consumed, load_training_data
from recsys_assets.services import model_audit, publication
from recsys_assets.services.days import days_before
from recsys_assets.services.errors import MissingInput, NoTrainingData
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.settings import RecallConfig

# The model-store name of the per-day training data artifact (the recall_training_data asset).
TRAINING_DATA = "recall_training_data"
# Which rule built the artifact's consumed matrix: artifacts of another rule (or none) are stale.
CONSUMED_RULE = "consumed_pairs.sql: played, rated or positive, every day before D"


def training_days(day: str, window: int | None, first_day: str | None) -> list[str]:
    return days_before(day, window, first_day)


def history_partitions(lake: Lake, day: str, first_day: str | None) -> list[Path]:
    """Every interactions partition before `day` that exists, whatever its age: from `first_day`
    when given, else from the earliest partition in the lake."""
    start = first_day or lake.first_partition("interactions")
    if start is None or start >= day:
        return []
    n_days = (date.fromisoformat(day) - date.fromisoformat(start)).days
    return lake.existing_partitions("interactions", days_before(day, n_days, start))


def consumed_before(lake: Lake, day: str, first_day: str | None) -> sp.csr_matrix:
    """users × items (the id dictionaries' indices), 1.0 where the user consumed the item on any
    day before `day` (sql/consumed_pairs.sql): what recommendations never propose on `day`. Reads
    only the ids and the consumption columns of history_partitions, and builds no per-user sets."""
    return load_consumed(
        history_partitions(lake, day, first_day),
        lake.partition_path("user_id_dictionary"),
        lake.partition_path("item_id_dictionary"),
    )


def load_day(
    lake: Lake,
    day: str,
    settings: RecallConfig,
    first_day: str | None,
    with_shown: bool = False,
    model_store: ModelStore | None = None,
):
    """(training data, test set, info, data version, train days) of `day`: from the day's
    recall_training_data artifact when it is published for these settings and its inputs are
    unchanged (the window is read once per day), else read from the interactions (compute_day).
    The artifact always holds the shown-but-not-chosen counts; a model that does not use them
    (all but impression-aware BPR with hard negatives) fits identically with or without them."""
    if model_store is not None:
        stored = read_training_data(lake, model_store, day, settings, first_day)
        if stored is not None:
            return stored
    return compute_day(lake, day, settings, first_day, with_shown=with_shown)


def split_day(lake: Lake, day: str, settings: RecallConfig, with_shown: bool = False, share: float = 0.25):
    """(training data, test set, info, the cut) of `day` alone, cut in time: the held-out truth is
    the day's positives from the time that leaves the last `share` of them, the training data
    every interaction before it; nothing of any other day is read. What a validation period on a
    log's first day is made of (it has no earlier day to train on)."""
    path = lake.partition_path("interactions", day)
    if not path.exists():
        raise MissingInput(f"interactions {day} is not materialized: there is nothing to cut")
    cut = held_out_from([path], share)
    if cut is None:
        raise NoTrainingData(f"{day} has no positive interaction to hold out")
    data, test, info = load_training_data(
        (date.fromisoformat(day) + timedelta(days=1)).isoformat(),  # ages count from the end of the day
        [path],
        [path],
        lake.partition_path("user_id_dictionary"),
        lake.partition_path("item_id_dictionary"),
        lake.partition_path("raw_items"),
        click_weight=settings.click_weight,
        with_shown=with_shown,
        history_files=[],
        split_at=cut,
    )
    if info["train_pairs"] == 0:
        raise NoTrainingData(f"{day} has no positive interaction before {cut:%H:%M:%S} UTC to train on")
    return data, test, info, cut


def _inputs(lake: Lake, day: str, train_days: list[str], first_day: str | None) -> list[Path]:
    """The window and the day, the dictionaries and the catalog, then every older partition that
    exists now (the consumed matrix reads them: a backfilled or rebuilt old day changes the list)."""
    return (
        [lake.partition_path("interactions", d) for d in [*train_days, day]]
        + [
            lake.partition_path("user_id_dictionary"),
            lake.partition_path("item_id_dictionary"),
            lake.partition_path("raw_items"),
        ]
        + history_partitions(lake, train_days[0], first_day)
    )


def _stamp(paths: list[Path]) -> list[list]:
    """(name, size, modification time) of each input: a re-materialized input makes the
    artifact stale without reading the files."""
    return [[p.parent.name + "/" + p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def _signature(settings: RecallConfig, first_day: str | None) -> dict:
    return {
        "window_days": settings.window_days,
        "click_weight": settings.click_weight,
        "first_day": first_day,
        "consumed": CONSUMED_RULE,
    }


_MATRICES = ("positives", "shown_negatives", "days_ago", "seconds_ago", "item_genres", "item_tags")


def publish_training_data(
    lake: Lake, model_store: ModelStore, day: str, settings: RecallConfig, first_day: str | None
) -> dict:
    """Read the window before `day` once (with shown counts) and publish it as the
    recall_training_data artifact of `day`: sparse matrices (.npz, no pickle), the test set and
    the metadata every consumer of load_day needs. Raises NoTrainingData on the first day."""
    data, test, info, data_version, train_days = compute_day(lake, day, settings, first_day, with_shown=True)
    staging = model_store.staging_dir(TRAINING_DATA)
    for name in _MATRICES:
        sp.save_npz(staging / f"{name}.npz", getattr(data, name), compressed=False)
    sp.save_npz(staging / "test_relevant.npz", test.relevant, compressed=False)
    sp.save_npz(staging / "test_all_positive.npz", test.all_positive, compressed=False)
    sp.save_npz(staging / "consumed.npz", info["consumed"], compressed=False)
    np.save(staging / "test_users.npy", test.users, allow_pickle=False)
    np.save(staging / "available_items.npy", info["available_items"], allow_pickle=False)
    (staging / "genre_names.json").write_text(json.dumps(data.genre_names))
    metadata = {
        "signature": _signature(settings, first_day),
        "inputs": _stamp(_inputs(lake, day, train_days, first_day)),
        "data_version": data_version,
        "train_days": train_days,
        "info": {k: v for k, v in info.items() if k not in ("available_items", "consumed")},
    }
    version = model_store.publish(TRAINING_DATA, day, staging, metadata)
    return metadata | {"path": str(version)}


def read_training_data(lake: Lake, model_store: ModelStore, day: str, settings: RecallConfig, first_day: str | None):
    """load_day's tuple from the published artifact of `day`, or None when there is none, it was
    built with other settings, or an input changed since (then load_day reads the interactions)."""
    if not model_store.exists(TRAINING_DATA, day):
        return None
    metadata = model_store.verify(TRAINING_DATA, day)["metadata"]
    if metadata["signature"] != _signature(settings, first_day):
        return None
    try:
        if _stamp(_inputs(lake, day, metadata["train_days"], first_day)) != metadata["inputs"]:
            return None
    except FileNotFoundError:
        return None
    folder = model_store.path(TRAINING_DATA, day)
    matrices = {name: sp.load_npz(folder / f"{name}.npz").tocsr() for name in _MATRICES}
    data = TrainingData(**matrices, genre_names=json.loads((folder / "genre_names.json").read_text()))
    test = TestSet(
        users=np.load(folder / "test_users.npy", allow_pickle=False),
        relevant=sp.load_npz(folder / "test_relevant.npz").tocsr(),
        all_positive=sp.load_npz(folder / "test_all_positive.npz").tocsr(),
    )
    info = metadata["info"] | {
        "available_items": np.load(folder / "available_items.npy", allow_pickle=False),
        "consumed": sp.load_npz(folder / "consumed.npz").tocsr(),
    }
    return data, test, info, metadata["data_version"], metadata["train_days"]


def compute_day(lake: Lake, day: str, settings: RecallConfig, first_day: str | None, with_shown: bool = False):
    """Training data of the window before `day`, the held-out truth of `day`, what every user
    consumed before `day` (info["consumed"], from every earlier partition) and a data version,
    read from the interactions. Shown-but-not-chosen counts (every impression row) are read only
    when asked for. The data version covers the window: hashing every older partition each day
    would read the whole history; the artifact's input stamps cover those."""
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
        history_files=history_partitions(lake, day, first_day),
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
    data, _, info, data_version, train_days = load_day(
        lake, day, settings, first_day, with_shown=with_shown, model_store=model_store
    )
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
    # the rule of the model's blocking check, on the arrays just saved: only a sound model is published
    verdict = model_audit.finite(model_audit.non_finite_values(arrays))
    if not verdict.passed:
        raise publication.hold(staging, f"recall_{name}", day, {model_audit.FINITE_CHECK: verdict})
    version = model_store.publish(f"recall_{name}", day, staging, metadata)
    return Trained(metadata=metadata, version=version, norms=norms)
