"""Feature drift of day D against the pooled reference days before it: PSI / KS per numeric
feature, PSI / Jensen-Shannon per categorical field, traffic shares of the unseen."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable

import numpy as np
import polars as pl

from recsys_assets.core import drift
from recsys_assets.core.ingest import read_sql
from recsys_assets.core.tables import bind, connect
from recsys_assets.services.days import days_before
from recsys_assets.services.errors import MissingInput
from recsys_assets.services.lake import Lake
from recsys_assets.settings import FeatureConfig

# The longest history the report reads before D (the reference window is at most this long).
HISTORY_DAYS = 28


def _files(lake: Lake, table: str, days: list[str]) -> list:
    files = [lake.partition_path(table, d) for d in days]
    missing = [d for d, f in zip(days, files, strict=False) if not f.exists()]
    if missing:
        raise MissingInput(f"feature_drift_report needs {table} for {', '.join(missing)}; materialize it first.")
    return files


def drift_for_day(
    lake: Lake, day: str, settings: FeatureConfig, first_day: str | None, history_day: str | None = None
) -> list[drift.DriftRow]:
    """`history_day`: the history partition of a long source (months in one partition), which
    is no day to compare a day with: it is left out of the reference."""
    reference = [d for d in days_before(day, settings.drift_reference_days, first_day) if d != history_day]
    con = connect()
    try:
        bind(con, "user_stats", _files(lake, "user_daily_stats", reference + [day]), "user_daily_stats")
        bind(con, "item_stats", _files(lake, "item_daily_stats", reference + [day]), "item_daily_stats")
        # (reference values, day-D values) per feature, as numpy arrays straight from Arrow: the
        # values are millions of rows at scale, far too many to pass through Python lists
        values = con.sql(
            f"SELECT feature, day = DATE '{day}' AS current, value FROM ({read_sql('drift_numeric_features.sql')})"
        ).pl()
        numeric: defaultdict[str, tuple[np.ndarray, np.ndarray]] = defaultdict(lambda: (np.zeros(0), np.zeros(0)))
        for (feature, current), part in values.partition_by("feature", "current", as_dict=True).items():
            pair = numeric[feature]
            array = part["value"].cast(pl.Float64).to_numpy()  # NULL -> NaN, which drift drops
            numeric[feature] = (pair[0], array) if current else (array, pair[1])
        bind(con, "counts", _files(lake, "categorical_daily_counts", reference + [day]), "categorical_daily_counts")
        categorical: defaultdict[str, tuple[dict[Hashable, float], dict[Hashable, float]]] = defaultdict(
            lambda: ({}, {})
        )
        for d, field, value, n in con.execute(
            f"SELECT day = DATE '{day}', field, value, sum(count) FROM counts GROUP BY ALL"
        ).fetchall():
            categorical[field][1 if d else 0][value] = n

        history = days_before(day, HISTORY_DAYS, first_day)
        bind(con, "interactions", _files(lake, "interactions", [day]), "interactions")
        bind(con, "user_history", _files(lake, "user_daily_stats", history), "user_daily_stats")
        bind(con, "item_history", _files(lake, "item_daily_stats", history), "item_daily_stats")
        bind(con, "items", [lake.partition_path("raw_items")], "raw_items")
        traffic = con.execute(read_sql("drift_traffic.sql"), {"day": day}).fetchone()
        assert traffic is not None  # an aggregate query returns one row
    finally:
        con.close()

    rows = drift.drift_rows(
        {},
        dict(categorical),
        warn=settings.drift_warn_psi,
        fail=settings.drift_fail_psi,
        min_samples=settings.drift_min_samples,
    )
    for feature, (ref, cur) in numeric.items():
        # PSI of an unchanged distribution grows like (bins - 1) * (1/n_ref + 1/n_cur): with few
        # samples, fewer bins keep noise well under the warn threshold.
        bins = int(np.clip(min(len(ref), len(cur)) // settings.drift_samples_per_bin, 2, drift.DEFAULT_BINS))
        rows += drift.drift_rows(
            {feature: (np.asarray(ref, float), np.asarray(cur, float))},
            {},
            bins=bins,
            warn=settings.drift_warn_psi,
            fail=settings.drift_fail_psi,
            min_samples=settings.drift_min_samples,
        )
    rows = drift.sort_rows(rows)
    n_impressions = int(traffic[0])
    for name, value in zip(("unseen_user_share", "unseen_item_share", "new_item_share"), traffic[1:], strict=False):
        # Informational: shares have no reference distribution to test against here.
        rows.append(
            drift.DriftRow(
                feature=f"traffic.{name}",
                kind="traffic",
                psi=None,
                ks=None,
                js=None,
                value=float(value),
                n_reference=0,
                n_current=n_impressions,
                severity="ok" if n_impressions else "no_data",
            )
        )
    return rows
