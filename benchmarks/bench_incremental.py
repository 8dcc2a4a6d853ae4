"""Incremental cost of one more day: materialize every partitioned asset (raw ingestion +
features + drift) for day N+1 after N days of history, at N=7 and N=28, and compare with
the full N-day build measured in the same run. The day's cost must not grow with history.

    .venv/bin/python benchmarks/bench_incremental.py [--impressions-per-day 70000] [--no-record]
"""

import argparse
import sys
import tempfile
import time
import warnings
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import dagster as dg  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.core.generator import GeneratorConfig, generate  # noqa: E402
from recsys_assets.definitions import build_defs, build_resources  # noqa: E402

DAILY_GROUPS = {"raw", "features", "drift"}


def run(defs, selection, days):
    job = defs.resolve_implicit_global_asset_job_def()
    tags = (
        {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]} if days else {}
    )
    instance = dg.DagsterInstance.ephemeral()
    t0 = time.perf_counter()
    result = job.execute_in_process(instance=instance, asset_selection=selection, tags=tags)
    wall = time.perf_counter() - t0
    steps = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(result.run_id)}
    return wall, steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impressions-per-day", type=int, default=70_000)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_incr_"))
    start = date(2026, 1, 1)
    days = [(start + timedelta(days=i)).isoformat() for i in range(57)]
    generate(GeneratorConfig(days=57, impressions_per_day=args.impressions_per_day), root)
    defs = build_defs(resources=build_resources(str(root)))
    graph = defs.resolve_asset_graph()
    # The daily data layers only (raw, features, drift); recall/ranking/serving assets are
    # also partitioned but need the id dictionaries and have their own benchmarks.
    partitioned = sorted(
        k
        for k in graph.get_all_asset_keys()
        if graph.get(k).partitions_def is not None and graph.get(k).group_name in DAILY_GROUPS
    )
    run(defs, [dg.AssetKey("raw_users"), dg.AssetKey("raw_items")], None)

    full7, _ = run(defs, partitioned, days[:7])
    inc7, steps7 = run(defs, partitioned, [days[7]])
    rest, _ = run(defs, partitioned, days[8:28])
    inc28, steps28 = run(defs, partitioned, [days[28]])
    full28 = full7 + inc7 + rest  # the first 28 days, built in three range runs
    rest56, _ = run(defs, partitioned, days[29:56])
    inc56, steps56 = run(defs, partitioned, [days[56]])
    full56 = full28 + inc28 + rest56

    print(f"per-day impressions {args.impressions_per_day:,}; all {len(partitioned)} partitioned assets")
    print(
        f"full build  7 days: {full7:7.1f}s   one more day after  7: {inc7:6.2f}s  "
        f"= {inc7 / full7 * 7:.2f}/N of the full build (target <= 1.5/N)"
    )
    print(
        f"full build 28 days: {full28:7.1f}s   one more day after 28: {inc28:6.2f}s  "
        f"= {inc28 / full28 * 28:.2f}/N of the full build (target <= 1.5/N)"
    )
    print(
        f"full build 56 days: {full56:7.1f}s   one more day after 56: {inc56:6.2f}s  "
        f"= {inc56 / full56 * 56:.2f}/N of the full build (target <= 1.5/N)"
    )
    print(
        f"ratio day cost N=28 / N=7: {inc28 / inc7:.2f}x; N=56 / N=28: {inc56 / inc28:.2f}x (flat = 1.0; "
        "windows fill up to 28 days, then stay bounded)"
    )
    for n, inc, steps in ((7, inc7, steps7), (28, inc28, steps28), (56, inc56, steps56)):
        busy = sum(steps.values())
        print(
            f"day after N={n}: run wall {inc:.2f}s, sum of {len(steps)} step times {busy:.2f}s, "
            f"Dagster outside the steps {inc - busy:.2f}s ({(inc - busy) / inc:.0%}); "
            f"raw ingestion steps {sum(v for k, v in steps.items() if k.startswith('raw_')):.2f}s"
        )
    print("per step (s):  step                                      N=7    N=28    N=56")
    for step in sorted(steps7):
        if "_" in step and step.split("_")[-1] in {
            "keys",
            "ranges",
            "raw",
            "interactions",
            "limit",
            "time",
            "thresholds",
        }:
            continue  # checks: flat and small
        print(
            f"               {step:40s} {steps7[step]:6.2f}  {steps28.get(step, float('nan')):6.2f}  "
            f"{steps56.get(step, float('nan')):6.2f}"
        )

    if not args.no_record:
        cmd = f"python benchmarks/bench_incremental.py --impressions-per-day {args.impressions_per_day}"
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `{cmd}` | {machine()}, dagster {dg.__version__} | "
            f"{full7:.1f}s | {inc7:.2f}s "
            f"({inc7 / full7 * 7:.2f}/N) | {full28:.1f}s | {inc28:.2f}s ({inc28 / full28 * 28:.2f}/N) | "
            f"{inc56:.2f}s ({inc56 / full56 * 56:.2f}/N) | {inc28 / inc7:.2f}x / {inc56 / inc28:.2f}x |\n",
            section="Incremental cost",
        )


if __name__ == "__main__":
    main()
