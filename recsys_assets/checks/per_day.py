"""Asset checks whose results are recorded per day.

A range run (the quickstart, `--partition-range`, a single-run backfill) evaluates a partitioned
check once for all its days, and Dagster records that one result without a partition: every day
of the range then shows the check as not run. `asset_check` here judges each day of the run on
its own and records one evaluation per day, so the UI's per-partition check status is that day's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
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
                yield dg.AssetCheckEvaluation(
                    asset_key=spec.asset_key,
                    check_name=spec.name,
                    passed=result.passed,
                    metadata=result.metadata,
                    severity=result.severity,
                    description=result.description,
                    blocking=spec.blocking,
                    partition=day,
                    target_materialization_data=_target(context, spec.asset_key, day),
                )
            for output in context.op_def.output_defs:  # a blocking check's output gates what is downstream
                yield dg.Output(None, output_name=output.name)

        # a generator now: drop the body's `-> AssetCheckResult` so dagster does not expect one
        per_day.__annotations__ = {k: v for k, v in body.__annotations__.items() if k != "return"}
        return dg.asset_check(**kwargs)(per_day)

    return decorate
