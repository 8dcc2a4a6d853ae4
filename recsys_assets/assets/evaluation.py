"""Recall evaluation of day D (full catalog, seen items removed, by user segment, with
bootstrap CIs and paired lift over popularity) and the champion registry."""

import json
import time
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recsys_assets.assets import ownership, table_metadata
from recsys_assets.assets.recall import LEARNED, NoTrainingData, load_day, model_assets
from recsys_assets.core import fusion, metrics
from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.storage import local_scratch_dir, read_arrow, write_parquet_atomic
from recsys_assets.core.tables import connect
from recsys_assets.core.training_data import seen_matrix
from recsys_assets.partitions import daily_partitions
from resources import ModelStoreResource, RecallSettings, StorageResource, WarehouseResource

GROUP = "recall"
METRICS = ("recall", "precision", "hr", "ndcg", "map", "mrr")


def exclusion_matrix(positives: sp.csr_matrix, users: np.ndarray, unavailable: np.ndarray) -> sp.csr_matrix:
    """Items a user may not be recommended on day D: their training positives, and items
    not yet in the catalog on D. Materialises users × unavailable entries: for many users
    pass `seen_matrix` to `recommend(exclude=...)` and the unavailable items as `blocked_items`."""
    seen = seen_matrix(positives)
    if unavailable.size == 0:
        return seen
    rows = np.repeat(users, unavailable.size)
    cols = np.tile(unavailable, users.size)
    blocked = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=positives.shape)
    return (seen + blocked).tocsr()


def load_channels(model_store: ModelStoreResource, day: str, enabled=None) -> dict:
    """{name: (model, (p01, p99) of its training score range or None)} of every recall model
    published for `day` (checksums verified first), restricted to `enabled` names if given."""
    out = {}
    for name in model_assets:
        if (enabled is not None and name not in enabled) or not model_store.exists(f"recall_{name}", day):
            continue
        manifest = model_store.verify(f"recall_{name}", day)
        score_range = manifest["metadata"].get("score_range") or {}
        out[name] = (
            recall_models.load_model(model_store.path(f"recall_{name}", day)),
            (score_range["p01"], score_range["p99"]) if score_range else None,
        )
    return out


def recommend_channels(
    loaded: dict, users: np.ndarray, k: int, exclude: sp.csr_matrix, blocked_items: np.ndarray | None = None
) -> tuple[dict, dict, dict]:
    """({name: (items, scores)}, {name: score range}, {name: ms per user}) of loaded channels."""
    channels, ranges, latency = {}, {}, {}
    for name, (model, score_range) in loaded.items():
        started = time.perf_counter()
        channels[name] = model.recommend(users, k, exclude=exclude, blocked_items=blocked_items)
        latency[name] = (time.perf_counter() - started) / max(len(users), 1) * 1000
        if score_range:
            ranges[name] = score_range
    return channels, ranges, latency


def recommend_all_channels(
    model_store: ModelStoreResource,
    day: str,
    users: np.ndarray,
    k: int,
    exclude: sp.csr_matrix,
    blocked_items: np.ndarray | None = None,
    enabled=None,
) -> tuple[dict, dict, dict]:
    """Top-k of every recall model published for `day` (checksums verified first):
    ({name: (items, scores)}, {name: (p01, p99) of its training score range}, {name: ms per user})."""
    return recommend_channels(load_channels(model_store, day, enabled), users, k, exclude, blocked_items)


def segment_of(n_train_positives: np.ndarray, light_max: int) -> np.ndarray:
    return np.where(n_train_positives == 0, "cold", np.where(n_train_positives <= light_max, "light", "heavy"))


def evaluate_day(
    day: str, storage: StorageResource, model_store: ModelStoreResource, settings: RecallSettings, log=None
) -> tuple[list[dict], dict]:
    data, test, info, data_version, _ = load_day(storage, day, settings)
    users = test.users
    ks = sorted(settings.k_eval)
    max_k = ks[-1]
    exclude, blocked = seen_matrix(data.positives), np.flatnonzero(~info["available_items"])
    relevant = test.relevant[users]
    n_train = np.diff(data.positives.indptr)[users]
    segments = segment_of(n_train, settings.light_user_max_positives)
    item_popularity = np.asarray((data.positives > 0).sum(axis=0)).ravel()

    channels, ranges, latency = recommend_all_channels(
        model_store, day, users, max_k, exclude, blocked, enabled=settings.channels
    )
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
                    v = values[mask]
                    lo, hi = metrics.bootstrap_ci(v, n_boot=settings.bootstrap_samples, seed=settings.seed)
                    row = {
                        "day": day,
                        "model": name,
                        "segment": segment,
                        "metric": base,
                        "k": k,
                        "value": float(v.mean()),
                        "ci_low": float(lo),
                        "ci_high": float(hi),
                        "n_users": int(mask.sum()),
                        "lift_vs_popularity": None,
                        "diff_ci_low": None,
                        "diff_ci_high": None,
                        "p_value": None,
                    }
                    if popularity is not None and name != "popularity":
                        paired = metrics.paired_bootstrap(
                            v,
                            popularity[1][k][metric_name][mask],
                            n_boot=settings.bootstrap_samples,
                            seed=settings.seed,
                        )
                        row |= {
                            "lift_vs_popularity": _finite(paired["lift"]),
                            "diff_ci_low": float(paired["ci_low"]),
                            "diff_ci_high": float(paired["ci_high"]),
                            "p_value": float(paired["p_value"]),
                        }
                    rows.append(row)
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
            ):
                rows.append(
                    {
                        "day": day,
                        "model": name,
                        "segment": "all",
                        "metric": metric_name,
                        "k": k,
                        "value": float(value),
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


def _pct(x) -> str:
    return "" if x is None else f"{x:+.1%}"


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


EVAL_COLUMNS = table_metadata.column_schema(
    EVAL_SCHEMA,
    types={"day": "DATE"},
    descriptions={
        "segment": "all, cold / light / heavy users, or cold_items",
        "k": "cut-off",
        "value": "mean over test users",
        "lift_vs_popularity": "relative paired lift over popularity",
    },
)
NDCG_PREVIEW = [
    ("model", "VARCHAR"),
    ("value", "DOUBLE"),
    ("ci_low", "DOUBLE"),
    ("ci_high", "DOUBLE"),
    ("lift_vs_popularity", "DOUBLE"),
    ("p_value", "DOUBLE"),
    ("n_users", "BIGINT"),
]


def _write_rows(rows: list[dict], schema: pa.Schema, path) -> None:
    con = connect()
    try:
        con.register("rows", pa.Table.from_pylist(rows, schema=schema))
        write_parquet_atomic(con, "SELECT CAST(day AS DATE) AS day, * EXCLUDE (day) FROM rows", path)
    finally:
        con.close()


@dg.asset(
    group_name=GROUP,
    kinds={"numpy", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[*model_assets.values(), "interactions"],
    **ownership.layer("evaluation"),
    description="Every recall model of day D evaluated on day D's held-out positives: full-catalog ranking with "
    "training positives and not-yet-available items removed; Recall, Precision, HR, NDCG, MAP, MRR at "
    "K in RecallSettings.k_eval, coverage, novelty, latency; overall and for cold / light / heavy users; "
    "bootstrap 95% CIs (users resampled) and paired lift over popularity. See docs/evaluation.md.",
)
def recall_evaluation(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    model_store: ModelStoreResource,
    recall: RecallSettings,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    meta, total_rows = {}, 0
    for day in context.partition_keys:
        try:
            rows, info = evaluate_day(day, storage, model_store, recall)
        except NoTrainingData as nothing:  # the first day: no model exists, nothing to evaluate
            rows, info = [], {"test_users": 0}
            context.log.warning(f"recall_evaluation {day}: {nothing}")
        _write_rows(rows, EVAL_SCHEMA, storage.partition_path("recall_evaluation", day))
        total_rows += len(rows)
        headline = {r["model"]: r for r in rows if r["segment"] == "all" and r["metric"] == "ndcg" and r["k"] == 10}
        meta = {f"ndcg_at_10_{m}": r["value"] for m, r in headline.items()}  # plain floats: plotted per day
        meta["test_users"] = info["test_users"]
        meta["summary"] = dg.MetadataValue.md(
            "| model | NDCG@10 | 95% CI | lift vs popularity |\n|---|---|---|---|\n"
            + "\n".join(
                f"| {m} | {r['value']:.4f} | [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | {_pct(r['lift_vs_popularity'])} |"
                for m, r in sorted(headline.items(), key=lambda kv: -kv[1]["value"])
            )
        )
        meta["ndcg_at_10"] = table_metadata.preview(sorted(headline.values(), key=lambda r: -r["value"]), NDCG_PREVIEW)
    warehouse.refresh_catalog()
    meta |= {"dagster/row_count": total_rows, "dagster/column_schema": EVAL_COLUMNS}
    return dg.MaterializeResult(metadata=meta)


REGISTRY_SCHEMA = pa.schema(
    [
        ("day", pa.string()),
        ("metric", pa.string()),
        ("candidate", pa.string()),
        ("candidate_value", pa.float64()),
        ("incumbent", pa.string()),
        ("incumbent_day", pa.string()),
        ("incumbent_value", pa.float64()),
        ("decision", pa.string()),
        ("champion", pa.string()),
        ("champion_day", pa.string()),
        ("popularity_value", pa.float64()),
        ("candidates", pa.string()),
        ("reason", pa.string()),
    ]
)


REGISTRY_COLUMNS = table_metadata.column_schema(
    REGISTRY_SCHEMA,
    types={"day": "DATE"},
    descriptions={
        "day": "the day the decision applies to",
        "decision": "promoted / rejected / kept / none / rollback",
        "champion": "the model serving after this decision",
        "champion_day": "the training day of its artifact",
        "candidates": "JSON: every learned model's value, lift and eligibility",
    },
)
REGISTRY_PREVIEW = [
    ("day", "VARCHAR"),
    ("decision", "VARCHAR"),
    ("candidate", "VARCHAR"),
    ("candidate_value", "DOUBLE"),
    ("incumbent", "VARCHAR"),
    ("incumbent_day", "VARCHAR"),
    ("incumbent_value", "DOUBLE"),
    ("champion", "VARCHAR"),
    ("champion_day", "VARCHAR"),
    ("reason", "VARCHAR"),
]


def choose_candidate(rows: list[dict], metric: str, min_lift: float) -> dict:
    """Best learned model by `metric` (overall) among those that beat popularity: lift above
    min_lift and the paired 95% CI of the difference above zero."""
    base, k = metric.split("@")
    overall = {r["model"]: r for r in rows if r["segment"] == "all" and r["metric"] == base and r["k"] == int(k)}
    popularity = overall.get("popularity", {}).get("value")
    candidates = {}
    for name in LEARNED:
        r = overall.get(name)
        if r is None:
            candidates[name] = {"eligible": False, "why": "not trained (skipped or missing)"}
            continue
        lift, low = r["lift_vs_popularity"], r["diff_ci_low"]
        eligible = lift is not None and lift > min_lift and low is not None and low > 0
        candidates[name] = {
            "value": r["value"],
            "lift": lift,
            "diff_ci_low": low,
            "eligible": eligible,
            "why": "beats popularity" if eligible else "does not beat popularity significantly",
        }
    eligible = {n: c for n, c in candidates.items() if c["eligible"]}
    winner = max(eligible, key=lambda n: (eligible[n]["value"], n)) if eligible else None
    return {
        "candidate": winner,
        "candidate_value": eligible[winner]["value"] if winner else None,
        "popularity_value": popularity,
        "candidates": json.dumps(candidates, sort_keys=True),
    }


def registry_entries(storage: StorageResource) -> list[tuple[str, object]]:
    """[(day, path)] of the registry, latest first. A day has its decision `<day>.parquet` and
    possibly rollbacks `<day>.rollback-<UTC time>.parquet` (recsys_assets/rollback.py), which
    come after the decision: the newest rollback of a day is what serves after that day."""
    entries = []
    for path in (storage.lake_dir / "recall_champion").glob("*.parquet"):
        day, _, suffix = path.stem.partition(".")
        entries.append((day, suffix, path))
    return [(day, path) for day, _, path in sorted(entries, key=lambda e: (e[0], e[1]), reverse=True)]


def _champion_where(storage: StorageResource, include) -> tuple[str, str] | None:

    for day, path in registry_entries(storage):
        if not include(day):
            continue
        row = read_arrow(path).to_pylist()[0]
        if row.get("champion"):
            return row["champion"], row["champion_day"]
    return None


def current_champion(storage: StorageResource, before_day: str) -> tuple[str, str] | None:
    """(model, training day) serving before `before_day`, from the registry (rollbacks included)."""
    return _champion_where(storage, lambda day: day < before_day)


def serving_champion(storage: StorageResource, day: str) -> tuple[str, str] | None:
    """(model, training day) serving after the decisions of `day`: its promotion decision, or a
    rollback recorded for it later."""
    return _champion_where(storage, lambda d: d <= day)


def compare_on_day(
    storage: StorageResource,
    model_store: ModelStoreResource,
    settings: RecallSettings,
    day: str,
    contenders: dict[str, tuple[str, str]],
    known: dict[str, float] | None = None,
) -> dict[str, float]:
    """`metric` on `day` of published model artifacts {label: (model, training day)}, on the
    same users: those every contender knows (an older artifact may predate new users);
    items an older artifact never saw score lowest. `known` {label: value on all of D's test
    users} (the candidate's, from recall_evaluation) is used as it is when every contender
    knows every test user, instead of scoring that model again."""
    known = known or {}
    manifests = {label: model_store.verify(f"recall_{name}", trained) for label, (name, trained) in contenders.items()}
    if set(contenders) <= set(known):  # nothing to score (e.g. no incumbent): no data to load
        return {label: known[label] for label in contenders}
    data, test, info, _, _ = load_day(storage, day, settings)
    base, k = settings.champion_metric.split("@")
    known_users = min([data.n_users] + [m["metadata"]["n_users"] for m in manifests.values()])
    users = test.users[test.users < known_users]
    reuse = len(users) == len(test.users)
    models = {
        label: (recall_models.load_model(model_store.path(f"recall_{name}", trained)), manifests[label]["metadata"])
        for label, (name, trained) in contenders.items()
        if not (reuse and label in known)
    }
    seen, blocked = seen_matrix(data.positives), np.flatnonzero(~info["available_items"])
    relevant = test.relevant[users]
    out = {label: known[label] for label in contenders if reuse and label in known}
    for label, (model, meta) in models.items():
        n_items = meta["n_items"]  # items an older artifact never saw are never in its top-k
        top, _ = model.recommend(users, int(k), exclude=seen[:, :n_items], blocked_items=blocked[blocked < n_items])
        out[label] = float(metrics.per_user_metrics(top, relevant, int(k))[f"{base}@{k}"].mean())
    return out


def decide(
    day: str,
    candidate: dict,
    incumbent: tuple[str, str] | None,
    values: dict[str, float],
    metric: str,
    tolerance: float,
) -> dict:
    """Promote the candidate unless it is worse than the serving champion by more than
    `tolerance` (relative) on the same day; a rejected candidate leaves the champion serving."""
    name = candidate["candidate"]
    row = {
        "day": day,
        "metric": metric,
        "candidate": name,
        "candidate_value": values.get("candidate"),
        "incumbent": incumbent[0] if incumbent else None,
        "incumbent_day": incumbent[1] if incumbent else None,
        "incumbent_value": values.get("incumbent"),
        "popularity_value": candidate["popularity_value"],
        "candidates": candidate["candidates"],
    }
    if name is None:
        return row | {
            "decision": "kept" if incumbent else "none",
            "champion": incumbent[0] if incumbent else None,
            "champion_day": incumbent[1] if incumbent else None,
            "reason": "no learned model beat popularity" + ("; the serving champion stays" if incumbent else ""),
        }
    if incumbent and values["candidate"] < values["incumbent"] * (1 - tolerance):
        return row | {
            "decision": "rejected",
            "champion": incumbent[0],
            "champion_day": incumbent[1],
            "reason": f"candidate {name} ({values['candidate']:.4f}) is worse than the serving champion "
            f"{incumbent[0]}@{incumbent[1]} ({values['incumbent']:.4f}) by more than "
            f"{tolerance:.0%} on {day}; the champion stays",
        }
    return row | {
        "decision": "promoted",
        "champion": name,
        "champion_day": day,
        "reason": f"{name} has the highest {metric} among models that beat popularity"
        + (f" and is within {tolerance:.0%} of or better than {incumbent[0]}@{incumbent[1]}" if incumbent else ""),
    }


@dg.asset(
    group_name=GROUP,
    kinds={"parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["recall_evaluation"],
    **ownership.layer("evaluation"),
    description="Gated promotion of the recall champion. The candidate of day D is the best learned model by "
    "RecallSettings.champion_metric (default NDCG@10) among those that beat popularity (lift above "
    "min_lift_over_popularity, paired 95% CI above 0). It replaces the serving champion only if, "
    "evaluated on day D on the same users, it is not worse than the serving champion by more than "
    "promotion_tolerance; otherwise the champion keeps serving. One registry row per day with both "
    "values, the decision and the reason: `SELECT * FROM recall_champion`.",
)
def recall_champion(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    model_store: ModelStoreResource,
    recall: RecallSettings,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:

    decision, decisions = {}, []
    for day in context.partition_keys:  # in order: each day sees the decisions of the days before
        path = storage.partition_path("recall_evaluation", day)
        if not path.exists():
            raise dg.Failure(f"recall_evaluation is not materialized for {day}")
        candidate = choose_candidate(
            read_arrow(path).to_pylist(), recall.champion_metric, recall.min_lift_over_popularity
        )
        incumbent = current_champion(storage, day)
        if incumbent and not model_store.exists(f"recall_{incumbent[0]}", incumbent[1]):
            context.log.warning(f"serving champion {incumbent} has no published artifact; treating as none")
            incumbent = None
        contenders = {}
        if candidate["candidate"]:
            contenders["candidate"] = (candidate["candidate"], day)
        if incumbent:
            contenders["incumbent"] = incumbent
        values = (
            compare_on_day(
                storage, model_store, recall, day, contenders, known={"candidate": candidate["candidate_value"]}
            )
            if contenders
            else {}
        )
        decision = decide(day, candidate, incumbent, values, recall.champion_metric, recall.promotion_tolerance)
        _write_rows([decision], REGISTRY_SCHEMA, storage.partition_path("recall_champion", day))
        decisions.append(decision)
        context.log.info(
            f"recall champion {day}: {decision['decision']} -> {decision['champion']} ({decision['reason']})"
        )
    warehouse.refresh_catalog()
    return dg.MaterializeResult(
        metadata={
            "decision": decision.get("decision", "none"),
            "champion": decision.get("champion") or "none",
            "candidate_value": decision.get("candidate_value") or 0.0,
            "incumbent_value": decision.get("incumbent_value") or 0.0,
            "reason": decision.get("reason", ""),
            "candidates": dg.MetadataValue.json(json.loads(decision.get("candidates", "{}"))),
            "registry": table_metadata.preview(decisions, REGISTRY_PREVIEW),
            "dagster/row_count": len(decisions),
            "dagster/column_schema": REGISTRY_COLUMNS,
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"numpy", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[*model_assets.values()],
    **ownership.layer("recall"),
    description="Candidates for day D: for every user with training positives in the window, the top "
    "RecallSettings.candidates_k items of reciprocal-rank fusion (method='rrf') and of score-normalised "
    "weighted fusion (method='weighted', p01/p99 of each channel's training score range) over all recall "
    "channels, seen and unavailable items removed, with each candidate's rank in every channel (0 = absent).",
)
def recall_candidates(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    model_store: ModelStoreResource,
    recall: RecallSettings,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    rows_written, table, per_method = 0, None, {}
    for day in context.partition_keys:
        try:
            data, _, info, _, _ = load_day(storage, day, recall)
        except NoTrainingData as nothing:
            context.log.warning(f"recall_candidates {day}: {nothing}")
            continue
        loaded = load_channels(model_store, day, recall.channels)
        if not loaded:
            raise dg.Failure(f"no recall model is published for {day}")
        users = candidate_users(data, recall.candidates_recent_days)
        started = time.perf_counter()
        n, table, per_method = write_candidates(storage, day, data, info, loaded, users, recall)
        rows_written += n
        context.log.info(
            f"recall_candidates {day}: {len(users)} users, {n} rows in {time.perf_counter() - started:.0f}s"
        )
    warehouse.refresh_catalog()
    meta = {"dagster/row_count": rows_written}
    if table is not None:  # the last day written: its columns and candidates per fusion method
        meta["dagster/column_schema"] = table_metadata.column_schema(
            table.schema,
            descriptions={
                "rank": "rank in the fused list (1 = best)",
                "method": "rrf or weighted fusion",
                "channel_depth": "length of each channel's list (candidates_k): rank_<channel> 0 = not in its top channel_depth",
            }
            | {
                c: "rank of the item in that channel's list (0 = absent)"
                for c in table.column_names
                if c.startswith("rank_")
            },
        )
        meta["per_method"] = table_metadata.preview(
            [{"method": m, "users": u, "candidates": c} for m, (u, c) in per_method.items()],
            [("method", "VARCHAR"), ("users", "BIGINT"), ("candidates", "BIGINT")],
        )
    return dg.MaterializeResult(metadata=meta)


def candidate_users(data, recent_days: int | None) -> np.ndarray:
    """Users with a training positive (in the last `recent_days` days of the window, if set)."""
    if recent_days is None:
        return np.flatnonzero(np.diff(data.positives.indptr) > 0)
    age = data.days_ago.tocoo()  # 0 (+1e-3) = the last training day
    return np.unique(age.row[age.data < recent_days])


def _id_arrays(storage: StorageResource, data) -> tuple[np.ndarray, np.ndarray]:
    """(user id of each user index, item id of each item index) from the ID dictionaries."""
    user_ids = read_arrow(storage.partition_path("user_id_dictionary"), columns=["id", "index"])
    item_ids = read_arrow(storage.partition_path("item_id_dictionary"), columns=["id", "index"])
    user_of = np.empty(data.n_users, np.int64)
    user_of[user_ids.column("index").to_numpy()] = user_ids.column("id").to_numpy()
    item_of = np.empty(data.n_items, np.int64)
    item_of[item_ids.column("index").to_numpy()] = item_ids.column("id").to_numpy()
    return user_of, item_of


def candidate_tables(
    day: str,
    batch: np.ndarray,
    data,
    loaded: dict,
    seen: sp.csr_matrix,
    blocked: np.ndarray,
    user_of: np.ndarray,
    item_of: np.ndarray,
    recall: RecallSettings,
) -> dict[str, pa.Table]:
    """{method: the candidate rows of `batch` (user indices)}, each user's list best first, in
    the partition's columns: the one definition of a candidate row, whether written by
    recall_candidates or computed for a few users (candidates_for_users)."""
    channels, ranges, _ = recommend_channels(loaded, batch, recall.candidates_k, seen, blocked)
    # weighted fusion only when it is written (it needs the score ranges)
    fused = fusion.fuse(
        channels,
        data.n_items,
        recall.candidates_k,
        score_ranges=ranges if "weighted" in recall.candidate_methods else None,
    )
    out = {}
    for method in recall.candidate_methods:
        if method not in fused:
            continue
        items, scores = fused[method]
        ranks = fusion.channel_ranks(channels, items)
        valid = items >= 0
        # fused lists are sorted best first with -1 padding at the end: rank = position + 1
        position = np.broadcast_to(np.arange(1, items.shape[1] + 1), items.shape)
        n_valid = int(valid.sum())
        out[method] = pa.table(
            {
                "day": pa.repeat(pa.scalar(date.fromisoformat(day), pa.date32()), n_valid),
                "method": pa.repeat(pa.scalar(method, pa.string()), n_valid),
                "user_id": user_of[np.broadcast_to(batch[:, None], items.shape)[valid]],
                "item_id": item_of[items[valid]],
                "rank": position[valid].astype(np.int64),
                "score": scores[valid],
            }
            | {f"rank_{c}": r[valid] for c, r in ranks.items()}
            | {"channel_depth": pa.repeat(pa.scalar(recall.candidates_k, pa.int32()), n_valid)}
        )
    return out


def candidates_for_users(
    storage: StorageResource,
    model_store: ModelStoreResource,
    day: str,
    recall: RecallSettings,
    user_ids: np.ndarray,
    day_data: tuple | None = None,
) -> pa.Table | None:
    """The rows recall_candidates of `day` holds (or would hold) for `user_ids`, computed now:
    for a day whose partition was never materialized, when only a few users' lists are needed
    (the ranker's sampled users, the funnel's test users) and a whole day's candidates would
    cost ~1 ms per active user. None when no recall model is published for `day`. `day_data`:
    (data, info) of load_day(storage, day, recall) when the caller holds them already."""
    loaded = load_channels(model_store, day, recall.channels)
    if not loaded:
        return None
    if day_data is None:
        data, _, info, _, _ = load_day(storage, day, recall)
    else:
        data, info = day_data
    user_of, item_of = _id_arrays(storage, data)
    wanted = np.isin(user_of, np.asarray(user_ids, np.int64))
    users = candidate_users(data, recall.candidates_recent_days)
    users = users[wanted[users]]
    users = users[np.argsort(user_of[users], kind="stable")]
    seen, blocked = seen_matrix(data.positives), np.flatnonzero(~info["available_items"])
    parts = []
    for start in range(0, len(users), recall.candidates_batch_users):
        tables = candidate_tables(
            day,
            users[start : start + recall.candidates_batch_users],
            data,
            loaded,
            seen,
            blocked,
            user_of,
            item_of,
            recall,
        )
        parts.extend(tables[m] for m in recall.candidate_methods if m in tables)
    return (
        pa.concat_tables(parts).sort_by([("method", "ascending"), ("user_id", "ascending"), ("rank", "ascending")])
        if parts
        else None
    )


def write_candidates(
    storage: StorageResource, day: str, data, info, loaded: dict, users: np.ndarray, recall: RecallSettings
) -> tuple[int, pa.Table | None, dict]:
    """Fuse the channels for `users`, `candidates_batch_users` at a time (memory stays bounded
    by one batch), each batch spilled to a Parquet part, and publish the parts atomically as the
    day's partition. Users go in order of their id and each list best first, so the parts, read
    method by method, are already in the partition's (method, user_id, rank) order: no sort."""
    import shutil
    import tempfile

    import pyarrow.parquet as pq

    user_of, item_of = _id_arrays(storage, data)
    seen, blocked = seen_matrix(data.positives), np.flatnonzero(~info["available_items"])
    users = users[np.argsort(user_of[users], kind="stable")]  # id order: the partition's order
    scratch = local_scratch_dir(storage.root, ".tmp")
    scratch.mkdir(parents=True, exist_ok=True)
    parts_dir = Path(tempfile.mkdtemp(prefix=f"recall_candidates-{day}-", dir=scratch))
    rows, last, per_method = 0, None, {}
    try:
        for start in range(0, len(users), recall.candidates_batch_users):
            batch = users[start : start + recall.candidates_batch_users]
            for method, last in candidate_tables(
                day, batch, data, loaded, seen, blocked, user_of, item_of, recall
            ).items():
                pq.write_table(last, parts_dir / f"{method}-{start:012d}.parquet")
                rows += last.num_rows
                users_n, cands_n = per_method.get(method, (0, 0))
                per_method[method] = (
                    users_n + pc.count_distinct(last.column("user_id")).as_py(),
                    cands_n + last.num_rows,
                )
        con = connect()
        try:
            if rows:
                # parts listed method by method, users ascending: DuckDB keeps the listed order
                parts = ", ".join(f"'{p}'" for p in sorted(parts_dir.glob("*.parquet")))
                write_parquet_atomic(
                    con, f"SELECT * FROM read_parquet([{parts}])", storage.partition_path("recall_candidates", day)
                )
            else:
                empty = last if last is not None else pa.table({"day": pa.array([], pa.date32())})
                con.register("empty", empty)
                write_parquet_atomic(con, "SELECT * FROM empty", storage.partition_path("recall_candidates", day))
        finally:
            con.close()
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    return rows, last, per_method


@dg.asset_check(
    asset=recall_evaluation,
    name="learned_models_beat_popularity",
    partitions_def=daily_partitions,
    description="Each learned model (item_cf, als, bpr, bpr_uniform, bpr_impressions, ease) beats popularity "
    "on the champion metric by more than min_lift_over_popularity with a paired 95% CI above "
    "0. Warns, listing the models that do not; those are never promoted (recall_champion "
    "applies the same rule).",
)
def learned_models_beat_popularity(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, recall: RecallSettings
) -> dg.AssetCheckResult:

    failing = {}
    for day in context.partition_keys:
        rows = read_arrow(storage.partition_path("recall_evaluation", day)).to_pylist()
        if not rows:
            continue
        for name, c in json.loads(
            choose_candidate(rows, recall.champion_metric, recall.min_lift_over_popularity)["candidates"]
        ).items():
            if not c["eligible"]:
                failing[f"{day} {name}"] = c.get("lift")
    return dg.AssetCheckResult(
        passed=not failing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"not_beating_popularity": dg.MetadataValue.json(failing)},
    )


evaluation_assets = [recall_evaluation, recall_champion, recall_candidates]
evaluation_checks = [learned_models_beat_popularity]
