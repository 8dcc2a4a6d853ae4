"""Feature-layer settings: labels, smoothing, sequence length, dictionaries, drift thresholds."""

import dagster as dg
from pydantic import Field


class FeatureSettings(dg.ConfigurableResource):
    # A watch at least this complete is a positive; a like is one too when like_is_positive.
    min_pos_completion: float = Field(default=0.6, ge=0.0, le=1.0)
    like_is_positive: bool = True
    # Beta prior of the smoothed CTR: (clicks + prior_clicks) / (impressions + prior_impressions).
    ctr_prior_clicks: float = Field(default=1.0, ge=0.0)
    ctr_prior_impressions: float = Field(default=20.0, ge=0.0)
    sequence_length: int = Field(default=50, ge=1, le=10000)
    # Hash dictionaries: a value seen this often gets its own index; the rest share OOV buckets.
    hash_min_count: int = Field(default=5, ge=1)
    hash_oov_buckets: int = Field(default=16, ge=1, le=1048576)
    # Drift: day D against the pooled days D-reference_days .. D-1.
    drift_reference_days: int = Field(default=7, ge=1, le=365)
    drift_warn_psi: float = Field(default=0.1, ge=0.0)
    drift_fail_psi: float = Field(default=0.25, ge=0.0)
    # Numeric PSI uses at most 10 quantile bins and at least this many samples per bin.
    drift_samples_per_bin: int = Field(default=100, ge=1)
