"""The UI loads the project: a real dagster-webserver serves every asset in its group,
with a description, through the same GraphQL API the UI uses."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERY = "{ assetNodes { assetKey { path } groupName description isPartitioned } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webserver_lists_every_asset_with_group_and_description(tmp_path):
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "RECSYS_DATA_ROOT": str(tmp_path / "data")}
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver")), "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        nodes, deadline = None, time.time() + 120
        while time.time() < deadline:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": QUERY}).encode(),
                                             headers={"Content-Type": "application/json"})
                nodes = json.load(urllib.request.urlopen(req, timeout=10))["data"]["assetNodes"]
                if nodes:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert nodes, "the webserver did not serve the asset graph within 120 s"
        by_name = {n["assetKey"]["path"][-1]: n for n in nodes}
        assert {"raw_items", "raw_users", "raw_impressions", "raw_events", "raw_watch_stats"} <= set(by_name)
        assert by_name["raw_impressions"]["groupName"] == "raw" and by_name["raw_impressions"]["isPartitioned"]
        assert by_name["raw_users"]["groupName"] == "raw_snapshots"
        assert all(n["description"] and len(n["description"]) > 40 for n in nodes)
    finally:
        server.terminate()
        server.wait(timeout=30)
