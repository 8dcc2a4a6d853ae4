"""The recall layer as assets: models trained on the window before D and published safely,
evaluated on D with CIs, a champion chosen with its reasons, corrupt models refused."""

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest

from recsys_assets.core.generator import GeneratorConfig, generate
from recsys_assets.definitions import build_defs, build_resources
from recsys_assets.quickstart import materialize_all
from resources.model_store import CorruptModelError

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
MODELS = [
    "popularity",
    "recent_popularity",
    "item_cf",
    "als",
    "bpr",
    "bpr_uniform",
    "bpr_impressions",
    "ease",
    "content",
]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recall")
    generate(GeneratorConfig(n_users=500, n_items=300, days=len(DAYS), impressions_per_day=10_000, seed=5), root)
    materialize_all(
        build_defs(resources=build_resources(str(root))), DAYS, dg.DagsterInstance.ephemeral(), model_days=2
    )
    return root


@pytest.mark.slow
def test_models_are_published_with_lineage_metadata(root):
    resources = build_resources(str(root))
    store = resources["model_store"]
    for name in MODELS:
        manifest = store.verify(f"recall_{name}", DAYS[-1])
        meta = manifest["metadata"]
        assert meta["train_days"] == [DAYS[0], DAYS[-2]]  # strictly before the test day
        assert set(meta["score_range"]) == {"min", "max", "mean", "std", "p01", "p99"}
        assert meta["data_version"] and meta["train_seconds"] >= 0
        for npy in store.path(f"recall_{name}", DAYS[-1]).glob("*.npy"):
            np.load(npy, allow_pickle=False)  # safe format: loads without pickle


@pytest.mark.slow
def test_evaluation_table_and_champion(root):
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    rows = con.execute(
        "SELECT model, metric, k, segment, value, ci_low, ci_high FROM recall_evaluation WHERE day = ?", [DAYS[-1]]
    ).fetchall()
    models = {r[0] for r in rows}
    assert models == set(MODELS) | {"fusion_rrf", "fusion_weighted"}
    ndcg10 = {r[0]: r for r in rows if r[1] == "ndcg" and r[2] == 10 and r[3] == "all"}
    assert all(r[5] <= r[4] <= r[6] for r in ndcg10.values())
    assert {r[2] for r in rows if r[1] == "recall"} == {10, 20, 50, 100, 200}
    assert {"coverage", "novelty", "latency_ms_per_user"} <= {r[1] for r in rows}
    assert {"all", "cold_items"} <= {r[3] for r in rows}  # items new on the test day have their own segment
    # (quality against popularity is measured on the default data in benchmarks/, not on this tiny set)

    (decision,) = con.execute(
        "SELECT candidate, metric, reason, candidates, decision, champion FROM recall_champion WHERE day = ?",
        [DAYS[-1]],
    ).fetchall()
    candidates = json.loads(decision[3])
    assert decision[1] == "ndcg@10" and set(candidates) == {
        "item_cf",
        "als",
        "bpr",
        "bpr_uniform",
        "bpr_impressions",
        "ease",
    }
    assert decision[4] in ("promoted", "kept", "rejected", "none") and decision[2]
    if decision[0] is not None:
        assert candidates[decision[0]]["eligible"]
        assert candidates[decision[0]]["value"] == max(c["value"] for c in candidates.values() if c["eligible"])
    else:
        assert not any(c["eligible"] for c in candidates.values())


@pytest.mark.slow
def test_candidates_fuse_every_channel_and_keep_ranks(root):
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    per_user = con.execute(
        "SELECT method, user_id, count(*), min(rank), max(rank), count(DISTINCT item_id) "
        "FROM recall_candidates WHERE day = ? GROUP BY ALL",
        [DAYS[-1]],
    ).fetchall()
    assert {r[0] for r in per_user} == {"rrf", "weighted"}
    assert all(r[2] == r[5] <= 200 and r[3] == 1 and r[4] == r[2] for r in per_user)
    cols = {c[0] for c in con.execute("DESCRIBE recall_candidates").fetchall()}
    assert {f"rank_{m}" for m in MODELS} <= cols
    # no candidate is an item the user already had as a training positive
    (seen,) = con.execute(f"""
        SELECT count(*) FROM recall_candidates c JOIN interactions x
          ON x.user_id = c.user_id AND x.item_id = c.item_id AND x.is_positive
         WHERE c.day = DATE '{DAYS[-1]}' AND x.day < DATE '{DAYS[-1]}'""").fetchone()
    assert seen == 0


@pytest.mark.slow
def test_candidates_scored_in_small_batches_equal_one_batch_and_scale_knobs_apply(root):
    """recall_candidates streams users in batches: the table does not depend on the batch size;
    channels / candidate_methods / candidates_recent_days restrict what is trained and stored."""
    import polars as pl

    from resources import RecallSettings

    path = build_resources(str(root))["storage"].partition_path("recall_candidates", DAYS[-1])

    def run(recall):
        defs = build_defs(resources=build_resources(str(root), recall=recall))
        assert (
            defs.resolve_implicit_global_asset_job_def()
            .execute_in_process(
                asset_selection=[dg.AssetKey("recall_candidates")],
                partition_key=DAYS[-1],
                instance=dg.DagsterInstance.ephemeral(),
            )
            .success
        )
        return pl.read_parquet(path)

    keys = ["method", "user_id", "rank", "item_id"]
    whole = run(RecallSettings())
    try:
        batched = run(RecallSettings(candidates_batch_users=37))
        assert batched.height == whole.height > 0
        assert batched.select(keys).equals(whole.select(keys))
        # the partition is in (method, user_id, rank) order as written, with no sort: parts are
        # listed method by method with users in id order (37 users per part here)
        assert batched.select(keys[:3]).equals(batched.select(keys[:3]).sort(keys[:3]))
        assert np.allclose(batched["score"].to_numpy(), whole["score"].to_numpy(), rtol=1e-5)

        narrow = run(
            RecallSettings(
                candidates_batch_users=50,
                channels=["popularity", "als"],
                candidate_methods=["rrf"],
                candidates_recent_days=1,
            )
        )
        assert set(narrow["method"]) == {"rrf"}
        assert {c for c in narrow.columns if c.startswith("rank_")} == {"rank_popularity", "rank_als"}
        con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)

        def users_on(day, condition):
            return {
                u
                for (u,) in con.execute(
                    f"SELECT DISTINCT user_id FROM interactions WHERE {condition} AND day = ?", [day]
                ).fetchall()
            }

        # users with a training signal (positive, or click at click_weight) on the last training day only
        got = set(narrow["user_id"])
        assert users_on(DAYS[-2], "is_positive") <= got <= users_on(DAYS[-2], "true")
        assert got < set(whole["user_id"])
    finally:
        run(RecallSettings())  # the module's other tests read the default table


@pytest.mark.slow
def test_ann_index_over_the_champion(root):
    import faiss

    resources = build_resources(str(root))
    store = resources["model_store"]
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    (winner,) = con.execute("SELECT champion FROM recall_champion WHERE day = ?", [DAYS[-1]]).fetchone()
    if winner in (None, "item_cf", "ease"):
        assert not store.exists("recall_ann_index", DAYS[-1])  # nothing to index: skipped
        return
    manifest = store.verify("recall_ann_index", DAYS[-1])
    assert manifest["metadata"]["champion"] == winner
    assert manifest["metadata"]["recall_at_100_vs_exact"] >= 0.95
    index = faiss.read_index(str(store.path("recall_ann_index", DAYS[-1]) / "index.faiss"))
    assert index.ntotal == manifest["metadata"]["items"]


@pytest.mark.slow
def test_first_day_has_nothing_to_train_on_and_is_skipped(root):
    defs = build_defs(resources=build_resources(str(root)))
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=DAYS[0],
        asset_selection=[dg.AssetKey("recall_als"), dg.AssetKey("recall_evaluation"), dg.AssetKey("recall_champion")],
    )
    assert result.success
    als = next(m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey("recall_als"))
    assert als.materialization.metadata["skipped"].value is True
    con = duckdb.connect()
    (champion, decision) = con.execute(
        f"SELECT champion, decision FROM '{root}/lake/recall_champion/{DAYS[0]}.parquet'"
    ).fetchone()
    assert champion is None and decision == "none"


@pytest.mark.slow
def test_a_corrupt_model_file_is_refused_by_name(root, tmp_path):
    resources = build_resources(str(_copy_root(root, tmp_path)))  # the module's root stays intact
    store = resources["model_store"]
    directory = store.path("recall_als", DAYS[-2])
    target = next(directory.glob("*factors*.npy"))
    target.write_bytes(target.read_bytes()[:-16])  # truncated
    with pytest.raises(CorruptModelError, match=target.name):
        store.verify("recall_als", DAYS[-2])
    job = build_defs(resources=resources).resolve_implicit_global_asset_job_def()
    only_check = job.get_subset(
        asset_selection=set(),
        asset_check_selection={dg.AssetCheckKey(dg.AssetKey("recall_als"), "finite_and_verified")},
    )
    result = only_check.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key=DAYS[-2], raise_on_error=False
    )
    assert not result.success
    assert target.name in str(result.all_events)


def test_mips_vectors_reproduce_model_scores():
    import scipy.sparse as sp

    from recsys_assets.core.recall import ann
    from recsys_assets.core.recall.base import TrainingData
    from recsys_assets.core.recall.models import ImpressionBPRModel
    from recsys_assets.services.ann_index import mips_vectors

    rng = np.random.default_rng(0)
    positives = sp.random(200, 300, density=0.05, format="csr", random_state=1, dtype=np.float32)
    empty = sp.csr_matrix(positives.shape, dtype=np.float32)
    data = TrainingData(
        positives, empty, empty, sp.csr_matrix((300, 0), dtype=np.float32), sp.csr_matrix((300, 0), dtype=np.float32)
    )
    model = ImpressionBPRModel(factors=8, epochs=3).fit(data, seed=0)
    users, items = mips_vectors(model.arrays())
    np.testing.assert_allclose(users @ items.T, model.score(np.arange(200)), rtol=1e-4, atol=1e-5)
    items_l2, users_l2 = ann.mips_to_l2(items, users)
    np.testing.assert_allclose(users_l2 @ items_l2.T, users @ items.T, rtol=1e-5, atol=1e-5)
    index = ann.build_mips_hnsw(items_l2)
    assert ann.recall_vs_exact(index, items_l2, users_l2[rng.choice(200, 50, replace=False)], 100) >= 0.95


def test_ann_index_leaves_out_the_zero_vectors_of_items_never_seen(tmp_path):
    """ALS leaves items never seen in training at an all-zero vector: on a catalog of mostly
    such items (a sparse day) the HNSW index over every item found ~0% of the exact top-100;
    over the seen items, with catalog ids, it finds them all."""
    import faiss
    import scipy.sparse as sp

    from recsys_assets.core.recall.base import TrainingData
    from recsys_assets.core.recall.models import ALSModel
    from recsys_assets.services.ann_index import build_champion_index, indexed_recall
    from recsys_assets.services.registry import REGISTRY_SCHEMA
    from recsys_assets.services.tables import write_rows

    rng = np.random.default_rng(0)
    n_users, n_items, day = 300, 4000, "2026-01-05"
    rows, cols = rng.integers(0, n_users, 2000), rng.choice(n_items, 250, replace=False)[rng.integers(0, 250, 2000)]
    positives = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    empty, no_content = sp.csr_matrix(positives.shape, dtype=np.float32), sp.csr_matrix((n_items, 0), dtype=np.float32)
    model = ALSModel(factors=16, num_threads=1).fit(TrainingData(positives, empty, empty, no_content, no_content))
    seen = np.flatnonzero(np.diff(positives.tocsc().indptr) > 0)
    assert not model.item_factors[np.setdiff1d(np.arange(n_items), seen)].any()  # unseen: all zeros
    resources = build_resources(str(tmp_path))
    storage, store = resources["storage"], resources["model_store"]
    staging = store.staging_dir("recall_als")
    model.save(staging)
    store.publish("recall_als", day, staging, {"n_users": n_users, "n_items": n_items})
    row = {name: None for name in REGISTRY_SCHEMA.names}
    row |= {"day": day, "decision": "promoted", "champion": "als", "champion_day": day, "reason": "test"}
    write_rows([row], REGISTRY_SCHEMA, storage.partition_path("recall_champion", day))

    meta = build_champion_index(day, storage, store, seed=0)
    assert meta["ann_recall_vs_exact"] >= 0.95 and indexed_recall(store, [day])[day] >= 0.95
    assert meta["items"] == len(seen) and meta["zero_vector_items_left_out"] == n_items - len(seen)
    index = faiss.read_index(str(store.path("recall_ann_index", day) / "index.faiss"))
    assert index.ntotal == len(seen)
    _, found = index.search(np.hstack([model.user_factors[:5], np.zeros((5, 1), np.float32)]), 10)
    assert np.isin(found, seen).all()  # catalog item indices, not row numbers


def test_a_worse_candidate_is_not_promoted_and_the_registry_says_why():
    from recsys_assets.services.promotion import decide

    candidate = {"candidate": "als", "popularity_value": 0.10, "candidates": "{}"}
    rejected = decide(
        "2026-01-05",
        candidate,
        ("ease", "2026-01-04"),
        {"candidate": 0.12, "incumbent": 0.15},
        "ndcg@10",
        tolerance=0.02,
    )
    assert (
        rejected["decision"] == "rejected"
        and rejected["champion"] == "ease"
        and rejected["champion_day"] == "2026-01-04"
    )
    assert "worse than the serving champion ease@2026-01-04" in rejected["reason"]
    within = decide(
        "2026-01-05",
        candidate,
        ("ease", "2026-01-04"),
        {"candidate": 0.148, "incumbent": 0.15},
        "ndcg@10",
        tolerance=0.02,
    )
    assert within["decision"] == "promoted" and within["champion"] == "als" and within["champion_day"] == "2026-01-05"
    nothing = decide(
        "2026-01-05",
        {"candidate": None, "popularity_value": 0.1, "candidates": "{}"},
        ("ease", "2026-01-04"),
        {"incumbent": 0.15},
        "ndcg@10",
        tolerance=0.02,
    )
    assert nothing["decision"] == "kept" and nothing["champion"] == "ease"


@pytest.mark.slow
def test_sabotaged_candidate_keeps_the_serving_champion_end_to_end(root, tmp_path):
    """Day 3's champion serves; day 4's only candidate (ALS) is made worse on purpose and, if it
    still clears popularity, must lose to the serving champion evaluated on the same day."""
    import shutil

    from resources import RecallSettings

    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    con = duckdb.connect()
    registry3 = copy / "lake/recall_champion" / f"{DAYS[-2]}.parquet"
    (day3,) = con.execute(f"SELECT champion FROM '{registry3}'").fetchone()
    if day3 is None:  # this small dataset promoted nothing on day 3: record EASE of day 3 as serving
        con.execute(
            f"COPY (SELECT * REPLACE ('ease' AS champion, '{DAYS[-2]}' AS champion_day, 'promoted' AS decision) "
            f"FROM '{registry3}') TO '{tmp_path}/r.parquet'"
        )
        shutil.move(tmp_path / "r.parquet", registry3)
        day3 = "ease"
    resources = build_resources(str(copy))
    resources["recall"] = RecallSettings(
        models={"als": {"iterations": 1, "factors": 2, "regularization": 1e4}}, promotion_tolerance=0.0
    )
    defs = build_defs(resources=resources)
    job = defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=DAYS[-1],
        asset_selection=[dg.AssetKey("recall_als"), dg.AssetKey("recall_evaluation")],
        raise_on_error=False,
    )
    # only ALS may compete: every other learned model's evaluation row is dropped
    path = copy / "lake/recall_evaluation" / f"{DAYS[-1]}.parquet"
    con.execute(f"COPY (SELECT * FROM '{path}' WHERE model IN ('als', 'popularity')) TO '{tmp_path}/e.parquet'")
    shutil.move(tmp_path / "e.parquet", path)
    job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=DAYS[-1],
        asset_selection=[dg.AssetKey("recall_champion")],
    )
    row = con.execute(
        f"SELECT decision, champion, champion_day, reason FROM '{copy}/lake/recall_champion/{DAYS[-1]}.parquet'"
    ).fetchone()
    assert row[0] in ("rejected", "kept"), row
    assert row[1] == day3 and row[2] <= DAYS[-2]
    assert "the champion stays" in row[3] or "serving champion stays" in row[3]


@pytest.mark.slow
def test_evaluation_champion_and_candidates_emit_table_metadata(root, tmp_path):
    """The UI gets each table's columns, its row count and a small preview, next to the plotted numbers."""
    import shutil

    import pyarrow.parquet as pq

    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    # No serving champion before the last day: the run does not depend on artifacts other tests alter.
    (copy / "lake/recall_champion" / f"{DAYS[-2]}.parquet").unlink()
    job = build_defs(resources=build_resources(str(copy))).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=DAYS[-1],
        asset_selection=[
            dg.AssetKey("recall_evaluation"),
            dg.AssetKey("recall_champion"),
            dg.AssetKey("recall_candidates"),
        ],
    )
    assert result.success
    meta = {m.asset_key.to_user_string(): m.materialization.metadata for m in result.get_asset_materialization_events()}

    def table_of(name):
        return pq.read_table(copy / "lake" / name / f"{DAYS[-1]}.parquet")

    for name in ("recall_evaluation", "recall_champion", "recall_candidates"):
        table, m = table_of(name), meta[name]
        assert m["dagster/row_count"].value == table.num_rows > 0, name
        columns = m["dagster/column_schema"].schema.columns
        assert [c.name for c in columns] == table.column_names, name
        assert next(c.type for c in columns if c.name == "day") == "DATE"

    evaluation = meta["recall_evaluation"]
    assert {c.name: c.type for c in evaluation["dagster/column_schema"].schema.columns}["value"] == "DOUBLE"
    preview = [r.data for r in evaluation["ndcg_at_10"].records]
    assert {r["model"] for r in preview} == set(MODELS) | {"fusion_rrf", "fusion_weighted"}
    assert [r["value"] for r in preview] == sorted((r["value"] for r in preview), reverse=True)
    for r in preview:  # the preview and the plotted floats say the same
        assert r["value"] == pytest.approx(evaluation[f"ndcg_at_10_{r['model']}"].value, abs=1e-4)
        assert r["ci_low"] <= r["value"] <= r["ci_high"]

    (registry,) = [r.data for r in meta["recall_champion"]["registry_of_run"].records]
    (written,) = table_of("recall_champion").to_pylist()
    assert registry["decision"] == written["decision"] and registry["champion"] == written["champion"]
    assert registry["incumbent"] is None and registry["reason"] == written["reason"]
    decision = meta["recall_champion"]  # the day's own decision, as plain values
    assert decision["decision"].value == written["decision"] and decision["reason"].value == written["reason"]

    per_method = {r.data["method"]: r.data for r in meta["recall_candidates"]["per_method"].records}
    candidates = table_of("recall_candidates")
    assert set(per_method) == {"rrf", "weighted"}
    assert sum(r["candidates"] for r in per_method.values()) == candidates.num_rows
    rrf_users = {
        u
        for u, m in zip(candidates.column("user_id").to_pylist(), candidates.column("method").to_pylist(), strict=False)
        if m == "rrf"
    }
    assert per_method["rrf"]["users"] == len(rrf_users)


def _copy_root(root, tmp_path) -> Path:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    return copy


def _registry(copy, day):
    return (
        duckdb.connect()
        .execute(
            f"SELECT decision, champion, champion_day, incumbent, incumbent_day, reason FROM "
            f"read_parquet('{copy}/lake/recall_champion/*.parquet') WHERE day = DATE '{day}'"
        )
        .fetchall()
    )


@pytest.mark.slow
def test_rollback_to_an_older_model_serves_it(root, tmp_path, capsys):
    from recsys_assets.rollback import main
    from recsys_assets.services.registry import current_champion, serving_champion
    from resources import StorageResource

    copy = _copy_root(root, tmp_path)
    storage = StorageResource(data_root=str(copy))
    before = serving_champion(storage, DAYS[-1])
    target = ("ease", DAYS[-2]) if before != ("ease", DAYS[-2]) else ("item_cf", DAYS[-2])
    assert main(["--to", f"{target[0]}@{target[1]}", "--reason", "bad complaints", "--data-root", str(copy)]) == 0
    out = capsys.readouterr().out
    assert f"recall champion after {DAYS[-1]}: {target[0]}@{target[1]}" in out
    assert current_champion(storage, "2026-01-05") == target == serving_champion(storage, DAYS[-1])
    assert current_champion(storage, DAYS[-1]) != target or before == target  # days before are untouched
    rows = _registry(copy, DAYS[-1])
    (rolled,) = [r for r in rows if r[0] == "rollback"]
    assert rolled[1:3] == target and rolled[3:5] == (before or (None, None))
    assert "bad complaints" in rolled[5] and "checksums verified" in rolled[5]
    assert len(rows) == 2  # the day's own decision is kept next to the rollback
    # the catalog view shows it too
    con = duckdb.connect(str(copy / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM recall_champion WHERE decision = 'rollback'").fetchone() == (1,)
    # the same rollback again is refused: it is already serving
    assert main(["--to", f"{target[0]}@{target[1]}", "--data-root", str(copy)]) == 1
    assert "already the serving champion" in capsys.readouterr().err


@pytest.mark.slow
def test_rollback_refuses_a_corrupt_or_missing_target_by_name(root, tmp_path, capsys):
    from recsys_assets.rollback import main

    copy = _copy_root(root, tmp_path)
    directory = copy / "models/recall_ease" / DAYS[-2]
    target = sorted(directory.glob("*.npy"))[0]
    target.write_bytes(target.read_bytes()[:-8])  # truncated
    assert main(["--to", f"ease@{DAYS[-2]}", "--data-root", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "rollback refused" in err and target.name in err and "checksum" in err
    assert main(["--to", f"bpr@{DAYS[0]}", "--data-root", str(copy)]) == 1  # never trained (first day)
    assert f"recall_bpr/{DAYS[0]}" in capsys.readouterr().err
    assert main(["--to", "als-2026-01-03", "--data-root", str(copy)]) == 1
    assert "<model>@<YYYY-MM-DD>" in capsys.readouterr().err
    assert not list((copy / "lake/recall_champion").glob("*rollback*"))  # nothing recorded


@pytest.mark.slow
def test_the_next_days_gate_compares_against_the_rolled_back_champion(root, tmp_path):
    from recsys_assets.rollback import rollback
    from recsys_assets.services.registry import current_champion
    from resources import StorageResource

    copy = _copy_root(root, tmp_path)
    resources = build_resources(str(copy))
    storage = resources["storage"]
    done = rollback(storage, resources["model_store"], "item_cf", DAYS[-2], "test", day=DAYS[-2])
    assert done.superseded_by == [DAYS[-1]] and done.row["decision"] == "rollback"
    assert current_champion(StorageResource(data_root=str(copy)), DAYS[-1]) == ("item_cf", DAYS[-2])
    job = build_defs(resources=resources).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=DAYS[-1],
        asset_selection=[dg.AssetKey("recall_champion")],
    )
    assert result.success
    (row,) = _registry(copy, DAYS[-1])
    decision, champion, champion_day, incumbent, incumbent_day, reason = row
    assert (incumbent, incumbent_day) == ("item_cf", DAYS[-2])  # gated against the rolled-back model
    (value,) = (
        duckdb.connect()
        .execute(f"SELECT incumbent_value FROM '{copy}/lake/recall_champion/{DAYS[-1]}.parquet'")
        .fetchone()
    )
    assert value is not None and value >= 0  # it was evaluated on the day, on the same users
    if decision in ("rejected", "kept"):
        assert (champion, champion_day) == ("item_cf", DAYS[-2])
    else:
        assert decision == "promoted" and champion_day == DAYS[-1]
        assert f"item_cf@{DAYS[-2]}" in reason


@pytest.mark.slow
def test_training_data_without_shown_negatives_has_the_same_positives(root):
    """Recall consumers that need no impressions read only clicked/positive rows: same
    positives, ages and test truth as the full read, empty shown-not-chosen matrix."""
    from recsys_assets.services.training import load_day
    from resources import RecallSettings

    storage = build_resources(str(root))["storage"]
    full, full_test, full_info, version, _ = load_day(storage, DAYS[-1], RecallSettings(), DAYS[0], with_shown=True)
    lean, lean_test, lean_info, lean_version, _ = load_day(storage, DAYS[-1], RecallSettings(), DAYS[0])
    assert full.shown_negatives.nnz > full.positives.nnz > 0 and lean.shown_negatives.nnz == 0
    for a, b in (
        (full.positives, lean.positives),
        (full.days_ago, lean.days_ago),
        (full.seconds_ago, lean.seconds_ago),
        (full_test.relevant, lean_test.relevant),
    ):
        assert a.shape == b.shape and (a != b).nnz == 0
    # seconds_ago dates the same latest positive as days_ago, to the second, on every positive
    assert (lean.seconds_ago != 0).nnz == lean.positives.nnz == ((lean.seconds_ago != 0).multiply(lean.positives)).nnz
    days, seconds = lean.days_ago.tocoo(), lean.seconds_ago.tocsr()
    whole_days = np.floor(np.asarray(seconds[days.row, days.col]).ravel() / 86400)
    assert np.array_equal(whole_days, np.round(days.data))
    assert version == lean_version and full_info["train_pairs"] == lean_info["train_pairs"]


@pytest.mark.slow
def test_champion_comparison_reuses_the_evaluated_value_of_the_candidate(root):
    """The candidate's value on D is recall_evaluation's, on the same test users: the champion
    step takes it from the table instead of scoring the model again (and loads no data when
    there is no incumbent), and gets exactly what scoring gives."""
    from recsys_assets.core.storage import read_arrow
    from recsys_assets.services.promotion import compare_on_day

    res = build_resources(str(root))
    storage, store, recall = res["storage"], res["model_store"], res["recall"]
    model, day = "item_cf", DAYS[-1]  # a model's own value on D, whether or not it would be promoted
    (row,) = [
        r
        for r in read_arrow(storage.partition_path("recall_evaluation", day)).to_pylist()
        if r["model"] == model and r["segment"] == "all" and f"{r['metric']}@{r['k']}" == recall.champion_metric.lower()
    ]
    contenders = {"candidate": (model, day), "incumbent": ("popularity", DAYS[-2])}
    scored = compare_on_day(storage, store, recall, day, contenders, DAYS[0])
    reused = compare_on_day(storage, store, recall, day, contenders, DAYS[0], known={"candidate": row["value"]})
    assert scored["candidate"] == row["value"] and reused == scored and scored["incumbent"] > 0
    alone = {"candidate": contenders["candidate"]}
    assert compare_on_day(storage, store, recall, day, alone, DAYS[0], known={"candidate": -1.0}) == {"candidate": -1.0}


@pytest.mark.slow
def test_ease_session_kernel_is_configured_from_recall_settings(root, tmp_path):
    """RecallSettings.models["ease"] (its session kernel) reaches the recall_ease asset: the published
    model records it and holds other weights than plain EASE's (the window's times come from interactions)."""
    from recsys_assets.core.recall.models import load_model
    from resources import RecallSettings

    copy = _copy_root(root, tmp_path)
    plain = load_model(copy / "models/recall_ease" / DAYS[-1])
    assert plain.params["session_weight"] == 0.0
    settings = RecallSettings(models={"ease": {"session_weight": 2.0, "session_tau_seconds": 300.0}})
    defs = build_defs(resources=build_resources(str(copy), recall=settings))
    result = dg.materialize(
        [defs.get_assets_def("recall_ease")],
        partition_key=DAYS[-1],
        resources=build_resources(str(copy), recall=settings),
        selection=["recall_ease"],
    )
    assert result.success
    session = load_model(copy / "models/recall_ease" / DAYS[-1])
    assert session.params["session_weight"] == 2.0 and session.params["session_tau_seconds"] == 300.0
    assert np.isfinite(session.weights).all() and np.abs(session.weights - plain.weights).max() > 1e-4


def test_training_data_is_read_once_per_day_and_equals_a_fresh_read(root, monkeypatch):
    """recall_training_data(D) holds what every recall consumer of D reads: the same matrices,
    test truth and info as reading the interactions; load_day serves it without reading them."""
    from recsys_assets.services import training
    from resources import RecallSettings

    resources = build_resources(str(root))
    storage, store, recall = resources["storage"], resources["model_store"], RecallSettings()
    stored = training.read_training_data(storage, store, DAYS[-1], recall, DAYS[0])
    fresh = training.compute_day(storage, DAYS[-1], recall, DAYS[0], with_shown=True)
    assert stored is not None
    (data, test, info, version, days), (f_data, f_test, f_info, f_version, f_days) = stored, fresh
    for name in ("positives", "shown_negatives", "days_ago", "seconds_ago", "item_genres", "item_tags"):
        a, b = getattr(data, name), getattr(f_data, name)
        assert a.dtype == b.dtype and a.shape == b.shape and (a != b).nnz == 0, name
    assert data.genre_names == f_data.genre_names and np.array_equal(test.users, f_test.users)
    assert (test.relevant != f_test.relevant).nnz == 0 and (test.all_positive != f_test.all_positive).nnz == 0
    assert np.array_equal(info.pop("available_items"), f_info.pop("available_items"))
    assert (info.pop("consumed") != f_info.pop("consumed")).nnz == 0 and info == f_info
    assert (version, days) == (f_version, f_days)
    # with the store, no consumer reads the interactions again
    monkeypatch.setattr(training, "compute_day", lambda *a, **k: pytest.fail("read the interactions again"))
    assert training.load_day(storage, DAYS[-1], recall, DAYS[0], model_store=store)[3] == version


def test_training_data_of_other_settings_or_changed_inputs_is_not_used(root, tmp_path):
    from recsys_assets.services.training import read_training_data
    from resources import RecallSettings

    copy = tmp_path / "root"
    shutil.copytree(root, copy, symlinks=True)
    resources = build_resources(str(copy))
    storage, store = resources["storage"], resources["model_store"]
    assert read_training_data(storage, store, DAYS[-1], RecallSettings(), DAYS[0]) is not None
    assert read_training_data(storage, store, DAYS[-1], RecallSettings(click_weight=0.5), DAYS[0]) is None
    assert read_training_data(storage, store, DAYS[-1], RecallSettings(window_days=2), DAYS[0]) is None
    # an input re-materialized after the artifact (late data): read the interactions instead
    late = storage.partition_path("interactions", DAYS[-2])
    late.write_bytes(late.read_bytes())
    os.utime(late, ns=(late.stat().st_atime_ns, late.stat().st_mtime_ns + 1_000_000_000))
    assert read_training_data(storage, store, DAYS[-1], RecallSettings(), DAYS[0]) is None


def test_models_depend_on_the_days_training_data_and_it_on_the_declared_window(root):
    from recsys_assets.settings import Settings

    graph = build_defs(Settings(), resources=build_resources(str(root))).resolve_asset_graph()
    for name in MODELS:
        parents = graph.get(dg.AssetKey(f"recall_{name}")).parent_keys  # the window, once read; tuned params
        assert parents == {dg.AssetKey("recall_training_data"), dg.AssetKey("recall_tuning")}
    for window in (28, 5):
        settings = Settings(recall={"window_days": window})
        defs = build_defs(settings, resources=build_resources(str(root)))
        graph = defs.resolve_asset_graph()
        key = dg.AssetKey("recall_training_data")
        mapping = graph.get_partition_mapping(key, dg.AssetKey("interactions"))
        assert (mapping.start_offset, mapping.end_offset) == (-window, 0)


@pytest.mark.slow
def test_days_worked_on_side_by_side_publish_what_one_after_another_does(root, tmp_path):
    """The module's root worked on its two model days at once (RecallSettings.parallel_days = 2,
    the default); one day after the other gives every recall model the same published version
    (its content hash names it) and the same candidates, samples and recommendations files, so
    running days side by side changes speed only."""
    import hashlib

    from resources import RecallSettings

    copy = _copy_root(root, tmp_path)
    tables = ["recall_candidates", "ranking_samples", "recommendations"]

    def published() -> dict:
        models = {(n, d): os.readlink(copy / "models" / f"recall_{n}" / d) for n in MODELS for d in DAYS[-2:]}
        files = {
            (t, d): hashlib.sha256((copy / "lake" / t / f"{d}.parquet").read_bytes()).hexdigest()
            for t in tables
            for d in DAYS[-2:]
        }
        return models | files

    side_by_side = published()
    settings = RecallSettings(parallel_days=1)
    defs = build_defs(resources=build_resources(str(copy), recall=settings))
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[dg.AssetKey(f"recall_{name}") for name in MODELS] + [dg.AssetKey(t) for t in tables],
        tags={"dagster/asset_partition_range_start": DAYS[-2], "dagster/asset_partition_range_end": DAYS[-1]},
    )
    assert result.success
    one_after_another = published()
    assert one_after_another == side_by_side


def _led_by(lists, candidates, channel: str) -> float:
    """Share of the users with recall candidates whose list starts with `channel`'s own first
    candidate (the smallest in_<channel> rank among the user's candidates)."""
    import polars as pl

    best = (
        candidates.filter(pl.col(f"in_{channel}") > 0)
        .sort("user_id", f"in_{channel}")
        .group_by("user_id", maintain_order=True)
        .first()
        .select("user_id", pl.col("item_id").alias("best"))
    )
    first = lists.filter(pl.col("rank") == 1).join(best, on="user_id")
    return (first["item_id"] == first["best"]).mean() if first.height else 0.0


@pytest.mark.slow
def test_without_a_ranker_the_recall_champion_orders_the_lists_and_a_rollback_changes_them(root, tmp_path):
    """No ranker is promoted in this world (two model days: no samples to train one), so the
    serving recall champion decides the lists: its channel's items come first. Here no learned
    model beat popularity, so there is no champion and the fused order serves; rolling the
    champion back to a model makes that model's items lead, and another rollback changes them."""
    import polars as pl

    from recsys_assets.rollback import rollback
    from recsys_assets.services.online import OnlineRecommender
    from recsys_assets.services.registry import serving_champion, serving_ranker_day
    from recsys_assets.services.serving import recommend_day, scan_candidates

    copy = _copy_root(root, tmp_path)
    resources = build_resources(str(copy))
    storage, store = resources["storage"], resources["model_store"]
    day = DAYS[-1]
    assert serving_ranker_day(storage, day)[0] is None
    assert serving_champion(storage, day) is None
    published = pl.read_parquet(storage.partition_path("recommendations", day))
    candidates = scan_candidates(storage, day, resources["ranking"].rank_candidates).collect()
    fresh = set(pl.read_parquet(storage.partition_path("interactions", day))["user_id"].to_list())
    user = next(u for u in candidates["user_id"].unique().sort().to_list() if u not in fresh)

    def lists(name: str) -> tuple[dict, pl.DataFrame]:
        out = tmp_path / f"{name}.parquet"
        stats = recommend_day(day, storage, store, resources["ranking"], resources["recall"], DAYS[0], out=out)
        return stats, pl.read_parquet(out)

    stats, fused = lists("fused")
    assert stats["recall_champion"] is None
    assert fused.equals(published)  # the asset wrote the same lists

    served = {}
    for target in ("ease", "item_cf"):
        rollback(storage, store, target, DAYS[-2], "lists test", day=day)
        stats, served[target] = lists(target)
        assert stats["recall_champion"] == target
        assert _led_by(served[target], candidates, target) >= 0.9
        # the online path orders by the same champion: the batch list of a user with no newer activity
        online = OnlineRecommender(storage, store, resources["ranking"], resources["recall"], day=day)
        assert online.recall_champion == target
        answer = online.recommend(user, k=resources["ranking"].top_k)
        assert (
            answer.table["item_id"].to_list() == served[target].filter(pl.col("user_id") == user)["item_id"].to_list()
        )
    for target, other in (("ease", "item_cf"), ("item_cf", "ease")):
        assert _led_by(served[target], candidates, target) > _led_by(fused, candidates, target) + 0.2
        assert _led_by(served[target], candidates, target) > _led_by(served[other], candidates, target) + 0.2
    assert not served["ease"].equals(served["item_cf"])
