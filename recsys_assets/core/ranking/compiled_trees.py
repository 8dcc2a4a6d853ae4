"""A ranker's lambdarank trees compiled to machine code (lleaves, through LLVM) for the server:
on a request's ~100 rows the compiled forest scores ~4x faster than LightGBM's predictor, and
with one tree per block it adds the trees in LightGBM's order, so the scores are the same
bits (tests/test_request_path.py). The compiled object is cached by the model's text in a
directory only this user can write (the cache is machine code the server loads)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np

from recsys_assets.core import local_cache


class CompiledTrees:
    """predict(matrix) = the booster's predict(matrix, num_iteration) for the trees compiled."""

    def __init__(self, model, n_trees: int):
        self.model, self.n_trees = model, n_trees

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        # float32 -> float64 is exact: the same thresholds compare the same values
        return self.model.predict(np.ascontiguousarray(matrix, np.float64), n_jobs=1)


# compiled rankers kept in the cache directory (one per ranker version served lately)
CACHED_RANKERS = 16


def compile_trees(model_text: str, n_trees: int, cache_dir: Path | None) -> CompiledTrees:
    """Compile LightGBM model text (its first n_trees trees) or load the cached object.
    Raises ImportError without lleaves, and whatever the compiler raises."""
    from importlib.metadata import version

    import lleaves
    import llvmlite.binding as llvm

    # the object depends on the trees, the compiler and the processor it was made for
    made_for = f"lleaves {version('lleaves')} llvmlite {version('llvmlite')} {llvm.get_host_cpu_name()} "
    key = hashlib.sha256((made_for + llvm.get_host_cpu_features().flatten() + "\n").encode())
    key.update(model_text.encode())
    name = key.hexdigest()[:32]
    cache = local_cache.private_dir(cache_dir, "compiled trees") if cache_dir is not None else None
    with tempfile.TemporaryDirectory(prefix="recsys-trees-") as scratch:
        text_path = Path(scratch) / "model.txt"
        text_path.write_text(model_text)
        model = lleaves.Model(model_file=str(text_path))
        if cache is None:
            model.compile(fblocksize=1)
            return CompiledTrees(model, n_trees)
        target = cache / f"{name}.o"
        with local_cache.locked(cache / f"{name}.lock"):  # one process compiles, the others load its object
            if not target.exists():
                partial = Path(scratch) / "model.o"
                # one tree per block: each tree added to the row's sum in turn, as LightGBM adds
                # them (a larger block sums its trees apart first: other bits, slower compiles)
                model.compile(cache=str(partial), fblocksize=1)
                _copy_into(partial, target)
            else:
                model.compile(cache=str(target))
                local_cache.touch(target)
        local_cache.prune(cache, ".o", CACHED_RANKERS)
        return CompiledTrees(model, n_trees)


def _copy_into(source: Path, target: Path) -> None:
    """Copy into the cache under a partial name, then rename in place."""
    partial = local_cache.partial_path(target)
    partial.write_bytes(source.read_bytes())
    local_cache.publish(partial, target)
