"""Promotion: one gate for the recall champion and the serving ranker, and the registries
that record every decision (lake/recall_champion, lake/ranker_champion; rollbacks included).

The gate: a candidate qualifies when it beats its baseline (popularity for recall models,
the recall order for rankers (the stronger of the fused order and the recall champion's), and
for rankers on a source with impressions also the
strongest ordering of the shown slates: shown order, the session-first heuristic, popularity
by position, recall RRF); a qualified candidate replaces the serving model unless it
is worse than it, evaluated on the same day and users, by more than `promotion_tolerance`.
A day whose evaluation has fewer than `min_evaluated_users` users, or a non-finite metric,
decides nothing: the serving model stays (or none serves) and the reason says why.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa

from recsys_assets.core import metrics
from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.recall import registry
from recsys_assets.core.storage import read_arrow
from recsys_assets.core.training_data import seen_matrix
from recsys_assets.services.errors import MissingInput
from recsys_assets.services.funnel_evaluation import ranker_ndcg_on_day
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.registry import (
    RANKER_REGISTRY,
    REGISTRY_SCHEMA,
    current_champion,
    ranker_champion_before,
)
from recsys_assets.services.tables import write_frame, write_rows
from recsys_assets.services.training import load_day
from recsys_assets.settings import RankingConfig, RecallConfig


def within_tolerance(candidate_value: float, incumbent_value: float, tolerance: float) -> bool:
    """The gate: a qualified candidate may replace the serving model unless it is worse than it,
    on the same day and users, by more than `tolerance` (relative)."""
    return candidate_value >= incumbent_value * (1 - tolerance)


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def too_few_users(evaluated: int, min_users: int) -> str | None:
    """Why an evaluation of `evaluated` users decides nothing, or None when it may."""
    if evaluated >= min_users:
        return None
    return f"{evaluated} evaluated user{'' if evaluated == 1 else 's'} < min_evaluated_users {min_users}"


# ------------------------------------------------------------------------------ recall champion
def choose_candidate(rows: list[dict], metric: str, min_lift: float, min_users: int = 0) -> dict:
    """Best learned model by `metric` (overall) among those that beat popularity: lift above
    min_lift and the paired 95% CI of the difference above zero, with a finite value, on an
    evaluation of at least `min_users` users. "held" says why there is no candidate when a
    model beat popularity but the evaluation cannot be trusted (else None)."""
    base, k = metric.split("@")
    overall = {r["model"]: r for r in rows if r["segment"] == "all" and r["metric"] == base and r["k"] == int(k)}
    popularity = overall.get("popularity", {}).get("value")
    # every model is evaluated on the day's test users: one count for all
    evaluated = max((r["n_users"] or 0 for r in overall.values()), default=0)
    thin = too_few_users(evaluated, min_users)
    candidates: dict[str, dict[str, Any]] = {}
    non_finite = []
    for name in registry.learned():  # learned channels; content is cold start, popularity the baseline
        r = overall.get(name)
        if r is None:
            candidates[name] = {"eligible": False, "why": "not trained (skipped or missing)"}
            continue
        lift, low, value = r["lift_vs_popularity"], r["diff_ci_low"], r["value"]
        beats = lift is not None and lift > min_lift and low is not None and low > 0
        if not finite(value):
            why = f"non-finite {metric} ({value})"
            non_finite.append(name)
        elif thin:
            why = thin
        else:
            why = "beats popularity" if beats else "does not beat popularity significantly"
        candidates[name] = {
            "value": value if finite(value) else None,  # NaN is not JSON
            "lift": lift,
            "diff_ci_low": low,
            "n_users": r["n_users"],
            "eligible": beats and finite(value) and not thin,
            "why": why,
        }
    eligible = {n: c for n, c in candidates.items() if c["eligible"]}
    winner = max(eligible, key=lambda n: (eligible[n]["value"], n)) if eligible else None
    held = None
    if winner is None:
        if thin:
            held = thin if overall else f"no model was evaluated ({thin})"
        elif non_finite:
            held = f"non-finite {metric} for {', '.join(non_finite)}"
    return {
        "candidate": winner,
        "candidate_value": eligible[winner]["value"] if winner else None,
        "popularity_value": popularity,
        "evaluated_users": evaluated,
        "held": held,
        "candidates": json.dumps(candidates, sort_keys=True),
    }


def compare_on_day(
    lake: Lake,
    model_store: ModelStore,
    settings: RecallConfig,
    day: str,
    contenders: dict[str, tuple[str, str]],
    first_day: str | None,
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
    data, test, info, _, _ = load_day(lake, day, settings, first_day, model_store=model_store)
    base, k = settings.champion_metric.split("@")
    known_users = min([data.n_users] + [m["metadata"]["n_users"] for m in manifests.values()])
    users = test.users[test.users < known_users]
    reuse = len(users) == len(test.users)
    models = {
        label: (recall_models.load_model(model_store.path(f"recall_{name}", trained)), manifests[label]["metadata"])
        for label, (name, trained) in contenders.items()
        if not (reuse and label in known)
    }
    seen, blocked = seen_matrix(data.positives, info["consumed"]), np.flatnonzero(~info["available_items"])
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
    `tolerance` (relative) on the same day; a rejected candidate leaves the champion serving, and
    so does a day that cannot decide (candidate["held"], or a non-finite value on the day)."""
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
    keep = {
        "decision": "kept" if incumbent else "none",
        "champion": incumbent[0] if incumbent else None,
        "champion_day": incumbent[1] if incumbent else None,
    }
    stays = f"; the serving champion {incumbent[0]}@{incumbent[1]} stays" if incumbent else "; nothing is promoted"
    if name is None and candidate.get("held"):
        return row | keep | {"reason": candidate["held"] + stays}
    if name is None:
        return (
            row
            | keep
            | {"reason": "no learned model beat popularity" + ("; the serving champion stays" if incumbent else "")}
        )
    compared = ("candidate", "incumbent") if incumbent else ("candidate",)
    bad = {label: values.get(label) for label in compared if not finite(values.get(label))}
    if bad:
        found = ", ".join(f"{label} {value}" for label, value in bad.items())
        return row | keep | {"reason": f"non-finite {metric} on {day} ({found})" + stays}
    if incumbent and not within_tolerance(values["candidate"], values["incumbent"], tolerance):
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


def promote_recall(
    day: str, lake: Lake, model_store: ModelStore, recall: RecallConfig, first_day: str | None, log=None
) -> dict:
    """The recall champion decision of `day` (the days before must be decided already), written
    to the registry."""
    path = lake.partition_path("recall_evaluation", day)
    if not path.exists():
        raise MissingInput(f"recall_evaluation is not materialized for {day}")
    candidate = choose_candidate(
        read_arrow(path).to_pylist(),
        recall.champion_metric,
        recall.min_lift_over_popularity,
        recall.min_evaluated_users,
    )
    incumbent = current_champion(lake, day)
    if incumbent and not model_store.exists(f"recall_{incumbent[0]}", incumbent[1]):
        if log:
            log.warning(f"serving champion {incumbent} has no published artifact; treating as none")
        incumbent = None
    contenders = {}
    if candidate["candidate"]:
        contenders["candidate"] = (candidate["candidate"], day)
    if incumbent and not candidate["held"]:  # a held day decides nothing: no comparison to make
        contenders["incumbent"] = incumbent
    values = (
        compare_on_day(
            lake, model_store, recall, day, contenders, first_day, known={"candidate": candidate["candidate_value"]}
        )
        if contenders
        else {}
    )
    decision = decide(day, candidate, incumbent, values, recall.champion_metric, recall.promotion_tolerance)
    write_rows([decision], REGISTRY_SCHEMA, lake.partition_path("recall_champion", day))
    return decision


# ------------------------------------------------------------------------------ serving ranker
def headline(rows: list[dict], scope: str, stage: str, metric: str) -> float | None:
    for r in rows:
        if r["scope"] == scope and r["stage"] == stage and r["metric"] == metric:
            return r["value"]
    return None


def evaluated_users(rows: list[dict]) -> int:
    """Users of the funnel evaluation (0 when nothing was evaluated)."""
    return max((r["n"] or 0 for r in rows if r["scope"] == "funnel" and r["metric"] == "ndcg"), default=0)


def recall_order_value(rows: list[dict]) -> float | None:
    """Funnel NDCG@10 of the recall order a ranker must beat: the stronger of the fused order
    (`recall_only`) and the recall champion's order (`recall_champion`, what serves without a
    ranker; absent from tables written before it existed). Non-finite values lose to finite ones."""
    values = [headline(rows, "funnel", stage, "ndcg") for stage in ("recall_only", "recall_champion")]
    measured = [v for v in values if v is not None]
    usable = [v for v in measured if finite(v)]
    return max(usable) if usable else (measured[0] if measured else None)


def beats_recall_only(lake: Lake, day: str, min_users: int = 0) -> tuple[bool, str]:
    """Whether the ranker of `day` beat the recall order on the funnel NDCG@10 (recall_order_value:
    the stronger of recall-only and the recall champion's order; the first condition of its
    promotion; ranker_champion adds the comparison with the serving ranker).
    An evaluation of fewer than `min_users` users or with a non-finite value counts as none."""
    path = lake.partition_path("funnel_evaluation", day)
    if not path.exists():
        return False, f"funnel_evaluation is not materialized for {day}"
    rows = read_arrow(path).to_pylist()
    ranker_value = headline(rows, "funnel", "ranker", "ndcg")
    recall_value = recall_order_value(rows)
    if ranker_value is None or recall_value is None:
        return False, f"no ranker evaluation for {day}"
    thin = too_few_users(evaluated_users(rows), min_users)
    if thin or not (finite(ranker_value) and finite(recall_value)):
        why = thin or f"non-finite NDCG@10 (ranker {ranker_value}, recall order {recall_value})"
        return False, f"no ranker evaluation for {day} to trust: {why}"
    if ranker_value > recall_value:
        return True, f"ranker NDCG@10 {ranker_value:.4f} > recall order {recall_value:.4f}"
    return False, f"ranker NDCG@10 {ranker_value:.4f} does not beat the recall order {recall_value:.4f}"


def decide_ranker(
    day: str,
    candidate_value: float | None,
    recall_value: float | None,
    incumbent_day: str | None,
    incumbent_value: float | None,
    tolerance: float,
    evaluated: int | None = None,
    min_users: int = 0,
) -> dict:
    """The ranker of `day` serves if it beats the recall order on D (`recall_value`:
    recall_order_value) and is not worse than the serving ranker (evaluated on the same day)
    by more than `tolerance` (relative). A rejected candidate leaves the serving ranker in
    place if that one still beats the recall order.
    A day whose funnel has fewer than `min_users` `evaluated` users, or a non-finite value,
    decides nothing: the serving ranker stays without being judged on it."""
    row = {
        "day": day,
        "metric": "ndcg@10",
        "candidate_day": day if candidate_value is not None else None,
        "candidate_value": candidate_value,
        "recall_only_value": recall_value,
        "incumbent_day": incumbent_day,
        "incumbent_value": incumbent_value,
    }
    thin = too_few_users(evaluated, min_users) if evaluated is not None else None
    measured = [v for v in (candidate_value, recall_value, incumbent_value) if v is not None]
    if thin or not all(finite(v) for v in measured):
        why = thin or (
            f"non-finite NDCG@10 (ranker {candidate_value}, recall order {recall_value}, serving {incumbent_value})"
        )
        return row | {
            "champion_day": incumbent_day,
            "decision": "kept" if incumbent_day else "none",
            "reason": (
                f"no ranker of {day} was evaluated ({why})"
                if candidate_value is None
                else f"the funnel of {day} cannot decide: {why}"
            )
            + (f"; the ranker of {incumbent_day} keeps serving" if incumbent_day else "; recall order serves"),
        }
    incumbent_ok = incumbent_value is not None and recall_value is not None and incumbent_value > recall_value
    keep = {"champion_day": incumbent_day if incumbent_ok else None}
    if candidate_value is None or recall_value is None:
        return (
            row
            | keep
            | {
                "decision": "kept" if incumbent_ok else "none",
                "reason": f"no ranker of {day} was evaluated"
                + (f"; the ranker of {incumbent_day} keeps serving" if incumbent_ok else "; recall order serves"),
            }
        )
    if candidate_value <= recall_value:
        return (
            row
            | keep
            | {
                "decision": "rejected",
                "reason": f"ranker of {day} ({candidate_value:.4f}) does not beat the recall order "
                f"({recall_value:.4f}) on {day}"
                + (f"; the ranker of {incumbent_day} keeps serving" if incumbent_ok else "; recall order serves"),
            }
        )
    if incumbent_value is not None and not within_tolerance(candidate_value, incumbent_value, tolerance):
        return (
            row
            | keep
            | {
                "decision": "rejected",
                "reason": f"ranker of {day} ({candidate_value:.4f}) is worse than the serving ranker of "
                f"{incumbent_day} ({incumbent_value:.4f}) by more than {tolerance:.0%} on {day}"
                + ("; it keeps serving" if incumbent_ok else "; recall order serves"),
            }
        )
    return row | {
        "decision": "promoted",
        "champion_day": day,
        "reason": f"ranker of {day} beats the recall order ({candidate_value:.4f} > {recall_value:.4f})"
        + (
            f" and is within {tolerance:.0%} of or better than the ranker of {incumbent_day} ({incumbent_value:.4f})"
            if incumbent_value is not None
            else ""
        ),
    }


def strongest_slate_baseline(rows: list[dict], min_requests: int = 0) -> tuple[float, str, float] | None:
    """(ranker MRR, the strongest other ordering, its MRR) on the day's shown slates; None when
    the day has no slates or fewer than `min_requests` of them."""
    slates = {r["stage"]: r for r in rows if r["scope"] == "slates" and r["metric"] == "mrr"}
    if "ranker" not in slates or (slates["ranker"]["n"] or 0) < max(min_requests, 1):
        return None
    baselines = {stage: r["value"] for stage, r in slates.items() if stage != "ranker" and finite(r["value"])}
    if not baselines or not finite(slates["ranker"]["value"]):
        return None
    name = max(baselines, key=lambda stage: baselines[stage])
    return slates["ranker"]["value"], name, baselines[name]


def apply_slate_gate(decision: dict, rows: list[dict], min_requests: int) -> dict:
    """The ranker must beat the strongest ordering of the shown slates too (shown order, the
    session-first heuristic, popularity, recall RRF), not only the recall order on the funnel. When
    the funnel cannot tell orderings apart (every value 0: recall never holds the user's choice,
    e.g. sessions of new users), the slates alone decide."""
    slate = strongest_slate_baseline(rows, min_requests)
    if slate is None:
        return decision
    ranker_mrr, name, base = slate
    verdict = f"slate MRR {ranker_mrr:.4f} vs {name} {base:.4f}"
    silent_funnel = decision.get("candidate_value") == 0.0 and decision.get("recall_only_value") == 0.0
    if ranker_mrr <= base and decision["decision"] == "promoted":
        return decision | {
            "decision": "rejected",
            "champion_day": None,
            "reason": f"ranker of {decision['day']} does not beat the strongest slate ordering ({verdict}); "
            "recall order serves",
        }
    if silent_funnel and decision["decision"] == "rejected" and decision.get("candidate_day"):
        if ranker_mrr > base:
            return decision | {
                "decision": "promoted",
                "champion_day": decision["day"],
                "reason": f"the funnel cannot tell orderings apart (every NDCG@10 0); the ranker of "
                f"{decision['day']} beats the strongest slate ordering ({verdict})",
            }
        return decision | {"reason": decision["reason"] + f"; and on the slates: {verdict}"}
    return decision | {"reason": decision["reason"] + f"; {verdict}"}


def promote_ranker(
    day: str,
    lake: Lake,
    model_store: ModelStore,
    recall: RecallConfig,
    ranking: RankingConfig,
    first_day: str | None,
    log=None,
) -> dict:
    """The serving-ranker decision of `day` (the days before must be decided already), written to
    the registry."""
    path = lake.partition_path("funnel_evaluation", day)
    if not path.exists():
        raise MissingInput(f"funnel_evaluation is not materialized for {day}")
    rows = read_arrow(path).to_pylist()
    candidate = headline(rows, "funnel", "ranker", "ndcg")
    recall_value = recall_order_value(rows)
    evaluated = evaluated_users(rows)
    incumbent = ranker_champion_before(lake, day)
    incumbent_value = None
    if incumbent and not model_store.exists("ranker", incumbent):
        if log:
            log.warning(f"serving ranker of {incumbent} has no published artifact; treating as none")
        incumbent = None
    judged = finite(recall_value) and not too_few_users(evaluated, recall.min_evaluated_users)
    if incumbent and judged:
        incumbent_value = ranker_ndcg_on_day(day, incumbent, lake, model_store, recall, ranking, first_day)
    decision = decide_ranker(
        day,
        candidate,
        recall_value,
        incumbent,
        incumbent_value,
        recall.promotion_tolerance,
        evaluated,
        recall.min_evaluated_users,
    )
    decision = apply_slate_gate(decision, rows, recall.min_evaluated_users)
    write_frame(pa.Table.from_pylist([decision], schema=RANKER_REGISTRY), lake.partition_path("ranker_champion", day))
    return decision
