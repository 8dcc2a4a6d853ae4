"""The rolling back-test: the daily partitions are a rolling-origin evaluation already (the
models of D train on the days before D and are tested on D); this reads the last N evaluated
periods back and says, per model, how often and by how much it beat popularity and the
serving champion, and where it is heading; and, for the final lists of the funnel (ranker,
ranker + re-rank), how often and by how much they beat the recall order they re-rank."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from recsys_assets.core.storage import read_polars
from recsys_assets.services.daily_report import bar_chart, html_page, html_table, trend_chart
from recsys_assets.services.days import days_before
from recsys_assets.services.lake import Lake

BACKTEST_SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        # recall: a recall model on every test user of D (recall_evaluation); funnel: a final list
        # on the test users with recall candidates (funnel_evaluation), named final:<stage>
        ("scope", pa.string()),
        ("metric", pa.string()),
        ("k", pa.int64()),
        ("periods", pa.int64()),
        ("first_day", pa.string()),
        ("last_day", pa.string()),
        ("mean", pa.float64()),
        ("mean_ci_width", pa.float64()),
        ("win_rate_vs_popularity", pa.float64()),
        ("significant_wins_vs_popularity", pa.int64()),
        ("mean_paired_lift_vs_popularity", pa.float64()),
        ("win_rate_vs_champion", pa.float64()),
        ("mean_lift_vs_champion", pa.float64()),
        ("trend_per_period", pa.float64()),
        # funnel rows: over the recall-only order of the same users (the fusion the ranker re-ranks)
        ("win_rate_vs_recall_only", pa.float64()),
        ("significant_wins_vs_recall_only", pa.int64()),
        ("mean_paired_lift_vs_recall_only", pa.float64()),
    ]
)
# funnel_evaluation's stages that are lists users get (the others are its baselines)
FINAL_STAGES = ("ranker", "ranker_rerank")


def evaluated_days(lake: Lake, up_to: str | None = None) -> list[str]:
    """Days with a recall_evaluation partition that holds rows, oldest first (at most `up_to`)."""
    folder = lake.lake_dir / "recall_evaluation"
    if not folder.exists():
        return []
    days = sorted(p.stem for p in folder.glob("*.parquet"))
    days = [d for d in days if up_to is None or d <= up_to]
    return [d for d in days if read_polars(lake.partition_path("recall_evaluation", d)).height > 0]


def per_period(lake: Lake, days: list[str], metric: str = "ndcg", k: int = 10) -> pl.DataFrame:
    """One row per (day, model): the metric with its CI and paired lift over popularity, and the
    recall champion serving on the day: the one decided the day before (recall_champion of D
    is chosen on D's own evaluation, so it would win its own day by construction); null when
    none served."""
    frames = []
    for day in days:
        rows = read_polars(lake.partition_path("recall_evaluation", day)).filter(
            (pl.col("segment") == "all") & (pl.col("metric") == metric) & (pl.col("k") == k)
        )
        champion_path = lake.partition_path("recall_champion", days_before(day, 1)[0])
        champion = read_polars(champion_path)["champion"][0] if champion_path.exists() else None
        frames.append(
            rows.select(
                pl.lit(day).alias("day"),
                "model",
                "value",
                "ci_low",
                "ci_high",
                "lift_vs_popularity",
                "diff_ci_low",
                "n_users",
                pl.lit(champion, pl.String).alias("champion"),
            )
        )
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames).sort("day", "model")


def _shared_stats(model: str, scope: str, g: pl.DataFrame, vs_champ: pl.DataFrame, metric: str, k: int) -> dict:
    """What every back-test row holds, whatever its baseline: the periods, mean, mean CI width,
    win rate and mean lift over the champion's value on the same day (`vs_champ`: value, champ)
    and the trend (least-squares slope of the metric per period)."""
    values = g["value"].to_numpy()
    width = (g["ci_high"] - g["ci_low"]).drop_nulls().to_numpy()
    champ_ratio = vs_champ["value"].to_numpy() / vs_champ["champ"].to_numpy()
    return {
        "model": model,
        "scope": scope,
        "metric": metric,
        "k": k,
        "periods": g.height,
        "first_day": g["day"][0],
        "last_day": g["day"][-1],
        "mean": float(values.mean()),
        "mean_ci_width": float(width.mean()) if width.size else None,
        "win_rate_vs_champion": float(np.mean(champ_ratio > 1.0)) if champ_ratio.size else None,
        "mean_lift_vs_champion": float(np.mean(champ_ratio - 1.0)) if champ_ratio.size else None,
        "trend_per_period": (
            float(np.polyfit(np.arange(len(values), dtype=np.float64), values, 1)[0]) if len(values) >= 2 else None
        ),
    }


def summarize(periods: pl.DataFrame, metric: str = "ndcg", k: int = 10) -> list[dict]:
    """Per model over the periods: mean, mean CI width, win rate and significant wins (paired
    CI above 0) over popularity, mean paired lift over popularity, win rate and mean lift over
    the day's serving champion (unpaired: its mean on the same day's users), and the trend
    (least-squares slope of the metric per period)."""
    if periods.height == 0:
        return []
    popularity = periods.filter(pl.col("model") == "popularity").select("day", pl.col("value").alias("pop"))
    champions = periods.filter(pl.col("model") == pl.col("champion")).select("day", pl.col("value").alias("champ"))
    frame = periods.join(popularity, on="day", how="left").join(champions, on="day", how="left")
    out = []
    for (model,), g in frame.sort("day").group_by("model", maintain_order=True):
        others = g.filter(pl.col("model") != "popularity")
        vs_pop = g.filter(pl.col("pop").is_not_null() & (pl.col("model") != "popularity"))
        vs_champ = g.filter(pl.col("champ").is_not_null() & (pl.col("model") != pl.col("champion")))
        lifts = others["lift_vs_popularity"].drop_nulls().to_numpy()
        out.append(
            _shared_stats(model, "recall", g, vs_champ, metric, k)
            | {
                "win_rate_vs_popularity": (
                    float(np.mean(vs_pop["value"].to_numpy() > vs_pop["pop"].to_numpy())) if vs_pop.height else None
                ),
                "significant_wins_vs_popularity": int((others["diff_ci_low"].fill_null(0).to_numpy() > 0).sum()),
                "mean_paired_lift_vs_popularity": float(lifts.mean()) if lifts.size else None,
                "win_rate_vs_recall_only": None,
                "significant_wins_vs_recall_only": None,
                "mean_paired_lift_vs_recall_only": None,
            }
        )
    return sorted(out, key=lambda r: -r["mean"])


def funnel_per_period(lake: Lake, days: list[str], metric: str = "ndcg", k: int = 10) -> pl.DataFrame:
    """One row per (day, final list) of the days with a funnel_evaluation: the metric with its
    CI, the paired difference over the recall-only order of the same users, and the value of
    the recall champion's order on them (the champion decided the day before)."""
    frames = []
    for day in days:
        path = lake.partition_path("funnel_evaluation", day)
        if not path.exists():
            continue
        rows = read_polars(path).filter(
            (pl.col("scope") == "funnel") & (pl.col("metric") == metric) & (pl.col("k") == k)
        )
        champion = rows.filter(pl.col("stage") == "recall_champion")["value"]
        final = rows.filter(pl.col("stage").is_in(FINAL_STAGES))
        if final.height == 0:
            continue
        frames.append(
            final.select(
                pl.lit(day).alias("day"),
                (pl.lit("final:") + pl.col("stage")).alias("model"),
                "value",
                "ci_low",
                "ci_high",
                "diff",
                "diff_ci_low",
                pl.col("n").alias("n_users"),
                pl.lit(champion[0] if champion.len() else None, pl.Float64).alias("champ"),
            )
        )
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames).sort("day", "model")


def summarize_funnel(periods: pl.DataFrame, metric: str = "ndcg", k: int = 10) -> list[dict]:
    """Per final list over the periods: mean, mean CI width, win rate, significant wins (paired
    CI above 0) and mean paired lift over the recall-only order, win rate and mean lift over the
    recall champion's order on the same users, and the trend."""
    out: list[dict] = []
    if periods.height == 0:
        return out
    for (model,), g in periods.sort("day").group_by("model", maintain_order=True):
        diff = g["diff"].to_numpy()
        base = g["value"].to_numpy() - diff  # the recall-only order's value on the same users
        paired = base > 0
        vs_champ = g.filter(pl.col("champ").is_not_null() & (pl.col("champ") > 0))
        out.append(
            _shared_stats(model, "funnel", g, vs_champ, metric, k)
            | {
                "win_rate_vs_popularity": None,
                "significant_wins_vs_popularity": None,
                "mean_paired_lift_vs_popularity": None,
                "win_rate_vs_recall_only": float(np.mean(diff > 0)),
                "significant_wins_vs_recall_only": int((g["diff_ci_low"].fill_null(0).to_numpy() > 0).sum()),
                "mean_paired_lift_vs_recall_only": float(np.mean(diff[paired] / base[paired]))
                if paired.any()
                else None,
            }
        )
    return sorted(out, key=lambda r: -r["mean"])


def backtest(lake: Lake, periods: int, up_to: str | None = None, metric: str = "ndcg", k: int = 10):
    """(summary rows, per-period frame) over the last `periods` evaluated days (<= up_to): the
    recall models' rows, then the final lists' rows of the days that have a funnel."""
    days = evaluated_days(lake, up_to)[-periods:]
    table = per_period(lake, days, metric, k)
    final = funnel_per_period(lake, days, metric, k)
    summary = summarize(table, metric, k) + summarize_funnel(final, metric, k)
    if final.height:
        table = pl.concat(
            [table, final.select("day", "model", "value", "ci_low", "ci_high", "n_users")], how="diagonal"
        )
    return summary, table


def backtest_page(summary: list[dict], periods: pl.DataFrame, show: int = 8) -> str:
    """The back-test as a page: NDCG@10 per period of the final lists and the best recall models,
    `show` in all (the best with its 95% CI band), win rates over popularity, the serving
    champion and the recall-only order, and the summary."""
    final = [r["model"] for r in summary if r["scope"] == "funnel"]
    recall = [r["model"] for r in summary if r["scope"] == "recall"]
    shown = set(final[:show] + recall[: max(show - len(final), 0)])
    best = [r["model"] for r in sorted(summary, key=lambda r: -r["mean"]) if r["model"] in shown]
    lines = (
        periods.filter(pl.col("model").is_in(best))
        .select(pl.col("model").alias("series"), "day", "value", "ci_low", "ci_high")
        .to_dicts()
        if periods.height
        else []
    )
    wins = [
        {
            # a final list's champion is the recall champion's order of the same users
            "name": f"{r['model']} vs {'recall champion order' if r['scope'] == 'funnel' and against == 'champion' else against}",
            "value": r[key],
            "ci_low": None,
            "ci_high": None,
        }
        for r in summary
        for against, key in (
            ("popularity", "win_rate_vs_popularity"),
            ("champion", "win_rate_vs_champion"),
            ("recall-only order", "win_rate_vs_recall_only"),
        )
        if r[key] is not None
    ]
    n = periods["day"].n_unique() if periods.height else 0
    sections = [
        (
            f"NDCG@10 per period ({n} periods)",
            trend_chart(
                lines, "NDCG@10 per evaluated day (band: 95% CI of the best)", "NDCG@10", best[0] if best else None
            ),
            "",
        ),
        ("Win rates", bar_chart(wins, "Share of periods won", "win rate"), ""),
        (
            "Summary",
            None,
            html_table(
                summary,
                [
                    "model",
                    "periods",
                    "mean",
                    "mean_ci_width",
                    "win_rate_vs_popularity",
                    "significant_wins_vs_popularity",
                    "mean_paired_lift_vs_popularity",
                    "win_rate_vs_champion",
                    "mean_lift_vs_champion",
                    "trend_per_period",
                    "win_rate_vs_recall_only",
                    "significant_wins_vs_recall_only",
                    "mean_paired_lift_vs_recall_only",
                ],
            ),
        ),
    ]
    return html_page("Rolling back-test", sections)


def quality_drop(lake: Lake, window: int, share: float) -> dict | None:
    """The serving champion's NDCG@10 on the latest evaluated day, when it fell more than `share`
    below its mean over the `window` evaluated days before (else None): a reason to retrain and
    re-tune before the schedule would."""
    days = evaluated_days(lake)[-(window + 1) :]
    if len(days) < 3:
        return None
    periods = per_period(lake, days)
    served = periods.filter(pl.col("model") == pl.col("champion")).sort("day")
    if served.height < 3 or served["day"][-1] != days[-1]:
        return None
    values = served["value"].to_numpy().astype(np.float64)
    latest, before = float(values[-1]), float(values[:-1].mean())
    if not before > 0 or latest >= (1.0 - share) * before:
        return None
    return {"day": days[-1], "champion": served["champion"][-1], "value": latest, "trailing_mean": before}
