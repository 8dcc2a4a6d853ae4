"""The online recommender as a long-running service, free of any web framework: request
validation, the loaded models and their hot swap, and the counters /metrics reports.

One OnlineRecommender is loaded at a time per process. A watcher thread fingerprints what it would load
(the latest model day, the version each of that day's models points to, the ranker chosen for
the day, the champion registries' files) every `reload_seconds`; when the fingerprint changes
it builds a new recommender off the request path and swaps the reference. A request takes the
reference once, so it finishes on the models it started with and names their versions; a
reload that fails keeps the old models serving and is reported by ready() and the metrics.

A server of several worker processes (ServingConfig.workers) runs one service per process; each
writes a snapshot of its counters to a shared directory every second, and /metrics, answered by
any worker, sums every worker's counters (its own live ones included) and lists each live
worker's readiness and model versions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys_assets.core.ranking.session_features import SessionState
from recsys_assets.core.recall import models as recall_models
from recsys_assets.services.errors import MissingInput
from recsys_assets.services.explain import item_titles, plain_reason, title_of
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import MANIFEST, CorruptModelError, ModelStore
from recsys_assets.services.online import OnlineRecommender, latest_model_day
from recsys_assets.services.registry import serving_champion, serving_ranker_day
from recsys_assets.services.serving import COLD_START_CHANNEL
from recsys_assets.settings import Settings

log = logging.getLogger(__name__)

# Upper bounds (ms) of the latency histogram buckets, Prometheus style (+Inf implied).
BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
REQUEST_FIELDS = {"user", "k", "explain", "session", "at"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}
_MAX_USER = 2**63 - 1
# A reload that failed is attempted again after this many polls if nothing changed meanwhile.
RETRY_POLLS = 6
# How often a worker of a multi-process server writes its counters for the others' /metrics.
PUBLISH_SECONDS = 1.0


class BadRequest(ValueError):
    """A request the service refuses (HTTP 400); the message is the reason."""


class Unavailable(RuntimeError):
    """No models to answer with (HTTP 503); the message names the missing or corrupt file."""


@dataclass(frozen=True)
class Request:
    user: int
    k: int = 10
    explain: bool = False
    session: SessionState | None = None
    at: dt.datetime | None = None


@dataclass
class Loaded:
    """One loaded recommender and what it was built from."""

    recommender: OnlineRecommender
    fingerprint: tuple
    versions: dict[str, Any]
    loaded_at: float
    titles: dict[int, tuple[str, list[str]]] = field(default_factory=dict)  # item_id -> (title, genres)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_MS) + 1)
        self.total, self.n = 0.0, 0

    def observe(self, ms: float) -> None:
        self.counts[next((i for i, b in enumerate(BUCKETS_MS) if ms <= b), len(BUCKETS_MS))] += 1
        self.total += ms
        self.n += 1


class Metrics:
    """Request counts by endpoint and status, latency histograms by stage, reload outcomes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.stages: dict[str, Histogram] = {}
        self.reloads = {"ok": 0, "failed": 0}

    def request(self, endpoint: str, status: int, timings_ms: Mapping[str, float] | None = None) -> None:
        with self.lock:
            self.requests[(endpoint, status)] = self.requests.get((endpoint, status), 0) + 1
            for stage, ms in (timings_ms or {}).items():
                self.stages.setdefault(stage.removesuffix("_ms"), Histogram()).observe(ms)

    def reload(self, ok: bool) -> None:
        with self.lock:
            self.reloads["ok" if ok else "failed"] += 1


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def model_version(model_store: ModelStore, model: str, day: str) -> str:
    """The immutable version folder a published (model, day) points to, e.g. 2026-01-06-3f2a..."""
    if model_store.remote:
        return json.loads((model_store.root / model / day / MANIFEST).read_text())["version"]
    return os.path.basename(os.path.realpath(model_store.root / model / day))


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise BadRequest(f"{name} must be an integer, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("-").isdigit() or len(text) > 20:
            raise BadRequest(f"{name} must be an integer, got {value!r}")
        value = int(text)
    if not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadRequest(f"{name} must be true or false, got {value!r}")


class RecommendService:
    """Loads the latest published models, answers requests, and swaps in newer models."""

    def __init__(self, settings: Settings, reload_seconds: float | None = None, metrics_dir: Path | None = None):
        self.settings = settings
        # shared by the worker processes of one server (None: this process serves alone)
        self.metrics_dir = metrics_dir
        self.pid = os.getpid()
        self.lake = Lake(data_root=settings.data_root)
        self.model_store = ModelStore(models_root=settings.models_root, cache_dir=settings.model_cache)
        self.reload_seconds = reload_seconds if reload_seconds is not None else settings.serving.reload_seconds
        self.max_k = settings.serving.max_k
        # the funnel is CPU-bound: more requests at once than cores only slows each of them
        self._slots = threading.BoundedSemaphore(settings.serving.concurrency)
        self.metrics = Metrics()
        self.current: Loaded | None = None
        self.last_error: str | None = None  # the latest failed load, cleared by a successful one
        self.last_attempt: tuple | None = None
        self.last_attempt_at = 0.0
        self.last_check: float | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reload_lock = threading.Lock()

    # ---------------------------------------------------------------------------------- models
    def fingerprint(self) -> tuple:
        """What a new recommender would be built from; it changes with a new model day, a model
        re-published under a day, a ranker promotion, a champion promotion or rollback, or the
        day's recall_candidates written again."""
        day = latest_model_day(self.model_store)
        ranker_day, _ = serving_ranker_day(self.lake, day)
        models = [
            (f"recall_{name}", model_version(self.model_store, f"recall_{name}", day))
            for name in recall_models.MODELS
            if self.model_store.exists(f"recall_{name}", day)
        ]
        if ranker_day and self.model_store.exists("ranker", ranker_day):
            models.append(("ranker", model_version(self.model_store, "ranker", ranker_day)))
        # the registries, and the day's recall_candidates (a user without new signal reads them)
        watched = [
            p
            for table in ("recall_champion", "ranker_champion")
            for p in (self.lake.lake_dir / table).glob("*.parquet")
        ]
        candidates = self.lake.partition_path("recall_candidates", day)
        if candidates.exists():
            watched.append(candidates)
        registries = tuple(sorted((p.parent.name, p.name, p.stat().st_mtime_ns) for p in watched))
        return day, ranker_day, tuple(models), registries

    def _build(self, fingerprint: tuple) -> Loaded:
        day, ranker_day, models, _ = fingerprint
        recommender = OnlineRecommender(
            self.lake,
            self.model_store,
            self.settings.ranking,
            self.settings.recall,
            day=day,
            first_day=self.settings.start_date,
            serving=self.settings.serving,
        )
        champion = serving_champion(self.lake, day)
        # the models this recommender reads (a model published but not among the configured
        # channels is not named). Versions are read before the load: a model re-published in
        # between changes the next poll's fingerprint, and that poll loads and names it.
        used = set(recommender.recall_channels) | set(recommender.ctx.channels)
        if recommender.ctx.cold_start is not None:
            used.add(COLD_START_CHANNEL)
        versions = {
            "day": recommender.day,
            "ranker_day": recommender.ranker_day,
            "models": {m: v for m, v in models if m == "ranker" or m.removeprefix("recall_") in used},
            # the online funnel fuses every channel; the recall champion is reported, not chosen
            "recall_champion": f"{champion[0]}@{champion[1]}" if champion else None,
            # how the ranker's trees score requests: "compiled" (machine code) or "lightgbm"
            "trees": recommender.trees,
            # per large-catalog channel: its approximate lists' recall against exact at load,
            # and whether it searches approximately (only at or above serving.ann_min_recall)
            "search": {
                name: {
                    "recall": round(recall, 4),
                    "approximate": recall >= (self.settings.serving.ann_min_recall or 2),
                    # the HNSW graph: "built" by this process or "loaded" from the model cache
                    "graph": recommender.graphs.get(name, "not cached"),
                }
                for name, recall in recommender.approximate.items()
            },
        }
        return Loaded(recommender, fingerprint, versions, time.time(), item_titles(recommender.storage))

    def reload(self, force: bool = False) -> bool:
        """Build and swap in a new recommender if what would be loaded changed (or nothing is
        loaded yet); True when a new one now serves. A failure keeps the old one serving."""
        with self._reload_lock:
            self.last_check = time.time()
            try:
                fingerprint = self.fingerprint()
                current = self.current
                if not force and current is not None:
                    if fingerprint == current.fingerprint:
                        return False
                    # a failed version is tried again now and then (a transient read error), not every poll
                    if (
                        fingerprint == self.last_attempt
                        and time.time() - self.last_attempt_at < RETRY_POLLS * self.reload_seconds
                    ):
                        return False
                self.last_attempt, self.last_attempt_at = fingerprint, time.time()
                started = time.perf_counter()
                loaded = self._build(fingerprint)
            except Exception as error:  # noqa: BLE001 — any failure keeps the old models serving
                self.last_error = f"{type(error).__name__}: {error}" if not _clear(error) else str(error)
                self.metrics.reload(False)
                log.warning(
                    "model reload failed, %s: %s",
                    "still serving the old models" if self.current else "no models",
                    error,
                )
                return False
            self.current = loaded  # one reference assignment: requests in flight keep the old object
            self.last_error = None
            self.metrics.reload(True)
            log.info(
                "serving models of %s (%.1f s to load): %s",
                loaded.versions["day"],
                time.perf_counter() - started,
                loaded.versions,
            )
            return True

    def _watch(self) -> None:
        while not self._stop.wait(self.reload_seconds):
            self.reload()

    def _publish_loop(self) -> None:
        while not self._stop.wait(PUBLISH_SECONDS):
            self.publish()

    def start(self) -> None:
        """Load now (a failure is reported, not raised), then watch for new models (and, in a
        multi-process server, publish the counters every PUBLISH_SECONDS)."""
        self.reload()
        self._stop.clear()
        loops = [(self._watch, "recsys-model-watcher")]
        if self.metrics_dir is not None:
            self.publish()
            loops.append((self._publish_loop, "recsys-metrics-publisher"))
        self._threads = [threading.Thread(target=f, name=name, daemon=True) for f, name in loops]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads = []
        if self.metrics_dir is not None:
            self.publish()  # the final counts: /metrics of the other workers keeps them

    # --------------------------------------------------------------------------------- requests
    def parse(self, params: Mapping[str, Any], allow_session: bool = True) -> Request:
        """A validated request from query parameters or a JSON object; BadRequest otherwise."""
        unknown = sorted(set(params) - REQUEST_FIELDS)
        if unknown:
            raise BadRequest(f"unknown parameter(s) {', '.join(unknown)}; expected {', '.join(sorted(REQUEST_FIELDS))}")
        if "user" not in params:
            raise BadRequest("user is required")
        user = _int(params["user"], "user", 0, _MAX_USER)
        k = _int(params.get("k", 10), "k", 1, self.max_k)
        explain = _bool(params.get("explain", False), "explain")
        session = at = None
        if params.get("at") is not None:
            try:
                at = dt.datetime.fromisoformat(str(params["at"]))
            except ValueError:
                raise BadRequest(f"at must be an ISO-8601 time with an offset, got {params['at']!r}") from None
            if at.tzinfo is None:
                raise BadRequest(f"at must be an ISO-8601 time with an offset, got {params['at']!r}")
        if params.get("session") is not None:
            if not allow_session:
                raise BadRequest("session events go in the JSON body of POST /recommend")
            records = params["session"]
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise BadRequest("session must be a list of events {item_id, type, occurred_at}")
            try:
                session = SessionState.from_records(f"http-{user}", records)
            except ValueError as error:
                raise BadRequest(str(error)) from None
        return Request(user, k, explain, session, at)

    def recommend(self, request: Request) -> dict:
        """The answer as a JSON-ready dict; Unavailable when no models are loaded."""
        loaded = self.current  # taken once: a swap during the request does not affect it
        if loaded is None:
            raise Unavailable(f"no models loaded: {self.last_error or 'still loading'}")
        started = time.perf_counter()
        with self._slots:
            answer = loaded.recommender.recommend(
                request.user, k=request.k, explain=request.explain, session=request.session, at=request.at
            )
        timings = dict(answer.timings_ms)
        timings["service_ms"] = (time.perf_counter() - started) * 1000  # the wait for a slot included
        items = []
        for row in answer.rows:
            item = {
                "rank": row["rank"],
                "item_id": row["item_id"],
                "title": title_of(row["item_id"], loaded.titles),
                "score": row["score"],
                "channels": row.get("channels") or [],
            }
            if request.explain:
                item["explanation"] = {
                    "reason": plain_reason(
                        row.get("because_you_watched"), row.get("channels"), loaded.titles, row["item_id"]
                    ),
                    "because_you_watched": row.get("because_you_watched") or [],
                    "top_features": row.get("top_features") or [],
                }
            items.append(item)
        return {
            "user_id": answer.user_id,
            "path": answer.path,
            "day": answer.day,
            "stage": answer.stage,
            "versions": loaded.versions,
            "timings_ms": {name: round(ms, 3) for name, ms in timings.items()},
            "items": items,
        }

    # ----------------------------------------------------------------------------------- status
    def ready(self) -> tuple[bool, dict]:
        """(ready, status): models loaded here and, in a multi-process server, in every worker
        (each one's published snapshot), so a client that waits for /ready meets no loading one."""
        loaded = self.current
        ok = loaded is not None
        status: dict[str, Any] = {
            "ready": ok,
            "versions": loaded.versions if loaded else None,
            "loaded_at": _iso(loaded.loaded_at) if loaded else None,
            "last_check": _iso(self.last_check) if self.last_check else None,
            "reload_error": self.last_error,
        }
        if self.metrics_dir is not None:
            live = self._live(self.snapshots())
            workers_ready = sum(bool(snap["ready"]) for snap in live)
            ok = ok and workers_ready >= self.settings.serving.workers
            status |= {"ready": ok, "workers_ready": workers_ready, "workers": self.settings.serving.workers}
        return ok, status

    def snapshot(self) -> dict:
        """This process's counters and status, JSON-ready (what publish() writes)."""
        with self.metrics.lock:
            requests = [[e, st, n] for (e, st), n in sorted(self.metrics.requests.items())]
            stages = {name: [list(h.counts), h.total, h.n] for name, h in sorted(self.metrics.stages.items())}
            reloads = dict(self.metrics.reloads)
        loaded = self.current
        return {
            "pid": self.pid,
            "requests": requests,
            "stages": stages,
            "reloads": reloads,
            "ready": loaded is not None,
            "reload_failing": self.last_error is not None,
            "versions": loaded.versions if loaded else None,
            "loaded_at": loaded.loaded_at if loaded else None,
        }

    def publish(self) -> None:
        """Write the snapshot where the other workers' /metrics read it (replaced atomically)."""
        if self.metrics_dir is None:
            return
        target = self.metrics_dir / f"{self.pid}.json"
        partial = target.with_suffix(".tmp")
        try:
            partial.write_text(json.dumps(self.snapshot()))
            os.replace(partial, target)
        except OSError as error:  # a full disk must not fail requests; /metrics then lags
            log.warning("could not publish the metrics to %s: %s", target, error)

    def snapshots(self) -> list[dict]:
        """This process's live snapshot, then every other worker's latest published one."""
        own = self.snapshot()
        if self.metrics_dir is None:
            return [own]
        others = []
        for path in sorted(self.metrics_dir.glob("*.json")):
            if path.stem == str(self.pid):
                continue
            try:
                others.append(json.loads(path.read_text()))
            except (OSError, ValueError):  # being replaced, or its worker died mid-write
                continue
        return [own, *others]

    def _live(self, snapshots: list[dict]) -> list[dict]:
        """The snapshots of this process and of the other workers still running."""
        return [snap for snap in snapshots if snap["pid"] == self.pid or _alive(snap["pid"])]

    def metrics_text(self) -> str:
        """The counters in the Prometheus text exposition format; with several worker processes,
        counters and histograms summed over every worker that ever served (a restarted worker's
        counts are kept), readiness and model versions per live worker (label `worker`)."""
        snapshots = self.snapshots()
        requests: dict[tuple[str, int], int] = {}
        stages: dict[str, list] = {}
        reloads = {"ok": 0, "failed": 0}
        for snap in snapshots:
            for endpoint, status, n in snap["requests"]:
                requests[(endpoint, status)] = requests.get((endpoint, status), 0) + n
            for name, (counts, total, n) in snap["stages"].items():
                into = stages.setdefault(name, [[0] * len(counts), 0.0, 0])
                into[0] = [a + b for a, b in zip(into[0], counts, strict=True)]
                into[1] += total
                into[2] += n
            for result, n in snap["reloads"].items():
                reloads[result] = reloads.get(result, 0) + n
        lines = [
            "# HELP recsys_requests_total HTTP requests by endpoint and status.",
            "# TYPE recsys_requests_total counter",
        ]
        lines += [f'recsys_requests_total{{endpoint="{e}",status="{s}"}} {n}' for (e, s), n in sorted(requests.items())]
        lines += [
            "# HELP recsys_stage_latency_ms Latency of each stage of /recommend, in milliseconds.",
            "# TYPE recsys_stage_latency_ms histogram",
        ]
        for name, (counts, total, n) in sorted(stages.items()):
            cumulative = 0
            for bound, count in zip([*BUCKETS_MS, "+Inf"], counts, strict=True):
                cumulative += count
                lines.append(f'recsys_stage_latency_ms_bucket{{stage="{name}",le="{bound}"}} {cumulative}')
            lines.append(f'recsys_stage_latency_ms_sum{{stage="{name}"}} {total:.3f}')
            lines.append(f'recsys_stage_latency_ms_count{{stage="{name}"}} {n}')
        lines += ["# HELP recsys_reloads_total Model reload attempts by result.", "# TYPE recsys_reloads_total counter"]
        lines += [f'recsys_reloads_total{{result="{r}"}} {n}' for r, n in reloads.items()]
        live = self._live(snapshots)
        if self.metrics_dir is not None:
            lines += [
                "# HELP recsys_workers Worker processes answering requests.",
                "# TYPE recsys_workers gauge",
                f"recsys_workers {len(live)}",
            ]
        lines += _status_lines(live, labelled=self.metrics_dir is not None)
        return "\n".join(lines) + "\n"


def _status_lines(snapshots: list[dict], labelled: bool) -> list[str]:
    """Readiness and model versions of each process, one family at a time (with `labelled`,
    each sample names its worker: label worker="<pid>")."""

    def labels(snap: dict, **values: str) -> str:
        pairs = [f'{k}="{_escape(v)}"' for k, v in values.items()] + ([f'worker="{snap["pid"]}"'] if labelled else [])
        return "{" + ",".join(pairs) + "}" if pairs else ""

    serving = [snap for snap in snapshots if snap["versions"] is not None]
    lines = [
        "# HELP recsys_ready 1 when models are loaded and requests are answered.",
        "# TYPE recsys_ready gauge",
        *(f"recsys_ready{labels(snap)} {int(snap['ready'])}" for snap in snapshots),
        "# HELP recsys_reload_failing 1 when the latest reload failed (the old models keep serving).",
        "# TYPE recsys_reload_failing gauge",
        *(f"recsys_reload_failing{labels(snap)} {int(snap['reload_failing'])}" for snap in snapshots),
    ]
    if not serving:
        return lines
    lines += [
        "# HELP recsys_model_info The models serving: day, ranker day, recall champion.",
        "# TYPE recsys_model_info gauge",
    ]
    for snap in serving:
        v = snap["versions"]
        info = labels(snap, day=v["day"], ranker_day=v["ranker_day"] or "", recall_champion=v["recall_champion"] or "")
        lines.append(f"recsys_model_info{info} 1")
    lines += [
        "# HELP recsys_model_version The version folder of each model serving.",
        "# TYPE recsys_model_version gauge",
    ]
    for snap in serving:
        lines += [
            f"recsys_model_version{labels(snap, model=m, version=version)} 1"
            for m, version in snap["versions"]["models"].items()
        ]
    lines += [
        "# HELP recsys_models_loaded_timestamp_seconds When the serving models were loaded.",
        "# TYPE recsys_models_loaded_timestamp_seconds gauge",
        *(f"recsys_models_loaded_timestamp_seconds{labels(snap)} {snap['loaded_at']:.3f}" for snap in serving),
    ]
    return lines


def _clear(error: Exception) -> bool:
    """Errors whose message already says what is wrong and which file (no type name needed)."""
    return isinstance(error, MissingInput | CorruptModelError)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")
