"""A fresh DAGSTER_HOME prepared once (recsys_assets/instance.py) takes parallel CLI runs: the
storage is created by one process under a lock, never by two racing runs."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from recsys_assets.core.generator import GeneratorConfig, generate
from recsys_assets.instance import prepare_dagster_home

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def test_a_prepared_home_has_its_storage_and_run_monitoring(tmp_path):
    """Preparing twice at once: one creates the storage, the other finds it ready."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen([sys.executable, "-m", "recsys_assets.instance", "--home", str(tmp_path / "home")], env=env)
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    home = tmp_path / "home"
    assert (home / "history/runs.db").exists() and (home / "schedules/schedules.db").exists()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled and instance.get_runs() == []
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # an operator's own file is kept
    prepare_dagster_home(home)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


@pytest.mark.slow
def test_overlapping_range_runs_on_fresh_homes_five_times(tmp_path):
    """Fresh homes, each prepared once, then two overlapping range runs: one after the other on
    the first home (the reference), launched at once on five more. Every run succeeds, every
    home stays usable, and the lake holds the reference's bytes after every trial."""
    data_root = tmp_path / "data"
    generate(GeneratorConfig(n_users=60, n_items=50, days=3, impressions_per_day=300, seed=2), data_root)
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    hashes = []
    for trial in range(6):
        home = prepare_dagster_home(tmp_path / f"home{trial}")
        env = dict(os.environ, DAGSTER_HOME=str(home), RECSYS_DATA_ROOT=str(data_root), PYTHONPATH=str(ROOT))
        env.pop("RECSYS_LANDING_ROOT", None)

        def cli(*args, env=env):
            return subprocess.Popen(
                [
                    DAGSTER,
                    "asset",
                    "materialize",
                    "-m",
                    "recsys_assets.definitions",
                    *args,  # steps in the run's process: the default executor (Settings.executor)
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )

        if trial == 0:
            snapshots = cli("--select", "group:raw_snapshots")
            out = snapshots.communicate(timeout=300)[0]  # read as it runs: a full pipe would block it
            assert snapshots.returncode == 0, out[-2000:]
        ranges = [f"{days[0]}...{days[1]}", f"{days[0]}...{days[2]}"]
        if trial == 0:  # the sequential reference: one run after the other
            runs, outputs = [], []
            for rng in ranges:
                runs.append(cli("--select", "raw_impressions", "--partition-range", rng))
                outputs.append(runs[-1].communicate(timeout=600)[0])
        else:  # launched at once
            runs = [cli("--select", "raw_impressions", "--partition-range", rng) for rng in ranges]
            outputs = [run.communicate(timeout=600)[0] for run in runs]
        for run, out in zip(runs, outputs, strict=True):
            assert run.returncode == 0 and "RUN_SUCCESS" in out, out[-3000:]
        with dg.DagsterInstance.from_config(str(home)) as instance:  # still usable
            recorded = instance.get_runs()
            assert len(recorded) == 2 + (trial == 0)
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in recorded)
        lake = data_root / "lake/raw_impressions"
        hashes.append({p.name: p.read_bytes() for p in sorted(lake.glob("*.parquet"))})
        assert sorted(hashes[-1]) == [f"{d}.parquet" for d in days]
    assert all(h == hashes[0] for h in hashes)
