"""A long source's held-out period: a small MovieLens-format release (50 days, the last ones held
out) adapted and materialized as a user would (one history partition, daily partitions after
it), then holdout_evaluation checked against an independent count of u.data: the test users and
their positives, items consumed before the period never recommended nor counted as hits, warm
and cold users apart, the baselines beside every model. Also: ages in a history partition are
the events' own (recency-weighted models see months, not one day)."""

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest

from recsys_assets import adapt, quickstart
from recsys_assets.core.adapters import movielens
from recsys_assets.definitions import build_defs
from recsys_assets.settings import Settings

pytestmark = pytest.mark.slow  # the world: ingestion, dictionaries and every recall model (~30 s)

DAY0 = 1759276800  # 2025-10-01T00:00:00Z
N_DAYS = 50
K = 10


def ts(day: int, sec: int) -> int:
    return DAY0 + day * 86400 + sec


def ratings() -> list[tuple[int, int, int, int]]:
    """(user, item, rating, unix time). History (days 0-39): item j (1-10) rated 5 by users 1 to
    30 - 2j, items 11 and 12 by users 21-28 and 23-28 in the last days (every item has its own
    number of positives: a deterministic all-time popularity without ties; recency lifts 11 and
    12); low ratings (consumed, not positives) of item 11 by users 3-18 and users 29 and 30, who
    have no positive (cold). Held out (days 40-49): every user 1-40 rates one item 5, the even
    ones a second item 4 or 2 (users 31-40 are new), and user 1 rates item 1 again (consumed
    before: never a hit) and item 12."""
    rows = []
    for j in range(1, 11):
        for u in range(1, 31 - 2 * j):
            rows.append((u, j, 5, ts((u * 7 + j * 3) % 40, u * 60 + j)))
    rows += [(u, 11, 5, ts(35 + u % 5, 70 + u)) for u in range(21, 29)]
    rows += [(u, 12, 4, ts(36 + u % 4, 80 + u)) for u in range(23, 29)]
    rows += [(u, 11, 2, ts(u, 7)) for u in range(3, 19, 3)]
    rows += [(29, 12, 1, ts(5, 1)), (30, 11, 2, ts(9, 1))]
    for u in range(1, 41):
        first, second = (u * 5) % 12 + 1, (u * 7 + 3) % 12 + 1
        rows.append((u, first, 5, ts(40 + (u % 10) // 3, 100 + u)))
        if u % 2 == 0 and second != first:
            rows.append((u, second, 4 if u % 4 else 2, ts(41 + u % 9, 200 + u)))
    rows += [(1, 1, 5, ts(49, 999)), (1, 12, 5, ts(44, 998))]
    return rows


def write_release(folder: Path) -> Path:
    folder.mkdir(parents=True)
    flags = "|".join("1" if i == 5 else "0" for i in range(19))
    (folder / "u.item").write_bytes(
        "".join(f"{i}|Film {i} (1995)|01-Jan-1995||http://x|{flags}\n" for i in range(1, 13)).encode("latin-1")
    )
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(movielens.ML100K_GENRES)))
    (folder / "u.user").write_text("".join(f"{u}|30|M|other|00000\n" for u in range(1, 41)))
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings()))
    return folder


def utc_day(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).date().isoformat()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Settings]:
    """The release adapted and everything holdout_evaluation reads materialized, phase by phase
    as the quickstart does (daily layers over every partition, recall for evaluation_start)."""
    tmp = tmp_path_factory.mktemp("holdout")
    root = tmp / "data"
    marker = adapt.prepare_source("movielens", write_release(tmp / "ml"), root)
    settings = Settings.load(data_root=str(root), executor="in_process")
    defs = build_defs(settings)
    graph = defs.resolve_asset_graph()
    needed = dg.AssetSelection.assets("holdout_evaluation").upstream().resolve(graph)
    days = quickstart.partition_days(settings, marker["last_day"])
    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    for phase, partitioned, is_model in quickstart._phases(defs):
        selection = sorted(phase & needed)
        if not selection:
            continue
        run_days = [settings.evaluation_start] if is_model else days
        tags = (
            {"dagster/asset_partition_range_start": run_days[0], "dagster/asset_partition_range_end": run_days[-1]}
            if partitioned
            else {}
        )
        assert job.execute_in_process(instance=instance, asset_selection=selection, tags=tags).success, selection
    return root, settings


def expected(settings: Settings) -> dict:
    """The protocol computed from u.data alone: test users, their relevant items, warm users."""
    start = settings.evaluation_start
    consumed, held, warm = set(), {}, set()
    for u, i, r, t in ratings():
        if utc_day(t) < start:
            consumed.add((u, i))
            if r >= 4:
                warm.add(u)
        elif r >= 4:
            held.setdefault(u, set()).add(i)
    relevant = {u: {i for i in items if (u, i) not in consumed} for u, items in held.items()}
    relevant = {u: items for u, items in relevant.items() if items}
    return {"relevant": relevant, "consumed": consumed, "warm": warm}


def table(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "lake/holdout_evaluation/snapshot.parquet")


def test_the_source_has_one_history_partition_and_a_held_out_period(world):
    root, settings = world
    # the adapter's cut (the last 20% of the ratings) falls on day 40
    assert settings.history_start == "2025-10-01" and settings.evaluation_start == "2025-11-10"
    assert settings.start_date == "2025-11-09"  # the history partition: days 0-39
    assert settings.recall.window_days is None


def test_ages_in_the_history_partition_are_the_events_own(world):
    """days_ago of a positive in the one history partition is evaluation_start - 1 - its own UTC
    day (not the partition's): recency-weighted models see the months of the history."""
    root, settings = world
    from recsys_assets.services.lake import Lake
    from recsys_assets.services.model_store import ModelStore
    from recsys_assets.services.training import read_training_data

    stored = read_training_data(
        Lake(data_root=str(root)),
        ModelStore(models_root=settings.models_root),
        settings.evaluation_start,
        settings.recall,
        settings.start_date,
    )
    assert stored is not None
    data = stored[0]
    users = dict(pl.read_parquet(root / "lake/user_id_dictionary/snapshot.parquet").select("id", "index").iter_rows())
    items = dict(pl.read_parquet(root / "lake/item_id_dictionary/snapshot.parquet").select("id", "index").iter_rows())
    start = date.fromisoformat(settings.evaluation_start)
    want = {
        (users[u], items[i]): (start - date.fromisoformat(utc_day(t))).days - 1
        for u, i, r, t in ratings()
        if r >= 4 and utc_day(t) < settings.evaluation_start
    }
    coo = data.days_ago.tocoo()
    got = {(int(r), int(c)): round(float(v)) for r, c, v in zip(coo.row, coo.col, coo.data, strict=True)}
    assert got == want
    assert max(want.values()) == 39 and min(want.values()) == 0


def test_users_and_positives_are_the_held_out_ones(world):
    root, settings = world
    truth = expected(settings)
    rows = table(root)
    assert set(rows["day"].cast(pl.String)) == {settings.evaluation_start}
    assert set(rows["test_end"]) == {"2025-11-19"}  # the last held-out partition
    counts = {
        r["segment"]: (r["n_users"], r["n_positives"])
        for r in rows.filter((pl.col("model") == "popularity_all_time") & (pl.col("metric") == "ndcg")).to_dicts()
    }
    warm = {u for u in truth["relevant"] if u in truth["warm"]}
    cold = set(truth["relevant"]) - warm
    n_pos = lambda users: sum(len(truth["relevant"][u]) for u in users)  # noqa: E731
    assert counts["all"] == (len(truth["relevant"]), n_pos(truth["relevant"]))
    assert counts["warm"] == (len(warm), n_pos(warm)) and counts["cold"] == (len(cold), n_pos(cold))
    assert counts["warm"][0] + counts["cold"][0] == counts["all"][0]
    assert {29, 30} <= cold and set(range(31, 41)) & set(truth["relevant"]) <= cold  # low ratings only, new users
    # user 1's second rating of item 1 is not a held-out positive: it was consumed before
    assert 1 not in truth["relevant"] or 1 not in truth["relevant"][1]


def test_consumed_items_are_never_recommended_nor_hits(world):
    """All-time popularity computed by hand (distinct counts: one possible list): each test user
    gets items 1, 2, ... minus what they consumed before; the table's values are exactly those."""
    root, settings = world
    truth = expected(settings)
    order = list(range(1, 13))  # items by training positives (28, 26, ..., 10, 8, 6), most first
    per_user = {}
    for u, relevant in truth["relevant"].items():
        top = [i for i in order if (u, i) not in truth["consumed"]][:K]
        hits = [i in relevant for i in top]
        dcg = sum(h / np.log2(p + 2) for p, h in enumerate(hits))
        idcg = sum(1 / np.log2(p + 2) for p in range(min(len(relevant), K)))
        per_user[u] = {"ndcg": dcg / idcg, "recall": sum(hits) / len(relevant), "precision": sum(hits) / K}
    rows = table(root).filter(pl.col("model") == "popularity_all_time")
    for r in rows.to_dicts():
        users = [u for u in per_user if r["segment"] == "all" or (u in truth["warm"]) == (r["segment"] == "warm")]
        assert r["value"] == pytest.approx(np.mean([per_user[u][r["metric"]] for u in users])), r
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
    # item 1 is everyone's first all-time choice and user 1 rated it again in the period: consumed,
    # so user 1's list is items 11 and 12 (1-10 consumed) and 12 is the one hit
    assert (1, 1) in truth["consumed"] and truth["relevant"][1] == {12}
    assert per_user[1] == {"ndcg": pytest.approx(1 / np.log2(3)), "recall": 1.0, "precision": 0.1}


def test_warm_and_cold_users_and_the_baselines(world):
    root, settings = world
    rows = table(root)
    ndcg = rows.filter(pl.col("metric") == "ndcg")
    by_segment = {s: set(ndcg.filter(pl.col("segment") == s)["model"]) for s in ("all", "warm", "cold")}
    assert {"popularity_all_time", "recent_popularity", "popularity"} <= by_segment["cold"]
    assert by_segment["cold"] == by_segment["all"]  # non-personalised lists only: cold users have no history
    assert {"als", "ease", "item_cf", "content", "fusion_rrf", "popularity_all_time", "recent_popularity"} <= (
        by_segment["warm"]
    )
    assert not {"als", "ease", "item_cf", "fusion_rrf"} & by_segment["cold"]
    assert set(rows["metric"]) == {"ndcg", "recall", "precision"} and set(rows["k"]) == {K}
    for r in rows.to_dicts():  # paired against both baselines on the same users, except itself
        assert (r["diff_vs_all_time_ci_low"] is None) == (r["model"] == "popularity_all_time"), r
        assert (r["diff_vs_recent_ci_low"] is None) == (r["model"] == "recent_popularity"), r
    # items 11 and 12 were chosen in the last days of the history: recency ranks them higher
    recent = rows.filter((pl.col("model") == "recent_popularity") & (pl.col("segment") == "all"))
    all_time = rows.filter((pl.col("model") == "popularity_all_time") & (pl.col("segment") == "all"))
    assert recent["value"].to_list() != all_time["value"].to_list()


def test_the_catalog_shows_the_table_and_the_ui_its_numbers(world):
    root, settings = world
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    n = con.execute("SELECT count(*) FROM holdout_evaluation WHERE segment = 'warm'").fetchone()[0]
    assert n == table(root).filter(pl.col("segment") == "warm").height > 0
    defs = build_defs(settings)
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key.to_user_string() == "holdout_evaluation")
    assert spec.group_name == "evaluation" and spec.partitions_def is None
    deps = {d.asset_key.to_user_string(): d.partition_mapping for d in spec.deps}
    assert isinstance(deps["recall_als"], dg.SpecificPartitionsPartitionMapping)
    assert deps["recall_als"].partition_keys == [settings.evaluation_start]
    assert isinstance(deps["interactions"], dg.AllPartitionMapping)
    # no held-out period, no asset
    plain = Settings()
    assert "holdout_evaluation" not in {s.key.to_user_string() for s in build_defs(plain).resolve_all_asset_specs()}
