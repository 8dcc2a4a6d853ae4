"""Feature-layer settings: labels, smoothing, sequence length, dictionaries, drift thresholds."""

import dagster as dg

from recsys_assets.settings import FeatureConfig


class FeatureSettings(dg.ConfigurableResource, FeatureConfig):
    """recsys_assets.settings.FeatureConfig, configurable in the launchpad."""
