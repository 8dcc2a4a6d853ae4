"""Every asset the UI shows can be read by a person: a description, a group, at least one
kind, an owner and a layer tag whose owner is the layer's team (recsys_assets/assets/ownership.py).
Covers every asset in the one Definitions object, so a new asset that forgets them fails here."""

import dagster as dg
import pytest

from recsys_assets.assets import ownership
from recsys_assets.definitions import LAYERS, build_defs
from recsys_assets.partitions import daily_partitions
from recsys_assets.settings import Settings

SPECS = sorted(build_defs(Settings()).resolve_all_asset_specs(), key=lambda s: s.key.to_user_string())


def catalog_problems(spec: dg.AssetSpec) -> list[str]:
    problems = []
    if not spec.description or len(spec.description.strip()) < 20:
        problems.append("no real description")
    if not spec.group_name or spec.group_name == "default":
        problems.append("no group")
    if not spec.kinds:
        problems.append("no kind (kinds={...} in the decorator)")
    if not spec.owners:
        problems.append("no owner (add **ownership.layer(...) to the decorator)")
    layer = spec.tags.get(ownership.LAYER_TAG)
    if layer not in ownership.LAYER_OWNERS:
        problems.append(f"layer tag {layer!r} is not one of {sorted(ownership.LAYER_OWNERS)}")
    elif ownership.LAYER_OWNERS[layer] not in spec.owners:
        problems.append(f"layer {layer} is owned by {ownership.LAYER_OWNERS[layer]}, not {spec.owners}")
    return problems


def test_the_catalog_covers_every_layer():
    keys = {s.key.to_user_string() for s in SPECS}
    assert {
        "raw_impressions",
        "raw_items",
        "interactions",
        "hash_dictionaries",
        "feature_drift_report",
        "recall_als",
        "recall_evaluation",
        "recall_champion",
        "recall_candidates",
        "recall_ann_index",
    } <= keys
    layers = {s.tags.get(ownership.LAYER_TAG) for s in SPECS}
    assert {"raw", "features", "dictionaries", "drift", "recall", "evaluation", "serving"} <= layers


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key.to_user_string())
def test_every_asset_has_description_group_kind_owner_and_layer(spec: dg.AssetSpec):
    assert catalog_problems(spec) == [], spec.key.to_user_string()


def test_an_asset_that_forgets_its_ownership_is_caught():
    bare = dg.AssetSpec(
        "new_asset",
        description="A new asset somebody added without ownership.",
        group_name="ranking",
        kinds={"parquet"},
    )
    assert any("no owner" in p for p in catalog_problems(bare))
    assert any("layer tag None" in p for p in catalog_problems(bare))
    # ownership.layer gives the group too (the layer's own)
    assert catalog_problems(dg.AssetSpec("x", description="short", **ownership.layer("ranking"))) == [
        "no real description",
        "no kind (kinds={...} in the decorator)",
    ]
    wrong_owner = dg.AssetSpec(
        "x",
        description="A ranking asset owned by the wrong team.",
        group_name="ranking",
        kinds={"lightgbm"},
        owners=[ownership.DATA_PLATFORM],
        tags={"layer": "ranking"},
    )
    assert catalog_problems(wrong_owner) == ["layer ranking is owned by team:recsys-ml, not ['team:data-platform']"]
    good = dg.AssetSpec(
        "x",
        description="A ranking asset with its ownership.",
        kinds={"lightgbm"},
        **ownership.layer("ranking"),
    )
    assert catalog_problems(good) == [] and good.owners == [ownership.RECSYS_ML]
    with pytest.raises(KeyError):
        ownership.layer("no_such_layer")


@pytest.mark.parametrize("module", LAYERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_an_assets_module_group_and_layer_tag_agree(module):
    """assets/<layer>.py holds exactly the assets of group <layer> and layer tag <layer> (the raw
    snapshots are group raw_snapshots, kept apart so range runs of the daily logs stay valid)."""
    layer = module.__name__.rsplit(".", 1)[-1]
    assets, _ = module.build(daily_partitions(Settings().start_date), Settings())
    specs = [spec for definition in assets for spec in definition.specs]
    assert specs
    for spec in specs:
        assert spec.tags.get(ownership.LAYER_TAG) == layer, spec.key
        assert spec.group_name == layer or (layer == "raw" and spec.group_name == "raw_snapshots"), spec.key
    groups = {spec.group_name for spec in SPECS} - {"raw_snapshots"}
    assert groups == {m.__name__.rsplit(".", 1)[-1] for m in LAYERS}


def test_dg_loads_the_code_location():
    """`dg check defs` (pyproject's [tool.dg]) loads the same definitions as `dagster dev`."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    dg_cli = Path(sys.executable).with_name("dg")
    if not dg_cli.exists():
        pytest.skip("dagster-dg-cli is not installed (pip install -e '.[test]' installs it)")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parents[1])}
    done = subprocess.run(
        [str(dg_cli), "check", "defs"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr


def test_loading_the_definitions_prints_no_beta_or_preview_notices(tmp_path):
    """Every CLI call loads the code location: it must not flood the terminal with notices."""
    import warnings

    import dagster as dg

    from recsys_assets.definitions import build_defs, build_resources

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_defs(resources=build_resources(str(tmp_path))).resolve_asset_graph()
    notices = [w for w in caught if issubclass(w.category, (dg.BetaWarning, dg.PreviewWarning))]
    assert notices == [], {str(w.message)[:80] for w in notices}
