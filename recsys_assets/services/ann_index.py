"""The ANN index over the serving recall champion's item factors (faiss HNSW, inner product),
with its recall@K against exact search measured on the champion's users.

Items whose vector is all zeros are left out of the index: ALS and implicit's BPR leave the
items never seen in training at 0 (97% of a MovieLens day's catalog), they score 0 for every
user, and thousands of identical points break the HNSW graph (recall@100 vs exact fell to ~0
on such a catalog). The index returns catalog item indices (an id map)."""

from __future__ import annotations

import numpy as np

from recsys_assets.core.recall import ann
from recsys_assets.core.recall import models as recall_models
from recsys_assets.services.errors import MissingInput
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.registry import serving_champion

ANN_K = 100
MIN_ANN_RECALL = 0.95


def mips_vectors(arrays: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(user vectors, item vectors) whose inner product is the model's score, or None for
    models without factors (item-CF, EASE, popularity, content). An item bias becomes one
    more item column with a constant 1 on the user side."""
    if "user_factors" not in arrays or "item_factors" not in arrays:
        return None
    users, items = arrays["user_factors"].astype(np.float32), arrays["item_factors"].astype(np.float32)
    if "item_bias" in arrays:
        users = np.hstack([users, np.ones((len(users), 1), np.float32)])
        items = np.hstack([items, arrays["item_bias"].reshape(-1, 1).astype(np.float32)])
    return users, items


def build_champion_index(day: str, lake: Lake, model_store: ModelStore, seed: int) -> dict:
    """Index the recall champion serving after `day`'s decision (or a later rollback of it) and
    publish it as recall_ann_index/<day>. Returns what was done: {"skipped": reason} when no
    champion serves or it has no factors."""
    if not lake.partition_path("recall_champion", day).exists():
        raise MissingInput(f"recall_champion is not materialized for {day}")
    winner, trained = serving_champion(lake, day) or (None, None)
    if winner is None or trained is None or not model_store.exists(f"recall_{winner}", trained):
        return {"skipped": True, "reason": f"no recall champion serving on {day}"}
    model_store.verify(f"recall_{winner}", trained)
    vectors = mips_vectors(recall_models.load_model(model_store.path(f"recall_{winner}", trained)).arrays())
    if vectors is None:
        return {"skipped": True, "reason": f"champion {winner} has no factors to index"}
    users, items = vectors
    catalog = len(items)
    ids = np.flatnonzero(np.any(items != 0, axis=1))
    if len(ids) == 0:
        return {"skipped": True, "reason": f"champion {winner} has only all-zero item vectors"}
    items = items[ids]
    rng = np.random.default_rng(seed)
    sample = users[rng.choice(len(users), size=min(2000, len(users)), replace=False)]
    items_l2, sample_l2 = ann.mips_to_l2(items, sample)
    k = min(ANN_K, len(items))
    index = ann.build_mips_hnsw(items_l2, ef_search=max(256, 2 * k), ids=ids)
    # exact top-k by inner product on the augmented vectors equals the model's own ranking
    measured = ann.recall_vs_exact(index, items_l2, sample_l2, k, ids=ids)
    staging = model_store.staging_dir("recall_ann_index")
    ann.save_index(index, staging / "index.faiss")
    model_store.publish(
        "recall_ann_index",
        day,
        staging,
        {
            "champion": winner,
            "champion_day": trained,
            f"recall_at_{k}_vs_exact": measured,
            "items": int(len(items)),
            "catalog_items": int(catalog),
            "query_transform": "append a 0 coordinate to the user vector (see core/recall/ann.mips_to_l2)",
        },
    )
    return {
        "champion": winner,
        "ann_recall_vs_exact": float(measured),
        "k": k,
        "items": int(len(items)),
        "zero_vector_items_left_out": int(catalog - len(items)),
    }


def indexed_recall(model_store: ModelStore, days) -> dict[str, float]:
    """{day: recall@K vs exact} of the published indexes of `days`."""
    measured = {}
    for day in days:
        if model_store.exists("recall_ann_index", day):
            manifest = model_store.verify("recall_ann_index", day)
            measured[day] = next(v for k, v in manifest["metadata"].items() if k.startswith("recall_at_"))
    return measured
