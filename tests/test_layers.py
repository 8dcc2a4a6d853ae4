"""Imports go one way: wiring -> resources -> services -> settings -> core.

- core/ holds algorithms: it imports only core (and third-party libraries, never Dagster);
- settings.py is plain pydantic: core only;
- services/ are plain Python between the two: services, settings and core, never Dagster, the
  resources or the wiring;
- resources/ are the Dagster resources: the layers below them, never the wiring;
- the wiring (definitions, assets/, checks/, automation, the CLIs) may import all of them, but an
  asset module never imports another asset module (only the shared helpers of assets/), and a
  check module never imports an asset module.

Every import statement counts, at module level or inside a function.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSET_HELPERS = {
    "recsys_assets.assets.ownership",
    "recsys_assets.assets.table_metadata",
    "recsys_assets.assets._wiring",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module.startswith("recsys_assets.core"):
        return "core"
    if module == "recsys_assets.settings":
        return "settings"
    if module.startswith("recsys_assets.services"):
        return "services"
    if module == "resources" or module.startswith("resources."):
        return "resources"
    if module.startswith("dagster") or module.startswith("dagster_"):
        return "dagster"
    if module == "recsys_assets" or module.startswith("recsys_assets."):
        return "wiring"
    return "third_party"


# What each layer may import (besides the standard library and third-party libraries).
ALLOWED = {
    "core": {"core"},
    "settings": {"core"},
    "services": {"core", "settings", "services"},
    "resources": {"core", "settings", "services", "resources", "dagster"},
    "wiring": {"core", "settings", "services", "resources", "dagster", "wiring"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import in the file, relative imports resolved."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            # `from package import module` imports the module
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def resolve(name: str) -> str:
    """The longest prefix of `name` that is one of the project's modules (else `name`)."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if (ROOT / Path(*parts[:k])).with_suffix(".py").exists() or (ROOT / Path(*parts[:k]) / "__init__.py").exists():
            return candidate
    return name


def violations() -> list[str]:
    problems = []
    for folder in ("recsys_assets", "resources"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = module_name(path)
            layer = layer_of(source)
            for line, imported in imports_of(path):
                target = resolve(imported)
                target_layer = layer_of(target)
                where = f"{path.relative_to(ROOT)}:{line} imports {target}"
                if target_layer not in ALLOWED[layer] | {"third_party"}:
                    problems.append(f"{where}: {layer} may not import {target_layer}")
                if (
                    source.startswith(("recsys_assets.assets.", "recsys_assets.checks."))
                    and target.startswith("recsys_assets.assets.")
                    and target not in ASSET_HELPERS
                    and target != source
                ):
                    problems.append(f"{where}: asset and check modules do not import asset modules")
    return problems


def test_imports_go_one_way():
    assert violations() == []


@pytest.mark.parametrize(
    "source, line, expected",
    [
        ("recsys_assets/core/fusion.py", "from recsys_assets.services import candidates", "core may not import"),
        ("recsys_assets/core/fusion.py", "import dagster as dg", "core may not import dagster"),
        ("recsys_assets/services/candidates.py", "from resources import RecallSettings", "may not import resources"),
        ("recsys_assets/services/candidates.py", "import dagster", "services may not import dagster"),
        ("recsys_assets/settings.py", "from recsys_assets.services import days", "settings may not import"),
        ("resources/recall.py", "from recsys_assets.assets import recall", "resources may not import wiring"),
        ("recsys_assets/assets/ranking.py", "from recsys_assets.assets.recall import build", "do not import asset"),
        ("recsys_assets/checks/raw_checks.py", "from recsys_assets.assets import raw", "do not import asset"),
    ],
)
def test_a_backward_import_is_caught(tmp_path, monkeypatch, source, line, expected):
    """Each rule catches an import that breaks it, placed inside a function (lazy imports count)."""
    path = ROOT / source
    original = path.read_text()
    monkeypatch.setattr(
        Path,
        "read_text",
        lambda self, *a, **k: (
            original + f"\n\ndef _probe():\n    {line}\n" if self == path else Path.read_bytes(self).decode()
        ),
    )
    assert any(expected in problem for problem in violations()), line
