"""Daily partitions shared by every partitioned asset (UTC days), and the windows they read."""

from datetime import date, timedelta

import dagster as dg


def daily_partitions(start_date: str, end_date: str | None = None) -> dg.DailyPartitionsDefinition:
    """UTC days from `start_date` (Settings.start_date: the source's first day) to `end_date`
    included (Settings.end_date: a finished source's last day, so the UI's per-day plots cover the
    data and not the months after it), or open-ended (None: live data, a new day appears by itself)."""
    end = (date.fromisoformat(end_date) + timedelta(days=1)).isoformat() if end_date else None
    return dg.DailyPartitionsDefinition(start_date=start_date, end_date=end, timezone="UTC")


def window_mapping(days: int) -> dg.TimeWindowPartitionMapping:
    """Day D reads days D-days .. D-1 of its upstream: point in time, never D itself."""
    return dg.TimeWindowPartitionMapping(start_offset=-days, end_offset=-1, allow_nonexistent_upstream_partitions=True)
