"""The raw assets end to end on generated landing data: quarantine equals what the
generator injected, re-runs are idempotent, crashes leave the previous partition, range
runs and parallel processes work, and blocking checks stop bad data."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from recsys_assets.assets import raw
from recsys_assets.checks import raw_checks as raw_check_rules
from recsys_assets.core.generator import GeneratorConfig, generate
from recsys_assets.definitions import build_resources
from recsys_assets.partitions import daily_partitions
from recsys_assets.settings import Settings
from resources import IngestionSettings

raw_assets, _ = raw.build(daily_partitions(Settings().start_date), Settings())
raw_checks = raw_check_rules.build(daily_partitions(Settings().start_date), Settings())

ROOT = Path(__file__).resolve().parents[1]
DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]
LOGS = ["raw_impressions", "raw_events", "raw_watch_stats"]


def small_config(**over) -> GeneratorConfig:
    kw = dict(n_users=300, n_items=200, days=3, impressions_per_day=4000, seed=7, bad_record_rate=0.01)
    kw.update(over)
    return GeneratorConfig(**kw)


@pytest.fixture(scope="module")
def landing_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    generate(small_config(), root)
    return root / "landing"


def make_root(tmp_path: Path, landing: Path) -> dict:
    # The generator injects every bad kind at least once per file, which is ~7% of a
    # small day's watch_stats; the threshold leaves room for that.
    return build_resources(
        data_root=str(tmp_path / "data"),
        landing_root=str(landing),
        ingestion=IngestionSettings(max_quarantine_rate=0.10),
    )


def run(resources, selection=None, partition=None, tags=None, raise_on_error=True):
    return dg.materialize(
        [*raw_assets, *raw_checks],
        resources=resources,
        selection=selection,
        partition_key=partition,
        tags=tags,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def materialize_day(resources, day, **kw):
    run(resources, selection=["raw_users", "raw_items"], raise_on_error=kw.get("raise_on_error", True))
    return run(resources, selection=LOGS, partition=day, **kw)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_quarantine_holds_exactly_the_injected_bad_lines(tmp_path, landing_root):
    resources = make_root(tmp_path, landing_root)
    result = materialize_day(resources, DAYS[0])
    assert all(e.passed for e in result.get_asset_check_evaluations())

    con = duckdb.connect()
    lake = Path(resources["storage"].lake_dir)
    injected = [json.loads(x) for x in (landing_root / DAYS[0] / "_injected_bad.jsonl").read_text().splitlines()]
    assert injected, "the generator injected no bad lines"
    got = con.execute(
        f"SELECT source_file, line_no, reason FROM read_parquet('{lake}/quarantine/raw_*/{DAYS[0]}.parquet')"
        " ORDER BY ALL"
    ).fetchall()
    expected = sorted((f"{DAYS[0]}/{r['file']}", r["line_no"], r["reason"]) for r in injected)
    assert got == expected
    catalog = duckdb.connect(str(resources["storage"].catalog_path), read_only=True)
    assert catalog.execute("SELECT count(*) FROM quarantine WHERE partition = ?", [DAYS[0]]).fetchone()[0] == len(
        expected
    )

    for mat in result.get_asset_materialization_events():
        md = mat.materialization.metadata
        assert md["rows_read"].value == md["rows_loaded"].value + md["rows_quarantined"].value
        name = mat.asset_key.to_user_string().removeprefix("raw_")
        lines = sum(1 for x in (landing_root / DAYS[0] / f"{name}.jsonl").read_bytes().splitlines() if x.strip())
        assert md["rows_read"].value == lines  # nothing lost


def test_rematerializing_a_partition_is_idempotent(tmp_path, landing_root):
    resources = make_root(tmp_path, landing_root)
    materialize_day(resources, DAYS[1])
    storage = resources["storage"]
    files = [storage.partition_path(a, DAYS[1]) for a in LOGS] + [storage.quarantine_path(a, DAYS[1]) for a in LOGS]
    before = [sha(p) for p in files]
    run(resources, selection=LOGS, partition=DAYS[1])
    assert [sha(p) for p in files] == before
    con = resources["warehouse"].connect()
    assert con.execute("SELECT count(*) - count(DISTINCT impression_id) FROM raw_impressions").fetchone()[0] == 0


def test_partition_range_is_one_run(tmp_path, landing_root):
    resources = make_root(tmp_path, landing_root)
    run(resources, selection=["raw_users", "raw_items"])
    result = run(
        resources,
        selection=LOGS,
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]},
    )
    assert result.success
    storage = resources["storage"]
    assert all(storage.partition_path(a, d).exists() for a in LOGS for d in DAYS)
    con = duckdb.connect(str(storage.catalog_path), read_only=True)
    days = con.execute(
        "SELECT DISTINCT CAST(timezone('UTC', shown_at) AS DATE)::VARCHAR FROM raw_impressions ORDER BY 1"
    ).fetchall()
    assert [d for (d,) in days] == DAYS


def step_failures(result) -> dict[str, str]:
    return {
        e.step_key: e.event_specific_data.error.message
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    }


def staged_reason(resources, asset: str, day: str) -> dict:
    """The reason file next to a refused partition in the staging area."""
    staged = Path(resources["storage"].data_root) / ".staging/lake" / asset / f"{day}.parquet"
    assert staged.exists()
    return json.loads(staged.with_name(staged.name + ".reason.json").read_text())


def test_blocking_check_fails_on_bad_data_and_stops_downstream(tmp_path):
    generate(small_config(days=1, bad_record_rate=0.0), tmp_path / "clean")
    generate(small_config(days=1, bad_record_rate=0.25), tmp_path / "gen")
    for snapshot in ("users.jsonl", "items.jsonl"):  # sound dimensions, bad logs
        shutil.copy(tmp_path / "clean/landing" / snapshot, tmp_path / "gen/landing" / snapshot)
    resources = make_root(tmp_path, tmp_path / "gen/landing")
    result = materialize_day(resources, DAYS[0], raise_on_error=False)
    # the rule of the blocking check refuses the staged partition: nothing is published
    failed = step_failures(result)
    assert set(failed) == {"raw_impressions"}
    assert f"raw_impressions {DAYS[0]} was not published: blocking rule quarantine_rate" in failed["raw_impressions"]
    assert (
        staged_reason(resources, "raw_impressions", DAYS[0])["failed_rules"]["quarantine_rate"]["quarantine_rate"] > 0.1
    )
    assert not resources["storage"].partition_path("raw_impressions", DAYS[0]).exists()
    assert not result.success
    assert result.get_asset_materialization_events() == []  # events and watches wait on raw_impressions


def test_orphan_request_ids_fail_the_linkage_check(tmp_path):
    generate(small_config(days=1, bad_record_rate=0.0), tmp_path / "gen")
    events = tmp_path / "gen/landing" / DAYS[0] / "events.jsonl"
    first = json.loads(events.read_text().splitlines()[0])
    first.update(event_id="ev-orphan", request_id="req-that-was-never-shown")
    events.write_text(events.read_text() + json.dumps(first) + "\n")
    resources = make_root(tmp_path, tmp_path / "gen/landing")
    result = materialize_day(resources, DAYS[0], raise_on_error=False)
    assert set(step_failures(result)) == {"raw_events"}
    assert "blocking rule request_ids_resolve" in step_failures(result)["raw_events"]
    reason = staged_reason(resources, "raw_events", DAYS[0])["failed_rules"]["request_ids_resolve"]
    assert reason["orphan_rows"] == 1
    evals = {e.asset_check_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    assert evals["raw_watch_stats:request_ids_resolve"].passed  # published, and its check agrees
    assert not resources["storage"].partition_path("raw_events", DAYS[0]).exists()


def test_events_for_requests_of_another_partition(tmp_path):
    """An event may follow an impression of the previous day (after midnight UTC), never one
    from further back: a request of two days earlier is an orphan for the linkage check. The
    event itself is contract-valid and loads (the check, not ingestion, judges linkage)."""
    generate(small_config(days=3, bad_record_rate=0.0), tmp_path / "gen")
    landing = tmp_path / "gen/landing"

    def impression(day):
        return json.loads((landing / day / "impressions.jsonl").read_text().splitlines()[0])

    events = landing / DAYS[2] / "events.jsonl"
    template = json.loads(events.read_text().splitlines()[0])
    added = []
    for day, tag in ((DAYS[1], "previous-day"), (DAYS[0], "two-days-back")):
        shown = impression(day)
        added.append(
            {
                **template,
                "event_id": f"ev-{tag}",
                "type": "click",
                "value": None,
                "request_id": shown["request_id"],
                "user_id": shown["user_id"],
                "item_id": shown["item_id"],
            }
        )
    events.write_text(events.read_text() + "".join(json.dumps(e) + "\n" for e in added))
    resources = make_root(tmp_path, landing)
    run(resources, selection=["raw_users", "raw_items"])
    result = run(
        resources,
        selection=LOGS,
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]},
        raise_on_error=False,
    )
    # the day with the orphan is refused by the rule of the linkage check; its two events loaded
    assert (
        f"raw_events {DAYS[2]} was not published: blocking rule request_ids_resolve"
        in (step_failures(result)["raw_events"])
    )
    assert staged_reason(resources, "raw_events", DAYS[2])["failed_rules"]["request_ids_resolve"]["orphan_rows"] == 1
    staged = Path(resources["storage"].data_root) / ".staging/lake/raw_events" / f"{DAYS[2]}.parquet"
    loaded = dict(
        duckdb.connect()
        .execute(
            f"SELECT event_id, request_id FROM '{staged}' WHERE event_id IN ('ev-previous-day', 'ev-two-days-back')"
        )
        .fetchall()
    )
    assert set(loaded) == {"ev-previous-day", "ev-two-days-back"}
    # with only the previous-day follow-up, the check passes
    events.write_text("".join(line + "\n" for line in events.read_text().splitlines() if "two-days-back" not in line))
    result = run(resources, selection=["raw_events"], partition=DAYS[2], raise_on_error=False)
    (linkage,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_check_key.to_user_string() == "raw_events:request_ids_resolve"
    ]
    assert linkage.passed and linkage.metadata["orphan_rows"].value == 0


KILL_MID_WRITE = """
import os, signal, sys
import recsys_assets.core.storage as storage
real_publish = storage._publish
def publish_then_die(tmp, path):
    if "raw_impressions" in str(path) and path.name == sys.argv[2] + ".parquet":
        os.kill(os.getpid(), signal.SIGKILL)  # the temp file is complete, the rename never happens
    real_publish(tmp, path)
storage._publish = publish_then_die
import dagster as dg
from recsys_assets.assets import raw
from recsys_assets.definitions import build_resources
from recsys_assets.partitions import daily_partitions
from recsys_assets.settings import Settings
from resources import IngestionSettings
raw_assets, _ = raw.build(daily_partitions(Settings().start_date), Settings())
dg.materialize(raw_assets, resources=build_resources(sys.argv[1], sys.argv[3]), selection=["raw_impressions"],
               partition_key=sys.argv[2], instance=dg.DagsterInstance.ephemeral())
"""


def test_killed_write_leaves_the_previous_partition(tmp_path, landing_root):
    resources = make_root(tmp_path, landing_root)
    materialize_day(resources, DAYS[0])
    target = resources["storage"].partition_path("raw_impressions", DAYS[0])
    before = sha(target)

    # A producer re-delivers the day with more rows; the re-run is killed mid-write.
    landing_copy = tmp_path / "landing2"
    subprocess.run(["cp", "-r", str(landing_root), str(landing_copy)], check=True)
    extra = landing_copy / DAYS[0] / "impressions.jsonl"
    rec = json.loads(extra.read_bytes().splitlines()[0])
    rec.update(impression_id=10**12, request_id="req-late")
    with open(extra, "ab") as fh:
        fh.write(json.dumps(rec).encode() + b"\n")
    proc = subprocess.run(
        [sys.executable, "-c", KILL_MID_WRITE, str(tmp_path / "data"), DAYS[0], str(landing_copy)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    assert sha(target) == before  # the visible partition is the old one, complete
    con = resources["warehouse"].connect()
    assert con.execute("SELECT count(*) FROM raw_impressions WHERE impression_id = 1000000000000").fetchone()[0] == 0

    # Rerunning succeeds and equals an uninterrupted run.
    run(make_root(tmp_path, landing_copy), selection=["raw_impressions"], partition=DAYS[0])
    clean = tmp_path / "clean"
    run(build_resources(str(clean), str(landing_copy)), selection=["raw_users", "raw_items"])
    run(build_resources(str(clean), str(landing_copy)), selection=["raw_impressions"], partition=DAYS[0])
    assert sha(target) == sha(clean / "lake/raw_impressions" / f"{DAYS[0]}.parquet") != before


@pytest.mark.slow
def test_two_partitions_in_parallel_processes_via_the_cli(tmp_path, landing_root):
    resources = make_root(tmp_path, landing_root)
    run(resources, selection=["raw_users", "raw_items"])
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # Create the instance's SQLite storage once: two processes creating it at the same
    # moment race inside Dagster's schema migration (not in our storage).
    dg.DagsterInstance.from_config(str(home)).dispose()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RECSYS_DATA_ROOT": str(tmp_path / "data"),
        "RECSYS_LANDING_ROOT": str(landing_root),
    }
    dagster = Path(sys.executable).with_name("dagster")
    procs = [
        subprocess.Popen(
            [
                str(dagster),
                "asset",
                "materialize",
                "-m",
                "recsys_assets.definitions",
                "--select",
                "raw_impressions",
                "--partition",
                day,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for day in DAYS[:2]
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert not any("lock" in o.lower() and "error" in o.lower() for o in outputs)
    storage = resources["storage"]
    sequential = tmp_path / "seq"
    for day in DAYS[:2]:
        run(build_resources(str(sequential), str(landing_root)), selection=["raw_users", "raw_items"])
        run(build_resources(str(sequential), str(landing_root)), selection=["raw_impressions"], partition=day)
        assert sha(storage.partition_path("raw_impressions", day)) == sha(
            sequential / "lake/raw_impressions" / f"{day}.parquet"
        )


def _volume_checks(result) -> dict:
    return {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations() if e.check_name == "volume"}


def test_an_empty_delivery_fails_the_blocking_volume_check(tmp_path, landing_root):
    """A _SUCCESS day whose three logs are 0 bytes loads without one bad line: only the
    volume check, against the median of the trailing days, stops it (and what depends on it)."""
    import shutil

    landing = tmp_path / "landing"
    shutil.copytree(landing_root, landing)
    for name in ("impressions", "events", "watch_stats"):
        (landing / DAYS[2] / f"{name}.jsonl").write_bytes(b"")
    resources = build_resources(
        data_root=str(tmp_path / "data"),
        landing_root=str(landing),
        ingestion=IngestionSettings(max_quarantine_rate=0.10, volume_min_history=2),
    )
    run(resources, selection=["raw_users", "raw_items"])
    first = run(resources, selection=LOGS, partition=DAYS[0])
    assert _volume_checks(first)["raw_impressions"].passed  # no norm yet: passes, and says so
    assert "no norm yet" in _volume_checks(first)["raw_impressions"].metadata["verdict"].value
    run(resources, selection=LOGS, partition=DAYS[1])

    empty = run(resources, selection=LOGS, partition=DAYS[2], raise_on_error=False)
    # the rule of the blocking volume check refuses the staged day: it is not published
    assert "blocking rule volume" in step_failures(empty)["raw_impressions"]
    volume = staged_reason(resources, "raw_impressions", DAYS[2])["failed_rules"]["volume"]
    assert volume["rows"] == 0 and volume["trailing_median_rows"] > 3000
    assert "rows 0 < 0.1 x trailing median" in volume["verdict"]
    assert not resources["storage"].partition_path("raw_impressions", DAYS[2]).exists()
    assert not empty.success  # events and watches of that day are not built on it
    assert _volume_checks(empty) == {}

    # a source that declares days without data (empty_days: absent) may deliver an empty day
    (landing / "_source.json").write_text(json.dumps({"empty_days": "absent"}))
    declared = run(resources, selection=LOGS, partition=DAYS[2])
    assert all(check.passed for check in _volume_checks(declared).values())
    assert "empty_days: absent" in _volume_checks(declared)["raw_impressions"].metadata["verdict"].value


@pytest.mark.parametrize(
    "current, passed",
    [
        ({"rows": 0, "users": 0, "items": 0}, False),
        ({"rows": 900, "users": 90, "items": 4}, False),  # one measure far below: items
        ({"rows": 150, "users": 15, "items": 15}, True),  # low, but within 0.1 x the norm
    ],
)
def test_volume_verdict_against_the_trailing_median(current, passed):
    from recsys_assets.core.volume import volume_verdict

    trailing = [{"rows": 1000, "users": 100, "items": 50}, {"rows": 1200, "users": 90, "items": 60}] * 2
    verdict = volume_verdict("2026-01-05", current, trailing, min_ratio=0.1, min_history=3)
    assert verdict.passed is passed and verdict.norm == {"rows": 1100.0, "users": 95.0, "items": 55.0}
    assert volume_verdict("2026-01-05", current, trailing[:2], min_ratio=0.1, min_history=3).passed
