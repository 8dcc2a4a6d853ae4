"""The documentation states what the code does."""

import importlib.util
from pathlib import Path

from recsys_assets.core.contract import QUARANTINE_REASONS, render_markdown

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_data_contract_tables_match_the_code():
    text = (DOCS / "data-contract.md").read_text()
    section = text.split("<!-- contract:start -->\n", 1)[1].split("<!-- contract:end -->", 1)[0]
    assert section == render_markdown(), "regenerate the tables with recsys_assets.core.contract.render_markdown()"
    for reason in QUARANTINE_REASONS:
        assert f"`{reason}`" in text


def test_architecture_module_tree_and_asset_graph_match_the_code():
    spec = importlib.util.spec_from_file_location("architecture_doc", ROOT / "scripts" / "architecture_doc.py")
    doc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc)
    text = (DOCS / "architecture.md").read_text()
    for name, generated in doc.sections().items():
        assert doc.current(text, name) == generated, (
            f"docs/architecture.md's {name} section is stale: run python scripts/architecture_doc.py --write"
        )
