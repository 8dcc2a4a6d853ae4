"""Overlapping partition ranges materialized by parallel CLI runs on one DAGSTER_HOME and one
data root finish without lock errors and leave exactly the files a sequential run writes:
the proof behind "a backfill of many days with parallel runs completes without lock errors"
(one atomic Parquet file per partition, no shared DuckDB database; docs/architecture.md)."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from recsys_assets.core.generator import GeneratorConfig, generate
from recsys_assets.definitions import build_defs, build_resources
from recsys_assets.instance import prepare_dagster_home

pytestmark = pytest.mark.slow  # parallel `dagster asset materialize` processes over a multi-day world

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
CONFIG = GeneratorConfig(n_users=200, n_items=150, days=5, impressions_per_day=2_000, seed=11)
DAYS = [f"2026-01-0{i}" for i in range(1, 6)]
SELECT = "group:raw,group:features"
# Overlapping ranges, launched together. Each starts where its feature windows are complete
# or are built in the same run, as a backfill launches them (a partial range that needs
# earlier days would wait for them).
PARALLEL_RUNS = [
    (SELECT, "2026-01-01...2026-01-05"),
    (SELECT, "2026-01-01...2026-01-04"),
    ("group:raw", "2026-01-02...2026-01-05"),
]
# Each run executes its steps in its one process, one after the other (a per-step process
# costs seconds of imports on 2 cores); the runs are separate processes in parallel.


def lake_hashes(data_root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(data_root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((data_root / "lake").rglob("*.parquet"))
        if not p.name.startswith(".")
    }


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sequential")
    generate(CONFIG, root)
    defs = build_defs(resources=build_resources(str(root)))
    job, graph = defs.resolve_implicit_global_asset_job_def(), defs.resolve_asset_graph()
    instance = dg.DagsterInstance.ephemeral()
    snapshots = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "raw_snapshots"]
    assert job.execute_in_process(instance=instance, asset_selection=snapshots).success
    features = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name in ("raw", "features")]
    assert job.execute_in_process(
        instance=instance,
        asset_selection=features,
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]},
    ).success
    return root


def _cli(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [DAGSTER, "asset", "materialize", "-m", "recsys_assets.definitions", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_overlapping_parallel_ranges_match_a_sequential_run(sequential, tmp_path):
    data_root, home = tmp_path / "data", tmp_path / "dagster_home"
    generate(CONFIG, data_root)
    prepare_dagster_home(home)  # the storage exists before any run (recsys_assets/instance.py)
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        RECSYS_DATA_ROOT=str(data_root),
        PYTHONPATH=str(ROOT),
        DAGSTER_DISABLE_TELEMETRY="1",
    )
    env.pop("RECSYS_LANDING_ROOT", None)
    first = _cli(["--select", "group:raw_snapshots"], env)  # in-process steps: the default executor
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]

    runs = [_cli(["--select", select, "--partition-range", rng], env) for select, rng in PARALLEL_RUNS]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for (select, rng), run, out in zip(PARALLEL_RUNS, runs, outputs, strict=False):
        assert run.returncode == 0, f"{select} {rng}:\n{out[-3000:]}"
        assert "lock" not in out.lower(), f"{select} {rng}:\n{out[-3000:]}"
        assert "RUN_SUCCESS" in out

    parallel = lake_hashes(data_root)
    expected = lake_hashes(sequential)
    assert any(k.startswith("lake/user_features/") for k in expected) and len(expected) > 40
    assert sorted(parallel) == sorted(expected)
    assert [k for k in expected if parallel[k] != expected[k]] == []  # byte-identical partitions
    assert not list((data_root / "lake").rglob(".*tmp-*"))  # no temporary file left behind

    with dg.DagsterInstance.from_config(str(home)) as instance:
        for asset in ("raw_impressions", "user_features"):
            assert set(instance.get_materialized_partitions(dg.AssetKey(asset))) == set(DAYS), asset
        runs_recorded = instance.get_runs()
        assert len(runs_recorded) == 1 + len(PARALLEL_RUNS)
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs_recorded)
