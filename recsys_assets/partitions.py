"""Daily partitions shared by every partitioned asset (UTC days), and the windows they read."""

import dagster as dg


def daily_partitions(start_date: str) -> dg.DailyPartitionsDefinition:
    """UTC days from `start_date` (Settings.start_date: the source's first day)."""
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC")


def window_mapping(days: int) -> dg.TimeWindowPartitionMapping:
    """Day D reads days D-days .. D-1 of its upstream: point in time, never D itself."""
    return dg.TimeWindowPartitionMapping(start_offset=-days, end_offset=-1, allow_nonexistent_upstream_partitions=True)
