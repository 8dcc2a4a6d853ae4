"""The UI loads the project: a real dagster-webserver serves every asset in its group,
with a description, through the same GraphQL API the UI uses; headless Chromium renders
the asset graph pages with the project's groups and assets."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a quickstart, a real dagster-webserver and headless chromium

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
QUERY = "{ assetNodes { assetKey { path } groupName description isPartitioned } }"
DRIFT_QUERY = """{ assetOrError(assetKey: {path: ["feature_drift_report"]}) { ... on Asset {
  assetMaterializations(limit: 10) { partition metadataEntries { label __typename
    ... on FloatMetadataEntry { floatValue } ... on MarkdownMetadataEntry { mdStr } } } } } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.load(urllib.request.urlopen(req, timeout=10))["data"]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A small quickstart in a fresh DAGSTER_HOME and a real dagster-webserver over it."""
    home = tmp_path_factory.mktemp("ui")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys_assets.quickstart",
            "--data-root",
            str(home / "data"),
            "--days",
            "3",
            "--impressions-per-day",
            "4000",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "DAGSTER_HOME": str(home)},
    )
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "RECSYS_DATA_ROOT": str(home / "data")}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        nodes, deadline = None, time.time() + 120
        while time.time() < deadline:
            try:
                nodes = graphql(port, QUERY)["assetNodes"]
                if nodes:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert nodes, "the webserver did not serve the asset graph within 120 s"
        yield port, nodes, home
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_webserver_lists_every_asset_with_group_and_description(ui):
    port, nodes, _ = ui
    by_name = {n["assetKey"]["path"][-1]: n for n in nodes}
    assert {"raw_items", "raw_users", "raw_impressions", "raw_events", "raw_watch_stats"} <= set(by_name)
    assert by_name["raw_impressions"]["groupName"] == "raw" and by_name["raw_impressions"]["isPartitioned"]
    assert by_name["raw_users"]["groupName"] == "raw_snapshots"
    assert all(n["description"] and len(n["description"]) > 40 for n in nodes)
    assert {"user_features", "hash_dictionaries", "feature_drift_report"} <= set(by_name)

    # The drift asset shows a plottable number (a float entry) and a markdown table per partition.
    mats = graphql(port, DRIFT_QUERY)["assetOrError"]["assetMaterializations"]
    assert {m["partition"] for m in mats} == {"2026-01-01", "2026-01-02", "2026-01-03"}
    for m in mats:
        entries = {e["label"]: e for e in m["metadataEntries"]}
        assert entries["worst_psi"]["__typename"] == "FloatMetadataEntry"
        assert entries["summary"]["mdStr"].startswith("| feature |")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=30000",
            "--window-size=1600,1000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)"
)
def test_headless_chromium_renders_the_asset_graph(ui):
    port, nodes, home = ui
    groups = {n["groupName"] for n in nodes}
    # The global lineage page: the React app loads the project and lists every group.
    page = _chromium("--dump-dom", f"http://127.0.0.1:{port}/asset-groups").stdout
    assert "Global asset lineage" in page
    assert all(f">{g}<" in page for g in groups), groups
    # A group's graph renders a node per asset.
    ranking = _chromium("--dump-dom", f"http://127.0.0.1:{port}/locations/recsys_assets/asset-groups/ranking").stdout
    expected = {n["assetKey"]["path"][-1] for n in nodes if n["groupName"] == "ranking"}
    assert expected and all(name in ranking for name in expected), expected
    shot = home / "asset_graph.png"
    _chromium(f"--screenshot={shot}", f"http://127.0.0.1:{port}/asset-groups")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
