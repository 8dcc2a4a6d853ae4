"""Hyper-parameter tuning as part of the daily pipeline (recall_tuning).

The tuning of day D searches each tuned model's registry search_space on a validation period
strictly before D (the `tune_validation_days` before it, default 1): trained on the window
before the period and scored on its held-out positives (NDCG@10, the exclusions of
recall_evaluation), so neither the search nor its winner ever sees D. When the log starts inside
the period (a log of two days), the day before D is cut in time instead: the last
`tune_split_share` of its positives are held out, the rest of that day trains. Optuna's TPE sampler,
seeded; the model's current settings are trial 0, and the best trial replaces them only if it
beats them on the validation users with a paired bootstrap CI above 0 (choose_best). Every
trial is a row of the partition (params, value, seconds); the models of D and later days train
with the latest best (tuned_params)."""

from __future__ import annotations

import json
import time
from datetime import UTC

import numpy as np
import optuna
import pyarrow as pa
import scipy.sparse as sp

from recsys_assets.core import metrics
from recsys_assets.core.recall import models as recall_models
from recsys_assets.core.recall import registry
from recsys_assets.core.storage import read_arrow
from recsys_assets.core.training_data import load_positive_pairs, seen_matrix
from recsys_assets.services.days import days_before
from recsys_assets.services.errors import NoTrainingData
from recsys_assets.services.lake import Lake
from recsys_assets.services.model_store import ModelStore
from recsys_assets.services.training import load_day, split_day, training_days
from recsys_assets.settings import RecallConfig

TUNING_SCHEMA = pa.schema(
    [
        ("day", pa.string()),
        ("model", pa.string()),
        ("validation_day", pa.string()),
        ("trial", pa.int64()),
        ("params", pa.string()),  # JSON: the full validated params of the trial
        ("value", pa.float64()),  # NDCG@10 on the validation day
        ("seconds", pa.float64()),
        ("is_best", pa.bool_()),
        ("carried_from", pa.string()),  # a day whose study this partition carries forward (no trials run)
    ]
)
K = 10

# retrain_sensor's triggers after which the models are re-tuned at once, not at tune_every_days
RETUNE_TRIGGERS = ("drift", "quality_drop")


def _suggest(trial: optuna.Trial, space: dict[str, registry.Range]) -> dict:
    out: dict[str, float | int] = {}
    for name, r in space.items():
        if r.integer:
            out[name] = trial.suggest_int(name, int(r.low), int(r.high), log=r.log)
        else:
            out[name] = trial.suggest_float(name, r.low, r.high, log=r.log)
    return out


def _rows(path) -> list[dict]:
    """A stored partition's rows with `day` back as the ISO string it was written from."""
    return [r | {"day": str(r["day"])} for r in read_arrow(path).to_pylist()]


def latest_study(lake: Lake, day: str, name: str, within_days: int | None = None) -> list[dict] | None:
    """The rows of the latest recall_tuning partition before `day` (within `within_days`, if
    given) that ran a study for `name`; None if there is none."""
    folder = lake.lake_dir / "recall_tuning"
    if not folder.exists():
        return None
    earliest = days_before(day, within_days)[0] if within_days else None
    for path in sorted(folder.glob("*.parquet"), reverse=True):
        if path.stem >= day or (earliest is not None and path.stem < earliest):
            continue
        rows = [r for r in _rows(path) if r["model"] == name and r["carried_from"] is None]
        if rows:
            return rows
    return None


def tuned_params(lake: Lake, day: str, name: str) -> tuple[dict, str] | None:
    """(best params, the day they were tuned for) from the latest recall_tuning partition at or
    before `day` holding `name`; None when the model was never tuned."""
    folder = lake.lake_dir / "recall_tuning"
    if not folder.exists():
        return None
    for path in sorted(folder.glob("*.parquet"), reverse=True):
        if path.stem > day:
            continue
        best = [r for r in _rows(path) if r["model"] == name and r["is_best"]]
        if best:
            return json.loads(best[0]["params"]), best[0]["carried_from"] or path.stem
    return None


def period_truth(lake: Lake, days: list[str], data, exclude: sp.csr_matrix) -> sp.csr_matrix:
    """Every positive of the interactions partitions `days` (users x items of the training data:
    the ones a model can know), minus what each user had before (`exclude`, the seen matrix)."""
    truth = load_positive_pairs(
        lake.existing_partitions("interactions", days),
        lake.partition_path("user_id_dictionary"),
        lake.partition_path("item_id_dictionary"),
    )
    truth.resize((max(truth.shape[0], data.n_users), max(truth.shape[1], data.n_items)))
    truth = truth[: data.n_users, : data.n_items].tocsr()
    seen = sp.csr_matrix(exclude, dtype=np.float32)
    seen.resize(truth.shape)
    relevant = (truth - truth.multiply(seen)).tocsr()
    relevant.eliminate_zeros()
    return relevant


def study(
    name: str, lake: Lake, model_store: ModelStore, settings: RecallConfig, day: str, first_day: str | None
) -> list[dict]:
    """The trials of model `name` for day `day`, validated on the `tune_validation_days` before it:
    trained on the window before that period, scored on its positives (what each user consumed
    before the period excluded, as in recall_evaluation)."""
    period = days_before(day, settings.tune_validation_days, first_day)
    if not period:
        raise NoTrainingData(f"recall_tuning {day}: no day before it to validate on")
    # A period that reaches back to the log's first partition (a long source's history partition)
    # starts after it: the validation models train on it. Only a period with nothing before it
    # at all (a one-day period on the first day) is cut in time below.
    while len(period) > 1 and not training_days(period[0], settings.window_days, first_day):
        period = period[1:]
    validation = period[0] if len(period) == 1 else f"{period[0]}..{period[-1]}"
    spec = registry.spec(name)
    if training_days(period[0], settings.window_days, first_day):
        data, test, info, _, _ = load_day(
            lake, period[0], settings, first_day, with_shown=spec.needs_shown, model_store=model_store
        )
        exclude = seen_matrix(data.positives, info["consumed"])
        relevant_all = test.relevant if len(period) == 1 else period_truth(lake, period, data, exclude)
    else:
        # the period is the log's first partition (the second day of a two-day log, or a long
        # source's first daily day after its history partition): validate on the last
        # tune_split_share of its positives, trained on what came before them in it
        data, test, info, cut = split_day(
            lake, period[-1], settings, with_shown=spec.needs_shown, share=settings.tune_split_share
        )
        # with its date: a history partition holds months, so its cut is rarely on its own day
        validation = f"{period[-1]} from {cut.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        exclude, relevant_all = seen_matrix(data.positives, info["consumed"]), test.relevant
    blocked = np.flatnonzero(~info["available_items"])
    users = np.flatnonzero(np.diff(relevant_all.indptr) > 0)
    if len(users) == 0:
        raise NoTrainingData(f"recall_tuning {day}: the validation period {validation} has no test user")
    relevant = relevant_all[users]
    current = settings.model_params(name)
    rows: list[dict] = []
    per_user: list[np.ndarray] = []  # each trial's NDCG per validation user, in trial order

    def objective(trial: optuna.Trial) -> float:
        params = registry.params(name, current | _suggest(trial, spec.search_space))
        started = time.perf_counter()
        model = recall_models.MODELS[name](**params)
        model.fit(data, seed=settings.seed)
        recs, _ = model.recommend(users, K, exclude=exclude, blocked_items=blocked)
        ndcg = metrics.per_user_metrics(recs, relevant, K)[f"ndcg@{K}"]
        per_user.append(ndcg)
        value = float(ndcg.mean())
        rows.append(
            {
                "day": day,
                "model": name,
                "validation_day": validation,
                "trial": trial.number,
                "params": json.dumps(params, sort_keys=True),
                "value": value,
                "seconds": round(time.perf_counter() - started, 3),
                "is_best": False,
                "carried_from": None,
            }
        )
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=settings.seed))
    # trial 0: the settings the model runs with today; they stay unless a trial beats them beyond
    # the noise (choose_best)
    search.enqueue_trial({k: current[k] for k in spec.search_space}, skip_if_exists=True)
    search.optimize(objective, n_trials=settings.tune_trials, timeout=settings.tune_seconds)
    rows[choose_best([r["value"] for r in rows], per_user, settings.seed)]["is_best"] = True
    return rows


def choose_best(values: list[float], per_user: list[np.ndarray], seed: int = 0) -> int:
    """The trial whose settings serve: the best on validation, but only if it beats trial 0 (the
    current settings) on the same users with a paired bootstrap CI above 0; a gain inside the
    noise keeps the current settings (a search over many trials on a noisy period picks noise)."""
    best = max(range(len(values)), key=lambda i: (values[i], -i))
    if best == 0:
        return 0
    return best if metrics.paired_bootstrap(per_user[best], per_user[0], seed=seed)["ci_low"] > 0 else 0


def tune_day(
    day: str,
    lake: Lake,
    model_store: ModelStore,
    settings: RecallConfig,
    first_day: str | None,
    log=None,
    force: bool = False,
) -> list[dict]:
    """recall_tuning's rows of `day`: a new study per tuned model when its last one is older than
    tune_every_days (or `force`: drift or a quality drop asked for one), else the last best
    carried forward (one row, no trial run)."""
    rows: list[dict] = []
    for name in settings.tune:
        previous = None if force else latest_study(lake, day, name, settings.tune_every_days)
        if previous is not None:
            best = next(r for r in previous if r["is_best"])
            rows.append(best | {"day": day, "carried_from": best["day"]})
            continue
        try:
            rows += study(name, lake, model_store, settings, day, first_day)
        except NoTrainingData as nothing:
            if log:
                log.warning(f"recall_tuning {day} {name}: {nothing}")
    return rows
