"""Volume and completeness of a daily partition against its trailing norm (no Dagster import).

A day whose delivery is empty or truncated still loads without a single bad line: only its
volume tells. Each measure (rows, distinct users, distinct items) is compared with the median
of the same measure over the trailing partitions.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

MEASURES = ("rows", "users", "items")


@dataclass
class VolumeVerdict:
    day: str
    current: dict[str, int]
    norm: dict[str, float] = field(default_factory=dict)  # median of the trailing partitions
    history: int = 0  # trailing partitions the norm was taken over
    passed: bool = True
    reason: str = ""


def volume_verdict(
    day: str, current: dict[str, int], trailing: list[dict[str, int]], min_ratio: float, min_history: int
) -> VolumeVerdict:
    """Fails when a measure is below `min_ratio` x its trailing median; passes (saying so) when
    fewer than `min_history` trailing partitions exist: there is no norm yet."""
    verdict = VolumeVerdict(day, dict(current), history=len(trailing))
    if len(trailing) < min_history:
        verdict.reason = f"no norm yet: {len(trailing)} earlier partition(s), {min_history} needed"
        return verdict
    verdict.norm = {m: float(statistics.median(t[m] for t in trailing)) for m in MEASURES}
    low = [
        f"{m} {current[m]:,} < {min_ratio:g} x trailing median {verdict.norm[m]:,.0f}"
        for m in MEASURES
        if current[m] < min_ratio * verdict.norm[m]
    ]
    verdict.passed = not low
    verdict.reason = "; ".join(low) if low else "within the trailing norm"
    return verdict
