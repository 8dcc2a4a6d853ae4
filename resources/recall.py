"""Recall settings: training window, signal weights, model hyperparameters, evaluation."""

from typing import Any

import dagster as dg
from pydantic import Field, field_validator

from recsys_assets.core.recall import registry


class RecallSettings(dg.ConfigurableResource):
    window_days: int = Field(default=28, ge=1, le=3650)  # a model of day D trains on D-window .. D-1 and is tested on D
    click_weight: float = Field(default=0.25, ge=0.0, le=1.0)  # signal of a click that did not become a positive
    seed: int = 42
    k_eval: list[int] = [10, 20, 50, 100, 200]
    light_user_max_positives: int = Field(
        default=4, ge=0
    )  # segments: cold = 0 training positives, light <= this, heavy above
    bootstrap_samples: int = Field(default=500, ge=10, le=100000)
    # Model hyperparameters: per-model overrides of the defaults in the recall model registry
    # (recsys_assets/core/recall/registry.py; each model's typed config, with its defaults and why
    # they were chosen, sits next to its class in core/recall/models.py), e.g.
    # models={"ease": {"session_weight": 2.0, "session_tau_seconds": 300}}. An unknown model or
    # parameter, or a value out of its bounds, is refused when the settings are built.
    models: dict[str, dict[str, Any]] = {}
    candidates_k: int = Field(default=200, ge=1, le=100000)  # recall_candidates: fused top-K per user
    # Scale knobs. Recall channels trained, evaluated and fused (a channel left out is skipped
    # with a logged reason); which fusions recall_candidates stores; how many users it scores at
    # once (memory ~ users × catalog × 4 bytes per channel inside a batch of 1024, plus the
    # batch's fused lists); and, if set, only users with a positive in the last N days of the
    # window get candidates (None: every user with a training positive).
    channels: list[str] = Field(default_factory=lambda: list(registry.REGISTRY))  # default: every registered model
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

    @field_validator("models")
    @classmethod
    def _registered_models_and_params(cls, models: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, overrides in models.items():
            registry.params(name, overrides)  # a ValueError naming the model and the field
        return models

    def model_params(self, name: str) -> dict:
        """The keyword params of recall model `name`: the registry's defaults with this name's
        overrides from `models`, validated, in the model config's field order."""
        return registry.params(name, self.models.get(name))
