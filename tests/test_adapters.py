"""Real data in: MovieLens (every release format) and the trivago impression log become
landing zones in the contract format that the same raw assets ingest; malformed source
lines are quarantined with a reason; impression lists are kept whole; a data root holds
one source. Fixtures are written here; the real datasets in ../shared/data are used when
present (a user's clone does not have them: those tests skip)."""

import gzip
import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from recsys_assets import adapt, quickstart
from recsys_assets.core.adapters import movielens, trivago
from recsys_assets.core.adapters.source import SourceConflict, check_compatible, read_marker
from recsys_assets.definitions import build_defs, build_resources
from resources import FeatureSettings, IngestionSettings

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DAY0 = 1767225600  # 2026-01-01T00:00:00Z: fixtures live inside the default partitions
D = ["2026-01-01", "2026-01-02", "2026-01-03"]


def ts(day: int, sec: int) -> int:
    return DAY0 + day * 86400 + sec


def day_range(first: str, last: str) -> dict:
    """Tags of one run over a range of daily partitions."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def write(path: Path, text: str, encoding="utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


# ---------------------------------------------------------------------------------- fixtures


def ml100k(folder: Path, bad: bool = False) -> Path:
    flags = lambda *on: "|".join("1" if i in on else "0" for i in range(19))  # noqa: E731
    write(
        folder / "u.item",
        "\n".join(
            [
                f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags(3, 4, 5)}",
                f"2|Café Society (1997)|01-Jan-1997||http://x|{flags(8)}",
                f"3|Unknown Film (1990)|||http://x|{flags(0)}",
            ]
        )
        + "\n",
        "latin-1",
    )
    write(folder / "u.genre", "".join(f"{g}|{i}\n" for i, g in enumerate(movielens.ML100K_GENRES)))
    write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    rows = [
        (1, 1, 5, ts(0, 10)),
        (1, 2, 3, ts(0, 20)),
        (2, 1, 4, ts(0, 30)),
        (2, 3, 1, ts(2, 40)),
        (3, 2, 4, ts(2, 50)),
    ]  # day 1 has no rating; user 3 only rates
    text = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)
    if bad:  # a non-numeric rating and a line with a field missing
        text += f"1\t3\tx\t{ts(2, 60)}\n2\t2\t5\n"
    write(folder / "u.data", text)
    return folder


def ml1m_dat(folder: Path) -> Path:
    write(
        folder / "movies.dat",
        "10::Amélie (2001)::Comedy|Romance\n20::Alien (1979)::Horror|Sci-Fi\n30::Babe (1995)::Children's|Comedy\n",
        "latin-1",
    )
    write(folder / "users.dat", "7::F::1::10::48067\n8::M::56::16::70072\n")
    write(
        folder / "ratings.dat",
        f"7::10::5::{ts(1, 5)}\n8::20::2::{ts(0, 5)}\n8::30::4::{ts(1, 9)}\n9::10::3.5::{ts(1, 7)}\n",
    )
    # ml-10m has tags.dat
    write(
        folder / "tags.dat",
        f"7::10::quirky::{ts(1, 1)}\n8::10::Quirky ::{ts(1, 2)}\n8::10::paris::{ts(1, 3)}\n8::20::space::{ts(0, 1)}\n",
    )
    return folder


def ml_csv(folder: Path) -> Path:
    write(
        folder / "movies.csv",
        'movieId,title,genres\n1,"Toy Story (1995)",Adventure|Animation|Children\n'
        '2,"American President, The (1995)",Comedy|Drama|Romance\n'
        "3,Some Doc (2019),(no genres listed)\n",
    )
    write(
        folder / "ratings.csv",
        "userId,movieId,rating,timestamp\n"
        f"1,1,4.0,{ts(0, 1)}\n1,2,3.5,{ts(0, 2)}\n2,2,4.5,{ts(1, 3)}\n2,3,0.5,{ts(1, 4)}\n",
    )
    write(
        folder / "tags.csv",
        "userId,movieId,tag,timestamp\n"
        f'1,2,"politics, satire",{ts(0, 5)}\n2,2,romance,{ts(1, 6)}\n1,2,romance,{ts(0, 7)}\n'
        f"2,1,pixar,{ts(1, 8)}\n",
    )
    return folder


# ------------------------------------------------------------------------------- MovieLens


def test_rating_rule_matches_the_feature_layer():
    default = FeatureSettings().min_pos_completion
    assert movielens.DEFAULT_MIN_POS_COMPLETION == default
    movielens.RatingRule().check(default)
    rule = movielens.RatingRule()
    assert [rule.completion(r) >= default for r in (0.5, 3.5, 3.99, 4.0, 5.0)] == [False, False, False, True, True]
    with pytest.raises(ValueError, match="inconsistent"):
        movielens.RatingRule(other_completion=0.7).check(default)
    with pytest.raises(ValueError, match="inconsistent"):
        movielens.RatingRule(positive_completion=0.5).check(default)


def test_ml100k_fixture_becomes_contract_landing(tmp_path):
    m = movielens.convert(ml100k(tmp_path / "ml-100k"), tmp_path / "root")
    land = tmp_path / "root" / "landing"
    assert (m["format"], m["ratings"], m["events"], m["watch_stats"], m["positives"]) == ("ml-100k", 5, 5, 5, 3)
    assert (m["first_day"], m["last_day"], m["days"], m["has_impressions"]) == (D[0], D[2], 2, False)
    # a day without ratings gets no folder (SOURCE.json: empty_days absent); the others get all three files
    assert (m["empty_days"], m["test_start"]) == ("absent", D[2]) and not (land / D[1]).exists()
    for day, n in ((D[0], 3), (D[2], 2)):
        assert len(lines(land / day / "events.jsonl")) == n == len(lines(land / day / "watch_stats.jsonl"))
        assert (land / day / "impressions.jsonl").stat().st_size == 0 and (land / day / "_SUCCESS").exists()
    ev = lines(land / D[0] / "events.jsonl")
    assert ev[0] == {
        "event_id": f"ml:1:1:{ts(0, 10)}",
        "user_id": 1,
        "item_id": 1,
        "type": "rate",
        "value": 5.0,
        "occurred_at": "2026-01-01T00:00:10Z",
        "request_id": None,
    }
    assert [e["item_id"] for e in ev] == [1, 2, 1]  # time order
    watches = lines(land / D[0] / "watch_stats.jsonl") + lines(land / D[2] / "watch_stats.jsonl")
    assert [w["completion"] for w in watches] == [1.0, 0.3, 1.0, 0.3, 1.0]
    items = {i["item_id"]: i for i in lines(land / "items.jsonl")}
    assert items[1]["genres"] == ["animation", "children", "comedy"] and items[1]["release_year"] == 1995
    assert items[2]["title"] == "Café Society (1997)"  # latin-1 decoded
    assert items[3]["genres"] == []  # the 'unknown' flag is no genre
    assert sorted(u["user_id"] for u in lines(land / "users.jsonl")) == [1, 2, 3]  # u.user + rating-only user 3
    assert json.loads((land / "_source.json").read_text())["has_impressions"] is False
    assert (land / "_adapter_rejects.jsonl").read_text() == ""


def test_dat_fixture_ml1m_ml10m(tmp_path):
    m = movielens.convert(ml1m_dat(tmp_path / "ml-1m"), tmp_path / "root")
    land = tmp_path / "root" / "landing"
    assert (m["format"], m["ratings"], m["days"], m["positives"], m["tag_lines"]) == ("dat", 4, 2, 2, 4)
    assert [e["item_id"] for e in lines(land / D[1] / "events.jsonl")] == [10, 10, 30]
    assert lines(land / D[1] / "events.jsonl")[1]["value"] == 3.5  # ml-10m half stars
    items = {i["item_id"]: i for i in lines(land / "items.jsonl")}
    assert items[10]["title"] == "Amélie (2001)" and items[10]["genres"] == ["comedy", "romance"]
    assert items[20]["genres"] == ["horror", "sci_fi"] and items[30]["genres"] == ["children", "comedy"]
    assert items[10]["tags"] == ["quirky", "paris"]  # lower-cased, trimmed, most frequent first
    assert sorted(u["user_id"] for u in lines(land / "users.jsonl")) == [7, 8, 9]


def test_csv_fixture_with_tags(tmp_path):
    m = movielens.convert(ml_csv(tmp_path / "ml-latest-small"), tmp_path / "root")
    land = tmp_path / "root" / "landing"
    assert (m["format"], m["ratings"], m["days"], m["positives"], m["items"], m["users"]) == ("csv", 4, 2, 2, 3, 2)
    assert [(e["user_id"], e["item_id"], e["value"]) for e in lines(land / D[0] / "events.jsonl")] == [
        (1, 1, 4.0),
        (1, 2, 3.5),
    ]
    items = {i["item_id"]: i for i in lines(land / "items.jsonl")}
    assert items[2]["title"] == "American President, The (1995)"
    assert items[2]["tags"] == ["romance", "politics, satire"]
    assert items[3]["genres"] == [] and items[1]["genres"] == ["adventure", "animation", "children"]
    # deterministic: a second conversion writes the same bytes
    movielens.convert(tmp_path / "ml-latest-small", tmp_path / "again")
    files = sorted(p.relative_to(land) for p in land.rglob("*") if p.is_file() and p.name != "_source.json")
    assert files == sorted(
        p.relative_to(tmp_path / "again" / "landing")
        for p in (tmp_path / "again" / "landing").rglob("*")
        if p.is_file() and p.name != "_source.json"
    )
    assert all((land / f).read_bytes() == (tmp_path / "again" / "landing" / f).read_bytes() for f in files)


def test_malformed_lines_are_listed_and_quarantined_and_positives_are_rating_ge_4(tmp_path):
    m = movielens.convert(ml100k(tmp_path / "ml-100k", bad=True), tmp_path / "root")
    land = tmp_path / "root" / "landing"
    assert m["ratings"] == 5 and m["malformed_lines"] == {"u.data": 2}
    rejects = lines(land / "_adapter_rejects.jsonl")
    assert [(r["file"], r["line_no"]) for r in rejects] == [("u.data", 6), ("u.data", 7)]
    assert "CAST" in rejects[0]["error"] and "MISSING COLUMNS" in rejects[1]["error"]

    # The same raw assets ingest it; both bad lines end in the quarantine with a reason.
    defs = build_defs(
        resources=build_resources(str(tmp_path / "root"), str(land), IngestionSettings(max_quarantine_rate=0.5))
    )
    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    assert job.execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("raw_users"), dg.AssetKey("raw_items")]
    ).success
    logs = [dg.AssetKey(k) for k in ("raw_impressions", "raw_events", "raw_watch_stats", "interactions")]
    assert job.execute_in_process(instance=instance, asset_selection=logs, tags=day_range(D[0], D[2])).success
    lake = tmp_path / "root" / "lake"
    con = duckdb.connect()
    q = con.execute(
        f"SELECT asset, partition, reason, raw_line FROM read_parquet('{lake}/quarantine/*/*.parquet') "
        "ORDER BY asset, line_no"
    ).fetchall()
    assert [(a, p, r) for a, p, r, _ in q] == [
        ("raw_events", D[2], "wrong_type:value"),  # the rating 'x' stays text, the rest is typed
        ("raw_events", D[0], "wrong_type:user_id; wrong_type:item_id; wrong_type:value; missing_required:occurred_at"),
        ("raw_watch_stats", D[2], "missing_required:completion"),
        (
            "raw_watch_stats",
            D[0],
            "wrong_type:user_id; wrong_type:item_id; missing_required:started_at; missing_required:completion",
        ),
    ]
    assert all('"source_file":"u.data"' in raw and '"source_line_no":' in raw for *_, raw in q)
    loaded = con.execute(f"SELECT count(*) FROM read_parquet('{lake}/raw_events/*.parquet')").fetchone()[0]
    assert loaded == 5

    # exactly the ratings >= 4 are positives in the feature layer
    rows = con.execute(
        f"SELECT rating, is_positive, is_organic FROM read_parquet('{lake}/interactions/*.parquet')"
    ).fetchall()
    assert len(rows) == 5 and all(organic for *_, organic in rows)
    assert all(pos == (rating >= 4) for rating, pos, _ in rows) and sum(pos for _, pos, _ in rows) == 3


# --------------------------------------------------------------------------------- trivago

HEADER = (
    "user_id,session_id,timestamp,step,action_type,reference,platform,city,device,current_filters,impressions,prices\n"
)


def trivago_log(path: Path) -> Path:
    rows = [
        f'U1,s1,{ts(0, 100)},1,interaction item image,101,DE,"Berlin, Germany",desktop,,,',
        f'U1,s1,{ts(0, 105)},2,change of sort order,price only,DE,"Berlin, Germany",desktop,,,',
        f'U1,s1,{ts(0, 110)},3,clickout item,101,DE,"Berlin, Germany",desktop,Sort by Price|WiFi,101|102|103,80|90|100',
        f'U1,s1,{ts(0, 115)},4,interaction item info,102,DE,"Berlin, Germany",desktop,,,',
        f'U1,s1,{ts(0, 118)},5,search for item,oops,DE,"Berlin, Germany",desktop,,,',  # not an item id
        f'U1,s1,{ts(0, 120)},6,clickout item,103,DE,"Berlin, Germany",desktop,,101|102|103,80|90|100',
        f'U2,s2,{ts(1, 10)},1,clickout item,999,UK,"Paris, France",mobile,,201|202,50|60',  # clicked outside its list
        f'U2,s3,{ts(1, 15)},1,search for poi,Louvre,UK,"Paris, France",mobile,,,',
        f'U2,s3,{ts(1, 20)},2,clickout item,202,UK,"Paris, France",mobile,,201|x|202|203,50|55|60|65',  # 'x' is no id
        f'U3,s4,{ts(1, 30)},1,search for destination,Rome,IT,"Rome, Italy",tablet,,,',
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write(HEADER + "\n".join(rows) + "\n")
    return path


def test_trivago_fixture_keeps_every_impression_list_and_action(tmp_path):
    m = trivago.convert(trivago_log(tmp_path / "tv" / "log.csv.gz"), tmp_path / "root")
    land = tmp_path / "root" / "landing"
    assert (m["impressions_in"], m["impressions_out"], m["clickouts"], m["clicks_outside_their_list"]) == (12, 12, 4, 1)
    assert (m["users"], m["items"], m["bad_impression_items"], m["days"]) == (3, 7, 1, 2)
    assert (m["views"], m["bad_view_references"]) == (3, 1)
    assert sum(m["actions"].values()) == 10
    imps = lines(land / D[0] / "impressions.jsonl") + lines(land / D[1] / "impressions.jsonl")
    assert len(imps) == 12 and len({i["impression_id"] for i in imps}) == 12
    by_req = {}
    for i in imps:
        by_req.setdefault(i["request_id"], []).append((i["position"], i["item_id"], i["price"]))
    assert {r: sorted(v) for r, v in by_req.items()} == {
        "s1:3": [(0, 101, 80), (1, 102, 90), (2, 103, 100)],
        "s1:6": [(0, 101, 80), (1, 102, 90), (2, 103, 100)],
        "s2:1": [(0, 201, 50), (1, 202, 60)],
        "s3:2": [(0, 201, 50), (1, "x", 55), (2, 202, 60), (3, 203, 65)],
    }  # 'x' stays text
    # the request context: the session's last sort change and place search before the clickout
    context = {
        i["request_id"]: (i["session_id"], i["platform"], i["sort_order"], i["filters"], i["query"]) for i in imps
    }
    assert context == {
        "s1:3": ("s1", "DE", "price only", ["Sort by Price", "WiFi"], "Berlin, Germany"),
        "s1:6": ("s1", "DE", "price only", [], "Berlin, Germany"),
        "s2:1": ("s2", "UK", None, [], "Paris, France"),
        "s3:2": ("s3", "UK", None, [], "Louvre"),
    }
    events = lines(land / D[0] / "events.jsonl") + lines(land / D[1] / "events.jsonl")
    assert all(e["event_id"].startswith("tv:view:" if e["type"] == "view" else "tv:s") for e in events)
    assert [(e["type"], e["subtype"], e["item_id"], e["request_id"], e["session_id"]) for e in events] == [
        ("view", "image", 101, None, "s1"),
        ("click", None, 101, "s1:3", "s1"),
        ("view", "info", 102, None, "s1"),
        ("click", None, 103, "s1:6", "s1"),
        ("view", "search", "oops", None, "s1"),  # quarantined by raw ingestion (wrong_type:item_id)
        ("click", None, 999, None, "s2"),
        ("click", None, 202, "s3:2", "s3"),
    ]
    watches = lines(land / D[1] / "watch_stats.jsonl")
    assert [(w["item_id"], w["completion"], w["request_id"]) for w in watches] == [(999, 1.0, None), (202, 1.0, "s3:2")]
    users = lines(land / "users.jsonl")
    assert [(u["user_id"], u["country"], u["source_user_id"]) for u in users] == [
        (0, "DE", "U1"),
        (1, "UK", "U2"),
        (2, "IT", "U3"),
    ]


def test_a_data_root_holds_one_source(tmp_path, monkeypatch, capsys):
    root = tmp_path / "root"
    marker = adapt.prepare_source("movielens", ml_csv(tmp_path / "ml"), root)
    assert (marker["source"], marker["first_day"], marker["last_day"]) == ("movielens", D[0], D[1])
    assert read_marker(root) == marker
    assert adapt.prepare_source("movielens", tmp_path / "ml", root) == marker  # same source again: a no-op
    with pytest.raises(SourceConflict, match="already holds movielens"):
        check_compatible(root, "trivago", trivago_log(tmp_path / "tv" / "log.csv.gz"))
    with pytest.raises(SourceConflict):  # another MovieLens release is another source too
        adapt.prepare_source("movielens", ml1m_dat(tmp_path / "ml-1m"), root)
    assert adapt.main(["trivago", str(tmp_path / "tv"), "--data-root", str(root)]) == 2
    assert "already holds movielens" in capsys.readouterr().err
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    with pytest.raises(SystemExit, match="already holds movielens"):  # the synthetic default refuses it too
        quickstart.main(["--data-root", str(root), "--days", "2"])
    with pytest.raises(SystemExit, match="needs --source-path"):
        quickstart.main(["--data-root", str(tmp_path / "other"), "--source", "trivago"])


# ------------------------------------------------------------------ the real datasets (optional)


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the real datasets live only in the project's shared folder, not in a clone")
    return path


@pytest.mark.realdata
def test_real_ml100k(tmp_path):
    m = movielens.convert(_shared("ml-100k"), tmp_path / "root")
    land = tmp_path / "root" / "landing"
    assert (m["ratings"], m["items"], m["users"], m["malformed_lines"]) == (100_000, 1682, 943, {})
    assert (m["first_day"], m["last_day"], m["days"]) == ("1997-09-20", "1998-04-22", 213)  # days with ratings
    days = sorted(p for p in land.iterdir() if p.is_dir())
    assert len(days) == 213  # the two days without ratings have no folder
    assert sum(len((d / "events.jsonl").read_bytes().splitlines()) for d in days) == 100_000
    assert sum(len((d / "watch_stats.jsonl").read_bytes().splitlines()) for d in days) == 100_000
    # positives = ratings >= 4, counted independently from u.data
    ratings = [int(x.split("\t")[2]) for x in (_shared("ml-100k") / "u.data").read_text().splitlines()]
    assert m["positives"] == sum(r >= 4 for r in ratings) == 55_375


@pytest.mark.realdata
def test_real_trivago(tmp_path):
    m = trivago.convert(_shared("trivago-recsys2019-100k"), tmp_path / "root")
    assert (m["impressions_in"], m["impressions_out"], m["clickouts"]) == (312_539, 312_539, 13_597)
    assert (m["users"], m["items"], m["clicks_outside_their_list"], m["days"]) == (6593, 107_603, 1, 2)
    # every action on an item is a view now: 68,538 image + 1,829 info + 1,445 rating + 1,159 deals
    # + 1,044 item searches
    assert (m["views"], m["bad_view_references"]) == (74_015, 4)  # 4 references are not item ids


@pytest.mark.slow
def test_quickstart_reads_a_users_own_landing_zone_in_place(tmp_path, monkeypatch):
    """--source landing: a contract-format landing zone produced elsewhere is ingested where
    it is; the data root records it and refuses another source afterwards."""
    import duckdb

    from recsys_assets.core.generator import GeneratorConfig, generate

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    producer = tmp_path / "producer"
    generate(GeneratorConfig(n_users=200, n_items=150, days=2, impressions_per_day=2_000, seed=3), producer)
    root = tmp_path / "warehouse"
    assert (
        quickstart.main(
            [
                "--data-root",
                str(root),
                "--source",
                "landing",
                "--source-path",
                str(producer / "landing"),
                "--model-days",
                "0",
            ]
        )
        == 0
    )
    assert json.loads((root / "SOURCE.json").read_text())["source"] == "landing"
    assert not (root / "landing").exists()  # read in place, not copied
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    expected = sum(
        1 for d in ("2026-01-01", "2026-01-02") for _ in open(producer / "landing" / d / "impressions.jsonl", "rb")
    )
    quarantined = con.execute("SELECT count(*) FROM quarantine WHERE asset = 'raw_impressions'").fetchone()[0]
    assert con.execute("SELECT count(*) FROM raw_impressions").fetchone()[0] + quarantined == expected
    with pytest.raises(SystemExit, match="already holds landing"):
        quickstart.main(["--data-root", str(root), "--days", "2"])
    with pytest.raises(SystemExit, match="not a landing zone"):
        quickstart.main(["--data-root", str(tmp_path / "x"), "--source", "landing", "--source-path", str(tmp_path)])


def test_a_complete_folder_that_is_not_a_day_is_refused_with_one_message(tmp_path):
    """`--source landing` on a zone with e.g. `notes/_SUCCESS`: one message naming the folder,
    not a traceback; the landing sensor does not take it for a day either."""
    from resources import LandingZoneResource

    landing = tmp_path / "zone"
    for day in ("2026-01-01", "notes", "2026-02-30"):
        (landing / day).mkdir(parents=True)
        (landing / day / "_SUCCESS").write_bytes(b"")
    (landing / "users.jsonl").write_text('{"user_id": 1}\n')
    (landing / "items.jsonl").write_text('{"item_id": 1}\n')
    with pytest.raises(SystemExit) as refused:
        quickstart.use_landing_zone(landing, tmp_path / "data")
    message = str(refused.value)
    assert message.startswith("error: ") and "2026-02-30, notes" in message and "<YYYY-MM-DD>" in message
    assert not (tmp_path / "data" / "SOURCE.json").exists()
    assert LandingZoneResource(landing_root=str(landing)).complete_days() == ["2026-01-01"]
    for odd in ("notes", "2026-02-30"):
        shutil.rmtree(landing / odd)
    assert quickstart.use_landing_zone(landing, tmp_path / "data")["first_day"] == "2026-01-01"


def test_the_days_a_partition_ingests_from_a_sparse_landing_zone(tmp_path):
    """A ratings source lands only days with data (`empty_days: absent`): a day without a folder
    before the newest landed one was empty and ingests nothing; a day after it is not yet
    delivered (its own files are required); the history partition takes every landed day up
    to it. Only the history partition lists the whole zone."""
    from recsys_assets.assets.raw import landing_days_of
    from recsys_assets.settings import Settings
    from resources import LandingZoneResource

    landing = tmp_path / "landing"
    for day in ("2025-12-30", "2026-01-01", "2026-01-03"):
        (landing / day).mkdir(parents=True)
        (landing / day / "_SUCCESS").write_bytes(b"")
    (landing / "2026-01-05").mkdir()  # not complete: no marker, no files
    (landing / "notes").mkdir()
    (landing / "notes" / "_SUCCESS").write_bytes(b"")
    zone = LandingZoneResource(landing_root=str(landing))
    assert zone.latest_complete_day() == "2026-01-03"
    assert LandingZoneResource(landing_root=str(tmp_path / "none")).latest_complete_day() is None
    settings = Settings(start_date="2026-01-01", history_start="2025-12-01")
    assert landing_days_of("2026-01-01", settings, zone, sparse=True) == ["2025-12-30", "2026-01-01"]
    assert landing_days_of("2026-01-02", settings, zone, sparse=True) == []  # empty day
    assert landing_days_of("2026-01-03", settings, zone, sparse=True) == ["2026-01-03"]
    assert landing_days_of("2026-01-04", settings, zone, sparse=True) == ["2026-01-04"]  # not delivered yet
    assert landing_days_of("2026-01-02", settings, zone, sparse=False) == ["2026-01-02"]
