"""Which executor runs the steps, chosen by configuration alone (RECSYS_EXECUTOR).

- unset / "multiprocess": Dagster's default, one process per step on this machine.
- "in_process": every step in the run's own process (debugging, profiling).
- "celery": steps are queued on a Celery broker (RECSYS_CELERY_BROKER, e.g.
  redis://host:6379/0; results on RECSYS_CELERY_BACKEND, default the broker) and run by
  `recsys-celery-worker` processes on any machine that can reach the broker, the data root
  and the Dagster instance. Steps exchange data only through the data root (assets write
  their partitions there and return no outputs), so with RECSYS_DATA_ROOT=s3://... nothing
  passes through a worker's local disk.
"""

import os

import dagster as dg

EXECUTORS = ("multiprocess", "in_process", "celery")


class ExecutorConfigError(ValueError):
    pass


def celery_settings() -> dict:
    broker = os.getenv("RECSYS_CELERY_BROKER")
    if not broker:
        raise ExecutorConfigError("RECSYS_EXECUTOR=celery needs RECSYS_CELERY_BROKER (e.g. redis://127.0.0.1:6379/0)")
    return {"broker": broker, "backend": os.getenv("RECSYS_CELERY_BACKEND", broker)}


def executor_from_env() -> dg.ExecutorDefinition | None:
    kind = os.getenv("RECSYS_EXECUTOR", "multiprocess").strip().lower()
    if kind not in EXECUTORS:
        raise ExecutorConfigError(f"RECSYS_EXECUTOR={kind!r}: expected one of {', '.join(EXECUTORS)}")
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "celery":
        from dagster_celery import celery_executor  # optional dependency: pip install '.[distributed]'

        return celery_executor.configured(celery_settings(), name="celery")
    return None  # Dagster's default: multiprocess, or in-process for execute_in_process
