"""The oracle ceiling on the default synthetic data: how far each model is from the best possible.

The generator knows every user's true tastes; `generator.true_positive_rates()` turns its latent
truth (tastes, popularity, quality, how slates are drawn, clicks, plays, completion) into the
expected number of positives of each (user, item) on a day, without reading any log. The oracle
ranks the full catalog by it, with exactly the exclusions the models get (training positives,
items consumed before the day, items not yet available), and is scored under the same protocol
as recall_evaluation (the day's held-out positives, NDCG@10 and Recall@10 per test user). Each
model's value, and the final lists' (funnel_evaluation, ranker + re-rank), is reported as a
share of the oracle's on the same day.

    .venv/bin/python benchmarks/bench_oracle.py [--data-root DIR] [--days 14] [--model-days 8] [--no-record]

--data-root reuses a quickstart data root built with the default generator settings (the
quickstart's ./data); without it one is generated and materialized first (~5 min; with the
quickstart's --model-days, 8 by default: the last ranker learns from 4 sample days, as a
platform that has run for a while does).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.core import metrics  # noqa: E402
from recsys_assets.core.generator import GeneratorConfig, true_positive_rates  # noqa: E402
from recsys_assets.core.training_data import seen_matrix  # noqa: E402
from recsys_assets.quickstart import DEFAULT_MODEL_DAYS  # noqa: E402
from recsys_assets.services.funnel_evaluation import funnel_truth  # noqa: E402
from recsys_assets.services.lake import Lake  # noqa: E402
from recsys_assets.services.model_store import ModelStore  # noqa: E402
from recsys_assets.services.serving import feature_context, load_ranker  # noqa: E402
from recsys_assets.services.training import load_day  # noqa: E402
from recsys_assets.settings import Settings  # noqa: E402

K = 10


def oracle_lists(settings: Settings, lake: Lake, store: ModelStore, day: str, config: GeneratorConfig):
    """(oracle top-K in dictionary indices for the day's test users, their relevant items, their
    user ids)."""
    first = str(settings.start_date)
    data, test, info, _, _ = load_day(lake, day, settings.recall, first, model_store=store)
    users = pl.read_parquet(lake.partition_path("user_id_dictionary")).select("id", "index")
    items = pl.read_parquet(lake.partition_path("item_id_dictionary")).select("id", "index")
    truth = true_positive_rates(config, day)
    scores = np.full((data.n_users, data.n_items), -np.inf)
    u_ids, u_idx = users["id"].to_numpy(), users["index"].to_numpy()
    i_ids, i_idx = items["id"].to_numpy(), items["index"].to_numpy()
    keep_u = (u_idx < data.n_users) & (u_ids < truth.shape[0])
    keep_i = (i_idx < data.n_items) & (i_ids < truth.shape[1])
    scores[np.ix_(u_idx[keep_u], i_idx[keep_i])] = truth[np.ix_(u_ids[keep_u], i_ids[keep_i])]
    exclude = seen_matrix(data.positives, info["consumed"])
    scores = scores[test.users]
    rows = exclude[test.users]
    for r in range(len(test.users)):  # the same exclusions as every model
        scores[r, rows.indices[rows.indptr[r] : rows.indptr[r + 1]]] = -np.inf
    scores[:, np.flatnonzero(~info["available_items"])] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    index_to_id = np.full(data.n_users, -1, np.int64)
    index_to_id[u_idx[u_idx < data.n_users]] = u_ids[u_idx < data.n_users]
    return top, test.relevant[test.users], index_to_id[test.users]


def funnel_user_ids(settings: Settings, lake: Lake, store: ModelStore, day: str) -> np.ndarray:
    """The user ids funnel_evaluation scores on `day` (test users with recall candidates), found
    by the asset's own code."""
    first = str(settings.start_date)
    model = load_ranker(store, day)
    ctx = feature_context(lake, store, day, model.channel_names, settings.recall, model.rank_depth, first)
    _, users, _, _ = funnel_truth(day, lake, store, settings.recall, settings.ranking, ctx, first)
    return users


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", type=Path)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument(
        "--model-days", type=int, default=DEFAULT_MODEL_DAYS, help="the quickstart's, when no --data-root is given"
    )
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    started = time.perf_counter()
    root = args.data_root
    if root is None:
        work = Path(tempfile.mkdtemp(prefix="bench_oracle_"))
        root = work / "data"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "recsys_assets.quickstart",
                "--data-root",
                str(root),
                "--days",
                str(args.days),
                "--model-days",
                str(args.model_days),
            ],
            cwd=work,
            check=True,
            env={**os.environ, "DAGSTER_HOME": str(work / "dagster_home")},
            capture_output=True,
        )
    settings = Settings.load(data_root=str(root))
    lake = Lake(data_root=settings.data_root)
    store = ModelStore(models_root=settings.models_root, cache_dir=settings.model_cache)
    config = GeneratorConfig(days=args.days)
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    model_rows = con.execute(
        """SELECT CAST(day AS VARCHAR), model, value, n_users FROM recall_evaluation
           WHERE segment = 'all' AND metric = 'ndcg' AND k = ? ORDER BY day, value DESC""",
        [K],
    ).fetchall()
    final_rows = dict(
        ((d, s), (v, n))
        for d, s, v, n in con.execute(
            "SELECT CAST(day AS VARCHAR), stage, value, n FROM funnel_evaluation WHERE scope = 'funnel' AND metric = 'ndcg' AND k = ?",
            [K],
        ).fetchall()
    )
    con.close()
    days = sorted({d for d, *_ in model_rows})
    if not days:
        raise SystemExit(f"{root}: no recall_evaluation rows (run the quickstart first)")
    report = []
    for day in days:
        top, relevant, user_ids = oracle_lists(settings, lake, store, day, config)
        per_user = metrics.per_user_metrics(top, relevant, K)
        oracle = float(per_user[f"ndcg@{K}"].mean())
        lo, hi = metrics.bootstrap_ci(per_user[f"ndcg@{K}"], n_boot=1000, seed=0)
        print(f"{day}: oracle NDCG@{K} {oracle:.4f} [{lo:.4f}, {hi:.4f}] over {len(top)} test users")
        shares = {}
        for d, model, value, n in model_rows:
            if d == day:
                shares[model] = value / oracle
                print(f"  {model:26s} {value:.4f}  {value / oracle:6.1%} of the oracle (n={n})")
        funnel_oracle = oracle
        if any((day, stage) in final_rows for stage in ("ranker", "ranker_rerank")):
            # the funnel scores the test users with recall candidates only (users new on D have
            # none and are served the cold path), so its lists are compared with the oracle on
            # exactly those users
            funnel_users = np.isin(user_ids, funnel_user_ids(settings, lake, store, day))
            funnel_oracle = float(per_user[f"ndcg@{K}"][funnel_users].mean())
            print(f"  oracle on the funnel's {int(funnel_users.sum())} users: NDCG@{K} {funnel_oracle:.4f}")
        for stage in ("ranker", "ranker_rerank"):
            if (day, stage) in final_rows:
                value, n = final_rows[(day, stage)]
                shares[f"final:{stage}"] = value / funnel_oracle
                print(
                    f"  final lists ({stage:13s}) {value:.4f}  {value / funnel_oracle:6.1%} of the oracle on the same "
                    f"users (n={n}; {value / oracle:.1%} of the all-test-users oracle)"
                )
        report.append((day, oracle, lo, hi, shares))
    total = time.perf_counter() - started
    last_day, oracle, lo, hi, shares = report[-1]
    best = max(shares, key=lambda m: shares[m])
    print(f"best on {last_day}: {best} at {shares[best]:.1%} of the oracle ({total:.0f}s)")
    if not args.no_record:
        command_args = " --data-root <quickstart root>" if args.data_root else ""
        command_args += (
            f" --model-days {args.model_days}" if args.model_days != DEFAULT_MODEL_DAYS and not args.data_root else ""
        )
        cells = " <br> ".join(f"{m} {s:.1%}" for m, s in sorted(shares.items(), key=lambda kv: -kv[1]))
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_oracle.py{command_args}` | "
            f"{machine()} | "
            f"{last_day} | {oracle:.4f} [{lo:.4f}, {hi:.4f}] | {cells} | "
            + ", ".join(f"{d} {o:.4f}" for d, o, *_ in report)
            + " |",
            section="Oracle ceiling",
        )


if __name__ == "__main__":
    main()
