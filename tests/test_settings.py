"""One settings object, built when the definitions load: defaults, the data root's source
marker, the environment, explicit overrides, in that order; nothing reads the environment at
import, and the definitions follow the settings (partitions, windows, resources)."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from pydantic import ValidationError

from recsys_assets.core.adapters.source import write_marker
from recsys_assets.definitions import build_defs, build_resources
from recsys_assets.settings import DEFAULT_START_DATE, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_then_marker_then_environment_then_overrides(tmp_path):
    assert Settings.load(environ={}).start_date == DEFAULT_START_DATE
    root = tmp_path / "ml"
    root.mkdir()
    write_marker(root, "movielens", tmp_path, "1997-09-20", "1997-12-31")
    env = {"RECSYS_DATA_ROOT": str(root)}
    assert Settings.load(environ=env).start_date == "1997-09-20"  # the source's first day
    assert Settings.load(environ=env).history_start is None
    assert Settings.load(environ=env | {"RECSYS_START_DATE": "1997-10-01"}).start_date == "1997-10-01"
    assert Settings.load(environ=env | {"RECSYS_START_DATE": "1997-10-01"}, start_date="1997-11-02").start_date == (
        "1997-11-02"
    )
    loaded = Settings.load(environ=env)
    assert (loaded.ranking.train_days, loaded.ranking.valid_days) == (4, 1)  # a long log keeps the defaults
    assert loaded.landing == f"{root}/landing" and loaded.models_root == f"{root}/models"


def test_a_long_source_starts_with_one_history_partition(tmp_path):
    """Partitions fit the source: the last `daily_partitions` days get one each, everything
    before is one history partition; a held-out period (test_start) starts the daily ones."""
    write_marker(tmp_path, "movielens", tmp_path, "1995-01-09", "2023-10-12", has_impressions=False)
    loaded = Settings.load(environ={}, data_root=str(tmp_path))
    assert (loaded.history_start, loaded.start_date, loaded.evaluation_start) == ("1995-01-09", "2023-06-14", None)
    assert loaded.recall.window_days is None  # a ratings source trains on the whole history
    assert loaded.recall.candidates_recent_days == 365  # batch lists for last year's raters
    assert loaded.recall.tune == ["als"]  # ALS's confidence is searched per release
    assert Settings.load(environ={}, data_root=str(tmp_path), recall={"tune": []}).recall.tune == []
    assert Settings.load(environ={}, data_root=str(tmp_path), daily_partitions=10).start_date == "2023-10-02"
    assert Settings.load(environ={"RECSYS_DAILY_PARTITIONS": "10"}, data_root=str(tmp_path)).start_date == "2023-10-02"
    # an explicit start date: the partitions start there, without a history partition
    explicit = Settings.load(environ={"RECSYS_START_DATE": "2023-01-01"}, data_root=str(tmp_path))
    assert (explicit.start_date, explicit.history_start) == ("2023-01-01", None)
    # an explicit window wins over the source's default
    assert Settings.load(environ={}, data_root=str(tmp_path), recall={"window_days": 90}).recall.window_days == 90
    write_marker(
        tmp_path, "movielens", tmp_path, "1997-09-20", "1998-04-22", test_start="1998-03-07", empty_days="absent"
    )
    ml = Settings.load(environ={}, data_root=str(tmp_path))
    assert (ml.history_start, ml.start_date, ml.evaluation_start) == ("1997-09-20", "1998-03-06", "1998-03-07")
    # an impression log keeps its recency window
    write_marker(tmp_path, "trivago", tmp_path, "2018-11-07", "2018-11-08", has_impressions=True)
    assert Settings.load(environ={}, data_root=str(tmp_path)).recall.window_days == 28
    assert Settings.load(environ={}, data_root=str(tmp_path)).recall.tune == []


def test_a_short_real_log_trains_the_ranker_on_every_earlier_day(tmp_path):
    write_marker(tmp_path, "trivago", tmp_path, "2018-11-07", "2018-11-08")
    short = Settings.load(environ={}, data_root=str(tmp_path))
    assert (short.ranking.train_days, short.ranking.valid_days) == (1, 0)
    # the environment and an explicit ranking config still win
    env = {"RECSYS_RANKER_TRAIN_DAYS": "3", "RECSYS_RANKER_VALID_DAYS": "1"}
    assert Settings.load(environ=env, data_root=str(tmp_path)).ranking.train_days == 3
    assert Settings.load(environ={}, data_root=str(tmp_path), ranking={"valid_days": 1}).ranking.valid_days == 1
    # the synthetic source is never "short": its generator writes whole weeks
    write_marker(tmp_path, "synthetic", None, "2026-01-01", "2026-01-02")
    assert Settings.load(environ={}, data_root=str(tmp_path)).ranking.valid_days == 1


@pytest.mark.parametrize(
    "env, error",
    [
        ({"RECSYS_EXECUTOR": "spark"}, "expected one of multiprocess, in_process, celery"),
        ({"RECSYS_RANKER_TRAIN_DAYS": "two"}, "RECSYS_RANKER_TRAIN_DAYS='two': expected an integer"),
        ({"RECSYS_START_DATE": "yesterday"}, "start_date"),
    ],
)
def test_a_bad_setting_is_refused_with_its_name(env, error):
    with pytest.raises((SettingsError, ValidationError), match=error):
        Settings.load(environ=env)


def test_nothing_reads_the_environment_at_import():
    """Every module imports under values that Settings.load() refuses: only loading the
    settings (when Dagster loads the code location) reads them."""
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for folder in ("recsys_assets", "resources")
        for p in (ROOT / folder).rglob("*.py")
        if p.name != "celery_worker.py"
    )
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('imported')"
    bad = {"RECSYS_START_DATE": "yesterday", "RECSYS_EXECUTOR": "spark", "RECSYS_RANKER_TRAIN_DAYS": "two"}
    done = subprocess.run(
        [sys.executable, "-c", code, *modules],
        cwd=ROOT,
        env={**os.environ, **bad},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-3000:]
    loading = subprocess.run(
        [sys.executable, "-c", "from recsys_assets.definitions import defs; defs()"],
        cwd=ROOT,
        env={**os.environ, **bad},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loading.returncode != 0 and "SettingsError" in loading.stderr


def test_the_definitions_follow_the_settings(tmp_path):
    settings = Settings(data_root=str(tmp_path), start_date="2025-03-01", recall={"window_days": 7})
    defs = build_defs(settings)
    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey("raw_impressions"))
    assert node.partitions_def.get_first_partition_key() == "2025-03-01"
    mapping = graph.get_partition_mapping(dg.AssetKey("recall_training_data"), dg.AssetKey("interactions"))
    assert mapping.start_offset == -7
    resources = build_resources(settings=settings)
    assert resources["storage"].data_root == str(tmp_path)
    assert resources["landing"].landing_root == f"{tmp_path}/landing"
    assert resources["recall"].window_days == 7
    # build_defs with only resources takes the settings of their data root (its source marker)
    write_marker(tmp_path, "movielens", tmp_path, "1997-09-20", "1997-12-31")
    graph = build_defs(resources=build_resources(str(tmp_path))).resolve_asset_graph()
    assert graph.get(dg.AssetKey("interactions")).partitions_def.get_first_partition_key() == "1997-09-20"
    assert json.loads((tmp_path / "SOURCE.json").read_text())["first_day"] == "1997-09-20"


def _reads_at_import(tree: ast.AST) -> list[int]:
    """Lines outside any function (module and class bodies run at import) that read the environment."""
    lines: list[int] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function = True
        text = ast.unparse(node) if isinstance(node, (ast.Attribute, ast.Call)) else ""
        if not in_function and ("os.environ" in text or "os.getenv" in text or "getenv(" in text):
            lines.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, in_function)

    visit(tree, False)
    return sorted(set(lines))


def test_no_module_or_class_body_reads_the_environment():
    found = {
        str(p.relative_to(ROOT)): lines
        for folder in ("recsys_assets", "resources")
        for p in sorted((ROOT / folder).rglob("*.py"))
        if (lines := _reads_at_import(ast.parse(p.read_text())))
    }
    assert found == {}
    # the rule catches a field default that reads a variable (what the resources did before)
    assert _reads_at_import(ast.parse('import os\nclass R:\n    root: str = os.getenv("X", "data")\n')) == [3]
    assert _reads_at_import(ast.parse('import os\ndef f():\n    return os.getenv("X")\n')) == []


@pytest.mark.parametrize(
    "source, last_key",
    [("synthetic", "2026-01-05"), ("movielens", "2026-01-05"), ("trivago", "2026-01-05"), ("landing", None)],
)
def test_a_finished_sources_partitions_end_with_its_data(tmp_path, source, last_key):
    """A finished source's partitions end at its last day (the UI plots the data, not the empty
    months after it); a live landing zone stays open-ended, so its new days appear by themselves."""
    write_marker(tmp_path, source, None if source == "synthetic" else tmp_path, "2026-01-01", "2026-01-05")
    settings = Settings.load(environ={}, data_root=str(tmp_path))
    assert settings.end_date == last_key
    keys = (
        build_defs(settings).resolve_asset_graph().get(dg.AssetKey("interactions")).partitions_def.get_partition_keys()
    )
    if last_key is None:
        assert len(keys) > 5  # up to today
    else:
        assert keys == [f"2026-01-0{d}" for d in range(1, 6)]
