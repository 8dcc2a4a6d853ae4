"""What every benchmark records next to its figures: the commit, the machine, and the row
appended to benchmarks/RESULTS.md."""

import os
import platform
import subprocess
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {mem_gib:.0f} GiB, {platform.machine()}, Python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}"
    )


def append_result(row: str, section: str) -> Path:
    """Add `row` as the last table row of the RESULTS.md section whose heading starts with
    `## {section}` (so a benchmark's row never lands in another benchmark's table)."""
    path = ROOT / "benchmarks/RESULTS.md"
    lines = path.read_text().split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith(f"## {section}")]
    if not starts:
        raise KeyError(f"RESULTS.md has no section '## {section}': add its heading and table header first")
    start = starts[0]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rows = [i for i in range(start, end) if lines[i].startswith("|")]
    if not rows:
        raise KeyError(f"section '## {section}' of RESULTS.md has no table header")
    lines.insert(rows[-1] + 1, row.rstrip("\n"))
    path.write_text("\n".join(lines))
    return path


class PeakRSS:
    """Samples this process's resident set size (VmRSS) every 50 ms while active."""

    def __enter__(self):
        import threading

        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(0.05)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
