"""Configurable Dagster resources: where data lives and how it is read and checked."""

from resources.automation import AutomationSettings
from resources.features import FeatureSettings
from resources.ingestion import IngestionSettings
from resources.landing import LandingZoneResource
from resources.model_store import ModelStoreResource
from resources.ranking import RankingSettings
from resources.recall import RecallSettings
from resources.storage import StorageResource
from resources.warehouse import WarehouseResource

__all__ = [
    "AutomationSettings",
    "FeatureSettings",
    "IngestionSettings",
    "LandingZoneResource",
    "ModelStoreResource",
    "RankingSettings",
    "RecallSettings",
    "StorageResource",
    "WarehouseResource",
]
