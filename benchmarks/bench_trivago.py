"""The ranker on a real impression log: the trivago RecSys Challenge 2019 sample
(../shared/data/trivago-recsys2019-100k, two days). One command runs the platform on it
(`quickstart --source trivago`: adapter, raw, features, recall, ranking), then reads the
slate scope of funnel_evaluation for 2018-11-08: the clickouts of the test day whose clicked
item is in the shown list, re-ordered by popularity-by-position, the shown order, recall RRF
and the ranker (trained on 2018-11-07 only, early-stopped on 20% of its requests), MRR of the
clicked item. Reference numbers of the dataset README (plain script, same protocol): shown
order 0.451, popularity 0.360, session-history-first 0.601. Skips if ../shared is absent.

    .venv/bin/python benchmarks/bench_trivago.py [--no-record]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "trivago-recsys2019-100k"
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

TEST_DAY = "2018-11-08"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if not SOURCE.exists():
        print(f"skipped: {SOURCE} is not available (the dataset is not redistributed)")
        return
    work = Path(tempfile.mkdtemp(prefix="bench_trivago_"))
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys_assets.quickstart",
            "--source",
            "trivago",
            "--source-path",
            str(SOURCE),
            "--data-root",
            str(work / "data"),
            "--model-days",
            "2",
        ],
        cwd=work,
        check=True,
        env={**os.environ, "DAGSTER_HOME": str(work / "dagster_home")},
        capture_output=True,
    )
    total = time.perf_counter() - started
    con = duckdb.connect(str(work / "data" / "warehouse.duckdb"), read_only=True)
    rows = con.execute(
        """SELECT stage, metric, value, ci_low, ci_high, diff, diff_ci_low, diff_ci_high, n
                          FROM funnel_evaluation WHERE scope = 'slates' AND day = ? ORDER BY metric, value DESC""",
        [TEST_DAY],
    ).fetchall()
    meta = con.execute("SELECT decision, reason FROM ranker_champion WHERE day = ?", [TEST_DAY]).fetchall()
    con.close()
    if not rows:
        raise SystemExit(f"no slate evaluation for {TEST_DAY}: was a ranker trained? see {work}")
    print(f"trivago sample, test day {TEST_DAY} (whole run {total:.0f}s, data in {work})")
    for stage, metric, v, lo, hi, d, dlo, dhi, n in rows:
        ci = f"[{lo:.4f}, {hi:.4f}]" if lo is not None else ""
        diff = f"{d:+.4f} [{dlo:+.4f}, {dhi:+.4f}] vs popularity" if d is not None else ""
        print(f"{stage:14s} {metric:8s} {v:.4f} {ci:18s} {diff}  (n={n})")
    print(f"ranker promotion on {TEST_DAY}: {meta}")
    mrr = {stage: (v, lo, hi) for stage, metric, v, lo, hi, *_ in rows if metric == "mrr"}
    if not args.no_record:
        cells = " <br> ".join(
            f"{s} {v:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if lo is not None else "")
            for s, (v, lo, hi) in sorted(mrr.items(), key=lambda kv: -kv[1][0])
        )
        n = next(r[8] for r in rows if r[0] == "ranker" and r[1] == "mrr")
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_trivago.py` | "
            f"{machine()} | {n} | {cells} | shown 0.451, popularity 0.360, session-first 0.601 | "
            f"{total:.0f}s |",
            section="Ranker on the trivago",
        )


if __name__ == "__main__":
    main()
