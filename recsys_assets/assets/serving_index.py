"""The ANN index over the recall champion's item factors (faiss HNSW, inner product), with
its recall@K against exact search measured on the day's users."""

import dagster as dg
import numpy as np

from recsys_assets.assets import ownership
from recsys_assets.assets.evaluation import serving_champion
from recsys_assets.core.recall import ann
from recsys_assets.core.recall import models as recall_models
from recsys_assets.partitions import daily_partitions
from resources import ModelStoreResource, RecallSettings, StorageResource

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


@dg.asset(
    group_name="recall",
    kinds={"faiss"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["recall_champion"],
    **ownership.layer("serving"),
    description=f"A faiss HNSW index over the item factors of day D's recall champion (inner-product search "
    "turned into L2 search by one extra coordinate), saved in "
    f"faiss's own format in the model store, with recall@{ANN_K} against exact search on the champion's "
    "users reported (check: >= 0.95). Skipped when the champion has no factors (item-CF, EASE).",
)
def recall_ann_index(
    context: dg.AssetExecutionContext, storage: StorageResource, model_store: ModelStoreResource, recall: RecallSettings
) -> dg.MaterializeResult:
    meta = {}
    for day in context.partition_keys:
        if not storage.partition_path("recall_champion", day).exists():
            raise dg.Failure(f"recall_champion is not materialized for {day}")
        winner, trained = serving_champion(storage, day) or (None, None)  # the day's decision, or a later rollback
        if winner is None or not model_store.exists(f"recall_{winner}", trained):
            meta = {"skipped": True, "reason": f"no recall champion serving on {day}"}
            continue
        model_store.verify(f"recall_{winner}", trained)
        vectors = mips_vectors(recall_models.load_model(model_store.path(f"recall_{winner}", trained)).arrays())
        if vectors is None:
            meta = {"skipped": True, "reason": f"champion {winner} has no factors to index"}
            continue
        users, items = vectors
        rng = np.random.default_rng(recall.seed)
        sample = users[rng.choice(len(users), size=min(2000, len(users)), replace=False)]
        items_l2, sample_l2 = ann.mips_to_l2(items, sample)
        k = min(ANN_K, len(items))
        index = ann.build_mips_hnsw(items_l2, ef_search=max(256, 2 * k))
        # exact top-k by inner product on the augmented vectors equals the model's own ranking
        measured = ann.recall_vs_exact(index, items_l2, sample_l2, k)
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
                "query_transform": "append a 0 coordinate to the user vector (see core/recall/ann.mips_to_l2)",
            },
        )
        meta = {"champion": winner, "ann_recall_vs_exact": float(measured), "k": k, "items": int(len(items))}
    return dg.MaterializeResult(metadata=meta)


@dg.asset_check(
    asset=recall_ann_index,
    name="recall_vs_exact",
    blocking=True,
    partitions_def=daily_partitions,
    description=f"The ANN index finds at least {MIN_ANN_RECALL:.0%} of the exact top-{ANN_K} items.",
)
def ann_recall_check(context: dg.AssetCheckExecutionContext, model_store: ModelStoreResource) -> dg.AssetCheckResult:
    measured = {}
    for day in context.partition_keys:
        if model_store.exists("recall_ann_index", day):
            manifest = model_store.verify("recall_ann_index", day)
            measured[day] = next(v for k, v in manifest["metadata"].items() if k.startswith("recall_at_"))
    worst = min(measured.values()) if measured else 1.0
    return dg.AssetCheckResult(
        passed=worst >= MIN_ANN_RECALL, metadata={"worst_recall_vs_exact": float(worst), "indexed_days": len(measured)}
    )
