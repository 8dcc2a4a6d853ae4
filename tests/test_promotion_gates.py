"""The promotion gates decide nothing on an evaluation too small to trust: fewer than
min_evaluated_users users or a non-finite metric keeps the serving model (or promotes none),
and the registry row and the asset metadata say why."""

import math

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys_assets.definitions import build_defs, build_resources
from recsys_assets.services.funnel_evaluation import FUNNEL_SCHEMA
from recsys_assets.services.promotion import (
    beats_recall_only,
    choose_candidate,
    decide,
    decide_ranker,
    promote_ranker,
    promote_recall,
)
from recsys_assets.services.recall_evaluation import EVAL_SCHEMA
from recsys_assets.services.registry import RANKER_REGISTRY, REGISTRY_SCHEMA
from recsys_assets.services.tables import write_frame, write_rows
from recsys_assets.settings import RecallConfig
from resources import RecallSettings

D, BEFORE = "2026-01-05", "2026-01-04"


def evaluation_rows(n_users: int, als: float = 0.30, popularity: float = 0.10) -> list[dict]:
    """recall_evaluation rows of D: ALS beats popularity (lift and paired CI above 0)."""

    def row(model, value, lift=None, low=None):
        return {
            "day": D,
            "model": model,
            "segment": "all",
            "metric": "ndcg",
            "k": 10,
            "value": value,
            "ci_low": None,
            "ci_high": None,
            "n_users": n_users,
            "lift_vs_popularity": lift,
            "diff_ci_low": low,
            "diff_ci_high": None,
            "p_value": None,
        }

    return [row("popularity", popularity), row("als", als, lift=2.0, low=0.05)]


def funnel_rows(n: int, ranker: float, recall_only: float) -> list[dict]:
    return [
        {
            "day": D,
            "scope": "funnel",
            "stage": stage,
            "metric": "ndcg",
            "k": 10,
            "value": value,
            "ci_low": None,
            "ci_high": None,
            "n": n,
            "baseline": None,
            "diff": None,
            "diff_ci_low": None,
            "diff_ci_high": None,
            "p_value": None,
        }
        for stage, value in (("recall_only", recall_only), ("ranker", ranker), ("ranker_rerank", ranker))
    ]


@pytest.fixture
def res(tmp_path):
    return build_resources(str(tmp_path))


def publish_dummy(store, model: str, day: str) -> None:
    """A published artifact (manifest and checksums) the gate can see; never loaded here."""
    staging = store.staging_dir(model)
    (staging / "weights.npy").write_bytes(b"not loaded")
    store.publish(model, day, staging, {"n_users": 10, "n_items": 10})


def serve_recall(res, champion: str) -> None:
    """Registry row of the day before D: `champion` of that day serves."""
    publish_dummy(res["model_store"], f"recall_{champion}", BEFORE)
    row = {name: None for name in REGISTRY_SCHEMA.names} | {
        "day": BEFORE,
        "decision": "promoted",
        "champion": champion,
        "champion_day": BEFORE,
        "reason": "test",
    }
    write_rows([row], REGISTRY_SCHEMA, res["storage"].partition_path("recall_champion", BEFORE))


def serve_ranker(res) -> None:
    publish_dummy(res["model_store"], "ranker", BEFORE)
    row = {name: None for name in RANKER_REGISTRY.names} | {
        "day": BEFORE,
        "decision": "promoted",
        "champion_day": BEFORE,
        "reason": "test",
    }
    write_frame(
        pa.Table.from_pylist([row], schema=RANKER_REGISTRY), res["storage"].partition_path("ranker_champion", BEFORE)
    )


# ------------------------------------------------------------------------------ recall champion
def test_the_setting_is_configurable_and_defaults_to_50():
    assert RecallConfig().min_evaluated_users == 50
    assert RecallSettings(min_evaluated_users=0).min_evaluated_users == 0
    with pytest.raises(ValueError, match="min_evaluated_users"):
        RecallSettings(min_evaluated_users=-1)


def test_choose_candidate_holds_a_winner_evaluated_on_too_few_users():
    rows = evaluation_rows(n_users=1)
    assert choose_candidate(rows, "ndcg@10", 0.0)["candidate"] == "als"  # no minimum: als would win
    held = choose_candidate(rows, "ndcg@10", 0.0, min_users=50)
    assert held["candidate"] is None and held["evaluated_users"] == 1
    assert held["held"] == "1 evaluated user < min_evaluated_users 50"
    enough = choose_candidate(evaluation_rows(n_users=50), "ndcg@10", 0.0, min_users=50)
    assert enough["candidate"] == "als" and enough["candidate_value"] == 0.30 and enough["held"] is None


def test_one_test_user_keeps_the_serving_champion_and_the_registry_says_why(res):
    storage, store = res["storage"], res["model_store"]
    write_rows(evaluation_rows(n_users=1), EVAL_SCHEMA, storage.partition_path("recall_evaluation", D))
    serve_recall(res, "ease")
    decision = promote_recall(D, storage, store, RecallConfig(), BEFORE)
    assert decision["decision"] == "kept" and (decision["champion"], decision["champion_day"]) == ("ease", BEFORE)
    assert decision["candidate"] is None
    assert decision["reason"] == "1 evaluated user < min_evaluated_users 50; the serving champion ease@2026-01-04 stays"
    (written,) = pq.read_table(storage.partition_path("recall_champion", D)).to_pylist()
    assert written["decision"] == "kept" and written["reason"] == decision["reason"]


def test_one_test_user_and_no_champion_promotes_nothing(res):
    storage, store = res["storage"], res["model_store"]
    write_rows(evaluation_rows(n_users=1), EVAL_SCHEMA, storage.partition_path("recall_evaluation", D))
    decision = promote_recall(D, storage, store, RecallConfig(), BEFORE)
    assert decision["decision"] == "none" and decision["champion"] is None
    assert decision["reason"].startswith("1 evaluated user < min_evaluated_users 50")


def test_a_nan_metric_keeps_the_serving_champion(res):
    storage, store = res["storage"], res["model_store"]
    write_rows(evaluation_rows(n_users=500, als=math.nan), EVAL_SCHEMA, storage.partition_path("recall_evaluation", D))
    serve_recall(res, "ease")
    decision = promote_recall(D, storage, store, RecallConfig(), BEFORE)
    assert decision["decision"] == "kept" and decision["champion"] == "ease"
    assert "non-finite ndcg@10 for als" in decision["reason"]
    # a non-finite value measured on the day (the comparison on the same users) decides nothing either
    candidate = {"candidate": "als", "popularity_value": 0.1, "candidates": "{}", "held": None}
    for values in ({"candidate": math.nan, "incumbent": 0.2}, {"candidate": 0.3, "incumbent": math.inf}):
        kept = decide(D, candidate, ("ease", BEFORE), values, "ndcg@10", tolerance=0.02)
        assert kept["decision"] == "kept" and kept["champion"] == "ease" and "non-finite" in kept["reason"]
    assert decide(D, candidate, None, {"candidate": None}, "ndcg@10", tolerance=0.02)["decision"] == "none"


def test_enough_users_promote_the_winner(res):
    storage, store = res["storage"], res["model_store"]
    write_rows(evaluation_rows(n_users=50), EVAL_SCHEMA, storage.partition_path("recall_evaluation", D))
    publish_dummy(store, "recall_als", D)
    decision = promote_recall(D, storage, store, RecallConfig(), BEFORE)
    assert decision["decision"] == "promoted" and (decision["champion"], decision["champion_day"]) == ("als", D)
    # the same evaluation with a lower minimum configured
    write_rows(evaluation_rows(n_users=1), EVAL_SCHEMA, storage.partition_path("recall_evaluation", D))
    assert promote_recall(D, storage, store, RecallConfig(min_evaluated_users=1), BEFORE)["decision"] == "promoted"


def test_recall_champion_asset_metadata_says_why(res):
    storage = res["storage"]
    write_rows(evaluation_rows(n_users=1), EVAL_SCHEMA, storage.partition_path("recall_evaluation", D))
    serve_recall(res, "ease")
    asset = build_defs(resources=res).get_assets_def("recall_champion")
    result = dg.materialize([asset], partition_key=D, resources=res, instance=dg.DagsterInstance.ephemeral())
    (event,) = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["decision"].value == "kept" and meta["champion"].value == "ease"
    assert "1 evaluated user < min_evaluated_users 50" in meta["reason"].value


# ------------------------------------------------------------------------------ serving ranker
def test_ranker_gate_keeps_the_serving_ranker_on_too_few_users():
    thin = decide_ranker(D, 0.30, 0.10, BEFORE, None, tolerance=0.02, evaluated=1, min_users=50)
    assert thin["decision"] == "kept" and thin["champion_day"] == BEFORE
    assert "1 evaluated user < min_evaluated_users 50" in thin["reason"] and "keeps serving" in thin["reason"]
    alone = decide_ranker(D, 0.30, 0.10, None, None, tolerance=0.02, evaluated=1, min_users=50)
    assert alone["decision"] == "none" and alone["champion_day"] is None and "recall order" in alone["reason"]
    enough = decide_ranker(D, 0.30, 0.10, None, None, tolerance=0.02, evaluated=50, min_users=50)
    assert enough["decision"] == "promoted" and enough["champion_day"] == D


def test_ranker_gate_never_promotes_on_nan():
    """An empty funnel gives NaN means: "beats recall-only (nan > nan)" must not promote."""
    for evaluated in (0, 500):  # with too few users, or a NaN however many users
        nan = decide_ranker(D, math.nan, math.nan, None, None, tolerance=0.02, evaluated=evaluated, min_users=50)
        assert nan["decision"] == "none" and nan["champion_day"] is None
        kept = decide_ranker(D, math.nan, math.nan, BEFORE, None, tolerance=0.02, evaluated=evaluated, min_users=50)
        assert kept["decision"] == "kept" and kept["champion_day"] == BEFORE
    assert "non-finite NDCG@10" in nan["reason"]
    serving_nan = decide_ranker(D, 0.3, 0.1, BEFORE, math.nan, tolerance=0.02, evaluated=500, min_users=50)
    assert serving_nan["decision"] == "kept" and serving_nan["champion_day"] == BEFORE


def test_promote_ranker_on_an_empty_funnel_keeps_the_serving_ranker(res):
    storage, store = res["storage"], res["model_store"]
    path = storage.partition_path("funnel_evaluation", D)
    write_frame(pa.Table.from_pylist(funnel_rows(0, math.nan, math.nan), schema=FUNNEL_SCHEMA), path)
    assert promote_ranker(D, storage, store, RecallConfig(), None, BEFORE)["decision"] == "none"
    serve_ranker(res)  # the incumbent is not judged on an empty day (nothing to load it for)
    decision = promote_ranker(D, storage, store, RecallConfig(), None, BEFORE)
    assert decision["decision"] == "kept" and decision["champion_day"] == BEFORE
    assert "0 evaluated users < min_evaluated_users 50" in decision["reason"]
    (written,) = pq.read_table(storage.partition_path("ranker_champion", D)).to_pylist()
    assert written["decision"] == "kept" and written["reason"] == decision["reason"]
    ok, why = beats_recall_only(storage, D, min_users=50)
    assert not ok and why.startswith("no ranker evaluation") and "0 evaluated users" in why
    # enough users: judged as before
    write_frame(pa.Table.from_pylist(funnel_rows(60, 0.3, 0.1), schema=FUNNEL_SCHEMA), path)
    assert beats_recall_only(storage, D, min_users=50)[0]


def test_ranker_champion_asset_metadata_says_why(res):
    storage = res["storage"]
    path = storage.partition_path("funnel_evaluation", D)
    write_frame(pa.Table.from_pylist(funnel_rows(3, 0.3, 0.1), schema=FUNNEL_SCHEMA), path)
    asset = build_defs(resources=res).get_assets_def("ranker_champion")
    result = dg.materialize([asset], partition_key=D, resources=res, instance=dg.DagsterInstance.ephemeral())
    (event,) = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["decision"].value == "none" and meta["champion_day"].value == "none"
    assert "3 evaluated users < min_evaluated_users 50" in meta["reason"].value
    assert meta["days_of_run"].value[D]["decision"] == "none"


def test_a_ranker_must_beat_the_stronger_recall_order():
    """Without a ranker the recall champion's order serves, so the gate compares the ranker with
    the stronger of it and the fused order; a table written before that stage existed, or a
    non-finite value, falls back to what is measured."""
    from recsys_assets.services.promotion import recall_order_value

    rows = funnel_rows(100, ranker=0.13, recall_only=0.12)
    assert recall_order_value(rows) == 0.12  # no recall_champion stage: the fused order
    champion_row = rows[0] | {"stage": "recall_champion", "value": 0.14}
    assert recall_order_value(rows + [champion_row]) == 0.14
    decision = decide_ranker(D, 0.13, recall_order_value(rows + [champion_row]), None, None, tolerance=0.02)
    assert decision["decision"] == "rejected" and "does not beat the recall order" in decision["reason"]
    assert decide_ranker(D, 0.13, recall_order_value(rows), None, None, tolerance=0.02)["decision"] == "promoted"
    assert recall_order_value(rows + [champion_row | {"value": float("nan")}]) == 0.12
    assert recall_order_value([]) is None
