"""The recall model registry: every recall channel, its model class, its typed config and how
the platform runs it, in channel order. Plain Python (no Dagster).

A model is its class and its config (a RecallConfig whose defaults are the values the platform
trains with) plus one `register(ModelSpec(...))` line: the Dagster asset `recall_<name>`, the
default RecallSettings.channels, the settings' per-model overrides (RecallSettings.models),
load_model and the champion's candidates (LEARNED) all come from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from . import models as m
from .base import RecallModel, validated_params


@dataclass(frozen=True)
class Range:
    """A hyper-parameter's search range for recall_tuning: [low, high], on a log scale or not,
    integers or floats."""

    low: float
    high: float
    log: bool = False
    integer: bool = False


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One recall channel.

    name:        channel name = the model class's `name` = the `model` of its saved params.json.
    model:       the RecallModel subclass; its __init__ validates through `config`.
    config:      the typed hyperparameters (pydantic, unknown fields refused, defaults = what runs).
    learned:     competes for champion (must beat popularity); False for the popularity baselines
                 and the content cold-start channel.
    needs_shown: trains on shown-but-not-chosen impressions (TrainingData.shown_negatives).
    impressions_only: trained only where the source logs impressions (it needs them, or it is
                 the baseline of a model that does); a ratings source leaves it out of its channels.
    kinds:       the Dagster asset's kinds (the libraries it runs on).
    description: one sentence for the asset catalog.
    search_space: the hyper-parameters recall_tuning may search, with their ranges (empty: the
                 model is not tunable); every name must be a field of `config`.
    """

    name: str
    model: type[RecallModel]
    config: type[BaseModel]
    learned: bool
    needs_shown: bool = False
    impressions_only: bool = False
    kinds: tuple[str, ...] = ("numpy", "scipy")
    description: str
    search_space: dict[str, Range] = field(default_factory=dict)


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a recall channel (after the ones already registered). Refuses a name taken, a model
    class whose `name` or `config` is not the spec's, and a config that accepts unknown fields."""
    if spec.name in REGISTRY:
        raise ValueError(f"recall model {spec.name!r} is already registered ({REGISTRY[spec.name].model.__name__})")
    if spec.model.name != spec.name:
        raise ValueError(f"{spec.model.__name__}.name is {spec.model.name!r}, registered as {spec.name!r}")
    if spec.model.config is not spec.config:
        raise ValueError(f"{spec.model.__name__}.config is not {spec.config.__name__}: the class must validate with it")
    if spec.config.model_config.get("extra") != "forbid":
        raise ValueError(f"{spec.config.__name__} must refuse unknown fields (model_config extra='forbid')")
    unknown = set(spec.search_space) - set(spec.config.model_fields)
    if unknown:
        raise ValueError(f"search_space of {spec.name!r} names {sorted(unknown)}, not fields of {spec.config.__name__}")
    REGISTRY[spec.name] = spec
    return spec


def spec(name: str) -> ModelSpec:
    """The registered spec of `name`; a ValueError naming the registered ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown recall model {name!r}; registered: {', '.join(REGISTRY)}") from None


def params(name: str, overrides: dict | None = None) -> dict:
    """The keyword params of model `name`: its config's defaults with `overrides` applied,
    validated, in the config's field order (exactly the model's self.params). An unknown model,
    an unknown parameter or a value out of range raises a ValueError naming the model and field."""
    return validated_params(spec(name).config, dict(overrides or {}), f"recall model {name!r}")


def learned() -> tuple[str, ...]:
    """The registered channels that compete for champion, in channel order."""
    return tuple(name for name, s in REGISTRY.items() if s.learned)


# --------------------------------------------------------------------------------------------
# the built-in channels, in channel order
# --------------------------------------------------------------------------------------------
IMPLICIT = ("numpy", "scipy", "implicit")

register(
    ModelSpec(
        name="popularity",
        model=m.PopularityModel,
        config=m.PopularityConfig,
        learned=False,
        description="Popularity baseline: positives per item with a time decay, the same list for everyone.",
    )
)
register(
    ModelSpec(
        name="recent_popularity",
        model=m.RecentPopularityModel,
        config=m.RecentPopularityConfig,
        learned=False,
        description="Recency-weighted popularity: positives per item, each weighted 0.5 ** (age in days / "
        "half_life_days), the same list for everyone; what users without a history are served.",
    )
)
register(
    ModelSpec(
        name="item_cf",
        model=m.ItemCFModel,
        config=m.ItemCFConfig,
        learned=True,
        description="Item-based collaborative filtering: cosine with shrinkage over time-decayed positives.",
        search_space={"neighbours": Range(20, 400, log=True, integer=True), "shrinkage": Range(0.0, 100.0)},
    )
)
register(
    ModelSpec(
        name="als",
        model=m.ALSModel,
        config=m.ALSConfig,
        learned=True,
        kinds=IMPLICIT,
        description="Implicit-feedback matrix factorisation (ALS, implicit's solver).",
        search_space={
            "factors": Range(16, 128, log=True, integer=True),
            "regularization": Range(0.5, 200.0, log=True),
            "alpha": Range(0.5, 20.0, log=True),
        },
    )
)
register(
    ModelSpec(
        name="bpr",
        model=m.BPRModel,
        config=m.BPRConfig,
        learned=True,
        kinds=IMPLICIT,
        description="Bayesian personalised ranking (implicit's BPR) with the log-popularity correction.",
        search_space={
            "learning_rate": Range(0.002, 0.05, log=True),
            "regularization": Range(0.0005, 0.05, log=True),
            "popularity_correction": Range(0.0, 2.0),
        },
    )
)
register(
    ModelSpec(
        name="bpr_uniform",
        model=m.UniformBPRModel,
        config=m.UniformBPRConfig,
        learned=True,
        impressions_only=True,
        description="BPR with uniform negatives (numpy SGD): the baseline of the impression-aware BPR.",
    )
)
register(
    ModelSpec(
        name="bpr_impressions",
        model=m.ImpressionBPRModel,
        config=m.ImpressionBPRConfig,
        learned=True,
        needs_shown=True,
        impressions_only=True,
        description="BPR whose negatives are partly items shown to the user and not chosen (numpy SGD).",
    )
)
register(
    ModelSpec(
        name="ease",
        model=m.EASEModel,
        config=m.EASEConfig,
        learned=True,
        description="EASE (closed-form item-item regression), optionally with a session kernel.",
        search_space={"lambda_": Range(10.0, 5000.0, log=True)},
    )
)
register(
    ModelSpec(
        name="content",
        model=m.ContentColdStartModel,
        config=m.ContentConfig,
        learned=False,
        description="Content-based cold-start channel: genre and tag profiles, cosine to items.",
    )
)

# The built-in learned channels (a model registered later: learned()).
LEARNED: tuple[str, ...] = learned()
