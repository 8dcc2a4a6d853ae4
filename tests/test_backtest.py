"""The rolling back-test report (services/backtest.py) on constructed evaluation partitions."""

import dagster as dg
import pyarrow as pa
import pytest

from recsys_assets.services.backtest import backtest, backtest_page
from recsys_assets.services.lake import Lake
from recsys_assets.services.recall_evaluation import EVAL_SCHEMA
from recsys_assets.services.registry import REGISTRY_SCHEMA
from recsys_assets.services.tables import write_rows

# day -> {model: (ndcg@10, paired diff CI low vs popularity)}
DAYS = {
    "2026-01-02": {"popularity": (0.10, None), "a": (0.12, 0.01), "b": (0.09, -0.02)},
    "2026-01-03": {"popularity": (0.10, None), "a": (0.14, 0.02), "b": (0.13, -0.01)},
    "2026-01-04": {"popularity": (0.10, None), "a": (0.16, 0.03), "b": (0.11, 0.001)},
}
CHAMPION_DECIDED = {"2026-01-01": "b", "2026-01-02": "a", "2026-01-03": "a", "2026-01-04": "a"}


def _eval_row(day, model, value, diff_low):
    return {
        "day": day,
        "model": model,
        "segment": "all",
        "metric": "ndcg",
        "k": 10,
        "value": value,
        "ci_low": value - 0.01,
        "ci_high": value + 0.01,
        "n_users": 100,
        "lift_vs_popularity": None if model == "popularity" else value / 0.10 - 1,
        "diff_ci_low": diff_low,
        "diff_ci_high": None,
        "p_value": None,
    }


@pytest.fixture
def lake(tmp_path):
    lake = Lake(data_root=str(tmp_path))
    for day, models in DAYS.items():
        rows = [_eval_row(day, m, v, lo) for m, (v, lo) in models.items()]
        rows.append(_eval_row(day, "a", 0.5, None) | {"metric": "recall"})  # other metrics are ignored
        write_rows(rows, EVAL_SCHEMA, lake.partition_path("recall_evaluation", day))
    write_rows([], EVAL_SCHEMA, lake.partition_path("recall_evaluation", "2026-01-01"))  # an empty first day
    for day, champion in CHAMPION_DECIDED.items():
        row = {f.name: None for f in REGISTRY_SCHEMA} | {"day": day, "champion": champion, "decision": "promoted"}
        write_rows([row], pa.schema(REGISTRY_SCHEMA), lake.partition_path("recall_champion", day))
    return lake


def test_win_rates_lifts_and_trend_per_model(lake):
    summary, periods = backtest(lake, periods=14)
    assert sorted(periods["day"].unique().to_list()) == list(DAYS)  # the empty day is no period
    by = {r["model"]: r for r in summary}
    assert [r["model"] for r in summary] == ["a", "b", "popularity"]  # by mean
    a, b = by["a"], by["b"]
    assert a["periods"] == 3 and a["mean"] == pytest.approx(0.14) and a["mean_ci_width"] == pytest.approx(0.02)
    assert a["win_rate_vs_popularity"] == 1.0 and a["significant_wins_vs_popularity"] == 3
    assert a["mean_paired_lift_vs_popularity"] == pytest.approx(0.4)
    assert a["trend_per_period"] == pytest.approx(0.02)
    assert b["win_rate_vs_popularity"] == pytest.approx(2 / 3) and b["significant_wins_vs_popularity"] == 1
    # the champion serving on D is the one decided on D-1: b on the 2nd, a after; a model is not
    # compared with itself
    assert a["win_rate_vs_champion"] == 1.0 and a["mean_lift_vs_champion"] == pytest.approx(0.12 / 0.09 - 1)
    assert b["win_rate_vs_champion"] == 0.0
    assert b["mean_lift_vs_champion"] == pytest.approx(((0.13 / 0.14 - 1) + (0.11 / 0.16 - 1)) / 2)
    assert by["popularity"]["win_rate_vs_popularity"] is None


def _funnel_rows(day, values):
    """funnel_evaluation rows of `day`: {stage: (ndcg@10, paired diff CI low vs recall_only)}."""
    base = values["recall_only"][0]
    rows = []
    for stage, (value, diff_low) in values.items():
        paired = stage != "recall_only"
        rows.append(
            {
                "day": day,
                "scope": "funnel",
                "stage": stage,
                "metric": "ndcg",
                "k": 10,
                "value": value,
                "ci_low": value - 0.02,
                "ci_high": value + 0.02,
                "n": 50,
                "baseline": "recall_only" if paired else None,
                "diff": value - base if paired else None,
                "diff_ci_low": diff_low,
                "diff_ci_high": None,
                "p_value": None,
            }
        )
    rows.append(rows[0] | {"scope": "slates", "value": 0.9})  # slates and other metrics are ignored
    rows.append(rows[0] | {"metric": "recall", "value": 0.9})
    return rows


def test_the_final_lists_are_judged_against_the_recall_order_they_rerank(lake):
    from recsys_assets.services.funnel_evaluation import FUNNEL_SCHEMA

    funnel = {  # no funnel on the 2nd (no ranker yet): the final lists have two periods
        "2026-01-03": {"recall_only": (0.10, None), "recall_champion": (0.12, 0.01), "ranker": (0.15, 0.02)},
        "2026-01-04": {"recall_only": (0.10, None), "recall_champion": (0.10, None), "ranker": (0.09, -0.03)},
    }
    for day, values in funnel.items():
        values = values | {"ranker_rerank": (values["ranker"][0] - 0.01, None)}
        write_rows(_funnel_rows(day, values), FUNNEL_SCHEMA, lake.partition_path("funnel_evaluation", day))
    summary, periods = backtest(lake, periods=14)
    assert [r["model"] for r in summary] == ["a", "b", "popularity", "final:ranker", "final:ranker_rerank"]
    ranker = {r["model"]: r for r in summary}["final:ranker"]
    assert ranker["scope"] == "funnel" and ranker["periods"] == 2 and ranker["first_day"] == "2026-01-03"
    assert ranker["mean"] == pytest.approx(0.12) and ranker["mean_ci_width"] == pytest.approx(0.04)
    assert ranker["win_rate_vs_recall_only"] == 0.5 and ranker["significant_wins_vs_recall_only"] == 1
    assert ranker["mean_paired_lift_vs_recall_only"] == pytest.approx((0.5 - 0.1) / 2)
    # against the recall champion's order of the same users: 0.15 / 0.12 and 0.09 / 0.10
    assert ranker["win_rate_vs_champion"] == 0.5
    assert ranker["mean_lift_vs_champion"] == pytest.approx((0.15 / 0.12 + 0.09 / 0.10) / 2 - 1)
    assert ranker["trend_per_period"] == pytest.approx(-0.06)
    assert ranker["win_rate_vs_popularity"] is None  # popularity is not scored on the funnel's users
    assert {r["scope"] for r in summary if not r["model"].startswith("final:")} == {"recall"}
    rows = periods.filter(periods["model"] == "final:ranker").sort("day")
    assert rows["value"].to_list() == [0.15, 0.09] and rows["n_users"].to_list() == [50, 50]
    page = backtest_page(summary, periods)
    assert "<td>final:ranker</td><td>2</td><td>0.1200</td>" in page


def test_only_the_last_periods_up_to_a_day(lake):
    summary, periods = backtest(lake, periods=2, up_to="2026-01-03")
    assert sorted(periods["day"].unique().to_list()) == ["2026-01-02", "2026-01-03"]
    assert {r["model"]: r["periods"] for r in summary} == {"a": 2, "b": 2, "popularity": 2}
    nothing, no_periods = backtest(Lake(data_root=str(lake.root / "nothing")), periods=5)
    assert nothing == [] and no_periods.height == 0


def test_the_page_charts_every_period_and_states_the_win_rates(lake):
    import base64
    import re

    summary, periods = backtest(lake, periods=14)
    page = backtest_page(summary, periods)
    charts = [base64.b64decode(b) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]
    assert len(charts) == 2 and all(c.startswith(b"\x89PNG") for c in charts)
    assert "NDCG@10 per period (3 periods)" in page
    assert "<td>a</td><td>3</td><td>0.1400</td>" in page  # the summary row of the best model
    empty = backtest_page([], periods.clear())
    assert "nothing recorded" in empty and "data:image/png" not in empty


def test_a_quality_drop_of_the_serving_champion_retrains_and_retunes(lake):
    from recsys_assets import automation
    from recsys_assets.partitions import daily_partitions
    from recsys_assets.services.backtest import quality_drop
    from recsys_assets.settings import Settings
    from resources import AutomationSettings, FeatureSettings, StorageResource

    assert quality_drop(lake, window=7, share=0.2) is None  # a rises 0.12 -> 0.16: no drop
    drop_day = "2026-01-05"  # the champion serving it (decided on the 4th) is a
    rows = [_eval_row(drop_day, "popularity", 0.10, None), _eval_row(drop_day, "a", 0.10, -0.01)]
    write_rows(rows, EVAL_SCHEMA, lake.partition_path("recall_evaluation", drop_day))
    drop = quality_drop(lake, window=7, share=0.2)
    # the champion served on each day: b on the 2nd (0.09), a on the 3rd and 4th (0.14, 0.16)
    assert drop == {"day": drop_day, "champion": "a", "value": 0.10, "trailing_mean": pytest.approx(0.13)}
    assert quality_drop(lake, window=7, share=0.3) is None  # 0.10 is not 30% below 0.13

    # the sensor: every feature day already trained, no drift report: only the drop asks
    (lake.lake_dir / "user_features").mkdir(parents=True)
    for day in ("2026-01-04", drop_day):
        (lake.lake_dir / "user_features" / f"{day}.parquet").touch()
    sensor = automation.build(daily_partitions(Settings().start_date), Settings())[2][1]
    resources = {
        "storage": StorageResource(data_root=str(lake.root)),
        "features": FeatureSettings(),
        "automation": AutomationSettings(retrain_min_interval_hours=0.0),
    }
    cursor = '{"trained": ["2026-01-04", "2026-01-05"]}'
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        result = sensor(context)
    (request,) = result.run_requests
    assert request.partition_key == drop_day and request.tags["trigger"] == "quality_drop"
    with dg.build_sensor_context(cursor=result.cursor, resources=resources) as context:
        again = sensor(context)
    assert again.run_requests == [] and "no quality drop" in str(again.skip_reason)  # handled once
