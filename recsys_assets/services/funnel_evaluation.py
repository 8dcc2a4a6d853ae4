"""The funnel on day D's held-out data: recall-only ordering (the fused lists), the recall
champion's order (what serves without a ranker) vs the ranker vs ranker + re-rank for users
with new positives on D, and D's shown slates re-ordered (the ranker of D never saw D)."""

from __future__ import annotations

import time
from typing import cast

import numpy as np
import polars as pl
import pyarrow as pa

from recsys_assets.core import fusion, metrics
from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking import funnel, samples
from recsys_assets.core.storage import read_polars
from recsys_assets.services.candidates import day_candidates
from recsys_assets.services.channels import exclusion_matrix, load_channels, recommend_channels
from recsys_assets.services.errors import Skipped
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.registry import current_champion
from recsys_assets.services.serving import champion_order, feature_context, load_ranker, rules
from recsys_assets.services.training import load_day
from recsys_assets.settings import RankingConfig, RecallConfig

FUNNEL_SCHEMA = pa.schema(
    [
        ("day", pa.string()),
        ("scope", pa.string()),
        ("stage", pa.string()),
        ("metric", pa.string()),
        ("k", pa.int64()),
        ("value", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("n", pa.int64()),
        ("baseline", pa.string()),
        ("diff", pa.float64()),
        ("diff_ci_low", pa.float64()),
        ("diff_ci_high", pa.float64()),
        ("p_value", pa.float64()),
    ]
)
STAGES = ("recall_only", "recall_champion", "ranker", "ranker_rerank")


class FunnelSkipped(Skipped):
    """No funnel for the day: no user with a new positive on D has recall candidates (a day
    with no activity); the other days of a range run are evaluated as usual."""


def funnel_row(day, scope, stage, metric, k, value, n, values=None, baseline=None, base_values=None, settings=None):
    row = {
        "day": day,
        "scope": scope,
        "stage": stage,
        "metric": metric,
        "k": k,
        "value": float(value),
        "n": int(n),
        "ci_low": None,
        "ci_high": None,
        "baseline": None,
        "diff": None,
        "diff_ci_low": None,
        "diff_ci_high": None,
        "p_value": None,
    }
    if values is not None and len(values):
        lo, hi = metrics.bootstrap_ci(values, n_boot=settings.bootstrap_samples, seed=settings.seed)
        row |= {"ci_low": float(lo), "ci_high": float(hi)}
        if base_values is not None:
            paired = metrics.paired_bootstrap(
                values, base_values, n_boot=settings.bootstrap_samples, seed=settings.seed
            )
            row |= {
                "baseline": baseline,
                "diff": float(values.mean() - base_values.mean()),
                "diff_ci_low": float(paired["ci_low"]),
                "diff_ci_high": float(paired["ci_high"]),
                "p_value": float(paired["p_value"]),
            }
    return row


def _as_matrix(lists: dict, users: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(users), k), -1, np.int64)
    for i, user in enumerate(users):
        items = lists.get(int(user), (np.zeros(0, np.int64), None))[0][:k]
        out[i, : len(items)] = items
    return out


def _id_lookup(frame: pl.DataFrame, id_col: str, idx_col: str) -> np.ndarray:
    out = np.full(int(cast(int, frame[idx_col].max())) + 1 if frame.height else 0, -1, np.int64)
    out[frame[idx_col].to_numpy()] = frame[id_col].to_numpy()
    return out


def funnel_truth(
    day: str,
    lake: Lake,
    model_store: ModelStore,
    recall: RecallConfig,
    ranking: RankingConfig,
    ctx: F.FeatureContext,
    first_day: str | None,
) -> tuple[pl.DataFrame, np.ndarray, list[np.ndarray], tuple]:
    """The evaluated users of `day` (new positives on D and recall candidates), their
    candidates, their relevant item ids, and (data, test, info) of the recall split."""
    data, test, info, _, _ = load_day(lake, day, recall, first_day, model_store=model_store)
    user_of = _id_lookup(ctx.user_index, "user_id", "user_idx")
    item_of = _id_lookup(ctx.item_index, "item_id", "item_idx")
    evaluated = samples.sample_users(user_of[test.users], ranking.max_users_per_day, ranking.seed)
    candidates = day_candidates(
        lake, model_store, recall, day, ranking.rank_candidates, evaluated, first_day, day_data=(data, info)
    )
    users = np.unique(candidates["user_id"].to_numpy())
    relevant_by_id = {int(user_of[u]): item_of[test.relevant[u].indices] for u in test.users}
    return candidates, users, [relevant_by_id[int(u)] for u in users], (data, test, info)


def ranker_ndcg_on_day(
    day: str,
    model_day: str,
    lake: Lake,
    model_store: ModelStore,
    recall: RecallConfig,
    ranking: RankingConfig,
    first_day: str | None,
    k: int = 10,
) -> float:
    """Funnel NDCG@k on `day` of the ranker trained for `model_day` (e.g. the serving champion),
    with day D's features and candidates: the comparison the promotion gate makes."""
    model = load_ranker(model_store, model_day)
    ctx = feature_context(lake, model_store, day, model.channel_names, recall, model.rank_depth, first_day)
    candidates, users, relevant, _ = funnel_truth(day, lake, model_store, recall, ranking, ctx, first_day)
    lists = funnel.lists_by(funnel.score_candidates(model, ctx, candidates, ranking.serving_surface), "ranker_score", k)
    return float(metrics.per_user_metrics(_as_matrix(lists, users, k), relevant, k)[f"ndcg@{k}"].mean())


def evaluate_funnel(
    day: str,
    lake: Lake,
    model_store: ModelStore,
    recall: RecallConfig,
    ranking: RankingConfig,
    first_day: str | None,
) -> tuple[list[dict], dict]:
    model = load_ranker(model_store, day)
    ctx = feature_context(lake, model_store, day, model.channel_names, recall, model.rank_depth, first_day)
    attrs = funnel.ItemAttributes.from_context(ctx)
    candidates, users, relevant, (data, test, info) = funnel_truth(
        day, lake, model_store, recall, ranking, ctx, first_day
    )
    if len(users) == 0:  # every metric would be the mean of nothing
        raise FunnelSkipped(
            f"funnel_evaluation {day}: no user to evaluate ({len(test.users)} users with a new positive on {day}, "
            "none with recall candidates)"
        )
    rows, k = [], 10
    lists, latency = {}, {}

    # recall stage latency: every channel's top-K plus fusion, for (up to) 200 test users
    sample = test.users[:200]
    exclude = exclusion_matrix(data.positives, sample, np.flatnonzero(~info["available_items"]), info["consumed"])
    started = time.perf_counter()
    channels, ranges, _ = recommend_channels(load_channels(model_store, day), sample, recall.candidates_k, exclude)
    fusion.fuse(channels, data.n_items, recall.candidates_k, score_ranges=ranges)
    latency["recall_only"] = (time.perf_counter() - started) / max(len(sample), 1) * 1000

    lists["recall_only"] = funnel.lists_by(candidates, "recall_rank", k, descending=False)
    # the order that serves when no ranker does, with the champion decided before D (the one
    # decided on D was chosen on D's own positives)
    champion = current_champion(lake, day)
    lists["recall_champion"] = funnel.lists_by(
        champion_order(candidates, champion[0] if champion else None), "ranker_score", k
    )
    latency["recall_champion"] = latency["recall_only"]
    started = time.perf_counter()
    scored = funnel.score_candidates(model, ctx, candidates, ranking.serving_surface)
    lists["ranker"] = funnel.lists_by(scored, "ranker_score", k)
    latency["ranker"] = (time.perf_counter() - started) / max(len(users), 1) * 1000
    started = time.perf_counter()
    lists["ranker_rerank"] = funnel.reranked_lists(scored, k, rules(ranking), attrs)
    latency["ranker_rerank"] = (time.perf_counter() - started) / max(len(users), 1) * 1000

    per_stage = {s: metrics.per_user_metrics(_as_matrix(lists[s], users, k), relevant, k) for s in STAGES}
    for stage in STAGES:
        for metric in ("ndcg", "recall", "mrr"):
            values = per_stage[stage][f"{metric}@{k}"]
            base = None if stage == "recall_only" else per_stage["recall_only"][f"{metric}@{k}"]
            rows.append(
                funnel_row(
                    day, "funnel", stage, metric, k, values.mean(), len(users), values, "recall_only", base, recall
                )
            )
        matrix = _as_matrix(lists[stage], users, k)
        # lists hold item ids (not dictionary indices): coverage = distinct ids / catalog size
        rows.append(
            funnel_row(
                day,
                "funnel",
                stage,
                "coverage",
                k,
                len(np.unique(matrix[matrix >= 0])) / max(len(attrs.ids), 1),
                len(users),
            )
        )
        rows.append(
            funnel_row(
                day,
                "funnel",
                stage,
                "intra_list_similarity",
                k,
                funnel.intra_list_similarity(lists[stage], attrs, k),
                len(users),
            )
        )
        # popularity bias of the final lists (positions in attrs' sorted catalog; an id outside
        # it, e.g. an item no longer available, is left out)
        position = np.searchsorted(attrs.ids, matrix)
        known = (matrix >= 0) & (position < len(attrs.ids))
        known[known] = attrs.ids[position[known]] == matrix[known]
        catalog_lists = np.where(known, position, -1)
        for metric_name, value in (
            ("avg_popularity", metrics.average_popularity(catalog_lists, attrs.popularity, k)),
            ("long_tail_share", metrics.long_tail_share(catalog_lists, attrs.popularity, k)),
            ("exposure_gini", metrics.exposure_gini(catalog_lists, len(attrs.ids), k)),
        ):
            rows.append(funnel_row(day, "funnel", stage, metric_name, k, value, len(users)))
        rows.append(funnel_row(day, "funnel", stage, "latency_ms_per_user", k, latency[stage], len(users)))

    # slates: the shown lists of D re-ordered, judged by what the user chose
    shown = read_polars(lake.partition_path("ranking_samples", day)).filter(pl.col("kind") == "impressions")
    slate_info = {}
    if shown.height:
        shown = shown.with_columns(
            pl.Series("ranker", model.score(shown)),
            (-pl.col("position").cast(pl.Float64)).alias("shown_order"),
            # popularity-by-position: most positives in the 7 days before D first (unknown = 0),
            # ties in shown order
            (pl.col("i_positives_7d").fill_null(0).cast(pl.Float64) - pl.col("position").cast(pl.Float64) / 1e4).alias(
                "popularity"
            ),
            pl.sum_horizontal([1.0 / (60.0 + pl.col(f"rank_{c}").fill_null(1e9)) for c in ranking.channels]).alias(
                "recall_rrf"
            ),
            # session-first: items the session touched before the request first, the most
            # recently touched first, then shown order (needs sessions; else it is shown order)
            (
                pl.when(pl.col("s_item_actions").fill_null(0) > 0)
                .then(1e6 - pl.col("s_item_steps_ago").fill_null(0).cast(pl.Float64))
                .otherwise(0.0)
                - pl.col("position").cast(pl.Float64) / 1e4
            ).alias("session_first"),
        )
        orderings = {
            "popularity": "popularity",
            "shown_order": "shown_order",
            "session_first": "session_first",
            "recall_rrf": "recall_rrf",
            "ranker": "ranker",
        }
        per = funnel.slate_metrics(shown, orderings, k)
        for stage in orderings:
            for metric in ("mrr", "ndcg"):
                values = per[stage][metric]
                base = None if stage == "popularity" else per["popularity"][metric]
                rows.append(
                    funnel_row(
                        day, "slates", stage, metric, k, values.mean(), len(values), values, "popularity", base, recall
                    )
                )
        clicked = shown["clicked"].to_numpy()
        p = model.click_probability(shown)
        rows.append(funnel_row(day, "slates", "ctr_binary", "auc", 0, funnel.auc(clicked, p), shown.height))
        rows.append(funnel_row(day, "slates", "ctr_binary", "logloss", 0, funnel.logloss(clicked, p), shown.height))
        rows.append(
            funnel_row(
                day,
                "slates",
                "constant_ctr",
                "logloss",
                0,
                funnel.logloss(clicked, np.full(len(clicked), model.meta["train_click_rate"])),
                shown.height,
            )
        )
        slate_info = {"slate_requests": len(per["ranker"]["mrr"])}
    return rows, {"test_users": int(len(users))} | slate_info
