"""`recsys-celery-worker`: start a Dagster Celery worker for the platform's steps.

The broker and result backend come from RECSYS_CELERY_BROKER / RECSYS_CELERY_BACKEND, the
same variables the run's executor reads (recsys_assets/executors.py), so the two cannot
disagree. The data root and object-store credentials come from the worker's environment
too (RECSYS_DATA_ROOT, AWS_*): start every worker with the environment of the runs.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from recsys_assets.executors import celery_settings
from recsys_assets.settings import Settings


def worker_command(name: str, concurrency: int, config_path: Path) -> list[str]:
    bindir = Path(sys.executable).parent
    return [
        str(bindir / "dagster-celery"),
        "worker",
        "start",
        "-A",
        "dagster_celery.app",
        "-y",
        str(config_path),
        "-n",
        name,
        "--",
        "--concurrency",
        str(concurrency),
        "--prefetch-multiplier",
        "1",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="recsys", help="worker name; dagster-celery appends @<host name>")
    parser.add_argument("--concurrency", type=int, default=1, help="steps this worker runs at once")
    args = parser.parse_args(argv)
    # dagster-celery reads the worker's config from a YAML file; JSON is YAML.
    config = Path(tempfile.mkdtemp(prefix="recsys-celery-")) / "celery.yaml"
    config.write_text(json.dumps({"execution": {"config": celery_settings(Settings.load())}}))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = worker_command(args.name, args.concurrency, config)
    os.execve(cmd[0], cmd, env)  # the worker replaces this process: signals reach it directly


if __name__ == "__main__":
    main()
