"""Distribution-drift metrics for the daily feature drift report (no Dagster import).

Each feature of day D is compared with a reference window:

* numeric features: PSI over bins cut at the reference quantiles, plus the two-sample
  Kolmogorov-Smirnov statistic (``scipy.stats.ks_2samp``);
* categorical features: PSI over categories (a category missing on one side gets the share
  ``eps``; optionally rare and unseen categories are pooled into one ``OTHER`` bucket) and the
  Jensen-Shannon distance (``scipy.spatial.distance.jensenshannon`` in base 2, so in [0, 1]).

PSI = sum over bins of ``(c - r) * ln(c / r)`` where ``r`` / ``c`` are the reference / current
shares, floored at ``eps`` and renormalised so the sum stays finite. Every term is >= 0.
Conventional reading: < 0.1 stable, 0.1-0.25 moderate shift (warn), >= 0.25 major shift (fail).

Numeric binning
---------------
The interior edges are the reference quantiles at ``1/bins, ..., (bins-1)/bins`` (finite values
only), deduplicated, so ties and constant features collapse bins. A value goes to its bin with
``np.searchsorted(edges, x, side="right")``: bins are ``(-inf, e1), [e1, e2), ..., [ek, +inf)``,
so values beyond the reference range (and +-inf) fall into the outer bins.

One refinement: an edge that carries a point mass of the reference (at least ``1/(2*bins)`` of it
and at least two observations, e.g. the zeros of a zero-inflated count feature, or the single
value of a constant feature) gets a bin of its own, ``[e, e]``. Without it, a constant reference
at 0 would share its bin with every value above (or below) 0, and a shift from exact zeros to
small positive values would go unnoticed.

NaN is dropped everywhere (so is ``None`` once converted to float); an empty side gives ``nan``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

DEFAULT_BINS = 10
EPS = 1e-4  # floor for empty bin shares so PSI stays finite
OTHER = "__other__"  # label of the pooled bucket when ``max_categories`` is used

KINDS = ("numeric", "categorical", "traffic")
# "no_data": one side (usually the day) has no values at all, so nothing was compared.
SEVERITIES = ("ok", "warn", "fail", "no_data")
_SEVERITY_RANK = {"ok": 0, "no_data": 0, "warn": 1, "fail": 2}  # no_data sorts with ok (its psi is nan)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _clean(values: Any) -> np.ndarray:
    """1-d float array with NaN dropped (``None`` becomes NaN first); +-inf is kept."""
    arr = np.asarray(values, dtype=float).ravel()
    return arr[~np.isnan(arr)]


def _check_bins(bins: int) -> int:
    if isinstance(bins, bool) or int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    return int(bins)


def _check_eps(eps: float) -> float:
    if not (0.0 < eps < 1.0):
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    return float(eps)


def _psi_from_counts(ref_counts: np.ndarray, cur_counts: np.ndarray, eps: float) -> float:
    """PSI of two aligned count vectors (shares floored at eps, renormalised)."""
    ref_counts = np.asarray(ref_counts, dtype=float)
    cur_counts = np.asarray(cur_counts, dtype=float)
    ref_total, cur_total = ref_counts.sum(), cur_counts.sum()
    if ref_total <= 0 or cur_total <= 0:
        return float("nan")
    r = np.maximum(ref_counts / ref_total, eps)
    c = np.maximum(cur_counts / cur_total, eps)
    r /= r.sum()
    c /= c.sum()
    # each term has the sign of (c - r) twice, hence >= 0
    return float(max(np.sum((c - r) * np.log(c / r)), 0.0))


# ---------------------------------------------------------------------------------------------
# numeric features
# ---------------------------------------------------------------------------------------------


def quantile_bin_edges(reference: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Interior bin edges: the reference quantiles at ``i/bins`` for ``i = 1..bins-1``.

    Computed on the finite reference values (NaN and +-inf ignored), sorted and deduplicated, so
    ties / constant features collapse bins (a constant feature has one edge). Returns an empty
    array for ``bins == 1`` or when the reference has no finite value.
    """
    bins = _check_bins(bins)
    arr = np.asarray(reference, dtype=float).ravel()
    finite = arr[np.isfinite(arr)]
    if bins == 1 or finite.size == 0:
        return np.empty(0, dtype=float)
    probs = np.arange(1, bins) / bins
    with np.errstate(over="ignore", invalid="ignore"):
        edges = np.quantile(finite, probs)
    bad = ~np.isfinite(edges)
    if bad.any():  # interpolation overflowed (values near +-1.8e308): use the nearest sample
        edges[bad] = np.quantile(finite, probs[bad], method="nearest")
    return np.unique(edges)


def _atom_mask(reference: np.ndarray, edges: np.ndarray, bins: int) -> np.ndarray:
    """Edges holding a point mass of the reference (see the module docstring)."""
    if edges.size == 0 or reference.size == 0:
        return np.zeros(edges.size, dtype=bool)
    srt = np.sort(reference)
    at_edge = np.searchsorted(srt, edges, side="right") - np.searchsorted(srt, edges, side="left")
    return (at_edge >= 2) & (at_edge >= reference.size / (2.0 * bins))


def _bin_counts(values: np.ndarray, edges: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """Counts per bin: ``searchsorted(side="right")`` bins, with atom edges split off."""
    k = edges.size
    left = np.searchsorted(edges, values, side="left")
    right = np.searchsorted(edges, values, side="right")
    # fine code: 2*i = strictly between e_{i-1} and e_i, 2*i + 1 = equal to e_i
    code = left + right
    on_edge = right > left
    move = on_edge.copy()
    move[on_edge] = ~atoms[left[on_edge]]
    code[move] += 1  # a value equal to a non-atom edge belongs to the bin above it: [e_i, e_{i+1})
    counts = np.bincount(code, minlength=2 * k + 1)
    keep = np.ones(2 * k + 1, dtype=bool)
    keep[1::2] = atoms
    return counts[keep]


def numeric_psi(reference, current, bins: int = DEFAULT_BINS, eps: float = EPS) -> float:
    """PSI of ``current`` against ``reference`` on reference-quantile bins.

    NaN values are dropped; returns nan if either side is then empty. Values outside the reference
    range fall into the outer bins. Shares are floored at ``eps`` and renormalised.
    """
    bins = _check_bins(bins)
    eps = _check_eps(eps)
    ref = _clean(reference)
    cur = _clean(current)
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    edges = quantile_bin_edges(ref, bins)
    atoms = _atom_mask(ref[np.isfinite(ref)], edges, bins)
    return _psi_from_counts(_bin_counts(ref, edges, atoms), _bin_counts(cur, edges, atoms), eps)


def ks_statistic(reference, current) -> float:
    """Two-sample KS statistic (``scipy.stats.ks_2samp``), NaN dropped; nan if a side is empty."""
    ref = _clean(reference)
    cur = _clean(current)
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    # the statistic does not depend on the p-value method; "asymp" skips the slow exact p-value,
    # and warnings of the (unused) p-value computation are silenced
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ks_2samp(ref, cur, method="asymp").statistic)


# ---------------------------------------------------------------------------------------------
# categorical features
# ---------------------------------------------------------------------------------------------


def _check_counts(counts: Mapping[Hashable, float], side: str) -> dict[Hashable, float]:
    out: dict[Hashable, float] = {}
    for key, value in counts.items():
        v = float(value)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{side} count of {key!r} must be finite and >= 0, got {value!r}")
        if v > 0:  # a zero count is the same as an absent category
            out[key] = v
    return out


def align_categories(
    reference_counts: Mapping[Hashable, float],
    current_counts: Mapping[Hashable, float],
    max_categories: int | None = None,
    other_label: Hashable = OTHER,
) -> tuple[list[Hashable], np.ndarray, np.ndarray]:
    """Align two count mappings: ``(labels, reference_counts, current_counts)``.

    Without ``max_categories``: the union of the categories with a positive count on either side,
    in order of decreasing reference count (then current count, then label text), zero where a
    category is absent. With ``max_categories=k``: the k most frequent reference categories are
    kept and every other category (rare in the reference, or unseen there: out of vocabulary) is
    pooled into one ``other_label`` bucket, which is appended only if it has a positive count.
    """
    ref = _check_counts(reference_counts, "reference")
    cur = _check_counts(current_counts, "current")
    union = set(ref) | set(cur)
    order = sorted(union, key=lambda k: (-ref.get(k, 0.0), -cur.get(k, 0.0), str(k)))
    if max_categories is None:
        labels = order
        r = np.array([ref.get(k, 0.0) for k in labels], dtype=float)
        c = np.array([cur.get(k, 0.0) for k in labels], dtype=float)
        return labels, r, c
    if isinstance(max_categories, bool) or int(max_categories) != max_categories or max_categories < 1:
        raise ValueError(f"max_categories must be a positive integer or None, got {max_categories!r}")
    kept = [k for k in order if k in ref][: int(max_categories)]
    kept_set = set(kept)
    r_kept = [ref.get(k, 0.0) for k in kept]
    c_kept = [cur.get(k, 0.0) for k in kept]
    r_other = sum(v for k, v in ref.items() if k not in kept_set)
    c_other = sum(v for k, v in cur.items() if k not in kept_set)
    labels = list(kept)
    if r_other > 0 or c_other > 0:
        labels.append(other_label)
        r_kept.append(r_other)
        c_kept.append(c_other)
    return labels, np.array(r_kept, dtype=float), np.array(c_kept, dtype=float)


def categorical_psi(
    reference_counts: Mapping[Hashable, float],
    current_counts: Mapping[Hashable, float],
    eps: float = EPS,
    *,
    max_categories: int | None = None,
) -> float:
    """PSI over the union of categories; a category absent on one side gets share ``eps``.

    Counts may be floats (weights); shares are floored at ``eps`` and renormalised. nan if either
    side has no positive count. See :func:`align_categories` for ``max_categories``.
    """
    eps = _check_eps(eps)
    _, r, c = align_categories(reference_counts, current_counts, max_categories)
    return _psi_from_counts(r, c, eps)


def js_distance(
    reference_counts: Mapping[Hashable, float],
    current_counts: Mapping[Hashable, float],
    *,
    max_categories: int | None = None,
) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) over the union of categories; no eps floor.

    nan if either side has no positive count.
    """
    _, r, c = align_categories(reference_counts, current_counts, max_categories)
    if r.sum() <= 0 or c.sum() <= 0:
        return float("nan")
    with np.errstate(invalid="ignore"):
        d = float(jensenshannon(r, c, base=2))
    if math.isnan(d):  # sqrt of a divergence rounded to a tiny negative number
        d = 0.0
    return min(max(d, 0.0), 1.0)


# ---------------------------------------------------------------------------------------------
# report rows
# ---------------------------------------------------------------------------------------------


def severity(psi: float | None, warn: float = 0.1, fail: float = 0.25) -> str:
    """``"fail"`` if psi >= fail, ``"warn"`` if psi >= warn, else ``"ok"`` (nan / None -> "ok")."""
    if warn > fail:
        raise ValueError(f"warn threshold {warn} is above fail threshold {fail}")
    if psi is None or math.isnan(psi):
        return "ok"
    if psi >= fail:
        return "fail"
    if psi >= warn:
        return "warn"
    return "ok"


@dataclass
class DriftRow:
    feature: str
    kind: str  # "numeric" | "categorical" | "traffic"
    psi: float | None
    ks: float | None
    js: float | None
    value: float | None  # for traffic-level shares (e.g. share of requests from a new surface)
    n_reference: int
    n_current: int
    severity: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")


def _missing(x: float | None) -> bool:
    return x is None or math.isnan(x)


def sort_rows(rows: Iterable[DriftRow]) -> list[DriftRow]:
    """Worst first: severity, then psi descending (None / nan last), then feature name.

    For rows scored by one ``drift_rows`` call this is the same as psi descending, nan last;
    the severity key only lifts e.g. a failing ``traffic`` row (psi None) above ok PSI rows.
    """
    return sorted(
        rows,
        key=lambda r: (
            -_SEVERITY_RANK.get(r.severity, 0),
            _missing(r.psi),
            0.0 if r.psi is None or _missing(r.psi) else -float(r.psi),
            r.feature,
            r.kind,
        ),
    )


def drift_rows(
    numeric: Mapping[str, tuple[Any, Any]],
    categorical: Mapping[str, tuple[Mapping[Hashable, float], Mapping[Hashable, float]]],
    warn: float = 0.1,
    fail: float = 0.25,
    bins: int = DEFAULT_BINS,
    *,
    eps: float = EPS,
    max_categories: int | None = None,
    min_samples: int = 1,
) -> list[DriftRow]:
    """One row per feature, sorted worst first (psi descending, nan last). A feature with fewer
    than `min_samples` values (or counts) on either side gets no PSI / KS / JS and severity ok:
    three users against fifty is noise, not drift (sparse days of a ratings source). A side
    with no value at all gets severity no_data (an empty day is never reported as ok).

    ``numeric`` maps a feature to ``(reference_values, current_values)``; ``categorical`` maps a
    feature to ``(reference_counts, current_counts)``. n_reference / n_current are the non-NaN
    value counts (numeric) or the rounded count totals (categorical).
    """
    severity(float("nan"), warn, fail)  # validates the thresholds once
    rows: list[DriftRow] = []
    for feature, (reference, current) in numeric.items():
        ref, cur = _clean(reference), _clean(current)
        psi = numeric_psi(ref, cur, bins=bins, eps=eps)
        rows.append(
            DriftRow(
                feature=feature,
                kind="numeric",
                psi=psi,
                ks=ks_statistic(ref, cur),
                js=None,
                value=None,
                n_reference=int(ref.size),
                n_current=int(cur.size),
                severity=severity(psi, warn, fail),
            )
        )
    for feature, (reference_counts, current_counts) in categorical.items():
        _, r, c = align_categories(reference_counts, current_counts, max_categories)
        psi = categorical_psi(reference_counts, current_counts, eps=eps, max_categories=max_categories)
        rows.append(
            DriftRow(
                feature=feature,
                kind="categorical",
                psi=psi,
                ks=None,
                js=js_distance(reference_counts, current_counts, max_categories=max_categories),
                value=None,
                n_reference=int(round(r.sum())),
                n_current=int(round(c.sum())),
                severity=severity(psi, warn, fail),
            )
        )
    for row in rows:
        if 0 < min(row.n_reference, row.n_current) < min_samples:  # empty sides keep their nan
            row.psi = row.ks = row.js = None
            row.severity = "ok"
        elif min(row.n_reference, row.n_current) == 0:  # nothing to compare (psi nan): never "ok"
            row.severity = "no_data"
    return sort_rows(rows)


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return ""
    if math.isnan(x):
        return "nan"
    return f"{x:.{digits}f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_summary(rows: list[DriftRow], top: int | None = 15) -> str:
    """A markdown table of the ``top`` worst rows (worst first):
    feature | kind | PSI | KS | JS | n ref | n cur | severity.

    A ``value`` column is added after JS only when some shown row has a value (traffic rows).
    A line under the table tells how many rows were left out.
    """
    ordered = sort_rows(rows)
    if not ordered:
        return "_No features compared._\n"
    shown = ordered if top is None else ordered[: max(int(top), 0)]
    with_value = any(r.value is not None for r in shown)
    header = ["feature", "kind", "PSI", "KS", "JS"] + (["value"] if with_value else [])
    header += ["n ref", "n cur", "severity"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for r in shown:
        cells = [_cell(r.feature), r.kind, _fmt(r.psi), _fmt(r.ks), _fmt(r.js)]
        if with_value:
            cells.append(_fmt(r.value))
        cells += [str(r.n_reference), str(r.n_current), r.severity]
        lines.append("| " + " | ".join(cells) + " |")
    if len(shown) < len(ordered):
        lines.append("")
        lines.append(f"_{len(ordered) - len(shown)} more row(s) not shown._")
    return "\n".join(lines) + "\n"


ARROW_SCHEMA = pa.schema(
    [
        ("day", pa.string()),
        ("feature", pa.string()),
        ("kind", pa.string()),
        ("psi", pa.float64()),
        ("ks", pa.float64()),
        ("js", pa.float64()),
        ("value", pa.float64()),
        ("n_reference", pa.int64()),
        ("n_current", pa.int64()),
        ("severity", pa.string()),
    ]
)


def _nullable(x: float | None) -> float | None:
    return None if x is None or _missing(x) else float(x)


def rows_to_arrow(rows: Iterable[DriftRow], day: Any) -> pa.Table:
    """Rows (in the given order) as a table with :data:`ARROW_SCHEMA`.

    ``day`` is stored as text (a ``date`` becomes its ISO form). Metrics that are None or nan
    (not applicable, or an empty side) become nulls.
    """
    day_text = day.isoformat() if hasattr(day, "isoformat") else str(day)
    rows = list(rows)
    data = {
        "day": [day_text] * len(rows),
        "feature": [r.feature for r in rows],
        "kind": [r.kind for r in rows],
        "psi": [_nullable(r.psi) for r in rows],
        "ks": [_nullable(r.ks) for r in rows],
        "js": [_nullable(r.js) for r in rows],
        "value": [_nullable(r.value) for r in rows],
        "n_reference": [int(r.n_reference) for r in rows],
        "n_current": [int(r.n_current) for r in rows],
        "severity": [r.severity for r in rows],
    }
    return pa.Table.from_pydict(data, schema=ARROW_SCHEMA)
