"""The same asset graph on Celery workers with its data root on S3-compatible storage.

Starts, on 127.0.0.1: an S3 server (moto), a Redis broker and two Celery workers, all in
empty working folders. Materializes raw -> features -> dictionaries -> recall models ->
evaluation and candidates with `dagster asset materialize` and RECSYS_EXECUTOR=celery,
RECSYS_DATA_ROOT=s3://..., then runs the same phases in this process (in_process executor)
with a local data root and asserts every table and model is equal. A step that wrote to local disk
instead of the bucket leaves a missing partition in the bucket or a file in a working
folder, and fails the test; so does a step that ran outside the workers.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import pytest

from recsys_assets.core.generator import GeneratorConfig, generate

pytestmark = pytest.mark.slow  # a Redis broker, a moto S3 server and Celery workers over a multi-day world

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAYS = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
MODEL_DAYS = DAYS[-1:]  # the partition of the model layers (trained on the three days before it)
BUCKET = "recsys-test"
RECALL = [
    "recall_popularity",
    "recall_item_cf",
    "recall_als",
    "recall_bpr",
    "recall_bpr_uniform",
    "recall_bpr_impressions",
    "recall_ease",
    "recall_content",
    "recall_evaluation",
    "recall_champion",
    "recall_candidates",
    "recall_ann_index",
]
PHASES = [  # (assets, partition range or None): the CLI cannot mix partitioned and unpartitioned assets in a run
    (["raw_users", "raw_items"], None),
    (
        [
            "raw_impressions",
            "raw_events",
            "raw_watch_stats",
            "interactions",
            "user_daily_stats",
            "item_daily_stats",
            "user_genre_daily",
            "categorical_daily_counts",
            "user_features",
            "item_features",
            "user_sequences",
            "feature_drift_report",
        ],
        (DAYS[0], DAYS[-1]),
    ),
    (["user_id_dictionary", "item_id_dictionary", "hash_dictionaries"], None),
    (RECALL, (MODEL_DAYS[0], MODEL_DAYS[-1])),
]
# Columns that measure the run rather than the data (wall-clock time, when it ran).
VOLATILE_COLUMNS = {"train_seconds", "decided_at", "created_at", "built_at", "seconds", "latency_ms"}
VOLATILE_METRICS = ("latency_ms_per_user",)
GENERATOR_ARGS = [
    "--users",
    "300",
    "--items",
    "200",
    "--days",
    str(len(DAYS)),
    "--impressions-per-day",
    "3000",
    "--seed",
    "5",
    "--start",
    DAYS[0],
]
REQUIRED = os.getenv("RECSYS_REQUIRE_DISTRIBUTED_TEST") == "1"  # .ci/run: skipping is a failure there


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{proc.args[:3]} did not listen on {port} within {timeout}s: {log.read_text()[-2000:]}")


class Services:
    """Processes started in their own process groups; all are stopped on exit, SIGKILL after 15 s."""

    def __init__(self, logs: Path):
        self.logs, self.procs = logs, []

    def start(self, name: str, cmd: list[str], env: dict, cwd: Path) -> subprocess.Popen:
        log = self.logs / f"{name}.log"
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=open(log, "w"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@contextmanager
def services(logs: Path):
    group = Services(logs)
    try:
        yield group
    finally:
        group.stop()


def _materialize(env: dict, cwd: Path) -> None:
    """Run every phase with the CLI, as a user would."""
    for assets, days in PHASES:
        cmd = [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "recsys_assets.definitions",
            "--select",
            ",".join(assets),
        ]
        if days:
            cmd += ["--partition-range", f"{days[0]}...{days[1]}"]
        started = time.monotonic()
        done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{assets}: {done.stdout[-1500:]}{done.stderr[-4000:]}"
        print(f"  {env['RECSYS_EXECUTOR']}: {len(assets)} assets in {time.monotonic() - started:.1f} s")


def _materialize_in_process(data_root: Path) -> None:
    """The same phases in this process with the in_process executor: the reference the
    distributed run must equal (the same definitions, without a code-location load per phase)."""
    import dagster as dg

    from recsys_assets.definitions import build_defs
    from recsys_assets.settings import Settings

    defs = build_defs(Settings.load(environ={}, data_root=str(data_root), executor="in_process"))
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.ephemeral() as instance:
        for assets, days in PHASES:
            tags = (
                {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[1]}
                if days
                else {}
            )
            keys = [dg.AssetKey(a) for a in assets]
            assert job.execute_in_process(instance=instance, asset_selection=keys, tags=tags).success, assets


def _tables(con: duckdb.DuckDBPyConnection, root: str, files: list[str]) -> dict[str, list]:
    out = {}
    for rel in files:
        rel_cols = con.sql(f"SELECT * FROM read_parquet('{root}/{rel}') LIMIT 0").columns
        keep = [c for c in rel_cols if c not in VOLATILE_COLUMNS]
        where = f"WHERE metric NOT IN {VOLATILE_METRICS!r}".replace(",)", ")") if "metric" in rel_cols else ""
        cols = ", ".join(f'"{c}"' for c in keep)
        out[rel] = con.sql(f"SELECT {cols} FROM read_parquet('{root}/{rel}') {where} ORDER BY ALL").fetchall()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    redis = shutil.which("redis-server")
    if redis is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server); .ci/run installs it"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    base = tmp_path_factory.mktemp("distributed")
    generated = base / "generated"
    generate(
        GeneratorConfig(
            n_users=300,
            n_items=200,
            days=len(DAYS),
            impressions_per_day=3_000,
            seed=5,
            start_date=date.fromisoformat(DAYS[0]),
        ),
        generated,
    )
    logs = base / "logs"
    logs.mkdir()
    s3_port, redis_port = _free_port(), _free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RECSYS_", "AWS_", "DAGSTER_"))}
    clean["DAGSTER_DISABLE_TELEMETRY"] = "1"
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
    }
    home = base / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)):  # create its databases once, before processes share it
        pass
    broker = f"redis://127.0.0.1:{redis_port}/0"
    remote_env = (
        clean
        | aws
        | {
            "RECSYS_DATA_ROOT": f"s3://{BUCKET}/platform",
            "RECSYS_EXECUTOR": "celery",
            "RECSYS_CELERY_BROKER": broker,
            "DAGSTER_HOME": str(home),
            "RECSYS_MODEL_CACHE": str(base / "model_cache"),
        }
    )
    cwd = {name: base / name for name in ("launcher", "worker1", "worker2", "moto", "redis")}
    for folder in cwd.values():
        folder.mkdir()
    started = time.monotonic()
    with services(logs) as group:
        moto = group.start(
            "moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], clean, cwd["moto"]
        )
        server = group.start(
            "redis",
            [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            clean,
            cwd["redis"],
        )
        _wait_port(s3_port, moto, logs / "moto.log")
        _wait_port(redis_port, server, logs / "redis.log")
        import s3fs

        fs = s3fs.S3FileSystem(
            key=aws["AWS_ACCESS_KEY_ID"], secret=aws["AWS_SECRET_ACCESS_KEY"], endpoint_url=aws["AWS_ENDPOINT_URL"]
        )
        fs.mkdir(BUCKET)
        # The user's path to a bucket: the generator CLI uploads what it writes (same seed: same logs).
        upload = subprocess.run(
            [sys.executable, "-m", "recsys_assets.generate", "--root", f"s3://{BUCKET}/platform", *GENERATOR_ARGS],
            env=remote_env,
            cwd=cwd["launcher"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert upload.returncode == 0, upload.stderr[-3000:]
        for i in (1, 2):
            group.start(
                f"worker{i}", [str(BIN / "recsys-celery-worker"), "--name", f"worker{i}"], remote_env, cwd[f"worker{i}"]
            )
        ping = subprocess.run(
            [str(BIN / "celery"), "-b", broker, "inspect", "ping", "--timeout", "5"],
            env=remote_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for _ in range(20):  # workers import the code location before they answer
            if ping.stdout.count("pong") >= 2:
                break
            time.sleep(1)
            ping = subprocess.run(
                [str(BIN / "celery"), "-b", broker, "inspect", "ping", "--timeout", "5"],
                env=remote_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert ping.stdout.count("pong") >= 2, ping.stdout + ping.stderr
        _materialize(remote_env, cwd["launcher"])
        distributed_s = time.monotonic() - started
        print(f"distributed run: {distributed_s:.0f} s")
        remote_files = sorted(p.removeprefix(f"{BUCKET}/platform/") for p in fs.find(f"{BUCKET}/platform"))
        remote_tables = None
        con = duckdb.connect()
        con.register_filesystem(fs)
        lake_files = [p.removeprefix("lake/") for p in remote_files if p.startswith("lake/") and p.endswith(".parquet")]
        remote_tables = _tables(con, f"s3://{BUCKET}/platform/lake", lake_files)
        pointers = {
            p: json.loads(fs.cat(f"{BUCKET}/platform/{p}"))
            for p in remote_files
            if p.startswith("models/") and "/.versions/" not in p and p.endswith("manifest.json")
        }

    local_root = base / "local"
    shutil.copytree(generated / "landing", local_root / "landing")
    started = time.monotonic()
    _materialize_in_process(local_root)
    print(f"local run: {time.monotonic() - started:.0f} s")
    local_lake = sorted(str(p.relative_to(local_root / "lake")) for p in (local_root / "lake").rglob("*.parquet"))
    local_tables = _tables(duckdb.connect(), str(local_root / "lake"), local_lake)
    local_models = {
        str(p.relative_to(local_root)): json.loads(p.read_text())
        for p in (local_root / "models").glob("*/20*/manifest.json")
    }
    return {
        "base": base,
        "cwd": cwd,
        "home": home,
        "remote_files": remote_files,
        "remote_tables": remote_tables,
        "pointers": pointers,
        "local_tables": local_tables,
        "local_models": local_models,
        "distributed_s": distributed_s,
    }


def test_every_step_ran_on_the_celery_workers(runs):
    import dagster as dg

    with dg.DagsterInstance.from_config(str(runs["home"])) as instance:
        records = instance.get_run_records()
        assert len(records) == len(PHASES) and all(r.dagster_run.is_success for r in records)
        workers, steps, started = set(), set(), set()
        for record in records:
            for entry in instance.all_logs(record.dagster_run.run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                if event.event_type_value == "STEP_START":
                    started.add((record.dagster_run.run_id, event.step_key))
                if event.event_type_value == "ENGINE_EVENT" and "in celery worker" in (event.message or ""):
                    meta = {m: v.value for m, v in event.engine_event_data.metadata.items()}
                    workers.add(str(meta["Celery worker"]).split("@")[0])
                    steps.add((record.dagster_run.run_id, event.step_key))
    assert started and started <= steps  # every step that started was handed to a worker
    assert workers == {"worker1", "worker2"}  # both workers took steps


def test_nothing_was_written_to_a_local_disk(runs):
    for name, folder in runs["cwd"].items():
        assert not any(folder.iterdir()), (
            f"{name} wrote {sorted(p.name for p in folder.iterdir())} into its working folder"
        )
    # The instance keeps its event log and captured stdout/stderr (compute_logs); an asset
    # output pickled by an IO manager would appear as storage/<run id>/<step>/<output>.
    outputs = [p for p in (runs["home"] / "storage").rglob("*") if p.is_file() and "compute_logs" not in p.parts]
    assert not outputs, f"a step passed an output through the Dagster instance's local storage: {outputs[:5]}"
    files = runs["remote_files"]
    for table in ("raw_impressions", "interactions", "user_features", "recall_candidates", "recall_evaluation"):
        assert any(f.startswith(f"lake/{table}/") for f in files), f"{table} is not in the bucket"


def test_results_equal_a_local_single_process_run(runs):
    local, remote = runs["local_tables"], runs["remote_tables"]
    assert sorted(local) == sorted(remote)  # the same partitions of the same tables
    assert {
        "raw_impressions/2026-01-04.parquet",
        "recall_evaluation/2026-01-04.parquet",
        "recall_candidates/2026-01-04.parquet",
        "recall_champion/2026-01-04.parquet",
    } <= set(local)
    different = [rel for rel in local if local[rel] != remote[rel]]
    assert not different, f"tables that differ between the distributed and the local run: {different}"
    assert all(local[rel] for rel in local if rel.startswith(("raw_impressions", "recall_candidates")))
    # Models: the same files, byte for byte (checksums), published for the model day.
    assert {p for p in runs["local_models"]} == set(runs["pointers"])
    assert {p.split("/")[2] for p in runs["pointers"]} == set(MODEL_DAYS)
    for path, manifest in runs["local_models"].items():
        assert runs["pointers"][path]["files"] == manifest["files"], path
