"""Scale tiers of the whole graph: generate (or reuse) a tier's synthetic logs and materialize
every asset, one asset per run in topological order, recording per asset: wall time, CPU
time, peak RSS, rows out, rows per second, and Dagster's share of the run (run wall time
minus the asset step's own time). Daily assets run as one range run over every day; model
assets (recall, ranking, serving groups) for the last `--model-days` days, except the two
only the served day needs (recall_candidates, recommendations: the last day).

    .venv/bin/python benchmarks/bench_tiers.py --tier S [--data-root DIR] [--model-days 4] [--no-record]
        [--from ASSET] [--until ASSET]

--from / --until run a slice of the topological order (e.g. the data layers, then the model
layers after a code change); every asset's row is also appended to <data-root>/bench_tiers_rows.jsonl
and the report is built from the latest row of every asset there, so slices add up to one table.

Tiers (GeneratorConfig): S = the quickstart default (2k users, 1.5k items, 14 days x 70k
impressions ~ 1M); M = 20k users, 10k items, 30 days x 333k (~10M); L = 1M users, 100k
items, 30 days x 3.33M (~100M). The per-asset table goes to benchmarks/results/, a summary
row to benchmarks/RESULTS.md.
"""

import argparse
import json
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import dagster as dg  # noqa: E402
from recording import PeakRSS, append_result, git_commit, machine  # noqa: E402

from recsys_assets.core.generator import GeneratorConfig, generate  # noqa: E402
from recsys_assets.definitions import build_defs, build_resources  # noqa: E402
from recsys_assets.quickstart import MODEL_GROUPS  # noqa: E402
from resources import RankingSettings, RecallSettings  # noqa: E402

TIERS = {
    "XS": GeneratorConfig(n_users=300, n_items=200, days=4, impressions_per_day=3_000),  # the CI smoke test
    "S": GeneratorConfig(),
    "M": GeneratorConfig(n_users=20_000, n_items=10_000, days=30, impressions_per_day=333_000),
    "L": GeneratorConfig(n_users=1_000_000, n_items=100_000, days=30, impressions_per_day=3_333_000),
}
# Settings per tier (defaults unless listed), recorded with the results. L: the channels whose
# training cost grows with positives × epochs in pure numpy (bpr_uniform ~100 min, bpr_impressions
# ~30 min, extrapolated from M) are off, EASE is off by its max_items guard (100k items), implicit
# BPR uses both cores, candidates are the RRF top-100 of users active in the last 7 days, and
# the ranker trains on the day before D (a 20% request hold-out for early stopping) on the samples
# of 20k hash-sampled users per day (also the funnel's test users); no TreeSHAP explanations;
# rank_<channel> features 100 deep, the depth of the candidates' channel lists (read, not searched again).
# No content channel at L: NDCG@10 0.0001 there against popularity's 0.067, no gain in any RRF
# combination, and its lists are mostly ties (many items share one genre/tag vector), at ~0.28 ms
# per user searched (benchmarks/RESULTS.md, "Scale tiers", session 7).
# Assets only the served day needs: the earlier model days exist to train the ranker, whose
# samples compute their sampled users' candidate lists when a day has no recall_candidates.
SERVING_DAY_ASSETS = {"recall_candidates", "recommendations"}
TIER_SETTINGS = {
    "L": {
        "recall": dict(
            channels=["popularity", "item_cf", "als", "bpr"],
            models={"bpr": {"num_threads": 2, "iterations": 30}},
            candidate_methods=["rrf"],
            candidates_k=100,
            candidates_recent_days=7,
        ),
        "ranking": dict(
            channels=["popularity", "item_cf", "als", "bpr"],
            train_days=1,
            valid_days=0,
            threads=2,
            max_users_per_day=20_000,
            explain_top_n=0,
            rank_depth=100,
        ),
    },
}


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rows(result, key) -> int | None:
    """Rows written over the run: each partition's own count, summed (one event per day)."""
    total, seen = 0, False
    for event in result.get_asset_materialization_events():
        if event.asset_key == key:
            meta = event.materialization.metadata
            for label in ("dagster/row_count", "rows", "rows_loaded"):
                if label in meta:
                    total, seen = total + int(meta[label].value), True
                    break
    return total if seen else None


def _step_seconds(instance, result, key) -> float:
    """Seconds between the asset step's start and success events (its own work)."""
    start = end = None
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is not None and event.step_key == key.to_python_identifier():
            if event.event_type_value == "STEP_START":
                start = entry.timestamp
            elif event.event_type_value == "STEP_SUCCESS":
                end = entry.timestamp
    return (end - start) if start and end else float("nan")


def run_tier(
    root: Path,
    days: list[str],
    model_days: int,
    settings: dict,
    first: str | None = None,
    last: str | None = None,
    only: set[str] | None = None,
) -> list[dict]:
    defs = build_defs(
        resources=build_resources(
            str(root),
            recall=RecallSettings(**settings.get("recall", {})),
            ranking=RankingSettings(**settings.get("ranking", {})),
        )
    )
    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    keys = [k.to_user_string() for k in graph.toposorted_asset_keys]
    lo = keys.index(first) if first else 0
    hi = keys.index(last) + 1 if last else len(keys)
    rows = []
    for key in graph.toposorted_asset_keys[lo:hi]:
        if only and key.to_user_string() not in only:
            continue
        node = graph.get(key)
        partitioned = node.partitions_def is not None
        run_days = days[-model_days:] if node.group_name in MODEL_GROUPS else days
        if key.to_user_string() in SERVING_DAY_ASSETS:
            run_days = days[-1:]
        if node.group_name in MODEL_GROUPS and model_days == 0:
            continue
        tags = (
            {"dagster/asset_partition_range_start": run_days[0], "dagster/asset_partition_range_end": run_days[-1]}
            if partitioned
            else {}
        )
        cpu = _cpu_seconds()
        started = time.perf_counter()
        with PeakRSS() as rss:
            result = job.execute_in_process(instance=instance, asset_selection=[key], tags=tags, raise_on_error=False)
        wall = time.perf_counter() - started
        if not result.success:
            raise SystemExit(f"{key.to_user_string()} failed; stopping the tier")
        out = _rows(result, key)
        step = _step_seconds(instance, result, key)
        rows.append(
            {
                "asset": key.to_user_string(),
                "group": node.group_name,
                "days": len(run_days) if partitioned else 0,
                "wall_s": wall,
                "cpu_s": _cpu_seconds() - cpu,
                "peak_rss_mib": rss.peak / 2**20,
                "rows_out": out,
                "rows_per_s": (out / step) if out and step == step and step > 0 else None,
                "dagster_overhead_s": wall - step if step == step else None,
            }
        )
        with open(root / "bench_tiers_rows.jsonl", "a") as fh:
            fh.write(json.dumps(rows[-1]) + "\n")
        print(
            f"  {rows[-1]['asset']:28s} {wall:8.1f}s wall {rows[-1]['cpu_s']:8.1f}s cpu "
            f"{rows[-1]['peak_rss_mib']:8.0f} MiB  rows {out if out is not None else '-'}",
            flush=True,
        )
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tier", choices=sorted(TIERS), default="S")
    ap.add_argument("--data-root", default=None, help="reuse (or create) this data root instead of a temp one")
    ap.add_argument("--model-days", type=int, default=4)
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--from", dest="first", default=None, help="start at this asset (topological order)")
    ap.add_argument("--until", dest="last", default=None, help="stop after this asset")
    ap.add_argument(
        "--only",
        default=None,
        help="comma-separated assets to run (in topological order), e.g. to re-measure what a change touched",
    )
    args = ap.parse_args()
    config = TIERS[args.tier]
    root = Path(args.data_root).resolve() if args.data_root else Path(tempfile.mkdtemp(prefix=f"tier_{args.tier}_"))
    gen_s = 0.0
    if not (root / "landing" / "users.jsonl").exists():
        started = time.perf_counter()
        generate(config, root)
        gen_s = time.perf_counter() - started
        print(f"generated tier {args.tier} in {gen_s:.0f}s into {root}")
    days = [d.isoformat() for d in config.dates]
    started = time.perf_counter()
    settings = TIER_SETTINGS.get(args.tier, {})
    run_tier(
        root, days, args.model_days, settings, args.first, args.last, set(args.only.split(",")) if args.only else None
    )
    print(f"slice done in {time.perf_counter() - started:.0f}s")
    latest = {}
    for line in (root / "bench_tiers_rows.jsonl").read_text().splitlines():
        row = json.loads(line)
        latest[row["asset"]] = row  # the latest run of each asset counts
    order = [
        k.to_user_string()
        for k in build_defs(resources=build_resources(str(root))).resolve_asset_graph().toposorted_asset_keys
    ]
    rows = [latest[a] for a in order if a in latest]
    total = sum(r["wall_s"] for r in rows)
    overhead = sum(r["dagster_overhead_s"] or 0 for r in rows)
    peak = max(r["peak_rss_mib"] for r in rows)
    print(
        f"tier {args.tier}: {len(rows)} assets in {total:.0f}s (generation {gen_s:.0f}s), peak RSS {peak:.0f} MiB, "
        f"Dagster's share {overhead / total:.1%}"
    )
    if args.no_record or args.last or args.only:  # a slice is not a tier result yet
        return
    commit = git_commit()
    out = ROOT / "benchmarks" / "results" / f"tier_{args.tier}_{commit}.md"
    out.parent.mkdir(exist_ok=True)
    lines = [
        f"# Tier {args.tier} at `{commit}`",
        "",
        f"`python benchmarks/bench_tiers.py --tier {args.tier} --model-days {args.model_days}` on {machine()}, "
        f"dagster {dg.__version__}; {config.impressions_per_day * config.days:,} impressions over "
        f"{config.days} days, {config.n_users:,} users, {config.n_items:,} items. Total {total:.0f}s "
        f"(+ generation {gen_s:.0f}s), peak RSS {peak:.0f} MiB, Dagster's share {overhead / total:.1%}. "
        f"Settings beyond the defaults: {json.dumps(settings) if settings else 'none'}.",
        "",
        "| asset | group | days | wall s | CPU s | peak RSS MiB | rows out | rows/s | Dagster s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = "" if r["rows_per_s"] is None else f"{r['rows_per_s']:,.0f}"
        dagster_s = "" if r["dagster_overhead_s"] is None else f"{r['dagster_overhead_s']:.1f}"
        rows_out = "" if r["rows_out"] is None else f"{r['rows_out']:,}"
        lines.append(
            f"| {r['asset']} | {r['group']} | {r['days']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
            f"{r['peak_rss_mib']:.0f} | {rows_out} | {rate} | {dagster_s} |"
        )
    out.write_text("\n".join(lines) + "\n")
    slowest = sorted(rows, key=lambda r: -r["wall_s"])[:3]
    append_result(
        f"| {time.strftime('%Y-%m-%d')} | `{commit}` | `python benchmarks/bench_tiers.py --tier {args.tier} "
        f"--model-days {args.model_days}` | {machine()} | {config.impressions_per_day * config.days:,} | "
        f"{total:.0f}s (+{gen_s:.0f}s generation) | {peak:.0f} MiB | {overhead / total:.1%} | "
        + ", ".join(f"{r['asset']} {r['wall_s']:.0f}s" for r in slowest)
        + f" | [per asset](results/{out.name}) |",
        section="Scale tiers",
    )


if __name__ == "__main__":
    main()
