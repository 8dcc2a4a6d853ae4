"""`recsys serve` under load: a bounded load generator against the server on 127.0.0.1, with
the in-process `OnlineRecommender.recommend` measured in the same run as the baseline.

    .venv/bin/python benchmarks/bench_serving.py --data-root /tmp/serve_data [--tier L] [--rates 20,100]
        [--open-requests 600] [--clients 1,10,50] [--closed-requests 500] [--workers 1] [--no-record]

1. in-process: the same users through OnlineRecommender.recommend in this process (server idle);
2. open loop, at each rate: requests sent at a fixed arrival rate whatever the answers do;
   latency counts from each request's scheduled send time, so time spent queueing (in the
   server or in this client) is measured, not hidden;
3. closed loop at 1 / 10 / 50 concurrent clients (one keep-alive connection each), a fixed number
   of requests per level: throughput, latency, errors.

The server runs in its own process (`recsys serve`, or with --tier that tier's settings from
bench_tiers.py; --workers server processes); requests are GET /recommend?user=U&k=10 over known users of the model day and
unknown ones (cold start), the same list for every phase. The machine's 2 cores are shared by the
server and this generator.
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from bench_tiers import TIER_SETTINGS  # noqa: E402
from recording import append_result, git_commit, machine  # noqa: E402

from recsys_assets.services.lake import Lake  # noqa: E402
from recsys_assets.services.model_store import ModelStore  # noqa: E402
from recsys_assets.services.online import OnlineRecommender  # noqa: E402
from recsys_assets.settings import Settings  # noqa: E402


def settings_for(data_root: str, tier: str | None, workers: int = 1) -> Settings:
    overrides = TIER_SETTINGS.get(tier, {}) if tier else {}
    settings = Settings.load(data_root=data_root, **overrides)
    return settings.model_copy(update={"serving": settings.serving.model_copy(update={"workers": workers})})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_root: str, tier: str | None, port: int, workers: int) -> subprocess.Popen:
    command = [sys.executable, __file__, "--data-root", data_root, "--serve-port", str(port), "--workers", str(workers)]
    return subprocess.Popen(command + (["--tier", tier] if tier else []), cwd=ROOT)


def wait_ready(base: str, server: subprocess.Popen, seconds: float = 900) -> dict:
    """/ready once it is 200: every worker has loaded its models."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server did not become ready")


class Client:
    """One keep-alive HTTP/1.1 connection (reconnects after an error)."""

    errors: list[str] = []  # what failed, across clients (status 0)

    def __init__(self, port: int):
        self.port, self.conn, self.reused = port, None, False

    def get(self, path: str, retry: bool = True) -> int:
        try:
            if self.conn is None:
                self.conn, self.reused = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60), False
            self.conn.request("GET", path)
            response = self.conn.getresponse()
            response.read()
            self.reused = True
            return response.status
        except (OSError, http.client.HTTPException) as error:
            if self.conn is not None:
                self.conn.close()
            self.conn, stale = None, self.reused
            # the server closes a connection idle past its keep-alive timeout (uvicorn: 5 s); a
            # GET sent on it just then fails before reaching the server: resend once, as clients do
            if stale and retry:
                return self.get(path, retry=False)
            Client.errors.append(f"{type(error).__name__}: {error}")
            return 0


def percentiles(ms: list[float]) -> tuple[float, float, float]:
    if not ms:
        return (float("nan"),) * 3
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def in_process(settings: Settings, users: list[int]) -> tuple[list[float], float, dict[str, list[float]]]:
    """(latencies, load seconds, {path: latencies}) of the users through the recommender the
    server builds (its serving settings: approximate search, compiled trees)."""
    started = time.perf_counter()
    online = OnlineRecommender.from_settings(settings, serving=settings.serving)
    load = time.perf_counter() - started
    for user in users[:20]:  # the same warm-up as the server gets
        online.recommend(user, k=10)
    latencies, by_path = [], {}
    for user in users:
        started = time.perf_counter()
        answer = online.recommend(user, k=10)
        latencies.append((time.perf_counter() - started) * 1000)
        by_path.setdefault(answer.path, []).append(latencies[-1])
    return latencies, load, by_path


def open_loop(port: int, paths: list[str], rate: float) -> dict:
    """Every request is scheduled at start + i / rate and sent then (or as soon as a sender is
    free); its latency is completion minus scheduled time."""
    local = threading.local()
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def send(path: str, scheduled: float) -> None:
        if not hasattr(local, "client"):
            local.client = Client(port)
        status = local.client.get(path)
        with lock:
            results.append((status, (time.perf_counter() - scheduled) * 1000))

    start = time.perf_counter() + 0.2
    with ThreadPoolExecutor(max_workers=128) as pool:
        for i, path in enumerate(paths):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, path, scheduled)
    elapsed = time.perf_counter() - start
    ok = [ms for status, ms in results if status == 200]
    return {"latency": percentiles(ok), "errors": len(results) - len(ok), "n": len(results), "elapsed": elapsed}


def closed_loop(port: int, paths: list[str], clients: int) -> dict:
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    cursor = iter(range(len(paths)))

    def run() -> None:
        client = Client(port)
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            started = time.perf_counter()
            status = client.get(paths[i])
            ms = (time.perf_counter() - started) * 1000
            with lock:
                results.append((status, ms))

    started = time.perf_counter()
    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ok = [ms for status, ms in results if status == 200]
    return {
        "latency": percentiles(ok),
        "errors": len(results) - len(ok),
        "rps": len(results) / elapsed,
        "n": len(results),
    }


def server_stages(base: str) -> dict[str, float]:
    """Mean ms per stage from the server's own /metrics histograms."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        text = response.read().decode()
    sums, counts = {}, {}
    for line in text.splitlines():
        if line.startswith("recsys_stage_latency_ms_sum"):
            sums[line.split('"')[1]] = float(line.split()[-1])
        elif line.startswith("recsys_stage_latency_ms_count"):
            counts[line.split('"')[1]] = float(line.split()[-1])
    return {stage: sums[stage] / counts[stage] for stage in sums if counts.get(stage)}


def fmt(p: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.1f}" for v in p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--tier", default=None, choices=sorted(TIER_SETTINGS))
    ap.add_argument("--rates", default="20,100", help="open loop arrival rates, requests/s")
    ap.add_argument("--open-requests", type=int, default=600, help="per rate")
    ap.add_argument("--clients", default="1,10,50")
    ap.add_argument("--closed-requests", type=int, default=500, help="per concurrency level")
    ap.add_argument("--users", type=int, default=200, help="distinct users: 80%% known, 20%% unknown")
    ap.add_argument("--workers", type=int, default=1, help="server processes (ServingConfig.workers)")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--serve-port", type=int, default=None, help=argparse.SUPPRESS)  # the server process
    args = ap.parse_args()
    root = str(Path(args.data_root).resolve())
    settings = settings_for(root, args.tier, args.workers)
    if args.serve_port is not None:
        from recsys_assets.server import serve

        serve(settings, host="127.0.0.1", port=args.serve_port, log_level="warning")
        return

    # the serving day's users from the batch table (known), plus ids no dictionary holds (cold)
    from recsys_assets.services.online import latest_model_day

    day = latest_model_day(ModelStore(models_root=settings.models_root))
    lake = Lake(data_root=root)
    # known users: the batch lists' users, or (recommendations not materialized) the recall lists'
    source = "recommendations" if lake.partition_path("recommendations", day).exists() else "recall_candidates"
    known = (
        pl.read_parquet(lake.partition_path(source, day), columns=["user_id"])["user_id"]
        .unique()
        .sort()
        .sample(int(args.users * 0.8), seed=0, with_replacement=False)
        .to_list()
    )
    print(f"known users from {source} of {day}")
    users = known + [10**9 + i for i in range(args.users - len(known))]
    rng = np.random.default_rng(0)
    print(f"day {day}: {len(known)} known + {len(users) - len(known)} unknown users")

    inproc, load, by_path = in_process(settings, users)
    inproc_p = percentiles(inproc)
    print(f"in-process: load {load:.1f}s, p50/p95/p99 {fmt(inproc_p)} ms")
    print("in-process mean ms by path: " + ", ".join(f"{p} {np.mean(v):.2f} ({len(v)})" for p, v in by_path.items()))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(root, args.tier, port, args.workers)
    try:
        ready = wait_ready(base, server)
        print(f"server ready: models of {ready['versions']['day']}")
        # per large-catalog channel: recall@k of its approximate lists vs exact, and whether it is used
        print(f"search: {ready['versions'].get('search')}; trees: {ready['versions'].get('trees')}")
        warm = Client(port)
        for user in users[:20]:
            warm.get(f"/recommend?user={user}&k=10")

        def paths(n: int) -> list[str]:
            return [f"/recommend?user={users[i]}&k=10" for i in rng.integers(0, len(users), n)]

        opened = {}
        for rate in [float(r) for r in args.rates.split(",")]:
            opened[rate] = run = open_loop(port, paths(args.open_requests), rate)
            print(
                f"open loop {rate:g} req/s ({run['n']} requests, sent over {run['elapsed']:.1f}s): "
                f"p50/p95/p99 {fmt(run['latency'])} ms from the scheduled send time, {run['errors']} errors"
            )
        closed = {}
        for n in [int(c) for c in args.clients.split(",")]:
            closed[n] = closed_loop(port, paths(args.closed_requests), n)
            print(
                f"closed loop {n:>2} clients: {closed[n]['rps']:.1f} req/s, p50/p95/p99 {fmt(closed[n]['latency'])} ms, "
                f"{closed[n]['errors']} errors of {closed[n]['n']}"
            )
        if Client.errors:
            print(f"client-side errors: {Client.errors[:5]}")
        stages = server_stages(base)
        print("server-side mean ms per stage: " + ", ".join(f"{s} {ms:.1f}" for s, ms in stages.items()))
    finally:
        server.terminate()
        server.wait(timeout=60)

    one = closed[min(closed)]
    ratios = f"HTTP 1 client p50 / in-process p50 = {one['latency'][0] / inproc_p[0]:.2f}x; " + "; ".join(
        f"open loop {rate:g}/s p50 / in-process p50 = {run['latency'][0] / inproc_p[0]:.2f}x"
        for rate, run in opened.items()
    )
    print(ratios)
    if args.no_record:
        return
    command = (
        f"python benchmarks/bench_serving.py --data-root {args.data_root}"
        + (f" --tier {args.tier}" if args.tier else "")
        + (f" --rates {args.rates}" if args.rates != "20,100" else "")
        + (f" --open-requests {args.open_requests}" if args.open_requests != 600 else "")
        + (f" --clients {args.clients}" if args.clients != "1,10,50" else "")
        + (f" --closed-requests {args.closed_requests}" if args.closed_requests != 500 else "")
        + (f" --workers {args.workers}" if args.workers != 1 else "")
    )
    closed_cells = "<br>".join(
        f"{n}: {r['rps']:.1f} req/s, {fmt(r['latency'])}, {r['errors']} errors" for n, r in closed.items()
    )
    append_result(
        f"| {time.strftime('%Y-%m-%d')} | `{git_commit()}` | `{command}` | {machine()} | {day}, "
        f"{len(known)} known + {len(users) - len(known)} unknown | {fmt(inproc_p)} | "
        + "<br>".join(
            f"{rate:g} req/s (sent at {run['n'] / run['elapsed']:.1f}): {fmt(run['latency'])}, "
            f"{run['errors']} errors of {run['n']}"
            for rate, run in opened.items()
        )
        + f" | {closed_cells} | {ratios} | "
        + ", ".join(f"{s} {ms:.1f}" for s, ms in stages.items())
        + " |",
        section="HTTP serving",
    )


if __name__ == "__main__":
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    main()
