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
from datetime import date, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a quickstart, a real dagster-webserver and headless chromium

ROOT = Path(__file__).resolve().parents[1]
# Dagster's UI plots the partitions of the 120 days before today (in 1.13 its descending partition
# pagination counts back from now, past an end date): the world ends the day before yesterday.
DAYS = [(date.today() - timedelta(days=n)).isoformat() for n in (4, 3, 2)]
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
            "--start",
            DAYS[0],
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
    assert {m["partition"] for m in mats} == set(DAYS)
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


def _click_through(url: str, shot: Path) -> dict:
    """Open `url` in headless Chromium over its DevTools protocol, click the metadata section's
    Plots and Partitions toggles, and report what rendered (canvas count, the section's text)."""
    from websockets.sync.client import connect

    port = free_port()
    profile = shot.parent / "chromium-profile"
    browser = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--remote-debugging-port={port}",
            f"--user-data-dir={profile}",
            "--window-size=1600,3200",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, targets = time.time() + 30, []
        while time.time() < deadline and not targets:
            try:
                targets = [
                    t for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json")) if t["type"] == "page"
                ]
            except OSError:
                time.sleep(0.3)
        with connect(targets[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            calls = iter(range(1, 10_000))

            def call(method: str, **params):
                n = next(calls)
                ws.send(json.dumps({"id": n, "method": method, "params": params}))
                while True:
                    message = json.loads(ws.recv(timeout=120))
                    if message.get("id") == n:
                        return message.get("result", {})

            def js(expression: str):
                return call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

            def click(label: str) -> bool:
                return js(
                    "(() => { const hits = [...document.querySelectorAll('button, a, span, div')]"
                    f".filter(e => e.innerText && e.innerText.trim() === {json.dumps(label)});"
                    " const last = hits[hits.length - 1]; if (last) { last.click(); return true; } return false; })()"
                )

            call("Page.enable")
            call("Page.navigate", url=url)
            deadline = time.time() + 90
            while time.time() < deadline and not js("document.body.innerText.includes('Metadata')"):
                time.sleep(1)
            clicked = {"Plots": click("Plots")}
            time.sleep(2)
            clicked["Partitions"] = click("Partitions")
            canvases = 0
            deadline = time.time() + 60
            while time.time() < deadline and canvases == 0:
                time.sleep(2)
                canvases = js("document.querySelectorAll('canvas').length")
            text = js("document.body.innerText")
            shot.write_bytes(__import__("base64").b64decode(call("Page.captureScreenshot", format="png")["data"]))
            return {"clicked": clicked, "canvases": canvases, "text": text}
    finally:
        browser.terminate()
        browser.wait(timeout=30)


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)"
)
def test_headless_chromium_plots_each_partitions_own_values(ui):
    pytest.importorskip("websockets", reason="websockets (uvicorn's) drives Chromium's DevTools protocol")
    port, _, home = ui
    shot = home / "partition_plots.png"
    seen = _click_through(f"http://127.0.0.1:{port}/assets/feature_drift_report", shot)
    assert all(seen["clicked"].values()), seen["clicked"]
    # one chart per numeric metadata label, drawn per partition (worst_psi among them)
    assert seen["canvases"] >= 1 and "worst_psi" in seen["text"]
    assert "Asset plots are automatically generated" not in seen["text"]  # the empty state
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
