"""Ingestion policy: line size cap, reference checks and the tolerated quarantine rate."""

import dagster as dg

from recsys_assets.core.ingest import DEFAULT_MAX_LINE_BYTES


class IngestionSettings(dg.ConfigurableResource):
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    # The quarantine_rate check fails (blocking downstream) above this share of lines.
    max_quarantine_rate: float = 0.05
    # Share of events/watches whose request_id matches no impression (same or previous day).
    max_orphan_request_rate: float = 0.0
