"""Ingestion throughput: the contract-validating ingest of one day of impressions versus
DuckDB alone turning the same JSONL into Parquet (no validation, no quarantine), measured
in the same run, and the strict-typing floor between them (every field read as JSON text and
converted, no checks: see RESULTS.md). Each figure is the best of three runs. Appends a row
to the "Raw ingestion" and the "Strict-typing floor of ingestion" tables of benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_ingest.py --impressions 2000000 [--bad-rate 0.01]
"""

import argparse
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.core import contract as c  # noqa: E402
from recsys_assets.core.generator import GeneratorConfig, generate  # noqa: E402
from recsys_assets.core.ingest import ingest_file  # noqa: E402

REPEAT = 3  # each measurement is the best of three: single runs on this machine vary by up to 1.5x


def timed(fn, repeat: int = 1):
    best = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        run = (out, time.perf_counter() - t0, time.process_time() - c0)
        best = run if best is None or run[1] < best[1] else best
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impressions", type=int, default=2_000_000)
    ap.add_argument("--bad-rate", type=float, default=0.0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    cfg = GeneratorConfig(
        n_users=50_000, n_items=10_000, days=1, impressions_per_day=args.impressions, bad_record_rate=args.bad_rate
    )
    _, gen_s, _ = timed(lambda: generate(cfg, work))
    landing = work / "landing"
    day = cfg.start_date.isoformat()
    src = landing / day / "impressions.jsonl"
    size_mb = src.stat().st_size / 1e6

    known = {}
    for dim, ref in ((c.USERS, "user_id"), (c.ITEMS, "item_id")):
        out = work / f"lake/{dim.asset_name}/snapshot.parquet"
        ingest_file(dim, landing / f"{dim.name}.jsonl", dim.name, "snapshot", None, out, work / f"q/{dim.name}.parquet")
        known[ref] = str(out)

    # Baseline: DuckDB reads the JSONL with an explicit schema and writes Parquet. Bad lines
    # would abort it (or be dropped with ignore_errors), so it is a floor, not an alternative.
    columns = "{" + ", ".join(f"'{f.name}': '{f.duckdb_type}'" for f in c.IMPRESSIONS.fields) + "}"
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    _, base_s, base_cpu = timed(
        lambda: con.execute(
            f"COPY (SELECT * FROM read_json('{src}', format='newline_delimited', columns={columns}, ignore_errors=true)) "
            f"TO '{work}/baseline.parquet' (FORMAT parquet, COMPRESSION zstd)"
        ),
        REPEAT,
    )

    # Floor of strict typing: the least any validator on DuckDB's reader must do to tell a
    # number from a string ("5" is a wrong type for an int field, which a typed read_json
    # silently casts): read each field as its JSON text and convert it to the column type.
    # No checks, line numbers, duplicates or quarantine: a floor, not an alternative.
    text_columns = "{" + ", ".join(f"'{f.name}': 'JSON'" for f in c.IMPRESSIONS.fields) + "}"
    convert = {
        "int": "TRY_CAST(CAST({n} AS VARCHAR) AS BIGINT)",
        "string": "{n} ->> '$'",
        "timestamp": "TRY_CAST({n} ->> '$' AS TIMESTAMPTZ)",
        "float": "TRY_CAST(CAST({n} AS VARCHAR) AS DOUBLE)",
        "string_list": "TRY_CAST({n} AS VARCHAR[])",  # contract v2's request filters
    }
    converted = ", ".join(convert[f.type].format(n=f.name) + f" AS {f.name}" for f in c.IMPRESSIONS.fields)
    _, floor_s, floor_cpu = timed(
        lambda: con.execute(
            f"COPY (SELECT {converted} FROM read_json('{src}', format='newline_delimited', columns={text_columns}, "
            f"ignore_errors=true)) TO '{work}/floor.parquet' (FORMAT parquet, COMPRESSION zstd)"
        ),
        REPEAT,
    )

    result, ing_s, ing_cpu = timed(
        lambda: ingest_file(
            c.IMPRESSIONS,
            src,
            f"{day}/impressions.jsonl",
            day,
            date.fromisoformat(day),
            work / "lake/raw_impressions" / f"{day}.parquet",
            work / "q/impressions.parquet",
            known_ids=known,
        ),
        REPEAT,
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rows = result.rows_read
    print(f"file: {rows:,} lines, {size_mb:.0f} MB (generated in {gen_s:.1f}s)")
    print(
        f"baseline  duckdb read_json -> parquet : {base_s:6.2f}s wall {base_cpu:6.2f}s cpu  {rows / base_s:12,.0f} rows/s"
    )
    print(
        f"floor     JSON text -> typed parquet  : {floor_s:6.2f}s wall {floor_cpu:6.2f}s cpu  {rows / floor_s:12,.0f} rows/s"
    )
    print(
        f"ingest    validate + quarantine       : {ing_s:6.2f}s wall {ing_cpu:6.2f}s cpu  {rows / ing_s:12,.0f} rows/s"
    )
    print(
        f"ratio ingest / baseline: {ing_s / base_s:.2f}x   floor / baseline: {floor_s / base_s:.2f}x   "
        f"quarantined {result.rows_quarantined:,}   peak RSS {peak_mib:,.0f} MiB"
    )

    if not args.no_record:
        line = (
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_ingest.py --impressions {args.impressions}"
            f"{f' --bad-rate {args.bad_rate}' if args.bad_rate else ''}` | {machine()} | "
            f"{rows:,} lines / {size_mb:.0f} MB | {base_s:.2f}s | {ing_s:.2f}s ({rows / ing_s:,.0f} rows/s) | "
            f"{ing_s / base_s:.2f}x | {peak_mib:,.0f} MiB |\n"
        )
        print(f"recorded in {append_result(line, section='Raw ingestion')}")
        floor_line = (
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | same run as the row above | "
            f"{base_s:.2f}s | {floor_s:.2f}s | {floor_s / base_s:.2f}x | {ing_s:.2f}s | {ing_s / floor_s:.2f}x |\n"
        )
        append_result(floor_line, section="Strict-typing floor of ingestion")


if __name__ == "__main__":
    main()
