"""recall_tuning (services/tuning.py): the search of day D never reads D, trials are
reproducible for a seed, the defaults are trial 0, the best carries forward between studies
and reaches the model assets of later days."""

import json
import shutil
from datetime import UTC

import numpy as np
import pytest

from recsys_assets.core.recall import registry
from recsys_assets.services.days import days_before
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.tables import write_rows
from recsys_assets.services.tuning import TUNING_SCHEMA, tune_day, tuned_params
from recsys_assets.settings import Settings

D = "2026-01-06"  # the built world's last day (tests/conftest.py)


def _setup(root, **recall):
    settings = Settings.load(data_root=str(root), recall={"tune": ["ease", "item_cf"], "tune_trials": 4} | recall)
    lake = Lake(data_root=settings.data_root)
    store = ModelStore(models_root=settings.models_root, cache_dir=settings.model_cache)
    return settings, lake, store


def _trials(rows):
    return [(r["model"], r["trial"], r["params"], round(r["value"], 12), r["is_best"]) for r in rows]


@pytest.mark.slow
def test_the_tuning_of_a_day_never_reads_that_day_and_is_reproducible(built_world, tmp_path):
    intact, blind = tmp_path / "intact", tmp_path / "blind"
    shutil.copytree(built_world, intact, symlinks=True)
    shutil.copytree(built_world, blind, symlinks=True)
    # the evaluated day is gone: its interactions and everything built from them
    settings, lake, store = _setup(blind)
    for table in ("interactions", "raw_impressions", "raw_events", "raw_watch_stats"):
        lake.partition_path(table, D).unlink()
    shutil.rmtree(store.root / "recall_training_data" / D, ignore_errors=True)
    rows = tune_day(D, lake, store, settings.recall, str(settings.start_date))
    settings2, lake2, store2 = _setup(intact)
    again = tune_day(D, lake2, store2, settings2.recall, str(settings2.start_date))
    assert _trials(rows) == _trials(again)  # identical without day D: it was never read
    assert {r["validation_day"] for r in rows} == {"2026-01-05"}
    for name in ("ease", "item_cf"):
        trials = [r for r in rows if r["model"] == name]
        assert len(trials) == 4 and sum(r["is_best"] for r in trials) == 1
        default = json.loads(trials[0]["params"])
        assert default == settings.recall.model_params(name)  # trial 0 = the settings it runs with
        best = next(r for r in trials if r["is_best"])
        # the best trial, or trial 0 when no trial beat it beyond the noise
        assert best["value"] == max(r["value"] for r in trials) or best["trial"] == 0
        assert best["value"] >= trials[0]["value"]
    # a later day within tune_every_days carries the best forward without a new study
    write_rows(rows, TUNING_SCHEMA, lake.partition_path("recall_tuning", D))
    later = tune_day("2026-01-07", lake, store, settings.recall, str(settings.start_date))
    assert [(r["model"], r["carried_from"], r["is_best"]) for r in later] == [("ease", D, True), ("item_cf", D, True)]
    # drift or a quality drop (retrain_sensor's trigger) forces a new study within the interval
    forced = tune_day("2026-01-07", lake2, store2, settings2.recall, str(settings2.start_date), force=True)
    assert forced and all(r["carried_from"] is None for r in forced)
    assert {r["validation_day"] for r in forced} == {"2026-01-06"} and len(forced) == 8
    ease_best = next(r for r in rows if r["model"] == "ease" and r["is_best"])
    assert tuned_params(lake, "2026-01-09", "ease") == (json.loads(ease_best["params"]), D)
    assert tuned_params(lake, "2026-01-05", "ease") is None  # never before the day it was tuned for
    # a validation period of two days: trained before it, scored on both, still blind to D
    two, lake3, store3 = _setup(blind, tune_validation_days=2, tune=["ease"])
    period = tune_day("2026-01-06", lake3, store3, two.recall, str(two.start_date))
    assert {r["validation_day"] for r in period} == {"2026-01-04..2026-01-05"}
    assert len(period) == 4 and all(0 < r["value"] < 1 for r in period)


@pytest.mark.slow
def test_a_validation_period_that_reaches_the_first_partition_starts_after_it(built_world, tmp_path):
    """A long source's history partition is the first partition: a period reaching back to it
    (tune_validation_days 14 on a ratings source, a week after its first daily day) validates on
    the days after it, with models trained on it, instead of cutting one day in time."""
    root = tmp_path / "world"
    shutil.copytree(built_world, root, symlinks=True)
    settings, lake, store = _setup(root, tune_validation_days=30, tune=["ease"])
    first = str(settings.start_date)
    rows = tune_day(D, lake, store, settings.recall, first)
    after_first = days_before(D, 30, first)[1:]
    assert {r["validation_day"] for r in rows} == {f"{after_first[0]}..{after_first[-1]}"}
    assert len(rows) == 4 and all(0 < r["value"] < 1 for r in rows)


def test_only_declared_models_can_be_tuned():
    assert registry.spec("ease").search_space and not registry.spec("popularity").search_space
    with pytest.raises(ValueError, match="declares no search_space"):
        Settings.load(recall={"tune": ["popularity"]})
    toy = type("ToyTuned", (registry.REGISTRY["ease"].model,), {"name": "toy_tuned"})
    with pytest.raises(ValueError, match="not fields of"):
        registry.register(
            registry.ModelSpec(
                name="toy_tuned",
                model=toy,
                config=registry.REGISTRY["ease"].config,
                learned=True,
                description="x",
                search_space={"nope": registry.Range(0, 1)},
            )
        )


def test_a_trial_replaces_the_current_settings_only_beyond_the_noise():
    """On a noisy validation period the best of many trials is often noise: it replaces trial 0
    (the current settings) only when its paired gain over the same users has a CI above 0."""
    from recsys_assets.services.tuning import choose_best

    rng = np.random.default_rng(0)
    base = rng.random(300)
    noise = base + rng.normal(0, 0.05, 300)  # a slightly higher mean by chance, not by design
    noise += 0.002 - (noise.mean() - base.mean())
    clear = base + 0.05
    assert choose_best([base.mean(), noise.mean()], [base, noise]) == 0
    assert choose_best([base.mean(), noise.mean(), clear.mean()], [base, noise, clear]) == 2
    assert choose_best([base.mean(), base.mean() - 0.1], [base, base - 0.1]) == 0  # trial 0 is the best


@pytest.mark.slow
def test_a_log_that_starts_the_day_before_is_validated_on_that_day_cut_in_time(built_world, tmp_path):
    """A two-day log (the trivago sample): the tuning of its second day has no earlier day to
    train a validation model on, so it cuts the first day in time: trained on the first 75% of
    its positives, validated on the rest, and still never reads the tuned day (or any other)."""
    import duckdb

    from recsys_assets.services.training import split_day

    first = "2026-01-05"  # the log "starts" here: D - 1
    intact, blind = tmp_path / "intact", tmp_path / "blind"
    shutil.copytree(built_world, intact, symlinks=True)
    shutil.copytree(built_world, blind, symlinks=True)
    settings, lake, store = _setup(blind, tune=["ease"])
    for day in [p.stem for p in (lake.lake_dir / "interactions").glob("*.parquet") if p.stem != first]:
        lake.partition_path("interactions", day).unlink()  # D and every day before the log's first
    rows = tune_day(D, lake, store, settings.recall, first)
    settings2, lake2, store2 = _setup(intact, tune=["ease"])
    again = tune_day(D, lake2, store2, settings2.recall, first)
    assert rows and _trials(rows) == _trials(again)
    (validation,) = {r["validation_day"] for r in rows}
    assert len(rows) == 4 and sum(r["is_best"] for r in rows) == 1 and all(0 < r["value"] < 1 for r in rows)

    data, test, info, cut = split_day(lake2, first, settings2.recall)
    path = lake2.partition_path("interactions", first)
    con = duckdb.connect()
    held, total, before = con.execute(
        f"SELECT count(*) FILTER (WHERE is_positive AND event_at >= $cut), count(*) FILTER (WHERE is_positive), "
        f"count(DISTINCT (user_id, item_id)) FILTER (WHERE (is_positive OR clicked) AND event_at < $cut) "
        f"FROM read_parquet('{path}')",
        {"cut": cut},
    ).fetchone()
    assert str(cut.date()) == first and 0.2 <= held / total <= 0.3  # the last quarter of the day's positives
    assert validation == f"{first} from {cut.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    assert data.positives.nnz == before  # trained on exactly the pairs chosen before the cut
    assert info["consumed"].nnz == 0  # nothing of an earlier day was read
    assert test.relevant.multiply(data.positives).nnz == 0  # held out: only what was new after the cut
    assert 0 < test.relevant.nnz <= held
