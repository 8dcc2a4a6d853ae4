"""MovieLens-100K's held-out period as benchmarks/bench_history_protocol.py's plain side splits
it: the adapter's cut, the test users the platform reported (benchmarks/RESULTS.md), and the
validation measurement behind recent_popularity's default half-life. Skips in a clone without
../shared (the dataset cannot be redistributed). The platform side (the quickstart, ~4 min) is
not re-run here."""

import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_history_protocol as bench  # noqa: E402

from recsys_assets import adapt  # noqa: E402
from recsys_assets.core.recall import registry  # noqa: E402
from recsys_assets.core.recall.base import TrainingData  # noqa: E402
from recsys_assets.core.recall.models import RecentPopularityModel  # noqa: E402
from recsys_assets.settings import Settings  # noqa: E402

pytestmark = pytest.mark.realdata  # MovieLens-100K from ../shared/data


@pytest.fixture(scope="module")
def ratings() -> tuple[np.ndarray, np.ndarray]:
    path = bench.SHARED / "data/ml-100k/u.data"
    if not path.exists():
        pytest.skip(f"{path} is absent: the real datasets live only in the project's shared folder, not in a clone")
    rows = np.loadtxt(path, dtype=np.int64, ndmin=2)
    return rows, bench.utc_day(rows[:, 3])


def test_the_adapter_holds_out_the_last_fifth_from_1998_03_07(tmp_path):
    source = bench.SHARED / "data/ml-100k"
    if not source.exists():
        pytest.skip(f"{source} is absent")
    adapt.prepare_source("movielens", source, tmp_path / "root")
    settings = Settings.load(data_root=str(tmp_path / "root"))
    assert (settings.history_start, settings.start_date, settings.evaluation_start) == (
        "1997-09-20",
        "1998-03-06",
        "1998-03-07",
    )


def test_the_plain_split_has_the_platforms_test_users(ratings):
    rows, days = ratings
    split = bench.Split(rows, days, date(1998, 3, 7).toordinal())
    # holdout_evaluation on the quickstart's data root: 96 warm, 194 cold, 11,316 positives
    assert (int(split.warm.sum()), int((~split.warm).sum()), int(split.relevant.sum())) == (96, 194, 11_316)
    assert (split.consumed[split.users].multiply(split.relevant)).nnz == 0  # consumed is never relevant


def test_recent_popularitys_default_half_life_is_the_validation_peak(ratings):
    """The last 20% (by time) of the ratings before the held-out period, never the period itself:
    7 days is the peak over all validation users, as RecentPopularityConfig's comment records;
    the platform's model scores items exactly as the plain formula does."""
    rows, days = ratings
    start = date(1998, 3, 7).toordinal()
    val_start = bench.utc_day(np.quantile(rows[days < start, 3], 0.8, method="inverted_cdf")[None])[0]
    assert date.fromordinal(val_start).isoformat() == "1998-01-24"
    val = bench.Split(rows, days, val_start, start - 1)
    grid = {h: val.evaluate(bench.popularity(val.ages, h))["ndcg"].mean() for h in bench.HALF_LIVES}
    assert max(grid, key=grid.get) == 7 == registry.params("recent_popularity")["half_life_days"]
    assert grid[7] == pytest.approx(0.3051, abs=5e-5) and grid[None] == pytest.approx(0.2531, abs=5e-5)
    shape = val.train.shape
    data = TrainingData(
        positives=val.train.astype(np.float32),
        shown_negatives=sp.csr_matrix(shape, dtype=np.float32),
        days_ago=val.ages.astype(np.float32),
        item_genres=sp.csr_matrix((shape[1], 0), dtype=np.float32),
        item_tags=sp.csr_matrix((shape[1], 0), dtype=np.float32),
    )
    platform = RecentPopularityModel().fit(data).score(np.zeros(1, np.int64))[0]
    np.testing.assert_allclose(platform, bench.popularity(val.ages, 7), rtol=1e-5)
