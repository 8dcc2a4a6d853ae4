"""The documentation states what the code does."""

from pathlib import Path

from recsys_assets.core.contract import QUARANTINE_REASONS, render_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_data_contract_tables_match_the_code():
    text = (DOCS / "data-contract.md").read_text()
    section = text.split("<!-- contract:start -->\n", 1)[1].split("<!-- contract:end -->", 1)[0]
    assert section == render_markdown(), "regenerate the tables with recsys_assets.core.contract.render_markdown()"
    for reason in QUARANTINE_REASONS:
        assert f"`{reason}`" in text
