"""Drift metrics: PSI / KS for numeric features, PSI / JS for categorical ones, report rows."""

import math
from datetime import date

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_assets.core import drift as d


def normal(seed, n=5000, loc=0.0):
    return np.random.default_rng(seed).normal(loc=loc, scale=1.0, size=n)


# --------------------------------------------------------------------------- numeric


def test_identical_distributions_have_near_zero_psi_and_small_ks():
    ref, cur = normal(1), normal(2)
    assert d.numeric_psi(ref, cur) < 0.02
    assert d.ks_statistic(ref, cur) < 0.05
    assert d.numeric_psi(ref, ref) == pytest.approx(0.0, abs=1e-12)


def test_one_sd_shift_is_a_major_drift():
    ref, cur = normal(1), normal(2, loc=1.0)
    assert d.numeric_psi(ref, cur) > 0.25
    assert d.ks_statistic(ref, cur) > 0.3


def test_small_shift_is_below_warn():
    assert d.numeric_psi(normal(1), normal(2, loc=0.1)) < 0.1


def test_psi_matches_hand_computation():
    # reference 1..10, 2 bins: the median 5.5 is the single interior edge -> shares 0.5 / 0.5;
    # current 1..8 -> 5 values below 5.5, 3 above: shares 0.625 / 0.375.
    expected = (0.625 - 0.5) * math.log(0.625 / 0.5) + (0.375 - 0.5) * math.log(0.375 / 0.5)
    assert d.numeric_psi(np.arange(1, 11), np.arange(1, 9), bins=2) == pytest.approx(expected, rel=1e-12)


def test_psi_hand_computation_with_eps_floor():
    # reference 1..10, 2 bins, current entirely above the median: shares (eps, 1) renormalised.
    eps = 0.01
    r = np.array([0.5, 0.5])
    c = np.array([eps, 1.0]) / (1.0 + eps)
    expected = float(np.sum((c - r) * np.log(c / r)))
    got = d.numeric_psi(np.arange(1, 11), [7.0, 8.0, 100.0], bins=2, eps=eps)
    assert got == pytest.approx(expected, rel=1e-12)


def test_quantile_bin_edges():
    np.testing.assert_allclose(d.quantile_bin_edges(np.arange(1, 11), bins=4), [3.25, 5.5, 7.75])
    # ties collapse bins, NaN ignored
    np.testing.assert_array_equal(d.quantile_bin_edges([0, 0, 0, 0, 0, 0, 1, 1, np.nan], bins=4), [0.0, 0.25])
    np.testing.assert_array_equal(d.quantile_bin_edges(np.zeros(100)), [0.0])
    assert d.quantile_bin_edges([], bins=5).size == 0
    assert d.quantile_bin_edges([1.0, 2.0], bins=1).size == 0
    with pytest.raises(ValueError):
        d.quantile_bin_edges([1.0], bins=0)


def test_values_beyond_reference_range_fall_into_outer_bins():
    ref = np.arange(100.0)
    assert d.numeric_psi(ref, ref + 1000) > 0.25
    assert d.numeric_psi(ref, [-np.inf, np.inf] * 50) > 0.25
    assert math.isfinite(d.numeric_psi(ref, [-np.inf, np.inf] * 50))


@pytest.mark.parametrize("current", [np.ones(500), -np.ones(500), normal(3, n=500)])
def test_constant_reference_does_not_crash_and_detects_change(current):
    ref = np.zeros(1000)
    assert d.numeric_psi(ref, np.zeros(300)) == pytest.approx(0.0, abs=1e-12)
    assert d.numeric_psi(ref, current) > 0.25
    assert d.ks_statistic(ref, current) > 0.3


def test_point_mass_at_an_edge_gets_its_own_bin():
    # zero-inflated feature; current replaces the exact zeros by tiny positive values
    rng = np.random.default_rng(7)
    ref = np.where(rng.random(5000) < 0.6, 0.0, rng.exponential(size=5000))
    cur = np.where(ref == 0, 1e-9, ref)
    assert d.numeric_psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert d.numeric_psi(ref, cur) > 0.25


def test_nans_are_ignored():
    ref, cur = normal(1, n=1000), normal(2, n=1000)
    with_nan_ref = np.concatenate([ref, [np.nan] * 300])
    with_nan_cur = np.concatenate([[np.nan] * 500, cur])
    assert d.numeric_psi(with_nan_ref, with_nan_cur) == pytest.approx(d.numeric_psi(ref, cur), rel=1e-12)
    assert d.ks_statistic(with_nan_ref, with_nan_cur) == pytest.approx(d.ks_statistic(ref, cur))
    # None in a plain list is a missing value too
    assert d.numeric_psi([1.0, 2.0, None, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("ref,cur", [([], [1.0, 2.0]), ([1.0, 2.0], []), ([np.nan, np.nan], [1.0]), ([1.0], [np.nan])])
def test_empty_side_gives_nan_and_ok(ref, cur):
    psi = d.numeric_psi(ref, cur)
    assert math.isnan(psi)
    assert math.isnan(d.ks_statistic(ref, cur))
    assert d.severity(psi) == "ok"


# --------------------------------------------------------------------------- categorical

REF = {"home": 500.0, "search": 300.0, "genre": 200.0}


def test_same_proportions_are_near_zero():
    cur = {k: v / 10 for k, v in REF.items()}
    assert d.categorical_psi(REF, cur) == pytest.approx(0.0, abs=1e-12)
    assert d.js_distance(REF, cur) == pytest.approx(0.0, abs=1e-6)


def test_swap_of_top_and_bottom_shares_is_a_major_drift():
    cur = {"home": 200.0, "search": 300.0, "genre": 500.0}
    psi = d.categorical_psi(REF, cur)
    expected = 2 * 0.3 * math.log(0.5 / 0.2)
    assert psi == pytest.approx(expected, rel=1e-9)
    assert psi > 0.25
    assert d.js_distance(REF, cur) > 0.1


def test_new_category_counts_with_eps():
    cur = dict(REF, kids=100.0)  # a surface unseen in the reference
    psi = d.categorical_psi(REF, cur)
    assert psi > 0.25
    eps = 1e-4
    r = np.array([0.5, 0.3, 0.2, eps]) / (1 + eps)
    c = np.array([500, 300, 200, 100]) / 1100
    assert psi == pytest.approx(float(np.sum((c - r) * np.log(c / r))), rel=1e-9)
    js = d.js_distance(REF, cur)
    assert 0.0 < js <= 1.0
    # a category gone from the current side counts too; a zero count equals an absent one
    assert d.categorical_psi(REF, {"home": 500.0, "search": 300.0}) > 0.25
    assert d.categorical_psi(REF, {"home": 5, "search": 3, "genre": 2, "kids": 0}) == pytest.approx(0.0, abs=1e-12)


def test_disjoint_categories_have_js_one():
    assert d.js_distance({"a": 1}, {"b": 1}) == pytest.approx(1.0)


def test_max_categories_pools_rare_and_unseen_into_other():
    ref = {"a": 50, "b": 30, "c": 1, "d": 1}
    cur = {"a": 50, "b": 30, "c": 1, "zzz": 1}
    labels, r, c = d.align_categories(ref, cur, max_categories=2)
    assert labels == ["a", "b", d.OTHER]
    np.testing.assert_array_equal(r, [50, 30, 2])
    np.testing.assert_array_equal(c, [50, 30, 2])
    assert d.categorical_psi(ref, cur, max_categories=2) == pytest.approx(0.0, abs=1e-12)
    assert d.categorical_psi(ref, cur) > 0.1  # without pooling the swap of rare labels counts


def test_categorical_empty_side_and_bad_counts():
    assert math.isnan(d.categorical_psi({}, REF))
    assert math.isnan(d.js_distance(REF, {"a": 0}))
    with pytest.raises(ValueError):
        d.categorical_psi({"a": -1.0}, REF)
    with pytest.raises(ValueError):
        d.categorical_psi(REF, REF, eps=0.0)


# --------------------------------------------------------------------------- severity and rows


@pytest.mark.parametrize(
    "psi,expected",
    [
        (0.0, "ok"),
        (0.0999, "ok"),
        (0.1, "warn"),
        (0.2499, "warn"),
        (0.25, "fail"),
        (3.0, "fail"),
        (float("nan"), "ok"),
        (None, "ok"),
    ],
)
def test_severity_thresholds(psi, expected):
    assert d.severity(psi) == expected


def test_severity_custom_thresholds():
    assert d.severity(0.05, warn=0.01, fail=0.5) == "warn"
    assert d.severity(0.6, warn=0.01, fail=0.5) == "fail"
    with pytest.raises(ValueError):
        d.severity(0.1, warn=0.3, fail=0.2)


def build_rows():
    numeric = {
        "stable": (normal(1), normal(2)),
        "shifted": (normal(1), normal(2, loc=1.0)),
        "slight": (normal(1), normal(2, loc=0.3)),
        "empty": (np.array([]), normal(2)),
    }
    categorical = {
        "surface": (REF, {"home": 200.0, "search": 300.0, "genre": 500.0}),
        "device": ({"tv": 10, "web": 10}, {"tv": 10, "web": 10}),
    }
    return d.drift_rows(numeric, categorical)


def test_drift_rows_are_sorted_worst_first():
    rows = build_rows()
    assert [r.feature for r in rows] == ["shifted", "surface", "slight", "stable", "device", "empty"]
    psis = [r.psi for r in rows]
    finite = [p for p in psis if not math.isnan(p)]
    assert finite == sorted(finite, reverse=True)
    assert math.isnan(psis[-1]) and rows[-1].feature == "empty"
    by_name = {r.feature: r for r in rows}
    assert by_name["shifted"].severity == "fail" and by_name["shifted"].kind == "numeric"
    assert by_name["shifted"].ks > 0.3 and by_name["shifted"].js is None
    assert by_name["surface"].kind == "categorical" and by_name["surface"].ks is None
    assert by_name["surface"].js > 0.1 and by_name["surface"].n_reference == 1000
    assert by_name["stable"].severity == "ok" and by_name["stable"].n_current == 5000
    # one side without any value: nothing was compared, which is "no_data", never "ok"
    assert by_name["empty"].n_reference == 0 and by_name["empty"].severity == "no_data"


def test_markdown_has_worst_feature_first():
    rows = build_rows()
    md = d.markdown_summary(list(reversed(rows)))
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert lines[0] == "| feature | kind | PSI | KS | JS | n ref | n cur | severity |"
    assert lines[2].startswith("| shifted | numeric |") and lines[2].endswith("| fail |")
    assert len(lines) == 2 + len(rows)
    short = d.markdown_summary(rows, top=2)
    assert len([ln for ln in short.splitlines() if ln.startswith("|")]) == 4
    assert "4 more row(s)" in short
    assert "No features" in d.markdown_summary([])


def test_markdown_shows_traffic_value_and_ranks_failing_traffic_above_ok_rows():
    # a traffic row has no PSI: it ranks by severity, after the PSI rows of the same severity
    traffic = d.DriftRow("share_new_users", "traffic", None, None, None, 0.42, 100, 120, "fail")
    md = d.markdown_summary([traffic] + build_rows())
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert "| value |" in lines[0]
    assert [ln.split(" | ")[0][2:] for ln in lines[2:]] == [
        "shifted",
        "surface",
        "share_new_users",
        "slight",
        "stable",
        "device",
        "empty",
    ]
    assert "0.4200" in lines[4]


def test_rows_to_arrow():
    rows = build_rows()
    table = d.rows_to_arrow(rows, date(2026, 1, 5))
    assert table.column_names == [
        "day",
        "feature",
        "kind",
        "psi",
        "ks",
        "js",
        "value",
        "n_reference",
        "n_current",
        "severity",
    ]
    assert table.schema.field("psi").type == pa.float64()
    assert table.schema.field("n_reference").type == pa.int64()
    assert table.num_rows == len(rows)
    data = table.to_pylist()
    assert {r["day"] for r in data} == {"2026-01-05"}
    assert [r["feature"] for r in data] == [r.feature for r in rows]
    empty = next(r for r in data if r["feature"] == "empty")
    assert empty["psi"] is None and empty["ks"] is None and empty["n_reference"] == 0
    assert d.rows_to_arrow([], "2026-01-05").num_rows == 0
    with pytest.raises(ValueError):
        d.DriftRow("x", "weird", None, None, None, None, 0, 0, "ok")


# --------------------------------------------------------------------------- properties

any_float = st.floats(allow_nan=True, allow_infinity=True)
samples = st.lists(any_float, min_size=1, max_size=60).filter(lambda xs: any(not math.isnan(x) for x in xs))
counts = st.dictionaries(
    st.sampled_from(list("abcdefgh")),
    st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
    min_size=1,
).filter(lambda m: sum(m.values()) > 0)


@settings(max_examples=200, deadline=None)
@given(samples, samples, st.integers(min_value=1, max_value=20))
def test_numeric_psi_is_finite_and_non_negative(ref, cur, bins):
    psi = d.numeric_psi(ref, cur, bins=bins)
    assert math.isfinite(psi) and psi >= 0.0
    assert d.numeric_psi(ref, ref, bins=bins) == pytest.approx(0.0, abs=1e-9)
    ks = d.ks_statistic(ref, cur)
    assert 0.0 <= ks <= 1.0


@settings(max_examples=200, deadline=None)
@given(counts, counts)
def test_categorical_psi_non_negative_and_js_symmetric(ref, cur):
    psi = d.categorical_psi(ref, cur)
    assert math.isfinite(psi) and psi >= 0.0
    js = d.js_distance(ref, cur)
    assert 0.0 <= js <= 1.0
    assert js == pytest.approx(d.js_distance(cur, ref), abs=1e-9)


def test_too_few_samples_give_no_psi_and_no_verdict():
    """Three users against fifty is noise (a sparse day of a ratings source), not drift."""
    rng = np.random.default_rng(0)
    few = d.drift_rows({"x": (rng.normal(0, 1, 50), rng.normal(5, 1, 3))}, {}, min_samples=30)
    assert few[0].psi is None and few[0].severity == "ok" and (few[0].n_reference, few[0].n_current) == (50, 3)
    many = d.drift_rows({"x": (rng.normal(0, 1, 500), rng.normal(5, 1, 300))}, {}, min_samples=30)
    assert many[0].psi > 0.25 and many[0].severity == "fail"


def test_the_drift_check_says_no_data_for_a_day_without_data(tmp_path):
    """A day with no value on its side (an empty delivery) has no PSI at all: the check warns
    "no data" instead of passing with severity ok."""
    import dagster as dg
    import duckdb

    from recsys_assets.definitions import build_defs, build_resources

    day = "2026-01-05"
    rows = d.rows_to_arrow(
        d.drift_rows({"watch_time": (np.arange(100.0), np.array([]))}, {"surface": ({"home": 50}, {})}), day
    )
    assert set(rows.column("severity").to_pylist()) == {"no_data"}
    report = tmp_path / "data/lake/feature_drift_report" / f"{day}.parquet"
    report.parent.mkdir(parents=True)
    con = duckdb.connect()
    con.register("rows", rows)
    con.execute(f"COPY (SELECT * FROM rows) TO '{report}' (FORMAT parquet)")
    job = build_defs(resources=build_resources(str(tmp_path / "data"))).resolve_implicit_global_asset_job_def()
    key = dg.AssetCheckKey(dg.AssetKey("feature_drift_report"), "psi_below_thresholds")
    result = job.get_subset(asset_selection=set(), asset_check_selection={key}).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key=day, raise_on_error=False
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["verdict"].value == "no data"
    assert "watch_time" in evaluation.metadata["features_without_data"].value
