"""Ranking settings: which recall channels feed the ranker, training days, negatives for
sources without impressions, LightGBM parameters, re-ranking rules and serving context."""

import os

import dagster as dg
from pydantic import Field


class RankingSettings(dg.ConfigurableResource):
    # Recall channels whose score and rank become ranker features (missing on a day = NaN).
    channels: list[str] = ["popularity", "item_cf", "als", "ease", "bpr_impressions", "content"]
    # A ranker of day D trains on the samples of D-valid_days-train_days .. D-valid_days-1 and
    # stops early on D-valid_days .. D-1; it is evaluated on D (funnel_evaluation).
    train_days: int = Field(default=int(os.getenv("RECSYS_RANKER_TRAIN_DAYS", "2")), ge=1, le=365)
    valid_days: int = Field(default=int(os.getenv("RECSYS_RANKER_VALID_DAYS", "1")), ge=0, le=365)
    # With valid_days = 0 (short histories, e.g. a two-day log), early stopping uses this share
    # of the training days' requests instead (split by a hash of the request id).
    valid_fraction: float = Field(default=0.2, ge=0.01, le=0.99)
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
