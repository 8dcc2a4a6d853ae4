"""Ranking layer: labelled samples of day D, the LightGBM ranker of D (trained on the days
before D), the funnel evaluation on D (recall-only vs ranker vs ranker + re-rank) and the
recommendations served on D. Computation lives in core/ranking and serving.py."""

import time

import dagster as dg
import numpy as np
import polars as pl
import pyarrow as pa

from recsys_assets import serving
from recsys_assets.assets import ownership
from recsys_assets.assets.evaluation import candidates_for_users, exclusion_matrix, recommend_all_channels
from recsys_assets.assets.recall import NoTrainingData, file_sha256_many, load_day, model_assets
from recsys_assets.core import fusion, metrics
from recsys_assets.core.ingest import read_sql
from recsys_assets.core.ranking import features as F
from recsys_assets.core.ranking import funnel, samples
from recsys_assets.core.ranking import ranker as ranker_lib
from recsys_assets.core.storage import read_arrow, read_polars
from recsys_assets.core.tables import connect
from recsys_assets.partitions import daily_partitions
from resources import ModelStoreResource, RankingSettings, RecallSettings, StorageResource, WarehouseResource

GROUP = "ranking"
# The static lineage of the ranker: the samples of the 3 days before D (RankingSettings
# train_days + valid_days default); the asset reads whichever of its configured days exist.
SAMPLE_DAYS = 3
SAMPLE_WINDOW = dg.TimeWindowPartitionMapping(
    start_offset=-SAMPLE_DAYS, end_offset=-1, allow_nonexistent_upstream_partitions=True
)


def _day_interactions(storage: StorageResource, day: str) -> pl.DataFrame:
    path = storage.partition_path("interactions", day)
    if not path.exists():
        raise dg.Failure(f"interactions is not materialized for {day} ({path})")
    return read_polars(path)


def day_candidates(
    storage: StorageResource,
    model_store: ModelStoreResource,
    recall: RecallSettings,
    day: str,
    limit: int,
    users: np.ndarray,
    log=None,
    from_partition: bool = True,
    day_data: tuple | None = None,
) -> pl.DataFrame:
    """The recall candidates of `users` on `day` as the ranking stage reads them: from the
    recall_candidates partition when it is materialized, else computed for these users alone
    by the same code (a ranker's training days need the lists of their sampled users only,
    not a whole day's candidates). `day_data`: (data, info) of load_day when the caller holds
    them already. Raises serving.MissingInput when neither is possible."""
    if from_partition and storage.partition_path("recall_candidates", day).exists():
        return serving.read_candidates(storage, day, limit, users)
    try:
        table = candidates_for_users(storage, model_store, day, recall, users, day_data)
    except NoTrainingData as nothing:
        raise serving.MissingInput(str(nothing)) from nothing
    if table is None:
        raise serving.MissingInput(
            f"recall_candidates is not materialized for {day} and no recall model is published for it"
        )
    if log:
        log.info(
            f"recall_candidates of {day} is not materialized: computed the lists of "
            f"{len(np.unique(table.column('user_id').to_numpy()))} of {len(users)} users"
        )
    return serving.serving_candidates(pl.from_arrow(table).lazy(), limit).collect()


def build_samples(
    storage: StorageResource,
    model_store: ModelStoreResource,
    settings: RankingSettings,
    recall: RecallSettings,
    day: str,
    log=None,
) -> tuple[pl.DataFrame, dict]:
    """Every labelled pair of `day` with its features (see core/ranking/samples.py for kinds);
    column rank_depth records the depth of the rank_<channel> features they were built with."""
    ctx = serving.feature_context(storage, model_store, day, settings.channels, recall, settings.rank_depth)
    interactions = _day_interactions(storage, day)
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
            storage,
            model_store,
            recall,
            day,
            settings.rank_candidates,
            interactions["user_id"].unique().to_numpy(),
            log,
        )
    except serving.MissingInput as missing:  # e.g. the first day: no recall model, no candidates
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
    frame = F.feature_frame(ctx, pairs).with_columns(pl.lit(ctx.rank_depth, pl.Int32).alias("rank_depth"))
    info = {
        "rows": frame.height,
        "channels_present": sorted(ctx.channels),
        "channels_missing": sorted(set(settings.channels) - set(ctx.channels)),
    }
    for kind in ("impressions", "candidates", "sampled"):
        part = frame.filter(pl.col("kind") == kind)
        info[f"rows_{kind}"] = part.height
        info[f"requests_{kind}"] = part["request_id"].n_unique() if part.height else 0
    info["positive_rate"] = float((frame["label"] > 0).mean()) if frame.height else 0.0
    return frame, info


@dg.asset(
    group_name=GROUP,
    kinds={"polars", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[
        "interactions",
        "user_features",
        "item_features",
        "user_genre_daily",
        "raw_users",
        "raw_items",
        "user_id_dictionary",
        "item_id_dictionary",
        "recall_candidates",
        *model_assets.values(),
    ],
    description="Labelled pairs of day D with point-in-time features (user/item features of D are built from the "
    "days before D; recall channels are the models of D, trained before D). kind='impressions': every "
    "shown item, grouped by request, label 2 = positive, 1 = clicked, 0 = shown but not chosen. "
    "kind='candidates': per user with a positive among D's recall candidates, the candidate list "
    "labelled by what the user did on D (the serving distribution; read from recall_candidates, or "
    "computed for the sampled users alone when D's partition was never materialized). kind='sampled': for sources "
    "without impressions, positives with sampled negatives (RankingSettings.negative_ratio, hard share "
    "from candidates). Features: user, item, user x item genre crosses, position, hashed categoricals "
    "(as strings), every channel's score and the item's position in that channel's recall list "
    "(RankingSettings.rank_depth deep; column rank_depth records it).",
    **ownership.layer("ranking"),
)
def ranking_samples(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    model_store: ModelStoreResource,
    ranking: RankingSettings,
    recall: RecallSettings,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    meta = {}
    for day in context.partition_keys:
        try:
            frame, info = build_samples(storage, model_store, ranking, recall, day, context.log)
        except serving.MissingInput as missing:
            raise dg.Failure(str(missing)) from missing
        serving.write_frame(frame, storage.partition_path("ranking_samples", day), order_by="kind, request_id, item_id")
        meta = {k: v for k, v in info.items() if not isinstance(v, list)}
        meta |= {
            "dagster/row_count": info["rows"],
            "channels_present": dg.MetadataValue.json(info["channels_present"]),
            "channels_missing": dg.MetadataValue.json(info["channels_missing"]),
        }
    warehouse.refresh_catalog()
    return dg.MaterializeResult(metadata=meta)


def samples_rank_depth(depths: pl.DataFrame, files) -> int:
    """The one rank_depth the samples' rank_<channel> features were built with: a ranker must be
    served with the depth it learned, so samples of different depths never train together."""
    values = sorted(depths["rank_depth"].unique().drop_nulls().to_list()) if "rank_depth" in depths.columns else []
    if len(values) != 1 or (depths["rank_depth"].null_count() if "rank_depth" in depths.columns else 1):
        raise dg.Failure(
            f"ranking_samples {[str(f) for f in files]} were built with rank_depth {values or 'unrecorded'} "
            "(a sample written before rank_depth was recorded, or a mix after RankingSettings.rank_depth "
            "changed): re-materialize ranking_samples for these days with one rank_depth."
        )
    return int(values[0])


def sample_days(day: str, settings: RankingSettings) -> tuple[list[str], list[str]]:
    days = serving.days_before(day, settings.train_days + settings.valid_days)
    return days[: settings.train_days], days[settings.train_days :]


@dg.asset(
    group_name=GROUP,
    kinds={"lightgbm"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep("ranking_samples", partition_mapping=SAMPLE_WINDOW), "hash_dictionaries"],
    description="The ranker of day D: LightGBM lambdarank grouped by request (graded labels) and a binary click "
    "model, trained on the ranking_samples of the train_days before the last valid_days before D, "
    "early-stopped on those later held-out days; categoricals through the hash dictionary (frozen into "
    "the artifact). Saved in LightGBM's text format with params, feature list, dictionary version and "
    "data version; gain importance in the `ranker_feature_importance` table.",
    **ownership.layer("ranking"),
)
def ranker(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    model_store: ModelStoreResource,
    ranking: RankingSettings,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    meta = {}
    for day in context.partition_keys:
        train_days, valid_days = sample_days(day, ranking)
        train_files = storage.existing_partitions("ranking_samples", train_days)
        valid_files = storage.existing_partitions("ranking_samples", valid_days)
        if not train_files or (ranking.valid_days > 0 and not valid_files):
            reason = (
                f"ranker {day} needs ranking_samples of {train_days} (train) and {valid_days} (validation); "
                f"found {len(train_files)} and {len(valid_files)}"
            )
            context.log.warning(reason)
            meta = {"skipped": True, "reason": reason}
            continue
        dictionary_path = storage.partition_path("hash_dictionaries")
        started = time.perf_counter()
        train_rows = pl.concat([read_polars(f) for f in train_files], how="diagonal_relaxed")
        if valid_files:
            valid_rows = pl.concat([read_polars(f) for f in valid_files], how="diagonal_relaxed")
        else:  # no later day to stop on: hold out a share of the training requests
            train_rows, valid_rows = ranker_lib.split_requests(train_rows, ranking.valid_fraction, ranking.seed)
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
        )
        seconds = time.perf_counter() - started
        model.meta |= {
            "day": day,
            "train_days": train_days,
            "valid_days": valid_days if valid_files else [],
            "validation": "later days" if valid_files else f"{ranking.valid_fraction:.0%} of the training requests",
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
        serving.write_frame(
            importance, storage.partition_path("ranker_feature_importance", day), order_by="model, gain DESC"
        )
        top = importance.filter(pl.col("model") == "lambdarank").head(10)
        meta = {
            "valid_ndcg_at_10": model.meta["valid_ndcg_at_10"],
            "valid_auc": model.meta["valid_auc"],
            "valid_logloss": model.meta["valid_logloss"],
            "best_iteration": model.meta["best_iteration"],
            "train_rows": model.meta["train_rows"],
            "train_seconds": round(seconds, 3),
            "data_version": model.meta["data_version"],
            "path": dg.MetadataValue.path(str(version)),
            "top_features": dg.MetadataValue.table(
                records=[
                    dg.TableRecord({"feature": r["feature"], "gain_share": round(r["gain_share"], 4)})
                    for r in top.to_dicts()
                ],
                schema=dg.TableSchema(
                    columns=[dg.TableColumn("feature", "string"), dg.TableColumn("gain_share", "float")]
                ),
            ),
        }
    warehouse.refresh_catalog()
    return dg.MaterializeResult(metadata=meta)


@dg.asset_check(
    asset=ranker,
    name="artifact_verified",
    blocking=True,
    partitions_def=daily_partitions,
    description="The published ranker's files match their checksums, load, and list the features and "
    "dictionary version they were trained with.",
)
def ranker_artifact_verified(
    context: dg.AssetCheckExecutionContext, model_store: ModelStoreResource
) -> dg.AssetCheckResult:
    checked = []
    for day in context.partition_keys:
        if model_store.exists("ranker", day):
            model = serving.load_ranker(model_store, day)
            checked.append({"day": day, "features": len(model.feature_names)})
    return dg.AssetCheckResult(passed=True, metadata={"verified": dg.MetadataValue.json(checked)})


# ------------------------------------------------------------------------------ funnel evaluation
FUNNEL_SCHEMA = pa.schema(
    [
        ("day", pa.string()),
        ("scope", pa.string()),
        ("stage", pa.string()),
        ("metric", pa.string()),
        ("k", pa.int64()),
        ("value", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("n", pa.int64()),
        ("baseline", pa.string()),
        ("diff", pa.float64()),
        ("diff_ci_low", pa.float64()),
        ("diff_ci_high", pa.float64()),
        ("p_value", pa.float64()),
    ]
)
STAGES = ("recall_only", "ranker", "ranker_rerank")


def _row(day, scope, stage, metric, k, value, n, values=None, baseline=None, base_values=None, settings=None):
    row = {
        "day": day,
        "scope": scope,
        "stage": stage,
        "metric": metric,
        "k": k,
        "value": float(value),
        "n": int(n),
        "ci_low": None,
        "ci_high": None,
        "baseline": None,
        "diff": None,
        "diff_ci_low": None,
        "diff_ci_high": None,
        "p_value": None,
    }
    if values is not None and len(values):
        lo, hi = metrics.bootstrap_ci(values, n_boot=settings.bootstrap_samples, seed=settings.seed)
        row |= {"ci_low": float(lo), "ci_high": float(hi)}
        if base_values is not None:
            paired = metrics.paired_bootstrap(
                values, base_values, n_boot=settings.bootstrap_samples, seed=settings.seed
            )
            row |= {
                "baseline": baseline,
                "diff": float(values.mean() - base_values.mean()),
                "diff_ci_low": float(paired["ci_low"]),
                "diff_ci_high": float(paired["ci_high"]),
                "p_value": float(paired["p_value"]),
            }
    return row


def _as_matrix(lists: dict, users: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(users), k), -1, np.int64)
    for i, user in enumerate(users):
        items = lists.get(int(user), (np.zeros(0, np.int64), None))[0][:k]
        out[i, : len(items)] = items
    return out


def _id_lookup(frame: pl.DataFrame, id_col: str, idx_col: str) -> np.ndarray:
    out = np.full(int(frame[idx_col].max()) + 1 if frame.height else 0, -1, np.int64)
    out[frame[idx_col].to_numpy()] = frame[id_col].to_numpy()
    return out


def funnel_truth(
    day: str,
    storage: StorageResource,
    model_store: ModelStoreResource,
    recall: RecallSettings,
    ranking: RankingSettings,
    ctx: F.FeatureContext,
) -> tuple[pl.DataFrame, np.ndarray, list[np.ndarray], tuple]:
    """The evaluated users of `day` (new positives on D and recall candidates), their
    candidates, their relevant item ids, and (data, test, info) of the recall split."""
    data, test, info, _, _ = load_day(storage, day, recall)
    user_of = _id_lookup(ctx.user_index, "user_id", "user_idx")
    item_of = _id_lookup(ctx.item_index, "item_id", "item_idx")
    evaluated = samples.sample_users(user_of[test.users], ranking.max_users_per_day, ranking.seed)
    candidates = day_candidates(
        storage, model_store, recall, day, ranking.rank_candidates, evaluated, day_data=(data, info)
    )
    users = np.unique(candidates["user_id"].to_numpy())
    relevant_by_id = {int(user_of[u]): item_of[test.relevant[u].indices] for u in test.users}
    return candidates, users, [relevant_by_id[int(u)] for u in users], (data, test, info)


def ranker_ndcg_on_day(
    day: str,
    model_day: str,
    storage: StorageResource,
    model_store: ModelStoreResource,
    recall: RecallSettings,
    ranking: RankingSettings,
    k: int = 10,
) -> float:
    """Funnel NDCG@k on `day` of the ranker trained for `model_day` (e.g. the serving champion),
    with day D's features and candidates: the comparison the promotion gate makes."""
    model = serving.load_ranker(model_store, model_day)
    ctx = serving.feature_context(storage, model_store, day, model.channel_names, recall, model.rank_depth)
    candidates, users, relevant, _ = funnel_truth(day, storage, model_store, recall, ranking, ctx)
    lists = funnel.lists_by(funnel.score_candidates(model, ctx, candidates, ranking.serving_surface), "ranker_score", k)
    return float(metrics.per_user_metrics(_as_matrix(lists, users, k), relevant, k)[f"ndcg@{k}"].mean())


def evaluate_funnel(
    day: str,
    storage: StorageResource,
    model_store: ModelStoreResource,
    recall: RecallSettings,
    ranking: RankingSettings,
) -> tuple[list[dict], dict]:
    model = serving.load_ranker(model_store, day)
    ctx = serving.feature_context(storage, model_store, day, model.channel_names, recall, model.rank_depth)
    attrs = funnel.ItemAttributes.from_context(ctx)
    candidates, users, relevant, (data, test, info) = funnel_truth(day, storage, model_store, recall, ranking, ctx)
    rows, k = [], 10
    lists, latency = {}, {}

    # recall stage latency: every channel's top-K plus fusion, for (up to) 200 test users
    sample = test.users[:200]
    exclude = exclusion_matrix(data.positives, sample, np.flatnonzero(~info["available_items"]))
    started = time.perf_counter()
    channels, ranges, _ = recommend_all_channels(model_store, day, sample, recall.candidates_k, exclude)
    fusion.fuse(channels, data.n_items, recall.candidates_k, score_ranges=ranges)
    latency["recall_only"] = (time.perf_counter() - started) / max(len(sample), 1) * 1000

    lists["recall_only"] = funnel.lists_by(candidates, "recall_rank", k, descending=False)
    started = time.perf_counter()
    scored = funnel.score_candidates(model, ctx, candidates, ranking.serving_surface)
    lists["ranker"] = funnel.lists_by(scored, "ranker_score", k)
    latency["ranker"] = (time.perf_counter() - started) / max(len(users), 1) * 1000
    started = time.perf_counter()
    lists["ranker_rerank"] = funnel.reranked_lists(scored, k, serving.rules(ranking), attrs)
    latency["ranker_rerank"] = (time.perf_counter() - started) / max(len(users), 1) * 1000

    per_stage = {s: metrics.per_user_metrics(_as_matrix(lists[s], users, k), relevant, k) for s in STAGES}
    for stage in STAGES:
        for metric in ("ndcg", "recall", "mrr"):
            values = per_stage[stage][f"{metric}@{k}"]
            base = None if stage == "recall_only" else per_stage["recall_only"][f"{metric}@{k}"]
            rows.append(
                _row(day, "funnel", stage, metric, k, values.mean(), len(users), values, "recall_only", base, recall)
            )
        matrix = _as_matrix(lists[stage], users, k)
        # lists hold item ids (not dictionary indices): coverage = distinct ids / catalog size
        rows.append(
            _row(
                day,
                "funnel",
                stage,
                "coverage",
                k,
                len(np.unique(matrix[matrix >= 0])) / max(len(attrs.ids), 1),
                len(users),
            )
        )
        rows.append(
            _row(
                day,
                "funnel",
                stage,
                "intra_list_similarity",
                k,
                funnel.intra_list_similarity(lists[stage], attrs, k),
                len(users),
            )
        )
        rows.append(_row(day, "funnel", stage, "latency_ms_per_user", k, latency[stage], len(users)))

    # slates: the shown lists of D re-ordered, judged by what the user chose
    shown = read_polars(storage.partition_path("ranking_samples", day)).filter(pl.col("kind") == "impressions")
    slate_info = {}
    if shown.height:
        shown = shown.with_columns(
            pl.Series("ranker", model.score(shown)),
            (-pl.col("position").cast(pl.Float64)).alias("shown_order"),
            # popularity-by-position: most positives in the 7 days before D first (unknown = 0),
            # ties in shown order
            (pl.col("i_positives_7d").fill_null(0).cast(pl.Float64) - pl.col("position").cast(pl.Float64) / 1e4).alias(
                "popularity"
            ),
            pl.sum_horizontal([1.0 / (60.0 + pl.col(f"rank_{c}").fill_null(1e9)) for c in ranking.channels]).alias(
                "recall_rrf"
            ),
        )
        orderings = {
            "popularity": "popularity",
            "shown_order": "shown_order",
            "recall_rrf": "recall_rrf",
            "ranker": "ranker",
        }
        per = funnel.slate_metrics(shown, orderings, k)
        for stage in orderings:
            for metric in ("mrr", "ndcg"):
                values = per[stage][metric]
                base = None if stage == "popularity" else per["popularity"][metric]
                rows.append(
                    _row(
                        day, "slates", stage, metric, k, values.mean(), len(values), values, "popularity", base, recall
                    )
                )
        clicked = shown["clicked"].to_numpy()
        p = model.click_probability(shown)
        rows.append(_row(day, "slates", "ctr_binary", "auc", 0, funnel.auc(clicked, p), shown.height))
        rows.append(_row(day, "slates", "ctr_binary", "logloss", 0, funnel.logloss(clicked, p), shown.height))
        rows.append(
            _row(
                day,
                "slates",
                "constant_ctr",
                "logloss",
                0,
                funnel.logloss(clicked, np.full(len(clicked), model.meta["train_click_rate"])),
                shown.height,
            )
        )
        slate_info = {"slate_requests": len(per["ranker"]["mrr"])}
    return rows, {"test_users": int(len(users))} | slate_info


def _headline(rows: list[dict], scope: str, stage: str, metric: str) -> float | None:
    for r in rows:
        if r["scope"] == scope and r["stage"] == stage and r["metric"] == metric:
            return r["value"]
    return None


@dg.asset(
    group_name=GROUP,
    kinds={"lightgbm", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["ranker", "ranking_samples", "recall_candidates", "interactions"],
    description="The funnel on day D's held-out data (the ranker of D never saw D). scope='funnel': for users with "
    "new positives on D, the top-10 of recall-only ordering (RRF candidates), the ranker over the "
    "candidates, and ranker + re-rank: NDCG, Recall, MRR with bootstrap CIs and paired differences vs "
    "recall-only, coverage, intra-list similarity, latency per user per stage. scope='slates': D's "
    "shown lists re-ordered by popularity-by-position, shown order, recall RRF and the ranker (MRR, "
    "NDCG@10), and the binary click model's AUC and LogLoss next to a constant-rate LogLoss.",
    **ownership.layer("ranking"),
)
def funnel_evaluation(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    model_store: ModelStoreResource,
    recall: RecallSettings,
    ranking: RankingSettings,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    meta = {}
    for day in context.partition_keys:
        if not model_store.exists("ranker", day):
            rows, info = [], {"test_users": 0}
            context.log.warning(f"funnel_evaluation {day}: no ranker is published for {day}; empty table")
        else:
            try:
                rows, info = evaluate_funnel(day, storage, model_store, recall, ranking)
            except NoTrainingData as nothing:
                rows, info = [], {"test_users": 0}
                context.log.warning(f"funnel_evaluation {day}: {nothing}")
        serving.write_frame(
            pa.Table.from_pylist(rows, schema=FUNNEL_SCHEMA),
            storage.partition_path("funnel_evaluation", day),
            order_by="scope, stage, metric",
        )
        meta = {"test_users": info["test_users"], "dagster/row_count": len(rows)}
        for scope, stage, metric in (("funnel", s, "ndcg") for s in STAGES):
            value = _headline(rows, scope, stage, metric)
            if value is not None:
                meta[f"ndcg_at_10_{stage}"] = value
        for stage in ("popularity", "ranker"):
            value = _headline(rows, "slates", stage, "mrr")
            if value is not None:
                meta[f"slate_mrr_{stage}"] = value
        for metric in ("auc", "logloss"):
            value = _headline(rows, "slates", "ctr_binary", metric)
            if value is not None:
                meta[f"ctr_{metric}"] = value
        meta["summary"] = dg.MetadataValue.md(
            "| scope | stage | metric | value | diff vs baseline [95% CI] |\n|---|---|---|---|---|\n"
            + "\n".join(
                f"| {r['scope']} | {r['stage']} | {r['metric']}@{r['k']} | {r['value']:.4f} | "
                + (
                    f"{r['diff']:+.4f} [{r['diff_ci_low']:+.4f}, {r['diff_ci_high']:+.4f}] vs {r['baseline']}"
                    if r["diff"] is not None
                    else ""
                )
                + " |"
                for r in rows
                if r["metric"] in ("ndcg", "mrr", "auc", "logloss")
            )
        )
    warehouse.refresh_catalog()
    return dg.MaterializeResult(metadata=meta)


def beats_recall_only(storage: StorageResource, day: str) -> tuple[bool, str]:
    """Whether the ranker of `day` beat recall-only ordering on the funnel NDCG@10 (the first
    condition of its promotion; ranker_champion adds the comparison with the serving ranker)."""
    path = storage.partition_path("funnel_evaluation", day)
    if not path.exists():
        return False, f"funnel_evaluation is not materialized for {day}"
    rows = read_arrow(path).to_pylist()
    ranker_value = _headline(rows, "funnel", "ranker", "ndcg")
    recall_value = _headline(rows, "funnel", "recall_only", "ndcg")
    if ranker_value is None or recall_value is None:
        return False, f"no ranker evaluation for {day}"
    if ranker_value > recall_value:
        return True, f"ranker NDCG@10 {ranker_value:.4f} > recall-only {recall_value:.4f}"
    return False, f"ranker NDCG@10 {ranker_value:.4f} does not beat recall-only {recall_value:.4f}"


@dg.asset_check(
    asset=funnel_evaluation,
    name="ranker_beats_recall_only",
    partitions_def=daily_partitions,
    description="Fails if the ranker does not beat recall-only ordering on NDCG@10 (funnel scope). "
    "A failing ranker is never promoted (ranker_champion applies the same rule).",
)
def ranker_beats_recall_only(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    results = {day: beats_recall_only(storage, day) for day in context.partition_keys}
    evaluated = {d: r for d, r in results.items() if not r[1].startswith(("no ranker", "funnel_evaluation is not"))}
    failing = {d: why for d, (ok, why) in evaluated.items() if not ok}
    return dg.AssetCheckResult(
        passed=not failing,
        metadata={
            "days": dg.MetadataValue.json({d: why for d, (_, why) in results.items()}),
            "failing": dg.MetadataValue.json(failing),
        },
    )


RANKER_REGISTRY = pa.schema(
    [
        ("day", pa.string()),
        ("metric", pa.string()),
        ("candidate_day", pa.string()),
        ("candidate_value", pa.float64()),
        ("recall_only_value", pa.float64()),
        ("incumbent_day", pa.string()),
        ("incumbent_value", pa.float64()),
        ("decision", pa.string()),
        ("champion_day", pa.string()),
        ("reason", pa.string()),
    ]
)


def ranker_champion_before(storage: StorageResource, day: str) -> str | None:
    """Training day of the ranker serving before `day` (from the registry)."""
    for path in sorted((storage.lake_dir / "ranker_champion").glob("*.parquet"), reverse=True):
        if path.stem < day:
            champion = read_arrow(path).column("champion_day")[0].as_py()
            if champion:
                return champion
    return None


def serving_ranker_day(storage: StorageResource, day: str) -> tuple[str | None, str]:
    """(training day of the ranker that serves on `day`, why); None = serve in recall order."""
    path = storage.partition_path("ranker_champion", day)
    if not path.exists():
        return None, f"ranker_champion is not materialized for {day}: recall order"
    row = read_arrow(path).to_pylist()[0]
    return row["champion_day"], row["reason"]


def decide_ranker(
    day: str,
    candidate_value: float | None,
    recall_value: float | None,
    incumbent_day: str | None,
    incumbent_value: float | None,
    tolerance: float,
) -> dict:
    """The ranker of `day` serves if it beats recall-only ordering on D and is not worse than
    the serving ranker (evaluated on the same day) by more than `tolerance` (relative). A
    rejected candidate leaves the serving ranker in place if that one still beats recall-only."""
    row = {
        "day": day,
        "metric": "ndcg@10",
        "candidate_day": day if candidate_value is not None else None,
        "candidate_value": candidate_value,
        "recall_only_value": recall_value,
        "incumbent_day": incumbent_day,
        "incumbent_value": incumbent_value,
    }
    incumbent_ok = incumbent_value is not None and recall_value is not None and incumbent_value > recall_value
    keep = {"champion_day": incumbent_day if incumbent_ok else None}
    if candidate_value is None or recall_value is None:
        return (
            row
            | keep
            | {
                "decision": "kept" if incumbent_ok else "none",
                "reason": f"no ranker of {day} was evaluated"
                + (f"; the ranker of {incumbent_day} keeps serving" if incumbent_ok else "; recall order serves"),
            }
        )
    if candidate_value <= recall_value:
        return (
            row
            | keep
            | {
                "decision": "rejected",
                "reason": f"ranker of {day} ({candidate_value:.4f}) does not beat recall-only "
                f"({recall_value:.4f}) on {day}"
                + (f"; the ranker of {incumbent_day} keeps serving" if incumbent_ok else "; recall order serves"),
            }
        )
    if incumbent_value is not None and candidate_value < incumbent_value * (1 - tolerance):
        return (
            row
            | keep
            | {
                "decision": "rejected",
                "reason": f"ranker of {day} ({candidate_value:.4f}) is worse than the serving ranker of "
                f"{incumbent_day} ({incumbent_value:.4f}) by more than {tolerance:.0%} on {day}"
                + ("; it keeps serving" if incumbent_ok else "; recall order serves"),
            }
        )
    return row | {
        "decision": "promoted",
        "champion_day": day,
        "reason": f"ranker of {day} beats recall-only ({candidate_value:.4f} > {recall_value:.4f})"
        + (
            f" and is within {tolerance:.0%} of or better than the ranker of {incumbent_day} ({incumbent_value:.4f})"
            if incumbent_value is not None
            else ""
        ),
    }


@dg.asset(
    group_name=GROUP,
    kinds={"parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["funnel_evaluation"],
    description="Gated promotion of the ranker: the ranker of D serves from D on only if it beats recall-only "
    "ordering on D's funnel NDCG@10 and is not worse than the serving ranker, evaluated on the same day, "
    "by more than RecallSettings.promotion_tolerance. Otherwise the serving ranker stays (if it still "
    "beats recall-only on D) or recommendations fall back to recall order. One registry row per day: "
    "`SELECT * FROM ranker_champion`.",
    **ownership.layer("ranking"),
)
def ranker_champion(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    model_store: ModelStoreResource,
    recall: RecallSettings,
    ranking: RankingSettings,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    decision = {}
    for day in context.partition_keys:  # in order: each day sees the decisions of the days before
        path = storage.partition_path("funnel_evaluation", day)
        if not path.exists():
            raise dg.Failure(f"funnel_evaluation is not materialized for {day}")
        rows = read_arrow(path).to_pylist()
        candidate = _headline(rows, "funnel", "ranker", "ndcg")
        recall_value = _headline(rows, "funnel", "recall_only", "ndcg")
        incumbent = ranker_champion_before(storage, day)
        incumbent_value = None
        if incumbent and not model_store.exists("ranker", incumbent):
            context.log.warning(f"serving ranker of {incumbent} has no published artifact; treating as none")
            incumbent = None
        if incumbent and recall_value is not None:
            incumbent_value = ranker_ndcg_on_day(day, incumbent, storage, model_store, recall, ranking)
        decision = decide_ranker(day, candidate, recall_value, incumbent, incumbent_value, recall.promotion_tolerance)
        serving.write_frame(
            pa.Table.from_pylist([decision], schema=RANKER_REGISTRY), storage.partition_path("ranker_champion", day)
        )
        context.log.info(
            f"ranker champion {day}: {decision['decision']} -> {decision['champion_day']} ({decision['reason']})"
        )
    warehouse.refresh_catalog()
    return dg.MaterializeResult(
        metadata={
            "decision": decision.get("decision", "none"),
            "champion_day": decision.get("champion_day") or "none",
            "candidate_value": decision.get("candidate_value") or 0.0,
            "incumbent_value": decision.get("incumbent_value") or 0.0,
            "recall_only_value": decision.get("recall_only_value") or 0.0,
            "reason": decision.get("reason", ""),
        }
    )


ranking_assets = [ranking_samples, ranker, funnel_evaluation, ranker_champion]
ranking_checks = [ranker_artifact_verified, ranker_beats_recall_only]
