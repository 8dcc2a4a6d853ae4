"""Asset checks whose results are recorded per day; the day checks of one table merged into one step.

A range run (the quickstart, `--partition-range`, a single-run backfill) evaluates a partitioned
check once for all its days, and Dagster records that one result without a partition: every day
of the range then shows the check as not run. `asset_check` here judges each day of the run on
its own and records one evaluation per day, so the UI's per-partition check status is that day's.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

# not exported by dagster: the reference from an evaluation to the materialization it judged
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)


class _OneDay:
    """The check's context seen as a run of one day."""

    def __init__(self, context: dg.AssetCheckExecutionContext, day: str):
        self._context, self._day = context, day

    @property
    def partition_keys(self) -> list[str]:
        return [self._day]

    @property
    def partition_key(self) -> str:
        return self._day

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _target(
    context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey, day: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The day's latest materialization: the one this evaluation judged."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[day]), limit=1
    ).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        run_id=records[0].event_log_entry.run_id, storage_id=records[0].storage_id, timestamp=records[0].timestamp
    )


def _evaluation(
    spec: dg.AssetCheckSpec,
    result: dg.AssetCheckResult,
    day: str,
    target: AssetCheckEvaluationTargetMaterializationData | None,
) -> dg.AssetCheckEvaluation:
    """`result` of check `spec` recorded as the evaluation of partition `day`."""
    return dg.AssetCheckEvaluation(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        blocking=spec.blocking,
        partition=day,
        target_materialization_data=target,
    )


def asset_check(**kwargs: Any) -> Callable[[Callable[..., dg.AssetCheckResult]], dg.AssetChecksDefinition]:
    """`dg.asset_check`; with a `partitions_def`, the body (written for `context.partition_keys`)
    runs once per day of the run and each day's result is recorded as that partition's. A failed
    blocking day still stops what is downstream in the run."""
    if kwargs.get("partitions_def") is None:
        return dg.asset_check(**kwargs)

    def decorate(body: Callable[..., dg.AssetCheckResult]) -> dg.AssetChecksDefinition:
        @functools.wraps(body)
        def per_day(context: dg.AssetCheckExecutionContext, **resources: Any) -> Iterator[Any]:
            spec = next(iter(context.check_specs))
            for day in context.partition_keys:
                result = body(_OneDay(context, day), **resources)
                yield _evaluation(spec, result, day, _target(context, spec.asset_key, day))
            for output in context.op_def.output_defs:  # a blocking check's output gates what is downstream
                yield dg.Output(None, output_name=output.name)

        # a generator now: drop the body's `-> AssetCheckResult` so dagster does not expect one
        per_day.__annotations__ = {k: v for k, v in body.__annotations__.items() if k != "return"}
        return dg.asset_check(**kwargs)(per_day)

    return decorate


@dataclass(frozen=True)
class DayCheck:
    """A partitioned check judged day by day, not yet a definition: `merged` makes the day
    checks of one asset one step."""

    spec: dg.AssetCheckSpec
    body: Callable[..., dg.AssetCheckResult]
    resource_keys: tuple[str, ...]


def day_check(
    *, asset: Any, name: str, description: str, partitions_def: dg.PartitionsDefinition, blocking: bool = False
) -> Callable[[Callable[..., dg.AssetCheckResult]], DayCheck]:
    """Like `asset_check` with a `partitions_def` (the body, written for `context.partition_keys`,
    judges one day at a time and each day's result is that partition's), for checks that
    `merged` runs together: the body's parameters after `context` are resource keys."""

    def decorate(body: Callable[..., dg.AssetCheckResult]) -> DayCheck:
        spec = dg.AssetCheckSpec(
            name, asset=asset, description=description, blocking=blocking, partitions_def=partitions_def
        )
        resources = tuple(p for p in inspect.signature(body).parameters if p != "context")
        return DayCheck(spec, body, resources)

    return decorate


def merged(checks: Sequence[DayCheck | dg.AssetChecksDefinition]) -> list[dg.AssetChecksDefinition]:
    """The day checks of each asset as one multi-asset check (one step per asset and run: every
    step costs ~40 ms of Dagster bookkeeping, a third of a one-day run of the daily layers when
    each of their 30 checks was a step); other checks unchanged. Each check is still its own key
    with its own result per day, and a failed blocking one still stops what is downstream."""
    out = [c for c in checks if not isinstance(c, DayCheck)]
    by_asset: dict[dg.AssetKey, list[DayCheck]] = {}
    for check in checks:
        if isinstance(check, DayCheck):
            by_asset.setdefault(check.spec.asset_key, []).append(check)
    return out + [_one_step(asset_key, group) for asset_key, group in by_asset.items()]


def _one_step(asset_key: dg.AssetKey, group: list[DayCheck]) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        name=f"{asset_key.to_python_identifier()}_checks",
        specs=[c.spec for c in group],
        required_resource_keys={r for c in group for r in c.resource_keys},
        can_subset=True,
        description=f"The day checks of {asset_key.to_user_string()}: " + ", ".join(c.spec.name for c in group),
    )
    def day_checks(context) -> Iterator[Any]:  # (a string annotation here is refused by dagster)
        selected = [c for c in group if c.spec.key in context.selected_asset_check_keys]
        targets = {day: _target(context, asset_key, day) for day in context.partition_keys}
        for check in selected:
            resources = {r: getattr(context.resources, r) for r in check.resource_keys}
            for day in context.partition_keys:
                yield _evaluation(check.spec, check.body(_OneDay(context, day), **resources), day, targets[day])
        assets_def = context.op_execution_context.assets_def
        for check in selected:  # a blocking check's output gates what is downstream
            yield dg.Output(None, output_name=assets_def.get_output_name_for_asset_check_key(check.spec.key))

    return day_checks
