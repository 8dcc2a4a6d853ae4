"""Plain logic with no Dagster import: contract, generator, ingestion, storage helpers."""
