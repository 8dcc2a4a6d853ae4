"""The generated parts of docs/architecture.md: the module tree (every module with the first line
of its docstring, by layer) and the asset graph (every asset with its layer, partitioning and
upstream assets), so the document cannot drift from the code. tests/test_docs.py compares them.

    python scripts/architecture_doc.py          # print both sections
    python scripts/architecture_doc.py --write  # rewrite them in docs/architecture.md
"""

import argparse
import ast
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
MARKERS = {
    "tree": ("<!-- tree:start -->\n", "<!-- tree:end -->"),
    "assets": ("<!-- assets:start -->\n", "<!-- assets:end -->"),
}
# The asset layers in graph order (assets/<layer>.py each).
ASSET_LAYERS = ["raw", "features", "dictionaries", "drift", "recall", "evaluation", "ranking", "serving", "report"]
LAYERS = [
    ("wiring", "Dagster definitions, the CLIs and the quickstart: read inputs, call one service, write metadata"),
    ("resources", "the Dagster resources: the settings and stores below, configurable in the launchpad"),
    ("services", "plain services: day loading, training, candidates, evaluation, promotion, serving"),
    ("settings", "the one settings object and each layer's typed settings (plain pydantic)"),
    ("core", "algorithms and file formats: no Dagster, no services"),
]


def _layer(module: str) -> str:
    if module.startswith("recsys_assets.core"):
        return "core"
    if module == "recsys_assets.settings":
        return "settings"
    if module.startswith("recsys_assets.services"):
        return "services"
    if module.startswith("resources"):
        return "resources"
    return "wiring"


def _summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ")
    return first.split(". ")[0].rstrip(".").replace("|", "/")


def render_tree() -> str:
    rows: dict[str, list[str]] = {layer: [] for layer, _ in LAYERS}
    for folder in ("recsys_assets", "resources"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "__init__.py" and not _summary(path):
                continue
            rel = path.relative_to(ROOT)
            module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            rows[_layer(module)].append(f"| `{rel}` | {_summary(path)} |")
    out = []
    for layer, meaning in LAYERS:
        out.append(f"**{layer}**: {meaning}.\n\n| module | what it is |\n|---|---|\n" + "\n".join(rows[layer]) + "\n")
    sql = sorted(p.name for p in (ROOT / "sql").glob("*.sql"))
    out.append("**sql/**: one DuckDB query per table or shared rule: " + ", ".join(f"`{s}`" for s in sql) + ".\n")
    return "\n".join(out)


def render_assets() -> str:
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(ROOT))
    from recsys_assets.definitions import build_defs
    from recsys_assets.settings import Settings

    # a source with a held-out period, so holdout_evaluation is in the graph too
    graph = build_defs(Settings(evaluation_start="2026-01-02")).resolve_asset_graph()
    nodes = [graph.get(k) for k in graph.get_all_asset_keys()]
    lines = ["| layer | asset | partitioned | reads |", "|---|---|---|---|"]
    for node in sorted(nodes, key=lambda n: (ASSET_LAYERS.index(n.tags.get("layer")), n.key.to_user_string())):
        parents = ", ".join(
            f"`{p.to_user_string()}`" for p in sorted(node.parent_keys, key=lambda k: k.to_user_string())
        )
        lines.append(
            f"| {node.tags.get('layer')} | `{node.key.to_user_string()}` | "
            f"{'daily' if node.partitions_def else 'no'} | {parents or '-'} |"
        )
    return "\n".join(lines) + "\n"


def sections() -> dict[str, str]:
    return {"tree": render_tree(), "assets": render_assets()}


def current(text: str, name: str) -> str:
    start, end = MARKERS[name]
    return text.split(start, 1)[1].split(end, 1)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite the sections in docs/architecture.md")
    args = parser.parse_args()
    generated = sections()
    if not args.write:
        for name, body in generated.items():
            print(MARKERS[name][0] + body + MARKERS[name][1])
        return 0
    text = DOC.read_text()
    for name, body in generated.items():
        start, end = MARKERS[name]
        text = text.replace(start + current(text, name) + end, start + body + end)
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
