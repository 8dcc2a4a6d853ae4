"""Which executor runs the steps, chosen by configuration alone (Settings.executor,
RECSYS_EXECUTOR).

- "in_process" (default): every step in the run's own process: no process start-up per step,
  which costs more than most steps here take.
- "multiprocess": Dagster's default, one process per step on this machine (steps side by side).
- "celery": steps are queued on a Celery broker (RECSYS_CELERY_BROKER, e.g.
  redis://host:6379/0; results on RECSYS_CELERY_BACKEND, default the broker) and run by
  `recsys-celery-worker` processes on any machine that can reach the broker, the data root
  and the Dagster instance. Steps exchange data only through the data root (assets write
  their partitions there and return no outputs), so with RECSYS_DATA_ROOT=s3://... nothing
  passes through a worker's local disk.
"""

import dagster as dg

from recsys_assets.settings import Settings, SettingsError

ExecutorConfigError = SettingsError


def celery_settings(settings: Settings) -> dict:
    if not settings.celery_broker:
        raise SettingsError("RECSYS_EXECUTOR=celery needs RECSYS_CELERY_BROKER (e.g. redis://127.0.0.1:6379/0)")
    return {"broker": settings.celery_broker, "backend": settings.celery_backend or settings.celery_broker}


def executor_for(settings: Settings) -> dg.ExecutorDefinition | None:
    if settings.executor == "in_process":
        return dg.in_process_executor
    if settings.executor == "multiprocess":
        return dg.multiprocess_executor
    if settings.executor == "celery":
        # an optional dependency (pip install '.[distributed]'): imported only when chosen
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_settings(settings), name="celery")
    return None
