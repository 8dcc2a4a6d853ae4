"""Feature-layer settings: labels, smoothing, sequence length, dictionaries, drift thresholds."""

import dagster as dg


class FeatureSettings(dg.ConfigurableResource):
    # A watch at least this complete is a positive; a like is one too when like_is_positive.
    min_pos_completion: float = 0.6
    like_is_positive: bool = True
    # Beta prior of the smoothed CTR: (clicks + prior_clicks) / (impressions + prior_impressions).
    ctr_prior_clicks: float = 1.0
    ctr_prior_impressions: float = 20.0
    sequence_length: int = 50
    # Hash dictionaries: a value seen this often gets its own index; the rest share OOV buckets.
    hash_min_count: int = 5
    hash_oov_buckets: int = 16
    # Drift: day D against the pooled days D-reference_days .. D-1.
    drift_reference_days: int = 7
    drift_warn_psi: float = 0.1
    drift_fail_psi: float = 0.25
    # Numeric PSI uses at most 10 quantile bins and at least this many samples per bin.
    drift_samples_per_bin: int = 100
