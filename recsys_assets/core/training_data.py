"""Assemble the sparse matrices recall models train on, and the held-out truth of the test
day, from interaction partitions and the id dictionaries. Strictly time-based: a model of
day D learns from days D-window .. D-1 and is evaluated on day D."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.ingest import read_sql
from recsys_assets.core.recall.base import TrainingData
from recsys_assets.core.tables import bind, connect


@dataclass
class TestSet:
    """Held-out positives of the test day for users that have any, with seen items removed."""

    users: np.ndarray  # user indices, sorted
    # users(all) × items, 1 = relevant on the test day: unseen in training, not consumed before
    relevant: sp.csr_matrix
    all_positive: sp.csr_matrix  # users(all) × items, every positive of the test day (seen or not)


def _csr(rows, cols, values, shape) -> sp.csr_matrix:
    m = sp.csr_matrix((np.asarray(values, np.float32), (np.asarray(rows), np.asarray(cols))), shape=shape)
    m.sum_duplicates()
    m.eliminate_zeros()
    return m


def seen_matrix(positives: sp.csr_matrix, consumed: sp.csr_matrix | None = None) -> sp.csr_matrix:
    """What recall treats as already seen: every stored positive (clicks included) and, when
    given, every item the user consumed before the day (sql/consumed_pairs.sql), as 1.0."""
    seen = (positives > 0).astype(np.float32).tocsr()
    if consumed is None or consumed.nnz == 0:
        return seen
    union = (seen + consumed).tocsr()
    union.data[:] = 1.0
    return union


def _consumed(con, shape: tuple[int, int]) -> sp.csr_matrix:
    """users × items, 1.0 where relation history_interactions holds a consumption of the pair."""
    pairs = con.execute(read_sql("consumed_pairs.sql")).fetchnumpy()
    consumed = sp.csr_matrix(
        (np.ones(len(pairs["user_idx"]), np.float32), (pairs["user_idx"], pairs["item_idx"])), shape=shape
    )
    consumed.sum_duplicates()  # sorted indices: per-pair lookups binary-search a row
    return consumed


def load_consumed(history_files: list[Path], user_dictionary: Path, item_dictionary: Path) -> sp.csr_matrix:
    """Every (user, item) consumed in `history_files` (interactions partitions), users × items
    of the dictionaries, 1.0: only the id and consumption columns are read."""
    con = connect()
    try:
        bind(con, "history_interactions", history_files, "interactions")
        con.execute(f"CREATE TEMP VIEW user_dictionary AS SELECT * FROM read_parquet('{user_dictionary}')")
        con.execute(f"CREATE TEMP VIEW item_dictionary AS SELECT * FROM read_parquet('{item_dictionary}')")
        row = con.execute(
            "SELECT (SELECT coalesce(max(index) + 1, 0) FROM user_dictionary), "
            "(SELECT coalesce(max(index) + 1, 0) FROM item_dictionary)"
        ).fetchone()
        assert row is not None  # aggregate queries return one row
        return _consumed(con, (row[0], row[1]))
    finally:
        con.close()


def held_out_from(files: list[Path], share: float) -> datetime | None:
    """The time from which the last `share` of the files' positives fall (the held-out part of a
    period cut in time); None when they hold no positive."""
    con = connect()
    try:
        bind(con, "period_interactions", files, "interactions")
        row = con.execute(
            "SELECT quantile_disc(event_at, $q) FROM period_interactions WHERE is_positive", {"q": 1.0 - share}
        ).fetchone()
    finally:
        con.close()
    return row[0] if row else None


def load_training_data(
    day: str,
    train_files: list[Path],
    test_files: list[Path],
    user_dictionary: Path,
    item_dictionary: Path,
    items_snapshot: Path,
    click_weight: float = 0.25,
    with_shown: bool = True,
    history_files: list[Path] | None = None,
    split_at: datetime | None = None,
) -> tuple[TrainingData, TestSet, dict]:
    """with_shown=False leaves shown_negatives empty and reads only clicked or positive
    interactions: the same positives and ages from a fraction of the rows (impressions
    outnumber clicks ~15:1), for every consumer but impression-aware models. `history_files`
    (every interactions partition before `day`): info["consumed"] holds what the users consumed
    in them (load_consumed), and an item consumed before is never relevant on `day`.
    `split_at` (a UTC time) cuts the files in time: training reads the rows before it, the
    held-out truth the rows from it on (a validation period inside one day)."""
    con = connect()
    try:
        bind(con, "train_source", train_files, "interactions")
        bind(con, "test_source", test_files, "interactions")
        if history_files is not None:
            bind(con, "history_interactions", history_files, "interactions")
        train_filter = [] if with_shown else ["(is_positive OR clicked)"]
        test_filter = []
        if split_at is not None:
            at = f"TIMESTAMPTZ '{split_at.astimezone(UTC).isoformat()}'"
            train_filter.append(f"coalesce(event_at < {at}, true)")
            test_filter.append(f"event_at >= {at}")
        for view, source, conditions in (
            ("train_interactions", "train_source", train_filter),
            ("test_interactions", "test_source", test_filter),
        ):
            where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            con.execute(f"CREATE TEMP VIEW {view} AS SELECT * FROM {source}{where}")
        con.execute(f"CREATE TEMP VIEW user_dictionary AS SELECT * FROM read_parquet('{user_dictionary}')")
        con.execute(f"CREATE TEMP VIEW item_dictionary AS SELECT * FROM read_parquet('{item_dictionary}')")
        users_row = con.execute("SELECT coalesce(max(index) + 1, 0) FROM user_dictionary").fetchone()
        items_row = con.execute("SELECT coalesce(max(index) + 1, 0) FROM item_dictionary").fetchone()
        assert users_row is not None and items_row is not None  # aggregate queries return one row
        n_users, n_items = users_row[0], items_row[0]
        shape = (n_users, n_items)
        sql = read_sql("recall_training_pairs.sql")
        pairs = con.execute(sql, {"day": day, "click_weight": click_weight}).fetchnumpy()
        truth = con.execute(read_sql("recall_test_pairs.sql")).fetchnumpy()
        consumed = _consumed(con, shape) if history_files is not None else None
        # Content: each item's genres and tags as binary columns (names sorted, so stable).
        content = con.execute(
            f"""
            SELECT d.index AS item_idx, coalesce(i.genres, []) AS genres, coalesce(i.tags, []) AS tags,
                   i.added_at IS NULL OR i.added_at < ($day::DATE + 1)::TIMESTAMPTZ AS available
            FROM item_dictionary AS d LEFT JOIN read_parquet('{items_snapshot}') AS i ON i.item_id = d.id
            ORDER BY d.index""",
            {"day": day},
        ).fetchall()
    finally:
        con.close()

    positive = pairs["signal"] > 0
    positives = _csr(pairs["user_idx"][positive], pairs["item_idx"][positive], pairs["signal"][positive], shape)
    days_ago = _csr(
        pairs["user_idx"][positive],
        pairs["item_idx"][positive],
        np.nan_to_num(pairs["days_ago"][positive]) + 1e-3,
        shape,
    )  # +eps keeps day 0 stored
    seconds_ago = _csr(
        pairs["user_idx"][positive], pairs["item_idx"][positive], np.nan_to_num(pairs["seconds_ago"][positive]), shape
    )  # float32: exact to 0.25 s in 28 days
    shown = _csr(pairs["user_idx"], pairs["item_idx"], pairs["shown_not_chosen"], shape)

    genre_names = sorted({g for _, genres, _, _ in content for g in genres})
    tag_names = sorted({t for _, _, tags, _ in content for t in tags})
    g_index = {g: k for k, g in enumerate(genre_names)}
    t_index = {t: k for k, t in enumerate(tag_names)}
    g_rows = [(idx, g_index[g]) for idx, genres, _, _ in content for g in genres]
    t_rows = [(idx, t_index[t]) for idx, _, tags, _ in content for t in tags]
    item_genres = _csr(
        [r for r, _ in g_rows], [c for _, c in g_rows], np.ones(len(g_rows)), (n_items, len(genre_names))
    )
    item_tags = _csr([r for r, _ in t_rows], [c for _, c in t_rows], np.ones(len(t_rows)), (n_items, len(tag_names)))
    available = np.zeros(n_items, dtype=bool)
    for idx, _, _, ok in content:
        available[idx] = bool(ok)

    all_positive = _csr(truth["user_idx"], truth["item_idx"], np.ones(len(truth["user_idx"])), shape)
    relevant = (all_positive - all_positive.multiply(seen_matrix(positives, consumed))).tocsr()
    relevant.eliminate_zeros()
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    data = TrainingData(
        positives=positives,
        shown_negatives=shown,
        days_ago=days_ago,
        item_genres=item_genres,
        item_tags=item_tags,
        genre_names=genre_names,
        seconds_ago=seconds_ago,
    )
    info = {
        "n_users": n_users,
        "n_items": n_items,
        "train_pairs": int(positives.nnz),
        "test_users": int(len(users)),
        "available_items": available,
    }
    if consumed is not None:
        info |= {"consumed": consumed, "consumed_pairs": int(consumed.nnz)}
    return data, TestSet(users=users, relevant=relevant, all_positive=all_positive), info


def load_recall_exclusions(
    day: str,
    train_files: list[Path],
    history_files: list[Path],
    user_dictionary: Path,
    item_dictionary: Path,
    items_snapshot: Path,
    click_weight: float = 0.25,
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """What recall removes from every channel's list on `day`: (seen, blocked, window users) =
    each user's positives of the training window (signal > 0) and every item consumed in
    `history_files` (users × items, 1.0), the indices of items not yet available on `day`, and
    which users have a training positive. The same matrices recall_candidates excludes with,
    built from the same pairs, without reading the test day."""
    data, _, info = load_training_data(
        day,
        train_files,
        [],
        user_dictionary,
        item_dictionary,
        items_snapshot,
        click_weight=click_weight,
        with_shown=False,
        history_files=history_files,
    )
    return (
        seen_matrix(data.positives, info["consumed"]),
        np.flatnonzero(~info["available_items"]),
        np.diff(data.positives.indptr) > 0,
    )


def load_positive_pairs(test_files: list[Path], user_dictionary: Path, item_dictionary: Path) -> sp.csr_matrix:
    """Every positive of `test_files` (interactions partitions: a held-out period), users × items
    of the dictionaries, 1.0."""
    con = connect()
    try:
        bind(con, "test_interactions", test_files, "interactions")
        con.execute(f"CREATE TEMP VIEW user_dictionary AS SELECT * FROM read_parquet('{user_dictionary}')")
        con.execute(f"CREATE TEMP VIEW item_dictionary AS SELECT * FROM read_parquet('{item_dictionary}')")
        size = con.execute(
            "SELECT (SELECT coalesce(max(index) + 1, 0) FROM user_dictionary), "
            "(SELECT coalesce(max(index) + 1, 0) FROM item_dictionary)"
        ).fetchone()
        assert size is not None  # aggregate queries return one row
        truth = con.execute(read_sql("recall_test_pairs.sql")).fetchnumpy()
    finally:
        con.close()
    return _csr(truth["user_idx"], truth["item_idx"], np.ones(len(truth["user_idx"])), (int(size[0]), int(size[1])))
