"""The server's request path in arrays (core/ranking/request_path.py, serving.recommend_request)
and its stored candidates (candidates.StoredCandidates) answer exactly as the frame path of the
batch funnel: the same feature matrix, the same lists, the same candidate rows."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking import funnel
from recsys_assets.core.ranking.request_path import RequestTables, excluded_items, request_matrix
from recsys_assets.core.ranking.session_features import SessionState
from recsys_assets.services import candidates as C
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.online import OnlineRecommender
from recsys_assets.services.serving import drop_excluded
from recsys_assets.settings import Settings

pytestmark = pytest.mark.slow  # the multi-day world and a model load

UNKNOWN = [10**9 + 7, 10**9 + 8]


def _load(root, serving=None) -> OnlineRecommender:
    settings = Settings.load(data_root=str(root))
    return OnlineRecommender(
        Lake(data_root=str(root)),
        ModelStore(models_root=settings.models_root),
        settings.ranking,
        settings.recall,
        first_day=settings.start_date,
        serving=serving,
    )


@pytest.fixture(scope="module")
def online(built_world) -> OnlineRecommender:
    return _load(built_world)


def _users(online: OnlineRecommender, n: int, seed: int) -> list[int]:
    users = online.ctx.user_index["user_id"].to_numpy()
    picked = np.random.default_rng(seed).choice(users, min(n, len(users)), replace=False)
    return [int(u) for u in picked] + UNKNOWN


def _session(online: OnlineRecommender, seed: int, at: dt.datetime) -> SessionState:
    """A live session of a few views and clicks on catalog items (some among the candidates)."""
    rng = np.random.default_rng(seed)
    state = SessionState(f"s{seed}")
    items = online.ctx.items["item_id"].to_numpy()
    for j, item in enumerate(rng.choice(items, 6)):
        state.add(int(item), ["view", "click"][j % 2], at - dt.timedelta(minutes=7 - j))
    return state


def test_the_request_matrix_is_the_feature_frame_encoded(online):
    """request_matrix gives ranker.matrix(feature_frame(...)) bit for bit: known, fold-in,
    cold and unknown users, with and without a live session."""
    assert online.model is not None and online.tables is not None
    at = dt.datetime.fromisoformat(online.day).replace(hour=12, tzinfo=dt.UTC)
    surface = online.ranking.serving_surface
    paths, with_session = set(), 0
    for n, user in enumerate(_users(online, 60, seed=1)):
        candidates, path, ctx = online._candidates(user, online._history(user))
        candidates = drop_excluded(ctx, candidates, online.exclude)
        assert candidates.height > 0
        paths.add(path)
        items = candidates["item_id"].to_numpy()
        pairs = funnel.serving_pairs(candidates, surface)
        session = _session(online, n, at) if n % 3 == 0 else None
        if session is not None:
            with_session += 1
            frame = F.feature_frame(
                ctx, session.request(pairs, at), request_features=session.request_features(items, at)
            )
        else:
            frame = F.feature_frame(ctx, pairs)
        expected = online.model.matrix(frame)
        got = request_matrix(
            ctx,
            online.tables,
            online.model,
            user,
            items,
            surface,
            listed=F._listed_ranks(ctx, candidates),
            session_values=session.request_values(items, at) if session is not None else None,
        )
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected, err_msg=f"user {user} ({path})")
    assert {"known", "known+fold_in", "cold_start"} <= paths and with_session >= 15


@pytest.mark.parametrize("k", [5, 10, 40])
def test_a_request_ranked_in_arrays_answers_as_the_frame_path(online, k):
    """recommend() through the array path and through recommend_users (the batch funnel's
    frames) give equal tables: items, ranks, scores, channels, every column."""
    at = dt.datetime.fromisoformat(online.day).replace(hour=9, tzinfo=dt.UTC)
    tables = online.tables
    compared = 0
    for n, user in enumerate(_users(online, 50, seed=k)):
        session = _session(online, 100 + n, at) if n % 4 == 0 else None
        fast = online.recommend(user, k=k, session=session, at=at)
        online.tables = None  # the frame path
        try:
            frames = online.recommend(user, k=k, session=session, at=at)
        finally:
            online.tables = tables
        assert fast.table.height > 0
        assert fast.table.equals(frames.table), (user, fast.path)
        compared += 1
    assert compared == 52


def test_request_tables_follow_the_ranker(online):
    """The tables are built once per context and ranker encoder (a hot swap loads a new one)."""
    assert RequestTables.of(online.ctx, online.model) is online.tables
    n_users = online.ctx.users.height
    assert online.tables.user_values.shape == (n_users + 1, len(F.USER_NUMERIC) + 2)
    assert np.isnan(online.tables.user_values[-1, : len(F.USER_NUMERIC)]).all()  # an unknown user's row


def test_users_without_new_signal_read_the_days_candidates(online, monkeypatch):
    """A known user without new signal on the day gets the day's recall_candidates rows as
    stored (no channel is searched) - the rows a live search gives; a user with new signal
    is searched."""
    stored = online.stored
    assert stored is not None
    batch = C.read_candidates(online.storage, online.day, online.ranking.rank_candidates)
    assert stored.rows == batch.height
    read = 0
    for user in _users(online, 80, seed=3)[:-2]:
        history = online._history(user)
        rows = stored.of(user)
        if rows is not None:
            assert rows.equals(batch.filter(pl.col("user_id") == user)) and rows.schema == batch.schema
        uidx = online.user_index[user]
        fresh = history.height and history["last_day"].max() >= online.day_date
        if (
            rows is None
            or not history.height
            or fresh
            or not online._day_exclusions(uidx, online._own_blocked(user, uidx))
        ):
            continue  # (no positive in the window: the cold path)
        read += 1
        with monkeypatch.context() as patch:
            patch.setattr("recsys_assets.services.online.candidate_tables", _no_search)
            candidates, path, _ = online._candidates(user, history)
        assert path == "known" and candidates.equals(rows)
        online.stored = None
        try:
            searched, _, _ = online._candidates(user, history)
        finally:
            online.stored = stored
        assert searched.equals(rows), user
    assert read >= 5
    assert stored.of(UNKNOWN[0]) is None


def test_a_requests_candidate_arrays_are_its_frame(online):
    """The arrays a request ranks (stored, searched or cold rows) hold the columns and values
    of serving_candidates' frame, in its order (a null as NaN); cold rows are picked in arrays
    (the day's cold-start ranking has no repeated rank)."""
    assert online._cold_arrays() is not None
    paths = set()
    for user in _users(online, 60, seed=9):
        rows, path, _ = online._candidate_rows(user, online._history(user))
        frame = rows.frame()
        paths.add(path)
        assert list(rows.columns) == frame.columns and rows.height == frame.height
        for name, values in rows.columns.items():
            np.testing.assert_array_equal(values, frame[name].to_numpy(), err_msg=f"{user} {name}")
    assert {"known", "known+fold_in", "cold_start"} <= paths


def test_users_without_new_signal_get_the_batch_list(online):
    """Every user the day's lists hold and who has no new signal since gets the batch
    `recommendations` list of the day, item for item: with positives in the window or with
    none (recall learns from clicks too, so the lists hold such users; the cold path would not)."""
    recs = pl.read_parquet(online.storage.partition_path("recommendations", online.day))
    top_k = online.ranking.top_k
    compared = {True: 0, False: 0}
    for user in online.stored.users.tolist():
        uidx, history = online.user_index.get(user), online._history(user)
        fresh = history.height and history["last_day"].max() >= online.day_date  # folded in
        if uidx is None or fresh or not online._day_exclusions(uidx, online._own_blocked(user, uidx)):
            continue
        answer = online.recommend(user, k=top_k)
        batch = recs.filter(pl.col("user_id") == user).sort("rank")["item_id"].to_list()
        assert answer.path == "known" and answer.table["item_id"].to_list() == batch, user
        compared[history.height > 0] += 1
    assert compared[False] >= 1, compared  # the world holds such users
    assert compared[True] >= 20, compared


def _no_search(*args, **kwargs):
    raise AssertionError("a channel was searched")


def test_unknown_users_share_one_cold_list(online):
    """Every unknown user without a history gets the cold path's list, made once: the rows
    popular_candidates gives that user."""
    from recsys_assets.services.serving import popular_candidates

    empty = online._history(UNKNOWN[0])
    assert empty.height == 0
    for user in UNKNOWN + [UNKNOWN[0]]:
        candidates, path, _ = online._candidates(user, empty)
        expected = popular_candidates(online.ctx, [user], online.ranking.rank_candidates, empty, online.exclude)
        assert path == "cold_start" and candidates.height > 0 and candidates.equals(expected)
    assert online._anonymous is not None


@pytest.mark.parametrize("explain", [False, True])
def test_unknown_users_share_one_answer(online, explain):
    """An unknown user without history or session gets the answer computed for the first one
    (their rows are ranked alike), with its own id; a session request is ranked on its own."""
    online._anonymous_answers.clear()
    first = online.recommend(UNKNOWN[0], k=10, explain=explain)
    second = online.recommend(UNKNOWN[1], k=10, explain=explain)
    assert set(online._anonymous_answers) == {(10, explain)}
    online._anonymous_answers.clear()
    computed = online.recommend(UNKNOWN[1], k=10, explain=explain)
    assert second.path == computed.path == "cold_start" and second.table.height == 10
    assert second.table.equals(computed.table)
    assert second.table["user_id"].to_list() == [UNKNOWN[1]] * 10
    assert first.table.drop("user_id").equals(second.table.drop("user_id"))
    online._anonymous_answers.clear()
    at = dt.datetime.fromisoformat(online.day).replace(hour=9, tzinfo=dt.UTC)
    online.recommend(UNKNOWN[0], k=10, explain=explain, session=_session(online, 5, at), at=at)
    assert not online._anonymous_answers


def test_excluded_items_are_the_pairs_drop_excluded_drops(online):
    """excluded_items (one CSR row) finds the pairs serving.drop_excluded drops, on an
    exclusion matrix holding about a third of each user's candidates."""
    import scipy.sparse as sp

    rng = np.random.default_rng(11)
    n_users, n_items = online.exclude.shape
    users = _users(online, 30, seed=4)
    dropped = 0
    for user in users:
        candidates, _, ctx = online._candidates(user, online._history(user))
        items = candidates["item_id"].to_numpy()
        indices = np.array([online.idx_of.get(int(i), -1) for i in items])
        uidx = online.user_index.get(user, -1)
        picked = indices[(indices >= 0) & (rng.random(len(indices)) < 0.35)]
        rows = np.full(len(picked), max(uidx, 0))
        exclude = sp.csr_matrix((np.ones(len(picked), np.float32), (rows, picked)), shape=(n_users, n_items))
        expected = drop_excluded(ctx, candidates, exclude)
        hit = excluded_items(online.tables, exclude, user, items)
        assert candidates.filter(~hit).equals(expected), user
        dropped += int(hit.sum())
    assert dropped > 100


def test_the_days_candidates_written_again_reload_the_server(built_world):
    """The server reads a user's candidates from the day's recall_candidates, so writing that
    partition again changes what it fingerprints (and a reload follows)."""
    import os

    from recsys_assets.services.recommend_service import RecommendService

    service = RecommendService(Settings.load(data_root=str(built_world)))
    before = service.fingerprint()
    path = service.lake.partition_path("recall_candidates", before[0])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        assert service.fingerprint() != before
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert service.fingerprint() == before


def test_approximate_search_is_kept_only_where_its_recall_is_measured_high(built_world, monkeypatch):
    """At load, each dot-product channel of a large catalog gets an HNSW search, measured
    against exact search on a sample of users: kept where recall@candidates_k reaches
    serving.ann_min_recall (its lists then come from the graph, scores exact), dropped
    elsewhere; requests are answered either way."""
    from recsys_assets.core.recall.base import RecallModel
    from recsys_assets.settings import ServingConfig

    monkeypatch.setattr(RecallModel, "faiss_min_items", 0)  # this world's catalog as a large one

    def load(min_recall):
        return _load(built_world, ServingConfig(ann_min_recall=min_recall, ann_sample_users=50))

    online = load(0.5)
    assert {"als", "bpr"} <= set(online.approximate)
    for name, recall in online.approximate.items():
        assert 0.0 <= recall <= 1.0
        kept = "approximate" in online.recall_channels[name].model._loaded_cache
        assert kept == (recall >= 0.5), name
    assert any("approximate" in c.model._loaded_cache for c in online.recall_channels.values())
    for user in _users(online, 20, seed=8):
        assert online.recommend(user, k=10).table.height == 10
    strict = load(1.0)  # a recall of 1 keeps a channel only where its lists are exact
    for name, recall in strict.approximate.items():
        assert ("approximate" in strict.recall_channels[name].model._loaded_cache) == (recall >= 1.0)


def test_a_second_server_process_loads_the_hnsw_graphs_the_first_built(built_world, monkeypatch, tmp_path):
    """The graphs go to the model cache: the next load (another worker, a restart) reads them
    instead of building, and searches the same graphs (the same measured recall, the same
    answers); /versions names which it did."""
    from recsys_assets.core.recall.base import RecallModel
    from recsys_assets.settings import ServingConfig

    monkeypatch.setattr(RecallModel, "faiss_min_items", 0)  # this world's catalog as a large one
    settings = Settings.load(data_root=str(built_world))

    def load():
        return OnlineRecommender(
            Lake(data_root=str(built_world)),
            ModelStore(models_root=settings.models_root, cache_dir=str(tmp_path)),
            settings.ranking,
            settings.recall,
            first_day=settings.start_date,
            serving=ServingConfig(ann_min_recall=0.01, ann_sample_users=50, compiled_trees=False),
        )

    first = load()
    assert first.graphs and set(first.graphs.values()) == {"built"}
    assert len(list((tmp_path / "hnsw-graphs").glob("*.faiss"))) == len(first.graphs)
    second = load()
    assert second.graphs == dict.fromkeys(first.graphs, "loaded")
    assert second.approximate == first.approximate
    for user in _users(first, 10, seed=9):
        assert first.recommend(user, k=10).rows == second.recommend(user, k=10).rows


def test_mips_hnsw_scores_exactly_and_finds_the_exact_top_k():
    """The graph's lists: exact inner products, best first, and on clustered vectors of
    unequal norms (inner product, not distance) the exact top-k almost entirely."""
    import faiss

    from recsys_assets.core.recall.ann import MipsHnsw

    rng = np.random.default_rng(2)
    centres = rng.normal(size=(20, 16))
    items = (centres[rng.integers(0, 20, 5000)] + 0.3 * rng.normal(size=(5000, 16))) * rng.uniform(0.5, 2, (5000, 1))
    queries = rng.normal(size=(50, 16)).astype(np.float32)
    graph = MipsHnsw(items, ef_search=200)
    scores, rows = graph.search(queries, 50)
    flat = faiss.IndexFlatIP(16)
    flat.add(items.astype(np.float32))
    _, exact = flat.search(queries, 50)
    np.testing.assert_allclose(scores, np.einsum("uj,ukj->uk", queries, items.astype(np.float32)[rows]), rtol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    recall = np.mean([len(np.intersect1d(r, e)) / 50 for r, e in zip(rows, exact, strict=True)])
    assert recall >= 0.95


def test_compiled_trees_score_as_lightgbm_bit_for_bit(online, tmp_path):
    """The server's compiled trees give LightGBM's scores exactly, on request matrices of
    known, fold-in, cold and unknown users; the object is compiled once, then loaded."""
    ranker = online.model
    assert ranker is not None and ranker.compiled is None
    ranker.compile_trees(tmp_path / "trees")
    try:
        assert len(list((tmp_path / "trees").glob("*.o"))) == 1
        matrices = []
        for user in _users(online, 40, seed=6):
            candidates, _, ctx = online._candidates(user, online._history(user))
            items = candidates["item_id"].to_numpy()
            listed = F._listed_ranks(ctx, candidates)
            matrices.append(request_matrix(ctx, online.tables, ranker, user, items, None, listed=listed))
        compiled = [ranker.score_matrix(m) for m in matrices]
        kept, ranker.compiled = ranker.compiled, None
        for matrix, scores in zip(matrices, compiled, strict=True):
            np.testing.assert_array_equal(scores, ranker.score_matrix(matrix))
        # the cached object loads (no second object), and scores alike
        ranker.compile_trees(tmp_path / "trees")
        assert len(list((tmp_path / "trees").glob("*.o"))) == 1
        np.testing.assert_array_equal(ranker.score_matrix(matrices[0]), compiled[0])
        assert kept is not ranker.compiled
    finally:
        ranker.compiled = None


def test_a_server_compiles_its_trees_or_says_why_not(built_world, monkeypatch):
    """With ServingConfig.compiled_trees the recommender scores with compiled trees and answers
    as LightGBM's; when compiling fails, LightGBM scores and the reason is reported."""
    from recsys_assets.settings import ServingConfig

    serving = ServingConfig(ann_min_recall=None)
    fast = _load(built_world, serving=serving)
    plain = _load(built_world)
    assert fast.trees == "compiled" and plain.trees == "lightgbm" and fast.model.compiled is not None
    for user in _users(plain, 30, seed=8):
        assert fast.recommend(user, k=10).table.equals(plain.recommend(user, k=10).table), user

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr("recsys_assets.core.ranking.ranker.compile_trees", broken)
    fallback = _load(built_world, serving=serving)
    assert fallback.trees == "lightgbm (not compiled: RuntimeError: no compiler here)"
    assert fallback.model.compiled is None and fallback.recommend(UNKNOWN[0], k=10).table.height == 10
