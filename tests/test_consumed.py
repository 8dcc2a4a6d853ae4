"""Recommendations never include an item the user already consumed, whatever its age: a
world whose recall window (3 days) is much shorter than its history, so most consumed items
are older than the window, checked over every served list (batch, candidates, online)."""

import os
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest

from recsys_assets.core.generator import GeneratorConfig, generate
from recsys_assets.definitions import build_defs, build_resources
from recsys_assets.quickstart import materialize_all
from recsys_assets.services.online import OnlineRecommender
from recsys_assets.settings import RecallConfig, Settings

DAYS = [f"2026-01-0{d}" for d in range(1, 8)]
D = DAYS[-1]
WINDOW = 3


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("consumed_world")
    generate(GeneratorConfig(n_users=250, n_items=120, days=len(DAYS), impressions_per_day=2_500, seed=5), root)
    settings = Settings.load(data_root=str(root), recall=RecallConfig(window_days=WINDOW))
    materialize_all(build_defs(settings), DAYS, dg.DagsterInstance.ephemeral(), model_days=1)
    return root


@pytest.fixture(scope="module")
def settings(world) -> Settings:
    return Settings.load(data_root=str(world), recall=RecallConfig(window_days=WINDOW))


@pytest.fixture(scope="module")
def res(settings):
    return build_resources(settings=settings)


def consumed(root: Path, before: str, since: str | None = None) -> pl.DataFrame:
    """(user_id, item_id) watched, played or rated (any value), or positive, on days before
    `before` (and from `since`), recomputed from the interactions."""
    lower = f"AND day >= DATE '{since}'" if since else ""
    return (
        duckdb.connect()
        .sql(f"""SELECT DISTINCT user_id, item_id FROM read_parquet('{root}/lake/interactions/*.parquet')
                 WHERE (played OR rating IS NOT NULL OR is_positive) AND day < DATE '{before}' {lower}""")
        .pl()
    )


def old_only(root: Path) -> pl.DataFrame:
    """Pairs consumed before the recall window of D and not again inside it."""
    start = (date.fromisoformat(D) - timedelta(days=WINDOW)).isoformat()
    return consumed(root, start).join(consumed(root, D, since=start), on=["user_id", "item_id"], how="anti")


@pytest.mark.slow  # a 7-day world materialized end to end
def test_the_world_has_consumption_older_than_the_window(world):
    assert old_only(world).height > 100


@pytest.mark.slow  # a 7-day world materialized end to end
def test_batch_recommendations_and_candidates_skip_everything_consumed(world, res):
    storage = res["storage"]
    seen = consumed(world, D)
    recs = pl.read_parquet(storage.partition_path("recommendations", D))
    assert recs["user_id"].n_unique() > 100
    assert recs.join(seen, on=["user_id", "item_id"], how="inner").height == 0
    candidates = pl.read_parquet(storage.partition_path("recall_candidates", D))
    assert candidates.height > 0
    assert candidates.join(seen, on=["user_id", "item_id"], how="inner").height == 0


@pytest.mark.slow  # a 7-day world materialized end to end
def test_online_lists_skip_everything_consumed(world, res):
    storage = res["storage"]
    online = OnlineRecommender(storage, res["model_store"], res["ranking"], res["recall"], day=D)
    # the online path also knows D's own interactions
    seen = consumed(world, (date.fromisoformat(D) + timedelta(days=1)).isoformat())
    users = pl.read_parquet(storage.partition_path("user_id_dictionary"))["id"].sort().to_list()
    served = []
    for user in [*users, 987654321]:
        answer = online.recommend(user, k=20)
        served.append(answer.table.select(pl.lit(user, pl.Int64).alias("user_id"), "item_id"))
    served_pairs = pl.concat(served)
    assert served_pairs["user_id"].n_unique() == len(users) + 1
    assert served_pairs.join(seen, on=["user_id", "item_id"], how="inner").height == 0
    assert np.all(served_pairs.group_by("user_id").len()["len"].to_numpy() > 0)


def test_the_consumed_rule(tmp_path):
    """Played (a play start or a watch, any completion), rated (any value) or positive: consumed.
    An impression, a click without a play, a dislike: not."""
    from recsys_assets.core.training_data import load_consumed

    rows = [  # user, item, played, rating, is_positive, clicked, disliked
        (1, 10, False, None, False, False, False),  # shown only
        (1, 11, False, None, False, True, False),  # clicked, never played
        (1, 12, True, None, False, True, False),  # play start, no watch row
        (2, 10, True, 2.0, False, False, False),  # MovieLens-style rating 2: a watch at completion 0.3
        (2, 11, False, 1.0, False, False, False),  # a rating alone
        (3, 12, False, None, True, False, False),  # a like without a watch (a positive)
        (3, 10, False, None, False, False, True),  # a dislike alone
    ]
    columns = ["user_id", "item_id", "played", "rating", "is_positive", "clicked", "disliked"]
    frame = pl.DataFrame(rows, schema=columns, orient="row")
    files = [tmp_path / "2026-01-01.parquet", tmp_path / "2026-01-02.parquet"]
    frame.head(3).write_parquet(files[0])
    frame.tail(4).write_parquet(files[1])
    pl.DataFrame({"id": [1, 2, 3], "index": [2, 0, 1]}).write_parquet(tmp_path / "users.parquet")
    pl.DataFrame({"id": [10, 11, 12], "index": [0, 1, 2]}).write_parquet(tmp_path / "items.parquet")
    matrix = load_consumed(files, tmp_path / "users.parquet", tmp_path / "items.parquet").tocoo()
    user_of, item_of = np.array([2, 3, 1]), np.array([10, 11, 12])
    pairs = sorted(zip(user_of[matrix.row].tolist(), item_of[matrix.col].tolist(), strict=True))
    assert pairs == [(1, 12), (2, 10), (2, 11), (3, 12)]
    assert matrix.shape == (3, 3) and set(matrix.data.tolist()) == {1.0}
    empty = load_consumed([], tmp_path / "users.parquet", tmp_path / "items.parquet")
    assert empty.shape == (3, 3) and empty.nnz == 0


def as_pairs(root: Path, matrix) -> pl.DataFrame:
    """(user_id, item_id) of a users × items matrix of dictionary indices."""
    coo = matrix.tocoo()
    users = pl.read_parquet(root / "lake" / "user_id_dictionary" / "snapshot.parquet").sort("index")["id"]
    items = pl.read_parquet(root / "lake" / "item_id_dictionary" / "snapshot.parquet").sort("index")["id"]
    return pl.DataFrame({"user_id": users.to_numpy()[coo.row], "item_id": items.to_numpy()[coo.col]})


@pytest.mark.slow  # a 7-day world materialized end to end
def test_training_data_holds_the_whole_history_and_an_old_day_makes_it_stale(world, res, settings):
    from recsys_assets.services.training import consumed_before, read_training_data

    storage, store, recall = res["storage"], res["model_store"], res["recall"]
    stored = read_training_data(storage, store, D, recall, settings.start_date)
    assert stored is not None
    _, test, info, _, train_days = stored
    assert train_days == DAYS[-1 - WINDOW : -1]
    expected = consumed(world, D).sort("user_id", "item_id")
    assert as_pairs(world, info["consumed"]).sort("user_id", "item_id").equals(expected)
    assert as_pairs(world, consumed_before(storage, D, settings.start_date)).sort("user_id", "item_id").equals(expected)
    # an item consumed before D is never a relevant item of D (the evaluation's target)
    assert test.relevant.multiply(info["consumed"]).nnz == 0
    # a day older than the window changed: the artifact is stale, read again from the lake
    oldest = storage.partition_path("interactions", DAYS[0])
    stat = oldest.stat()
    try:
        os.utime(oldest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert read_training_data(storage, store, D, recall, settings.start_date) is None
    finally:
        os.utime(oldest, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert read_training_data(storage, store, D, recall, settings.start_date) is not None
