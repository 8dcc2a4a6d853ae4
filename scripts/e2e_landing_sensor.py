"""End-to-end scenario, one command: a real `dagster dev` (webserver + daemon) on a temporary
DAGSTER_HOME bound to 127.0.0.1 with the landing sensor switched on; a new day is dropped
into the landing zone; Dagster's GraphQL API shows the sensor's runs and the new partition
materialized. Everything it starts it stops.

    .venv/bin/python scripts/e2e_landing_sensor.py [--timeout 600]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys_assets.core.generator import GeneratorConfig, generate  # noqa: E402

RUNS = """{ runsOrError(filter: {tags: [{key: "trigger", value: "landing"}]}) { ... on Runs { results {
  runId status tags { key value } } } } }"""
START_SENSOR = """mutation { startSensor(sensorSelector: {repositoryLocationName: "recsys_assets",
  repositoryName: "__repository__", sensorName: "landing_sensor"}) {
  ... on Sensor { sensorState { status } } ... on PythonError { message } } }"""
PARTITIONS = """{ assetNodeOrError(assetKey: {path: ["raw_impressions"]}) { ... on AssetNode {
  assetPartitionStatuses { ... on TimePartitionStatuses { ranges { startKey endKey status } } } } } }"""


def graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.load(urllib.request.urlopen(req, timeout=20))["data"]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(3)
    raise TimeoutError(f"timed out waiting for {what}")


def start_dagster_dev(env: dict, log_path: Path) -> tuple[subprocess.Popen, int]:
    """`dagster dev` on a free 127.0.0.1 port in its own process group (so it can be stopped whole)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=open(log_path, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return server, port


def stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def landing_runs(port: int) -> dict[str, str]:
    runs = graphql(port, RUNS)["runsOrError"]["results"]
    return {next(t["value"] for t in r["tags"] if t["key"] == "dagster/partition"): r["status"] for r in runs}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="e2e_"))
    home, data = work / "dagster_home", work / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    generate(GeneratorConfig(n_users=300, n_items=200, days=3, impressions_per_day=3000), data)
    held_back = work / "held_back_day"
    shutil.move(data / "landing" / "2026-01-03", held_back)  # lands later
    env = {**os.environ, "DAGSTER_HOME": str(home), "RECSYS_DATA_ROOT": str(data)}
    server, port = start_dagster_dev(env, work / "dagster_dev.log")
    try:
        print(f"dagster dev on 127.0.0.1:{port}, DAGSTER_HOME={home}")
        # Sensors start stopped; switch this one on in the running instance, as a user would in the UI.
        started = wait_for(lambda: graphql(port, START_SENSOR)["startSensor"], 180, "the code location to load")
        print(f"landing_sensor: {started.get('sensorState', started).get('status', started)}")
        first = wait_for(
            lambda: (r := landing_runs(port)) and all(s == "SUCCESS" for s in r.values()) and len(r) >= 2 and r,
            args.timeout,
            "the sensor's runs for the first two days",
        )
        print(f"sensor runs: {first}")
        shutil.move(held_back, data / "landing" / "2026-01-03")
        print("dropped 2026-01-03 into the landing zone")
        later = wait_for(
            lambda: (r := landing_runs(port)).get("2026-01-03") == "SUCCESS" and r,
            args.timeout,
            "the sensor's run for the new day",
        )
        print(f"sensor runs: {later}")
        ranges = graphql(port, PARTITIONS)["assetNodeOrError"]["assetPartitionStatuses"]["ranges"]
        print(f"raw_impressions partitions: {ranges}")
        materialized = [r for r in ranges if r["status"] == "MATERIALIZED"]
        assert any(r["startKey"] <= "2026-01-03" <= r["endKey"] for r in materialized), ranges
        print("OK: the landing sensor launched one run per day and the new partition is materialized")
        return 0
    finally:
        stop(server)


if __name__ == "__main__":
    sys.exit(main())
