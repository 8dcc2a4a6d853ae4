import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


@pytest.fixture
def write_jsonl():
    """Write raw lines (str or bytes) as a JSONL file, exactly as given."""

    def _write(path: Path, lines, newline=b"\n") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            for line in lines:
                fh.write((line if isinstance(line, bytes) else line.encode()) + newline)
        return path

    return _write
