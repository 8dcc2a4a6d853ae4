"""Safe defaults: the UI binds to 127.0.0.1 unless told otherwise, stored files are never
unpickled, paths and partition keys are validated (nothing escapes its root), SQL literals
are parameters or allow-listed validated paths/keys, and configuration errors read clearly."""

from __future__ import annotations

import ast
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from resources.storage import StorageResource, UnsafePathError

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = [ROOT / "recsys_assets", ROOT / "resources"]


def _sources():
    for folder in CODE_DIRS:
        yield from sorted(folder.rglob("*.py"))


# --- the webserver binds to localhost ---------------------------------------------------


def test_webserver_default_host_is_localhost():
    import click
    from dagster_webserver import cli as webserver_cli

    commands = [c for c in vars(webserver_cli).values() if isinstance(c, click.Command)]
    hosts = {p.default for c in commands for p in c.params if p.name == "host"}
    assert hosts == {"127.0.0.1"}
    # `dagster dev` passes --host to the webserver only when one is given, so its default is the same
    from dagster._cli import dev

    source = Path(dev.__file__).read_text()
    assert '(["--host", host] if host else [])' in source


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":
                found.add(address)
    return found


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc to read the listening socket")
def test_webserver_started_without_host_listens_on_loopback_only(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "RECSYS_DATA_ROOT": str(tmp_path / "data")}
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver")), "-w", "workspace.yaml", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not _listening_addresses(port) and time.time() < deadline and server.poll() is None:
            time.sleep(0.5)
        addresses = _listening_addresses(port)
        assert addresses == {"0100007F"}, addresses  # 127.0.0.1 and nothing else (not 0.0.0.0 / ::)
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- no code-executing deserialisation ----------------------------------------------------

FORBIDDEN_IMPORTS = {"pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal", "_pickle"}


def test_no_pickle_or_unsafe_loaders_in_the_code():
    problems = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
                )
                bad = {n.split(".")[0] for n in names} & FORBIDDEN_IMPORTS
                if bad:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {bad}")
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                kwargs = {k.arg: ast.unparse(k.value) for k in node.keywords}
                if func.endswith(("np.load", "numpy.load")) and kwargs.get("allow_pickle") != "False":
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno} {func} without allow_pickle=False")
                if kwargs.get("allow_pickle") == "True":
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno} allow_pickle=True")
                if func.endswith(("read_pickle", "torch.load", "yaml.load", "yaml.unsafe_load")) or func in (
                    "eval",
                    "exec",
                ):
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {func}")
    assert problems == []


# --- paths and partition keys -------------------------------------------------------------


@pytest.mark.parametrize("key", ["../../etc", "2026-01-05/../../x", "2026-13-45", "2026-1-5", "", "snapshot/..", None])
def test_malformed_partition_keys_are_refused(tmp_path, key):
    storage = StorageResource(data_root=str(tmp_path))
    with pytest.raises(UnsafePathError, match="invalid partition key"):
        storage.partition_path("raw_events", key)
    with pytest.raises(UnsafePathError, match="invalid partition key"):
        storage.quarantine_path("raw_events", key)


@pytest.mark.parametrize("table", ["../models", "raw_events/../../x", "Raw", "a b", "x'y"])
def test_malformed_table_names_are_refused(tmp_path, table):
    with pytest.raises(UnsafePathError, match="invalid table name"):
        StorageResource(data_root=str(tmp_path)).partition_path(table, "2026-01-05")


def test_a_data_root_with_a_quote_is_refused(tmp_path):
    with pytest.raises(UnsafePathError, match="contains a quote"):
        _ = StorageResource(data_root=str(tmp_path / "it's")).lake_dir


@pytest.mark.parametrize("name", ["g[ab]", "g*", "g?", "g]"])
def test_a_root_with_glob_characters_is_refused_and_no_sibling_is_read(tmp_path, name):
    """DuckDB expands [ ] * ? in every path it reads, even in a literal list of files: with
    such a root it would find nothing, or read the sibling folder `ga/` the pattern matches."""
    from resources import LandingZoneResource

    (tmp_path / "ga/data/lake/raw_events").mkdir(parents=True)  # the sibling a pattern would match
    with pytest.raises(UnsafePathError, match="glob character"):
        _ = StorageResource(data_root=str(tmp_path / name / "data")).lake_dir
    with pytest.raises(UnsafePathError, match="glob character"):
        _ = LandingZoneResource(landing_root=str(tmp_path / name / "landing")).root
    assert StorageResource(data_root=str(tmp_path / "ga/data")).lake_dir.exists()  # plain names still work


def test_a_lake_folder_symlinked_out_of_the_data_root_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "data/lake").mkdir(parents=True)
    (tmp_path / "data/lake/raw_events").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside"):
        StorageResource(data_root=str(tmp_path / "data")).partition_path("raw_events", "2026-01-05")


def _landing_world(tmp_path):
    from recsys_assets.core.generator import GeneratorConfig, generate
    from recsys_assets.definitions import build_resources

    generate(GeneratorConfig(n_users=50, n_items=40, days=1, impressions_per_day=300, seed=1), tmp_path / "data")
    return build_resources(str(tmp_path / "data"))


def _run_raw(resources, assets, partition=None):
    from recsys_assets.assets import raw
    from recsys_assets.partitions import daily_partitions
    from recsys_assets.settings import Settings

    raw_assets, _ = raw.build(daily_partitions(Settings().start_date), Settings())

    return dg.materialize(
        raw_assets,
        resources=resources,
        selection=assets,
        partition_key=partition,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _failure_message(result) -> str:
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.event_specific_data.error
    assert error.cls_name == "Failure", error.cls_name  # our message, not a library traceback
    return error.message


def test_landing_symlinks_that_escape_the_landing_zone_are_refused(tmp_path):
    resources = _landing_world(tmp_path)
    assert _run_raw(resources, ["raw_users", "raw_items"]).success
    landing = tmp_path / "data/landing/2026-01-01"
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"not": "yours"}\n')
    (landing / "events.jsonl").unlink()
    (landing / "events.jsonl").symlink_to(secret)  # a file symlink out of the zone
    message = _failure_message(_run_raw(resources, ["raw_events"], "2026-01-01"))
    assert "Refused" in message and "outside" in message and str(secret) in message

    outside_day = tmp_path / "outside_day"
    landing.rename(outside_day)
    landing.symlink_to(outside_day)  # a whole day folder symlinked out of the zone
    message = _failure_message(_run_raw(resources, ["raw_impressions"], "2026-01-01"))
    assert "Refused" in message and "outside" in message
    assert not (tmp_path / "data/lake/raw_impressions").exists()  # nothing was read or written


def _with_alarm(seconds, call):
    """`call()`, interrupted with TimeoutError after `seconds` (opening a FIFO blocks forever)."""
    import signal

    def _timeout(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        return call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_special_files_in_the_landing_zone_are_refused_without_opening_them(tmp_path):
    """A FIFO named like a log file would block the run forever when opened, a directory would
    give an IsADirectoryError traceback: both are refused by name, and nothing is written."""
    resources = _landing_world(tmp_path)
    assert _run_raw(resources, ["raw_users", "raw_items"]).success
    day = tmp_path / "data/landing/2026-01-01"
    (day / "events.jsonl").unlink()
    os.mkfifo(day / "events.jsonl")
    message = _with_alarm(60, lambda: _failure_message(_run_raw(resources, ["raw_events"], "2026-01-01")))
    assert "Refused" in message and "a FIFO (named pipe)" in message and "2026-01-01/events.jsonl" in message
    (day / "impressions.jsonl").unlink()
    (day / "impressions.jsonl").mkdir()
    message = _failure_message(_run_raw(resources, ["raw_impressions"], "2026-01-01"))
    assert "Refused" in message and "a directory" in message and "impressions.jsonl" in message
    assert not (tmp_path / "data/lake/raw_impressions").exists()
    assert not (tmp_path / "data/lake/raw_events").exists()


def test_ingestion_itself_refuses_a_fifo(tmp_path):
    from recsys_assets.core import contract as c
    from recsys_assets.core.ingest import NotARegularFileError, ingest_files

    os.mkfifo(tmp_path / "events.jsonl")
    with pytest.raises(NotARegularFileError, match=r"events.jsonl is a FIFO \(named pipe\), not a regular file"):
        _with_alarm(
            30,
            lambda: ingest_files(
                c.USERS, [(tmp_path / "events.jsonl", "events.jsonl")], "snapshot", None, tmp_path / "d", tmp_path / "q"
            ),
        )


def test_a_missing_file_of_a_users_own_landing_zone_does_not_suggest_the_generator(tmp_path):
    from recsys_assets.core.adapters.source import write_marker
    from resources import LandingZoneResource

    own = tmp_path / "zone"
    (own / "2026-01-05").mkdir(parents=True)
    landing = LandingZoneResource(landing_root=str(own))
    with pytest.raises(dg.Failure) as own_failure:
        landing.require_file(landing.day_file("2026-01-05", "events"))
    text = own_failure.value.description
    assert "Landing file missing" in text and "2026-01-05/events.jsonl" in text
    assert "generate" not in text and "deliver it into" in text and "_SUCCESS" in text

    data = tmp_path / "data"  # `quickstart --source landing` copies a user's zone into <data>/landing
    (data / "landing").mkdir(parents=True)
    write_marker(data, "landing", str(own), "2026-01-05", "2026-01-05")
    landing = LandingZoneResource(landing_root=str(data / "landing"))
    with pytest.raises(dg.Failure) as copied_failure:
        landing.require_file(landing.day_file("2026-01-05", "events"))
    assert "generate" not in copied_failure.value.description

    fresh = LandingZoneResource(landing_root=str(tmp_path / "fresh/landing"))  # nothing yet: a new user
    with pytest.raises(dg.Failure, match="recsys_assets.generate"):
        fresh.require_file(fresh.day_file("2026-01-05", "events"))


def test_a_malformed_partition_key_is_refused_by_the_landing_zone(tmp_path):
    from resources import LandingZoneResource

    landing = LandingZoneResource(landing_root=str(tmp_path))
    with pytest.raises(dg.Failure, match="invalid partition key"):
        landing.day_file("../../etc", "events")
    with pytest.raises(dg.Failure, match="unknown landing table"):
        landing.day_file("2026-01-05", "../passwd")


# --- SQL: literals are parameters or allow-listed, validated values ------------------------

# Every value interpolated *inside a SQL string literal* of an f-string ('{...}'), by file and
# expression. All are paths built by StorageResource / the model store (validated table names and
# partition keys, a root without quotes) or validated partition days or code constants; data
# values (ids, strings read from files) are bound as parameters (`?`, `$name`) instead. A new
# entry needs the same justification.
QUOTED_SQL_ALLOWED = {
    ("recsys_assets/services/drift.py", "day"): "partition key (validated)",
    ("recsys_assets/automation.py", "path"): "lake partition path",
    ("recsys_assets/checks/feature_checks.py", "path"): "lake partition path",
    ("recsys_assets/services/raw_audit.py", "path"): "lake partition path, or its staged copy (Lake.staged_path)",
    ("recsys_assets/core/adapters/trivago.py", "SURFACE"): "code constant",
    ("recsys_assets/core/dictionaries.py", "previous"): "lake partition path",
    ("recsys_assets/core/ingest.py", "source"): "lake snapshot path",
    ("recsys_assets/core/ingest.py", "path"): "quarantine part file in a private tempfile.mkdtemp folder",
    ("recsys_assets/core/ingest.py", "merged"): "quarantine part file in a private tempfile.mkdtemp folder",
    ("recsys_assets/core/ingest.py", "first.isoformat()"): "a datetime.date, formatted",
    ("recsys_assets/core/ingest.py", "last.isoformat()"): "a datetime.date, formatted",
    ("recsys_assets/core/storage.py", "tmp"): "temp sibling of a lake path",
    ("recsys_assets/core/storage.py", "glob"): "lake folder glob",
    ("recsys_assets/core/training_data.py", "user_dictionary"): "lake snapshot path",
    ("recsys_assets/core/training_data.py", "item_dictionary"): "lake snapshot path",
    ("recsys_assets/core/training_data.py", "items_snapshot"): "lake snapshot path",
}
SQL_WORDS = re.compile(r"\b(SELECT|FROM|COPY|CREATE|INSERT|WHERE|DESCRIBE|JOIN|DATE)\b")


def quoted_sql_interpolations() -> set[tuple[str, str]]:
    found = set()
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.JoinedStr):
                continue
            parts = node.values
            text = "".join(p.value if isinstance(p, ast.Constant) else "{}" for p in parts)
            if not SQL_WORDS.search(text):
                continue
            for i, part in enumerate(parts):
                if not isinstance(part, ast.FormattedValue):
                    continue
                before = parts[i - 1].value if i and isinstance(parts[i - 1], ast.Constant) else ""
                after = parts[i + 1].value if i + 1 < len(parts) and isinstance(parts[i + 1], ast.Constant) else ""
                if str(before).endswith("'") and str(after).startswith("'"):
                    found.add((str(path.relative_to(ROOT)), ast.unparse(part.value)))
    return found


def test_sql_literals_are_parameters_or_validated_values():
    found = quoted_sql_interpolations()
    unexpected = sorted(found - set(QUOTED_SQL_ALLOWED))
    assert unexpected == [], (
        "values interpolated into SQL string literals: bind them as parameters, or validate "
        f"them and add them to QUOTED_SQL_ALLOWED with the reason: {unexpected}"
    )


def test_data_values_with_quotes_travel_as_data(tmp_path):
    """A record whose strings contain quotes and SQL is loaded verbatim, never executed."""
    import json
    from datetime import date

    import duckdb

    from recsys_assets.core import contract as c
    from recsys_assets.core.ingest import ingest_file

    users = tmp_path / "users.jsonl"
    users.write_text(json.dumps({"user_id": 1}) + "\n")
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"item_id": 2}) + "\n")
    known = {}
    for contract, src, ref in ((c.USERS, users, "user_id"), (c.ITEMS, items, "item_id")):
        known[ref] = str(tmp_path / f"{ref}.parquet")
        ingest_file(contract, src, src.name, "snapshot", None, Path(known[ref]), tmp_path / f"q{ref}.parquet")
    nasty = "x'); DROP TABLE lines; --"
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps(
            {
                "event_id": nasty,
                "user_id": 1,
                "item_id": 2,
                "type": "click",
                "occurred_at": "2026-01-05T10:00:00Z",
                "request_id": "it's",
            }
        )
        + "\n"
    )
    result = ingest_file(
        c.EVENTS,
        events,
        "events.jsonl",
        "2026-01-05",
        date(2026, 1, 5),
        tmp_path / "d.parquet",
        tmp_path / "q.parquet",
        known_ids=known,
    )
    assert result.rows_loaded == 1
    assert duckdb.connect().execute(f"SELECT event_id, request_id FROM '{tmp_path}/d.parquet'").fetchone() == (
        nasty,
        "it's",
    )


# --- configuration errors read clearly ----------------------------------------------------


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("max_quarantine_rate", 1.5, "less than or equal to 1"),
        ("max_orphan_request_rate", -0.1, "greater than or equal to 0"),
        ("max_line_bytes", 0, "greater than or equal to 1024"),
    ],
)
def test_wrong_ingestion_settings_fail_with_the_field_named(field, value, words):
    from pydantic import ValidationError

    from resources import IngestionSettings

    with pytest.raises(ValidationError) as error:
        IngestionSettings(**{field: value})
    message = str(error.value)
    assert field in message and words in message
    assert message.count("\n") < 6  # one short message, not a traceback


def test_wrong_settings_in_run_config_fail_the_run_with_the_field_named(tmp_path):
    from recsys_assets.assets import raw
    from recsys_assets.partitions import daily_partitions
    from recsys_assets.settings import Settings

    raw_assets, _ = raw.build(daily_partitions(Settings().start_date), Settings())
    from recsys_assets.definitions import build_resources
    from resources import IngestionSettings

    resources = build_resources(str(tmp_path)) | {"ingestion": IngestionSettings.configure_at_launch()}
    result = dg.materialize(
        raw_assets,
        resources=resources,
        selection=["raw_users"],
        raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"resources": {"ingestion": {"config": {"max_quarantine_rate": 7}}}},
    )
    assert not result.success
    errors = [
        e.event_specific_data.error
        for e in result.all_events
        if e.event_type_value == "PIPELINE_FAILURE" and e.event_specific_data and e.event_specific_data.error
    ]
    text = " ".join(str(err.to_string()) for err in errors)
    assert "max_quarantine_rate" in text and "less than or equal to 1" in text


def test_a_missing_landing_day_names_the_file_and_what_to_do(tmp_path):
    resources = _landing_world(tmp_path)
    assert _run_raw(resources, ["raw_users", "raw_items"]).success
    message = _failure_message(_run_raw(resources, ["raw_impressions"], "2026-01-09"))
    assert "Landing file missing" in message and "2026-01-09/impressions.jsonl" in message
    assert "recsys_assets.generate" in message or "RECSYS_LANDING_ROOT" in message


@pytest.mark.parametrize(
    "settings, field, value",
    [
        ("RecallSettings", "window_days", 0),
        ("RecallSettings", "promotion_tolerance", 1.5),
        ("RecallSettings", "min_evaluated_users", -1),
        ("RankingSettings", "mmr_lambda", 2.0),
        ("RankingSettings", "train_days", 0),
        ("RankingSettings", "valid_fraction", 1.0),
        ("FeatureSettings", "min_pos_completion", -0.1),
    ],
)
def test_wrong_model_and_feature_settings_fail_with_the_field_named(settings, field, value):
    from pydantic import ValidationError

    import resources

    with pytest.raises(ValidationError) as error:
        getattr(resources, settings)(**{field: value})
    message = str(error.value)
    assert field in message and message.count("\n") < 6


SECRET_PATTERNS = {
    "aws access key id": re.compile(r"AKIA[0-9A-Z]{16}"),
    "private key block": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "assigned credential": re.compile(
        r"(?i)\b(password|passwd|secret|api_key|apikey|token)\s*=\s*['\"][^'\"]{6,}['\"]"
    ),
    "credential in a URL": re.compile(r"[a-z]+://[^/\s:@]+:[^/\s@]+@"),
}


def test_no_secrets_in_code_docs_or_config():
    """Credentials come from the environment only: nothing that looks like one is committed."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    hits = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".toml", ".yaml", ".yml", ".sql", ".cfg", ".ini", ".txt", ".json", ""}:
            continue
        if not path.is_file() or name.startswith("tests/test_safe_defaults.py"):
            continue
        text = path.read_text(errors="replace")
        hits += [f"{name}: {kind}" for kind, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    assert hits == []


def test_settings_values_are_not_logged_from_the_environment(tmp_path, monkeypatch, capsys):
    """A secret-looking environment variable never reaches Dagster's run logs or stdout."""
    canary = "s3cr3t-canary-8b1f"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", canary)
    from recsys_assets.assets import raw
    from recsys_assets.partitions import daily_partitions
    from recsys_assets.settings import Settings

    raw_assets, _ = raw.build(daily_partitions(Settings().start_date), Settings())
    from recsys_assets.core.generator import GeneratorConfig, generate
    from recsys_assets.definitions import build_resources

    generate(GeneratorConfig(n_users=50, n_items=40, days=1, impressions_per_day=200), tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        raw_assets,
        resources=build_resources(str(tmp_path)),
        instance=instance,
        selection=["raw_users", "raw_items"],
        raise_on_error=False,
    )
    assert result.success
    logged = " ".join(str(e.message) + str(getattr(e, "dagster_event", "")) for e in instance.all_logs(result.run_id))
    assert canary not in logged and canary not in capsys.readouterr().out
