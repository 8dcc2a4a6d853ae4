"""Recall candidates: the fused top-K of every channel per user with each channel's rank,
one definition of a candidate row for the recall_candidates partition, the few users a ranker
or the funnel needs when that partition was never materialized, and the online path."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from recsys_assets.core import fusion
from recsys_assets.core.storage import local_scratch_dir, read_arrow, scan_polars, write_parquet_atomic
from recsys_assets.core.tables import connect
from recsys_assets.core.training_data import seen_matrix
from recsys_assets.services.channels import load_channels, recommend_channels
from recsys_assets.services.errors import MissingInput
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.training import load_day
from recsys_assets.settings import RecallConfig

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def candidate_users(data, recent_days: int | None) -> np.ndarray:
    """Users with a training positive (in the last `recent_days` days of the window, if set)."""
    if recent_days is None:
        return np.flatnonzero(np.diff(data.positives.indptr) > 0)
    age = data.days_ago.tocoo()  # 0 (+1e-3) = the last training day
    return np.unique(age.row[age.data < recent_days])


def id_arrays(lake: Lake, data) -> tuple[np.ndarray, np.ndarray]:
    """(user id of each user index, item id of each item index) from the ID dictionaries."""
    user_ids = read_arrow(lake.partition_path("user_id_dictionary"), columns=["id", "index"])
    item_ids = read_arrow(lake.partition_path("item_id_dictionary"), columns=["id", "index"])
    user_of = np.empty(data.n_users, np.int64)
    user_of[user_ids.column("index").to_numpy()] = user_ids.column("id").to_numpy()
    item_of = np.empty(data.n_items, np.int64)
    item_of[item_ids.column("index").to_numpy()] = item_ids.column("id").to_numpy()
    return user_of, item_of


def candidate_tables(
    day: str,
    batch: np.ndarray,
    n_items: int,
    loaded: dict,
    seen: sp.csr_matrix,
    blocked: np.ndarray | None,
    user_of: np.ndarray,
    item_of: np.ndarray,
    recall: RecallConfig,
    methods=None,
) -> dict[str, pa.Table]:
    """{method: the candidate rows of `batch` (user indices)}, each user's list best first, in
    the partition's columns: the one definition of a candidate row, whether written by
    recall_candidates, computed for a few users (candidates_for_users) or for one user online.
    `methods`: the fusions to return (default RecallConfig.candidate_methods)."""
    methods = recall.candidate_methods if methods is None else methods
    channels, ranges, _ = recommend_channels(loaded, batch, recall.candidates_k, seen, blocked)
    # weighted fusion only when it is returned (it needs the score ranges)
    fused = fusion.fuse(
        channels,
        n_items,
        recall.candidates_k,
        score_ranges=ranges if "weighted" in methods else None,
    )
    out = {}
    for method in methods:
        if method not in fused:
            continue
        items, scores = fused[method]
        ranks = fusion.channel_ranks(channels, items)
        valid = items >= 0
        # fused lists are sorted best first with -1 padding at the end: rank = position + 1
        position = np.broadcast_to(np.arange(1, items.shape[1] + 1), items.shape)
        n_valid = int(valid.sum())
        out[method] = pa.table(
            {
                "day": pa.repeat(pa.scalar(date.fromisoformat(day), pa.date32()), n_valid),
                "method": pa.repeat(pa.scalar(method, pa.string()), n_valid),
                "user_id": user_of[np.broadcast_to(batch[:, None], items.shape)[valid]],
                "item_id": item_of[items[valid]],
                "rank": position[valid].astype(np.int64),
                "score": scores[valid],
            }
            | {f"rank_{c}": r[valid] for c, r in ranks.items()}
            | {"channel_depth": pa.repeat(pa.scalar(recall.candidates_k, pa.int32()), n_valid)}
        )
    return out


def candidates_for_users(
    lake: Lake,
    model_store: ModelStore,
    day: str,
    recall: RecallConfig,
    user_ids: np.ndarray,
    first_day: str | None,
    day_data: tuple | None = None,
) -> pa.Table | None:
    """The rows recall_candidates of `day` holds (or would hold) for `user_ids`, computed now:
    for a day whose partition was never materialized, when only a few users' lists are needed
    (the ranker's sampled users, the funnel's test users) and a whole day's candidates would
    cost ~1 ms per active user. None when no recall model is published for `day`. `day_data`:
    (data, info) of load_day when the caller holds them already."""
    loaded = load_channels(model_store, day, recall.channels)
    if not loaded:
        return None
    if day_data is None:
        data, _, info, _, _ = load_day(lake, day, recall, first_day, model_store=model_store)
    else:
        data, info = day_data
    user_of, item_of = id_arrays(lake, data)
    wanted = np.isin(user_of, np.asarray(user_ids, np.int64))
    users = candidate_users(data, recall.candidates_recent_days)
    users = users[wanted[users]]
    users = users[np.argsort(user_of[users], kind="stable")]
    seen, blocked = seen_matrix(data.positives, info["consumed"]), np.flatnonzero(~info["available_items"])
    parts: list[pa.Table] = []
    for start in range(0, len(users), recall.candidates_batch_users):
        tables = candidate_tables(
            day,
            users[start : start + recall.candidates_batch_users],
            data.n_items,
            loaded,
            seen,
            blocked,
            user_of,
            item_of,
            recall,
        )
        parts.extend(tables[m] for m in recall.candidate_methods if m in tables)
    return (
        pa.concat_tables(parts).sort_by([("method", "ascending"), ("user_id", "ascending"), ("rank", "ascending")])
        if parts
        else None
    )


def write_candidates(
    lake: Lake, day: str, data, info, loaded: dict, users: np.ndarray, recall: RecallConfig
) -> tuple[int, pa.Table | None, dict]:
    """Fuse the channels for `users`, `candidates_batch_users` at a time (memory stays bounded
    by one batch), each batch spilled to a Parquet part, and publish the parts atomically as the
    day's partition. Users go in order of their id and each list best first, so the parts, read
    method by method, are already in the partition's (method, user_id, rank) order: no sort."""
    user_of, item_of = id_arrays(lake, data)
    seen, blocked = seen_matrix(data.positives, info["consumed"]), np.flatnonzero(~info["available_items"])
    users = users[np.argsort(user_of[users], kind="stable")]  # id order: the partition's order
    scratch = local_scratch_dir(lake.root, ".tmp")
    scratch.mkdir(parents=True, exist_ok=True)
    parts_dir = Path(tempfile.mkdtemp(prefix=f"recall_candidates-{day}-", dir=scratch))
    rows, last = 0, None
    per_method: dict[str, tuple[int, int]] = {}
    try:
        for start in range(0, len(users), recall.candidates_batch_users):
            batch = users[start : start + recall.candidates_batch_users]
            for method, last in candidate_tables(
                day, batch, data.n_items, loaded, seen, blocked, user_of, item_of, recall
            ).items():
                pq.write_table(last, parts_dir / f"{method}-{start:012d}.parquet")
                rows += last.num_rows
                users_n, cands_n = per_method.get(method, (0, 0))
                per_method[method] = (
                    users_n + pc.count_distinct(last.column("user_id")).as_py(),
                    cands_n + last.num_rows,
                )
        con = connect()
        try:
            if rows:
                # parts listed method by method, users ascending: DuckDB keeps the listed order
                parts = ", ".join(f"'{p}'" for p in sorted(parts_dir.glob("*.parquet")))
                write_parquet_atomic(
                    con, f"SELECT * FROM read_parquet([{parts}])", lake.partition_path("recall_candidates", day)
                )
            else:
                empty = last if last is not None else pa.table({"day": pa.array([], pa.date32())})
                con.register("empty", empty)
                write_parquet_atomic(con, "SELECT * FROM empty", lake.partition_path("recall_candidates", day))
        finally:
            con.close()
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    return rows, last, per_method


def day_candidates(
    lake: Lake,
    model_store: ModelStore,
    recall: RecallConfig,
    day: str,
    limit: int,
    users: np.ndarray,
    first_day: str | None,
    log=None,
    from_partition: bool = True,
    day_data: tuple | None = None,
) -> pl.DataFrame:
    """The recall candidates of `users` on `day` as the ranking stage reads them: from the
    recall_candidates partition when it is materialized, else computed for these users alone
    by the same code (a ranker's training days need the lists of their sampled users only,
    not a whole day's candidates). A partition of the recently active users only
    (candidates_recent_days) is completed by computing the lists of the other users asked for:
    the funnel evaluates a test user who last rated years ago too. `day_data`: (data, info) of
    load_day when the caller holds them already. Raises MissingInput when neither is possible."""
    if from_partition and lake.partition_path("recall_candidates", day).exists():
        stored = read_candidates(lake, day, limit, users)
        if recall.candidates_recent_days is None:
            return stored
        others = np.setdiff1d(np.asarray(users, np.int64), stored["user_id"].unique().to_numpy())
        every_user = recall.model_copy(update={"candidates_recent_days": None})
        table = candidates_for_users(lake, model_store, day, every_user, others, first_day, day_data)
        if table is None or not table.num_rows:
            return stored
        if log:
            log.info(
                f"recall_candidates of {day} holds the users active in its last {recall.candidates_recent_days} days: "
                f"computed the lists of {len(np.unique(table.column('user_id').to_numpy()))} others"
            )
        computed = serving_candidates(cast(pl.DataFrame, pl.from_arrow(table)).lazy(), limit).collect()
        return pl.concat([stored, computed.select(stored.columns)]).sort("user_id", "recall_rank")
    table = candidates_for_users(lake, model_store, day, recall, users, first_day, day_data)
    if table is None:
        raise MissingInput(f"recall_candidates is not materialized for {day} and no recall model is published for it")
    if log:
        log.info(
            f"recall_candidates of {day} is not materialized: computed the lists of "
            f"{len(np.unique(table.column('user_id').to_numpy()))} of {len(users)} users"
        )
    return serving_candidates(cast(pl.DataFrame, pl.from_arrow(table)).lazy(), limit).collect()


def scan_candidates(lake: Lake, day: str, limit: int) -> pl.LazyFrame:
    """recall_candidates of `day` (RRF fusion), the first `limit` per user, with channel ranks,
    as a lazy frame (the partition is sorted by method and user, so a user-range filter reads
    only the row groups it needs)."""
    path = lake.partition_path("recall_candidates", day)
    if not path.exists():
        raise MissingInput(f"recall_candidates is not materialized for {day} ({path})")
    return serving_candidates(scan_polars([path]), limit)


def serving_candidates(frame: FrameT, limit: int) -> FrameT:
    """Rows in recall_candidates' columns as the ranking stage reads them: RRF, the first
    `limit` per user, rank/score as recall_rank/recall_score, channel ranks as in_<channel>.
    Lazy for a partition; eager for one request's rows (a lazy plan's optimisation alone
    costs ~1 ms, five times the work on a request's 200 rows)."""
    columns = frame.collect_schema().names()
    # channel ranks inside the candidate lists become in_<channel> (0 = absent): feature_frame
    # reads them as rank_<channel> when channel_depth (the lists' length) covers rank_depth
    names = {"rank": "recall_rank", "score": "recall_score"} | {
        c: "in_" + c.removeprefix("rank_") for c in columns if c.startswith("rank_")
    }
    return frame.filter((pl.col("method") == "rrf") & (pl.col("rank") <= limit)).select(
        [pl.col(c).alias(names.get(c, c)) for c in columns if c not in ("method", "day")]
    )


def request_candidate_columns(table: pa.Table, limit: int) -> dict[str, np.ndarray]:
    """serving_candidates of one request's rows (candidate_tables' table), as arrays in the
    frame's column order and values (an integer column with nulls as float with NaN): a
    request reads ~100 rows, where each polars step's planning and thread wake-ups cost more."""
    names = table.column_names
    keep = (np.asarray(table.column("method").to_pylist()) == "rrf") & (table.column("rank").to_numpy() <= limit)
    renamed = {"rank": "recall_rank", "score": "recall_score"} | {
        c: "in_" + c.removeprefix("rank_") for c in names if c.startswith("rank_")
    }
    return {renamed.get(c, c): table.column(c).to_numpy()[keep] for c in names if c not in ("method", "day")}


@dataclass
class CandidateRows:
    """One request's candidate rows in serving_candidates' columns: arrays for the request
    path, the polars frame built only when asked for (the frame path: explanations, a day
    without a ranker)."""

    columns: dict[str, np.ndarray]
    make_frame: Callable[[], pl.DataFrame]

    @classmethod
    def of_frame(cls, frame: pl.DataFrame) -> CandidateRows:
        return cls({c: frame[c].to_numpy() for c in frame.columns}, lambda: frame)

    @property
    def height(self) -> int:
        return len(self.columns["item_id"])

    def frame(self) -> pl.DataFrame:
        return self.make_frame()


@dataclass
class StoredCandidates:
    """A day's recall_candidates (RRF, the first `limit` per user) held as arrays and sliced per
    user: the rows scan_candidates gives the batch path, without a scan per request. The
    server reads them for a user whose channel lists are the day's (no new signal since), so
    the two answer alike and the request skips the channel searches."""

    users: np.ndarray  # sorted user ids
    starts: np.ndarray  # the rows of users[j] are starts[j]:starts[j + 1]
    columns: dict[str, np.ndarray]  # serving_candidates' columns but user_id, in its order
    dtypes: dict[str, pl.DataType]

    @classmethod
    def load(cls, lake: Lake, day: str, limit: int) -> StoredCandidates | None:
        """The day's partition in memory; None when it is not materialized or holds no rows."""
        path = lake.partition_path("recall_candidates", day)
        if not path.exists():
            return None
        table = read_arrow(path, filters=[("method", "=", "rrf"), ("rank", "<=", limit)])
        frame = serving_candidates(cast(pl.DataFrame, pl.from_arrow(table)), limit)
        if frame.height == 0:
            return None
        frame = frame.sort("user_id", "recall_rank", maintain_order=True)  # the partition's order already
        users, starts = np.unique(frame["user_id"].to_numpy(), return_index=True)
        return cls(
            users=users,
            starts=np.append(starts, frame.height),
            columns={c: _narrowest(frame[c].to_numpy()) for c in frame.columns if c != "user_id"},
            dtypes=dict(frame.schema),
        )

    @property
    def rows(self) -> int:
        return int(self.starts[-1])

    def columns_of(self, user_id: int) -> dict[str, np.ndarray] | None:
        """The user's rows as arrays (the stored, narrowest types; None: the user has none)."""
        at = int(np.searchsorted(self.users, user_id))
        if at == len(self.users) or self.users[at] != user_id:
            return None
        lo, hi = int(self.starts[at]), int(self.starts[at + 1])
        return {"user_id": np.full(hi - lo, user_id, np.int64)} | {c: v[lo:hi] for c, v in self.columns.items()}

    def of(self, user_id: int) -> pl.DataFrame | None:
        """The user's rows as serving_candidates gives them (None: the user has none)."""
        values = self.columns_of(user_id)
        if values is None:
            return None
        return pl.DataFrame(
            [pl.Series(c, v).cast(self.dtypes[c]) for c, v in values.items()]  # back to the partition's types
        )

    def rows_of(self, user_id: int) -> CandidateRows | None:
        values = self.columns_of(user_id)
        return None if values is None else CandidateRows(values, lambda: cast(pl.DataFrame, self.of(user_id)))


def _narrowest(values: np.ndarray) -> np.ndarray:
    """An integer column in the narrowest integer type holding its values (ranks fit int16:
    a day's candidates take a fraction of the memory); other columns as they are."""
    if values.dtype.kind not in "iu" or not len(values):
        return values
    lo, hi = int(values.min()), int(values.max())
    for dtype in (np.int8, np.int16, np.int32):
        if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
            return values.astype(dtype)
    return values


def read_candidates(lake: Lake, day: str, limit: int, users: np.ndarray | None = None) -> pl.DataFrame:
    """scan_candidates, collected (only `users`' rows when given)."""
    frame = scan_candidates(lake, day, limit)
    if users is not None:
        frame = frame.filter(pl.col("user_id").is_in(pl.Series(users, dtype=pl.Int64).implode()))
    return frame.collect()


def candidates_day(
    day: str, lake: Lake, model_store: ModelStore, recall: RecallConfig, first_day: str | None
) -> tuple[int, int, pa.Table | None, dict]:
    """The recall_candidates partition of `day`: (rows, users, the last part written, {method:
    (users, candidates)}). Raises NoTrainingData on the first day, MissingInput when no recall
    model of `day` is published."""
    data, _, info, _, _ = load_day(lake, day, recall, first_day, model_store=model_store)
    loaded = load_channels(model_store, day, recall.channels)
    if not loaded:
        raise MissingInput(f"no recall model is published for {day}")
    users = candidate_users(data, recall.candidates_recent_days)
    rows, table, per_method = write_candidates(lake, day, data, info, loaded, users, recall)
    return rows, len(users), table, per_method
