"""A day without any activity in the middle of a range run (a MovieLens day nobody rated):
the model layers run over every day in one step (BackfillPolicy.single_run), so that day is
a recorded skip of its own, and the days around it still get their ranker, funnel and
recommendations."""

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from recsys_assets.core.generator import GeneratorConfig, generate
from recsys_assets.definitions import build_defs, build_resources
from recsys_assets.quickstart import materialize_all
from recsys_assets.services.funnel_evaluation import STAGES
from resources import RecallSettings

CONFIG = GeneratorConfig(n_users=300, n_items=200, days=7, impressions_per_day=3_000, seed=3)
DAYS = [d.isoformat() for d in CONFIG.dates]
EMPTY = DAYS[4]
MODEL_DAYS = DAYS[1:]  # one range run over the model layers


def _metadata(instance: dg.DagsterInstance, asset: str, day: str) -> dict:
    """The metadata of the asset's partition `day` (its own, though a range run wrote it)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1
    ).records
    assert records and records[0].asset_materialization is not None, (asset, day)
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict, dg.DagsterInstance]:
    root = tmp_path_factory.mktemp("sparse")
    generate(CONFIG, root)
    for name in ("impressions", "events", "watch_stats", "_injected_bad"):  # the day stays complete (_SUCCESS)
        (root / "landing" / EMPTY / f"{name}.jsonl").write_bytes(b"")
    # the source declares that a day may have no data (as the MovieLens adapter does); without
    # the declaration the blocking volume check stops an empty delivery (test_raw_assets.py)
    (root / "landing" / "_source.json").write_text('{"empty_days": "absent"}')
    # a small world: a lower bar than the default 50 users lets its rankers be promoted
    resources = build_resources(str(root), recall=RecallSettings(min_evaluated_users=10))
    instance = dg.DagsterInstance.ephemeral()
    materialize_all(build_defs(resources=resources), DAYS, instance, model_days=len(MODEL_DAYS))
    return root, resources, instance


@pytest.mark.slow
def test_an_empty_day_is_skipped_alone_in_a_range_run(world):
    root, resources, instance = world
    storage, store = resources["storage"], resources["model_store"]
    assert pl.read_parquet(storage.partition_path("interactions", EMPTY)).height == 0
    assert pl.read_parquet(storage.partition_path("ranking_samples", EMPTY)).height == 0
    assert _metadata(instance, "ranking_samples", EMPTY)["dagster/row_count"] == 0
    assert _metadata(instance, "ranking_samples", DAYS[-1])["dagster/row_count"] > 0

    # rankers: the empty day's (trained on the days before it), the next day's (its validation
    # day is the empty one: a held-out share of its training requests instead) and the last one's
    after = DAYS[DAYS.index(EMPTY) + 1]
    for day in (DAYS[3], EMPTY, after, DAYS[-1]):
        assert store.exists("ranker", day), day
    validation = store.verify("ranker", after)["metadata"]["validation"]
    assert "of the training requests" in validation and EMPTY in validation
    assert store.verify("ranker", DAYS[-1])["metadata"]["validation"] == "later days"

    # funnel: the empty day has nothing to evaluate and says so; the days around it are evaluated
    assert "no user to evaluate" in _metadata(instance, "funnel_evaluation", EMPTY)["skipped"]
    assert pl.read_parquet(storage.partition_path("funnel_evaluation", EMPTY)).height == 0
    for day in (DAYS[3], after, DAYS[-1]):
        rows = pl.read_parquet(storage.partition_path("funnel_evaluation", day))
        ndcg = rows.filter((pl.col("scope") == "funnel") & (pl.col("metric") == "ndcg"))
        assert ndcg.height == len(STAGES) and ndcg["n"].min() >= 10 and ndcg["value"].is_finite().all(), day
        assert "skipped" not in _metadata(instance, "funnel_evaluation", day)

    # the gate decides nothing on the empty day (the serving ranker, if any, stays)
    champion = {
        r["day"]: r for r in pl.read_parquet(root / "lake" / "ranker_champion" / "*.parquet").iter_rows(named=True)
    }
    assert champion[EMPTY]["decision"] == ("kept" if champion[DAYS[3]]["champion_day"] else "none")
    assert "0 evaluated users < min_evaluated_users 10" in champion[EMPTY]["reason"]
    assert champion[EMPTY]["champion_day"] == champion[DAYS[3]]["champion_day"]
    for day in (after, DAYS[-1]):
        assert (
            champion[day]["decision"] in ("promoted", "rejected", "kept")
            and "cannot decide" not in (champion[day]["reason"])
        )
    assert _metadata(instance, "ranker_champion", EMPTY)["reason"] == champion[EMPTY]["reason"]
    assert any(champion[d]["champion_day"] for d in (after, DAYS[-1]))  # a ranker serves after the empty day

    # recommendations for every day of the run, the empty one included
    for day in MODEL_DAYS:
        served = _metadata(instance, "recommendations", day)
        recs = pl.read_parquet(storage.partition_path("recommendations", day))
        assert recs.height > 0 and recs["user_id"].n_unique() == served["users"] > 0, day
        stage = "ranker_rerank" if champion[day]["champion_day"] else "recall_rerank"
        assert recs["stage"].unique().to_list() == [stage], day
        assert served["ranker_day"] == (champion[day]["champion_day"] or "none (recall order)")
