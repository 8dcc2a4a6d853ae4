"""The lake as a Dagster resource (recsys_assets/services/lake.py holds the paths and rules)."""

import dagster as dg

from recsys_assets.services.lake import (
    SNAPSHOT,
    Lake,
    UnsafePathError,
    ensure_within,
    validate_partition_key,
    validate_table_name,
    validated_root,
)

__all__ = [
    "SNAPSHOT",
    "StorageResource",
    "UnsafePathError",
    "ensure_within",
    "validate_partition_key",
    "validate_table_name",
    "validated_root",
]


class StorageResource(dg.ConfigurableResource, Lake):
    """Root of everything the platform writes (a folder or s3://bucket/prefix), set in the launchpad
    or by recsys_assets.settings.Settings (RECSYS_DATA_ROOT)."""
