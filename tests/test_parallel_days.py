"""Days of one step worked on side by side (services/parallel.py): results in day order, a
day's failure raised at that day, nothing started after a failure when one day runs at a time;
models that limit BLAS for the whole process train their days one at a time."""

import threading
import time

import pytest

from recsys_assets.services.parallel import each_day

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_outcomes_come_in_day_order_whatever_finishes_first(workers):
    def work(day: str) -> str:
        time.sleep(0.05 if day == DAYS[0] else 0.0)  # the first day finishes last
        return day.upper()

    assert [(day, outcome()) for day, outcome in each_day(work, DAYS, workers)] == [(d, d.upper()) for d in DAYS]


def test_days_overlap_with_two_workers():
    running, most = set(), 0
    lock = threading.Lock()

    def work(day: str) -> None:
        nonlocal most
        with lock:
            running.add(day)
            most = max(most, len(running))
        time.sleep(0.1)
        with lock:
            running.discard(day)

    for _, outcome in each_day(work, DAYS, 2):
        outcome()
    assert most == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_day_raises_its_own_error_at_its_turn(workers):
    def work(day: str) -> str:
        if day == DAYS[1]:
            raise ValueError(f"no data on {day}")
        return day

    seen = []
    with pytest.raises(ValueError, match=DAYS[1]):
        for _, outcome in each_day(work, DAYS, workers):
            seen.append(outcome())
    assert seen == [DAYS[0]]


def test_one_worker_starts_no_day_after_a_failure():
    started = []

    def work(day: str) -> None:
        started.append(day)
        raise RuntimeError(day)

    with pytest.raises(RuntimeError):
        for _, outcome in each_day(work, DAYS, 1):
            outcome()
    assert started == [DAYS[0]]


def test_days_not_started_are_cancelled_when_the_caller_stops():
    started = []

    def work(day: str) -> None:
        started.append(day)
        time.sleep(0.1)
        if day == DAYS[0]:
            raise RuntimeError(day)

    with pytest.raises(RuntimeError):
        for _, outcome in each_day(work, DAYS * 3, 2):
            outcome()
    assert len(started) < len(DAYS * 3)


def test_models_that_limit_blas_for_the_process_say_so():
    """A BLAS thread limit is process-wide: two days of ALS saving and restoring it from two
    threads could leave BLAS at one thread for the rest of the run, so such models declare it
    and their days train one at a time."""
    import inspect

    from recsys_assets.core.recall import registry

    for name, spec in registry.REGISTRY.items():
        holds_limit = "_blas_single_thread()" in inspect.getsource(spec.model.fit)
        assert spec.model.limits_blas == holds_limit, name
