"""Automation settings: how often retraining may run."""

import dagster as dg

from recsys_assets.settings import AutomationConfig


class AutomationSettings(dg.ConfigurableResource, AutomationConfig):
    """recsys_assets.settings.AutomationConfig, configurable in the launchpad."""
