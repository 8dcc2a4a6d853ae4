"""Online path: one user through the same funnel as the batch `recommendations` asset.

Loads once (the day's recall models, the ranker if it was promoted, features, dictionaries),
then answers a user in milliseconds: candidates from every recall channel fused by RRF
(exactly as recall_candidates), ranked, re-ranked and explained by the same functions as
the batch path. Users active since the models were trained (positives on the serving day
itself) get a fresh ALS vector by fold-in, item factors frozen. Unknown users and users
without history take the cold-start path (popular items through the ranker) - never an error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import cast

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking.features import Channel
from recsys_assets.core.ranking.request_path import RequestTables, excluded_items
from recsys_assets.core.ranking.session_features import SessionState
from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.recall.base import RecallModel
from recsys_assets.core.training_data import seen_matrix
from recsys_assets.services.candidates import (
    CandidateRows,
    StoredCandidates,
    candidate_tables,
    request_candidate_columns,
    serving_candidates,
)
from recsys_assets.services.channels import load_channels
from recsys_assets.services.days import days_before
from recsys_assets.services.errors import MissingInput
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.registry import serving_champion_model, serving_ranker_day
from recsys_assets.services.serving import (
    COLD_START_CHANNEL,
    answer_table,
    cold_start_ranking,
    feature_context,
    load_ranker,
    popular_candidates,
    prepare_context,
    recommend_request,
    recommend_users,
    user_history,
)
from recsys_assets.services.training import consumed_before
from recsys_assets.settings import RankingConfig, RecallConfig, ServingConfig, Settings

log = logging.getLogger(__name__)


def _row(matrix: sp.csr_matrix, row: int) -> np.ndarray:
    """The column indices a CSR row stores (none past the last row), without a row copy."""
    if row >= matrix.shape[0]:
        return np.zeros(0, np.int64)
    return matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]].astype(np.int64)


def _user_rows(frame: pl.DataFrame) -> dict[int, tuple[int, int]]:
    """{user_id: (first row, row after the last)} of a frame sorted by user_id."""
    users = frame["user_id"].to_numpy()
    ids, first = np.unique(users, return_index=True)
    stops = np.append(first[1:], len(users))
    return dict(zip(ids.tolist(), zip(first.tolist(), stops.tolist(), strict=True), strict=True))


class FoldedALS(RecallModel):
    """An ALS channel whose vectors for some users are replaced by fold-in vectors. It searches
    like the published model (faiss on a large catalog), through that model's item vectors and
    index (kept once per loaded model, not rebuilt per request)."""

    name = "als"

    def __init__(self, base, vectors: dict[int, np.ndarray]):
        super().__init__(**base.params)
        self.base, self.vectors = base, vectors
        self.item_factors = base.item_factors
        self._loaded_cache = base._loaded_cache  # item-side only: the same for every user

    def search_user_vectors(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, np.int64)
        return np.stack([self.vectors[u] if u in self.vectors else self.base.user_factors[u] for u in users])

    def search_item_vectors(self) -> np.ndarray:
        return self.base.search_item_vectors()

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.search_user_vectors(users) @ self.item_factors.T

    def arrays(self) -> dict[str, np.ndarray]:
        return self.base.arrays()


def _local_cache(model_store: ModelStore) -> Path:
    """The machine-local cache of what the server derives from the models at load (compiled
    trees, HNSW graphs; core/local_cache.py)."""
    return Path(model_store.cache_dir or Path(tempfile.gettempdir()) / "recsys-model-cache")


def model_days(model_store: ModelStore) -> list[str]:
    """Every day some recall model is published for, in order."""
    return sorted({day for name in recall_models.MODELS for day in model_store.published_days(f"recall_{name}")})


def latest_model_day(model_store: ModelStore) -> str:
    days = model_days(model_store)
    if not days:
        raise MissingInput(
            f"no recall model is published under {model_store.root}; run the quickstart or "
            "materialize the recall assets first"
        )
    return days[-1]


@dataclass
class Answer:
    user_id: int
    path: str  # "known", "known+fold_in" or "cold_start"
    day: str
    stage: str
    rows: list[dict]  # the answer table's rows (a request ranked in arrays makes no frame)
    timings_ms: dict
    _table: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def table(self) -> pl.DataFrame:
        """The answer as recommend_users' table (user_id, rank, item_id, score, stage, channels,
        because_you_watched, top_features)."""
        if self._table is None:
            self._table = answer_table(self.rows)
        return self._table


class OnlineRecommender:
    def __init__(
        self,
        storage: Lake,
        model_store: ModelStore,
        ranking: RankingConfig,
        recall: RecallConfig,
        day: str | None = None,
        first_day: str | None = None,
        serving: ServingConfig | None = None,
    ):
        self.storage, self.ranking, self.recall = storage, ranking, recall
        if day is not None:
            try:
                date.fromisoformat(day)
            except ValueError:
                raise ValueError(f"day {day!r} is not a date (YYYY-MM-DD)") from None
            published = model_days(model_store)
            if day not in published:  # never serve another day's models (or popularity) under its name
                raise MissingInput(
                    f"no recall model is published for {day}; days with models: "
                    + (", ".join(published[-5:]) if published else "none")
                    + f". Materialize the recall assets of {day}, or leave out the day to serve the latest models"
                )
        self.day = day or latest_model_day(model_store)
        self.ranker_day, self.why = serving_ranker_day(storage, self.day)
        self.model = load_ranker(model_store, self.ranker_day) if self.ranker_day else None
        # without a ranker, the serving recall champion orders the lists (as in the batch path)
        self.recall_champion = serving_champion_model(storage, self.day)
        self.ctx = feature_context(
            storage,
            model_store,
            self.day,
            self.model.channel_names if self.model else ranking.channels,
            recall,
            self.model.rank_depth if self.model else ranking.rank_depth,
            first_day,
        )
        # recall shares the ranker's and the cold path's loaded models (one copy in memory, one
        # faiss index each); channels in recall_candidates' order, so a user's fused list is the batch list
        shared = self.ctx.channels | ({COLD_START_CHANNEL: self.ctx.cold_start} if self.ctx.cold_start else {})
        loaded = shared | load_channels(model_store, self.day, [c for c in recall.channels if c not in shared])
        self.recall_channels = {c: loaded[c] for c in recall.channels if c in loaded}
        self.user_index = dict(
            zip(self.ctx.user_index["user_id"].to_list(), self.ctx.user_index["user_idx"].to_list(), strict=False)
        )
        self.user_of = np.full(int(cast(int, self.ctx.user_index["user_idx"].max())) + 1, -1, np.int64)
        self.user_of[self.ctx.user_index["user_idx"].to_numpy()] = self.ctx.user_index["user_id"].to_numpy()
        self.item_of = np.full(int(cast(int, self.ctx.item_index["item_idx"].max())) + 1, -1, np.int64)
        self.item_of[self.ctx.item_index["item_idx"].to_numpy()] = self.ctx.item_index["item_id"].to_numpy()
        self.idx_of = dict(
            zip(self.ctx.item_index["item_id"].to_list(), self.ctx.item_index["item_idx"].to_list(), strict=False)
        )
        # what recall_candidates blocked (items added on D included, as in recall's training data),
        # not the item features' availability (added before D): otherwise the lists differ
        if self.ctx.blocked_items is not None:
            self.unavailable = np.unique(np.asarray(self.ctx.blocked_items, np.int64))
        else:
            available = set(self.ctx.items.filter("available")["item_id"].to_list())
            self.unavailable = np.array(
                sorted(idx for item, idx in self.idx_of.items() if item not in available), np.int64
            )
        # the window's positives plus the serving day's own (those are newer than the models)
        days = days_before(self.day, recall.window_days, first_day) + [self.day]
        self.history = user_history(storage, days)
        # recall never proposes what the user already had a positive signal on (clicks included)
        self.seen_signal = user_history(storage, days, with_clicks=True)
        # both sorted by user: a request slices its user's rows instead of filtering the tables
        self.history_rows = _user_rows(self.history)
        self.signal_rows = _user_rows(self.seen_signal)
        self.signal_items = self.seen_signal["item_id"].to_numpy()
        self.day_date = date.fromisoformat(self.day)
        # nor anything consumed: before the day (the batch exclusions) or on the day itself
        next_day = (self.day_date + timedelta(days=1)).isoformat()
        self.exclude = seen_matrix(self.ctx.exclude, consumed_before(storage, next_day, self.day))
        # per item index: unavailable (every exclusion row and list leaves these out)
        width = max(
            len(self.item_of), self.exclude.shape[1], self.ctx.exclude.shape[1] if self.ctx.exclude is not None else 0
        )
        self._unavailable_mask = np.zeros(max(width, int(self.unavailable.max(initial=-1)) + 1), bool)
        self._unavailable_mask[self.unavailable] = True
        # the day's fused lists, read (not searched) for users without new signal since
        self.stored = StoredCandidates.load(storage, self.day, ranking.rank_candidates)
        self._anonymous: pl.DataFrame | None = None  # the candidates of an unknown user (_popular)
        # {(k, explain): the answer rows of an unknown user without history or session}: every
        # such user is ranked on the same rows (no user features, no exclusions), so gets the
        # same list; made once, the user's id set per request
        self._anonymous_answers: dict[tuple[int, bool], tuple[list[dict], str]] = {}
        prepare_context(self.ctx)  # shared by every request, and by the fold-in copies of ctx
        # a request's ranking in arrays (None: a context the frame path alone can serve)
        self.tables = RequestTables.of(self.ctx, self.model) if self.model is not None else None
        for channel in self.recall_channels.values():  # per-model caches (normalised profiles) now
            if isinstance(channel.model, recall_models.ContentColdStartModel) and channel.n_users:
                channel.model.score(np.zeros(1, np.int64))
        # {channel: recall@candidates_k of its approximate lists vs exact} (used where high enough)
        # and {channel: whether its HNSW graph was "built" or "loaded" from the model cache}
        self.graphs: dict[str, str] = {}
        self.approximate = self._approximate_searches(serving, model_store) if serving is not None else {}
        # how requests score the ranker's trees: "compiled", "lightgbm" or why not compiled
        self.trees = self._compile_trees(model_store) if serving is not None and serving.compiled_trees else "lightgbm"
        if "als" in self.recall_channels:  # the fold-in solver (and its imports: ~0.1 s) now, not on a request
            als = self.recall_channels["als"]
            cast("recall_models.ALSModel", als.model).fold_in(sp.csr_matrix((1, als.n_items), dtype=np.float32))

    def _compile_trees(self, model_store: ModelStore) -> str:
        if self.model is None:
            return "no ranker"
        cache = _local_cache(model_store) / "compiled-trees"
        try:
            self.model.compile_trees(cache)
        except Exception as error:  # noqa: BLE001 — LightGBM's predictor still answers, the same scores
            log.warning("the ranker's trees are not compiled (LightGBM's predictor scores requests): %r", error)
            return f"lightgbm (not compiled: {type(error).__name__}: {error})"
        return "compiled"

    def _approximate_searches(self, serving: ServingConfig, model_store: ModelStore) -> dict[str, float]:
        """Give each dot-product channel of a large catalog an HNSW search, measured first: the
        channel's lists for a sample of the day's users (their exclusions, the unavailable items
        blocked), approximate against exact; kept only with recall@candidates_k of at least
        serving.ann_min_recall, else the channel stays exact. The graphs are kept in the model
        cache: the first server process builds a channel's graph, the others and the next
        start load it (seconds per channel at 100k items, and every process searches the same
        graph)."""
        if serving.ann_min_recall is None or self.ctx.exclude is None:
            return {}
        exclude, k = self.ctx.exclude, self.recall.candidates_k
        users = np.flatnonzero(np.diff(exclude.indptr) > 0)
        rng = np.random.default_rng(0)
        users = np.sort(rng.choice(users, min(serving.ann_sample_users, len(users)), replace=False))
        out = {}
        for name, channel in self.recall_channels.items():
            model = channel.model
            vectors = model._item_vectors()
            if vectors is None or len(vectors) < model.faiss_min_items or not len(users):
                continue
            rows = exclude if exclude.shape[1] == channel.n_items else exclude[:, : channel.n_items]
            blocked = self.unavailable[self.unavailable < channel.n_items]
            sample = users[users < channel.n_users]
            exact, _ = model.recommend(sample, k, exclude=rows, blocked_items=blocked)
            self.graphs[name] = model.approximate_search(
                blocked, serving.ann_ef_search, _local_cache(model_store) / "hnsw-graphs"
            )
            approximate, _ = model.recommend(sample, k, exclude=rows, blocked_items=blocked)
            found = [
                len(np.intersect1d(a[a >= 0], e[e >= 0])) / max((e >= 0).sum(), 1)
                for a, e in zip(approximate, exact, strict=True)
            ]
            out[name] = float(np.mean(found))
            if out[name] < serving.ann_min_recall:
                model.exact_search()
        return out

    @classmethod
    def from_settings(
        cls, settings: Settings, day: str | None = None, serving: ServingConfig | None = None
    ) -> OnlineRecommender:
        """The recommender of `day` (default: the latest models) over the settings' data root;
        with `serving`, as the server builds it (approximate search, compiled trees)."""
        return cls(
            Lake(data_root=settings.data_root),
            ModelStore(models_root=settings.models_root, cache_dir=settings.model_cache),
            settings.ranking,
            settings.recall,
            day=day,
            first_day=settings.start_date,
            serving=serving,
        )

    def _history(self, user_id: int) -> pl.DataFrame:
        start, stop = self.history_rows.get(user_id, (0, 0))
        return self.history.slice(start, stop - start)

    def _candidates(self, user_id: int, history: pl.DataFrame) -> tuple[pl.DataFrame, str, F.FeatureContext]:
        """_candidate_rows with the rows as serving_candidates' frame."""
        rows, path, ctx = self._candidate_rows(user_id, history)
        return rows.frame(), path, ctx

    def _candidate_rows(self, user_id: int, history: pl.DataFrame) -> tuple[CandidateRows, str, F.FeatureContext]:
        """(candidates, path, the context the ranker reads: the shared one, or for a fold-in a
        shallow copy holding the request's own ALS channel, so requests may run concurrently)."""
        uidx = self.user_index.get(user_id)
        if uidx is None:
            return self._popular_rows(user_id, history), "cold_start", self.ctx
        ctx = self.ctx
        n_items = len(self.item_of)
        own = self._own_blocked(user_id, uidx)
        if history.height == 0:
            # no positive in the window, but the day's lists may hold the user (recall also
            # learns from clicks): then the batch ranked those rows, and so does the request
            stored = self._stored_rows(user_id, uidx, own)
            if stored is not None:
                return stored, "known", ctx
            return self._popular_rows(user_id, history), "cold_start", self.ctx
        seen = [self.idx_of[i] for i in history["item_id"].to_list() if i in self.idx_of]
        path = "known"
        channels = dict(self.recall_channels)
        fresh = cast(dt.date, history["last_day"].max()) >= self.day_date
        if fresh and "als" in channels:  # active since training: fold in, item factors frozen
            als = channels["als"]
            rows = (
                sp.csr_matrix(
                    (np.ones(len(seen), np.float32), (np.zeros(len(seen), np.int64), seen)), shape=(1, als.n_items)
                )
                if seen
                else sp.csr_matrix((1, als.n_items), dtype=np.float32)
            )
            # the als channel's model is the published ALSModel (self.recall_channels is never folded)
            vector = cast("recall_models.ALSModel", als.model).fold_in(rows[:, : als.n_items])[0]
            channels["als"] = Channel(
                FoldedALS(als.model, {uidx: vector}), max(als.n_users, uidx + 1), als.n_items, als.score_range
            )
            if "als" in self.ctx.channels:  # the derived caches stay shared (same dict)
                ctx = dataclasses.replace(self.ctx, channels={**self.ctx.channels, "als": channels["als"]})
            path = "known+fold_in"
        if path == "known":
            stored = self._stored_rows(user_id, uidx, own)  # the day's lists: what the searches would give
            if stored is not None:
                return stored, path, ctx
        known = {name: channel for name, channel in channels.items() if uidx < channel.n_users}
        if not known:
            return self._popular_rows(user_id, history), "cold_start", self.ctx
        # recommend() reads the exclusion row of the user's own index (rows above it empty: an
        # index array of zeros, not a matrix built entry by entry); unavailable items are blocked
        # for every user, as in recall_candidates
        # (int32 index arrays: scipy's own choice for this size, so it keeps them instead of
        # copying an int64 indptr of a million users into int32 on every request)
        indptr = np.zeros(uidx + 2, np.int32)
        indptr[-1] = len(own)
        exclude = sp.csr_matrix(
            (np.ones(len(own), np.float32), own.astype(np.int32), indptr), shape=(uidx + 1, n_items), copy=False
        )
        table = candidate_tables(
            self.day,
            np.array([uidx]),
            n_items,
            known,
            exclude,
            self.unavailable,
            self.user_of,
            self.item_of,
            self.recall,
            ("rrf",),
        )["rrf"]
        # channel_depth kept: feature_frame reads rank_<channel> from the request's lists (in_<channel>);
        # without it, it searches the channels with the day's exclusions
        limit, deep = self.ranking.rank_candidates, self._recall_lists_are_rank_lists(uidx, ctx)
        columns = request_candidate_columns(table, limit)

        def frame() -> pl.DataFrame:
            rows = serving_candidates(cast(pl.DataFrame, pl.from_arrow(table)), limit)
            return rows if deep else rows.drop("channel_depth")

        if not deep:
            del columns["channel_depth"]
        return CandidateRows(columns, frame), path, ctx

    def _recall_lists_are_rank_lists(self, uidx: int, ctx: F.FeatureContext) -> bool:
        """Whether rank_<channel> can be read from the request's own channel lists instead of
        searching each channel again: lists as deep as rank_depth (a deeper top-k may order ties
        differently) and a training positive in the window (without one a personal channel ranks
        nothing, so rank_<channel> is depth + 1 there). A user with new signal on the day is
        ranked in the lists the request fused (its fold-in ALS vector; the day's positives and
        clicks left out, items it can no longer be recommended), as the batch lists are the
        ones recall_candidates fused; for a user without, those are the day's lists exactly.
        On a large catalog (faiss, the sparse item-CF and popularity heads) the searches are
        exact too: the same items in the same order, exact score ties aside
        (tests/test_server.py checks both catalog sizes)."""
        if ctx.window_users is None or self.recall.candidates_k != ctx.rank_depth:
            return False
        return uidx < len(ctx.window_users) and bool(ctx.window_users[uidx])

    def blocked(self, user_id: int, uidx: int) -> np.ndarray:
        """The item indices the user's lists leave out now: every positive or click in the
        window and on the day, everything consumed up to the day's end, unavailable items."""
        return np.union1d(self._own_blocked(user_id, uidx), self.unavailable)

    def _stored_rows(self, user_id: int, uidx: int, own_blocked: np.ndarray) -> CandidateRows | None:
        """The user's rows in the day's lists when it has no new signal since they were made."""
        if self.stored is None or not self._day_exclusions(uidx, own_blocked):
            return None
        return self.stored.rows_of(user_id)

    def _own_blocked(self, user_id: int, uidx: int) -> np.ndarray:
        """blocked() but the unavailable items (the same for every user), sorted."""
        start, stop = self.signal_rows.get(user_id, (0, 0))
        signal = self.signal_items[start:stop].tolist()
        items = np.unique(
            np.concatenate(
                [np.asarray([self.idx_of[i] for i in signal if i in self.idx_of], np.int64), _row(self.exclude, uidx)]
            )
        )
        return items[~self._unavailable_mask[items]]

    def _day_exclusions(self, uidx: int, own_blocked: np.ndarray) -> bool:
        """Whether the request leaves out what the day's lists left out (ctx's exclusion row and
        blocked items, those the unavailable items): no new signal since they were made."""
        ctx = self.ctx
        if ctx.exclude is None or ctx.blocked_items is None:
            return False
        day = np.unique(_row(ctx.exclude, uidx))
        return np.array_equal(day[~self._unavailable_mask[day]], own_blocked)

    def _popular_rows(self, user_id: int, history: pl.DataFrame) -> CandidateRows:
        """_popular's rows, picked in arrays when the cold-start ranking orders its items
        strictly (then the first n not watched nor excluded are exactly popular_candidates')."""
        ranking = self._cold_arrays()
        if ranking is None or self.tables is None:
            return CandidateRows.of_frame(self._popular(user_id, history))
        items, pops, channel = ranking
        n, depth = self.ranking.rank_candidates, self.ranking.rank_candidates + 50
        watched = history["item_id"].to_numpy()
        while True:  # as popular_candidates: deeper only for a user short of n
            head = items[:depth]
            left = ~np.isin(head, watched) & ~excluded_items(self.tables, self.exclude, user_id, head)
            picked = np.flatnonzero(left)[:n]
            if len(picked) >= n or depth >= len(items):
                break
            depth *= 4
        columns = {
            "user_id": np.full(len(picked), user_id, np.int64),
            "item_id": head[picked],
            "recall_rank": np.arange(1, len(picked) + 1, dtype=np.int64),
            "recall_score": 1.0 / pops[picked],
            f"in_{channel}": pops[picked],
        }
        return CandidateRows(columns, lambda: self._popular(user_id, history))

    def _cold_arrays(self) -> tuple[np.ndarray, np.ndarray, str] | None:
        """(item ids, their rank from 1, channel) of cold_start_ranking, None when ranks repeat."""
        if "cold_arrays" not in self.ctx.derived:
            ranked, channel = cold_start_ranking(self.ctx)
            pops = ranked["pop"].cast(pl.Int64).to_numpy()
            strict = bool((np.diff(pops) > 0).all()) and not ranked["pop"].has_nulls()
            self.ctx.derived["cold_arrays"] = (ranked["item_id"].to_numpy(), pops, channel) if strict else None
        return self.ctx.derived["cold_arrays"]

    def _popular(self, user_id: int, history: pl.DataFrame) -> pl.DataFrame:
        if history.height or user_id in self.user_index:  # a history or exclusions of its own
            return popular_candidates(self.ctx, [user_id], self.ranking.rank_candidates, history, self.exclude)
        # every unknown user without a history gets the same list: made once, the user's id set
        if self._anonymous is None:
            self._anonymous = popular_candidates(
                self.ctx, [user_id], self.ranking.rank_candidates, history, self.exclude
            ).drop("user_id")
        return pl.DataFrame({"user_id": np.full(self._anonymous.height, user_id, np.int64)}).hstack(self._anonymous)

    def recommend(
        self,
        user_id: int,
        k: int = 10,
        explain: bool = False,
        session: SessionState | None = None,
        at: dt.datetime | None = None,
    ) -> Answer:
        """The user's top-k; with `session` (the live session's actions so far), the ranker also
        sees what the session did before `at` (default: now). Reads the loaded state only, so
        several threads may call it at once."""
        timings = {}
        started = time.perf_counter()
        history = self._history(user_id)
        anonymous = session is None and history.height == 0 and user_id not in self.user_index
        if anonymous and (k, explain) in self._anonymous_answers:
            rows, path = self._anonymous_answers[k, explain]
            timings["total_ms"] = (time.perf_counter() - started) * 1000
            return Answer(
                user_id=user_id,
                path=path,
                day=self.day,
                stage="ranker_rerank" if self.model is not None else "recall_rerank",
                rows=[row | {"user_id": user_id} for row in rows],
                timings_ms=timings,
            )
        candidates, path, ctx = self._candidate_rows(user_id, history)
        timings["recall_ms"] = (time.perf_counter() - started) * 1000
        settings = self.ranking.model_copy(update={"top_k": k})
        table: pl.DataFrame | None = None
        if self.model is not None and self.tables is not None and not explain:
            rows = recommend_request(
                ctx,
                self.model,
                self.tables,
                user_id,
                candidates.columns,
                history,
                settings,
                timings=timings,
                exclude=self.exclude,
                session=session,
                at=(at or dt.datetime.now(dt.UTC)) if session is not None else None,
            )
        else:
            table = recommend_users(
                ctx,
                self.model,
                candidates.frame(),
                history,
                settings,
                explain=explain,
                timings=timings,
                exclude=self.exclude,
                session=session,
                at=(at or dt.datetime.now(dt.UTC)) if session is not None else None,
                recall_champion=self.recall_champion,
            )
            rows = table.to_dicts()
        timings["total_ms"] = sum(timings.values())
        if anonymous:
            self._anonymous_answers[k, explain] = (rows, path)
        return Answer(
            user_id=user_id,
            path=path,
            day=self.day,
            stage="ranker_rerank" if self.model is not None else "recall_rerank",
            rows=rows,
            timings_ms=timings,
            _table=table,
        )
