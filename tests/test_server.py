"""`recsys serve` on the session's small world (conftest.py): a real uvicorn on a free
127.0.0.1 port answers known, unknown, cold and session requests with the online path's and the
batch `recommendations` asset's list, refuses bad input with 400 and a corrupt artifact with
503 naming the file, and swaps in new models and champions mid-traffic without a failed request."""

import datetime as dt
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import uvicorn

from recsys_assets.core.ranking.session_features import SessionState
from recsys_assets.server import build_app
from recsys_assets.services import serving
from recsys_assets.services.days import days_before
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import CorruptModelError, ModelStore
from recsys_assets.services.online import OnlineRecommender
from recsys_assets.services.recommend_service import RETRY_POLLS, RecommendService
from recsys_assets.services.registry import serving_ranker_day
from recsys_assets.services.rollback import rollback
from recsys_assets.settings import Settings

pytestmark = pytest.mark.slow  # the multi-day world, several model loads

D = "2026-01-06"
PREVIOUS = "2026-01-05"


@contextmanager
def running(service: RecommendService, watch: bool = True):
    """The app on a real uvicorn, on a free loopback port, in a thread; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(build_app(service, watch=watch), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: bytes | dict | None = None) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_for(predicate, seconds: float = 90.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture(scope="module")
def world(built_world) -> dict:
    root = built_world
    storage = Lake(data_root=str(root))
    settings = Settings.load(data_root=str(root))
    recs = pl.read_parquet(storage.partition_path("recommendations", D))
    history = serving.user_history(storage, days_before(D, settings.recall.window_days))
    fresh = set(serving.user_history(storage, [D])["user_id"].to_list())
    with_history = set(history["user_id"].to_list())
    users = set(pl.read_parquet(storage.partition_path("user_id_dictionary"))["id"].to_list())
    active = set(serving.user_history(storage, days_before(D, settings.recall.window_days) + [D])["user_id"].to_list())
    return {
        "root": root,
        "settings": settings,
        "recs": recs,
        # in the batch list, with history, nothing newer than the models (no fold-in)
        "known": min(set(recs["user_id"].to_list()) & with_history - fresh),
        "cold": min(users - active),  # in the dictionary, no positive in the window
        "fresh": min(fresh),  # a positive on the model day itself: newer than the models
        "online": OnlineRecommender(
            storage,
            ModelStore(models_root=settings.models_root),
            settings.ranking,
            settings.recall,
            first_day=settings.start_date,
        ),
    }


@pytest.fixture(scope="module")
def url(world):
    with running(RecommendService(world["settings"])) as base:
        yield base


def test_known_unknown_cold_and_session_requests(world, url):
    known, top_k = world["known"], world["settings"].ranking.top_k
    status, answer = call(f"{url}/recommend?user={known}&k={top_k}")
    assert status == 200 and answer["path"] == "known" and answer["day"] == D
    items = [item["item_id"] for item in answer["items"]]
    # the server's list is the online path's, and the batch asset's for the same user and day
    direct = world["online"].recommend(known, k=top_k)
    assert items == direct.table["item_id"].to_list()
    batch = world["recs"].filter(pl.col("user_id") == known).sort("rank")
    assert items == batch["item_id"].to_list()
    np.testing.assert_allclose([i["score"] for i in answer["items"]], batch["score"].to_numpy(), rtol=1e-6)
    assert [i["rank"] for i in answer["items"]] == list(range(1, top_k + 1))
    assert all(i["channels"] for i in answer["items"]) and "explanation" not in answer["items"][0]
    assert {"recall_ms", "rank_ms", "rerank_ms", "total_ms", "service_ms", "server_ms"} <= set(answer["timings_ms"])
    versions = answer["versions"]
    ranker_day, _ = serving_ranker_day(Lake(data_root=str(world["root"])), D)
    assert versions["day"] == D and versions["ranker_day"] == ranker_day
    assert versions["models"]["ranker"].startswith(f"{ranker_day}-")
    assert versions["models"]["recall_als"] == Path(world["root"] / "models" / "recall_als" / D).resolve().name
    online = world["online"]
    read = set(online.recall_channels) | set(online.ctx.channels) | {"recent_popularity"}
    assert set(versions["models"]) == {"ranker"} | {f"recall_{c}" for c in read}

    status, explained = call(f"{url}/recommend", {"user": known, "k": 3, "explain": True})
    assert status == 200 and len(explained["items"]) == 3
    assert all(set(i["explanation"]) == {"reason", "because_you_watched", "top_features"} for i in explained["items"])
    assert explained["items"][0]["explanation"]["top_features"]
    # what a person reads: the catalog's titles and a plain reason, not bare ids
    titles = dict(
        pl.read_parquet(Path(world["root"]) / "lake" / "raw_items" / "snapshot.parquet")
        .select("item_id", "title")
        .iter_rows()
    )
    assert all(i["title"] == titles[i["item_id"]] and i["explanation"]["reason"] for i in explained["items"])

    status, unknown = call(f"{url}/recommend?user=987654321")
    assert status == 200 and unknown["path"] == "cold_start" and len(unknown["items"]) == 10
    assert all(i["channels"] == ["recent_popularity"] for i in unknown["items"])
    status, cold = call(f"{url}/recommend?user={world['cold']}&k=5")
    assert status == 200 and cold["path"] == "cold_start" and len(cold["items"]) == 5
    status, folded = call(f"{url}/recommend?user={world['fresh']}&k=5")
    assert status == 200 and folded["path"] == "known+fold_in" and len(folded["items"]) == 5
    # the fold-in vector was the request's own: the next known user gets the batch list again
    assert [i["item_id"] for i in call(f"{url}/recommend?user={known}&k={top_k}")[1]["items"]] == items

    # a live session: the bottom of the user's list looked at twice, just before the request
    plain = [i["item_id"] for i in call(f"{url}/recommend?user={known}&k=50")[1]["items"]]
    at = dt.datetime(2026, 1, 6, 20, 0, tzinfo=dt.UTC)
    events = [
        {"item_id": item, "type": "view", "occurred_at": (at - dt.timedelta(seconds=60 - n)).isoformat()}
        for n, item in enumerate(plain[-3:] * 2)
    ]
    status, live = call(f"{url}/recommend", {"user": known, "k": 50, "session": events, "at": at.isoformat()})
    assert status == 200
    live_items = [i["item_id"] for i in live["items"]]
    assert live_items != plain
    session = SessionState.from_records("direct", events)
    assert live_items == world["online"].recommend(known, k=50, session=session, at=at).table["item_id"].to_list()


def test_concurrent_requests_get_the_answers_of_sequential_ones(world, url):
    """Requests run two at a time (ServingConfig.concurrency): known, fold-in and cold users
    interleaved from 6 clients get exactly the lists the online path gives one at a time."""
    storage = Lake(data_root=str(world["root"]))
    fresh = sorted(set(serving.user_history(storage, [D])["user_id"].to_list()))[:6]
    known = sorted(set(world["recs"]["user_id"].to_list()) - set(fresh))[:12]
    users = [u for pair in zip(known[::2], known[1::2], fresh, strict=False) for u in pair] + [987654321]
    expected = {u: world["online"].recommend(u, k=10).table["item_id"].to_list() for u in users}
    got: dict[int, list] = {}

    def client(share):
        for user in share:
            status, answer = call(f"{url}/recommend?user={user}&k=10")
            got[user] = [i["item_id"] for i in answer["items"]] if status == 200 else status

    threads = [threading.Thread(target=client, args=(users[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected


def test_health_ready_and_metrics(url):
    assert call(f"{url}/health") == (200, {"status": "alive"})
    status, ready = call(f"{url}/ready")
    assert status == 200 and ready["ready"] and ready["versions"]["day"] == D and ready["reload_error"] is None
    call(f"{url}/recommend?user=987654321&k=2")
    call(f"{url}/recommend?user=x")
    status, text = call(f"{url}/metrics")
    assert status == 200 and isinstance(text, str)
    lines = text.splitlines()
    counts = {
        line.split("{")[1].split("}")[0]: int(line.split()[-1])
        for line in lines
        if line.startswith("recsys_requests_total")
    }
    assert counts['endpoint="/recommend",status="200"'] >= 1 and counts['endpoint="/recommend",status="400"'] >= 1
    for stage in ("recall", "rank", "rerank", "total", "server"):
        inf = next(
            line for line in lines if line.startswith(f'recsys_stage_latency_ms_bucket{{stage="{stage}",le="+Inf"}}')
        )
        count = next(line for line in lines if line.startswith(f'recsys_stage_latency_ms_count{{stage="{stage}"}}'))
        assert int(inf.split()[-1]) == int(count.split()[-1]) >= 1
    assert f'recsys_model_info{{day="{D}"' in text and "recsys_ready 1" in text and "recsys_reload_failing 0" in text
    assert 'recsys_model_version{model="ranker",version="' in text


@pytest.mark.parametrize(
    "path,body,reason",
    [
        ("/recommend?user=abc", None, "user must be an integer"),
        ("/recommend", None, "user is required"),
        ("/recommend?user=1&k=0", None, "k must be between 1 and 1000"),
        ("/recommend?user=1&k=1001", None, "k must be between 1 and 1000"),
        ("/recommend?user=1&k=2.5", None, "k must be an integer"),
        ("/recommend?user=-3", None, "user must be between 0"),
        ("/recommend?user=1&explain=maybe", None, "explain must be true or false"),
        ("/recommend?user=1&size=3", None, "unknown parameter(s) size"),
        ("/recommend", b"{not json", "the body is not JSON"),
        ("/recommend", b"[1, 2]", "the body must be a JSON object"),
        ("/recommend", {"user": True}, "user must be an integer"),
        ("/recommend", {"user": 1, "session": {"item_id": 1}}, "session must be a list of events"),
        (
            "/recommend",
            {"user": 1, "session": [{"item_id": "x", "type": "view", "occurred_at": "2026-01-06T19:59:00Z"}]},
            "session event 1",
        ),
        (
            "/recommend",
            {"user": 1, "session": [{"item_id": 3, "type": "view", "occurred_at": "yesterday"}]},
            "session event 1",
        ),
        ("/recommend", {"user": 1, "at": "2026-01-06T20:00:00"}, "at must be an ISO-8601 time with an offset"),
        ("/recommend?user=1&session=x", None, "session events go in the JSON body of POST /recommend"),
        ("/recommend", b'{"user": 1, "pad": "' + b"x" * (1 << 20) + b'"}', "the body is larger than"),
    ],
)
def test_bad_requests_are_400_with_the_reason(url, path, body, reason):
    status, answer = call(f"{url}{path}", body)
    assert status == 400 and isinstance(answer, dict)
    assert reason in answer["error"], answer


def test_a_failed_reload_keeps_the_models_and_is_retried_after_some_polls(world, monkeypatch):
    service = RecommendService(world["settings"], reload_seconds=0.05)
    assert service.reload() and not service.reload()  # loaded once; nothing changed since
    serving_now = service.current
    monkeypatch.setattr(service, "fingerprint", lambda: ("2099-01-01", *serving_now.fingerprint[1:]))
    builds = []

    def corrupt(fingerprint):
        builds.append(fingerprint)
        raise CorruptModelError("/models/x/weights.npy does not match its checksum")

    monkeypatch.setattr(service, "_build", corrupt)
    assert not service.reload() and service.current is serving_now
    assert service.last_error == "/models/x/weights.npy does not match its checksum"
    assert not service.reload() and len(builds) == 1  # not again at the next poll
    time.sleep(RETRY_POLLS * 0.05 + 0.05)
    assert not service.reload() and len(builds) == 2
    assert service.ready()[0] and "recsys_reload_failing 1" in service.metrics_text()


def test_the_serve_command_wires_its_options(world, monkeypatch, capsys):
    from recsys_assets import cli, server

    calls = []
    monkeypatch.setattr(server, "serve", lambda settings, **kw: calls.append((settings, kw)))
    root = str(world["root"])
    assert cli.main(["serve", "--data-root", root, "--port", "0", "--reload-seconds", "2.5"]) == 0
    settings, options = calls[-1]
    assert (
        settings.data_root == root and settings.serving.reload_seconds == 2.5 and settings.serving.host == "127.0.0.1"
    )
    assert options == {"host": None, "port": 0, "log_level": "info"}  # None: settings.serving.host
    with pytest.raises(SystemExit):
        cli.main(["serve", "--reload-seconds", "0"])
    assert "--reload-seconds must be > 0" in capsys.readouterr().err


def test_a_corrupt_artifact_is_503_naming_the_file(world, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(world["root"], copy, symlinks=True)
    ranker_day, _ = serving_ranker_day(Lake(data_root=str(copy)), D)
    target = (copy / "models" / "ranker" / ranker_day / "lambdarank.txt").resolve()
    target.write_text(target.read_text()[:1000])  # truncated
    with running(RecommendService(Settings.load(data_root=str(copy)))) as base:
        assert call(f"{base}/health")[0] == 200  # alive, not ready
        status, ready = call(f"{base}/ready")
        assert status == 503 and not ready["ready"] and "lambdarank.txt" in ready["reload_error"]
        status, answer = call(f"{base}/recommend?user={world['known']}")
        assert status == 503 and "lambdarank.txt" in answer["error"] and "Traceback" not in answer["error"]
        assert "recsys_ready 0" in call(f"{base}/metrics")[1]


def test_new_models_and_champions_swap_in_mid_traffic(world, tmp_path):
    """Day D's models appear, then the recall champion is rolled back, then a corrupt version is
    published: requests never fail, each answer names the versions it used, and the corrupt
    reload leaves the previous models serving (shown by /ready and /metrics)."""
    copy, stash = tmp_path / "copy", tmp_path / "stash"
    shutil.copytree(world["root"], copy, symlinks=True)
    published = sorted(p for p in (copy / "models").glob(f"*/{D}"))
    for link in published:  # day D's models are not published yet
        (stash / link.parent.name).mkdir(parents=True)
        link.rename(stash / link.parent.name / D)
    service = RecommendService(Settings.load(data_root=str(copy)), reload_seconds=0.2)
    with running(service) as base:
        assert call(f"{base}/ready")[1]["versions"]["day"] == PREVIOUS
        seen, stop = [], threading.Event()

        def traffic():
            while not stop.is_set():
                status, answer = call(f"{base}/recommend?user={world['known']}&k=5")
                seen.append((status, answer["versions"] if status == 200 else answer))

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            wait_for(lambda: len(seen) >= 3)
            for link in published:  # publish day D (each model's link swapped in atomically)
                (stash / link.parent.name / D).rename(link)
            wait_for(lambda: call(f"{base}/ready")[1]["versions"]["day"] == D)
            wait_for(lambda: seen and seen[-1][1].get("day") == D)
            lake, store = Lake(data_root=str(copy)), ModelStore(models_root=str(copy / "models"))
            rollback(lake, store, "als", "2026-01-04", "test: roll the champion back mid-traffic")
            wait_for(lambda: seen and seen[-1][1].get("recall_champion") == "als@2026-01-04")
            serving_versions = call(f"{base}/ready")[1]["versions"]
            # a new version of D's ALS model whose factors are corrupt: the reload fails
            link = copy / "models" / "recall_als" / D
            corrupt = link.resolve().with_name(f"{D}-corrupt")
            shutil.copytree(link.resolve(), corrupt)
            victim = next(p for p in sorted(corrupt.iterdir()) if p.suffix == ".npy")
            victim.write_bytes(victim.read_bytes()[:64])
            tmp_link = link.with_name(".swap")
            tmp_link.symlink_to(f".versions/{corrupt.name}")
            tmp_link.replace(link)
            ready = wait_for(lambda: (r := call(f"{base}/ready")[1])["reload_error"] and r)
            assert victim.name in ready["reload_error"] and ready["ready"]
            assert ready["versions"] == serving_versions  # the previous models keep serving
            assert "recsys_reload_failing 1" in call(f"{base}/metrics")[1]
            count = len(seen)
            wait_for(lambda: len(seen) >= count + 3)
        finally:
            stop.set()
            thread.join(timeout=120)
    assert seen and all(status == 200 for status, _ in seen), [s for s in seen if s[0] != 200][:3]
    days = [versions["day"] for _, versions in seen]
    assert days[0] == PREVIOUS and days[-1] == D and days == sorted(days)  # never back to the old day
    champions = [versions["recall_champion"] for _, versions in seen]
    assert champions[-1] == "als@2026-01-04" and champions[0] != champions[-1]
    assert seen[-1][1] == serving_versions


def _metric_lines(text: str, name: str) -> dict[str, float]:
    return {
        line.split(" ")[0]: float(line.split(" ")[-1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    }


def test_two_worker_processes_answer_alike_and_metrics_count_both(world):
    """`recsys serve --workers 2`: two processes on one port, the same answers as one process,
    and /metrics (whichever worker answers it) counts the requests of both and lists each
    worker's readiness and model versions."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "recsys_assets.cli", "serve", "--data-root", str(world["root"])]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "2", "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def ready():
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                return call(f"{base}/ready")
            except OSError:
                return None

        # /ready is 200 only once both workers have loaded (whichever of them answers)
        status, answer = wait_for(lambda: (r := ready()) and r[0] == 200 and r, seconds=180)
        assert answer["workers_ready"] == answer["workers"] == 2
        metrics = call(f"{base}/metrics")[1]
        assert _metric_lines(metrics, "recsys_ready") and all(
            v == 1 for v in _metric_lines(metrics, "recsys_ready").values()
        )
        user = world["known"]
        expected = world["online"].recommend(user, k=5).table["item_id"].to_list()
        answers = [call(f"{base}/recommend?user={user}&k=5") for _ in range(40)]
        assert all(status == 200 for status, _ in answers)
        assert all([i["item_id"] for i in answer["items"]] == expected for _, answer in answers)
        for _ in range(20):  # counts of other workers lag by at most a second (PUBLISH_SECONDS)
            text = call(f"{base}/metrics")[1]
            counts = _metric_lines(text, "recsys_requests_total")
            if counts.get('recsys_requests_total{endpoint="/recommend",status="200"}') == 40:
                break
            time.sleep(0.3)
        assert counts['recsys_requests_total{endpoint="/recommend",status="200"}'] == 40
        assert (
            _metric_lines(text, "recsys_stage_latency_ms_count")['recsys_stage_latency_ms_count{stage="total"}'] == 40
        )
        assert _metric_lines(text, "recsys_workers") == {"recsys_workers": 2.0}
        versions = [line for line in text.splitlines() if line.startswith('recsys_model_version{model="ranker"')]
        assert len(versions) == 2 and len({line.split(",worker=")[1] for line in versions}) == 2
        # each family is announced once (a Prometheus parser refuses a repeated TYPE)
        types = [line for line in text.splitlines() if line.startswith("# TYPE")]
        assert len(types) == len(set(types))
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.parametrize("catalog", ["dense", "large"])
def test_a_request_reads_its_rank_features_from_its_own_lists(world, monkeypatch, catalog):
    """A known user's request reads its ranker's rank features from its own channel lists (no
    second search): they equal a fresh search with the request's exclusions - the day's for a
    user without new signal (whose lists are the day's recall_candidates rows), the day's
    positives and clicks added (and the fold-in ALS vector) for a user with - on the dense
    searches of a small catalog and on the large-catalog ones (faiss, sparse item-CF,
    popularity head)."""
    import dataclasses

    import scipy.sparse as sp

    from recsys_assets.core.ranking import features as F
    from recsys_assets.core.ranking import funnel
    from recsys_assets.core.recall.base import RecallModel
    from recsys_assets.core.recall.models import ItemCFModel

    if catalog == "large":  # the paths a 100k-item catalog takes, on this world's catalog
        monkeypatch.setattr(RecallModel, "faiss_min_items", 0)
        monkeypatch.setattr(ItemCFModel, "sparse_min_items", 0)
    settings = world["settings"]
    online = OnlineRecommender(
        Lake(data_root=str(world["root"])),
        ModelStore(models_root=settings.models_root),
        settings.ranking,
        settings.recall,
        first_day=settings.start_date,
    )
    assert online.model is not None
    if catalog == "large":  # the day's stored rows were searched on the dense paths: search live
        online.stored = None
    users = sorted(set(world["recs"]["user_id"].to_list()))[:40]
    paths: dict[str, int] = {}
    for user in users:
        candidates, path, ctx = online._candidates(user, online._history(user))
        if "channel_depth" not in candidates.columns:
            continue  # no training positive in the window: searched
        paths[path] = paths.get(path, 0) + 1
        uidx = online.user_index[user]
        blocked = online.blocked(user, uidx)
        n_items = ctx.exclude.shape[1]
        own = sp.csr_matrix(
            (np.ones(len(blocked), np.float32), (np.full(len(blocked), uidx), blocked)),
            shape=(max(uidx + 1, ctx.exclude.shape[0]), n_items),
        )
        request_ctx = dataclasses.replace(ctx, exclude=own, blocked_items=np.zeros(0, np.int64))
        pairs = funnel.serving_pairs(candidates, settings.ranking.serving_surface)
        ranks = [f"rank_{c}" for c in ctx.channel_names]
        read = F.feature_frame(ctx, pairs).select(ranks)
        searched = F.feature_frame(request_ctx, pairs.drop("channel_depth")).select(ranks)
        assert read.equals(searched), (user, path)
    assert paths.get("known", 0) >= 5 and paths.get("known+fold_in", 0) >= 5, paths
