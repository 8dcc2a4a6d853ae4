"""The days a partition reads: one definition of "the N days before D"."""

from datetime import date, timedelta


def days_before(day: str, n: int | None, first_day: str | None = None) -> list[str]:
    """The `n` days strictly before `day`, oldest first; none before `first_day` when given
    (the first partition: a window never reaches before the data). n None: every day from
    `first_day` on (the whole history; the first partition of a long source holds all of its
    earlier days, see Settings.history_start)."""
    end = date.fromisoformat(day)
    if n is None:
        if first_day is None:
            raise ValueError("the whole history (n=None) needs first_day")
        n = max((end - date.fromisoformat(first_day)).days, 0)
    days = [end - timedelta(days=k) for k in range(n, 0, -1)]
    if first_day is not None:
        start = date.fromisoformat(first_day)
        days = [d for d in days if d >= start]
    return [d.isoformat() for d in days]
