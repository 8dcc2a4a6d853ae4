"""Adapters: public datasets -> a landing zone in the contract format (no Dagster import)."""
