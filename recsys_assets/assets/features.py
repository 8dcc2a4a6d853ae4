"""Feature layer: interactions, additive daily aggregates, and point-in-time user/item
features and sequences built from a bounded window of the aggregates. Each partition is built
into the staging area and published only when the rules of its blocking checks pass on it."""

import dagster as dg

from recsys_assets.assets import ownership
from recsys_assets.assets._wiring import failures
from recsys_assets.core.storage import duckdb_connect, file_sha256
from recsys_assets.core.tables import build_table
from recsys_assets.partitions import window_mapping
from recsys_assets.services import feature_audit
from recsys_assets.services.days import days_before
from recsys_assets.services.publication import publish_partition
from recsys_assets.settings import Settings
from resources import FeatureSettings, StorageResource, WarehouseResource

KINDS = {"duckdb", "parquet"}
WINDOW_DAYS = 28  # the longest feature window (1, 7 and 28 days)


def _day_files(storage: StorageResource, table: str, days: list[str], required: bool = True) -> list:
    files = [storage.partition_path(table, d) for d in days]
    missing = [d for d, f in zip(days, files, strict=False) if not f.exists()]
    if missing and required:
        raise dg.Failure(
            f"{table} is not materialized for {', '.join(missing)}; materialize it first "
            f"(e.g. --select {table} --partition-range {missing[0]}...{missing[-1]})."
        )
    return [f for f in files if f.exists()]


def _params(day: str, settings: FeatureSettings, history_partition: bool = False) -> dict:
    return {
        "day": day,
        "history_partition": history_partition,
        "min_pos_completion": settings.min_pos_completion,
        "like_is_positive": settings.like_is_positive,
        "prior_clicks": settings.ctr_prior_clicks,
        "prior_impressions": settings.ctr_prior_impressions,
        "max_length": settings.sequence_length,
    }


def build(partitions: dg.PartitionsDefinition, settings: Settings):
    """The layer's definitions over `partitions` (the first one is settings.start_date)."""
    first_day = settings.start_date

    def _daily_asset(name: str, description: str, deps: list, inputs_for, window: bool = False):
        """A daily-partitioned table built by sql/<name>.sql; `inputs_for(day, storage)` binds its inputs."""

        @dg.asset(
            name=name,
            kinds=KINDS,
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
            deps=deps,
            description=description,
            **ownership.layer("features"),
        )
        def _asset(
            context: dg.AssetExecutionContext,
            storage: StorageResource,
            warehouse: WarehouseResource,
            features: FeatureSettings,
        ) -> dg.MaterializeResult:
            rows = {}
            for day in context.partition_keys:
                out = storage.partition_path(name, day)
                staged = storage.staged_path(out)
                # a long source's first partition holds its whole history (Settings.history_start)
                history = settings.history_start is not None and day == first_day
                params = _params(day, features, history_partition=history)
                rows[day] = build_table(f"{name}.sql", inputs_for(day, storage), params, staged)
                # published only if the rules of the table's blocking checks pass on the staged file
                con = duckdb_connect()
                try:
                    rules = feature_audit.staged_rules(con, storage, name, day, staged, features.sequence_length)
                    with failures():
                        publish_partition(name, day, [(staged, out)], rules)
                finally:
                    con.close()
                # the day's own count and content, whatever the run's range
                context.add_asset_metadata(
                    {"dagster/row_count": rows[day], "content_sha256": file_sha256(out)}, partition_key=day
                )
            warehouse.refresh_catalog()
            return dg.MaterializeResult(metadata={"rows_per_partition_of_run": dg.MetadataValue.json(rows)})

        return _asset

    def _snapshot(storage: StorageResource, table: str) -> list:
        return _day_files(storage, table, ["snapshot"])

    interactions = _daily_asset(
        "interactions",
        "One row per impression of the day with its labels (clicked, played, liked, disliked, rating, watch time, "
        "completion, is_positive) from the same day's events and watches, plus organic watches as positives "
        "(is_organic). is_positive = completion >= min_pos_completion or a like (FeatureSettings).",
        deps=["raw_impressions", "raw_events", "raw_watch_stats"],
        inputs_for=lambda day, s: {
            "impressions": ("raw_impressions", _day_files(s, "raw_impressions", [day])),
            "events": ("raw_events", _day_files(s, "raw_events", [day])),
            "watches": ("raw_watch_stats", _day_files(s, "raw_watch_stats", [day])),
        },
    )

    user_daily_stats = _daily_asset(
        "user_daily_stats",
        "Per user and day: impressions, clicks, plays, likes, positives, organic watches, watch time, completion sums. "
        "Additive: feature windows sum these rows instead of rescanning interactions.",
        deps=["interactions"],
        inputs_for=lambda day, s: {"interactions": ("interactions", _day_files(s, "interactions", [day]))},
    )

    item_daily_stats = _daily_asset(
        "item_daily_stats",
        "Per item and day: impressions, clicks, plays, likes, positives, distinct users, watch time, completion sums.",
        deps=["interactions"],
        inputs_for=lambda day, s: {"interactions": ("interactions", _day_files(s, "interactions", [day]))},
    )

    user_genre_daily = _daily_asset(
        "user_genre_daily",
        "Per user, genre and day: impressions, clicks and positives on items of that genre (genre affinity input).",
        deps=["interactions", "raw_items"],
        inputs_for=lambda day, s: {
            "interactions": ("interactions", _day_files(s, "interactions", [day])),
            "items": ("raw_items", _snapshot(s, "raw_items")),
        },
    )

    categorical_daily_counts = _daily_asset(
        "categorical_daily_counts",
        "Per day, field and value: occurrences of each categorical value (surface, device_type, country, ui_language, "
        "genre_shown, genre_positive). Feeds the hash dictionaries and categorical drift.",
        deps=["interactions", "raw_items", "raw_users"],
        inputs_for=lambda day, s: {
            "interactions": ("interactions", _day_files(s, "interactions", [day])),
            "items": ("raw_items", _snapshot(s, "raw_items")),
            "users": ("raw_users", _snapshot(s, "raw_users")),
        },
    )

    def _window(table: str):
        return dg.AssetDep(table, partition_mapping=window_mapping(WINDOW_DAYS))

    user_features = _daily_asset(
        "user_features",
        "Point-in-time user features for day D, from the 28 days strictly before D: impressions, clicks, smoothed CTR, "
        "plays and positives over 1/7/28 days, watch time, mean completion, active days, recency, top genre and genre "
        "affinity. Reads a bounded window of daily aggregates, never day D or the whole history.",
        deps=[_window("user_daily_stats"), _window("user_genre_daily")],
        inputs_for=lambda day, s: {
            "stats_window": (
                "user_daily_stats",
                _day_files(s, "user_daily_stats", days_before(day, WINDOW_DAYS, first_day)),
            ),
            "genre_window": (
                "user_genre_daily",
                _day_files(s, "user_genre_daily", days_before(day, WINDOW_DAYS, first_day)),
            ),
        },
    )

    item_features = _daily_asset(
        "item_features",
        "Point-in-time item features for day D: every catalog item available before D with popularity, CTR, plays, "
        "positives over 1/7/28 days, mean completion, popularity rank, age in days, genres and tags.",
        deps=[_window("item_daily_stats"), "raw_items"],
        inputs_for=lambda day, s: {
            "stats_window": (
                "item_daily_stats",
                _day_files(s, "item_daily_stats", days_before(day, WINDOW_DAYS, first_day)),
            ),
            "items": ("raw_items", _snapshot(s, "raw_items")),
        },
    )

    user_sequences = _daily_asset(
        "user_sequences",
        "For day D, each user's last N positive items (FeatureSettings.sequence_length) from the 28 days before D, "
        "oldest first, with their timestamps.",
        deps=[_window("interactions")],
        inputs_for=lambda day, s: {
            "positives_window": (
                "interactions",
                _day_files(s, "interactions", days_before(day, WINDOW_DAYS, first_day)),
            )
        },
    )

    feature_assets = [
        interactions,
        user_daily_stats,
        item_daily_stats,
        user_genre_daily,
        categorical_daily_counts,
        user_features,
        item_features,
        user_sequences,
    ]
    return feature_assets, []
