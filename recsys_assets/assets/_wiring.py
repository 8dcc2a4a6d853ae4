"""What every asset body shares: a service's MissingInput becomes a step failure with its
message (no traceback for a missing upstream partition), and a Skipped day (the first day,
NoTrainingData, say) is left for the body to record as a skip."""

import hashlib
import inspect
from contextlib import contextmanager
from types import ModuleType

import dagster as dg

from recsys_assets.services.errors import AuditFailed, MissingInput, Skipped


@contextmanager
def failures():
    try:
        yield
    except Skipped:
        raise
    except MissingInput as missing:
        raise dg.Failure(description=str(missing)) from missing
    except AuditFailed as refused:  # the staged output stays unpublished, with its reason
        raise dg.Failure(description=str(refused)) from refused


def code_version(*modules: ModuleType) -> str:
    """A model asset's code_version: a digest of the modules that train it, so the UI marks its
    partitions stale when that code changes (and not for an unrelated edit)."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:12]
