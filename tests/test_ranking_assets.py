"""The ranking stage as assets on a small synthetic world: point-in-time samples, one feature
path for training and serving, the funnel table, recommendations, and the online CLI."""

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest

from recsys_assets import cli
from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking import funnel
from recsys_assets.core.ranking.session_features import SessionState
from recsys_assets.definitions import build_defs, build_resources
from recsys_assets.services import serving
from recsys_assets.services.candidates import read_candidates
from recsys_assets.services.channels import load_channels
from recsys_assets.services.days import days_before
from recsys_assets.services.online import OnlineRecommender
from recsys_assets.services.promotion import beats_recall_only, decide_ranker
from recsys_assets.services.ranking import build_samples
from recsys_assets.services.registry import current_champion, serving_ranker_day
from resources.model_store import CorruptModelError

DAYS = [f"2026-01-0{d}" for d in range(1, 7)]
D = DAYS[-1]


@pytest.fixture(scope="module")
def root(built_world) -> Path:
    """DAYS generated and materialized end to end, models for the last 4 days (conftest.py):
    shared, read only; tests that change it work on a copy."""
    assert sorted(p.name for p in (built_world / "landing").iterdir() if p.is_dir()) == DAYS
    assert (
        sorted(p.name for p in (built_world / "models" / "recall_als").iterdir() if not p.name.startswith("."))
        == DAYS[-4:]
    )
    return built_world


@pytest.fixture(scope="module")
def res(root):
    return build_resources(str(root))


@pytest.mark.slow
def test_samples_hold_only_features_known_before_the_day(root, res):
    samples = pl.read_parquet(res["storage"].partition_path("ranking_samples", D))
    assert set(samples["kind"].unique()) == {"impressions", "candidates"}
    con = duckdb.connect()
    lake = root / "lake"
    # user impressions over the 28 days before D, recomputed from the interactions of earlier days only
    before = dict(
        con.execute(f"""SELECT user_id, count(*) FROM read_parquet('{lake}/interactions/*.parquet')
                                  WHERE NOT is_organic AND day < DATE '{D}' GROUP BY user_id""").fetchall()
    )
    users = samples.filter(pl.col("kind") == "impressions").unique("user_id").head(50)
    for user, value in zip(users["user_id"], users["u_impressions_28d"], strict=False):
        assert (0 if value is None else value) == before.get(user, 0)  # no features = no earlier activity
    # item impressions of the day before D only
    yesterday = dict(
        con.execute(f"""SELECT item_id, count(*) FROM read_parquet('{lake}/interactions/{DAYS[-2]}.parquet')
                                     WHERE NOT is_organic GROUP BY item_id""").fetchall()
    )
    items = samples.unique("item_id").head(50)
    for item, value in zip(items["item_id"], items["i_impressions_1d"], strict=False):
        assert (0 if value is None else value) == yesterday.get(item, 0)  # None: an item new on D
    # user x genre positives from earlier days only
    genre_pos = dict(
        ((u, i), n)
        for u, i, n in con.execute(f"""
        WITH hist AS (SELECT user_id, g AS genre, count(*) AS n
                      FROM read_parquet('{lake}/interactions/*.parquet') AS x
                      JOIN (SELECT item_id, unnest(genres) AS g FROM read_parquet('{lake}/raw_items/snapshot.parquet')) USING (item_id)
                      WHERE is_positive AND day < DATE '{D}' GROUP BY ALL)
        SELECT s.user_id, s.item_id, sum(h.n) FROM (SELECT DISTINCT user_id, item_id FROM samples) AS s
        JOIN (SELECT item_id, unnest(genres) AS g FROM read_parquet('{lake}/raw_items/snapshot.parquet')) AS ig USING (item_id)
        JOIN hist AS h ON h.user_id = s.user_id AND h.genre = ig.g GROUP BY ALL""").fetchall()
    )
    for row in samples.head(300).iter_rows(named=True):
        assert row["genre_positives"] == genre_pos.get((row["user_id"], row["item_id"]), 0)
    # channel scores come from models trained strictly before D
    for name in load_channels(res["model_store"], D, res["ranking"].channels):
        train_days = res["model_store"].verify(f"recall_{name}", D)["metadata"]["train_days"]
        assert train_days[-1] < D


@pytest.mark.slow
def test_training_and_serving_build_the_same_feature_vector(res):
    storage, store, ranking = res["storage"], res["model_store"], res["ranking"]
    model = serving.load_ranker(store, D)
    samples = pl.read_parquet(storage.partition_path("ranking_samples", D)).filter(pl.col("kind") == "candidates")
    pairs = samples.select("user_id", "item_id").head(200)
    online = OnlineRecommender(storage, store, ranking, res["recall"], day=D)
    served = F.feature_frame(online.ctx, funnel.serving_pairs(pairs, ranking.serving_surface))
    trained = pairs.join(samples, on=["user_id", "item_id"], how="left")
    served_x, trained_x = model.matrix(served), model.matrix(trained)
    # Channel scores are dot products computed in batches of different users: BLAS blocking
    # may change the last float32 bit. Everything else (ranks included) must be identical.
    scores = np.array([name.startswith("score_") for name in model.feature_names])
    np.testing.assert_array_equal(served_x[:, ~scores], trained_x[:, ~scores])
    np.testing.assert_allclose(served_x[:, scores], trained_x[:, scores], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_ranker_artifact_and_funnel_table(res):
    store, storage = res["model_store"], res["storage"]
    manifest = store.verify("ranker", D)
    meta = manifest["metadata"]
    assert meta["train_days"] == DAYS[-4:-2] and meta["valid_days"] == [DAYS[-2]] and meta["data_version"]
    assert not store.exists("ranker", DAYS[-3])  # too few earlier sample days: skipped, not faked
    con = duckdb.connect(str(storage.catalog_path), read_only=True)
    rows = con.execute(
        "SELECT scope, stage, metric, value, ci_low, ci_high FROM funnel_evaluation WHERE day = ?", [D]
    ).fetchall()
    funnel_rows = {(s, m): (v, lo, hi) for scope, s, m, v, lo, hi in rows if scope == "funnel"}
    for stage in ("recall_only", "recall_champion", "ranker", "ranker_rerank"):
        for metric in ("ndcg", "recall", "mrr"):
            v, lo, hi = funnel_rows[(stage, metric)]
            assert 0 <= lo <= v <= hi <= 1
        assert {"coverage", "intra_list_similarity", "latency_ms_per_user"} <= {m for s, m in funnel_rows if s == stage}
    # the order that serves without a ranker: the champion decided before D (this world has
    # one), whose lists are not the fused ones
    assert current_champion(storage, D) is not None
    compared = ("ndcg", "recall", "mrr", "coverage", "intra_list_similarity")
    assert any(funnel_rows[("recall_champion", m)] != funnel_rows[("recall_only", m)] for m in compared)
    slates = {(s, m) for scope, s, m, *_ in rows if scope == "slates"}
    assert {("popularity", "mrr"), ("ranker", "mrr"), ("ctr_binary", "auc"), ("ctr_binary", "logloss")} <= slates
    beats, why = beats_recall_only(storage, D)
    # the ranker must beat the stronger recall order: fused, or the champion's (what would serve instead)
    strongest = max(funnel_rows[("recall_only", "ndcg")][0], funnel_rows[("recall_champion", "ndcg")][0])
    assert beats == (funnel_rows[("ranker", "ndcg")][0] > strongest) and why
    (decision, champion, candidate_value) = con.execute(
        "SELECT decision, champion_day, candidate_value FROM ranker_champion WHERE day = ?", [D]
    ).fetchone()
    assert candidate_value == pytest.approx(funnel_rows[("ranker", "ndcg")][0])
    assert (decision == "promoted") == (champion == D) and (decision != "promoted" or beats)
    assert serving_ranker_day(storage, D)[0] == champion
    importance = con.execute(
        "SELECT count(*), sum(gain_share) FROM ranker_feature_importance WHERE model = 'lambdarank' AND day = ?", [D]
    ).fetchone()
    assert importance[0] == len(meta["feature_names"]) and importance[1] == pytest.approx(1.0)


def test_ranker_promotion_gate():
    promote = decide_ranker("2026-01-06", 0.20, 0.15, "2026-01-05", 0.19, tolerance=0.02)
    assert promote["decision"] == "promoted" and promote["champion_day"] == "2026-01-06"
    worse = decide_ranker("2026-01-06", 0.18, 0.15, "2026-01-05", 0.19, tolerance=0.02)  # > 2% below the incumbent
    assert worse["decision"] == "rejected" and worse["champion_day"] == "2026-01-05" and "worse" in worse["reason"]
    no_gain = decide_ranker("2026-01-06", 0.14, 0.15, None, None, tolerance=0.02)  # loses to recall-only
    assert no_gain["decision"] == "rejected" and no_gain["champion_day"] is None and "recall order" in no_gain["reason"]
    stale = decide_ranker("2026-01-06", 0.14, 0.15, "2026-01-05", 0.12, tolerance=0.02)  # incumbent lost too
    assert stale["champion_day"] is None
    missing = decide_ranker("2026-01-06", None, None, "2026-01-05", None, tolerance=0.02)
    assert missing["decision"] == "none" and missing["champion_day"] is None


@pytest.mark.slow
def test_recommendations_table_and_online_path_agree(res):
    storage, store = res["storage"], res["model_store"]
    recs = pl.read_parquet(storage.partition_path("recommendations", D))
    top_k = res["ranking"].top_k
    per_user = recs.group_by("user_id").agg(pl.col("rank").sort(), pl.len())
    assert per_user["len"].max() <= top_k
    assert all(r == list(range(1, len(r) + 1)) for r in per_user["rank"].to_list())
    history = serving.user_history(storage, days_before(D, res["recall"].window_days))
    assert recs.join(history, on=["user_id", "item_id"], how="inner").height == 0  # nothing already watched
    assert recs.filter(pl.col("channels").list.len() == 0).height == 0
    assert recs.filter(pl.col("because_you_watched").list.len() > 0).height > 0
    # the online path gives the batch list for a user with no activity newer than the models
    fresh = set(pl.read_parquet(storage.partition_path("interactions", D))["user_id"].to_list())
    with_history = set(history["user_id"].to_list())
    user = next(u for u in recs["user_id"].unique().sort().to_list() if u in with_history and u not in fresh)
    answer = OnlineRecommender(storage, store, res["ranking"], res["recall"], day=D).recommend(user, k=top_k)
    batch = recs.filter(pl.col("user_id") == user).sort("rank")
    assert answer.path == "known"
    assert answer.table["item_id"].to_list() == batch["item_id"].to_list()
    np.testing.assert_allclose(answer.table["score"].to_numpy(), batch["score"].to_numpy(), rtol=1e-6)


@pytest.mark.slow
def test_an_unknown_user_is_served_recent_popularity(res):
    """The cold path (online here; the batch shares popular_candidates) proposes the head of the
    day's recent_popularity list; the ranker orders it."""
    storage, store = res["storage"], res["model_store"]
    online = OnlineRecommender(storage, store, res["ranking"], res["recall"], day=D)
    answer = online.recommend(987654321, k=10)
    assert answer.path == "cold_start" and answer.table.height == 10
    assert all(c == ["recent_popularity"] for c in answer.table["channels"].to_list())
    model = load_channels(store, D, ["recent_popularity"])["recent_popularity"].model
    head = np.argsort(-model.score(np.zeros(1, np.int64))[0], kind="stable")[: res["ranking"].rank_candidates + 50]
    assert set(answer.table["item_id"].to_list()) <= {int(online.item_of[i]) for i in head}


def _cli(capsys, *args) -> dict:
    assert cli.main(["recommend", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_cli_answers_known_unknown_cold_and_fold_in_users(root, res, capsys):
    storage = res["storage"]
    recs = pl.read_parquet(storage.partition_path("recommendations", D))
    with_history = set(serving.user_history(storage, days_before(D, 28))["user_id"].to_list())
    known = min(set(recs["user_id"].to_list()) & with_history - set(serving.user_history(storage, [D])["user_id"]))
    out = _cli(capsys, "--user", str(known), "--k", "5", "--explain", "--data-root", str(root))
    assert out["path"].startswith("known") and len(out["items"]) == 5 and out["day"] == D
    assert {"recall_ms", "rank_ms", "rerank_ms", "total_ms"} <= set(out["timings_ms"])
    assert all("because_you_watched" in item and "top_features" in item for item in out["items"])
    # a person reads titles and a plain reason, not bare ids
    titles = dict(pl.read_parquet(storage.partition_path("raw_items")).select("item_id", "title").iter_rows())
    assert all(item["title"] == titles[item["item_id"]] for item in out["items"])
    assert all(item["reason"] for item in out["items"])
    for item in out["items"]:
        if item["because_you_watched"]:
            assert item["reason"] == "because you watched " + " and ".join(
                titles[i] for i in item["because_you_watched"][:2]
            )
    unknown = _cli(capsys, "--user", "987654321", "--data-root", str(root))
    assert unknown["path"] == "cold_start" and len(unknown["items"]) == 10
    users = set(pl.read_parquet(storage.partition_path("user_id_dictionary"))["id"].to_list())
    active = set(serving.user_history(storage, days_before(D, 28) + [D])["user_id"].to_list())
    cold = min(users - active)  # known to the dictionary, no positive in the window
    assert _cli(capsys, "--user", str(cold), "--data-root", str(root))["path"] == "cold_start"
    newly_active = sorted(set(serving.user_history(storage, [D])["user_id"].to_list()))[0]
    assert _cli(capsys, "--user", str(newly_active), "--data-root", str(root))["path"] == "known+fold_in"


@pytest.mark.slow
def test_cli_names_a_corrupt_ranker_file(root, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    ranker_day, _ = serving_ranker_day(build_resources(str(copy))["storage"], D)  # the one the CLI loads
    target = next((copy / "models" / "ranker" / ranker_day).glob("lambdarank.txt"))
    target.resolve().write_text(target.resolve().read_text()[:1000])  # truncated
    assert cli.main(["recommend", "--user", "1", "--data-root", str(copy)]) == 2
    assert "lambdarank.txt" in capsys.readouterr().err
    with pytest.raises(CorruptModelError, match="lambdarank.txt"):
        serving.load_ranker(build_resources(str(copy))["model_store"], ranker_day)


@pytest.mark.slow
def test_sources_without_impressions_get_sampled_negatives(root, tmp_path):
    copy = tmp_path / "noimp"
    shutil.copytree(root, copy, symlinks=True)
    res = build_resources(str(copy))
    path = res["storage"].partition_path("interactions", D)
    organic = pl.read_parquet(path).filter(pl.col("is_positive")).with_columns(pl.lit(True).alias("is_organic"))
    organic.write_parquet(path)  # ratings-style day: positives only, nothing shown
    frame, info = build_samples(res["storage"], res["model_store"], res["ranking"], res["recall"], D, DAYS[0])
    assert info["rows_impressions"] == 0 and info["rows_sampled"] > 0
    sampled = frame.filter(pl.col("kind") == "sampled")
    n_pos = sampled.filter(pl.col("label") > 0).height
    assert sampled.height == n_pos * (1 + res["ranking"].negative_ratio)


@pytest.mark.slow
def test_candidate_groups_go_as_deep_as_sample_candidates(res):
    """The ranker learns from sample_candidates per user (deeper than the rank_candidates it
    serves): each candidate group holds the user's first RRF candidates to that depth, no more."""
    storage, ranking = res["storage"], res["ranking"]
    assert ranking.sample_candidates > ranking.rank_candidates
    for depth in (ranking.rank_candidates // 4, ranking.sample_candidates):
        frame, info = build_samples(
            storage,
            res["model_store"],
            ranking.model_copy(update={"sample_candidates": depth}),
            res["recall"],
            D,
            DAYS[0],
        )
        groups = frame.filter(pl.col("kind") == "candidates")
        assert info["sample_candidates"] == depth and groups.height > 0
        allowed = read_candidates(storage, D, depth).select("user_id", "item_id")
        assert groups.join(allowed, on=["user_id", "item_id"], how="anti").height == 0
        sizes = groups.group_by("request_id").len()["len"]
        assert sizes.max() == min(depth, res["recall"].candidates_k)
    assert sizes.max() > ranking.rank_candidates  # the default depth reaches past the served candidates


@pytest.mark.slow
def test_max_users_per_day_samples_whole_users_for_samples_and_funnel(root, tmp_path):
    """The scale knob keeps at most N users per day, each with all their rows, in both the
    training samples and the funnel's evaluated users (a copy of the data root is used)."""
    import shutil

    from resources import RankingSettings

    copy = tmp_path / "root"
    shutil.copytree(root, copy, symlinks=True)
    full = pl.read_parquet(copy / "lake" / "ranking_samples" / f"{D}.parquet")
    cap = 25
    defs = build_defs(resources=build_resources(str(copy), ranking=RankingSettings(max_users_per_day=cap)))
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey("ranking_samples"), dg.AssetKey("funnel_evaluation")],
        partition_key=D,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    capped = pl.read_parquet(copy / "lake" / "ranking_samples" / f"{D}.parquet")
    assert 0 < capped["user_id"].n_unique() <= cap < full["user_id"].n_unique()
    # every kept user keeps all of their rows
    kept = full.filter(pl.col("user_id").is_in(capped["user_id"].unique()))
    assert kept.group_by("kind").len().sort("kind").equals(capped.group_by("kind").len().sort("kind"))
    funnel_users = pl.read_parquet(copy / "lake" / "funnel_evaluation" / f"{D}.parquet").filter(
        (pl.col("scope") == "funnel") & (pl.col("metric") == "ndcg")
    )["n"]
    assert 0 < funnel_users.max() <= cap


@pytest.mark.slow
def test_recommendations_do_not_depend_on_the_serving_batch(root, tmp_path):
    """serving_batch_users only bounds memory: batches of 37 users (cold-start users spread
    over many batches) give exactly the partition of one batch, and every "because you
    watched" list is the user's watched items most similar to the recommended one."""
    from resources import RankingSettings

    copy = tmp_path / "root"
    shutil.copytree(root, copy, symlinks=True)
    whole = pl.read_parquet(copy / "lake" / "recommendations" / f"{D}.parquet")
    defs = build_defs(resources=build_resources(str(copy), ranking=RankingSettings(serving_batch_users=37)))
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey("recommendations")], partition_key=D, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    batched = pl.read_parquet(copy / "lake" / "recommendations" / f"{D}.parquet")
    assert batched["user_id"].n_unique() > 37 * 3
    assert batched.equals(whole)
    assert not list((copy / ".tmp").glob("recommendations-*"))  # spilled parts are cleaned up
    # because_you_watched by brute force, row by row
    res = build_resources(str(copy))
    storage, store = res["storage"], res["model_store"]
    history = serving.user_history(storage, days_before(D, res["recall"].window_days))
    ctx = serving.feature_context(
        storage, store, D, res["ranking"].channels, res["recall"], res["ranking"].rank_depth, None
    )
    ids, vectors = serving.item_vectors(ctx, funnel.ItemAttributes.from_context(ctx))
    checked = 0
    for row in batched.filter(pl.col("because_you_watched").list.len() > 0).head(200).iter_rows(named=True):
        watched = history.filter(pl.col("user_id") == row["user_id"])["item_id"].to_numpy()
        watched = watched[np.isin(watched, ids)]
        target = vectors[np.searchsorted(ids, row["item_id"])]
        sims = vectors[np.searchsorted(ids, watched)] @ target
        best = watched[np.argsort(-sims, kind="stable")[: res["ranking"].explain_history_items]]
        assert row["because_you_watched"] == [int(i) for i in best if sims[watched == i][0] > 0]
        checked += 1
    assert checked == 200


@pytest.mark.slow
def test_explain_top_n_zero_serves_without_top_features(root, res):
    """The L tier's explain_top_n = 0 (no TreeSHAP): lists as usual, top_features empty."""
    from resources import RankingSettings

    storage, store = res["storage"], res["model_store"]
    ranker_day, _ = serving_ranker_day(storage, D)
    assert ranker_day is not None
    model = serving.load_ranker(store, ranker_day)
    ctx = serving.feature_context(storage, store, D, model.channel_names, res["recall"], model.rank_depth, DAYS[0])
    candidates = read_candidates(storage, D, 50)
    history = serving.user_history(storage, days_before(D, res["recall"].window_days))
    settings = RankingSettings(explain_top_n=0)
    out = serving.recommend_users(ctx, model, candidates, history, settings)
    assert out.height > 0 and out["stage"].unique().to_list() == ["ranker_rerank"]
    assert out["top_features"].list.len().max() == 0
    assert out.filter(pl.col("because_you_watched").list.len() > 0).height > 0
    explained = serving.recommend_users(ctx, model, candidates, history, RankingSettings())
    assert explained.select("user_id", "item_id").equals(out.select("user_id", "item_id"))


@pytest.mark.slow
def test_serving_reads_rank_features_from_the_recall_lists(res):
    """rank_<channel> of a candidate row comes from recall_candidates' channel ranks (no second
    search): exactly what the search over the channel with recall's exclusions gives."""
    storage, store = res["storage"], res["model_store"]
    ranker_day, _ = serving_ranker_day(storage, D)
    model = serving.load_ranker(store, ranker_day)
    assert model.rank_depth == res["ranking"].rank_depth
    ctx = serving.feature_context(storage, store, D, model.channel_names, res["recall"], model.rank_depth, DAYS[0])
    candidates = read_candidates(storage, D, 50)
    assert (candidates["channel_depth"] == res["recall"].candidates_k).all()
    assert {f"in_{c}" for c in ctx.channels} <= set(candidates.columns)
    pairs = funnel.serving_pairs(candidates, res["ranking"].serving_surface)
    reused = F.feature_frame(ctx, pairs)
    searched = F.feature_frame(ctx, pairs.drop("channel_depth"))
    ranks = [f"rank_{c}" for c in ctx.channels]
    assert reused.select(ranks).equals(searched.select(ranks))
    assert (reused["rank_als"] <= model.rank_depth).mean() > 0.5
    # a shallower list than the ranker's depth is searched instead of trusted
    shallow = F.feature_frame(
        ctx,
        pairs.with_columns(
            pl.lit(1, pl.Int32).alias("channel_depth"), *(pl.lit(0).alias(f"in_{c}") for c in ctx.channels)
        ),
    )
    assert shallow.select(ranks).equals(searched.select(ranks))


def test_ranker_trains_only_on_samples_of_one_rank_depth():
    """A ranker is served with the rank_<channel> depth it learned, so its samples must agree
    on one (recorded per row) and samples from before the depth was recorded are refused."""
    from recsys_assets.services.errors import MissingInput
    from recsys_assets.services.ranking import samples_rank_depth

    assert samples_rank_depth(pl.DataFrame({"rank_depth": [100, 100, 100]}), []) == 100
    with pytest.raises(MissingInput, match=r"rank_depth \[100, 200\]"):
        samples_rank_depth(pl.DataFrame({"rank_depth": [100, 200]}), [])
    with pytest.raises(MissingInput, match="unrecorded"):
        samples_rank_depth(pl.DataFrame({"kind": ["impressions"]}), [])
    with pytest.raises(MissingInput, match="unrecorded"):
        samples_rank_depth(pl.DataFrame({"rank_depth": [None, None]}, schema={"rank_depth": pl.Int32}), [])


@pytest.mark.slow
def test_candidates_of_a_day_without_the_partition_are_computed_for_the_asked_users(root, tmp_path):
    """A ranker's training day needs only its sampled users' candidate lists: without the
    recall_candidates partition they are computed for those users by the same code, row for
    row what the partition holds, and the samples built on them are the same."""
    from recsys_assets.services.candidates import day_candidates

    copy = tmp_path / "copy"  # the partition is hidden for a while: on a copy of the shared world
    shutil.copytree(root, copy, symlinks=True)
    res = build_resources(str(copy))
    storage, store, recall, ranking = res["storage"], res["model_store"], res["recall"], res["ranking"]
    stored = read_candidates(storage, D, ranking.rank_candidates)
    users = np.unique(stored["user_id"].to_numpy())[::3]
    asked = np.concatenate([users, [10**9]])  # an unknown user is simply absent
    computed = day_candidates(storage, store, recall, D, ranking.rank_candidates, asked, DAYS[0], from_partition=False)
    read = day_candidates(storage, store, recall, D, ranking.rank_candidates, asked, DAYS[0])
    assert len(users) > 50 and computed.height > 1000
    assert computed.sort("user_id", "recall_rank").equals(read.sort("user_id", "recall_rank"))
    # the caller's own load_day result (funnel_truth passes it) gives the same rows
    from recsys_assets.services.training import load_day

    data, _, info, _, _ = load_day(storage, D, recall, DAYS[0])
    given = day_candidates(
        storage, store, recall, D, ranking.rank_candidates, asked, DAYS[0], from_partition=False, day_data=(data, info)
    )
    assert given.equals(computed)
    path = storage.partition_path("recall_candidates", D)
    hidden = path.with_suffix(".hidden")
    with_partition, _ = build_samples(storage, store, ranking, recall, D, DAYS[0])
    path.rename(hidden)
    try:
        without, info = build_samples(storage, store, ranking, recall, D, DAYS[0])
    finally:
        hidden.rename(path)
    assert info["rows_candidates"] > 0
    keys = ["kind", "request_id", "item_id"]
    assert without.sort(keys).equals(with_partition.sort(keys))
    # a partition of the recently active users only (candidates_recent_days, a ratings
    # source's default) is completed by the lists of the other users asked for, row for row
    # what a partition of every user holds
    full = pl.read_parquet(path)
    full.filter(pl.col("user_id").is_in(users[::2].tolist())).write_parquet(path)
    recent = recall.model_copy(update={"candidates_recent_days": 1})
    completed = day_candidates(storage, store, recent, D, ranking.rank_candidates, asked, DAYS[0])
    assert completed.sort("user_id", "recall_rank").equals(computed.sort("user_id", "recall_rank"))
    # without the setting the partition is taken as complete: the missing users stay missing
    partial = day_candidates(storage, store, recall, D, ranking.rank_candidates, asked, DAYS[0])
    assert set(partial["user_id"].to_list()) == set(users[::2].tolist())


@pytest.mark.slow
def test_a_live_session_reaches_the_ranker_online_and_through_the_cli(root, res, capsys, tmp_path):
    """recsys recommend --session: the session's views become request-time features of the
    candidates (an item the session just looked at gets session x item features), the answer
    changes with them, and a bad session file is a clear error, not a traceback."""
    storage, store = res["storage"], res["model_store"]
    online = OnlineRecommender(storage, store, res["ranking"], res["recall"], day=D)
    recs = pl.read_parquet(storage.partition_path("recommendations", D))
    with_history = set(serving.user_history(storage, days_before(D, 28))["user_id"].to_list())
    user = min(set(recs["user_id"].to_list()) & with_history)
    plain = online.recommend(user, k=50)
    looked_at = [int(i) for i in plain.table["item_id"].to_list()[-3:]]  # the bottom of its list
    at = dt.datetime(2026, 1, 6, 20, 0, tzinfo=dt.UTC)
    session = SessionState("live")
    for n, item in enumerate(looked_at * 2):
        session.add(item, "view", at - dt.timedelta(seconds=60 - n))
    session.add(looked_at[0], "view", at + dt.timedelta(seconds=5))  # after the request: never read
    featured = session.request(
        funnel.serving_pairs(pl.DataFrame({"user_id": [user] * 2, "item_id": [looked_at[0], 10**9]}), None), at
    )
    frame = F._with_request_features(featured, session.log())
    assert frame["s_item_views"].to_list() == [2, 0] and frame["s_actions"].to_list() == [6, 6]
    live = online.recommend(user, k=50, session=session, at=at)
    assert live.table["item_id"].to_list() != plain.table["item_id"].to_list()
    path = tmp_path / "session.jsonl"
    path.write_text(
        "\n".join(json.dumps({"item_id": i, "type": "view", "occurred_at": "2026-01-06T19:59:00Z"}) for i in looked_at)
    )
    out = _cli(capsys, "--user", str(user), "--k", "5", "--session", str(path), "--data-root", str(root))
    assert len(out["items"]) == 5
    path.write_text('{"item_id": "x", "type": "view", "occurred_at": "2026-01-06T19:59:00Z"}')
    assert cli.main(["recommend", "--user", str(user), "--session", str(path), "--data-root", str(root)]) == 2
    assert "session event 1" in capsys.readouterr().err
