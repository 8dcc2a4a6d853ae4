"""The platform's one settings object, and the typed settings of each layer.

`Settings.load()` is called once, when the definitions are loaded (never at import): defaults,
then the data root's source marker (SOURCE.json: the partitions start at the source's first
day, and a log too short for the ranker's default days trains it on what there is), then the
environment (RECSYS_*), then explicit overrides. `build_defs(settings)` turns it into the
Dagster resources, partitions and executor; the quickstart, the CLIs and the tests build one
the same way instead of writing os.environ. Plain pydantic: no Dagster import, so services
take these types too; the Dagster resources in resources/ are these classes, configurable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recsys_assets.core.adapters.source import read_marker
from recsys_assets.core.ingest import DEFAULT_MAX_LINE_BYTES
from recsys_assets.core.recall import registry

DEFAULT_START_DATE = "2026-01-01"
EXECUTORS = ("multiprocess", "in_process", "celery")
# The ranker of D reads up to train_days + valid_days sample days before D (defaults 4 + 1) and
# needs at least one of each.
SHORT_LOG_DAYS = 4
# A short log's ranker has one or two training days and no later day to validate on: these
# lambdarank settings are tried besides the defaults, the held-out share of its requests
# chooses (never the day it is evaluated on), and the chosen model is refitted on every request.
SHORT_LOG_PARAM_GRID: list[dict[str, Any]] = [
    {"num_leaves": 15, "max_depth": -1, "learning_rate": 0.02, "bagging_fraction": 1.0, "feature_fraction": 1.0},
    {"num_leaves": 7, "max_depth": -1, "min_data_in_leaf": 100, "feature_fraction": 0.7, "bagging_fraction": 1.0},
]


class IngestionConfig(BaseModel):
    """Ingestion policy: line size cap, reference checks and the tolerated quarantine rate."""

    # Bytes per landing line; longer lines are quarantined as line_too_long (head kept).
    max_line_bytes: int = Field(default=DEFAULT_MAX_LINE_BYTES, ge=1024, le=1 << 30)
    # The quarantine_rate check fails (blocking downstream) above this share of lines.
    max_quarantine_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    # Share of events/watches whose request_id matches no impression (same or previous day).
    max_orphan_request_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # The volume check fails a daily log partition whose rows, users or items fall below this
    # share of the median of its trailing partitions (an empty or truncated delivery) ...
    min_volume_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    # ... over this many earlier daily partitions, once at least volume_min_history exist.
    volume_window: int = Field(default=7, ge=1, le=366)
    volume_min_history: int = Field(default=3, ge=1, le=366)


class FeatureConfig(BaseModel):
    """Feature-layer settings: labels, smoothing, sequence length, dictionaries, drift thresholds."""

    # A watch at least this complete is a positive; a like is one too when like_is_positive.
    min_pos_completion: float = Field(default=0.6, ge=0.0, le=1.0)
    like_is_positive: bool = True
    # Beta prior of the smoothed CTR: (clicks + prior_clicks) / (impressions + prior_impressions).
    ctr_prior_clicks: float = Field(default=1.0, ge=0.0)
    ctr_prior_impressions: float = Field(default=20.0, ge=0.0)
    sequence_length: int = Field(default=50, ge=1, le=10000)
    # Hash dictionaries: a value seen this often gets its own index; the rest share OOV buckets.
    hash_min_count: int = Field(default=5, ge=1)
    hash_oov_buckets: int = Field(default=16, ge=1, le=1048576)
    # Drift: day D against the pooled days D-reference_days .. D-1.
    drift_reference_days: int = Field(default=7, ge=1, le=365)
    drift_warn_psi: float = Field(default=0.1, ge=0.0)
    drift_fail_psi: float = Field(default=0.25, ge=0.0)
    # Numeric PSI uses at most 10 quantile bins and at least this many samples per bin.
    drift_samples_per_bin: int = Field(default=100, ge=1)
    # A feature with fewer values than this on either side gets no PSI (sparse days are noise).
    drift_min_samples: int = Field(default=30, ge=1)


class RecallConfig(BaseModel):
    """Recall settings: training window, signal weights, model hyperparameters, evaluation."""

    # A model of day D trains on D-window .. D-1 and is tested on D; None: the whole history before
    # D (the default for ratings sources, whose users come back after months; see docs/sources.md).
    window_days: int | None = Field(default=28, ge=1, le=36500)
    click_weight: float = Field(default=0.25, ge=0.0, le=1.0)  # signal of a click that did not become a positive
    # Days of one range run whose models train at once (threads; a day's model is the same either
    # way). 2 uses both cores of a small machine; each day holds its own training data in memory,
    # so ratings sources (the whole history per day) train one day at a time.
    parallel_days: int = Field(default=2, ge=1, le=64)
    seed: int = 42
    k_eval: list[int] = [10, 20, 50, 100, 200]
    light_user_max_positives: int = Field(
        default=4, ge=0
    )  # segments: cold = 0 training positives, light <= this, heavy above
    bootstrap_samples: int = Field(default=500, ge=10, le=100000)
    # backtest_report: the last N evaluated days (each a rolling-origin period: models of D
    # trained on the days before D, tested on D)
    backtest_periods: int = Field(default=14, ge=1, le=3650)
    # Model hyperparameters: per-model overrides of the defaults in the recall model registry
    # (recsys_assets/core/recall/registry.py; each model's typed config, with its defaults and why
    # they were chosen, sits next to its class in core/recall/models.py), e.g.
    # models={"ease": {"session_weight": 2.0, "session_tau_seconds": 300}}. An unknown model or
    # parameter, or a value out of its bounds, is refused when the settings are built.
    models: dict[str, dict[str, Any]] = {}
    candidates_k: int = Field(default=200, ge=1, le=100000)  # recall_candidates: fused top-K per user
    # Scale knobs. Recall channels trained, evaluated and fused (a channel left out is skipped
    # with a logged reason); which fusions recall_candidates stores; how many users it scores at
    # once (memory ~ users × catalog × 4 bytes per channel inside a batch of 1024, plus the
    # batch's fused lists); and, if set, only users with a positive in the last N days of the
    # window get candidates (None: every user with a training positive).
    channels: list[str] = Field(default_factory=lambda: list(registry.REGISTRY))  # default: every registered model
    candidate_methods: list[str] = ["rrf", "weighted"]
    candidates_batch_users: int = Field(default=20000, ge=1)
    candidates_recent_days: int | None = Field(default=None, ge=1)
    # Champion selection and promotion gate.
    champion_metric: str = "ndcg@10"
    min_lift_over_popularity: float = Field(
        default=0.0, ge=0.0
    )  # a learned model must beat popularity by this relative margin
    # A candidate replaces the serving champion unless it is worse than it, on the same day and
    # users, by more than this relative tolerance.
    promotion_tolerance: float = Field(default=0.02, ge=0.0, le=1.0)
    # Both gates (recall champion and serving ranker) keep what serves when the day's evaluation
    # has fewer users than this (or a non-finite metric): a sparse day's number is noise.
    min_evaluated_users: int = Field(default=50, ge=0)
    # Tuning (recall_tuning): the models whose hyper-parameters are searched (their registry
    # search_space) on the day before each partition, never the partition itself; the best of
    # `tune_trials` trials (or `tune_seconds` per model, whichever ends first; the defaults are
    # trial 0) is handed to the models of that day and later. A study runs again after
    # `tune_every_days`; in between the last best carries forward. Empty: no tuning.
    tune: list[str] = []
    tune_trials: int = Field(default=12, ge=1, le=10000)
    tune_seconds: float = Field(default=300.0, gt=0.0)
    tune_every_days: int = Field(default=7, ge=1, le=3650)
    # The validation period: the N days before D (ratings sources: 14, a day holds a handful of
    # test users, and a search on that much noise picks noise).
    tune_validation_days: int = Field(default=1, ge=1, le=3650)
    # When the log starts inside the validation period (nothing earlier to train on): the share
    # of the last validation day's positives held out by time, trained on the rest of that day.
    tune_split_share: float = Field(default=0.25, gt=0.0, lt=1.0)

    @field_validator("tune")
    @classmethod
    def _tunable_models(cls, names: list[str]) -> list[str]:
        for name in names:
            if not registry.spec(name).search_space:
                raise ValueError(f"recall model {name!r} declares no search_space: it cannot be tuned")
        return names

    @field_validator("models")
    @classmethod
    def _registered_models_and_params(cls, models: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, overrides in models.items():
            registry.params(name, overrides)  # a ValueError naming the model and the field
        return models

    def model_params(self, name: str) -> dict:
        """The keyword params of recall model `name`: the registry's defaults with this name's
        overrides from `models`, validated, in the model config's field order."""
        return registry.params(name, self.models.get(name))


class RankingConfig(BaseModel):
    """Ranking settings: which recall channels feed the ranker, training days, negatives for
    sources without impressions, LightGBM parameters, re-ranking rules and serving context."""

    # Recall channels whose score and rank become ranker features (missing on a day = NaN).
    channels: list[str] = ["popularity", "item_cf", "als", "ease", "bpr_impressions", "content"]
    # A ranker of day D trains on the samples of D-valid_days-train_days .. D-valid_days-1 that
    # exist and stops early on D-valid_days .. D-1; it is evaluated on D (funnel_evaluation).
    # 4 rather than 2: +0.006 funnel NDCG@10 [+0.003, +0.009] on the default data's days 12-14
    # (docs/ranking.md); a day's samples are small, so more days help until ~4.
    train_days: int = Field(default=4, ge=1, le=365)
    valid_days: int = Field(default=1, ge=0, le=365)
    # With valid_days = 0 (short histories, e.g. a two-day log), early stopping uses this share
    # of the training days' requests instead: the latest ones by request time (by a hash of the
    # request id when requests have no time).
    valid_fraction: float = Field(default=0.2, ge=0.01, le=0.99)
    # Other lambdarank settings (overrides of the ones below) tried on the validation requests;
    # the best NDCG@10 there wins and every trial is recorded with the ranker (empty: defaults).
    param_grid: list[dict[str, Any]] = []
    # Sources without impressions: negatives per positive and the share drawn from recall candidates.
    negative_ratio: int = Field(default=9, ge=1, le=1000)
    hard_negative_share: float = Field(default=0.5, ge=0.0, le=1.0)
    # LightGBM
    learning_rate: float = Field(default=0.05, ge=1e-06, le=1.0)
    num_leaves: int = Field(default=31, ge=2, le=131072)
    max_depth: int = Field(default=6, ge=-1, le=64)  # shallow trees: same NDCG here, 2-3x cheaper TreeSHAP explanations
    min_data_in_leaf: int = 50
    num_boost_round: int = Field(default=500, ge=1, le=100000)
    early_stopping_rounds: int = Field(default=30, ge=1, le=10000)
    seed: int = 42
    threads: int = Field(default=1, ge=0, le=1024)  # 1 = bit-reproducible models
    # Funnel: candidates per user handed to the ranker (from recall_candidates, RRF order)
    rank_candidates: int = Field(default=100, ge=1, le=100000)
    # Candidates per user in ranking_samples' candidate groups (what the ranker learns to order),
    # at most RecallSettings.candidates_k. Deeper than served: the positives recall ranks
    # 100-200 teach the ranker what recall under-ranks (docs/ranking.md, "Why 200 sample candidates").
    sample_candidates: int = Field(default=200, ge=1, le=100000)
    # rank_<channel> features: the item's position in the channel's recall list, this deep
    # (rank_depth + 1 below it). Serving reads it from recall_candidates when their channel
    # lists are at least this deep (RecallSettings.candidates_k), instead of searching again.
    rank_depth: int = Field(default=200, ge=1, le=100000)
    # Scale knob: at most this many users per day (chosen by a seeded hash of the id) give
    # ranking_samples (all their requests and candidates) and funnel_evaluation's test users.
    # None = every user. Serving (recommendations) is never sampled.
    max_users_per_day: int | None = Field(default=None, ge=1)
    top_k: int = Field(default=20, ge=1, le=10000)  # recommendations per user
    # Scale knob: recommendations ranks, re-ranks and explains this many users at a time (memory
    # stays bounded by one batch; each batch is spilled to a Parquet part).
    serving_batch_users: int = Field(default=50_000, ge=1)
    # Re-ranking rules (recsys_assets/core/ranking/rerank.py)
    mmr_lambda: float = Field(default=0.8, ge=0.0, le=1.0)
    genre_cap: int = Field(default=4, ge=0, le=10000)
    freshness_boost: float = Field(default=0.0, ge=0.0)
    freshness_half_life_days: float = Field(default=7.0, ge=1e-06)
    popularity_beta: float = Field(default=0.0, ge=0.0)
    # Serving context: candidates are scored as the candidate groups of ranking_samples were
    # built: on this surface, with no position (the shown position only exists for impressions).
    serving_surface: str = "home"
    explain_history_items: int = Field(default=2, ge=0, le=100)
    explain_features: int = Field(default=3, ge=0, le=100)
    explain_top_n: int = Field(
        default=5, ge=0, le=10000
    )  # top_features (TreeSHAP, the costly part) for the first N ranks per user


class AutomationConfig(BaseModel):
    """Automation settings: how often retraining may run."""

    # At most one retraining request per this many hours, whatever triggers it (new data or drift).
    retrain_min_interval_hours: float = 6.0
    # A quality drop retrains and re-tunes: the serving champion's NDCG@10 on the latest evaluated
    # day more than quality_drop_share below its mean over the quality_window_days before.
    quality_drop_share: float = Field(default=0.2, gt=0, lt=1)
    quality_window_days: int = Field(default=7, ge=2)
    # The recommendations' freshness policy: a warning, then a failure, when the newest list is older.
    recommendations_warn_hours: int = Field(default=26, ge=1)
    recommendations_fail_hours: int = Field(default=50, ge=1)


# Sources that land once, whole: their partitions end at their last day.
FINISHED_SOURCES = ("synthetic", "movielens", "trivago")


class ServingConfig(BaseModel):
    """`recsys serve`: where the HTTP server listens, how often it looks for new models, and
    the largest list one request may ask for."""

    # Loopback by default: the API has no authentication, so exposing it is a deliberate choice.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # How often the model store and the champion registries are checked for a new model day,
    # a promotion or a rollback (a new recommender is built off the request path, then swapped).
    reload_seconds: float = Field(default=10.0, gt=0.0, le=86400.0)
    max_k: int = Field(default=1000, ge=1, le=100000)
    # Requests answered at once per process (the rest wait): the funnel is CPU-bound.
    concurrency: int = Field(default=2, ge=1, le=256)
    # Server processes, each with its own copy of the models (memory x workers): one process
    # runs the funnel's Python on one core at a time, so throughput grows with workers up to
    # the cores. Each worker watches for new models itself.
    workers: int = Field(default=1, ge=1, le=64)
    # Approximate search (HNSW) for a dot-product channel of a large catalog (at least the
    # model's faiss_min_items), enabled per channel at load only when its lists over a sample
    # of users hold at least this share of the exact lists' items (recall@candidates_k); None:
    # exact search only. ef_search: the graph's candidate pool per search.
    ann_min_recall: float | None = Field(default=0.95, gt=0.0, le=1.0)
    ann_ef_search: int = Field(default=200, ge=10, le=10000)
    ann_sample_users: int = Field(default=200, ge=10, le=100000)
    # Score requests with the ranker's trees compiled to machine code (lleaves; the same scores
    # as LightGBM, ~4x faster on a request's rows), compiled at load and cached per model;
    # LightGBM's predictor when off or when compiling fails.
    compiled_trees: bool = True


class SettingsError(ValueError):
    """A setting (or an environment variable naming one) with a value the platform cannot use."""


class Settings(BaseModel):
    """Everything a deployment chooses: where data lives, when partitions start, which executor
    runs steps, and each layer's settings. Immutable once built."""

    model_config = ConfigDict(frozen=True)

    data_root: str = "data"
    landing_root: str | None = None  # None: <data_root>/landing
    start_date: str = DEFAULT_START_DATE  # the first daily partition (UTC)
    # A long source's first partition (start_date) holds its whole history, history_start ..
    # start_date, so the partitions stay few; None: the first partition holds its own day only.
    history_start: str | None = None
    # The last daily partition: a finished source's last day (from its SOURCE.json: synthetic,
    # movielens, trivago), so the partitions end with the data. None: open-ended (a live landing
    # zone, whose new days get partitions by themselves).
    end_date: str | None = None
    # At most this many days at the end of a source get a partition each (the rest is history).
    daily_partitions: int = Field(default=120, ge=1, le=36500)
    # The first day of the source's held-out period (its adapter marks where the last 20% of the
    # events begin): the models of this day train on everything before it and holdout_evaluation
    # tests them on every day from it on. None: the source has no held-out period.
    evaluation_start: str | None = None
    # in_process: a step here is seconds of numpy and DuckDB, and a new process per step costs
    # more than it (97 s vs 15 s for the two snapshot assets); multiprocess runs steps side by side
    executor: Literal["multiprocess", "in_process", "celery"] = "in_process"
    celery_broker: str | None = None
    celery_backend: str | None = None  # None: the broker
    model_cache: str = ""  # local copies of models read from an object store ("" = <tmp>/recsys-model-cache)
    ingestion: IngestionConfig = IngestionConfig()
    features: FeatureConfig = FeatureConfig()
    recall: RecallConfig = RecallConfig()
    ranking: RankingConfig = RankingConfig()
    automation: AutomationConfig = AutomationConfig()
    serving: ServingConfig = ServingConfig()

    @field_validator("start_date", "end_date", "history_start", "evaluation_start")
    @classmethod
    def _is_a_date(cls, value: str | None) -> str | None:
        if value is not None:
            date.fromisoformat(value)
        return value

    @model_validator(mode="after")
    def _starts_before_it_ends(self) -> Settings:
        if self.end_date is not None and self.start_date > self.end_date:
            raise ValueError(f"start_date {self.start_date} is after end_date {self.end_date} (the source's last day)")
        return self

    @property
    def landing(self) -> str:
        return self.landing_root or self.data_root.rstrip("/") + "/landing"

    @property
    def models_root(self) -> str:
        return self.data_root.rstrip("/") + "/models"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then the data root's source marker, then the environment, then `overrides`
        (a layer's overrides may be a config object or a dict of its fields)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, variable in _ENV.items():
            if env.get(variable):
                values[name] = env[variable]
        data_root = overrides.get("data_root", values.get("data_root", "data"))
        marker = read_source_marker(data_root)
        ranking: dict[str, Any] = {}
        recall: dict[str, Any] = {}
        if marker:
            daily = overrides.get("daily_partitions") or _int(
                "RECSYS_DAILY_PARTITIONS", env.get("RECSYS_DAILY_PARTITIONS") or "0"
            )
            partitioning = source_partitions(marker, daily or cls.model_fields["daily_partitions"].default)
            if "start_date" in overrides or "start_date" in values:
                partitioning = {"start_date": values.get("start_date", overrides.get("start_date"))}  # as given
            values |= partitioning
            if marker.get("source") in FINISHED_SOURCES:
                values["end_date"] = marker["last_day"]
            first = date.fromisoformat(values["start_date"])
            days = (date.fromisoformat(marker["last_day"]) - first).days + 1
            if marker.get("source") != "synthetic" and days < SHORT_LOG_DAYS:
                # Too short for training days and a later validation day before the day a ranker serves:
                # train on every earlier day, early-stop on a held-out share of its requests.
                ranking |= {"train_days": max(days - 1, 1), "valid_days": 0, "param_grid": SHORT_LOG_PARAM_GRID}
            if marker.get("has_impressions") is False:
                # Ratings: users come back after months, so models learn from the whole history;
                # models that learn from impressions (or are the baseline of one) have nothing to learn.
                recall["window_days"] = None
                # the day's batch lists for the users who rated in the last year (ml-32m: 23k of
                # 195k users, every warm test user of a held-out day); others are computed on demand
                recall["candidates_recent_days"] = 365
                recall["parallel_days"] = 1
                recall["tune_validation_days"] = 14
                # ALS's confidence alpha decides whether it beats popularity on ratings, and no one
                # value fits every release: tuned, ALS gains +0.036 [+0.031, +0.041] NDCG@10 on the
                # ml-1m shape's held-out period; on ml-100k no trial beats the defaults, which stay
                # (benchmarks/RESULTS.md, "Tuned vs default"). Bounded by tune_seconds per study.
                recall["tune"] = ["als"]
                recall["channels"] = [n for n in registry.REGISTRY if not registry.spec(n).impressions_only]
                ranking["channels"] = [c for c in RankingConfig().channels if c in recall["channels"]]
        for field, variable in (("train_days", "RECSYS_RANKER_TRAIN_DAYS"), ("valid_days", "RECSYS_RANKER_VALID_DAYS")):
            if env.get(variable):
                ranking[field] = _int(variable, env[variable])
        if "executor" in values:
            values["executor"] = values["executor"].strip().lower()
            if values["executor"] not in EXECUTORS:
                raise SettingsError(f"RECSYS_EXECUTOR={values['executor']!r}: expected one of {', '.join(EXECUTORS)}")
        given_recall = overrides.pop("recall", None)
        if recall or given_recall is not None:
            base = (
                given_recall.model_dump(exclude_unset=True)
                if isinstance(given_recall, BaseModel)
                else dict(given_recall or {})
            )
            values["recall"] = RecallConfig(**(recall | base))
        given = overrides.pop("ranking", None)
        if ranking or given is not None:
            base = given.model_dump() if isinstance(given, BaseModel) else dict(given or {})
            values["ranking"] = RankingConfig(**(ranking | base))
        return cls(**(values | overrides))


def source_partitions(marker: Mapping[str, Any], daily_partitions: int) -> dict[str, Any]:
    """Where a source's partitions start: its first day, or, for a source longer than
    `daily_partitions` days or with a held-out period (`test_start` in its marker), one history
    partition holding everything up to the day before the daily partitions."""
    first, last = date.fromisoformat(marker["first_day"]), date.fromisoformat(marker["last_day"])
    start = max(first, last - timedelta(days=daily_partitions))
    test_start = marker.get("test_start")
    if test_start:
        start = max(start, min(date.fromisoformat(test_start), last) - timedelta(days=1))
    values: dict[str, Any] = {"start_date": start.isoformat(), "daily_partitions": daily_partitions}
    if start > first:
        values["history_start"] = first.isoformat()
        if test_start:
            values["evaluation_start"] = (start + timedelta(days=1)).isoformat()
    return values


_ENV = {
    "data_root": "RECSYS_DATA_ROOT",
    "landing_root": "RECSYS_LANDING_ROOT",
    "start_date": "RECSYS_START_DATE",
    "executor": "RECSYS_EXECUTOR",
    "celery_broker": "RECSYS_CELERY_BROKER",
    "celery_backend": "RECSYS_CELERY_BACKEND",
    "model_cache": "RECSYS_MODEL_CACHE",
}


def _int(variable: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"{variable}={text!r}: expected an integer") from None


def read_source_marker(data_root: str | Path) -> dict | None:
    """The data root's SOURCE.json (which source its landing zone holds, first and last day), or
    None: no marker, one without days (data roots older than the marker), or an object store."""
    if "://" in str(data_root):
        return None
    marker = read_marker(Path(data_root))
    return marker if marker and marker.get("first_day") and marker.get("last_day") else None
