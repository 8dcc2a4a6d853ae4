"""Ranking settings: which recall channels feed the ranker, training days, negatives for
sources without impressions, LightGBM parameters, re-ranking rules and serving context."""

import dagster as dg

from recsys_assets.settings import RankingConfig


class RankingSettings(dg.ConfigurableResource, RankingConfig):
    """recsys_assets.settings.RankingConfig, configurable in the launchpad."""
