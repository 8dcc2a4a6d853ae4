"""Held-out evaluation of a long source (docs/evaluation.md, "Held-out period"): the recall
models of Settings.evaluation_start, trained on the whole history before it, tested on every
positive of the held-out period (every interactions partition from evaluation_start on), the
protocol a plain script runs on a global temporal split. Full-catalog ranking without what the
user consumed before the period; only users with such held-out positives; warm users (with a
training positive) and cold users (without: only non-personalised lists exist for them) apart;
beside all-time popularity and recency-weighted popularity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recsys_assets.core import fusion, metrics
from recsys_assets.core.ranking.features import Channel
from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.recall.base import RecallModel, TrainingData
from recsys_assets.core.training_data import load_positive_pairs, seen_matrix
from recsys_assets.services.channels import enabled_channels, load_channels, recommend_channels
from recsys_assets.services.errors import MissingInput
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.recall_evaluation import summarize_users
from recsys_assets.services.training import load_day
from recsys_assets.settings import RecallConfig

K = 10
METRICS = ("ndcg", "recall", "precision")
# The baselines every model is compared with, paired on the same users: all-time popularity is
# fitted here (it is no channel); recent_popularity is the channel's published model of the day
# (fitted here with its settings when the channel is switched off).
ALL_TIME = "popularity_all_time"
RECENT = "recent_popularity"
BASELINES = {ALL_TIME: "all_time", RECENT: "recent"}

HOLDOUT_SCHEMA = pa.schema(
    [
        ("day", pa.string()),
        ("test_end", pa.string()),
        ("model", pa.string()),
        ("segment", pa.string()),
        ("metric", pa.string()),
        ("k", pa.int64()),
        ("value", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("n_users", pa.int64()),
        ("n_positives", pa.int64()),
        ("lift_vs_all_time", pa.float64()),
        ("diff_vs_all_time_ci_low", pa.float64()),
        ("diff_vs_all_time_ci_high", pa.float64()),
        ("lift_vs_recent", pa.float64()),
        ("diff_vs_recent_ci_low", pa.float64()),
        ("diff_vs_recent_ci_high", pa.float64()),
    ]
)


@dataclass
class HoldoutTruth:
    """The held-out period's test users and what counts as a hit for each."""

    users: np.ndarray  # user indices with a held-out positive they had not consumed before, sorted
    relevant: sp.csr_matrix  # users(all) × items: held-out positives minus what was consumed before
    consumed: sp.csr_matrix  # users(all) × items: consumed or seen before the period (never recommended)
    warm: np.ndarray  # per test user: has a training positive (the models learned something of them)
    test_days: list[str]  # the held-out partitions read, oldest first


def held_out_days(lake: Lake, evaluation_start: str) -> list[str]:
    """Every materialized interactions partition from evaluation_start on, oldest first."""
    folder = lake.lake_dir / "interactions"
    days = sorted(p.stem for p in folder.glob("*.parquet")) if folder.exists() else []
    return [d for d in days if d >= evaluation_start]


def holdout_truth(lake: Lake, evaluation_start: str, positives: sp.csr_matrix, consumed: sp.csr_matrix) -> HoldoutTruth:
    """The test users of the held-out period: positives of every partition from evaluation_start
    on, minus what each user consumed before it (`consumed`: sql/consumed_pairs.sql over every
    earlier partition, load_day's info["consumed"]) and the training positives and clicks
    (`positives`, what recall treats as seen); warm = a training positive."""
    test_days = held_out_days(lake, evaluation_start)
    if not test_days:
        raise MissingInput(f"no interactions partition from {evaluation_start} on: materialize the held-out days")
    truth = load_positive_pairs(
        [lake.partition_path("interactions", d) for d in test_days],
        lake.partition_path("user_id_dictionary"),
        lake.partition_path("item_id_dictionary"),
    )
    seen = sp.csr_matrix(seen_matrix(positives, consumed), dtype=np.float32)
    seen.resize(truth.shape)  # the dictionaries may have grown since the models' day
    relevant = (truth - truth.multiply(seen)).tocsr()
    relevant.eliminate_zeros()
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    n_train = np.zeros(len(users), np.int64)
    known = users < positives.shape[0]  # users new since the models were trained have no row
    n_train[known] = np.diff(positives.indptr)[users[known]]
    return HoldoutTruth(users, relevant, seen, n_train > 0, test_days)


def evaluate_holdout(
    lake: Lake, model_store: ModelStore, settings: RecallConfig, evaluation_start: str, first_day: str | None
) -> tuple[list[dict], dict]:
    """The rows of the holdout_evaluation table and a summary (test users, positives, days)."""
    data, _, info, data_version, train_days = load_day(
        lake, evaluation_start, settings, first_day, model_store=model_store
    )
    truth = holdout_truth(lake, evaluation_start, data.positives, info["consumed"])
    blocked = np.flatnonzero(~info["available_items"])
    loaded = load_channels(model_store, evaluation_start, enabled_channels(settings.channels))
    channels = {ALL_TIME: _fitted(recall_models.PopularityModel(half_life_days=None), data)} | loaded
    if RECENT not in channels:
        channels[RECENT] = _fitted(recall_models.RecentPopularityModel(**settings.model_params(RECENT)), data)
    users, warm = truth.users, truth.warm
    relevant = truth.relevant[users]

    # Non-personalised lists are the same for everyone: scored for every test user (users new since
    # training included) at their position in `users`, without each one's own consumed items.
    shared = {name: c for name, c in channels.items() if not c.model.personal}
    lists, _, _ = recommend_channels(shared, np.arange(len(users)), K, truth.consumed[users], blocked)
    everyone = {name: metrics.per_user_metrics(recs, relevant, K) for name, (recs, _) in lists.items()}
    # Personalised models and the fusions of the published channels (as recall_candidates fuses
    # them): warm users only, a cold user has no history they could learn from.
    warm_values: dict[str, dict[str, np.ndarray]] = {}
    if warm.any():
        depth = max(settings.k_eval)  # each channel's list as deep as recall_evaluation fuses it
        lists, ranges, _ = recommend_channels(loaded, users[warm], depth, truth.consumed, blocked)
        if len(lists) > 1:
            lists |= {f"fusion_{m}": v for m, v in fusion.fuse(lists, data.n_items, depth, ranges).items()}
        warm_values = {
            name: metrics.per_user_metrics(recs[:, :K], relevant[warm], K)
            for name, (recs, _) in lists.items()
            if name not in shared
        }

    n_relevant = np.diff(relevant.indptr)
    test_end = truth.test_days[-1]
    rows = []

    def add(name: str, segment: str, values: dict[str, np.ndarray], mask: np.ndarray) -> None:
        """Rows of `name` on the users of `mask` (`values` are theirs), paired with each baseline."""
        for metric in METRICS:
            key = f"{metric}@{K}"
            row = {
                "day": evaluation_start,
                "test_end": test_end,
                "model": name,
                "segment": segment,
                "metric": metric,
                "k": K,
                "n_users": int(mask.sum()),
                "n_positives": int(n_relevant[mask].sum()),
            }
            for baseline, short in BASELINES.items():
                compared = everyone[baseline][key][mask] if baseline != name else None
                summary = summarize_users(values[key], compared, settings)
                row |= {
                    "value": summary["value"],
                    "ci_low": summary["ci_low"],
                    "ci_high": summary["ci_high"],
                    f"lift_vs_{short}": summary["lift"],
                    f"diff_vs_{short}_ci_low": summary["diff_ci_low"],
                    f"diff_vs_{short}_ci_high": summary["diff_ci_high"],
                }
            rows.append(row)

    for name, values in everyone.items():
        for segment, mask in (("all", np.ones(len(users), bool)), ("warm", warm), ("cold", ~warm)):
            if mask.any():
                add(name, segment, {key: v[mask] for key, v in values.items()}, mask)
    for name, values in warm_values.items():
        add(name, "warm", values, warm)
    summary = {
        "test_users": int(len(users)),
        "warm_users": int(warm.sum()),
        "cold_users": int((~warm).sum()),
        "test_positives": int(n_relevant.sum()),
        "test_days": [truth.test_days[0], test_end],
        "train_days": [train_days[0], train_days[-1]],
        "data_version": data_version,
    }
    return rows, summary


def _fitted(model: RecallModel, data: TrainingData) -> Channel:
    """A baseline fitted on the day's training data, as a channel without a score range."""
    return Channel(model.fit(data), data.n_users, data.n_items, None)
