"""The ranker on a real impression log: the trivago RecSys Challenge 2019 sample
(../shared/data/trivago-recsys2019-100k, two days). One command runs the platform on it
(`quickstart --source trivago`: adapter, raw, features, recall, ranking), then reads the
slate scope of funnel_evaluation for 2018-11-08: the clickouts of the test day whose clicked
item is in the shown list, re-ordered by popularity-by-position, the shown order, the
session-first heuristic, recall RRF and the ranker (trained on 2018-11-07 only; settings and
rounds chosen on its last 20% of requests by time, then refitted on all of them), MRR of the
clicked item. Reference numbers of the dataset README (plain script, same protocol): shown
order 0.451, popularity 0.360, session-history-first 0.601.

Then the feature-family ablation: the platform's ranker trained the same way on the same
samples with one family blanked (set to null, so no tree can split on it), scored on the same
test slates. Skips if ../shared is absent.

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
import polars as pl  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.core import metrics  # noqa: E402
from recsys_assets.core.ranking import features as F  # noqa: E402
from recsys_assets.core.ranking import funnel  # noqa: E402
from recsys_assets.core.ranking import ranker as ranker_lib  # noqa: E402
from recsys_assets.core.ranking import session_features as S  # noqa: E402
from recsys_assets.core.storage import read_arrow  # noqa: E402
from recsys_assets.settings import SHORT_LOG_PARAM_GRID, RankingConfig  # noqa: E402

TRAIN_DAY, TEST_DAY = "2018-11-07", "2018-11-08"
# start-of-day features (user, item, genre crosses, recall channels) vs the request-time ones
FAMILIES = {
    "session x item": S.SESSION_ITEM,
    "session": S.SESSION,
    "list": S.LIST,
    "all request-time": S.SESSION_NUMERIC,
}


def ablation(lake: Path) -> list[tuple[str, float, float, float]]:
    """(family left out, test MRR, CI low, CI high) for the ranker trained as the platform
    trains a short log's ranker, with each family blanked; "none" = every feature."""
    settings = RankingConfig()
    train = pl.read_parquet(lake / "ranking_samples" / f"{TRAIN_DAY}.parquet")
    test = pl.read_parquet(lake / "ranking_samples" / f"{TEST_DAY}.parquet").filter(pl.col("kind") == "impressions")
    channels = tuple(c for c in settings.channels if f"score_{c}" in train.columns)
    dictionary = read_arrow(lake / "hash_dictionaries" / "snapshot.parquet")
    out = []
    for family, columns in {"none": (), **FAMILIES}.items():
        blank = [pl.lit(None, pl.Float32).alias(c) for c in columns]
        rows, shown = train.with_columns(blank), test.with_columns(blank)
        fit, valid = ranker_lib.split_requests(rows, settings.valid_fraction, settings.seed)
        model = ranker_lib.train(
            fit,
            valid,
            dictionary,
            channels,
            params={
                "learning_rate": settings.learning_rate,
                "num_leaves": settings.num_leaves,
                "max_depth": settings.max_depth,
                "min_data_in_leaf": settings.min_data_in_leaf,
            },
            num_boost_round=settings.num_boost_round,
            early_stopping_rounds=settings.early_stopping_rounds,
            seed=settings.seed,
            param_grid=SHORT_LOG_PARAM_GRID,
            refit=True,
            rank_depth=int(train["rank_depth"][0]),
        )
        per = funnel.slate_metrics(shown.with_columns(pl.Series("s", model.score(shown))), {"s": "s"})["s"]["mrr"]
        lo, hi = metrics.bootstrap_ci(per, n_boot=1000, seed=0)
        out.append((family, float(per.mean()), lo, hi))
        print(f"ablation: without {family:18s} MRR {per.mean():.4f} [{lo:.4f}, {hi:.4f}]")
    assert set(F.numeric_features(())) >= set(S.SESSION_NUMERIC)
    return out


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
    ablated = ablation(work / "data" / "lake")
    if not args.no_record:
        cells = " <br> ".join(
            f"{s} {v:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if lo is not None else "")
            for s, (v, lo, hi) in sorted(mrr.items(), key=lambda kv: -kv[1][0])
        )
        n = next(r[8] for r in rows if r[0] == "ranker" and r[1] == "mrr")
        ablation_cells = " <br> ".join(f"without {f}: {v:.4f} [{lo:.4f}, {hi:.4f}]" for f, v, lo, hi in ablated)
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_trivago.py` | "
            f"{machine()} | {n} | {cells} | {ablation_cells} | {meta[0][0] if meta else ''} | "
            f"shown 0.451, popularity 0.360, session-first 0.601 | {total:.0f}s |",
            section="Ranker on the trivago",
        )


if __name__ == "__main__":
    main()
