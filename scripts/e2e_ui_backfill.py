"""End-to-end scenario, one command: the backfills a user launches from the UI. A real
`dagster dev` (webserver + daemon) on a temporary DAGSTER_HOME bound to 127.0.0.1; over
Dagster's GraphQL API (what the UI's "Materialize" → "Backfill" dialog calls) two backfills
are launched at once: the raw and feature layers for 30 days, and an overlapping
re-materialization of the raw layer for the first 15 days. Both must complete, every run
must succeed, no run log may mention a lock, and the lake must hold all 30 days. Everything
it starts it stops.

    .venv/bin/python scripts/e2e_ui_backfill.py [--days 30] [--timeout 1800]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from e2e_landing_sensor import graphql, start_dagster_dev, stop, wait_for  # noqa: E402

from recsys_assets.core.generator import GeneratorConfig, generate  # noqa: E402

FINAL = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")
RAW = ["raw_impressions", "raw_events", "raw_watch_stats"]
FEATURES = [
    "interactions",
    "user_daily_stats",
    "item_daily_stats",
    "user_genre_daily",
    "categorical_daily_counts",
    "user_features",
    "item_features",
    "user_sequences",
]


def launch(port: int, assets: list[str], partitions: list[str]) -> str:
    """A backfill of `assets` over exactly `partitions` (one range per asset). Not the
    partitionNames + assetSelection form: with it Dagster propagates the root partitions
    downstream through the partition mappings, so the 28-day windowed features would also be
    requested for the 28 days after the range (whose inputs never landed) and fail."""
    by_asset = ", ".join(
        f'{{assetKey: {{path: ["{a}"]}}, partitions: {{range: {{start: "{partitions[0]}", end: "{partitions[-1]}"}}}}}}'
        for a in assets
    )
    out = graphql(
        port,
        f"""mutation {{ launchPartitionBackfill(backfillParams: {{
        partitionsByAssets: [{by_asset}], fromFailure: false}}) {{
        ... on LaunchBackfillSuccess {{ backfillId }} ... on PythonError {{ message }}
        ... on UnauthorizedError {{ message }} ... on PartitionSetNotFoundError {{ message }}
        ... on InvalidStepError {{ invalidStepKey }} ... on InvalidOutputError {{ invalidOutputName }} }} }}""",
    )
    result = out["launchPartitionBackfill"]
    if "backfillId" not in result:
        raise RuntimeError(f"backfill refused: {result}")
    return result["backfillId"]


def backfill_status(port: int, backfill_id: str) -> str:
    out = graphql(
        port,
        f"""{{ partitionBackfillOrError(backfillId: "{backfill_id}") {{
        ... on PartitionBackfill {{ status }} ... on PythonError {{ message }} }} }}""",
    )
    return out["partitionBackfillOrError"].get("status")


def runs_of(port: int, backfill_id: str) -> list[dict]:
    out = graphql(
        port,
        f"""{{ runsOrError(filter: {{tags: [{{key: "dagster/backfill", value: "{backfill_id}"}}]}}) {{
        ... on Runs {{ results {{ runId status startTime endTime }} }} }} }}""",
    )
    return out["runsOrError"]["results"]


def run_log_mentions_lock(port: int, run_id: str) -> bool:
    out = graphql(
        port,
        f"""{{ logsForRun(runId: "{run_id}", limit: 5000) {{
        ... on EventConnection {{ events {{ ... on MessageEvent {{ message }} }} }} }} }}""",
    )
    return any("lock" in (e.get("message") or "").lower() for e in out["logsForRun"]["events"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="e2e_backfill_"))
    home, data = work / "dagster_home", work / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    generate(GeneratorConfig(n_users=300, n_items=200, days=args.days, impressions_per_day=2000), data)
    days = [(date(2026, 1, 1) + timedelta(days=k)).isoformat() for k in range(args.days)]
    env = {**os.environ, "DAGSTER_HOME": str(home), "RECSYS_DATA_ROOT": str(data)}
    bin_dir = Path(sys.executable).parent
    # the snapshots are unpartitioned: one CLI run first (it also creates the instance storage)
    subprocess.run(
        [
            str(bin_dir / "dagster"),
            "asset",
            "materialize",
            "-m",
            "recsys_assets.definitions",
            "--select",
            "group:raw_snapshots",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    server, port = start_dagster_dev(env, work / "dagster_dev.log")
    started = time.time()
    try:
        print(f"dagster dev on 127.0.0.1:{port}, DAGSTER_HOME={home}")
        wait_for(lambda: graphql(port, "{ version }"), 180, "the webserver")
        full = wait_for(lambda: launch(port, RAW + FEATURES, days), 180, "the code location to load")
        overlap = launch(port, RAW, days[: len(days) // 2])
        print(
            f"launched backfills {full} ({len(days)} days, raw + features) and {overlap} "
            f"({len(days) // 2} days, raw again)"
        )
        for backfill in (full, overlap):
            status = wait_for(
                lambda b=backfill: (s := backfill_status(port, b)) in FINAL and s, args.timeout, f"backfill {backfill}"
            )
            runs = runs_of(port, backfill)
            print(f"backfill {backfill}: {status}, runs {[(r['runId'][:8], r['status']) for r in runs]}")
            assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status
            assert runs and all(r["status"] == "SUCCESS" for r in runs), runs
            assert not any(run_log_mentions_lock(port, r["runId"]) for r in runs), "a run log mentions a lock"
        all_runs = runs_of(port, full) + runs_of(port, overlap)
        spans = sorted((r["startTime"], r["endTime"]) for r in all_runs)
        overlapping = sum(1 for (s1, e1), (s2, _) in zip(spans, spans[1:], strict=False) if s2 < e1)
        print(f"{len(all_runs)} runs, {overlapping} started while another was running")
        for table in RAW + FEATURES:
            present = sorted(p.stem for p in (data / "lake" / table).glob("*.parquet"))
            assert present == days, (table, present[:3], len(present))
        leftovers = list((data / "lake").rglob("*.tmp*"))
        assert not leftovers, leftovers
        print(
            f"OK: {len(days)} days of raw + feature partitions, both backfills COMPLETED, every run SUCCESS, "
            f"no lock errors, no temp files ({time.time() - started:.0f}s)"
        )
        return 0
    finally:
        stop(server)


if __name__ == "__main__":
    sys.exit(main())
