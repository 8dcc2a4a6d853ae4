"""Peak memory of ingesting a file of bad lines: `--lines` copies of `{}` (every required
field missing) as one day of impressions, ingested by `ingest_file` in a fresh child process
whose peak RSS is read back (ru_maxrss). A baseline child only imports the ingestion module,
so the difference is what the file costs. Appends a row to the "Memory per quarantined line"
table of benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_quarantine_memory.py --lines 2000000
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recording import append_result, git_commit, machine  # noqa: E402

CHILD = r"""
import json, resource, sys, time
from datetime import date
from pathlib import Path
from recsys_assets.core import contract as c
from recsys_assets.core.ingest import ingest_file
work, ingest = Path(sys.argv[1]), sys.argv[2] == "ingest"
out = {}
if ingest:
    known = {}
    for dim, ref in ((c.USERS, "user_id"), (c.ITEMS, "item_id")):
        src = work / f"{dim.name}.jsonl"
        src.write_text(json.dumps({ref: 1}) + "\n")
        path = work / f"{dim.asset_name}.parquet"
        ingest_file(dim, src, src.name, "snapshot", None, path, work / f"q_{dim.name}.parquet")
        known[ref] = str(path)
    t0 = time.perf_counter()
    r = ingest_file(c.IMPRESSIONS, work / "impressions.jsonl", "impressions.jsonl", "2026-01-05", date(2026, 1, 5),
                    work / "data.parquet", work / "quarantine.parquet", known_ids=known)
    out = {"seconds": time.perf_counter() - t0, "read": r.rows_read, "quarantined": r.rows_quarantined}
out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def child(work: Path, mode: str) -> dict:
    run = subprocess.run([sys.executable, "-c", CHILD, str(work), mode], capture_output=True, text=True, cwd=ROOT)
    if run.returncode:
        raise SystemExit(run.stderr)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_quarantine_"))
    (work / "impressions.jsonl").write_bytes(b"{}\n" * args.lines)
    size_mb = (work / "impressions.jsonl").stat().st_size / 1e6
    base = child(work, "import")
    run = child(work, "ingest")
    assert run["read"] == run["quarantined"] == args.lines, run
    extra = run["peak_mib"] - base["peak_mib"]
    per_line = extra * 2**20 / args.lines
    print(
        f"{args.lines:,} lines / {size_mb:.1f} MB: peak RSS {run['peak_mib']:,.0f} MiB "
        f"(imports alone {base['peak_mib']:,.0f} MiB; {per_line:,.0f} B per line), {run['seconds']:.1f} s"
    )
    if not args.no_record:
        row = (
            f"| {git_commit()} | `python benchmarks/bench_quarantine_memory.py --lines {args.lines}` | {machine()} | "
            f"{args.lines:,} lines of `{{}}` / {size_mb:.1f} MB | {run['peak_mib']:,.0f} MiB | "
            f"{base['peak_mib']:,.0f} MiB | {per_line:,.0f} B | {run['seconds']:.1f} s |"
        )
        append_result(row, "Memory per quarantined line")


if __name__ == "__main__":
    main()
