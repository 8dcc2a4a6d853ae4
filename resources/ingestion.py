"""Ingestion policy: line size cap, reference checks and the tolerated quarantine rate.

Values are validated when the resource is built (code, launchpad or run config): a wrong one
fails with one message naming the field and the allowed range."""

import dagster as dg
from pydantic import Field

from recsys_assets.core.ingest import DEFAULT_MAX_LINE_BYTES


class IngestionSettings(dg.ConfigurableResource):
    # Bytes per landing line; longer lines are quarantined as line_too_long (head kept).
    max_line_bytes: int = Field(default=DEFAULT_MAX_LINE_BYTES, ge=1024, le=1 << 30)
    # The quarantine_rate check fails (blocking downstream) above this share of lines.
    max_quarantine_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    # Share of events/watches whose request_id matches no impression (same or previous day).
    max_orphan_request_rate: float = Field(default=0.0, ge=0.0, le=1.0)
