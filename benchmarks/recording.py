"""What every benchmark records next to its figures: the commit, the machine, and the row
appended to benchmarks/RESULTS.md."""

import os
import platform
import subprocess
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores, {mem_gib:.0f} GiB, {platform.machine()}, Python {platform.python_version()}, "
            f"duckdb {duckdb.__version__}")


def append_result(row: str) -> Path:
    path = ROOT / "benchmarks/RESULTS.md"
    with open(path, "a") as fh:
        fh.write(row.rstrip("\n") + "\n")
    return path
