"""The README's main command: generate, materialize everything, leave a queryable catalog
and runs recorded in DAGSTER_HOME."""

import dagster as dg
import duckdb
import pytest

from recsys_assets import quickstart

pytestmark = pytest.mark.slow  # the quickstart end to end


def test_quickstart_materializes_everything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert quickstart.main(["--data-root", str(tmp_path / "data"), "--days", "2", "--impressions-per-day", "5000"]) == 0

    con = duckdb.connect(str(tmp_path / "data/warehouse.duckdb"), read_only=True)
    counts = dict(
        con.execute(
            "SELECT 'imp', count(*) FROM raw_impressions UNION ALL "
            "SELECT 'days', count(DISTINCT CAST(timezone('UTC', shown_at) AS DATE)) FROM raw_impressions"
        ).fetchall()
    )
    assert counts == {"imp": 10_000, "days": 2}
    views = {v for (v,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert {
        "interactions",
        "user_features",
        "item_features",
        "user_sequences",
        "user_id_dictionary",
        "item_id_dictionary",
        "hash_dictionaries",
        "feature_drift_report",
        "quarantine",
    } <= views
    assert con.execute("SELECT count(*) FROM user_features WHERE day = DATE '2026-01-02'").fetchone()[0] > 0
    out = capsys.readouterr().out
    assert "raw_watch_stats" in out and "dagster dev" in out
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        runs = instance.get_runs()
        # snapshots, daily range, dictionaries, models, then the unpartitioned back-test over them
        assert len(runs) == 5 and all(r.is_success for r in runs)


def test_model_days_default_to_a_full_ranker_on_synthetic_data_and_stay_few_on_a_real_source():
    """The synthetic quickstart's last ranker gets the sample days its settings ask for (train_days
    + valid_days before it); a real source, each of whose model days trains on its whole history,
    keeps 4; --model-days wins over both."""
    from argparse import Namespace

    from recsys_assets.settings import RankingConfig

    ranking = RankingConfig()
    synthetic = quickstart.model_days(Namespace(model_days=None, source="synthetic"))
    assert synthetic >= ranking.train_days + ranking.valid_days + 1
    assert quickstart.model_days(Namespace(model_days=None, source="movielens")) == 4
    assert quickstart.model_days(Namespace(model_days=2, source="synthetic")) == 2
