"""The blocking rules of a raw partition, one function per rule: the raw tables' asset checks
run them on the published partitions, and ingestion runs them on a staged partition before it
publishes it (services/publication.py)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb

from recsys_assets.core.contract import EVENTS, IMPRESSIONS, WATCH_STATS, TableContract
from recsys_assets.services.lake import Lake
from recsys_assets.services.publication import Rule, Verdict
from recsys_assets.services.volume import check_volume
from recsys_assets.settings import IngestionConfig, Settings


def _scan(paths) -> str:
    return "read_parquet([" + ", ".join(f"'{p}'" for p in paths) + "])"


def key_fields(contract: TableContract) -> list[str]:
    return [f.name for f in contract.fields if f.required]


def schema(con: duckdb.DuckDBPyConnection, contract: TableContract, paths: list[Path]) -> Verdict:
    expected = [(f.name, f.duckdb_type) for f in contract.fields]
    mismatched = []
    for path in paths:
        actual = [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()]
        if actual != expected:
            mismatched.append(f"{path.name}: {actual}")
    return Verdict(not mismatched, {"expected": str(expected), "mismatched": "\n".join(mismatched) or "none"})


def non_null_keys(con: duckdb.DuckDBPyConnection, contract: TableContract, paths: list[Path]) -> Verdict:
    fields = key_fields(contract)
    counts = con.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE {f} IS NULL)" for f in fields) + f" FROM {_scan(paths)}"
    ).fetchone()
    assert counts is not None  # an aggregate returns one row
    nulls = {f: int(n) for f, n in zip(fields, counts, strict=False)}
    return Verdict(not any(nulls.values()), {f"null_{f}": n for f, n in nulls.items()})


def unique_ids(con: duckdb.DuckDBPyConnection, contract: TableContract, paths: list[Path]) -> Verdict:
    row = con.execute(f"SELECT count(*) - count(DISTINCT {contract.id_field}) FROM {_scan(paths)}").fetchone()
    assert row is not None
    return Verdict(row[0] == 0, {"duplicate_ids": int(row[0])})


def quarantine_rate(
    con: duckdb.DuckDBPyConnection, paths: list[Path], quarantine_paths: list[Path], max_rate: float
) -> Verdict:
    loaded_row = con.execute(f"SELECT count(*) FROM {_scan(paths)}").fetchone()
    quarantined_row = con.execute(f"SELECT count(*) FROM {_scan(quarantine_paths)}").fetchone()
    assert loaded_row is not None and quarantined_row is not None
    loaded, quarantined = loaded_row[0], quarantined_row[0]
    rate = quarantined / (loaded + quarantined) if loaded + quarantined else 0.0
    return Verdict(
        rate <= max_rate,
        {
            "quarantine_rate": rate,
            "threshold": max_rate,
            "rows_loaded": int(loaded),
            "rows_quarantined": int(quarantined),
        },
    )


def history_partitions(settings: Settings) -> frozenset[str]:
    """A history partition (many days in one) is no norm for a day."""
    return frozenset([settings.start_date]) if settings.history_start else frozenset()


def links_requests(contract: TableContract) -> bool:
    return contract in (EVENTS, WATCH_STATS)


def request_ids_resolve(
    con: duckdb.DuckDBPyConnection,
    contract: TableContract,
    lake: Lake,
    days: list[str],
    paths: list[Path],
    max_rate: float,
) -> Verdict:
    """Every non-null request_id of `paths` (the partitions of `days`) matches an impression of
    the same user and item on the same or previous day."""
    previous = sorted({d for k in days for d in (k, (date.fromisoformat(k) - timedelta(days=1)).isoformat())})
    imp_paths = lake.existing_partitions(IMPRESSIONS.asset_name, previous)
    impressions = (
        _scan(imp_paths)
        if imp_paths
        else "(SELECT NULL::VARCHAR request_id, NULL::BIGINT user_id, NULL::BIGINT item_id, NULL::TIMESTAMPTZ shown_at)"
    )
    # Per row, against the impressions of its own UTC day and the day before only (a range
    # run reads many days of impressions; a request from further back is still an orphan).
    day_of = f"CAST(timezone('UTC', x.{contract.time_field}) AS DATE)"
    row = con.execute(f"""
        WITH shown AS (SELECT DISTINCT request_id, user_id, item_id,
                              CAST(timezone('UTC', shown_at) AS DATE) AS shown_day FROM {impressions})
        SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (
                   SELECT 1 FROM shown AS i
                   WHERE i.request_id = x.request_id AND i.user_id = x.user_id AND i.item_id = x.item_id
                     AND i.shown_day BETWEEN {day_of} - 1 AND {day_of}))
        FROM {_scan(paths)} AS x
        WHERE x.request_id IS NOT NULL""").fetchone()
    assert row is not None
    total, orphans = row
    rate = orphans / total if total else 0.0
    return Verdict(
        rate <= max_rate,
        {
            "rows_with_request_id": int(total),
            "orphan_rows": int(orphans),
            "orphan_rate": rate,
            "threshold": max_rate,
        },
    )


def volume(
    lake: Lake,
    contract: TableContract,
    days: list[str],
    ingestion: IngestionConfig,
    *,
    history: frozenset[str],
    skips_empty_days: bool,
    staged: Path | None = None,
) -> Verdict:
    """Rows, users and items of each day against the trailing published daily partitions
    (`staged`: the file to judge for a single day instead of its published partition)."""
    if skips_empty_days:
        return Verdict(True, {"verdict": "not checked: the source declares days without data (empty_days: absent)"})
    verdicts = [
        check_volume(
            lake,
            contract.asset_name,
            day,
            window=ingestion.volume_window,
            min_ratio=ingestion.min_volume_ratio,
            min_history=ingestion.volume_min_history,
            exclude=history,
            current=staged,
        )
        for day in days
        if day not in history
    ]
    failed = [v for v in verdicts if not v.passed]
    last = verdicts[-1] if verdicts else None
    metadata: dict = {
        "verdict": "; ".join(f"{v.day}: {v.reason}" for v in (failed or verdicts[-3:])) or "history partition: no norm",
        "min_ratio": ingestion.min_volume_ratio,
    }
    if last is not None:
        metadata |= {f"{m}": n for m, n in last.current.items()}
        metadata |= {f"trailing_median_{m}": float(n) for m, n in last.norm.items()}
    return Verdict(not failed, metadata)


def staged_rules(
    con: duckdb.DuckDBPyConnection,
    contract: TableContract,
    lake: Lake,
    day: str,
    data: Path,
    quarantine: Path,
    ingestion: IngestionConfig,
    *,
    history: frozenset[str] = frozenset(),
    skips_empty_days: bool = False,
) -> list[Rule]:
    """Every blocking rule of the raw table, bound to a staged partition (`data`, `quarantine`)
    of `day`, in the order the checks declare them."""
    rules: list[Rule] = [
        ("schema", lambda: schema(con, contract, [data])),
        ("non_null_keys", lambda: non_null_keys(con, contract, [data])),
        ("unique_ids", lambda: unique_ids(con, contract, [data])),
        ("quarantine_rate", lambda: quarantine_rate(con, [data], [quarantine], ingestion.max_quarantine_rate)),
    ]
    if links_requests(contract):
        rules.append(
            (
                "request_ids_resolve",
                lambda: request_ids_resolve(con, contract, lake, [day], [data], ingestion.max_orphan_request_rate),
            )
        )
    if contract.partitioned:
        rules.append(
            (
                "volume",
                lambda: volume(
                    lake, contract, [day], ingestion, history=history, skips_empty_days=skips_empty_days, staged=data
                ),
            )
        )
    return rules
