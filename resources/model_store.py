"""The model store as a Dagster resource (recsys_assets/services/model_store.py holds the logic)."""

import dagster as dg

from recsys_assets.services.model_store import MANIFEST, CorruptModelError, ModelStore

__all__ = ["MANIFEST", "CorruptModelError", "ModelStoreResource"]


class ModelStoreResource(dg.ConfigurableResource, ModelStore):
    """<data_root>/models by default (recsys_assets.settings.Settings); models of an object store are
    verified and loaded from a local cache (RECSYS_MODEL_CACHE)."""
