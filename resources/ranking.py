"""Ranking settings: which recall channels feed the ranker, training days, negatives for
sources without impressions, LightGBM parameters, re-ranking rules and serving context."""

import os

import dagster as dg


class RankingSettings(dg.ConfigurableResource):
    # Recall channels whose score and rank become ranker features (missing on a day = NaN).
    channels: list[str] = ["popularity", "item_cf", "als", "ease", "bpr_impressions", "content"]
    # A ranker of day D trains on the samples of D-valid_days-train_days .. D-valid_days-1 and
    # stops early on D-valid_days .. D-1; it is evaluated on D (funnel_evaluation).
    train_days: int = int(os.getenv("RECSYS_RANKER_TRAIN_DAYS", "2"))
    valid_days: int = int(os.getenv("RECSYS_RANKER_VALID_DAYS", "1"))
    # With valid_days = 0 (short histories, e.g. a two-day log), early stopping uses this share
    # of the training days' requests instead (split by a hash of the request id).
    valid_fraction: float = 0.2
    # Sources without impressions: negatives per positive and the share drawn from recall candidates.
    negative_ratio: int = 9
    hard_negative_share: float = 0.5
    # LightGBM
    learning_rate: float = 0.05
    num_leaves: int = 31
    max_depth: int = 6  # shallow trees: same NDCG here, 2-3x cheaper TreeSHAP explanations
    min_data_in_leaf: int = 50
    num_boost_round: int = 500
    early_stopping_rounds: int = 30
    seed: int = 42
    threads: int = 1  # 1 = bit-reproducible models
    # Funnel: candidates per user handed to the ranker (from recall_candidates, RRF order)
    rank_candidates: int = 100
    top_k: int = 20  # recommendations per user
    # Re-ranking rules (recsys_assets/core/ranking/rerank.py)
    mmr_lambda: float = 0.8
    genre_cap: int = 4
    freshness_boost: float = 0.0
    freshness_half_life_days: float = 7.0
    popularity_beta: float = 0.0
    # Serving context: candidates are scored as the candidate groups of ranking_samples were
    # built: on this surface, with no position (the shown position only exists for impressions).
    serving_surface: str = "home"
    explain_history_items: int = 2
    explain_features: int = 3
    explain_top_n: int = 5  # top_features (TreeSHAP, the costly part) for the first N ranks per user
