"""Reliability on a small synthetic world materialized end to end (raw → features → drift →
recall → evaluation → candidates → ranking → recommendations):

- idempotency: re-materializing one day of every daily-partitioned asset yields byte-identical
  Parquet files and identical model checksums, except documented, bounded latency columns;
- crashes: a materialization SIGKILLed while writing (raw, feature and model assets) leaves the
  previous partition / published model and the serving champion intact and verifiable, no
  half-written file under a visible name, and a rerun gives what an uninterrupted run gives.

Parquet partitions are compared by bytes; where bytes differ the test says which rows and
columns, and only the columns listed in VOLATILE may differ (each with its bound).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from recsys_assets.core.generator import GeneratorConfig, generate
from recsys_assets.definitions import build_defs, build_resources
from recsys_assets.quickstart import materialize_all

ROOT = Path(__file__).resolve().parents[1]
DAYS = [f"2026-01-0{d}" for d in range(1, 7)]
D = DAYS[-1]
# 150 items < the 200 recall candidates per user: also covers a catalog smaller than k.
CONFIG = GeneratorConfig(n_users=200, n_items=150, days=len(DAYS), impressions_per_day=3_000, seed=3)

# Columns measured with a clock: they may differ between two runs of the same partition, and
# nothing else in their row may. Bound: a finite, non-negative number of milliseconds.
VOLATILE = {
    "recall_evaluation": {"rows": "metric = 'latency_ms_per_user'", "columns": ["value"]},
    "funnel_evaluation": {"rows": "metric = 'latency_ms_per_user'", "columns": ["value"]},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate(CONFIG, root)
    materialize_all(
        build_defs(resources=build_resources(str(root))), DAYS, dg.DagsterInstance.ephemeral(), model_days=4
    )
    return root


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def day_outputs(root: Path, day: str) -> dict[str, str]:
    """Every file a partition of `day` is made of: lake Parquet files by content, model
    directories by the checksums in their manifest (training time and memory are metadata)."""
    out = {}
    for path in sorted((root / "lake").rglob(f"{day}*.parquet")):
        if not path.name.startswith("."):
            out[str(path.relative_to(root))] = _sha(path)
    for link in sorted((root / "models").glob(f"*/{day}")):
        manifest = json.loads((link / "manifest.json").read_text())
        out[str(link.relative_to(root))] = json.dumps(manifest["files"], sort_keys=True)
    return out


def daily_assets(defs: dg.Definitions) -> list[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return sorted(k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None)


@pytest.mark.slow
def test_every_daily_asset_is_idempotent(world, tmp_path):
    root = tmp_path / "again"
    shutil.copytree(world, root, symlinks=True)
    defs = build_defs(resources=build_resources(str(root)))
    keys = daily_assets(defs)
    names = {k.to_user_string() for k in keys}
    # the whole pipeline is covered
    assert {
        "raw_impressions",
        "raw_events",
        "raw_watch_stats",
        "interactions",
        "user_features",
        "item_features",
        "feature_drift_report",
        "recall_als",
        "recall_ease",
        "recall_evaluation",
        "recall_champion",
        "recall_candidates",
        "ranking_samples",
        "ranker",
        "funnel_evaluation",
        "recommendations",
    } <= names
    before = day_outputs(root, D)
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key=D, asset_selection=keys, raise_on_error=False
    )
    failures = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures == []
    after = day_outputs(root, D)
    assert sorted(after) == sorted(before)
    produced = {p.split("/")[1] for p in after}
    assert {"raw_impressions", "recall_als", "ranker", "recommendations", "funnel_evaluation"} <= produced

    differ = sorted(p for p in before if before[p] != after[p])
    for rel in differ:
        table = rel.split("/")[1]
        assert table in VOLATILE and rel.endswith(".parquet"), f"{rel} changed on a re-run"
        old, new = world / rel, root / rel
        rule = VOLATILE[table]
        con = duckdb.connect()
        cols = [c[0] for c in con.execute(f"DESCRIBE FROM '{old}'").fetchall()]
        stable = ", ".join(f'"{c}"' for c in cols if c not in rule["columns"])
        # every row outside the volatile rows identical, and volatile rows equal apart from the clock columns
        assert rows_that_differ_sql(con, old, new, f"SELECT * FROM {{}} WHERE NOT ({rule['rows']})") == 0, rel
        assert rows_that_differ_sql(con, old, new, f"SELECT {stable} FROM {{}}") == 0, rel
        (bad,) = con.execute(
            f"SELECT count(*) FROM '{new}' WHERE {rule['rows']} AND NOT (isfinite(value) AND value >= 0)"
        ).fetchone()
        assert bad == 0, rel
    assert len(differ) <= len(VOLATILE)
    # models: every file of every model of D has the same checksum (recall models and ranker)
    assert [r for r in before if r.startswith("models/recall_") and before[r] != after[r]] == []


def rows_that_differ_sql(con, a: Path, b: Path, select: str) -> int:
    qa, qb = select.format(f"'{a}'"), select.format(f"'{b}'")
    (n,) = con.execute(
        f"SELECT count(*) FROM (({qa}) EXCEPT ALL ({qb}) UNION ALL (({qb}) EXCEPT ALL ({qa})))"
    ).fetchone()
    return n


# --- crashes -----------------------------------------------------------------------------

# Runs one asset for one day in a fresh process and stops it, deterministically, in the middle
# of its write: for Parquet after half of the temporary file is written (the rename never
# happens); for the model store at the N-th os.replace of publish() (1: staging -> version
# directory, 2: the day's symlink swap). It writes `marker` and sleeps; the test SIGKILLs it.
CHILD = r"""
import json, os, sys, time
from pathlib import Path
root, asset, day, marker, mode, overrides = sys.argv[1:7]

def stop(where):
    Path(marker + ".tmp").write_text(where)
    os.replace(marker + ".tmp", marker)  # the parent polls for the marker: never let it see it empty
    time.sleep(600)

import recsys_assets.core.storage as storage
import recsys_assets.services.model_store as model_store
if mode == "parquet":
    real_publish = storage._publish
    def publish(tmp, path):
        if path.parent.name == asset and path.name.startswith(f"{day}.parquet"):  # the staged write
            data = Path(tmp).read_bytes()
            Path(tmp).write_bytes(data[:len(data) // 2])  # torn halfway through
            stop(str(tmp))
        real_publish(tmp, path)
    storage._publish = publish
else:
    nth, calls = int(mode.split(":")[1]), []
    class Os:
        def __getattr__(self, name):
            return getattr(os, name)
        def replace(self, src, dst):
            calls.append(dst)
            if len(calls) == nth:
                stop(str(dst))
            return os.replace(src, dst)
    model_store.os = Os()

import dagster as dg
from recsys_assets.definitions import build_defs, build_resources
res = build_resources(root)
for name, kw in json.loads(overrides).items():
    res[name] = type(res[name])(**kw)
job = build_defs(resources=res).resolve_implicit_global_asset_job_def()
job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key=day, asset_selection=[dg.AssetKey(asset)])
print("finished without being killed")
"""


def kill_mid_write(root: Path, asset: str, day: str, mode: str, overrides: dict | None = None) -> str:
    marker = root.parent / f"kill-{asset}-{mode.replace(':', '')}"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), asset, day, str(marker), mode, json.dumps(overrides or {})],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"},
    )
    deadline = time.time() + 300
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the child ended before the kill point:\n{proc.stdout.read().decode()[-3000:]}")
        assert time.time() < deadline, "the child never reached the kill point"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return marker.read_text()


def rerun(root: Path, asset: str, day: str) -> None:
    job = build_defs(resources=build_resources(str(root))).resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key=day, asset_selection=[dg.AssetKey(asset)]
    ).success


def visible_parquet(root: Path, table: str) -> list[Path]:
    return sorted(p for p in (root / "lake" / table).glob("*.parquet") if not p.name.startswith("."))


@pytest.mark.slow
@pytest.mark.parametrize("asset", ["raw_events", "interactions"])
def test_killed_parquet_write_keeps_the_previous_partition(world, tmp_path, asset):
    root = tmp_path / "w"
    shutil.copytree(world, root, symlinks=True)
    target = root / "lake" / asset / f"{D}.parquet"
    before, rows_before = _sha(target), duckdb.connect().execute(f"SELECT count(*) FROM '{target}'").fetchone()[0]
    files_before = visible_parquet(root, asset)
    # the killed run would write different content: a re-delivered landing file / another setting
    overrides = {}
    landing = root / "landing" / D / "events.jsonl"
    original_landing = landing.read_bytes()
    if asset == "raw_events":
        lines = original_landing.splitlines(keepends=True)
        landing.write_bytes(b"".join(lines[: len(lines) // 2]))
    else:
        overrides = {"features": {"min_pos_completion": 0.95}}

    tmp = Path(kill_mid_write(root, asset, D, "parquet", overrides))
    # the torn temp file, in the staging folder no reader looks at
    assert tmp.exists() and tmp.parent == root / ".staging/lake" / asset and tmp.name.startswith(".")
    # the previous partition is intact and readable, and the only thing any reader sees
    assert _sha(target) == before and visible_parquet(root, asset) == files_before
    con = build_resources(str(root))["warehouse"].connect()
    (rows,) = con.execute(
        f"SELECT count(*) FROM {asset} WHERE day = DATE '{D}'"
        if asset != "raw_events"
        else f"SELECT count(*) FROM {asset} WHERE CAST(timezone('UTC', occurred_at) AS DATE) = DATE '{D}'"
    ).fetchone()
    assert rows == rows_before > 0

    landing.write_bytes(original_landing)
    rerun(root, asset, D)
    assert _sha(target) == before  # the same bytes as the uninterrupted run


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["model:1", "model:2"])
def test_killed_model_publish_keeps_the_published_model_and_the_champion(world, tmp_path, kill_at):
    from recsys_assets.core.recall.models import load_model
    from recsys_assets.services.registry import serving_champion

    root = tmp_path / "w"
    shutil.copytree(world, root, symlinks=True)
    res = build_resources(str(root))
    store, link = res["model_store"], root / "models/recall_als" / D
    target_before = os.readlink(link)
    files_before = store.verify("recall_als", D)["files"]
    champion = serving_champion(res["storage"], D)
    if champion is None:  # this small world evaluates < min_evaluated_users users a day: record ALS as serving
        from recsys_assets.services.registry import REGISTRY_SCHEMA
        from recsys_assets.services.tables import write_rows

        row = {name: None for name in REGISTRY_SCHEMA.names}
        row |= {"day": DAYS[-2], "decision": "promoted", "champion": "als", "champion_day": DAYS[-2], "reason": "test"}
        write_rows([row], REGISTRY_SCHEMA, res["storage"].partition_path("recall_champion", DAYS[-2]))
        champion = serving_champion(res["storage"], D)
    assert champion is not None
    versions_before = set((root / "models/recall_als/.versions").iterdir())

    # another seed: the killed run publishes a different model
    where = kill_mid_write(root, "recall_als", D, kill_at, {"recall": {"seed": 123}})
    assert os.readlink(link) == target_before  # the day's model is still the previous one
    assert store.verify("recall_als", D)["files"] == files_before  # complete: every checksum verifies
    load_model(link).recommend([0, 1], 10)  # and it loads and serves
    assert serving_champion(res["storage"], D) == champion
    store.verify(f"recall_{champion[0]}", champion[1])  # the serving champion is intact too
    new_versions = set((root / "models/recall_als/.versions").iterdir()) - versions_before
    if kill_at == "model:1":  # killed before the version directory appeared: nothing new is visible
        assert new_versions == set() and "/.versions/" in where
    else:  # killed before the symlink swap: a complete, verified version no link points at
        (version,) = new_versions
        manifest = json.loads((version / "manifest.json").read_text())
        assert all(_sha(version / name) == sha for name, sha in manifest["files"].items())

    rerun(root, "recall_als", D)
    assert store.verify("recall_als", D)["files"] == files_before  # same model as the uninterrupted run
    assert os.readlink(link) == target_before


# --- write, audit, publish ---------------------------------------------------------------


def run_refused(root: Path, asset: str, day: str) -> str:
    """Materialize `asset` for `day` expecting its audit to refuse it: the step's failure message."""
    job = build_defs(resources=build_resources(str(root))).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=day,
        asset_selection=[dg.AssetKey(asset)],
        raise_on_error=False,
    )
    assert not result.success
    assert not [m for m in result.get_asset_materialization_events()]  # nothing recorded as materialized
    (message,) = [
        e.event_specific_data.error.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ]
    return message


@pytest.mark.slow
@pytest.mark.parametrize("asset", ["raw_impressions", "interactions"])
def test_a_partition_whose_blocking_check_fails_leaves_the_published_partition(world, tmp_path, asset):
    """Bad data of a day is staged and judged by the rules of the table's blocking checks; it is
    refused with its reason, and the partition published before stays byte-identical and readable."""
    root = tmp_path / "w"
    shutil.copytree(world, root, symlinks=True)
    con = duckdb.connect()
    published = [root / "lake" / asset / f"{D}.parquet"]
    if asset == "raw_impressions":
        published.append(root / "lake/quarantine" / asset / f"{D}.parquet")
        # a re-delivery of the day where a third of the lines are not JSON: quarantine_rate fails
        landing = root / "landing" / D / "impressions.jsonl"
        original = landing.read_bytes()
        landing.write_bytes(original + b"not json\n" * (original.count(b"\n") // 2))
        rule = "quarantine_rate"
    else:
        # the day's raw impressions altered after they were published (one row twice):
        # the interactions built on them no longer match them one to one
        raw = root / "lake/raw_impressions" / f"{D}.parquet"
        con.execute(f"COPY (FROM '{raw}' UNION ALL (FROM '{raw}' LIMIT 1)) TO '{tmp_path}/r.parquet' (FORMAT parquet)")
        shutil.move(tmp_path / "r.parquet", raw)
        rule = "consistent_with_raw"
    before = {p: _sha(p) for p in published}
    rows_before = con.execute(f"SELECT count(*) FROM '{published[0]}'").fetchone()[0]
    visible_before = visible_parquet(root, asset)

    message = run_refused(root, asset, D)
    assert f"{asset} {D} was not published: blocking rule {rule}" in message
    assert {p: _sha(p) for p in published} == before  # byte-identical
    assert visible_parquet(root, asset) == visible_before
    warehouse = build_resources(str(root))["warehouse"].connect()  # and readable through the catalog
    (rows,) = warehouse.execute(
        f"SELECT count(*) FROM {asset} WHERE "
        + ("day" if asset == "interactions" else "CAST(timezone('UTC', shown_at) AS DATE)")
        + f" = DATE '{D}'"
    ).fetchone()
    assert rows == rows_before > 0
    # the refused partition stays staged, outside the lake, with its reason next to it
    staged = root / ".staging/lake" / asset / f"{D}.parquet"
    reason = json.loads(staged.with_name(f"{D}.parquet.reason.json").read_text())
    assert reason["partition"] == D and rule in reason["failed_rules"] and str(staged) in message
    assert con.execute(f"SELECT count(*) FROM '{staged}'").fetchone()[0] > 0
    if asset == "raw_impressions":
        assert reason["failed_rules"][rule]["quarantine_rate"] > 0.25
        landing.write_bytes(original)  # the good delivery again: published, the same bytes as before
        rerun(root, asset, D)
        assert {p: _sha(p) for p in published} == before
        assert not staged.exists() and not staged.with_name(f"{D}.parquet.reason.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("asset", ["recall_evaluation", "recommendations"])
def test_evaluation_and_lists_whose_blocking_check_fails_leave_the_published_partition(
    world, tmp_path, monkeypatch, asset
):
    root = tmp_path / "w"
    shutil.copytree(world, root, symlinks=True)
    published = root / "lake" / asset / f"{D}.parquet"
    before = _sha(published)
    if asset == "recall_evaluation":
        import recsys_assets.assets.evaluation as evaluation

        evaluate_day = evaluation.evaluate_day

        def without_als(*args, **kwargs):  # an evaluation that missed a trained model
            rows, info = evaluate_day(*args, **kwargs)
            return [r for r in rows if r["model"] != "als"], info

        monkeypatch.setattr(evaluation, "evaluate_day", without_als)
        rule = "every_trained_model_evaluated"
    else:
        (root / "lake/recall_candidates" / f"{D}.parquet").unlink()  # every list would be the fallback
        rule = "one_sound_list_per_active_user"

    message = run_refused(root, asset, D)
    assert f"{asset} {D} was not published: blocking rule {rule}" in message
    assert _sha(published) == before
    reason = json.loads((root / ".staging/lake" / asset / f"{D}.parquet.reason.json").read_text())
    if asset == "recall_evaluation":
        assert reason["failed_rules"][rule] == {"trained_but_not_evaluated": ["als"]}
    else:
        assert "recall_candidates is missing" in reason["failed_rules"][rule]["problems"][0]
    (rows,) = (
        build_resources(str(root))["warehouse"]
        .connect()
        .execute(f"SELECT count(*) FROM {asset} WHERE day = DATE '{D}'")
        .fetchone()
    )
    assert rows > 0


@pytest.mark.slow
def test_a_model_whose_blocking_check_fails_leaves_the_published_model(world, tmp_path, monkeypatch):
    """A model with a NaN is judged by the rule of its blocking check before it is published and
    refused: the day's published model stays the same version, verified and serving."""
    from recsys_assets.core.recall.models import PopularityModel, load_model

    root = tmp_path / "w"
    shutil.copytree(world, root, symlinks=True)
    store, link = build_resources(str(root))["model_store"], root / "models/recall_popularity" / D
    target_before, files_before = os.readlink(link), store.verify("recall_popularity", D)["files"]
    versions_before = set((root / "models/recall_popularity/.versions").iterdir())
    fit = PopularityModel.fit

    def diverged(self, data, seed=0):
        fit(self, data, seed=seed)
        self.item_scores[3] = float("nan")  # what a diverging fit leaves
        return self

    monkeypatch.setattr(PopularityModel, "fit", diverged)
    message = run_refused(root, "recall_popularity", D)
    assert f"recall_popularity {D} was not published: blocking rule finite_and_verified" in message
    assert "non_finite_values={'item_scores': 1}" in message
    assert os.readlink(link) == target_before  # the same version, complete and serving
    assert store.verify("recall_popularity", D)["files"] == files_before
    load_model(link).recommend([0, 1], 10)
    assert set((root / "models/recall_popularity/.versions").iterdir()) == versions_before
    (reason_file,) = (root / "models/recall_popularity/.staging").glob("*.reason.json")
    reason = json.loads(reason_file.read_text())
    assert reason["partition"] == D and reason["failed_rules"]["finite_and_verified"]["non_finite_values"] == {
        "item_scores": 1
    }
    assert (Path(reason["staged"]) / "item_scores.npy").exists()  # the refused model, kept to look at

    monkeypatch.setattr(PopularityModel, "fit", fit)
    rerun(root, "recall_popularity", D)
    assert os.readlink(link) == target_before


# --- clear errors for users --------------------------------------------------------------


@pytest.mark.slow
def test_an_unknown_user_gets_the_cold_start_path(world, capsys):
    from recsys_assets import cli

    assert cli.main(["recommend", "--user", "987654321", "--k", "5", "--json", "--data-root", str(world)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["path"] == "cold_start" and answer["user_id"] == 987654321 and len(answer["items"]) == 5


def test_recommend_refuses_an_impossible_day_in_one_line(tmp_path, capsys):
    from recsys_assets import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["recommend", "--user", "1", "--day", "2026-02-30", "--data-root", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "'2026-02-30' is not a date (YYYY-MM-DD)" in err and "Traceback" not in err


def test_recommend_for_a_day_without_models_does_not_claim_them(world, capsys):
    """The first day has no models (nothing to train on): asking for it names the days that
    have models instead of answering "models of <day>" with another day's or popularity."""
    from recsys_assets import cli

    assert cli.main(["recommend", "--user", "1", "--day", DAYS[0], "--json", "--data-root", str(world)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert f"no recall model is published for {DAYS[0]}; days with models: " in captured.err and D in captured.err
    assert cli.main(["recommend", "--user", "1", "--day", D, "--json", "--data-root", str(world)]) == 0
    assert json.loads(capsys.readouterr().out)["day"] == D


def test_recommend_without_models_says_what_is_missing(tmp_path, capsys):
    from recsys_assets import cli

    assert cli.main(["recommend", "--user", "1", "--data-root", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recsys: ") and "Traceback" not in err and err.count("\n") <= 3


@pytest.mark.slow
def test_an_empty_training_window_fails_with_one_message(world, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(world, root, symlinks=True)
    con = duckdb.connect()
    for day in DAYS[:-1]:  # the whole window before D holds no interactions
        path = root / "lake/interactions" / f"{day}.parquet"
        con.execute(f"COPY (FROM '{path}' LIMIT 0) TO '{tmp_path}/empty.parquet' (FORMAT parquet)")
        shutil.move(tmp_path / "empty.parquet", path)
    job = build_defs(resources=build_resources(str(root))).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=D,
        asset_selection=[dg.AssetKey("recall_als")],
        raise_on_error=False,
    )
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.event_specific_data.error
    assert error.cls_name == "Failure"
    assert f"training window of {D} ({DAYS[0]}..{DAYS[-2]}) has no positive interactions" in error.message
    assert "materialized" in error.message


def test_concurrent_publishes_of_the_same_model_both_succeed(tmp_path, monkeypatch):
    """Two processes publishing the same model: the second one's rename finds the version the
    first just created ("Directory not empty"). It reuses that version (the same files) instead
    of failing, and the day points at it."""
    import recsys_assets.services.model_store as model_store

    store = model_store.ModelStore(models_root=str(tmp_path / "models"))
    real_replace = os.replace

    def raced(src, dst):
        if Path(dst).parent.name == ".versions" and not Path(dst).exists():
            shutil.copytree(src, dst)  # the other process renamed its identical staging first
        return real_replace(src, dst)

    monkeypatch.setattr(model_store.os, "replace", raced)
    staging = store.staging_dir("recall_x")
    (staging / "factors.npy").write_bytes(b"same bytes")
    final = store.publish("recall_x", "2026-01-05", staging, {"run": "this"})
    monkeypatch.setattr(model_store.os, "replace", real_replace)

    assert store.path("recall_x", "2026-01-05").resolve() == final.resolve()
    assert (final / "factors.npy").read_bytes() == b"same bytes"
    assert store.verify("recall_x", "2026-01-05")["files"] == {"factors.npy": hashlib.sha256(b"same bytes").hexdigest()}
    assert not staging.exists() and len(list((tmp_path / "models/recall_x/.versions").iterdir())) == 1


def _run_check(root: Path, asset: str, check: str, day: str):
    job = build_defs(resources=build_resources(str(root))).resolve_implicit_global_asset_job_def()
    only_check = job.get_subset(
        asset_selection=set(), asset_check_selection={dg.AssetCheckKey(dg.AssetKey(asset), check)}
    )
    result = only_check.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key=day, raise_on_error=False
    )
    failures = [e.event_specific_data.error.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 1, failures
    return evaluations[0]


def test_a_trained_model_without_evaluation_rows_fails_the_blocking_check(world, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(world, root, symlinks=True)
    assert _run_check(root, "recall_evaluation", "every_trained_model_evaluated", D).passed
    target = root / "lake/recall_evaluation" / f"{D}.parquet"
    con = duckdb.connect()
    # the first day has no model (nothing before it to train on): 0 rows pass, and say so
    con.execute(f"COPY (FROM '{target}' LIMIT 0) TO '{root}/lake/recall_evaluation/{DAYS[0]}.parquet' (FORMAT parquet)")
    first = _run_check(root, "recall_evaluation", "every_trained_model_evaluated", DAYS[0])
    assert first.passed and first.metadata["days_without_a_trained_model"].value == DAYS[0]

    con.execute(f"COPY (FROM '{target}' WHERE model <> 'als') TO '{tmp_path}/e.parquet' (FORMAT parquet)")
    shutil.move(tmp_path / "e.parquet", target)
    evaluation = _run_check(root, "recall_evaluation", "every_trained_model_evaluated", D)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["trained_but_not_evaluated"].value == {D: ["als"]}


def test_recommendations_checks_catch_missing_users_unknown_items_and_missing_candidates(world, tmp_path):
    check = ("recommendations", "one_sound_list_per_active_user")
    root = tmp_path / "w"
    shutil.copytree(world, root, symlinks=True)
    sound = _run_check(root, *check, D)
    assert sound.passed and sound.metadata["active_user_coverage"].value == 1.0

    recs = root / "lake/recommendations" / f"{D}.parquet"
    original = recs.read_bytes()
    con = duckdb.connect()
    (user,) = con.execute(f"SELECT min(user_id) FROM '{recs}'").fetchone()
    active = con.execute(
        f"SELECT count(*) FROM '{root}/lake/user_features/{D}.parquet' WHERE user_id = {user} "
        "AND (impressions_28d IS NOT NULL OR positives_28d IS NOT NULL)"
    ).fetchone()[0]
    con.execute(
        f"COPY (SELECT * REPLACE (CASE WHEN rank = 1 THEN 999999999 ELSE item_id END AS item_id) FROM '{recs}' "
        f"WHERE user_id <> {user}) TO '{tmp_path}/r.parquet' (FORMAT parquet)"
    )
    shutil.move(tmp_path / "r.parquet", recs)
    broken = _run_check(root, *check, D)
    problems = broken.metadata["problems"].value
    assert not broken.passed and broken.severity == dg.AssetCheckSeverity.ERROR
    assert "rows recommend items that are not in raw_items" in problems
    assert ("active users have no list" in problems) == bool(active)

    recs.write_bytes(original)
    (root / "lake/recall_candidates" / f"{D}.parquet").unlink()
    no_candidates = _run_check(root, *check, D)
    assert not no_candidates.passed and "recall_candidates is missing" in no_candidates.metadata["problems"].value
