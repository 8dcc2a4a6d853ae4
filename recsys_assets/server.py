"""`recsys serve`: the online recommender over HTTP (Starlette on uvicorn). Wiring only: the
requests, the models and their hot swap live in services/recommend_service.py.

    GET  /recommend?user=42&k=10&explain=true
    POST /recommend   {"user": 42, "k": 10, "explain": false, "session": [{item_id, type, occurred_at}, ...]}
    GET  /health      alive
    GET  /ready       models loaded (503 until then), their versions, the last reload error
    GET  /metrics     request counts, per-stage latency histograms, model versions (Prometheus text)

With settings.serving.workers > 1, uvicorn runs that many processes on one socket, each
building its app with worker_app() from the settings serve() hands down in RECSYS_SERVE_SETTINGS.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from recsys_assets.services.errors import MissingInput
from recsys_assets.services.model_store import CorruptModelError
from recsys_assets.services.recommend_service import BadRequest, RecommendService, Unavailable
from recsys_assets.settings import Settings

log = logging.getLogger(__name__)
# A request is a user and a session's recent events: far below this.
MAX_BODY_BYTES = 1 << 20
# What serve() hands its worker processes: the settings (JSON) and the shared metrics directory.
SETTINGS_ENV = "RECSYS_SERVE_SETTINGS"
METRICS_DIR_ENV = "RECSYS_SERVE_METRICS_DIR"


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def build_app(service: RecommendService, watch: bool = True) -> Starlette:
    """The ASGI app over `service`; its lifespan loads the models and (with `watch`) starts the
    watcher that swaps in new ones."""

    async def recommend(request: Request) -> Response:
        started = time.perf_counter()
        status, timings = 500, None
        try:
            if request.method == "POST":
                raw = await request.body()
                if len(raw) > MAX_BODY_BYTES:
                    raise BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes")
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as error:
                    raise BadRequest(f"the body is not JSON: {error}") from None
                if not isinstance(body, dict):
                    raise BadRequest("the body must be a JSON object {user, k, explain, session}")
                parsed = service.parse(body)
            else:
                parsed = service.parse(dict(request.query_params), allow_session=False)
            # the funnel is CPU work: off the event loop, so /health and /metrics stay responsive
            answer = await run_in_threadpool(service.recommend, parsed)
            timings = answer["timings_ms"] | {"server_ms": (time.perf_counter() - started) * 1000}
            answer["timings_ms"]["server_ms"] = round(timings["server_ms"], 3)
            status = 200
            return JSONResponse(answer)
        except BadRequest as error:
            status = 400
            return _error(400, str(error))
        except (Unavailable, MissingInput, CorruptModelError, OSError) as error:  # names the file
            status = 503
            return _error(503, str(error))
        except Exception as error:  # noqa: BLE001 — an answer, never a traceback, to the client
            log.exception("recommend failed for %s", request.url)
            return _error(500, f"internal error: {type(error).__name__}: {error}")
        finally:
            service.metrics.request("/recommend", status, timings)

    async def health(request: Request) -> Response:
        service.metrics.request("/health", 200)
        return JSONResponse({"status": "alive"})

    async def ready(request: Request) -> Response:
        ok, status = service.ready()
        service.metrics.request("/ready", 200 if ok else 503)
        return JSONResponse(status, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        service.metrics.request("/metrics", 200)
        return PlainTextResponse(service.metrics_text(), media_type="text/plain; version=0.0.4")

    @asynccontextmanager
    async def lifespan(app: Starlette):
        if watch:
            await run_in_threadpool(service.start)
        elif service.current is None:
            await run_in_threadpool(service.reload)
        try:
            yield
        finally:
            service.stop()

    return Starlette(
        routes=[
            Route("/recommend", recommend, methods=["GET", "POST"]),
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )


def single_threaded_libraries() -> None:
    """One thread per call for faiss (OpenMP) and BLAS in a server process: a request searches
    one user, which a thread team only slows (a flat search over 100k items: ~0.7 ms on one
    thread, ~1.6 ms on two while another process works), and the server's parallelism is its
    workers and requests. Process-wide, so only for processes that serve."""
    import faiss
    import implicit.cpu.als  # noqa: F401  (loads scipy's OpenBLAS: a limit covers loaded libraries only)
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)
    threadpool_limits(limits=1, user_api="blas")


def worker_app() -> Starlette:
    """The app of one worker process (uvicorn's factory when settings.serving.workers > 1)."""
    single_threaded_libraries()
    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    return build_app(RecommendService(settings, metrics_dir=Path(os.environ[METRICS_DIR_ENV])))


def serve(settings: Settings, host: str | None = None, port: int | None = None, log_level: str = "info") -> None:
    """Run the server until interrupted (binds settings.serving.host, 127.0.0.1 by default;
    settings.serving.workers processes)."""
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # no access log: /metrics counts every request, and a log line per request costs latency
    options = {
        "host": host or settings.serving.host,
        "port": settings.serving.port if port is None else port,
        "log_level": log_level,
        "access_log": False,
    }
    if settings.serving.workers == 1:
        single_threaded_libraries()
        uvicorn.run(build_app(RecommendService(settings)), **options)
        return
    with tempfile.TemporaryDirectory(prefix="recsys-serve-metrics-") as metrics_dir:
        # the workers are new interpreters: they inherit the environment, not these objects
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        os.environ[METRICS_DIR_ENV] = metrics_dir
        uvicorn.run("recsys_assets.server:worker_app", factory=True, workers=settings.serving.workers, **options)
