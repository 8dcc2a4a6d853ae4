"""The storage layer on an S3-compatible server (moto on 127.0.0.1): partitions, views,
the model store's pointer publish and checksum-verified cache, and executor selection."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recsys_assets.core.storage import (
    create_views,
    duckdb_connect,
    is_remote,
    read_arrow,
    root_path,
    write_parquet_atomic,
)
from recsys_assets.executors import ExecutorConfigError, executor_for
from recsys_assets.settings import Settings
from resources.model_store import CorruptModelError, ModelStoreResource
from resources.storage import StorageResource

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    pytest.importorskip("s3fs", reason="the distributed extra is not installed: pip install -e '.[test]'")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.2)
        import s3fs

        s3fs.S3FileSystem().mkdir("unit")
        yield "s3://unit"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_local_roots_stay_plain_paths(tmp_path):
    assert not is_remote(tmp_path) and not is_remote("data") and not is_remote(f"file://{tmp_path}")
    assert root_path(str(tmp_path)) == tmp_path.resolve() and root_path(f"file://{tmp_path}") == tmp_path.resolve()
    assert is_remote("s3://bucket/prefix")


def test_a_local_store_lists_the_days_of_any_year(tmp_path):
    """MovieLens-100K's models are of 1998: published_days (the online path's latest model day)
    lists them, and nothing else of the model's folder."""
    store = ModelStoreResource(models_root=str(tmp_path / "models"))
    for day in ("2026-01-02", "1998-03-07"):
        _publish(store, day, 1.0)
    assert store.published_days("recall_als") == ["1998-03-07", "2026-01-02"]


def test_partitions_and_views_on_an_object_store(s3):
    storage = StorageResource(data_root=f"{s3}/lake-test")
    assert (
        is_remote(storage.root)
        and str(storage.partition_path("interactions", "2026-01-02"))
        == f"{s3}/lake-test/lake/interactions/2026-01-02.parquet"
    )
    con = duckdb_connect()
    for day, n in (("2026-01-01", 3), ("2026-01-02", 5)):
        write_parquet_atomic(
            con,
            f"SELECT range AS user_id, DATE '{day}' AS day FROM range({n})",
            storage.partition_path("interactions", day),
        )
    # re-running a partition replaces it, never duplicates it
    write_parquet_atomic(
        con,
        "SELECT range AS user_id, DATE '2026-01-02' AS day FROM range(5)",
        storage.partition_path("interactions", "2026-01-02"),
    )
    assert create_views(con, storage.lake_dir) == ["interactions"]
    assert con.sql("SELECT day, count(*) FROM interactions GROUP BY day ORDER BY day").fetchall() == [
        (np.datetime64("2026-01-01").item(), 3),
        (np.datetime64("2026-01-02").item(), 5),
    ]
    assert read_arrow(storage.partition_path("interactions", "2026-01-01"), columns=["user_id"]).num_rows == 3
    assert storage.existing_partitions("interactions", ["2026-01-01", "2026-01-03"]) == [
        storage.partition_path("interactions", "2026-01-01")
    ]
    assert storage.root.fs.find(storage.root.path) == [  # no temporary objects left behind
        f"{storage.root.path}/lake/interactions/2026-01-01.parquet",
        f"{storage.root.path}/lake/interactions/2026-01-02.parquet",
    ]


def _publish(store: ModelStoreResource, day: str, value: float) -> Path:
    staging = store.staging_dir("recall_als")
    np.save(staging / "item_factors.npy", np.full((3, 2), value), allow_pickle=False)
    return store.publish("recall_als", day, staging, {"day": day})


def test_model_store_publishes_by_pointer_and_verifies_the_cached_copy(s3, tmp_path):
    store = ModelStoreResource(models_root=f"{s3}/models-test", cache_dir=str(tmp_path / "cache"))
    assert not store.exists("recall_als", "2026-01-02") and store.published_days("recall_als") == []
    with pytest.raises(CorruptModelError, match="no published recall_als model for 2026-01-02"):
        store.verify("recall_als", "2026-01-02")
    first = _publish(store, "2026-01-02", 1.0)
    assert store.exists("recall_als", "2026-01-02") and store.published_days("recall_als") == ["2026-01-02"]
    pointer = json.loads((store.root / "recall_als" / "2026-01-02" / "manifest.json").read_text())
    assert pointer["version"] == first.name and set(pointer["files"]) == {"item_factors.npy"}
    local = store.path("recall_als", "2026-01-02")
    assert local.is_relative_to(tmp_path / "cache") and local.name == first.name
    assert store.verify("recall_als", "2026-01-02")["metadata"] == {"day": "2026-01-02"}
    assert np.load(local / "item_factors.npy").tolist() == [[1.0, 1.0]] * 3
    # Re-publishing the day with new content moves the pointer; the old version stays readable.
    second = _publish(store, "2026-01-02", 2.0)
    assert second.name != first.name and store.path("recall_als", "2026-01-02").name == second.name
    assert np.load(store.path("recall_als", "2026-01-02") / "item_factors.npy")[0, 0] == 2.0
    assert (first / "item_factors.npy").exists()
    # A corrupt local copy is only a bad cache: it is fetched again and verifies.
    cached = store.path("recall_als", "2026-01-02") / "item_factors.npy"
    cached.write_bytes(cached.read_bytes()[:-8] + b"corrupt!")
    assert store.verify("recall_als", "2026-01-02")["metadata"] == {"day": "2026-01-02"}
    assert np.load(cached)[0, 0] == 2.0
    # A corrupt object in the store is refused by its name there, never loaded.
    remote = second / "item_factors.npy"
    remote.write_bytes(remote.read_bytes()[:-8] + b"corrupt!")
    cached.write_bytes(b"also corrupt")
    with pytest.raises(CorruptModelError, match=f"{second}/item_factors.npy does not match its checksum"):
        store.verify("recall_als", "2026-01-02")
    assert not list((tmp_path / "cache").rglob(".*-*"))  # no half-downloaded private folders left


def test_executor_is_chosen_by_configuration(monkeypatch):
    import dagster as dg

    def executor_from_env():
        return executor_for(Settings.load())

    monkeypatch.delenv("RECSYS_EXECUTOR", raising=False)
    assert executor_from_env() is dg.in_process_executor  # the default: no process start-up per step
    monkeypatch.setenv("RECSYS_EXECUTOR", "multiprocess")
    assert executor_from_env() is dg.multiprocess_executor
    monkeypatch.setenv("RECSYS_EXECUTOR", "spark")
    with pytest.raises(ExecutorConfigError, match="expected one of multiprocess, in_process, celery"):
        executor_from_env()
    monkeypatch.setenv("RECSYS_EXECUTOR", "celery")
    monkeypatch.delenv("RECSYS_CELERY_BROKER", raising=False)
    with pytest.raises(ExecutorConfigError, match="needs RECSYS_CELERY_BROKER"):
        executor_from_env()
    monkeypatch.setenv("RECSYS_CELERY_BROKER", "redis://127.0.0.1:1/0")
    executor = executor_from_env()
    assert executor.name == "celery"
    from recsys_assets.definitions import build_defs

    job = build_defs().resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "celery"
