"""The MovieLens CSV path at ml-32m scale, on a generated release folder in the ml-32m
format (the real one is not on this machine, and its licence keeps it out of the project).

    .venv/bin/python benchmarks/bench_ml32m.py [--ratings 32000000] [--workdir /tmp/ml32m]
        [--model-days 1] [--feature-days N] [--no-record]

Stages, each with wall time, peak RSS, rows and rows/s:

1. generate  `ratings.csv` (userId,movieId,rating,timestamp; sorted by user, movie; one
   rating per pair), `movies.csv` (movieId,title,genres; titles `Name (1995)`, quoted when
   they hold a comma; `|`-joined genres or `(no genres listed)`), `tags.csv` — numpy +
   DuckDB, no per-rating Python. Sizes follow ml-32m (32,000,204 ratings, 200,948 users,
   87,585 movies, ~2M tags): users = ratings / 159.2, movies = 87,585 x sqrt(ratings / 32M),
   tags = ratings / 16. Zipf movie popularity, lognormal user activity (>= 20 ratings each,
   like MovieLens), each user rating in bursts after a join time drawn over 1995-01-09 ..
   2023-10-12 with growth; ratings in half stars from 2003-02-18 (whole stars before, as
   MovieLens), mean ~3.5. `BAD_LINES` malformed rating lines are appended (their day is
   readable), so the reject path runs at scale too.
2. adapt     `python -m recsys_assets.adapt movielens <folder> --data-root <root>`, as a user
   runs it (a child process; peak RSS from its rusage).
3. Dagster, in process (one run per asset, like bench_tiers.py): `raw_users`, `raw_items`,
   then `raw_impressions`, `raw_events`, `raw_watch_stats` and the feature assets over every
   day of the history as range runs, the id dictionaries, and `recall_als` for the last
   `--model-days` days. `--feature-days N` limits the daily assets to the last N days (for a
   quick look; the row then says so).

Every stage's numbers go to benchmarks/results/ml32m_<ratings>_<commit>.md and one row to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
warnings.filterwarnings("ignore")

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from recording import PeakRSS  # noqa: E402  (no recsys_assets import: safe before RECSYS_START_DATE is set)

ML32M = dict(ratings=32_000_204, users=200_948, movies=87_585, tags=2_000_072)
FIRST_TS = int(datetime(1995, 1, 9, 11, 46, 44, tzinfo=UTC).timestamp())
LAST_TS = int(datetime(2023, 10, 12, 23, 29, 14, tzinfo=UTC).timestamp())
HALF_STARS_FROM = int(datetime(2003, 2, 18, tzinfo=UTC).timestamp())
GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
WORDS = (
    "Love",
    "Night",
    "Man",
    "Story",
    "Last",
    "City",
    "Dark",
    "Life",
    "Dead",
    "Girl",
    "Home",
    "War",
    "King",
    "Blue",
    "Time",
    "House",
    "World",
    "Star",
    "Secret",
    "Summer",
    "Road",
    "Game",
    "Heart",
    "Island",
    "Dream",
)
TAG_WORDS = (
    "atmospheric",
    "funny",
    "sci-fi",
    "twist ending",
    "visually appealing",
    "dark comedy",
    "classic",
    "based on a book",
    "thought-provoking",
    "surreal",
    "Netflix queue",
    "quirky",
    "action",
    "romance",
    "superhero",
    "dystopia",
    "time travel",
    "cult film",
    "great soundtrack",
    "predictable",
    "boring",
    "In Netflix queue",
    "Oscar (Best Picture)",
    "violence",
    "stylized",
    "philosophical",
    "World War II",
)
# Malformed rating lines appended to ratings.csv (the adapter lists each in _adapter_rejects.jsonl
# and writes a contract-breaking record, quarantined by raw ingestion): (line, quarantined as).
BAD_LINES = (("1,{item},four,{ts}", "wrong_type:value"), ("u7,{item},4.0,{ts}", "wrong_type:user_id"))


# ------------------------------------------------------------------------------------------
# 1. the generated release
# ------------------------------------------------------------------------------------------


def sizes(n_ratings: int) -> dict:
    users = max(50, round(n_ratings * ML32M["users"] / ML32M["ratings"]))
    movies = max(500, round(ML32M["movies"] * (n_ratings / ML32M["ratings"]) ** 0.5))
    return dict(
        ratings=n_ratings, users=min(users, max(1, n_ratings // 20)), movies=movies, tags=max(10, n_ratings // 16)
    )


def _growth_times(rng, n: int, span: float) -> np.ndarray:
    """n times in [0, span): density a + exp(g t / span) (the service grows), by inverse CDF."""
    grid = np.linspace(0.0, 1.0, 4097)
    density = 0.35 + np.exp(2.2 * grid)
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    cdf /= cdf[-1]
    return np.interp(rng.random(n), cdf, grid) * span


def _user_counts(rng, n_users: int, n_ratings: int, cap: int) -> np.ndarray:
    """Ratings per user: >= 20 each, the rest shared by lognormal weights, capped (sums to n_ratings)."""
    floor = min(20, n_ratings // n_users)
    weights = rng.lognormal(0.0, 1.25, n_users)
    counts = floor + np.floor((n_ratings - floor * n_users) * weights / weights.sum()).astype(np.int64)
    counts = np.minimum(counts, cap)
    rest = n_ratings - counts.sum()
    while rest > 0:  # hand the rounding rest (and anything above the cap) to users below the cap
        room = np.flatnonzero(counts < cap)
        take = rng.choice(room, size=min(rest, len(room)), replace=False)
        counts[take] += 1
        rest -= len(take)
    return counts


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    keys.sort()  # (np.unique hashes first in numpy 2.x: several times slower on int64 keys)
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])]


def generate_ratings(n_ratings: int, seed: int = 32) -> tuple[dict, dict]:
    """Columns of ratings.csv (sorted by user, movie; unique pairs) and of movies.csv."""
    rng = np.random.default_rng(seed)
    size = sizes(n_ratings)
    n_users, n_movies = size["users"], size["movies"]
    # movie ids: sparse and increasing like MovieLens (1 .. ~3.3x the count); popularity rank random
    movie_ids = np.sort(rng.choice(np.arange(1, int(n_movies * 3.3) + 2), size=n_movies, replace=False)).astype(
        np.int64
    )
    rank = rng.permutation(n_movies)
    pop = 1.0 / (rank + 8.0) ** 1.05
    cdf = np.cumsum(pop) / pop.sum()
    quality = rng.normal(0.0, 0.45, n_movies)
    counts = _user_counts(rng, n_users, n_ratings, cap=max(20, n_movies // 3))

    users = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    items = np.minimum(np.searchsorted(cdf, rng.random(len(users))), n_movies - 1)
    keys = _sorted_unique(users * n_movies + items)
    for round_ in range(100):  # duplicates (a user drawing a movie twice): redraw the missing ones
        have = np.bincount(keys // n_movies, minlength=n_users)
        missing = counts - have
        if not missing.any():
            break
        more_users = np.repeat(np.arange(n_users, dtype=np.int64), missing)
        if round_ < 6:
            more_items = np.minimum(np.searchsorted(cdf, rng.random(len(more_users))), n_movies - 1)
        else:  # the head of a heavy user is exhausted: uniform over the catalog
            more_items = rng.integers(0, n_movies, len(more_users))
        keys = _sorted_unique(np.concatenate([keys, more_users * n_movies + more_items]))
    user_idx, item_idx = keys // n_movies, keys % n_movies
    start = np.concatenate([[0], np.cumsum(np.bincount(user_idx, minlength=n_users))[:-1]])
    keep = (np.arange(len(keys)) - start[user_idx]) < counts[user_idx]
    user_idx, item_idx = user_idx[keep], item_idx[keep]
    del keys, users, items

    span = LAST_TS - FIRST_TS
    joined = _growth_times(rng, n_users, span)
    burst = rng.lognormal(np.log(20 * 86400.0), 1.6, n_users)  # how long a user keeps rating (median 20 days)
    offsets = rng.exponential(1.0, len(user_idx)) * burst[user_idx]
    offsets *= rng.random(len(user_idx)) < 0.55  # most ratings in the first session
    offsets += rng.exponential(1800.0, len(user_idx))  # seconds between ratings of a session
    room = np.maximum(span - joined[user_idx], 3600.0)
    ts = FIRST_TS + (joined[user_idx] + np.mod(offsets, room)).astype(np.int64)

    leniency = rng.normal(0.0, 0.5, n_users)
    raw = 3.55 + quality[item_idx] + leniency[user_idx] + rng.normal(0.0, 0.8, len(user_idx))
    whole = ts < HALF_STARS_FROM
    rating = np.where(whole, np.round(raw), np.round(raw * 2) / 2)
    rating = np.clip(rating, np.where(whole, 1.0, 0.5), 5.0)

    ratings = {"userId": user_idx + 1, "movieId": movie_ids[item_idx], "rating": rating, "timestamp": ts}
    movies = {"movieId": movie_ids, "rank": rank}
    return ratings, movies


def _movies_table(movie_ids: np.ndarray, rng) -> pa.Table:
    n = len(movie_ids)
    years = np.clip(np.round(2023 - rng.gamma(2.0, 12.0, n)), 1902, 2023).astype(int)
    w1, w2 = rng.integers(0, len(WORDS), n), rng.integers(0, len(WORDS), n)
    comma = rng.random(n) < 0.08  # 'Good, the Bad and the Ugly, The (1966)': quoted in the CSV
    n_genres = np.minimum(rng.geometric(0.45, n), 5)
    no_genre = rng.random(n) < 0.03
    genre_pick = rng.random((n, len(GENRES))).argsort(axis=1)[:, :5]
    titles = [
        f"{WORDS[a]}, The {WORDS[b]} ({y})" if c else f"{WORDS[a]} {WORDS[b]} {i} ({y})"
        for a, b, c, y, i in zip(w1, w2, comma, years, movie_ids, strict=False)
    ]  # one line per movie (~87k)
    genres = [
        "(no genres listed)" if ng else "|".join(GENRES[g] for g in sorted(pick[:k]))
        for ng, pick, k in zip(no_genre, genre_pick, n_genres, strict=False)
    ]
    return pa.table({"movieId": movie_ids, "title": titles, "genres": genres})


def _tags_table(ratings: dict, n_tags: int, rng) -> pa.Table:
    """Tags by a tenth of the users, on movies they rated, shortly after rating them."""
    n = len(ratings["userId"])
    pick = rng.integers(0, n, n_tags * 3)
    taggers = (ratings["userId"][pick] % 10) == 3
    pick = pick[taggers][:n_tags]
    if len(pick) < n_tags:
        pick = np.concatenate([pick, rng.integers(0, n, n_tags - len(pick))])
    vocab_rank = np.minimum(rng.zipf(1.6, len(pick)) - 1, 5000)
    vocab = pa.array([*TAG_WORDS, *(f"tag{k}" for k in range(5001 - len(TAG_WORDS) + 1))])
    return pa.table(
        {
            "userId": ratings["userId"][pick],
            "movieId": ratings["movieId"][pick],
            "tag": vocab.take(pa.array(vocab_rank)),
            "timestamp": np.minimum(ratings["timestamp"][pick] + rng.integers(0, 600, len(pick)), LAST_TS),
        }
    )


def write_release(folder: Path, n_ratings: int, seed: int = 32) -> dict:
    """Write ratings.csv, movies.csv, tags.csv in the ml-32m format; returns what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    ratings, movies = generate_ratings(n_ratings, seed)
    size = sizes(n_ratings)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    table = pa.table({k: ratings[k] for k in ("userId", "movieId", "rating", "timestamp")})
    con.register("ratings_tbl", table)
    # ratings as ml-32m writes them: 4.0, 3.5, ... (one decimal)
    con.execute(f"""COPY (SELECT userId, movieId, printf('%.1f', rating) AS rating, timestamp FROM ratings_tbl)
                    TO '{folder / "ratings.csv"}' (HEADER, QUOTE '"')""")
    con.unregister("ratings_tbl")
    # the bad lines go to the busiest days (a day's quarantine rate stays far below the 5% check)
    day_counts = np.bincount(ratings["timestamp"] // 86400)
    busiest = np.argsort(day_counts)[::-1][: len(BAD_LINES)] * 86400 + 43200
    bad = []
    with open(folder / "ratings.csv", "a") as fh:
        for (line, reason), when in zip(BAD_LINES, busiest, strict=False):
            text = line.format(item=int(movies["movieId"][0]), ts=int(when))
            fh.write(text + "\n")
            bad.append({"line": text, "quarantined_as": reason})
    con.register("movies_tbl", _movies_table(movies["movieId"], rng))
    con.execute(f"COPY movies_tbl TO '{folder / 'movies.csv'}' (HEADER, QUOTE '\"')")
    tags = _tags_table(ratings, size["tags"], rng)
    con.register("tags_tbl", tags)
    con.execute(
        f"COPY (SELECT * FROM tags_tbl ORDER BY userId, movieId, timestamp) TO '{folder / 'tags.csv'}' "
        "(HEADER, QUOTE '\"')"
    )
    con.close()
    days = (np.unique(ratings["timestamp"] // 86400)).size
    return {
        "ratings": int(len(ratings["userId"])),
        "bad_rating_lines": bad,
        "users": int(ratings["userId"].max()),
        "movies": int(len(movies["movieId"])),
        "rated_movies": int(np.unique(ratings["movieId"]).size),
        "tags": int(tags.num_rows),
        "first_ts": int(ratings["timestamp"].min()),
        "last_ts": int(ratings["timestamp"].max()),
        "days_with_ratings": int(days),
        "positives": int((ratings["rating"] >= 4.0).sum()),
        "bytes": sum((folder / f).stat().st_size for f in ("ratings.csv", "movies.csv", "tags.csv")),
    }


# ------------------------------------------------------------------------------------------
# 2. adapt, 3. materialize
# ------------------------------------------------------------------------------------------

RAW_SNAPSHOTS = ("raw_users", "raw_items")
DAILY = (
    "raw_impressions",
    "raw_events",
    "raw_watch_stats",
    "interactions",
    "user_daily_stats",
    "item_daily_stats",
    "user_genre_daily",
    "categorical_daily_counts",
    "user_features",
    "item_features",
    "user_sequences",
)
DICTIONARIES = ("user_id_dictionary", "item_id_dictionary")
MODELS = ("recall_als",)
WINDOWED = ("user_features", "item_features", "user_sequences")


def tree_bytes(path: Path) -> tuple[int, int]:
    """(bytes, files) under path."""
    total = files = 0
    for folder, _, names in os.walk(path):
        for name in names:
            total += os.stat(os.path.join(folder, name)).st_size
            files += 1
    return total, files


def adapt(release: Path, data_root: Path) -> dict:
    """`python -m recsys_assets.adapt movielens <release> --data-root <root>` in a child process."""
    cmd = [sys.executable, "-m", "recsys_assets.adapt", "movielens", str(release), "--data-root", str(data_root)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"adapt failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the largest child so far: this one
    manifest = json.loads((data_root / "landing" / "_source.json").read_text())
    landing_bytes, landing_files = tree_bytes(data_root / "landing")
    return {
        "wall_s": wall,
        "peak_rss": peak,
        "manifest": manifest,
        "landing_bytes": landing_bytes,
        "landing_files": landing_files,
        "command": " ".join(cmd[1:]),
    }


def materialize(data_root: Path, all_days: list[str], days: list[str], model_days: int) -> list[dict]:
    """One in-process run per asset (range runs for daily assets); per run wall, step and Dagster time."""
    import dagster as dg

    # bench_tiers imports the definitions: only once RECSYS_START_DATE is set
    from bench_tiers import _cpu_seconds, _rows, _step_seconds

    from recsys_assets.definitions import build_defs, build_resources

    defs = build_defs(resources=build_resources(str(data_root)))
    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    # window features of day D read the 28 days before D: a partial range gets them upstream too
    window = [d for d in all_days if d < days[0]][-28:] if days[0] != all_days[0] else []
    plan = (
        [(k, []) for k in RAW_SNAPSHOTS]
        + [(k, window + days) for k in DAILY if k not in WINDOWED]
        + [(k, days) for k in WINDOWED]
        + [(k, []) for k in DICTIONARIES]
        + [(k, days[-model_days:]) for k in MODELS]
    )
    out = []
    for name, run_days in plan:
        key = dg.AssetKey(name)
        tags = (
            {"dagster/asset_partition_range_start": run_days[0], "dagster/asset_partition_range_end": run_days[-1]}
            if run_days
            else {}
        )
        cpu, started = _cpu_seconds(), time.perf_counter()
        with PeakRSS() as rss:
            result = job.execute_in_process(instance=instance, asset_selection=[key], tags=tags, raise_on_error=False)
        wall = time.perf_counter() - started
        step = _step_seconds(instance, result, key)
        rows = _rows(result, key)
        row = {
            "stage": name,
            "days": len(run_days),
            "wall_s": wall,
            "cpu_s": _cpu_seconds() - cpu,
            "peak_rss": rss.peak,
            "rows": rows,
            "step_s": step,
            "dagster_s": wall - step if step == step else None,
            "bytes": tree_bytes(Path(data_root) / "lake" / name)[0]
            if (Path(data_root) / "lake" / name).exists()
            else None,
            "ok": result.success,
        }
        failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
        row["failed_checks"] = [e.asset_check_key.to_user_string() for e in failed]
        out.append(row)
        per_day = f" = {1000 * step / len(run_days):.1f} ms/day" if run_days and step == step else ""
        print(
            f"  {name:26s} {len(run_days):6d} days {wall:8.1f}s wall (step {step:7.1f}s{per_day}) "
            f"{rss.peak / 2**20:6.0f} MiB  rows {rows if rows is not None else '-'}"
            + (f"  FAILED checks {row['failed_checks']}" if failed else ""),
            flush=True,
        )
        if not result.success:
            raise SystemExit(f"{name} failed; stopping (data root kept: {data_root})")
    return out


def _fmt_rate(rows, seconds) -> str:
    return f"{rows / seconds:,.0f}" if rows and seconds and seconds == seconds and seconds > 0 else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratings", type=int, default=32_000_000)
    ap.add_argument(
        "--workdir", default=None, help="default: a fresh folder under /tmp (deleted at the end unless --keep)"
    )
    ap.add_argument("--seed", type=int, default=32)
    ap.add_argument("--model-days", type=int, default=1)
    ap.add_argument(
        "--feature-days",
        type=int,
        default=0,
        help="materialize the daily assets for the last N days only (0 = every day of the history)",
    )
    ap.add_argument("--skip-dagster", action="store_true", help="generate and adapt only")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    import tempfile

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ml32m_", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    release, data_root = work / "ml-32m-generated", work / "root"
    if data_root.exists():
        shutil.rmtree(data_root)
    print(f"workdir {work}; free disk {shutil.disk_usage(work).free / 2**30:.0f} GiB", flush=True)
    stages = []
    started = time.perf_counter()
    with PeakRSS() as rss:
        gen = write_release(release, args.ratings, args.seed)
    wall = time.perf_counter() - started
    stages.append(
        {
            "stage": "generate",
            "wall_s": wall,
            "peak_rss": rss.peak,
            "rows": gen["ratings"],
            "bytes": gen["bytes"],
            "days": gen["days_with_ratings"],
        }
    )
    print(
        f"  generate {gen['ratings']:,} ratings, {gen['users']:,} users, {gen['movies']:,} movies, "
        f"{gen['tags']:,} tags, {gen['days_with_ratings']:,} days with ratings: {wall:.1f}s, "
        f"{rss.peak / 2**20:.0f} MiB, {gen['bytes'] / 2**20:.0f} MiB of CSV",
        flush=True,
    )

    a = adapt(release, data_root)
    m = a["manifest"]
    stages.append(
        {
            "stage": "adapt",
            "wall_s": a["wall_s"],
            "peak_rss": a["peak_rss"],
            "rows": m["ratings"],
            "bytes": a["landing_bytes"],
            "days": m["days"],
        }
    )
    print(
        f"  adapt {m['ratings']:,} ratings -> {m['events']:,} events + {m['watch_stats']:,} watches over "
        f"{m['days']:,} days ({m['first_day']}..{m['last_day']}): {a['wall_s']:.1f}s, peak RSS "
        f"{a['peak_rss'] / 2**20:.0f} MiB, landing {a['landing_bytes'] / 2**30:.2f} GiB in "
        f"{a['landing_files']:,} files; malformed {m['malformed_lines']}",
        flush=True,
    )
    assert m["ratings"] == gen["ratings"] and m["positives"] == gen["positives"], (m, gen)

    days = sorted(p.name for p in (data_root / "landing").iterdir() if p.is_dir() and (p / "_SUCCESS").exists())
    run_days = days[-args.feature_days :] if args.feature_days else days
    if not args.skip_dagster:
        os.environ["RECSYS_START_DATE"] = m["first_day"]  # what the quickstart sets for a real source
        stages += materialize(data_root, days, run_days, args.model_days)
    total = sum(s["wall_s"] for s in stages)
    peak = max(s["peak_rss"] for s in stages)
    print(f"total {total:.0f}s, peak RSS {peak / 2**20:.0f} MiB", flush=True)

    if not args.no_record:
        record(args, gen, a, stages, days, run_days, total, peak)
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def record(
    args, gen: dict, a: dict, stages: list[dict], days: list[str], run_days: list[str], total: float, peak: int
) -> None:
    import dagster as dg
    from recording import append_result, git_commit, machine

    commit = git_commit()
    cmd = (
        f"python benchmarks/bench_ml32m.py --ratings {args.ratings}"
        + (f" --feature-days {args.feature_days}" if args.feature_days else "")
        + (f" --model-days {args.model_days}" if args.model_days != 1 else "")
        + (" --skip-dagster" if args.skip_dagster else "")
    )
    out = ROOT / "benchmarks" / "results" / f"ml32m_{args.ratings}_{commit}.md"
    out.parent.mkdir(exist_ok=True)
    m = a["manifest"]
    lines = [
        f"# MovieLens CSV path, {args.ratings:,} generated ratings, at `{commit}`",
        "",
        f"`{cmd}` on {machine()}, dagster {dg.__version__}. Generated release: {gen['ratings']:,} ratings "
        f"(+{len(gen['bad_rating_lines'])} malformed lines), {gen['users']:,} users, {gen['movies']:,} movies, "
        f"{gen['tags']:,} tags; {m['days']:,} daily partitions ({m['first_day']}..{m['last_day']}), daily "
        f"assets over {len(run_days):,} of them. Adapter: `{a['command']}`. Total {total:.0f}s, peak RSS "
        f"{peak / 2**20:.0f} MiB.",
        "",
        "| stage | days | wall s | step s | Dagster s | ms/day | peak RSS MiB | rows | rows/s | bytes out |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in stages:
        step = s.get("step_s", s["wall_s"])
        per_day = f"{1000 * step / s['days']:.1f}" if s.get("days") and step == step else ""
        dag = "" if s.get("dagster_s") is None else f"{s['dagster_s']:.1f}"
        rows = "" if s["rows"] is None else f"{s['rows']:,}"
        size = "" if s.get("bytes") is None else f"{s['bytes'] / 2**20:,.0f} MiB"
        lines.append(
            f"| {s['stage']} | {s.get('days') or ''} | {s['wall_s']:.1f} | {step:.1f} | {dag} | {per_day} | "
            f"{s['peak_rss'] / 2**20:.0f} | {rows} | {_fmt_rate(s['rows'], step)} | {size} |"
        )
    out.write_text("\n".join(lines) + "\n")
    by = {s["stage"]: s for s in stages}
    ingest = sum(by[k]["wall_s"] for k in DAILY[:3] if k in by)
    feats = sum(by[k]["wall_s"] for k in DAILY[3:] if k in by)
    slowest = sorted(stages, key=lambda s: -s["wall_s"])[:3]
    append_result(
        f"| {time.strftime('%Y-%m-%d')} | `{commit}` | `{cmd}` | {machine()}, dagster {dg.__version__} | "
        f"{gen['ratings']:,} ratings, {m['days']:,} days ({len(run_days):,} materialized) | "
        f"generate {by['generate']['wall_s']:.0f}s; adapt {by['adapt']['wall_s']:.0f}s "
        f"({_fmt_rate(gen['ratings'], by['adapt']['wall_s'])} ratings/s, {by['adapt']['peak_rss'] / 2**20:.0f} MiB, "
        f"landing {a['landing_bytes'] / 2**30:.2f} GiB) | "
        + (
            f"raw {ingest:.0f}s; features {feats:.0f}s; recall_als {by['recall_als']['wall_s']:.0f}s | "
            if "recall_als" in by
            else "not run | "
        )
        + f"{total:.0f}s | {peak / 2**20:.0f} MiB | "
        + ", ".join(f"{s['stage']} {s['wall_s']:.0f}s" for s in slowest)
        + f" | [per stage](results/{out.name}) |",
        section="MovieLens CSV path at 32M rows",
    )


if __name__ == "__main__":
    sys.exit(main())
