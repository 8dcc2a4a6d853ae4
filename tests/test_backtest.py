"""The rolling back-test report (services/backtest.py) on constructed evaluation partitions."""

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
