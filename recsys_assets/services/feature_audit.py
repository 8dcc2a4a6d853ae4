"""The blocking rules of a feature partition, one function per rule: the feature tables' asset
checks run them on the published partitions, and each feature asset runs them on its staged
partition before it publishes it (services/publication.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from recsys_assets.services.lake import Lake
from recsys_assets.services.publication import Rule, Verdict


@dataclass(frozen=True)
class TableRules:
    table: str
    key: tuple[str, ...]
    rates: tuple[str, ...] = ()  # must lie in [0, 1] when not null
    counts: tuple[str, ...] = ()  # must be >= 0
    point_in_time: bool = False  # has source_max_day, which must be < day


RULES = [
    TableRules(
        "interactions", ("day", "user_id", "item_id"), rates=("completion",), counts=("watch_time_sec", "position")
    ),
    TableRules(
        "user_daily_stats", ("day", "user_id"), counts=("impressions", "clicks", "plays", "positives", "watch_time_sec")
    ),
    TableRules("item_daily_stats", ("day", "item_id"), counts=("impressions", "clicks", "plays", "positives", "users")),
    TableRules(
        "user_features",
        ("day", "user_id"),
        rates=("ctr_smoothed_1d", "ctr_smoothed_7d", "ctr_smoothed_28d", "mean_completion_7d", "mean_completion_28d"),
        counts=(
            "impressions_28d",
            "clicks_28d",
            "plays_28d",
            "positives_28d",
            "watch_time_sec_28d",
            "days_since_active",
        ),
        point_in_time=True,
    ),
    TableRules(
        "item_features",
        ("day", "item_id"),
        rates=("ctr_smoothed_7d", "ctr_smoothed_28d", "mean_completion_28d"),
        counts=("impressions_28d", "positives_28d", "popularity_rank_7d"),
        point_in_time=True,
    ),
    TableRules("user_sequences", ("day", "user_id"), counts=("length",), point_in_time=True),
]
RULES_BY_TABLE = {r.table: r for r in RULES}
UNIQUE_KEYS = {"user_daily_stats", "item_daily_stats", "user_features", "item_features", "user_sequences"}


def scan(paths: list[Path]) -> str:
    return "read_parquet([" + ", ".join(f"'{p}'" for p in paths) + "])"


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    row = con.execute(sql).fetchone()
    assert row is not None  # an aggregate returns one row
    return row


def keys_and_ranges(con: duckdb.DuckDBPyConnection, rules: TableRules, paths: list[Path]) -> Verdict:
    src = scan(paths)
    probes = {f"null_{k}": f"count(*) FILTER (WHERE {k} IS NULL)" for k in rules.key}
    probes |= {f"out_of_range_{c}": f"count(*) FILTER (WHERE {c} < 0 OR {c} > 1)" for c in rules.rates}
    probes |= {f"negative_{c}": f"count(*) FILTER (WHERE {c} < 0)" for c in rules.counts}
    if rules.table in UNIQUE_KEYS:
        key = ", ".join(rules.key)
        probes["duplicate_keys"] = f"count(*) - (SELECT count(*) FROM (SELECT DISTINCT {key} FROM {src}))"
    values = _one(con, "SELECT " + ", ".join(f"{sql} AS {name}" for name, sql in probes.items()) + f" FROM {src}")
    found = {name: int(v) for name, v in zip(probes, values, strict=False)}
    return Verdict(not any(found.values()), found)


def point_in_time(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> Verdict:
    leaks, latest = _one(
        con, f"SELECT count(*) FILTER (WHERE source_max_day >= day), max(source_max_day - day) FROM {scan(paths)}"
    )
    return Verdict(
        leaks == 0,
        {"rows_from_day_or_later": int(leaks), "max_source_lag_days": int(latest) if latest is not None else 0},
    )


def interactions_consistent_with_raw(
    con: duckdb.DuckDBPyConnection, interactions: list[Path], impressions: list[Path], watches: list[Path]
) -> Verdict:
    shown, organic, distinct_imp = _one(
        con,
        f"SELECT count(*) FILTER (WHERE NOT is_organic), count(*) FILTER (WHERE is_organic), "
        f"count(DISTINCT impression_id) FROM {scan(interactions)}",
    )
    n_impressions = _one(con, f"SELECT count(*) FROM {scan(impressions)}")[0]
    n_watches = _one(con, f"SELECT count(*) FROM {scan(watches)}")[0]
    return Verdict(
        shown == n_impressions == distinct_imp and organic <= n_watches,
        {
            "interaction_rows_shown": shown,
            "raw_impressions": n_impressions,
            "organic_rows": organic,
            "raw_watches": n_watches,
        },
    )


def user_stats_consistent(con: duckdb.DuckDBPyConnection, interactions: list[Path], stats: list[Path]) -> Verdict:
    """Every interaction counted once (impressions + organic watches = the interactions' rows)
    and the same users: whether a partition's stats are one day's or, in the history partition,
    one row per user and day of the event."""
    rows, users = _one(con, f"SELECT count(*), count(DISTINCT user_id) FROM {scan(interactions)}")
    counted, stats_users, stats_rows = _one(
        con,
        f"SELECT coalesce(sum(impressions + organic_watches), 0), count(DISTINCT user_id), count(*) FROM {scan(stats)}",
    )
    return Verdict(
        rows == counted and users == stats_users,
        {
            "interaction_rows": rows,
            "counted_in_stats": int(counted),
            "users_in_interactions": users,
            "users_in_stats": stats_users,
            "rows": stats_rows,
        },
    )


def sequences_bounded(con: duckdb.DuckDBPyConnection, paths: list[Path], max_length: int) -> Verdict:
    too_long, unsorted = _one(
        con,
        f"SELECT count(*) FILTER (WHERE length > {int(max_length)}), "
        f"count(*) FILTER (WHERE event_ats <> list_sort(event_ats)) FROM {scan(paths)}",
    )
    return Verdict(too_long == 0 and unsorted == 0, {"too_long": int(too_long), "unsorted": int(unsorted)})


def staged_rules(
    con: duckdb.DuckDBPyConnection, lake: Lake, table: str, day: str, staged: Path, sequence_length: int
) -> list[Rule]:
    """Every blocking rule of feature table `table`, bound to its staged partition of `day`, in the
    order the checks declare them (a table without blocking checks has none)."""
    rules: list[Rule] = []
    if table in RULES_BY_TABLE:
        table_rules = RULES_BY_TABLE[table]
        rules.append(("keys_and_ranges", lambda: keys_and_ranges(con, table_rules, [staged])))
        if table_rules.point_in_time:
            rules.append(("point_in_time", lambda: point_in_time(con, [staged])))
    if table == "interactions":
        raw = [lake.partition_path(t, day) for t in ("raw_impressions", "raw_watch_stats")]
        rules.append(
            ("consistent_with_raw", lambda: interactions_consistent_with_raw(con, [staged], [raw[0]], [raw[1]]))
        )
    if table == "user_daily_stats":
        interactions = [lake.partition_path("interactions", day)]
        rules.append(("consistent_with_interactions", lambda: user_stats_consistent(con, interactions, [staged])))
    if table == "user_sequences":
        rules.append(("length_within_limit", lambda: sequences_bounded(con, [staged], sequence_length)))
    return rules
