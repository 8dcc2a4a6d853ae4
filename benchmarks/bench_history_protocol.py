"""The held-out period of a long source, measured two ways on the same split in one run:

- the platform: the quickstart on MovieLens-100K into a temporary data root (or --data-root, a
  root it already built), read from its `holdout_evaluation` table: the recall models of
  Settings.evaluation_start (1998-03-07), trained on every rating before it, tested on every
  positive (rating >= 4) from that day to the end of the log;
- a plain script: u.data read with numpy, the same split by UTC day (train < evaluation_start,
  test = the rest), the same positives, consumed items (every earlier rating) removed from the
  ranking and from the relevant items, the same test users; implicit's ALS and a numpy EASE with
  hyperparameters picked on the last 20% (by time) of the training ratings, all-time and
  recency-weighted popularity; its own metric and bootstrap code (not the platform's).

Prints both side by side with 95% CIs and the ratio for warm users (a training positive), the
cold users' non-personalised lists (including the 7-day positives ranking the serving cold path
used before recent_popularity), the half-life grid behind recent_popularity's default, and
appends a row to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_history_protocol.py [--data-root DIR] [--ml100k DIR] [--no-record]
"""

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

SHARED = ROOT.parent / "shared"
K = 10
N_BOOT = 1000
SECTION = "Held-out period of a long source: platform vs a plain script"
HALF_LIVES = (1, 2, 3, 5, 7, 10, 14, 21, 30, 60, None)
ALS_GRID = [(f, r, a) for f in (32, 64, 128) for r in (1.0, 10.0, 30.0, 60.0) for a in (1.0, 5.0, 10.0)]
EASE_GRID = (50.0, 100.0, 200.0, 300.0, 500.0, 1000.0)


# ------------------------------------------------------------------------------- the platform
def platform_table(data_root: Path, source: Path) -> tuple[dict, str, float | None]:
    """The holdout_evaluation rows (model, segment, metric) -> row of a data root, built by the
    quickstart first when it has none; (rows, evaluation_start, quickstart seconds)."""
    from recsys_assets.settings import Settings

    table = data_root / "lake/holdout_evaluation/snapshot.parquet"
    seconds = None
    if not table.exists():
        from recsys_assets import quickstart

        started = time.perf_counter()
        argv = ["--source", "movielens", "--source-path", str(source), "--data-root", str(data_root)]
        if quickstart.main(argv) != 0:
            raise SystemExit("the quickstart failed")
        seconds = time.perf_counter() - started
    start = Settings.load(data_root=str(data_root)).evaluation_start
    if start is None:
        raise SystemExit(f"{data_root} has no held-out period (SOURCE.json without test_start)")
    rows = duckdb.connect().execute(f"SELECT * FROM read_parquet('{table}')").fetchall()
    names = [d[0] for d in duckdb.connect().execute(f"DESCRIBE SELECT * FROM read_parquet('{table}')").fetchall()]
    by_key = {}
    for values in rows:
        row = dict(zip(names, values, strict=True))
        by_key[(row["model"], row["segment"], row["metric"])] = row
    return by_key, start, seconds


# ------------------------------------------------------------------------------- a plain script
def utc_day(ts: np.ndarray) -> np.ndarray:
    return np.array([datetime.fromtimestamp(int(t), UTC).date().toordinal() for t in ts])


def per_user(scores: np.ndarray, consumed: sp.csr_matrix, relevant: sp.csr_matrix) -> dict[str, np.ndarray]:
    """NDCG, recall and precision at K of each row of `scores` (users × items, best first after
    the row's consumed items are removed), against the row's relevant items."""
    scores = np.array(scores, dtype=np.float64)
    rows = np.repeat(np.arange(consumed.shape[0]), np.diff(consumed.indptr))
    scores[rows, consumed.indices] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    hits = np.take_along_axis(relevant.toarray() > 0, top, axis=1)
    n_rel = np.asarray(relevant.sum(axis=1)).ravel()
    discount = 1.0 / np.log2(np.arange(2, K + 2))
    ideal = np.cumsum(discount)[np.minimum(n_rel, K).astype(int) - 1]
    return {
        "ndcg": (hits * discount).sum(axis=1) / ideal,
        "recall": hits.sum(axis=1) / n_rel,
        "precision": hits.sum(axis=1) / K,
    }


def bootstrap(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(N_BOOT, len(values)))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def popularity(ages: sp.csr_matrix, half_life: float | None) -> np.ndarray:
    """Per item: training positives, each weighted 0.5 ** (age in days / half_life) (1 without)."""
    weights = ages.copy()
    weights.data = np.ones_like(weights.data) if half_life is None else 0.5 ** (weights.data / half_life)
    return np.asarray(weights.sum(axis=0)).ravel()


def als_scores(x: sp.csr_matrix, users: np.ndarray, factors: int, reg: float, alpha: float) -> np.ndarray:
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=factors, regularization=reg, alpha=alpha, iterations=15, random_state=42, num_threads=1
    )
    model.fit(x.astype(np.float32), show_progress=False)
    return model.user_factors[users] @ model.item_factors.T


def ease_scores(x: sp.csr_matrix, users: np.ndarray, lam: float) -> np.ndarray:
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return x[users] @ b


class Split:
    """Ratings before `start` (ordinal day) for training, the rest held out, as the platform
    splits them: positives = rating >= 4; consumed = every earlier rating; relevant = later
    positives minus consumed; test users = users with a relevant item; warm = a training positive."""

    def __init__(self, ratings: np.ndarray, days: np.ndarray, start: int, end: int | None = None):
        n_users, n_items = int(ratings[:, 0].max()) + 1, int(ratings[:, 1].max()) + 1
        before = days < start
        later = (days >= start) & (days <= end if end is not None else True)

        def matrix(mask: np.ndarray, values=None) -> sp.csr_matrix:
            v = np.ones(mask.sum()) if values is None else values
            m = sp.csr_matrix((v, (ratings[mask, 0], ratings[mask, 1])), shape=(n_users, n_items))
            m.sum_duplicates()
            return m

        positive = ratings[:, 2] >= 4
        self.train = matrix(before & positive)
        self.train.data[:] = 1.0
        self.ages = matrix(before & positive, (start - 1 - days[before & positive]).astype(np.float64) + 1e-9)
        self.ages.data -= 1e-9  # stored ages of 0 days stay stored
        self.consumed = matrix(before)
        self.consumed.data[:] = 1.0
        held = matrix(later & positive)
        held.data[:] = 1.0
        relevant = (held - held.multiply(self.consumed)).tocsr()
        relevant.eliminate_zeros()
        self.users = np.flatnonzero(np.diff(relevant.indptr) > 0)
        self.relevant = relevant[self.users]
        self.warm = np.diff(self.train.indptr)[self.users] > 0
        self.start = start

    def evaluate(self, scores: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per-user metrics of `scores` (one row per user of `mask`, or one row for everyone)."""
        mask = np.ones(len(self.users), bool) if mask is None else mask
        users = self.users[mask]
        if scores.ndim == 1:
            scores = np.broadcast_to(scores, (len(users), len(scores)))
        return per_user(scores, self.consumed[users], self.relevant[mask])


def plain_script(u_data: Path, evaluation_start: str, item_features: Path | None) -> dict:
    """Every number of the plain script: picked hyperparameters, test results per model and segment."""
    ratings = np.loadtxt(u_data, dtype=np.int64, ndmin=2)
    days = utc_day(ratings[:, 3])
    start = date.fromisoformat(evaluation_start).toordinal()
    test = Split(ratings, days, start)
    # validation: the last 20% (by time) of the training ratings, cut at a day as the adapter cuts
    train_ts = ratings[days < start, 3]
    val_start = utc_day(np.quantile(train_ts, 0.8, method="inverted_cdf")[None])[0]
    val = Split(ratings, days, val_start, start - 1)
    out: dict = {"validation": f"{date.fromordinal(val_start)}..{date.fromordinal(start - 1)}"}

    grid = {}
    for half_life in HALF_LIVES:
        v = val.evaluate(popularity(val.ages, half_life))["ndcg"]
        grid[str(half_life)] = (float(v.mean()), float(v[val.warm].mean()), float(v[~val.warm].mean()))
    out["half_life_grid"] = grid
    best_half_life = max(HALF_LIVES, key=lambda h: grid[str(h)][0])
    out["half_life"] = best_half_life

    warm_val = np.flatnonzero(val.warm)
    val_users = val.users[warm_val]
    best_als = max(
        ALS_GRID,
        key=lambda p: val.evaluate(als_scores(val.train, val_users, *p), val.warm)["ndcg"].mean(),
    )
    best_ease = max(
        EASE_GRID, key=lambda lam: val.evaluate(ease_scores(val.train, val_users, lam), val.warm)["ndcg"].mean()
    )
    out["als"], out["ease"] = best_als, best_ease

    warm_users = test.users[test.warm]
    lists = {
        "popularity_all_time": popularity(test.ages, None),
        "recent_popularity": popularity(test.ages, best_half_life),
        "als": als_scores(test.train, warm_users, *best_als),
        "ease": ease_scores(test.train, warm_users, best_ease),
    }
    # the serving cold path before recent_popularity: positives of the 7 days before the day
    # (item_features.popularity_rank_7d with daily partitions), ties by item id
    recent = test.ages.copy()
    recent.data = (recent.data < 7).astype(np.float64)
    n_items = test.train.shape[1]
    lists["positives_7d"] = np.asarray(recent.sum(axis=0)).ravel() - np.arange(n_items) * 1e-9
    if item_features is not None and item_features.exists():  # the stored feature of the day, as it is
        stored = (
            duckdb.connect()
            .execute(f"SELECT item_id, popularity_rank_7d FROM read_parquet('{item_features}')")
            .fetchnumpy()
        )
        ranking = np.full(n_items, -np.inf)
        ranking[stored["item_id"]] = -stored["popularity_rank_7d"].astype(np.float64)
        lists["item_features_rank_7d"] = ranking
    results, cold_values = {}, {}
    for name, scores in lists.items():
        personal = scores.ndim == 2
        for segment, mask in (("warm", test.warm), ("cold", ~test.warm), ("all", np.ones(len(test.users), bool))):
            if personal and segment != "warm":
                continue
            values = test.evaluate(scores, test.warm) if personal else test.evaluate(scores, mask)
            for metric, v in values.items():
                results[(name, segment, metric)] = (float(v.mean()), *bootstrap(v), len(v))
            if segment == "cold":
                cold_values[name] = values["ndcg"]
    out["results"] = results
    # the cold path's choice: recent_popularity against each other list, paired on the cold users
    out["cold_vs_recent"] = {
        name: bootstrap(cold_values["recent_popularity"] - v)
        for name, v in cold_values.items()
        if name != "recent_popularity"
    }
    out["users"] = {"warm": int(test.warm.sum()), "cold": int((~test.warm).sum())}
    return out


# ------------------------------------------------------------------------------- side by side
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", help="a data root the quickstart built on ml-100k (default: a new temporary one)")
    ap.add_argument("--ml100k", default=str(SHARED / "data/ml-100k"), help="the ml-100k folder (default: ../shared)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    source = Path(args.ml100k).resolve()
    if not (source / "u.data").exists():
        print(f"skipped: {source} is not available (the dataset cannot be redistributed)")
        return
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        data_root = Path(args.data_root).resolve() if args.data_root else Path(tmp) / "data"
        platform, start, quickstart_s = platform_table(data_root, source)
        started = time.perf_counter()
        plain = plain_script(source / "u.data", start, data_root / f"lake/item_features/{start}.parquet")
        plain_s = time.perf_counter() - started

    test_end = next(iter(platform.values()))["test_end"]
    n = {s: platform[("popularity_all_time", s, "ndcg")]["n_users"] for s in ("warm", "cold")}
    print(
        f"\nsplit: train < {start}, test {start}..{test_end}; platform {n['warm']} warm / {n['cold']} cold test "
        f"users, plain script {plain['users']['warm']} / {plain['users']['cold']}"
    )
    if n != plain["users"]:
        print("  warning: the two sides do not have the same test users")
    print(f"plain script: validation {plain['validation']}, ALS {plain['als']}, EASE lambda {plain['ease']}")
    print("recent popularity half-life on validation, NDCG@10 all / warm / cold users:")
    for h, (a, w, c) in plain["half_life_grid"].items():
        print(f"  {h:>5}: {a:.4f} / {w:.4f} / {c:.4f}")

    def cell(row) -> str:
        return f"{row[0]:.4f} [{row[1]:.4f}, {row[2]:.4f}]"

    print(f"\nwarm users, NDCG@10 [95% CI]\n{'model':24s} {'platform':28s} {'plain script':28s} ratio")
    warm = {m: r for (m, s, metric), r in platform.items() if s == "warm" and metric == "ndcg"}
    for model, row in sorted(warm.items(), key=lambda kv: -kv[1]["value"]):
        mine = plain["results"].get((model, "warm", "ndcg"))
        theirs = cell((row["value"], row["ci_low"], row["ci_high"]))
        print(
            f"{model:24s} {theirs:28s} {cell(mine) if mine else '':28s} "
            + (f"{row['value'] / mine[0]:.3f}" if mine else "")
        )
    learned = [m for m in warm if m not in ("popularity", "popularity_all_time", "recent_popularity", "content")]
    learned = [m for m in learned if not m.startswith("fusion")]
    best_platform = max(learned, key=lambda m: warm[m]["value"])
    best_plain = max(("als", "ease"), key=lambda m: plain["results"][(m, "warm", "ndcg")][0])
    best_any = max(warm, key=lambda m: warm[m]["value"])
    plain_any = max(
        ("als", "ease", "popularity_all_time", "recent_popularity"),
        key=lambda m: plain["results"][(m, "warm", "ndcg")][0],
    )
    ratio = warm[best_platform]["value"] / plain["results"][(best_plain, "warm", "ndcg")][0]
    ratio_any = warm[best_any]["value"] / plain["results"][(plain_any, "warm", "ndcg")][0]
    print(
        f"\nbest learned model: platform {best_platform} {warm[best_platform]['value']:.4f}, plain {best_plain} "
        f"{plain['results'][(best_plain, 'warm', 'ndcg')][0]:.4f}: ratio {ratio:.3f} "
        f"({'within' if ratio >= 0.98 else 'NOT within'} 2%)"
    )
    print(
        f"best of all:        platform {best_any} {warm[best_any]['value']:.4f}, plain {plain_any} "
        f"{plain['results'][(plain_any, 'warm', 'ndcg')][0]:.4f}: ratio {ratio_any:.3f}"
    )
    beats = [m for m in learned if (warm[m]["diff_vs_recent_ci_low"] or 0) > 0]
    print(f"learned models above recent_popularity (paired CI > 0): {beats or 'none'}")

    print("\ncold users, NDCG@10 [95% CI] (non-personalised lists; plain script)")
    cold = {m: r for (m, s, metric), r in plain["results"].items() if s == "cold" and metric == "ndcg"}
    for model, row in sorted(cold.items(), key=lambda kv: -kv[1][0]):
        on_platform = platform.get((model, "cold", "ndcg"))
        paired = plain["cold_vs_recent"].get(model)
        print(
            f"{model:24s} {cell(row):28s} "
            + (f"platform {on_platform['value']:.4f} " if on_platform else "")
            + (f"recent_popularity minus it: 95% CI [{paired[0]:+.4f}, {paired[1]:+.4f}]" if paired else "")
        )
    print(f"\nplatform: quickstart {quickstart_s or 0:.0f} s (0 = reused); plain script {plain_s:.0f} s")

    if not args.no_record:
        row = " <br> ".join(
            f"{m} {warm[m]['value']:.4f} [{warm[m]['ci_low']:.4f}, {warm[m]['ci_high']:.4f}]"
            for m in sorted(warm, key=lambda m: -warm[m]["value"])
        )
        mine = " <br> ".join(
            f"{m} {r[0]:.4f} [{r[1]:.4f}, {r[2]:.4f}]"
            for m, r in sorted(
                ((m, plain["results"][(m, "warm", "ndcg")]) for m in ("recent_popularity", "als", "ease")),
                key=lambda kv: -kv[1][0],
            )
            + [("popularity_all_time", plain["results"][("popularity_all_time", "warm", "ndcg")])]
        )
        cold_line = ", ".join(f"{m} {r[0]:.4f}" for m, r in sorted(cold.items(), key=lambda kv: -kv[1][0]))
        append_result(
            f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `python benchmarks/bench_history_protocol.py` | "
            f"{machine()} | train < {start}, test {start}..{test_end}: {n['warm']} warm / {n['cold']} cold users | "
            f"{row} | {mine} | learned {best_platform}/{best_plain} {ratio:.3f}; best {best_any}/{plain_any} "
            f"{ratio_any:.3f} | {cold_line} | ALS `{json.dumps(plain['als'])}`, EASE λ {plain['ease']}, "
            f"half-life {plain['half_life']} |",
            section=SECTION,
        )


if __name__ == "__main__":
    main()
