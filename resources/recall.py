"""Recall settings: training window, signal weights, model hyperparameters, evaluation."""

import dagster as dg
from pydantic import Field


class RecallSettings(dg.ConfigurableResource):
    window_days: int = Field(default=28, ge=1, le=3650)  # a model of day D trains on D-window .. D-1 and is tested on D
    click_weight: float = Field(default=0.25, ge=0.0, le=1.0)  # signal of a click that did not become a positive
    seed: int = 42
    k_eval: list[int] = [10, 20, 50, 100, 200]
    light_user_max_positives: int = Field(
        default=4, ge=0
    )  # segments: cold = 0 training positives, light <= this, heavy above
    bootstrap_samples: int = Field(default=500, ge=10, le=100000)
    # Hyperparameters: ALS, implicit BPR and numpy BPR picked by small grids on the synthetic default
    # data (day 8 after 7 days, NDCG@10; `benchmarks/bench_recall.py --tune` reruns the BPR grids;
    # see benchmarks/RESULTS.md and docs/evaluation.md); the rest are the models' defaults.
    # implicit BPR scores with the log-popularity correction (BPRModel.popularity_correction = 1).
    popularity_half_life_days: float = 7.0
    item_cf_neighbours: int = 100
    item_cf_shrinkage: float = 10.0
    item_cf_half_life_days: float = 14.0
    als_factors: int = Field(default=64, ge=1, le=4096)
    als_regularization: float = 30.0
    als_iterations: int = Field(default=15, ge=1, le=1000)
    als_alpha: float = Field(default=2.0, ge=0.0)
    bpr_factors: int = Field(default=128, ge=1, le=4096)
    bpr_learning_rate: float = 0.01
    bpr_regularization: float = 0.01
    bpr_iterations: int = Field(default=100, ge=1, le=100000)
    # implicit's BPR is hogwild SGD: with more than one thread two fits of the same seed differ
    # (and so do the evaluation, the champion decision and the candidates downstream). 1 keeps
    # every re-run bit-identical (tests/test_reliability.py); 0 = all cores, faster, not reproducible.
    bpr_num_threads: int = 1
    # implicit samples negatives by item frequency; scoring adds beta * log(1 + popularity) back
    bpr_popularity_correction: float = 1.0
    # numpy BPR: bpr_uniform (uniform negatives) with these...
    numpy_bpr_factors: int = 128
    numpy_bpr_learning_rate: float = 0.05
    numpy_bpr_regularization: float = 0.01
    numpy_bpr_epochs: int = 60
    # ...and bpr_impressions (a share of hard negatives) with its own day-8 best: hard negatives
    # overfit sooner, 128 factors / 60 epochs drop it from 0.1449 to 0.1266 on day 8. Run both
    # with identical params for the like-for-like comparison (benchmarks/RESULTS.md has both).
    impression_bpr_factors: int = 64
    impression_bpr_epochs: int = 30
    impression_bpr_hard_ratio: float = 0.3  # share of negatives drawn from shown-but-not-chosen items
    ease_lambda: float = 500.0
    ease_max_items: int = Field(default=20000, ge=1)
    # EASE's session kernel: items one user chose within ~tau seconds of each other count as more
    # alike (0 = off, plain EASE). On MovieLens-100K's random split it lifts EASE's NDCG@10 from
    # 0.487 to 0.498 (weight 2, tau 180), on its temporal split it does not help (docs/evaluation.md).
    # Off by default: the synthetic generator's requests are independent draws (no sessions), and
    # there it moves EASE by -1% to +2%, within noise.
    ease_session_weight: float = Field(default=0.0, ge=0.0)
    ease_session_tau_seconds: float = Field(default=600.0, gt=0.0)
    content_tag_weight: float = 0.5
    candidates_k: int = Field(default=200, ge=1, le=100000)  # recall_candidates: fused top-K per user
    # Scale knobs. Recall channels trained, evaluated and fused (a channel left out is skipped
    # with a logged reason); which fusions recall_candidates stores; how many users it scores at
    # once (memory ~ users × catalog × 4 bytes per channel inside a batch of 1024, plus the
    # batch's fused lists); and, if set, only users with a positive in the last N days of the
    # window get candidates (None: every user with a training positive).
    channels: list[str] = ["popularity", "item_cf", "als", "bpr", "bpr_uniform", "bpr_impressions", "ease", "content"]
    candidate_methods: list[str] = ["rrf", "weighted"]
    candidates_batch_users: int = Field(default=20000, ge=1)
    candidates_recent_days: int | None = Field(default=None, ge=1)
    # Champion selection and promotion gate.
    champion_metric: str = "ndcg@10"
    min_lift_over_popularity: float = Field(
        default=0.0, ge=0.0
    )  # a learned model must beat popularity by this relative margin
    # A candidate replaces the serving champion unless it is worse than it, on the same day and
    # users, by more than this relative tolerance.
    promotion_tolerance: float = Field(default=0.02, ge=0.0, le=1.0)
