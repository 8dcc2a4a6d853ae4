"""The ranking stage's training side: labelled samples of a day with point-in-time features,
and the LightGBM ranker trained on the samples of the days before it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import polars as pl

from recsys_assets.core.ingest import read_sql
from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking import ranker as ranker_lib
from recsys_assets.core.ranking import samples
from recsys_assets.core.storage import read_arrow, read_polars
from recsys_assets.core.tables import connect
from recsys_assets.services.candidates import day_candidates
from recsys_assets.services.days import days_before
from recsys_assets.services.errors import MissingInput, Skipped
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.serving import feature_context
from recsys_assets.services.sessions import day_session_log
from recsys_assets.services.tables import write_frame
from recsys_assets.services.training import file_sha256_many
from recsys_assets.settings import RankingConfig, RecallConfig


class RankerSkipped(Skipped):
    """No ranker for the day: its training (or validation) days have no ranking samples yet."""


@dataclass
class TrainedRanker:
    model: ranker_lib.Ranker
    version: object
    train_seconds: float
    importance: pl.DataFrame


def _day_interactions(lake: Lake, day: str) -> pl.DataFrame:
    path = lake.partition_path("interactions", day)
    if not path.exists():
        raise MissingInput(f"interactions is not materialized for {day} ({path})")
    return read_polars(path)


def build_samples(
    lake: Lake,
    model_store: ModelStore,
    settings: RankingConfig,
    recall: RecallConfig,
    day: str,
    first_day: str | None,
    log=None,
) -> tuple[pl.DataFrame, dict]:
    """Every labelled pair of `day` with its features (see core/ranking/samples.py for kinds);
    column rank_depth records the depth of the rank_<channel> features they were built with."""
    ctx = feature_context(lake, model_store, day, settings.channels, recall, settings.rank_depth, first_day)
    interactions = _day_interactions(lake, day)
    if settings.max_users_per_day is not None:  # whole users (all their requests and candidates) or none
        kept = samples.sample_users(interactions["user_id"].to_numpy(), settings.max_users_per_day, settings.seed)
        interactions = interactions.filter(pl.col("user_id").is_in(pl.Series(kept, dtype=pl.Int64).implode()))
    con = connect()
    try:
        con.register("interactions", interactions.to_arrow())
        shown = con.sql(read_sql("ranking_samples.sql")).pl()
    finally:
        con.close()
    parts = [shown.with_columns(pl.lit("impressions").alias("kind"))]
    try:
        candidates = day_candidates(
            lake,
            model_store,
            recall,
            day,
            settings.sample_candidates,
            interactions["user_id"].unique().to_numpy(),
            first_day,
            log,
        )
    except MissingInput as missing:  # e.g. the first day: no recall model, no candidates
        candidates = pl.DataFrame(schema={"user_id": pl.Int64, "item_id": pl.Int64})
        if log:
            log.warning(f"ranking_samples {day}: {missing}; only impression rows")
    parts.append(
        samples.candidate_groups(candidates, interactions, day, settings.serving_surface).with_columns(
            pl.lit("candidates").alias("kind")
        )
    )
    if shown.height == 0:  # a source without impressions: sampled negatives instead
        positives = interactions.filter("is_positive").select("user_id", "item_id")
        catalog = ctx.items.filter("available")["item_id"].to_numpy()
        parts.append(
            samples.sampled_negative_pairs(
                positives,
                candidates,
                catalog,
                day,
                settings.negative_ratio,
                settings.hard_negative_share,
                settings.seed,
            ).with_columns(pl.lit("sampled").alias("kind"))
        )
    pairs = pl.concat([p.with_columns(pl.col("label").cast(pl.Int32)) for p in parts], how="diagonal_relaxed")
    frame = F.feature_frame(ctx, pairs, day_session_log(lake, day)).with_columns(
        pl.lit(ctx.rank_depth, pl.Int32).alias("rank_depth")
    )
    info = {
        "rows": frame.height,
        "sample_candidates": settings.sample_candidates,
        "channels_present": sorted(ctx.channels),
        "channels_missing": sorted(set(settings.channels) - set(ctx.channels)),
    }
    for kind in ("impressions", "candidates", "sampled"):
        part = frame.filter(pl.col("kind") == kind)
        info[f"rows_{kind}"] = part.height
        info[f"requests_{kind}"] = part["request_id"].n_unique() if part.height else 0
    info["positive_rate"] = float(cast(float, (frame["label"] > 0).mean())) if frame.height else 0.0
    return frame, info


def samples_rank_depth(depths: pl.DataFrame, files) -> int:
    """The one rank_depth the samples' rank_<channel> features were built with: a ranker must be
    served with the depth it learned, so samples of different depths never train together."""
    values = sorted(depths["rank_depth"].unique().drop_nulls().to_list()) if "rank_depth" in depths.columns else []
    if len(values) != 1 or (depths["rank_depth"].null_count() if "rank_depth" in depths.columns else 1):
        raise MissingInput(
            f"ranking_samples {[str(f) for f in files]} were built with rank_depth {values or 'unrecorded'} "
            "(a sample written before rank_depth was recorded, or a mix after RankingSettings.rank_depth "
            "changed): re-materialize ranking_samples for these days with one rank_depth."
        )
    return int(values[0])


def sample_days(day: str, settings: RankingConfig) -> tuple[list[str], list[str]]:
    days = days_before(day, settings.train_days + settings.valid_days)
    return days[: settings.train_days], days[settings.train_days :]


def train_ranker(day: str, lake: Lake, model_store: ModelStore, ranking: RankingConfig) -> TrainedRanker:
    """The LightGBM ranker of `day`, trained on the ranking samples of the days before it and
    published to the model store, with its gain importance written to the lake. Validation days
    without a usable request (e.g. a day with no activity) give way to a held-out share of the
    training requests. Raises RankerSkipped when the training or validation days have no
    samples, or too few requests to learn from."""
    train_days, valid_days = sample_days(day, ranking)
    train_files = lake.existing_partitions("ranking_samples", train_days)
    valid_files = lake.existing_partitions("ranking_samples", valid_days)
    if not train_files or (ranking.valid_days > 0 and not valid_files):
        raise RankerSkipped(
            f"ranker {day} needs ranking_samples of {train_days} (train) and {valid_days} (validation); "
            f"found {len(train_files)} and {len(valid_files)}"
        )
    dictionary_path = lake.partition_path("hash_dictionaries")
    started = time.perf_counter()
    train_rows = pl.concat([read_polars(f) for f in train_files], how="diagonal_relaxed")
    valid_rows = pl.concat([read_polars(f) for f in valid_files], how="diagonal_relaxed") if valid_files else None
    validation = "later days"
    if valid_rows is None or not ranker_lib.informative_requests(valid_rows):
        # no later day to stop on (or only empty ones): hold out a share of the training requests
        validation = f"{ranking.valid_fraction:.0%} of the training requests" + (
            f" ({valid_days} have no request to validate on)" if valid_files else ""
        )
        train_rows, valid_rows = ranker_lib.split_requests(train_rows, ranking.valid_fraction, ranking.seed)
        valid_files = []
    usable = (ranker_lib.informative_requests(train_rows), ranker_lib.informative_requests(valid_rows))
    if not all(usable):
        raise RankerSkipped(
            f"ranker {day}: too few requests with both a chosen and a not-chosen item in the ranking_samples "
            f"of {train_days} (train) and {valid_days} (validation): {usable[0]} to train on, {usable[1]} to "
            "validate on"
        )
    rank_depth = samples_rank_depth(
        pl.concat(
            [train_rows.select(pl.col("^rank_depth$")), valid_rows.select(pl.col("^rank_depth$"))],
            how="diagonal_relaxed",
        ),
        train_files + valid_files,
    )
    model = ranker_lib.train(
        train_rows,
        valid_rows,
        read_arrow(dictionary_path),
        tuple(ranking.channels),
        params={
            "learning_rate": ranking.learning_rate,
            "num_leaves": ranking.num_leaves,
            "max_depth": ranking.max_depth,
            "min_data_in_leaf": ranking.min_data_in_leaf,
        },
        num_boost_round=ranking.num_boost_round,
        early_stopping_rounds=ranking.early_stopping_rounds,
        seed=ranking.seed,
        threads=ranking.threads,
        rank_depth=rank_depth,
        param_grid=ranking.param_grid,
        # a share cut from the training days only chooses settings and rounds; later days
        # (valid_days) stay out of the model, as they did of the samples it was judged on
        refit=not valid_files,
    )
    seconds = time.perf_counter() - started
    model.meta |= {
        "day": day,
        # the days whose samples it read (the window's days without samples are left out)
        "train_days": [d for d in train_days if lake.partition_path("ranking_samples", d) in train_files],
        "valid_days": valid_days if valid_files else [],
        "validation": validation,
        "data_version": file_sha256_many(train_files + valid_files + [dictionary_path]),
    }
    staging = model_store.staging_dir("ranker")
    ranker_lib.save(model, staging)
    # wall time goes into the manifest only: ranker.json (hashed into the version) stays a
    # pure function of the data, so a re-run publishes the identical version
    version = model_store.publish(
        "ranker",
        day,
        staging,
        {k: v for k, v in model.meta.items() if k not in ("params", "ctr_params")} | {"train_seconds": seconds},
    )
    importance = ranker_lib.feature_importance(model).with_columns(pl.lit(day).str.to_date().alias("day"))
    write_frame(importance, lake.partition_path("ranker_feature_importance", day), order_by="model, gain DESC")
    return TrainedRanker(model, version, seconds, importance)
