"""Recall channels of a day: the published models loaded once (checksums verified first),
their top-K lists, and what recall may not propose (seen and not-yet-available items)."""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.ranking.features import Channel
from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.training_data import seen_matrix
from recsys_assets.services.model_store import ModelStore


def exclusion_matrix(
    positives: sp.csr_matrix, users: np.ndarray, unavailable: np.ndarray, consumed: sp.csr_matrix | None = None
) -> sp.csr_matrix:
    """Items a user may not be recommended on day D: their training positives, what they
    consumed before D (`consumed`, info["consumed"] of load_day), and items not yet in the
    catalog on D. Materialises users × unavailable entries: for many users pass `seen_matrix`
    to `recommend(exclude=...)` and the unavailable items as `blocked_items`."""
    seen = seen_matrix(positives, consumed)
    if unavailable.size == 0:
        return seen
    rows = np.repeat(users, unavailable.size)
    cols = np.tile(unavailable, users.size)
    blocked = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=positives.shape)
    return (seen + blocked).tocsr()


def load_channels(model_store: ModelStore, day: str, names=None) -> dict[str, Channel]:
    """The recall models published for `day` (checksums verified first), by channel name, in
    `names`' order (default: every registered channel, in registry order), each with the
    dictionary sizes it was trained on and its training score range (p01, p99)."""
    out = {}
    for name in recall_models.MODELS if names is None else names:
        if not model_store.exists(f"recall_{name}", day):
            continue
        metadata = model_store.verify(f"recall_{name}", day)["metadata"]
        score_range = metadata.get("score_range") or {}
        out[name] = Channel(
            recall_models.load_model(model_store.path(f"recall_{name}", day)),
            metadata["n_users"],
            metadata["n_items"],
            (score_range["p01"], score_range["p99"]) if score_range else None,
        )
    return out


def enabled_channels(enabled) -> list[str]:
    """The registered channels among `enabled`, in registry order (the order fusion adds them)."""
    return [name for name in recall_models.MODELS if name in enabled]


def recommend_channels(
    loaded: dict[str, Channel], users: np.ndarray, k: int, exclude: sp.csr_matrix, blocked_items=None
) -> tuple[dict, dict, dict]:
    """({name: (items, scores)}, {name: score range}, {name: ms per user}) of loaded channels."""
    channels, ranges, latency = {}, {}, {}
    for name, channel in loaded.items():
        started = time.perf_counter()
        # a channel trained on an older dictionary knows fewer items than the exclusion rows
        rows = exclude if exclude.shape[1] == channel.n_items else exclude[:, : channel.n_items]
        blocked = blocked_items if blocked_items is None else blocked_items[blocked_items < channel.n_items]
        channels[name] = channel.model.recommend(users, k, exclude=rows, blocked_items=blocked)
        latency[name] = (time.perf_counter() - started) / max(len(users), 1) * 1000
        if channel.score_range:
            ranges[name] = channel.score_range
    return channels, ranges, latency
