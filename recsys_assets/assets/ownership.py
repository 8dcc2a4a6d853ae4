"""Who owns which asset, and the layer tag every asset carries: one place for every module.

Usage, in any asset decorator (or dg.AssetSpec):

    @dg.asset(kinds={...}, description="...", **ownership.layer("ranking"))

gives the asset `group_name="ranking"`, `owners=["team:recsys-ml"]` and `tags={"layer": "ranking"}`. A layer not
listed in LAYER_OWNERS raises KeyError at import time, so a new layer is added here with its
owner first. tests/test_asset_catalog.py fails for an asset without description, group,
kind, owner or a known layer tag.
"""

DATA_PLATFORM = "team:data-platform"  # ingestion, features, dictionaries, drift
RECSYS_ML = "team:recsys-ml"  # models, evaluation, promotion, serving, ranking

LAYER_TAG = "layer"

LAYER_OWNERS = {
    "raw": DATA_PLATFORM,  # landing logs and snapshots -> validated Parquet
    "features": DATA_PLATFORM,  # interactions, daily aggregates, point-in-time features
    "dictionaries": DATA_PLATFORM,  # id and hash dictionaries
    "drift": DATA_PLATFORM,  # feature drift reports
    "recall": RECSYS_ML,  # recall models and fused candidates
    "evaluation": RECSYS_ML,  # offline evaluation and the champion registry
    "serving": RECSYS_ML,  # serving artifacts (ANN index)
    "ranking": RECSYS_ML,  # the ranking stage
    "report": RECSYS_ML,  # pages people read: the daily report
}


def layer(name: str, group: str | None = None, **extra_tags: str) -> dict:
    """`group_name`, `owners` and `tags` keyword arguments for an asset of layer `name`: its group
    is its layer (and the module it lives in, assets/<layer>.py) unless `group` says otherwise
    (the raw snapshots, kept apart so range runs of the daily logs stay valid)."""
    return {"group_name": group or name, "owners": [LAYER_OWNERS[name]], "tags": {LAYER_TAG: name, **extra_tags}}
