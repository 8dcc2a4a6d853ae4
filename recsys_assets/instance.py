"""Prepare a DAGSTER_HOME once, safely, before any run: `python -m recsys_assets.instance
[--home DIR]` (the quickstart does it too).

Dagster creates its SQLite storage (runs, event log index, schedules) the first time an
instance opens a home. Two CLI runs started at once on a home never opened before can both
create it and leave two schema heads, after which nothing opens the home again. Preparing it
first, under an exclusive file lock, means every later run (sequential or parallel) finds the
storage complete. The dagster.yaml written for a new home turns telemetry off (there may be no
network) and run monitoring on (runs stuck starting or past `dagster/max_runtime` are failed).

A run whose process was killed (SIGKILL, OOM, a closed terminal) never records its end and stays
STARTED. Dagster's run monitoring cannot see that for runs it did not launch (`dagster asset
materialize`, the quickstart), so `fail_dead_runs` does: on a home whose runs are stored locally
(SQLite, so every run ran on this machine), a STARTED run whose process is gone is marked
failed, saying why. It runs when a home is prepared (quickstart, `python -m
recsys_assets.instance`) and every minute in the daemon (`dead_run_sensor`).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from pathlib import Path

import dagster as dg

DAGSTER_YAML = """telemetry:
  enabled: false
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  poll_interval_seconds: 30
"""
READY = ".recsys-storage-ready"  # written once the storage exists


def prepare_dagster_home(home: Path) -> Path:
    """`home` with a dagster.yaml (written only if missing) and its storage created, once:
    concurrent callers wait on one lock and the first one creates the storage."""
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".recsys-init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        config = home / "dagster.yaml"
        if not config.exists():
            tmp = home / f".dagster.yaml.{os.getpid()}"
            tmp.write_text(DAGSTER_YAML)
            os.replace(tmp, config)
        if not (home / READY).exists():
            with dg.DagsterInstance.from_config(str(home)) as instance:
                instance.get_runs(limit=1)  # run, event log and schedule storage are created on open
            (home / READY).write_text("storage created\n")
    return home


def _process_started_at(pid: int) -> float | None:
    """When process `pid` started (Unix time); None when there is no such process (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks after boot
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _run_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process that executes the run: the first engine event that names one
    ("Executing steps in process (pid: N)", "Started process for run (pid: N)")."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20).records
    for record in records:
        event = record.event_log_entry.dagster_event
        pid = event.engine_event_data.metadata.get("pid") if event and event.engine_event_data else None
        if pid is not None:
            return int(getattr(pid, "value", pid))
    return None


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every STARTED run whose process is gone (no process with its pid, or one that
    started after the run did: the pid was reused). Only where runs are stored in SQLite: such
    a home belongs to one machine, so a pid means a process here; elsewhere nothing is touched.
    Returns the ids of the runs marked failed."""
    if type(instance.run_storage).__name__ != "SqliteRunStorage" or not Path("/proc/self/stat").exists():
        return []
    failed = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run = record.dagster_run
        pid = _run_pid(instance, run.run_id)
        if pid is None:
            continue
        started = _process_started_at(pid)
        run_started = record.start_time or record.create_timestamp.timestamp()
        if started is not None and started <= run_started + 1.0:  # its process is alive
            continue
        why = "no longer exists" if started is None else "no longer exists (its pid belongs to a newer process)"
        instance.report_run_failed(
            run, f"the run's process (pid {pid}) {why}: it was killed or crashed before it could record its end"
        )
        failed.append(run.run_id)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys_assets.instance", description=__doc__)
    parser.add_argument("--home", help="default: $DAGSTER_HOME")
    args = parser.parse_args(argv)
    home = args.home or os.environ.get("DAGSTER_HOME")
    if not home:
        parser.error("set DAGSTER_HOME or pass --home")
    home = prepare_dagster_home(Path(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run_id in fail_dead_runs(instance):
            print(f"run {run_id} was STARTED but its process is gone: marked failed")
    print(f"DAGSTER_HOME {home} is ready for parallel runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
