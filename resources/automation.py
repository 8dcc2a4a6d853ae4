"""Automation settings: how often retraining may run."""

import dagster as dg


class AutomationSettings(dg.ConfigurableResource):
    # At most one retraining request per this many hours, whatever triggers it (new data or drift).
    retrain_min_interval_hours: float = 6.0
