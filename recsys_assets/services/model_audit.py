"""The blocking rule of a recall model, shared by its asset check (on the published model) and
by training (on the model about to be published, services/publication.py): every floating
array is finite. Checksums need no rule of their own: publish() writes them and every load
verifies them."""

from __future__ import annotations

import numpy as np

from recsys_assets.services.publication import Verdict

FINITE_CHECK = "finite_and_verified"


def non_finite_values(arrays: dict[str, np.ndarray], prefix: str = "") -> dict[str, int]:
    """{prefix + array name: number of NaN or infinite values} of the arrays that have any."""
    return {
        f"{prefix}{key}": int((~np.isfinite(array)).sum())
        for key, array in arrays.items()
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all()
    }


def finite(bad: dict[str, int]) -> Verdict:
    return Verdict(not bad, {"non_finite_values": bad})
