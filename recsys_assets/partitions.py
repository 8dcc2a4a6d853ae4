"""Daily partitions shared by every partitioned asset (UTC days)."""

import os

import dagster as dg

# The first day of data; set RECSYS_START_DATE for a source whose logs start elsewhere.
START_DATE = os.getenv("RECSYS_START_DATE", "2026-01-01")

daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")


def window_days(day: str, days: int) -> list[str]:
    """The `days` days strictly before `day` that are partitions (none before START_DATE)."""
    from datetime import date, timedelta

    end = date.fromisoformat(day)
    start = date.fromisoformat(START_DATE)
    return [d.isoformat() for d in (end - timedelta(days=k) for k in range(days, 0, -1)) if d >= start]


def window_mapping(days: int) -> dg.TimeWindowPartitionMapping:
    """Day D reads days D-days .. D-1 of its upstream: point in time, never D itself."""
    return dg.TimeWindowPartitionMapping(start_offset=-days, end_offset=-1, allow_nonexistent_upstream_partitions=True)
