"""Days of one step worked on side by side.

A range run covers several partitions in one step; their days are independent (each reads
its own inputs and publishes its own output), and most of a day's work happens in numpy,
LightGBM or DuckDB, which release the GIL. A few threads then use the cores an in-process run
would leave idle, and every day's result is the one it gets alone."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

T = TypeVar("T")


def each_day(work: Callable[[str], T], days: list[str], workers: int) -> Iterator[tuple[str, Callable[[], T]]]:
    """(day, outcome) in the order of `days`, with up to `workers` days worked on at once;
    outcome() returns work(day) or raises its exception. A day starts when one of the
    `workers` earlier days has been handed to the caller, so at most `workers` results are held
    at a time. workers 1: each day runs when its outcome is asked for, so a failing day stops the
    step before the next one starts. When the caller stops early, running days finish and no
    other day starts."""
    if workers <= 1 or len(days) <= 1:
        for day in days:
            yield day, partial(work, day)
        return
    pool = ThreadPoolExecutor(max_workers=min(workers, len(days)), thread_name_prefix="day")
    try:
        pending = deque((day, pool.submit(work, day)) for day in days[:workers])
        waiting = deque(days[workers:])
        while pending:
            handed, future = pending.popleft()
            if waiting:
                day = waiting.popleft()
                pending.append((day, pool.submit(work, day)))
            yield handed, future.result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class DayLog:
    """A logger for work on another thread: messages are kept and written by the step's own
    thread (replay), in day order, so the run's log reads as if the days ran one by one."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def info(self, message: str) -> None:
        self.messages.append(("info", message))

    def warning(self, message: str) -> None:
        self.messages.append(("warning", message))

    def error(self, message: str) -> None:
        self.messages.append(("error", message))

    def replay(self, log) -> None:
        for level, message in self.messages:
            getattr(log, level)(message)
