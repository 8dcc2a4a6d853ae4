import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

# The world several modules read (tests/test_features.py, tests/test_ranking_assets.py): 6 days
# generated and materialized end to end once per session, models for the last 4 days.
WORLD_DAYS = [f"2026-01-0{d}" for d in range(1, 7)]
WORLD_CONFIG = dict(n_users=400, n_items=250, days=len(WORLD_DAYS), impressions_per_day=6_000, seed=11)
WORLD_MODEL_DAYS = 4


@pytest.fixture(scope="session")
def built_world(tmp_path_factory) -> Path:
    """A data root built once per session and shared READ-ONLY: a test that writes to it
    (corrupts, re-materializes, renames, deletes) works on its own copy
    (`shutil.copytree(built_world, tmp_path / "copy", symlinks=True)`)."""
    import dagster as dg

    from recsys_assets.core.generator import GeneratorConfig, generate
    from recsys_assets.definitions import build_defs, build_resources
    from recsys_assets.quickstart import materialize_all

    root = tmp_path_factory.mktemp("built_world")
    generate(GeneratorConfig(**WORLD_CONFIG), root)
    _WORLD["instance"] = dg.DagsterInstance.ephemeral()
    materialize_all(
        build_defs(resources=build_resources(str(root))),
        WORLD_DAYS,
        _WORLD["instance"],
        model_days=WORLD_MODEL_DAYS,
    )
    return root


_WORLD: dict = {}


@pytest.fixture(scope="session")
def built_world_instance(built_world):
    """The (in-memory) Dagster instance that recorded built_world's range runs: what the UI
    would show for it. Read-only, like the world."""
    return _WORLD["instance"]


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


def pytest_collection_modifyitems(config, items):
    """Files holding a `slow` test run first (the order inside a file is kept): with test files
    spread over workers, a long file started last would leave the other workers idle at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
