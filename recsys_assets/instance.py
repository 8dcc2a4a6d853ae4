"""Prepare a DAGSTER_HOME once, safely, before any run: `python -m recsys_assets.instance
[--home DIR]` (the quickstart does it too).

Dagster creates its SQLite storage (runs, event log index, schedules) the first time an
instance opens a home. Two CLI runs started at once on a home never opened before can both
create it and leave two schema heads, after which nothing opens the home again. Preparing it
first, under an exclusive file lock, means every later run (sequential or parallel) finds the
storage complete. The dagster.yaml written for a new home turns telemetry off (there may be no
network) and run monitoring on (the daemon of `dagster dev` marks a run whose process died as
failed instead of leaving it STARTED).
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys_assets.instance", description=__doc__)
    parser.add_argument("--home", help="default: $DAGSTER_HOME")
    args = parser.parse_args(argv)
    home = args.home or os.environ.get("DAGSTER_HOME")
    if not home:
        parser.error("set DAGSTER_HOME or pass --home")
    print(f"DAGSTER_HOME {prepare_dagster_home(Path(home))} is ready for parallel runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
