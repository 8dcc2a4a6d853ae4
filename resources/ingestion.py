"""Ingestion policy: line size cap, reference checks and the tolerated quarantine rate.

Values are validated when the resource is built (code, launchpad or run config): a wrong one
fails with one message naming the field and the allowed range."""

import dagster as dg

from recsys_assets.settings import IngestionConfig


class IngestionSettings(dg.ConfigurableResource, IngestionConfig):
    """recsys_assets.settings.IngestionConfig, configurable in the launchpad."""
