"""Recall settings: training window, signal weights, model hyperparameters, evaluation."""

import dagster as dg

from recsys_assets.settings import RecallConfig


class RecallSettings(dg.ConfigurableResource, RecallConfig):
    """recsys_assets.settings.RecallConfig, configurable in the launchpad."""
