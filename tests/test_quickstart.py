"""The README's main command: generate, materialize everything, leave a queryable catalog
and runs recorded in DAGSTER_HOME."""

import duckdb
import dagster as dg

from recsys_assets import quickstart


def test_quickstart_materializes_everything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert quickstart.main(["--data-root", str(tmp_path / "data"), "--days", "2", "--impressions-per-day", "5000"]) == 0

    con = duckdb.connect(str(tmp_path / "data/warehouse.duckdb"), read_only=True)
    counts = dict(con.execute("SELECT 'imp', count(*) FROM raw_impressions UNION ALL "
                              "SELECT 'days', count(DISTINCT CAST(timezone('UTC', shown_at) AS DATE)) FROM raw_impressions").fetchall())
    assert counts == {"imp": 10_000, "days": 2}
    out = capsys.readouterr().out
    assert "raw_watch_stats" in out and "dagster dev" in out
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and all(r.is_success for r in runs)
