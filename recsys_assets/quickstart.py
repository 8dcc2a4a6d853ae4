"""One command from a fresh clone: generate the default synthetic logs and materialize
every asset over every generated day into ./data, recorded in ./dagster_home so the UI
shows the runs. Usage: python -m recsys_assets.quickstart [--days N] [--regenerate]

Real data instead: --source movielens|trivago --source-path <folder> adapts the dataset
into the data root's landing zone first (python -m recsys_assets.adapt) and starts the
daily partitions at its first day. A data root holds one source."""

import argparse
import json
import os
import resource
import sys
import time
import warnings
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from recsys_assets.adapt import prepare_source
from recsys_assets.core.adapters.source import SourceConflict, check_compatible, write_marker
from recsys_assets.core.generator import GeneratorConfig, generate
from recsys_assets.definitions import build_defs
from recsys_assets.instance import fail_dead_runs, prepare_dagster_home
from recsys_assets.settings import Settings


def ensure_dagster_home(default: Path) -> Path:
    """Use $DAGSTER_HOME, or a project-local one (telemetry off, run monitoring on), with its
    storage created once, before any run (recsys_assets/instance.py)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(default.resolve())))
    return prepare_dagster_home(home)


# Model days of the synthetic quickstart: the last day's ranker then has the 4 training and 1
# validation sample days RankingSettings asks for (fewer give a weaker ranker: 77.8% of the
# oracle's NDCG@10 with 4 model days, 81.0% with 8; benchmarks/RESULTS.md), and the back-test 8
# periods. A real source keeps 4: each model day trains on its whole history, which at tens of
# millions of ratings costs minutes a day.
DEFAULT_MODEL_DAYS = 8
SOURCE_MODEL_DAYS = 4


def model_days(args: argparse.Namespace) -> int:
    """--model-days, or the default of the source."""
    if args.model_days is not None:
        return int(args.model_days)
    return DEFAULT_MODEL_DAYS if args.source == "synthetic" else SOURCE_MODEL_DAYS


MODEL_GROUPS = {
    "recall",
    "evaluation",
    "ranking",
    "serving",
    "report",
}  # trained per day; the quickstart trains them for the last days only


def _phases(defs: dg.Definitions) -> list[tuple[set, bool, bool]]:
    """The asset graph cut into runs: topological order, one run per stretch of assets that
    are all partitioned or all not (a range run cannot mix them); model groups apart."""
    graph = defs.resolve_asset_graph()
    remaining = set(graph.get_all_asset_keys())
    done, phases = set(), []
    while remaining:
        ready = {k for k in remaining if not (graph.get(k).parent_keys & remaining)}
        kind = lambda k: (graph.get(k).partitions_def is not None, graph.get(k).group_name in MODEL_GROUPS)  # noqa: E731
        first = min(ready, key=lambda k: (kind(k), k.to_user_string()))
        phase = set()
        frontier = {k for k in ready if kind(k) == kind(first)}
        while frontier:  # grow the phase with everything of the same kind it unlocks
            phase |= frontier
            remaining -= frontier
            frontier = {k for k in remaining if kind(k) == kind(first) and not (graph.get(k).parent_keys & remaining)}
        phases.append((phase, *kind(first)))
        done |= phase
    return phases


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds per step of a run, from its step start and success/failure events."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    types = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    for entry in instance.all_logs(run_id, of_type=types):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.step_key in started:
            seconds[event.step_key] = entry.timestamp - started[event.step_key]
    return seconds


def materialize_all(
    defs: dg.Definitions,
    days: list[str],
    instance: dg.DagsterInstance,
    model_days: int = 1,
    evaluation_start: str | None = None,
    log_level: str = "WARNING",
) -> list[dict]:
    """Materialize the whole graph: snapshots, daily layers over `days` as range runs,
    dictionaries, and the model layers (recall, ranking, serving) for the last `model_days` days
    (and the recall models of `evaluation_start`, which holdout_evaluation tests). Prints each
    phase and its steps' times as it goes."""
    job = defs.resolve_implicit_global_asset_job_def()
    graph = defs.resolve_asset_graph()
    runs: list[tuple[list, list[str] | None]] = []
    phases: list[dict] = []  # what each run took
    for selection, partitioned, is_model in _phases(defs):
        if is_model and model_days == 0:
            continue
        if not partitioned:
            runs.append((sorted(selection), None))
            continue
        model_run_days = days[-model_days:]
        if is_model and evaluation_start and evaluation_start in days and evaluation_start not in model_run_days:
            recall = sorted(k for k in selection if graph.get(k).group_name == "recall")
            if recall:
                runs.append((recall, [evaluation_start]))
        runs.append((sorted(selection), model_run_days if is_model else days))
    for number, (selection, run_days) in enumerate(runs, 1):
        tags = (
            {"dagster/asset_partition_range_start": run_days[0], "dagster/asset_partition_range_end": run_days[-1]}
            if run_days
            else {}
        )
        names = ", ".join(k.to_user_string() for k in selection)
        span = f" over {run_days[0]}..{run_days[-1]} ({len(run_days)} partitions)" if run_days else ""
        print(f"[{number}/{len(runs)}] {names if len(names) < 100 else names[:97] + '...'}{span}", flush=True)
        started, cpu = time.perf_counter(), _cpu_seconds()
        result = job.execute_in_process(
            instance=instance,
            asset_selection=selection,
            tags=tags,
            raise_on_error=False,
            # Dagster's per-event DEBUG lines are for the UI's run page; the console gets warnings
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        wall = time.perf_counter() - started
        steps = _step_seconds(instance, result.run_id)
        phase = {
            "phase": number,
            "assets": [k.to_user_string() for k in selection],
            "partitions": len(run_days or []),
            "wall_s": wall,
            "cpu_s": _cpu_seconds() - cpu,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "steps_s": sum(steps.values()),
        }
        phases.append(phase)
        slowest = sorted(steps.items(), key=lambda kv: -kv[1])[:3]
        print(
            f"      {wall:.1f} s wall, {phase['cpu_s']:.1f} s CPU, peak RSS {phase['peak_rss_mib']:.0f} MiB; "
            f"steps {phase['steps_s']:.1f} s, Dagster {max(wall - phase['steps_s'], 0):.1f} s"
            + (f"; slowest: {', '.join(f'{k} {v:.1f} s' for k, v in slowest)}" if slowest else ""),
            flush=True,
        )
        for evaluation in result.get_asset_check_evaluations():
            if not evaluation.passed:
                print(
                    f"  check {evaluation.severity.value}: {evaluation.asset_check_key.to_user_string()}"
                    + (f" {evaluation.partition}" if evaluation.partition else "")
                    + f": {_check_findings(evaluation.metadata)}"
                )
        if not result.success:
            raise SystemExit("materialization failed; see the run in the UI for the failing step")
    return phases


def _check_findings(metadata: dict) -> str:
    """A failed check's findings on one line: which models, features or rows, and how many."""
    shown = []
    for key, value in metadata.items():
        raw = value.value
        if raw in (None, "", {}, []) or isinstance(raw, bool):
            continue
        text = json.dumps(raw, default=str) if isinstance(raw, (dict, list)) else str(raw)
        text = text.removeprefix("- ").replace("\n- ", ", ").replace("\n", " ")  # a markdown list on one line
        shown.append(f"{key}={text}")
    line = "; ".join(shown) or "no details"
    return line if len(line) <= 200 else line[:197] + "..."


def _is_day(name: str) -> bool:
    try:
        return len(name) == 10 and date.fromisoformat(name).isoformat() == name
    except ValueError:
        return False


def landing_days(landing: Path) -> list[str]:
    """The complete day folders (<YYYY-MM-DD>/ with _SUCCESS); a complete folder with another
    name is refused with one message (it would otherwise become a partition key)."""
    complete = [p.name for p in landing.iterdir() if p.is_dir() and (p / "_SUCCESS").exists()]
    odd = sorted(name for name in complete if not _is_day(name))
    if odd:
        raise SystemExit(
            f"error: {landing} has folders with a _SUCCESS marker that are not days <YYYY-MM-DD>: "
            f"{', '.join(odd[:5])}; rename them to the UTC day they hold, or move them out of the landing zone"
        )
    return sorted(complete)


def partition_days(settings: Settings, last_day: str) -> list[str]:
    """Every partition key from the first (the history partition of a long source) to the last
    landed day: a calendar day without data is a partition too (ingested as empty)."""
    first, last = date.fromisoformat(settings.start_date), date.fromisoformat(last_day)
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


# A range run plans every asset of every partition first; thousands of partitions take minutes.
MANY_PARTITIONS = 1000


def describe_partitions(settings: Settings, landed: list[str], days: list[str]) -> None:
    """Say up front how the source's days become partitions (and warn when they are many)."""
    if settings.history_start:
        print(
            f"  {settings.history_start}..{settings.start_date} is one history partition ({settings.start_date}); "
            f"{len(days) - 1} daily partitions follow (--last-days {settings.daily_partitions}); models train on "
            + ("the whole history" if settings.recall.window_days is None else f"{settings.recall.window_days} days")
        )
    if settings.evaluation_start:
        print(
            f"  held-out period {settings.evaluation_start}..{days[-1]}: holdout_evaluation tests the models of "
            f"{settings.evaluation_start}, trained on everything before it"
        )
    if len(days) > MANY_PARTITIONS:
        print(
            f"  warning: {len(days)} daily partitions; each range run plans every asset of every partition first, "
            f"which takes minutes. --last-days N keeps daily partitions for the last N days only (the models still "
            "train on the whole history)."
        )


def use_landing_zone(landing: Path, data_root: Path) -> dict:
    """A landing zone the user produced in the contract format (docs/data-contract.md) is
    read where it is; the data root records it as its source."""
    landing = landing.resolve()
    missing = [name for name in ("users.jsonl", "items.jsonl") if not (landing / name).exists()]
    days = landing_days(landing) if landing.is_dir() else []
    if not landing.is_dir() or missing or not days:
        raise SystemExit(
            f"error: {landing} is not a landing zone in the contract format: it needs users.jsonl, "
            f"items.jsonl and day folders <YYYY-MM-DD>/ with a _SUCCESS marker "
            f"(missing: {', '.join(missing) or 'complete day folders'}); see docs/data-contract.md"
        )
    marker = check_compatible(data_root, "landing", landing)
    data_root.mkdir(parents=True, exist_ok=True)
    return (
        write_marker(data_root, "landing", landing, days[0], days[-1])
        if marker is None
        else write_marker(
            data_root,
            "landing",
            landing,
            days[0],
            days[-1],
            **{k: v for k, v in marker.items() if k not in ("source", "path", "first_day", "last_day")},
        )
    )


def select_source(args: argparse.Namespace, data_root: Path) -> None:
    """Refuse a data root that holds another source; adapt a real dataset into the landing
    zone. The data root's SOURCE.json marker then tells Settings.load() where the partitions
    start (the source's first day) and whether the log is too short for the ranker's defaults."""
    try:
        if args.source == "synthetic":
            check_compatible(data_root, "synthetic", None)
            return
        if not args.source_path:
            raise SystemExit(f"--source {args.source} needs --source-path (the dataset's folder)")
        if args.source == "landing":
            marker = use_landing_zone(Path(args.source_path), data_root)
        else:
            print(f"Adapting {args.source} from {args.source_path} into {data_root / 'landing'} ...")
            marker = prepare_source(args.source, args.source_path, data_root)
    except SourceConflict as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"  {args.source}: {marker['first_day']} .. {marker['last_day']}")


def main(argv: list[str] | None = None, phases: list[dict] | None = None) -> int:
    """The command; `phases`, when given, receives what each run took (benchmarks/bench_history.py)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", help="default: RECSYS_DATA_ROOT or ./data")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument(
        "--start",
        type=date.fromisoformat,
        default=None,
        help="the synthetic world's first day (default 2026-01-01). Dagster's UI plots the partitions of the "
        "last 120 days before today, so a world that ends recently, e.g. --start $(date -d '-15 days' +%%F), "
        "shows its per-day plots",
    )
    parser.add_argument("--impressions-per-day", type=int, default=70_000)
    parser.add_argument(
        "--model-days",
        type=int,
        default=None,
        help=f"train and evaluate models for the last N days (default {DEFAULT_MODEL_DAYS} for the synthetic "
        f"source: its last ranker learns from the samples of the 5 days before it, as many as RankingSettings "
        f"asks for, and the back-test has N periods; {SOURCE_MODEL_DAYS} for a real source, whose every model day "
        "trains on its whole history; a ranker needs at least 2 sample days, so N >= 3)",
    )
    parser.add_argument(
        "--last-days",
        type=int,
        help="daily partitions for the last N days of the source only; everything before them is one history "
        f"partition the models still train on (default: Settings.daily_partitions, {Settings().daily_partitions})",
    )
    parser.add_argument("--regenerate", action="store_true", help="rewrite the landing zone even if present")
    parser.add_argument(
        "--verbose", action="store_true", help="print Dagster's event log (DEBUG) too; by default only warnings"
    )
    parser.add_argument(
        "--source",
        choices=("synthetic", "movielens", "trivago", "landing"),
        default="synthetic",
        help="where the raw logs come from (default: the embedded synthetic generator; landing = "
        "your own landing zone in the contract format, read in place)",
    )
    parser.add_argument("--source-path", help="the dataset's folder or file (movielens, trivago), or the landing zone")
    args = parser.parse_args(argv)
    args.data_root = args.data_root or Settings.load().data_root
    # Partitioned checks and backfill policies are marked preview/beta; the notice is noise here.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)

    data_root = Path(args.data_root).resolve()
    # A real source's runs are recorded next to its data, apart from the synthetic runs.
    home = ensure_dagster_home(Path("dagster_home") if args.source == "synthetic" else data_root / "dagster_home")
    select_source(args, data_root)

    config = GeneratorConfig(
        days=args.days,
        impressions_per_day=args.impressions_per_day,
        **({"start_date": args.start} if args.start else {}),
    )
    landing = Path(args.source_path).resolve() if args.source == "landing" else data_root / "landing"
    if args.source == "synthetic" and (args.regenerate or not (landing / "users.jsonl").exists()):
        print(f"Generating {config.days} days of synthetic logs into {landing} ...")
        generate(config, data_root)
    landed = landing_days(landing)
    if args.source == "synthetic":  # the days landed now (a regenerated world may have more or fewer)
        write_marker(data_root, "synthetic", None, landed[0], landed[-1])
    overrides = {"data_root": str(data_root)} | ({"landing_root": str(landing)} if args.source == "landing" else {})
    if args.last_days:
        overrides["daily_partitions"] = args.last_days
    settings = Settings.load(**overrides)
    defs = build_defs(settings)
    days = partition_days(settings, landed[-1])
    describe_partitions(settings, landed, days)
    if settings.ranking.valid_days == 0:
        print(f"  {len(days)} days: the ranker trains on the earlier days and early-stops on 20% of their requests")
    print(f"Materializing every asset for {days[0]}...{days[-1]} ...")
    with dg.DagsterInstance.get() as instance:
        for run_id in fail_dead_runs(instance):  # an earlier quickstart killed mid-run, say
            print(f"  run {run_id} was STARTED but its process is gone: marked failed")
        took = materialize_all(
            defs,
            days,
            instance,
            model_days=model_days(args),
            evaluation_start=settings.evaluation_start,
            log_level="DEBUG" if args.verbose else "WARNING",
        )
    if phases is not None:
        phases.extend(took)

    con = duckdb.connect(str(data_root / "warehouse.duckdb"), read_only=True)
    print("\nTables in the warehouse (rows):")
    for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall():
        print(f"  {name:20s} {con.execute(f'SELECT count(*) FROM {name}').fetchone()[0]:>12,}")
    con.close()
    # The UI reads the same data root: its SOURCE.json gives the partitions' start and the ranker's days.
    landing_env = f" RECSYS_LANDING_ROOT={landing}" if args.source == "landing" else ""
    print(f"""
Done.
  Parquet lake:     {data_root / "lake"}
  DuckDB catalog:   {data_root / "warehouse.duckdb"}   (duckdb -readonly {data_root / "warehouse.duckdb"})
  Dagster runs in:  {home}
  Open the UI:      DAGSTER_HOME={home} RECSYS_DATA_ROOT={data_root}{landing_env} .venv/bin/dagster dev
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
