"""Recall evaluation of day D: every channel and their fusion ranked over the full catalog
(training positives, items consumed before D and not-yet-available items removed), by user segment, with bootstrap CIs
and paired lift over popularity (docs/evaluation.md)."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recsys_assets.core import fusion, metrics
from recsys_assets.core.training_data import seen_matrix
from recsys_assets.services.channels import enabled_channels, load_channels, recommend_channels
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.training import load_day
from recsys_assets.settings import RecallConfig

METRICS = ("recall", "precision", "hr", "ndcg", "map", "mrr")


def _finite(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


EVAL_SCHEMA = pa.schema(
    [
        ("day", pa.string()),
        ("model", pa.string()),
        ("segment", pa.string()),
        ("metric", pa.string()),
        ("k", pa.int64()),
        ("value", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("n_users", pa.int64()),
        ("lift_vs_popularity", pa.float64()),
        ("diff_ci_low", pa.float64()),
        ("diff_ci_high", pa.float64()),
        ("p_value", pa.float64()),
    ]
)


def summarize_users(values: np.ndarray, baseline: np.ndarray | None, settings: RecallConfig) -> dict:
    """The mean of per-user `values` with its bootstrap 95% CI and, against `baseline` (another
    model's values on the same users, same order; None: no comparison), the paired relative lift,
    the CI of the mean difference and the p-value."""
    lo, hi = metrics.bootstrap_ci(values, n_boot=settings.bootstrap_samples, seed=settings.seed)
    out = {"value": float(values.mean()), "ci_low": float(lo), "ci_high": float(hi)}
    if baseline is None:
        return out | {"lift": None, "diff_ci_low": None, "diff_ci_high": None, "p_value": None}
    paired = metrics.paired_bootstrap(values, baseline, n_boot=settings.bootstrap_samples, seed=settings.seed)
    return out | {
        "lift": _finite(paired["lift"]),
        "diff_ci_low": float(paired["ci_low"]),
        "diff_ci_high": float(paired["ci_high"]),
        "p_value": float(paired["p_value"]),
    }


def segment_of(n_train_positives: np.ndarray, light_max: int) -> np.ndarray:
    return np.where(n_train_positives == 0, "cold", np.where(n_train_positives <= light_max, "light", "heavy"))


def evaluate_day(
    day: str, lake: Lake, model_store: ModelStore, settings: RecallConfig, first_day: str | None
) -> tuple[list[dict], dict]:
    """Every enabled channel of `day` and their fusions on day D's held-out positives: the rows of
    the recall_evaluation partition, and (test users, data version)."""
    data, test, info, data_version, _ = load_day(lake, day, settings, first_day, model_store=model_store)
    users = test.users
    ks = sorted(settings.k_eval)
    max_k = ks[-1]
    exclude, blocked = seen_matrix(data.positives, info["consumed"]), np.flatnonzero(~info["available_items"])
    relevant = test.relevant[users]
    n_train = np.diff(data.positives.indptr)[users]
    segments = segment_of(n_train, settings.light_user_max_positives)
    item_popularity = np.asarray((data.positives > 0).sum(axis=0)).ravel()

    loaded = load_channels(model_store, day, enabled_channels(settings.channels))
    channels, ranges, latency = recommend_channels(loaded, users, max_k, exclude, blocked)
    per_model = {
        name: (recs, {k: metrics.per_user_metrics(recs, relevant, k) for k in ks})
        for name, (recs, _) in channels.items()
    }
    if len(channels) > 1:  # fusion of every channel, evaluated like a model
        started = time.perf_counter()
        fused = fusion.fuse(channels, data.n_items, max_k, score_ranges=ranges)
        for method, (recs, _) in fused.items():
            latency[f"fusion_{method}"] = (time.perf_counter() - started) / max(len(users), 1) * 1000
            per_model[f"fusion_{method}"] = (recs, {k: metrics.per_user_metrics(recs, relevant, k) for k in ks})

    # Items first seen on the test day: no training positive and not in anyone's window.
    cold_items = np.asarray((data.positives > 0).sum(axis=0)).ravel() == 0
    relevant_cold = relevant.multiply(sp.csr_matrix(cold_items.astype(np.float32))).tocsr()
    relevant_cold.eliminate_zeros()
    cold_item_users = np.flatnonzero(np.diff(relevant_cold.indptr) > 0)

    rows = []
    popularity = per_model.get("popularity")
    for name, (recs, by_k) in per_model.items():
        for k in ks:
            for metric_name, values in by_k[k].items():
                base = metric_name.split("@")[0]
                for segment in ("all", "cold", "light", "heavy"):
                    mask = np.ones(len(users), bool) if segment == "all" else segments == segment
                    if not mask.any():
                        continue
                    baseline = (
                        popularity[1][k][metric_name][mask] if popularity is not None and name != "popularity" else None
                    )
                    summary = summarize_users(values[mask], baseline, settings)
                    rows.append(
                        {
                            "day": day,
                            "model": name,
                            "segment": segment,
                            "metric": base,
                            "k": k,
                            "value": summary["value"],
                            "ci_low": summary["ci_low"],
                            "ci_high": summary["ci_high"],
                            "n_users": int(mask.sum()),
                            "lift_vs_popularity": summary["lift"],
                            "diff_ci_low": summary["diff_ci_low"],
                            "diff_ci_high": summary["diff_ci_high"],
                            "p_value": summary["p_value"],
                        }
                    )
            if cold_item_users.size:  # how well each model surfaces items new on the test day
                cold = metrics.per_user_metrics(recs[cold_item_users], relevant_cold[cold_item_users], k)
                for metric_name in (f"recall@{k}", f"ndcg@{k}"):
                    v = cold[metric_name]
                    lo, hi = metrics.bootstrap_ci(v, n_boot=settings.bootstrap_samples, seed=settings.seed)
                    rows.append(
                        {
                            "day": day,
                            "model": name,
                            "segment": "cold_items",
                            "metric": metric_name.split("@")[0],
                            "k": k,
                            "value": float(v.mean()),
                            "ci_low": float(lo),
                            "ci_high": float(hi),
                            "n_users": int(cold_item_users.size),
                            "lift_vs_popularity": None,
                            "diff_ci_low": None,
                            "diff_ci_high": None,
                            "p_value": None,
                        }
                    )
            for metric_name, value in (
                ("coverage", metrics.catalog_coverage(recs, data.n_items, k)),
                ("novelty", metrics.novelty(recs, item_popularity, k)),
                # popularity bias: how popular, how much of the long tail, how unequal the exposure
                ("avg_popularity", metrics.average_popularity(recs, item_popularity, k)),
                ("long_tail_share", metrics.long_tail_share(recs, item_popularity, k)),
                ("exposure_gini", metrics.exposure_gini(recs, data.n_items, k)),
            ):
                rows.append(
                    {
                        "day": day,
                        "model": name,
                        "segment": "all",
                        "metric": metric_name,
                        "k": k,
                        "value": _finite(value),
                        "ci_low": None,
                        "ci_high": None,
                        "n_users": int(len(users)),
                        "lift_vs_popularity": None,
                        "diff_ci_low": None,
                        "diff_ci_high": None,
                        "p_value": None,
                    }
                )
        rows.append(
            {
                "day": day,
                "model": name,
                "segment": "all",
                "metric": "latency_ms_per_user",
                "k": max_k,
                "value": float(latency[name]),
                "ci_low": None,
                "ci_high": None,
                "n_users": int(len(users)),
                "lift_vs_popularity": None,
                "diff_ci_low": None,
                "diff_ci_high": None,
                "p_value": None,
            }
        )
    return rows, {"test_users": int(len(users)), "data_version": data_version}


def unevaluated_models(rows: list[dict], day: str, model_store: ModelStore, settings: RecallConfig) -> list[str]:
    """The enabled recall models published for `day` that have no row in its evaluation."""
    evaluated = {row["model"] for row in rows}
    trained = [name for name in enabled_channels(settings.channels) if model_store.exists(f"recall_{name}", day)]
    return [name for name in trained if name not in evaluated]
