"""Daily partitions shared by every partitioned asset (UTC days)."""

import os

import dagster as dg

# The first day of data; set RECSYS_START_DATE for a source whose logs start elsewhere.
START_DATE = os.getenv("RECSYS_START_DATE", "2026-01-01")

daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")
