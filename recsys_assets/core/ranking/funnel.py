"""The recall -> rank -> re-rank funnel for a set of users, shared by the funnel evaluation,
the batch `recommendations` asset and the online CLI, plus the slate metrics (MRR, AUC,
LogLoss) and list metrics (intra-list similarity) the evaluation reports."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking.ranker import Ranker
from recsys_assets.core.ranking.rerank import RerankRules, genre_similarity, rerank_batch
from recsys_assets.core.ranking.session_features import SessionState


@dataclass
class ItemAttributes:
    """Per-item arrays used by re-ranking and explanations, looked up by item id."""

    ids: np.ndarray  # sorted item ids
    genre_vectors: np.ndarray  # items x genres, 0/1
    primary_genre: np.ndarray  # object (None = no genre)
    age_days: np.ndarray  # float, NaN unknown
    popularity: np.ndarray  # positives in the 28 days before the day

    @classmethod
    def from_context(cls, ctx: F.FeatureContext) -> ItemAttributes:
        """The catalog's attributes of ctx (built once per context, then reused)."""
        if "item_attributes" not in ctx.derived:
            ctx.derived["item_attributes"] = cls._build(ctx)
        return ctx.derived["item_attributes"]

    @classmethod
    def _build(cls, ctx: F.FeatureContext) -> ItemAttributes:
        items = ctx.items.sort("item_id")
        genres = sorted({g for gs in items["genres"].to_list() for g in (gs or [])})
        col = {g: j for j, g in enumerate(genres)}
        vectors = np.zeros((items.height, len(genres)), np.float32)
        for i, gs in enumerate(items["genres"].to_list()):
            for g in gs or []:
                vectors[i, col[g]] = 1.0
        return cls(
            ids=items["item_id"].to_numpy().astype(np.int64),
            genre_vectors=vectors,
            primary_genre=np.asarray(items["item_genre"].to_list(), dtype=object),
            age_days=items["i_age_days"].cast(pl.Float64).to_numpy(),
            popularity=items["i_positives_28d"].fill_null(0).cast(pl.Float64).to_numpy(),
        )

    @cached_property
    def genre_code(self) -> np.ndarray:
        """Per item, its primary genre as an int (sorted genre order), -1 = no genre."""
        genre_names = {g: j for j, g in enumerate(sorted({g for g in self.primary_genre if g is not None}))}
        return np.array([-1 if g is None else genre_names[g] for g in self.primary_genre], np.int64)

    def rows(self, item_ids: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.ids, item_ids)
        pos = np.clip(pos, 0, max(len(self.ids) - 1, 0))
        if len(self.ids) == 0 or not np.array_equal(self.ids[pos], item_ids):
            raise KeyError("item ids missing from the catalog snapshot")
        return pos


def serving_pairs(candidates: pl.DataFrame, surface: str | None) -> pl.DataFrame:
    """Candidates as ranking pairs in the serving context: no shown position (the ranker saw
    position only on impression rows, where it absorbs position bias), the serving surface,
    no device - exactly how samples.candidate_groups() builds its training rows."""
    return candidates.with_columns(
        pl.lit(None, pl.Int64).alias("position"),
        pl.lit(surface, pl.String).alias("surface"),
        pl.lit(None, pl.String).alias("device_type"),
    )


def score_candidates(
    ranker: Ranker,
    ctx: F.FeatureContext,
    candidates: pl.DataFrame,
    surface: str | None,
    session: SessionState | None = None,
    at: dt.datetime | None = None,
) -> pl.DataFrame:
    """feature_frame() of the candidates with `ranker_score` appended; with a live `session`,
    as one request of it at `at` (its actions before `at` give the request-time features)."""
    pairs = serving_pairs(candidates, surface)
    if session is not None:
        if at is None:
            raise ValueError("a session request needs its time (at)")
        # the live session's features by its own arithmetic (the same values as the log path)
        features = session.request_features(pairs["item_id"].to_numpy(), at)
        frame = F.feature_frame(ctx, session.request(pairs, at), request_features=features)
    else:
        frame = F.feature_frame(ctx, pairs)
    scores = pl.Series("ranker_score", ranker.score(frame))
    return (frame.drop("ranker_score") if "ranker_score" in frame.columns else frame).hstack([scores])


def lists_by(
    frame: pl.DataFrame, score: str, k: int, descending: bool = True
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{user_id: (top-k item ids, their scores)} ordered by `score`."""
    out = {}
    ordered = frame.sort(["user_id", score, "item_id"], descending=[False, descending, False])
    for (user,), g in ordered.group_by("user_id", maintain_order=True):
        out[int(user)] = (g["item_id"].to_numpy()[:k].astype(np.int64), g[score].to_numpy()[:k].astype(np.float64))
    return out


# Below this many pairs in all, pair_index matches by sorting arrays (a request's ~100 rows:
# a join's fixed cost dominates); above, by polars' hash join (a batch's millions: parallel, linear).
PAIR_INDEX_JOIN_ROWS = 200_000


def pair_index(
    users: np.ndarray,
    items: np.ndarray,
    other_users: np.ndarray,
    other_items: np.ndarray,
    join_rows: int = PAIR_INDEX_JOIN_ROWS,
) -> np.ndarray:
    """Per pair (users[j], items[j]): the position of the same pair among (other_users,
    other_items), the first if it repeats, -1 where absent."""
    if len(users) + len(other_users) >= join_rows:
        left = pl.DataFrame({"u": users, "i": items}, schema={"u": pl.Int64, "i": pl.Int64})
        right = pl.DataFrame({"u": other_users, "i": other_items}, schema={"u": pl.Int64, "i": pl.Int64})
        right = right.with_row_index("at").unique(["u", "i"], keep="first")
        found = left.join(right, on=["u", "i"], how="left", maintain_order="left")["at"]
        return found.cast(pl.Int64).fill_null(-1).to_numpy()
    # ids of any size: each replaced by its rank among the ids of both sides, a pair is one key
    user_ids, user_rank = np.unique(np.concatenate([users, other_users]), return_inverse=True)
    item_ids, item_rank = np.unique(np.concatenate([items, other_items]), return_inverse=True)
    keys = user_rank.astype(np.int64) * len(item_ids) + item_rank
    own, other = keys[: len(users)], keys[len(users) :]
    if not len(other):
        return np.full(len(own), -1, np.int64)
    order = np.argsort(other, kind="stable")
    at = np.minimum(np.searchsorted(other[order], own), len(other) - 1)
    return np.where(other[order][at] == own, order[at], -1)


def rerank_frame(
    frame: pl.DataFrame,
    k: int,
    rules: RerankRules,
    attrs: ItemAttributes,
    seen: pl.DataFrame | None = None,
    batch_users: int = 20_000,
) -> pl.DataFrame:
    """Every user's re-ranked top-k (rerank_batch, `batch_users` users at a time) of the scored
    candidates in `frame` (user_id, item_id, ranker_score; each user's rows in list order),
    with the (user_id, item_id) pairs in `seen` removed. Returns (user_id, rank, item_id, score),
    users in order of first appearance, rank 1 = best."""
    schema = {"user_id": pl.Int64, "rank": pl.Int64, "item_id": pl.Int64, "score": pl.Float64}
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    user_ids = frame["user_id"].to_numpy()
    items = frame["item_id"].to_numpy().astype(np.int64)
    if seen is not None and seen.height:
        watched = pair_index(user_ids, items, seen["user_id"].to_numpy(), seen["item_id"].to_numpy()) >= 0
    else:
        watched = np.zeros(frame.height, bool)
    uniq, first, inverse = np.unique(user_ids, return_index=True, return_inverse=True)
    appearance = np.argsort(first, kind="stable")
    code = np.argsort(appearance)[inverse]  # user code = order of first appearance
    entries = np.argsort(code, kind="stable")  # each user's rows, in list order
    counts = np.bincount(code)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(entries)) - starts[code[entries]]
    scores = frame["ranker_score"].to_numpy().astype(np.float64)
    item_rows = attrs.rows(items)
    genre_code = attrs.genre_code  # once per catalog snapshot, not per call
    parts = []
    for lo in range(0, len(uniq), batch_users):
        hi = min(lo + batch_users, len(uniq))
        sel = entries[starts[lo] : starts[hi - 1] + counts[hi - 1]]
        r, c = code[sel] - lo, position[starts[lo] : starts[hi - 1] + counts[hi - 1]]
        shape = (hi - lo, int(counts[lo:hi].max()))
        grid_rows = np.zeros(shape, np.int64)
        grid_rows[r, c] = item_rows[sel]
        grid = {name: np.zeros(shape, dtype) for name, dtype in (("items", np.int64), ("scores", np.float64))}
        grid["items"][r, c], grid["scores"][r, c] = items[sel], scores[sel]
        valid = np.zeros(shape, bool)
        valid[r, c] = ~watched[sel]
        top_items, top_scores = rerank_batch(
            grid["items"],
            grid["scores"],
            k,
            rules,
            valid=valid,
            genre_vectors=attrs.genre_vectors[grid_rows],
            primary_genre=genre_code[grid_rows],
            age_days=attrs.age_days[grid_rows],
            popularity=attrs.popularity[grid_rows],
        )
        ur, uc = np.nonzero(top_items >= 0)
        parts.append(
            pl.DataFrame(
                {
                    "user_id": uniq[appearance[lo + ur]],
                    "rank": uc.astype(np.int64) + 1,
                    "item_id": top_items[ur, uc],
                    "score": top_scores[ur, uc],
                },
                schema=schema,
            )
        )
    return pl.concat(parts)


def rerank_list(
    items: np.ndarray, scores: np.ndarray, watched: np.ndarray, k: int, rules: RerankRules, attrs: ItemAttributes
) -> tuple[np.ndarray, np.ndarray]:
    """rerank_frame for one user's scored candidates (in list order), `watched` ones removed:
    (items, scores) of the re-ranked top-k, best first."""
    if not len(items):
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    rows = attrs.rows(np.asarray(items, np.int64))
    top_items, top_scores = rerank_batch(
        np.asarray(items, np.int64)[None, :],
        np.asarray(scores, np.float64)[None, :],
        k,
        rules,
        valid=~np.asarray(watched, bool)[None, :],
        genre_vectors=attrs.genre_vectors[rows][None],
        primary_genre=attrs.genre_code[rows][None, :],
        age_days=attrs.age_days[rows][None, :],
        popularity=attrs.popularity[rows][None, :],
    )
    listed = top_items[0] >= 0
    return top_items[0][listed], top_scores[0][listed]


def reranked_lists(
    frame: pl.DataFrame, k: int, rules: RerankRules, attrs: ItemAttributes, seen: pl.DataFrame | None = None
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """rerank_frame as {user_id: (items, scores)}, users in order of first appearance."""
    out = rerank_frame(frame, k, rules, attrs, seen)
    return {
        int(user): (g["item_id"].to_numpy(), g["score"].to_numpy())
        for (user,), g in out.group_by("user_id", maintain_order=True)
    }


def intra_list_similarity(lists: dict[int, tuple[np.ndarray, np.ndarray]], attrs: ItemAttributes, k: int) -> float:
    """Mean over users of the mean pairwise genre cosine within the top-k (lower = more diverse)."""
    values = []
    for items, _ in lists.values():
        items = items[:k]
        if len(items) < 2:
            continue
        sim = genre_similarity(attrs.genre_vectors[attrs.rows(items)])
        n = len(items)
        values.append((sim.sum() - np.trace(sim)) / (n * (n - 1)))
    return float(np.mean(values)) if values else float("nan")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    s = np.asarray(scores)[order]
    ranks = np.empty(len(s))
    # average ranks over ties
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(labels: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    labels = np.asarray(labels, np.float64)
    p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def slate_metrics(frame: pl.DataFrame, orderings: dict[str, str], k: int = 10) -> dict[str, dict[str, np.ndarray]]:
    """Per request with at least one chosen item (label > 0): MRR of the first chosen item and
    NDCG@k with graded labels, for each ordering {name: score column, higher first}.
    Returns {name: {"mrr": per-request array, "ndcg": per-request array}}."""
    out = {}
    has_positive = frame.group_by("request_id").agg((pl.col("label").max() > 0).alias("ok")).filter("ok")
    rows = frame.join(has_positive.select("request_id"), on="request_id", how="semi")
    for name, column in orderings.items():
        ranked = rows.with_columns(pl.col(column).rank("ordinal", descending=True).over("request_id").alias("__pos"))
        per = (
            ranked.group_by("request_id")
            .agg(
                (1.0 / pl.col("__pos").filter(pl.col("label") > 0).min()).alias("mrr"),
                ((2.0 ** pl.col("label") - 1) / (pl.col("__pos") + 1).log(2))
                .filter(pl.col("__pos") <= k)
                .sum()
                .alias("dcg"),
                pl.col("label").sort(descending=True).head(k).alias("ideal"),
            )
            .sort("request_id")
        )
        ideal = np.array(
            [sum((2.0**g - 1) / np.log2(i + 2) for i, g in enumerate(lab)) for lab in per["ideal"].to_list()]
        )
        out[name] = {"mrr": per["mrr"].to_numpy(), "ndcg": per["dcg"].to_numpy() / ideal}
    return out
