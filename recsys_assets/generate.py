"""CLI for the synthetic log generator.

    python -m recsys_assets.generate --root data --users 2000 --items 1500 --days 14 \
        --start 2026-01-01 --impressions-per-day 70000 --seed 42 \
        [--shift-date 2026-01-08 --shift-kind genre] [--bad-rate 0.01]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

from recsys_assets.core.adapters.source import read_marker, write_marker
from recsys_assets.core.generator import SHIFT_KINDS, GeneratorConfig, generate
from recsys_assets.core.storage import is_remote, root_path, upload_landing


def build_parser() -> argparse.ArgumentParser:
    d = GeneratorConfig()
    p = argparse.ArgumentParser(
        prog="python -m recsys_assets.generate", description="Write synthetic online-cinema logs to <root>/landing."
    )
    p.add_argument(
        "--root",
        default="data",
        help="output root: a folder or an object-store URL such as s3://bucket/prefix (default: data)",
    )
    p.add_argument("--users", type=int, default=d.n_users)
    p.add_argument("--items", type=int, default=d.n_items)
    p.add_argument("--days", type=int, default=d.days)
    p.add_argument("--start", type=dt.date.fromisoformat, default=d.start_date, help="first day, YYYY-MM-DD")
    p.add_argument("--impressions-per-day", type=int, default=d.impressions_per_day)
    p.add_argument("--slate-size", type=int, default=d.slate_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--new-item-share", type=float, default=d.new_item_share)
    p.add_argument("--new-user-share", type=float, default=d.new_user_share)
    p.add_argument(
        "--personalized-share",
        type=float,
        default=d.personalized_share,
        help="share of slates aimed at one of the user's genres (the rest by popularity)",
    )
    p.add_argument(
        "--shift-date", type=dt.date.fromisoformat, default=None, help="first day of the distribution shift, YYYY-MM-DD"
    )
    p.add_argument("--shift-kind", choices=SHIFT_KINDS, default=d.shift_kind)
    p.add_argument("--bad-rate", type=float, default=0.0, help="share of injected bad lines (0 = none)")
    p.add_argument("--json", action="store_true", help="print the full summary as JSON")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    config = GeneratorConfig(
        n_users=args.users,
        n_items=args.items,
        days=args.days,
        start_date=args.start,
        impressions_per_day=args.impressions_per_day,
        slate_size=args.slate_size,
        seed=args.seed,
        new_item_share=args.new_item_share,
        new_user_share=args.new_user_share,
        personalized_share=args.personalized_share,
        shift_date=args.shift_date,
        shift_kind=args.shift_kind,
        bad_record_rate=args.bad_rate,
    )
    t0 = time.perf_counter()
    if is_remote(args.root):
        # Written locally, then uploaded day by day with each day's _SUCCESS marker last, so
        # the landing sensor never sees a day before its three files are there.
        with tempfile.TemporaryDirectory(prefix="recsys-generate-") as local:
            summary = generate(config, Path(local))
            summary["landing"] = upload_landing(Path(local) / "landing", root_path(args.root) / "landing")
    else:
        summary = generate(config, Path(args.root))
        marker = read_marker(Path(args.root))
        if marker and marker.get("source") == "synthetic" and summary["days"]:
            # the quickstart's world grew or shrank: its partitions end with the data (Settings.end_date)
            write_marker(Path(args.root), "synthetic", None, min(summary["days"]), max(summary["days"]))
    elapsed = time.perf_counter() - t0
    if args.json:
        print(json.dumps(summary, indent=2))
        return summary
    tot = summary["totals"]
    days = summary["days"]
    print(f"wrote {summary['landing']} in {elapsed:.1f}s")
    print(f"  items.jsonl  {tot['items']:>12,} rows   users.jsonl  {tot['users']:>12,} rows")
    if days:
        first, last = min(days), max(days)
        print(
            f"  {len(days)} day partitions {first} .. {last} "
            f"(impressions.jsonl, events.jsonl, watch_stats.jsonl, _SUCCESS)"
        )
    print(f"  impressions  {tot['impressions']:>12,} rows")
    print(f"  events       {tot['events']:>12,} rows")
    print(f"  watch_stats  {tot['watch_stats']:>12,} rows")
    if config.bad_record_rate > 0:
        print(f"  injected bad lines {tot['bad']:,} (manifests: _injected_bad.jsonl)")
    if config.shift_date is not None:
        print(f"  shift: {config.shift_kind} from {config.shift_date.isoformat()}")
    return summary


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
