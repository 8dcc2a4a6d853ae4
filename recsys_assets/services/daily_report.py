"""The daily report: one self-contained HTML page per day that a person would rather look at than
read — the day's evaluation with CIs, the trend over the weeks before it, drift, the champion
decisions and a sample of recommendations with titles. Charts are matplotlib PNGs embedded in
the page, so it opens offline, from the asset page's link or as a file."""

from __future__ import annotations

import base64
import html
import io
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import matplotlib

matplotlib.use("Agg")  # files only: no display on a server
import matplotlib.pyplot as plt  # noqa: E402

from recsys_assets.services.explain import item_titles, plain_reason  # noqa: E402
from recsys_assets.services.lake import Lake  # noqa: E402


def _days_back(day: str, n: int) -> list[str]:
    end = date.fromisoformat(day)
    return [(end - timedelta(days=i)).isoformat() for i in range(n - 1, -1, -1)]


def _read(lake: Lake, table: str, days: list[str], sql: str) -> list[dict[str, Any]]:
    """`sql` over the table's partitions of `days` that exist (as `t`); no partition: no rows."""
    paths = [str(p) for p in lake.existing_partitions(table, days)]
    if not paths:
        return []
    con = duckdb.connect()
    try:
        result = con.execute(sql.replace("{t}", "read_parquet($paths, union_by_name = true)"), {"paths": paths})
        columns = [c[0] for c in result.description]
        return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]
    finally:
        con.close()


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def html_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "<p class='none'>nothing recorded</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def html_page(heading: str, sections: list[tuple[str, str | None, str]]) -> str:
    """A self-contained page: per section a title, an optional chart (PNG data URI) and HTML."""
    body = "".join(
        f"<section><h2>{html.escape(title)}</h2>"
        + (f"<img alt='{html.escape(title)}' src='{chart}'>" if chart else "")
        + (extra or ("" if chart else "<p class='none'>nothing recorded</p>"))
        + "</section>"
        for title, chart, extra in sections
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(heading)}</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:.5em 0}"
        "td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f3f3f3}"
        "img{max-width:100%}.none{color:#888}section{margin-bottom:2em}"
        f"</style></head><body><h1>{html.escape(heading)}</h1>{body}</body></html>"
    )


def write_page(lake: Lake, report: str, key: str, page: str) -> Path:
    """Publish a page whole (written aside, then renamed) at reports/<report>/<key>.html."""
    path = lake.report_path(report, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(path)
    return path


def trend_chart(rows: list[dict[str, Any]], title: str, ylabel: str, highlight: str | None = None) -> str | None:
    """One line per series (`series`, `day`, `value`, optional `ci_low`/`ci_high` band)."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.set_prop_cycle(color=[plt.get_cmap("tab20")(i) for i in range(20)])  # a dozen models, each its own colour
    for name in sorted({r["series"] for r in rows}):
        points = sorted((r for r in rows if r["series"] == name), key=lambda r: str(r["day"]))
        xs = [str(r["day"])[5:10] for r in points]
        ys = [r["value"] for r in points]
        bold = name == highlight
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=2.4 if bold else 1.2, label=name)
        if points and points[0].get("ci_low") is not None and bold:
            ax.fill_between(xs, [r["ci_low"] for r in points], [r["ci_high"] for r in points], alpha=0.2)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _png(fig)


def bar_chart(rows: list[dict[str, Any]], title: str, xlabel: str) -> str | None:
    """Horizontal bars with 95% CI whiskers (`name`, `value`, `ci_low`, `ci_high`)."""
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r["value"])
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.2))
    values = [r["value"] for r in rows]
    low = [max(r["value"] - (r["ci_low"] if r["ci_low"] is not None else r["value"]), 0) for r in rows]
    high = [max((r["ci_high"] if r["ci_high"] is not None else r["value"]) - r["value"], 0) for r in rows]
    ax.barh([r["name"] for r in rows], values, xerr=[low, high], capsize=3, color="#4c78a8")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def build_report(lake: Lake, day: str, trend_days: int = 28, sample_users: int = 5) -> tuple[str, dict[str, Any]]:
    """The HTML page of `day` and a summary of what it shows (for the asset's metadata)."""
    window = _days_back(day, trend_days)
    today = [day]
    recall_today = _read(
        lake,
        "recall_evaluation",
        today,
        "SELECT model AS name, value, ci_low, ci_high, n_users FROM {t} "
        "WHERE segment = 'all' AND metric = 'ndcg' AND k = 10",
    )
    recall_trend = _read(
        lake,
        "recall_evaluation",
        window,
        "SELECT model AS series, CAST(day AS VARCHAR) AS day, value, ci_low, ci_high FROM {t} "
        "WHERE segment = 'all' AND metric = 'ndcg' AND k = 10",
    )
    funnel_today = _read(
        lake,
        "funnel_evaluation",
        today,
        "SELECT scope || ' / ' || stage || ' ' || metric AS name, value, ci_low, ci_high, baseline, diff, "
        "diff_ci_low, diff_ci_high FROM {t} WHERE metric IN ('ndcg', 'mrr') AND scope IN ('funnel', 'slates')",
    )
    drift_trend = _read(
        lake,
        "feature_drift_report",
        window,
        "SELECT 'worst PSI' AS series, CAST(day AS VARCHAR) AS day, max(psi) FILTER (WHERE isfinite(psi)) AS value "
        "FROM {t} GROUP BY day",
    )
    drift_trend = [r for r in drift_trend if r["value"] is not None]
    drift_today = _read(
        lake,
        "feature_drift_report",
        today,
        "SELECT feature, kind, psi, ks, js, severity FROM {t} WHERE psi IS NOT NULL ORDER BY psi DESC LIMIT 8",
    )
    recall_decisions = _read(
        lake,
        "recall_champion",
        window[-7:],
        "SELECT CAST(day AS VARCHAR) AS day, decision, champion, candidate, candidate_value, incumbent_value, reason "
        "FROM {t} ORDER BY day DESC",
    )
    ranker_decisions = _read(
        lake,
        "ranker_champion",
        window[-7:],
        "SELECT CAST(day AS VARCHAR) AS day, decision, champion_day, candidate_value, recall_only_value, reason "
        "FROM {t} ORDER BY day DESC",
    )
    sample = _recommendation_sample(lake, day, sample_users)

    champion = next((r["champion"] for r in recall_decisions if r["day"] == day), None)
    charts = {
        "recall_today": bar_chart(recall_today, f"Recall NDCG@10 on {day} (95% CI)", "NDCG@10"),
        "recall_trend": trend_chart(
            recall_trend, f"Recall NDCG@10, last {trend_days} days", "NDCG@10", highlight=champion
        ),
        "funnel_today": bar_chart(
            [r for r in funnel_today if r["value"] is not None], f"Funnel on {day} (95% CI)", "value"
        ),
        "drift_trend": trend_chart(drift_trend, "Worst feature PSI per day (warn 0.1, fail 0.25)", "PSI"),
    }
    sections = [
        ("Recall models on the day", charts["recall_today"], ""),
        ("Trend", charts["recall_trend"], ""),
        (
            "Ranking funnel",
            charts["funnel_today"],
            html_table(
                funnel_today, ["name", "value", "ci_low", "ci_high", "baseline", "diff", "diff_ci_low", "diff_ci_high"]
            ),
        ),
        (
            "Drift",
            charts["drift_trend"],
            html_table(drift_today, ["feature", "kind", "psi", "ks", "js", "severity"]),
        ),
        (
            "Champion decisions (last 7 days)",
            None,
            "<h3>recall</h3>"
            + html_table(
                recall_decisions,
                ["day", "decision", "champion", "candidate", "candidate_value", "incumbent_value", "reason"],
            )
            + "<h3>ranker</h3>"
            + html_table(
                ranker_decisions,
                ["day", "decision", "champion_day", "candidate_value", "recall_only_value", "reason"],
            ),
        ),
        (
            "Recommendations (a sample of users)",
            None,
            html_table(sample, ["user_id", "rank", "title", "genres", "score", "why"]),
        ),
    ]
    page = html_page(f"Daily report {day}", sections)
    summary = {
        "charts": sum(1 for c in charts.values() if c),
        "recall_models": len(recall_today),
        "champion": champion or "none",
        "sampled_users": len({r["user_id"] for r in sample}),
    }
    return page, summary


def write_report(lake: Lake, day: str, trend_days: int = 28) -> tuple[Path, dict[str, Any]]:
    """Build the page of `day` and publish it whole (written aside, then renamed)."""
    page, summary = build_report(lake, day, trend_days)
    return write_page(lake, "daily_report", day, page), summary


def _recommendation_sample(lake: Lake, day: str, users: int) -> list[dict[str, Any]]:
    """The top 5 of the first `users` users (by id) with titles, genres and a plain reason."""
    rows = _read(
        lake,
        "recommendations",
        [day],
        f"SELECT user_id, rank, item_id, score, channels, because_you_watched FROM {{t}} "
        f"WHERE user_id IN (SELECT DISTINCT user_id FROM {{t}} ORDER BY user_id LIMIT {int(users)}) AND rank <= 5 "
        "ORDER BY user_id, rank",
    )
    titles = item_titles(lake)
    for r in rows:
        r["title"], r["genres"] = titles.get(r["item_id"], (f"item {r['item_id']}", []))
        r["why"] = plain_reason(r.get("because_you_watched"), r.get("channels"), titles, r["item_id"])
    return rows
