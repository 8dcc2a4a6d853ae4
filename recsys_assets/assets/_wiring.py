"""What every asset body shares: a service's MissingInput becomes a step failure with its
message (no traceback for a missing upstream partition), and a Skipped day (the first day,
NoTrainingData, say) is left for the body to record as a skip."""

from contextlib import contextmanager

import dagster as dg

from recsys_assets.services.errors import MissingInput, Skipped


@contextmanager
def failures():
    try:
        yield
    except Skipped:
        raise
    except MissingInput as missing:
        raise dg.Failure(description=str(missing)) from missing
