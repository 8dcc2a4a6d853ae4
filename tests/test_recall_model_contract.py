"""The contract every registered recall model keeps, checked for each one of registry.REGISTRY
(and for a toy model defined and registered here, to show that a new model needs nothing else):
it fits a small synthetic TrainingData and scores every user over the whole catalog with
finite float32 scores; recommend() leaves out the excluded and blocked items and pads with
-1 / -inf when fewer than k items are left; save + load_model gives the same model back; its
params are the registry's defaults; its config refuses a field it does not know."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from pydantic import BaseModel, Field, ValidationError

from recsys_assets.core.recall import registry
from recsys_assets.core.recall.base import RecallConfig, RecallModel, TrainingData
from recsys_assets.core.recall.models import MODELS, load_model
from recsys_assets.core.recall.registry import ModelSpec, register
from resources import RecallSettings

N_USERS, N_ITEMS, N_GENRES, N_TAGS = 40, 30, 3, 5
K = 10
# A model that cannot run on this tiny data with its defaults may get overrides here (the
# contract is checked with them; the defaults are still checked by test_params_are_the_registry_defaults).
FIT_OVERRIDES: dict[str, dict] = {}


# --------------------------------------------------------------------------------------------
# a toy model: its file would hold just this class and its config
# --------------------------------------------------------------------------------------------
class ReversePopularityConfig(RecallConfig):
    weight: float = Field(default=1.0, gt=0.0)  # scale of the (negated) popularity


class ReversePopularityModel(RecallModel):
    """Recommends the least chosen items first: score = -weight × positives per item."""

    name = "toy"
    config = ReversePopularityConfig
    personal = False

    def __init__(self, **params):
        super().__init__(**params)
        self.item_scores: np.ndarray | None = None

    def fit(self, data: TrainingData, seed: int = 0) -> ReversePopularityModel:
        counts = np.asarray((data.positives > 0).sum(axis=0), dtype=np.float64).ravel()
        self.item_scores = (-float(self.params["weight"]) * counts).astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, np.int64).reshape(-1)
        return np.broadcast_to(self.item_scores, (len(users), len(self.item_scores))).copy()

    def arrays(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_scores = np.asarray(arrays["item_scores"], dtype=np.float32)


@pytest.fixture
def toy_registered():
    spec = register(
        ModelSpec(
            name="toy",
            model=ReversePopularityModel,
            config=ReversePopularityConfig,
            learned=True,
            description="Reverse popularity: the least chosen items first (a test model).",
        )
    )
    yield spec
    registry.REGISTRY.pop("toy")


# --------------------------------------------------------------------------------------------
# data and models
# --------------------------------------------------------------------------------------------
def synthetic_data(seed: int = 0) -> TrainingData:
    """40 users × 30 items: users prefer the items of one of 3 genres, a few chose nothing
    (users 0 and 1: cold); every matrix TrainingData can hold is filled, ages included."""
    rng = np.random.default_rng(seed)
    item_genre = np.arange(N_ITEMS) % N_GENRES
    rows, cols = [], []
    for u in range(2, N_USERS):
        own = np.flatnonzero(item_genre == u % N_GENRES)
        liked = rng.choice(own, size=int(rng.integers(3, 8)), replace=False)
        other = rng.choice(N_ITEMS, size=int(rng.integers(0, 3)), replace=False)
        items = np.unique(np.concatenate([liked, other]))
        rows += [u] * len(items)
        cols += list(items)
    rows, cols = np.array(rows), np.array(cols)
    shape = (N_USERS, N_ITEMS)

    def on_positives(values):
        return sp.csr_matrix((values.astype(np.float32), (rows, cols)), shape=shape)

    positives = on_positives(rng.uniform(0.3, 1.0, len(rows)))
    shown = sp.random(N_USERS, N_ITEMS, density=0.2, random_state=seed, format="csr", dtype=np.float32)
    shown.data[:] = 1.0
    genres = sp.csr_matrix((np.ones(N_ITEMS, np.float32), (np.arange(N_ITEMS), item_genre)), shape=(N_ITEMS, N_GENRES))
    tags = sp.csr_matrix(
        (np.ones(N_ITEMS, np.float32), (np.arange(N_ITEMS), np.arange(N_ITEMS) % N_TAGS)), shape=(N_ITEMS, N_TAGS)
    )
    return TrainingData(
        positives=positives,
        shown_negatives=shown,
        days_ago=on_positives(rng.uniform(0, 20, len(rows))),
        item_genres=genres,
        item_tags=tags,
        genre_names=[f"g{g}" for g in range(N_GENRES)],
        seconds_ago=on_positives(rng.uniform(0, 20 * 86400, len(rows))),
    )


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return synthetic_data()


@pytest.fixture(params=[*registry.REGISTRY, "toy"])
def spec(request) -> ModelSpec:
    """Every registered model, and the toy model registered for the test."""
    if request.param == "toy":
        request.getfixturevalue("toy_registered")
    return registry.REGISTRY[request.param]


def fitted(spec: ModelSpec, data: TrainingData) -> RecallModel:
    return spec.model(**registry.params(spec.name, FIT_OVERRIDES.get(spec.name))).fit(data, seed=0)


def check_fit_and_score(spec: ModelSpec, data: TrainingData) -> None:
    model = fitted(spec, data)
    scores = model.score(np.arange(N_USERS))
    assert scores.shape == (N_USERS, N_ITEMS) and scores.dtype == np.float32, spec.name
    assert np.isfinite(scores).all(), spec.name


def check_recommend_leaves_out_excluded_and_blocked(spec: ModelSpec, data: TrainingData) -> None:
    model = fitted(spec, data)
    users = np.arange(N_USERS)
    exclude = (data.positives > 0).astype(np.float32).tocsr()
    blocked = np.array([0, 7, 11])
    items, scores = model.recommend(users, K, exclude=exclude, blocked_items=blocked)
    assert items.shape == scores.shape == (N_USERS, K), spec.name
    listed = items >= 0
    assert listed.all(), spec.name  # >= K items are left for every user here
    assert not np.isin(items, blocked).any(), spec.name
    assert not np.asarray(exclude[np.repeat(users, K), items.ravel()]).any(), spec.name
    assert np.isfinite(scores).all() and (np.diff(scores, axis=1) <= 0).all(), spec.name
    assert all(len(set(row)) == K for row in items.tolist()), spec.name
    np.testing.assert_allclose(scores, np.take_along_axis(model.score(users), items, axis=1), rtol=1e-5, atol=1e-5)


def check_recommend_pads_when_fewer_than_k_items_are_left(spec: ModelSpec, data: TrainingData) -> None:
    model = fitted(spec, data)
    users = np.arange(N_USERS)
    open_items = np.array([2, 3, 5, 8, 13])  # everything else is blocked
    blocked = np.setdiff1d(np.arange(N_ITEMS), open_items)
    exclude = sp.csr_matrix((np.ones(N_USERS, np.float32), (users, open_items[users % 5])), shape=(N_USERS, N_ITEMS))
    items, scores = model.recommend(users, K, exclude=exclude, blocked_items=blocked)
    assert items.shape == scores.shape == (N_USERS, K), spec.name
    listed = items >= 0
    assert np.array_equal(listed, np.isfinite(scores)), spec.name  # -1 exactly where -inf
    assert (items[~listed] == -1).all() and (scores[~listed] == -np.inf).all(), spec.name
    assert (listed.sum(axis=1) <= 4).all() and not listed[:, 4:].any(), spec.name  # padding at the end
    for u in users:
        row = items[u][listed[u]]
        assert set(row) <= set(open_items) - {open_items[u % 5]}, (spec.name, u, row)


def check_save_load_round_trip(spec: ModelSpec, data: TrainingData, tmp_path) -> None:
    model = fitted(spec, data)
    model.save(tmp_path / spec.name)
    meta = json.loads((tmp_path / spec.name / "params.json").read_text())
    assert meta == {"model": spec.name, "params": model.params}
    for path in (tmp_path / spec.name).glob("*.npy"):
        np.load(path, allow_pickle=False)
    loaded = load_model(tmp_path / spec.name)
    assert type(loaded) is spec.model
    assert list(loaded.params.items()) == list(model.params.items())  # same keys, order and values
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    assert loaded.recommend(users, K)[0].tolist() == model.recommend(users, K)[0].tolist()


def check_params_are_the_registry_defaults(spec: ModelSpec) -> None:
    defaults = registry.params(spec.name)
    assert list(spec.model().params.items()) == list(defaults.items()), spec.name
    assert list(defaults) == list(spec.config.model_fields), spec.name  # the config's field order
    assert RecallSettings().model_params(spec.name) == defaults
    assert spec.model(**defaults).params == defaults
    json.dumps(defaults)  # params.json holds them


def check_config_refuses_an_unknown_field(spec: ModelSpec) -> None:
    with pytest.raises(ValidationError):
        spec.config(no_such_param=1)
    with pytest.raises(ValueError, match=rf"recall model '{spec.name}': unknown parameter 'no_such_param'"):
        spec.model(no_such_param=1)
    with pytest.raises(ValueError, match=rf"recall model '{spec.name}': unknown parameter 'no_such_param'"):
        RecallSettings(models={spec.name: {"no_such_param": 1}})
    config = spec.config()
    field = next(iter(spec.config.model_fields))
    with pytest.raises(ValidationError):  # frozen
        setattr(config, field, getattr(config, field))


# --------------------------------------------------------------------------------------------
# the contract, for every model
# --------------------------------------------------------------------------------------------
def test_fit_scores_every_user_over_the_catalog(spec, data):
    check_fit_and_score(spec, data)


def test_recommend_leaves_out_excluded_and_blocked_items(spec, data):
    check_recommend_leaves_out_excluded_and_blocked(spec, data)


def test_recommend_pads_with_minus_one_when_fewer_than_k_items_are_left(spec, data):
    check_recommend_pads_when_fewer_than_k_items_are_left(spec, data)


def test_save_load_model_round_trip(spec, data, tmp_path):
    check_save_load_round_trip(spec, data, tmp_path)


def test_params_are_the_registry_defaults(spec):
    check_params_are_the_registry_defaults(spec)


def test_config_refuses_an_unknown_field(spec):
    check_config_refuses_an_unknown_field(spec)


# --------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------
def test_registry_lists_the_channels_in_order():
    assert list(registry.REGISTRY) == [
        "popularity",
        "recent_popularity",
        "item_cf",
        "als",
        "bpr",
        "bpr_uniform",
        "bpr_impressions",
        "ease",
        "content",
    ]
    assert registry.LEARNED == ("item_cf", "als", "bpr", "bpr_uniform", "bpr_impressions", "ease")
    assert [n for n, s in registry.REGISTRY.items() if s.needs_shown] == ["bpr_impressions"]
    assert [n for n, s in registry.REGISTRY.items() if "implicit" in s.kinds] == ["als", "bpr"]
    assert dict(MODELS) == {n: s.model for n, s in registry.REGISTRY.items()}
    assert RecallSettings().channels == list(registry.REGISTRY)


def test_the_defaults_are_the_values_the_platform_trained_with():
    """The configs' defaults are what RecallSettings' per-model fields held: they produced every
    recorded number, and params.json (hashed into published model versions) is built from them."""
    assert {name: registry.params(name) for name in registry.REGISTRY} == {
        "popularity": {"half_life_days": 7.0},
        "recent_popularity": {"half_life_days": 7.0},
        "item_cf": {
            "neighbours": 100,
            "shrinkage": 10.0,
            "half_life_days": 14.0,
            "block_items": 2048,
            "session_weight": 0.0,
            "session_tau_seconds": 600.0,
        },
        "als": {
            "factors": 64,
            "regularization": 30.0,
            "iterations": 15,
            "alpha": 2.0,
            "num_threads": 0,
            "use_cg": True,
        },
        "bpr": {
            "factors": 128,
            "learning_rate": 0.01,
            "regularization": 0.01,
            "iterations": 100,
            "max_samples": 200_000_000,
            "num_threads": 1,
            "fold_in_epochs": 30,
            "fold_in_learning_rate": None,
            "popularity_correction": 1.0,
        },
        "bpr_uniform": {
            "factors": 128,
            "learning_rate": 0.05,
            "regularization": 0.01,
            "epochs": 60,
            "batch_size": 4096,
            "hard_ratio": 0.0,
        },
        "bpr_impressions": {
            "factors": 64,
            "learning_rate": 0.05,
            "regularization": 0.01,
            "epochs": 30,
            "batch_size": 4096,
            "hard_ratio": 0.3,
        },
        "ease": {"lambda_": 500.0, "max_items": 10000, "session_weight": 0.0, "session_tau_seconds": 600.0},
        "content": {"tag_weight": 0.5, "max_dims": 128},
    }


def test_settings_overrides_are_validated_and_typed():
    settings = RecallSettings(models={"ease": {"session_weight": 2, "session_tau_seconds": 300}, "als": {"factors": 8}})
    ease = settings.model_params("ease")
    assert ease == {"lambda_": 500.0, "max_items": 10000, "session_weight": 2.0, "session_tau_seconds": 300.0}
    assert all(type(ease[k]) is float for k in ("lambda_", "session_weight", "session_tau_seconds"))
    assert settings.model_params("als")["factors"] == 8 and settings.model_params("bpr") == registry.params("bpr")
    with pytest.raises(ValueError, match=r"unknown recall model 'nope'"):
        RecallSettings(models={"nope": {}})
    with pytest.raises(ValueError, match=r"recall model 'als': factors: Input should be greater than or equal to 1"):
        RecallSettings(models={"als": {"factors": 0}})
    with pytest.raises(ValueError, match=r"recall model 'ease': session_tau_seconds: Input should be greater than 0"):
        RecallSettings(models={"ease": {"session_tau_seconds": 0}})
    with pytest.raises(ValueError, match=r"recall model 'bpr_uniform': hard_ratio"):
        RecallSettings(models={"bpr_uniform": {"hard_ratio": 0.3}})
    with pytest.raises(ValueError, match=r"unknown recall model 'nope'"):
        registry.params("nope")


def test_register_refuses_a_taken_name_and_an_inconsistent_spec(toy_registered):
    class Toy2(ReversePopularityModel):
        name = "toy2"

    class LaxConfig(BaseModel):  # accepts unknown fields
        weight: float = 1.0

    class LaxToy(ReversePopularityModel):
        name = "lax"
        config = LaxConfig

    def spec(name: str, model: type[RecallModel], config: type[BaseModel]) -> ModelSpec:
        return ModelSpec(name=name, model=model, config=config, learned=False, description="a test model")

    with pytest.raises(ValueError, match="'toy' is already registered"):
        register(spec("toy", ReversePopularityModel, ReversePopularityConfig))
    with pytest.raises(ValueError, match="ReversePopularityModel.name is 'toy', registered as 'toy2'"):
        register(spec("toy2", ReversePopularityModel, ReversePopularityConfig))
    with pytest.raises(ValueError, match="Toy2.config is not EASEConfig"):
        register(spec("toy2", Toy2, registry.REGISTRY["ease"].config))
    with pytest.raises(ValueError, match="LaxConfig must refuse unknown fields"):
        register(spec("lax", LaxToy, LaxConfig))
    assert list(registry.REGISTRY)[-1] == "toy" and not {"toy2", "lax"} & set(registry.REGISTRY)


# --------------------------------------------------------------------------------------------
# a new model: its file and one registration line
# --------------------------------------------------------------------------------------------
def test_a_new_model_needs_only_its_file_and_one_registration_line(toy_registered, data, tmp_path):
    """With the toy model registered (the toy_registered fixture: one register(ModelSpec(...))
    call) and nothing else edited, the platform knows it: it is a default channel and a learned
    one, its settings overrides are validated, load_model finds its class, it keeps the model
    contract, and the Dagster asset factory trains and publishes it on a small generated world."""
    import dagster as dg

    from recsys_assets.core.generator import GeneratorConfig, generate
    from recsys_assets.definitions import build_defs, build_resources
    from recsys_assets.quickstart import materialize_all

    assert RecallSettings().channels == list(registry.REGISTRY) and registry.REGISTRY["toy"] is toy_registered
    assert RecallSettings().channels[-1] == "toy" and "toy" in registry.learned()
    assert MODELS["toy"] is ReversePopularityModel
    settings = RecallSettings(models={"toy": {"weight": 2}})
    assert settings.model_params("toy") == {"weight": 2.0}
    with pytest.raises(ValueError, match=r"recall model 'toy': weight: Input should be greater than 0"):
        RecallSettings(models={"toy": {"weight": -1.0}})

    spec = registry.REGISTRY["toy"]
    check_fit_and_score(spec, data)
    check_recommend_leaves_out_excluded_and_blocked(spec, data)
    check_recommend_pads_when_fewer_than_k_items_are_left(spec, data)
    check_save_load_round_trip(spec, data, tmp_path)
    check_params_are_the_registry_defaults(spec)
    check_config_refuses_an_unknown_field(spec)

    # the asset factory: recall_toy of the second day, trained on the first, published and loadable
    root = tmp_path / "world"
    config = GeneratorConfig(n_users=80, n_items=50, days=2, impressions_per_day=1_500, seed=3)
    generate(config, root)
    days = [d.isoformat() for d in config.dates]
    materialize_all(
        build_defs(resources=build_resources(str(root))), days, dg.DagsterInstance.ephemeral(), model_days=0
    )
    resources = build_resources(str(root), recall=settings)
    asset = build_defs(resources=resources).get_assets_def("recall_toy")
    assert asset.key == dg.AssetKey("recall_toy") and "Reverse popularity" in asset.specs_by_key[asset.key].description
    result = dg.materialize([asset], partition_key=days[-1], resources=resources)
    assert result.success
    store = resources["model_store"]
    manifest = store.verify("recall_toy", days[-1])
    assert manifest["metadata"]["params"] == {"weight": 2.0} and manifest["metadata"]["train_days"] == [
        days[0],
        days[0],
    ]
    model = load_model(store.path("recall_toy", days[-1]))
    assert isinstance(model, ReversePopularityModel) and model.params == {"weight": 2.0}
    assert np.isfinite(model.item_scores).all() and model.item_scores.max() <= 0 < -model.item_scores.min()
