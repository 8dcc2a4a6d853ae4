"""A fresh DAGSTER_HOME prepared once (recsys_assets/instance.py) takes parallel CLI runs: the
storage is created by one process under a lock, never by two racing runs."""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from recsys_assets.core.generator import GeneratorConfig, generate
from recsys_assets.instance import prepare_dagster_home

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def test_a_prepared_home_has_its_storage_and_run_monitoring(tmp_path):
    """Preparing twice at once: one creates the storage, the other finds it ready."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen([sys.executable, "-m", "recsys_assets.instance", "--home", str(tmp_path / "home")], env=env)
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    home = tmp_path / "home"
    assert (home / "history/runs.db").exists() and (home / "schedules/schedules.db").exists()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled and instance.get_runs() == []
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # an operator's own file is kept
    prepare_dagster_home(home)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


@pytest.mark.slow
def test_overlapping_range_runs_on_fresh_homes_five_times(tmp_path):
    """Fresh homes, each prepared once, then two overlapping range runs: one after the other on
    the first home (the reference), launched at once on five more. Every run succeeds, every
    home stays usable, and the lake holds the reference's bytes after every trial."""
    data_root = tmp_path / "data"
    generate(GeneratorConfig(n_users=60, n_items=50, days=3, impressions_per_day=300, seed=2), data_root)
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    hashes = []
    for trial in range(6):
        home = prepare_dagster_home(tmp_path / f"home{trial}")
        env = dict(os.environ, DAGSTER_HOME=str(home), RECSYS_DATA_ROOT=str(data_root), PYTHONPATH=str(ROOT))
        env.pop("RECSYS_LANDING_ROOT", None)

        def cli(*args, env=env):
            return subprocess.Popen(
                [
                    DAGSTER,
                    "asset",
                    "materialize",
                    "-m",
                    "recsys_assets.definitions",
                    *args,  # steps in the run's process: the default executor (Settings.executor)
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )

        if trial == 0:
            snapshots = cli("--select", "group:raw_snapshots")
            out = snapshots.communicate(timeout=300)[0]  # read as it runs: a full pipe would block it
            assert snapshots.returncode == 0, out[-2000:]
        ranges = [f"{days[0]}...{days[1]}", f"{days[0]}...{days[2]}"]
        if trial == 0:  # the sequential reference: one run after the other
            runs, outputs = [], []
            for rng in ranges:
                runs.append(cli("--select", "raw_impressions", "--partition-range", rng))
                outputs.append(runs[-1].communicate(timeout=600)[0])
        else:  # launched at once
            runs = [cli("--select", "raw_impressions", "--partition-range", rng) for rng in ranges]
            outputs = [run.communicate(timeout=600)[0] for run in runs]
        for run, out in zip(runs, outputs, strict=True):
            assert run.returncode == 0 and "RUN_SUCCESS" in out, out[-3000:]
        with dg.DagsterInstance.from_config(str(home)) as instance:  # still usable
            recorded = instance.get_runs()
            assert len(recorded) == 2 + (trial == 0)
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in recorded)
        lake = data_root / "lake/raw_impressions"
        hashes.append({p.name: p.read_bytes() for p in sorted(lake.glob("*.parquet"))})
        assert sorted(hashes[-1]) == [f"{d}.parquet" for d in days]
    assert all(h == hashes[0] for h in hashes)


SLEEPY_JOB = """
import os, time
from pathlib import Path
import dagster as dg

@dg.op
def wait_to_be_killed():
    # the run worker's own process (in-process executor): the process the test kills
    Path(os.environ["RECSYS_TEST_PID_FILE"]).write_text(str(os.getpid()))
    time.sleep(600)

@dg.job(executor_def=dg.in_process_executor)
def sleepy():
    wait_to_be_killed()
"""


@pytest.mark.slow
def test_a_run_killed_under_the_daemon_is_marked_failed(tmp_path):
    """A run launched through the daemon (queued, then started in a process of its own by the
    code server the daemon runs) and SIGKILLed mid-step ends as FAILURE within seconds, with the
    signal in its log, instead of staying STARTED."""
    import signal
    import time

    home = tmp_path / "home"
    home.mkdir()
    # the home's own dagster.yaml, polled every second instead of every 30 s to keep the test short
    from recsys_assets.instance import DAGSTER_YAML

    assert "poll_interval_seconds: 30" in DAGSTER_YAML
    (home / "dagster.yaml").write_text(DAGSTER_YAML.replace("poll_interval_seconds: 30", "poll_interval_seconds: 1"))
    prepare_dagster_home(home)
    (tmp_path / "sleepy.py").write_text(SLEEPY_JOB)
    (tmp_path / "workspace.yaml").write_text(f"load_from:\n  - python_file: {tmp_path / 'sleepy.py'}\n")
    pid_file = tmp_path / "run.pid"
    env = dict(os.environ, DAGSTER_HOME=str(home), RECSYS_TEST_PID_FILE=str(pid_file), DAGSTER_DISABLE_TELEMETRY="1")
    daemon_log = open(tmp_path / "daemon.log", "wb")
    daemon = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(tmp_path / "workspace.yaml")],
        cwd=tmp_path,
        env=env,
        stdout=daemon_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its code server and the run's process are in its session
    )
    try:
        launched = subprocess.run(
            [DAGSTER, "job", "launch", "-w", str(tmp_path / "workspace.yaml"), "-j", "sleepy"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert launched.returncode == 0, launched.stderr[-2000:]
        with dg.DagsterInstance.from_config(str(home)) as instance:
            (run,) = instance.get_runs()
            deadline = time.time() + 90
            while not pid_file.exists():  # the daemon dequeues it and a process of its own starts it
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                assert time.time() < deadline, f"the run never started: {instance.get_run_by_id(run.run_id)}"
                time.sleep(0.2)
            worker = int(pid_file.read_text())
            assert worker not in (os.getpid(), daemon.pid)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

            os.kill(worker, signal.SIGKILL)
            deadline = time.time() + 30
            while (status := instance.get_run_by_id(run.run_id).status) != dg.DagsterRunStatus.FAILURE:
                assert status == dg.DagsterRunStatus.STARTED, status
                assert time.time() < deadline, "the killed run is still STARTED after 30 s"
                time.sleep(0.2)
            # the launcher's code server, which the daemon runs, saw its run process die and says how
            logs = [e.message or "" for e in instance.all_logs(run.run_id)]
            assert any("terminated by signal 9 (SIGKILL)" in m for m in logs), logs[-5:]
    finally:
        daemon.send_signal(signal.SIGTERM)  # it stops its code server on the way out
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)
        daemon_log.close()


SLEEPY_RUN = """
import time
import dagster as dg

@dg.op
def wait_for_the_kill():
    time.sleep(120)

@dg.job
def sleepy():
    wait_for_the_kill()

with dg.DagsterInstance.get() as instance:
    sleepy.execute_in_process(instance=instance)
"""


def test_a_killed_cli_run_is_marked_failed_by_the_dead_run_sensor(tmp_path):
    """A run executed by a CLI process (as `dagster asset materialize` and the quickstart do) is
    SIGKILLed: no daemon launched it, so Dagster's run monitoring never looks at it, and it would
    stay STARTED forever. While its process lives nothing touches it; once the process is gone
    the dead_run_sensor marks it failed and says why, and a prepared home does the same."""
    from recsys_assets.definitions import build_defs
    from recsys_assets.instance import fail_dead_runs

    home = prepare_dagster_home(tmp_path / "home")
    env = dict(os.environ, DAGSTER_HOME=str(home), PYTHONPATH=str(ROOT))
    runs = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for _ in range(2):
            proc = subprocess.Popen([sys.executable, "-c", SLEEPY_RUN], env=env)
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    started = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.STARTED]
                    if started and started[0].run_id not in runs:
                        break
                    time.sleep(0.2)
                run_id = started[0].run_id
                time.sleep(0.5)  # the engine event that names the process is written after STARTED
                assert fail_dead_runs(instance) == []  # alive: untouched
                assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
            finally:
                proc.kill()
                proc.wait(timeout=30)
            runs.append(run_id)
            if len(runs) == 1:  # the daemon's sensor
                sensor = build_defs(resources=None).get_sensor_def("dead_run_sensor")
                result = sensor(dg.build_sensor_context(instance=instance))
                assert "marked 1 dead run" in str(result)
            else:  # preparing a home (quickstart, python -m recsys_assets.instance)
                assert fail_dead_runs(instance) == [run_id]
            run = instance.get_run_by_id(run_id)
            assert run.status == dg.DagsterRunStatus.FAILURE
            messages = [
                e.dagster_event.message or ""
                for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            ]
            assert any("process (pid" in m and "killed or crashed" in m for m in messages), messages
        assert fail_dead_runs(instance) == []  # nothing left to mark
