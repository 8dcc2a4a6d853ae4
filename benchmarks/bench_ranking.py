"""Ranking stage on the default synthetic data: the funnel of the last day (recall-only vs
ranker vs ranker + re-rank, NDCG@10 with paired 95% CIs; the shown slates re-ordered, MRR vs
popularity-by-position), the wall time of each ranking asset, and the online path's latency
per stage (p50 / p95 over known and unknown users) against the recall stage alone.

    .venv/bin/python benchmarks/bench_ranking.py [--days 14] [--data-root DIR] [--no-record]

--data-root reuses a materialized data root (e.g. the quickstart's ./data) instead of
generating a fresh one; the last day with a published ranker is measured.
"""

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.core.generator import GeneratorConfig, generate  # noqa: E402
from recsys_assets.definitions import build_defs, build_resources  # noqa: E402
from recsys_assets.quickstart import materialize_all  # noqa: E402
from recsys_assets.services.online import OnlineRecommender  # noqa: E402

RANKING_ASSETS = ("ranking_samples", "ranker", "funnel_evaluation", "recommendations")


def asset_times(root: Path, day: str) -> dict[str, float]:
    """Wall time of each ranking asset for `day`, materialized one at a time (in process)."""
    defs = build_defs(resources=build_resources(str(root)))
    by_name = {a.key.path[-1]: a for a in defs.assets if a.key.path[-1] in RANKING_ASSETS}
    out = {}
    instance = dg.DagsterInstance.ephemeral()
    for name in RANKING_ASSETS:
        started = time.perf_counter()
        result = dg.materialize(
            [by_name[name]],
            partition_key=day,
            resources=build_resources(str(root)),
            instance=instance,
            selection=[name],
        )
        assert result.success, name
        out[name] = time.perf_counter() - started
    return out


def serving_latency(root: Path, day: str, n_known: int = 200, n_unknown: int = 50, res=None) -> tuple[dict, float]:
    """p50 / p95 per stage (ms) of OnlineRecommender.recommend over `n_known` users served on
    `day` and `n_unknown` unknown ones, and the recommender's load time (s)."""
    res = res or build_resources(str(root))
    started = time.perf_counter()
    online = OnlineRecommender(res["storage"], res["model_store"], res["ranking"], res["recall"], day=day)
    load = time.perf_counter() - started
    users = pl.read_parquet(res["storage"].partition_path("recommendations", day))["user_id"].unique().sort()
    known = users.sample(min(n_known, users.len()), seed=0).to_list()
    unknown = [10**9 + k for k in range(n_unknown)]
    timings: dict[str, list[float]] = {}
    for user in known + unknown:
        answer = online.recommend(user, k=10, explain=True)
        for stage, ms in answer.timings_ms.items():
            timings.setdefault(stage, []).append(ms)
    return {s: (float(np.percentile(v, 50)), float(np.percentile(v, 95))) for s, v in timings.items()}, load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if args.data_root:
        root = Path(args.data_root).resolve()
        command = f"python benchmarks/bench_ranking.py --data-root {args.data_root}"
    else:
        root = Path(tempfile.mkdtemp(prefix="bench_ranking_"))
        generate(GeneratorConfig(days=args.days), root)
        days = [d.isoformat() for d in GeneratorConfig(days=args.days).dates]
        started = time.perf_counter()
        materialize_all(
            build_defs(resources=build_resources(str(root))), days, dg.DagsterInstance.ephemeral(), model_days=4
        )
        print(f"whole pipeline (models for the last 4 days): {time.perf_counter() - started:.0f}s")
        command = f"python benchmarks/bench_ranking.py --days {args.days}"
    day = sorted(p.name for p in (root / "models" / "ranker").iterdir() if not p.name.startswith("."))[-1]
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    rows = con.execute(
        """SELECT scope, stage, metric, value, ci_low, ci_high, diff, diff_ci_low, diff_ci_high, n
                          FROM funnel_evaluation WHERE day = ? ORDER BY scope, metric, value DESC""",
        [day],
    ).fetchall()
    con.close()
    times = asset_times(root, day)
    latency, load = serving_latency(root, day)

    print(f"day {day}")
    print("scope   stage           metric   value   95% CI             diff vs baseline [95% CI]")
    for scope, stage, metric, v, lo, hi, d, dlo, dhi, _n in rows:
        if metric in ("ndcg", "mrr", "recall", "auc", "logloss", "intra_list_similarity", "coverage"):
            ci = f"[{lo:.4f}, {hi:.4f}]" if lo is not None else ""
            diff = f"{d:+.4f} [{dlo:+.4f}, {dhi:+.4f}]" if d is not None else ""
            print(f"{scope:7s} {stage:15s} {metric:8s} {v:.4f}  {ci:18s} {diff}")
    print("asset times: " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
    recall_p50 = latency["recall_ms"][0]
    print(
        f"online path (load {load:.1f}s): "
        + ", ".join(f"{k} p50 {p50:.1f} ms / p95 {p95:.1f} ms" for k, (p50, p95) in latency.items())
        + f"; total / recall stage alone at p50 = {latency['total_ms'][0] / recall_p50:.2f}x"
    )

    if not args.no_record:

        def get(scope, stage, metric):
            return next(r for r in rows if r[0] == scope and r[1] == stage and r[2] == metric)

        funnel = " <br> ".join(
            f"{s} {get('funnel', s, 'ndcg')[3]:.4f} [{get('funnel', s, 'ndcg')[4]:.4f}, {get('funnel', s, 'ndcg')[5]:.4f}]"
            + (
                ""
                if s == "recall_only"
                else f" (diff {get('funnel', s, 'ndcg')[6]:+.4f} "
                f"[{get('funnel', s, 'ndcg')[7]:+.4f}, {get('funnel', s, 'ndcg')[8]:+.4f}])"
            )
            for s in ("recall_only", "ranker", "ranker_rerank")
        )
        slates = " <br> ".join(
            f"{s} {get('slates', s, 'mrr')[3]:.4f} [{get('slates', s, 'mrr')[4]:.4f}, {get('slates', s, 'mrr')[5]:.4f}]"
            for s in ("popularity", "shown_order", "session_first", "recall_rrf", "ranker")
        )
        auc = get("slates", "ctr_binary", "auc")[3]
        ll = get("slates", "ctr_binary", "logloss")[3]
        ll0 = get("slates", "constant_ctr", "logloss")[3]
        ils = " / ".join(
            f"{get('funnel', s, 'intra_list_similarity')[3]:.3f}" for s in ("recall_only", "ranker", "ranker_rerank")
        )
        lat = ", ".join(f"{k.removesuffix('_ms')} {p50:.1f}/{p95:.1f}" for k, (p50, p95) in latency.items())
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `{command}` | {machine()} | {day} | "
            f"{funnel} | {ils} | {slates} | AUC {auc:.4f}, LogLoss {ll:.4f} (constant {ll0:.4f}) | "
            + ", ".join(f"{k} {v:.1f}s" for k, v in times.items())
            + f" | {lat} ms (load {load:.1f}s) |",
            section="Ranking funnel",
        )


if __name__ == "__main__":
    main()
