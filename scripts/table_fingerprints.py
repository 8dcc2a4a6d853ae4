"""Fingerprints of the quickstart's output, for checking that a refactor leaves its tables and
models identical: run the quickstart before and after the change into two data roots, save the
first fingerprints with --out and check the second against them with --compare.

    python scripts/table_fingerprints.py <data_root> --out before.json
    python scripts/table_fingerprints.py <other_data_root> --compare before.json  # exit 1 if any differs

Every view of <data_root>/warehouse.duckdb gets its row count, column names and types, and a
hash of its rows independent of their order. Columns that record wall-clock timing are left out
(their names match TIMING), and so are the latency rows of the evaluation tables; the data root's
own path is replaced in the row text, so two data roots compare equal. Every published model
<data_root>/models/<model>/<day> gets the SHA-256 of each file its manifest lists (the manifest
itself holds training times, so it is not hashed).
"""

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import duckdb

# Wall-clock timing in a column's name. Data timestamps (shown_at, event_at, ...) are kept.
TIMING = re.compile(r"seconds|latency|_ms|rss|path|(rolled_back|trained|published|created|evaluated)_at$")
LATENCY_ROWS = {"recall_evaluation", "funnel_evaluation"}  # their metric names the latency rows


def table_fingerprints(data_root: Path) -> dict:
    con = duckdb.connect(str(data_root / "warehouse.duckdb"), read_only=True)
    views = [v for (v,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
    tables = {}
    for view in views:
        columns = [(name, kind) for name, kind, *_ in con.execute(f'DESCRIBE "{view}"').fetchall()]
        kept = ", ".join(f'"{name}"' for name, _ in columns if not TIMING.search(name))
        where = "WHERE metric NOT LIKE '%latency%'" if view in LATENCY_ROWS else ""
        rows, digest = con.execute(
            f"""SELECT count(*), md5(string_agg(h, '' ORDER BY h))
                FROM (SELECT md5(replace(CAST(t AS VARCHAR), ?, '<data_root>')) AS h
                      FROM (SELECT {kept} FROM "{view}" {where}) AS t)""",
            [str(data_root)],
        ).fetchall()[0]
        tables[view] = {"rows": rows, "columns": [f"{name} {kind}" for name, kind in columns], "hash": digest}
    con.close()
    return tables


def model_fingerprints(data_root: Path) -> dict:
    models = {}
    for manifest in sorted(data_root.glob("models/*/*/manifest.json")):
        folder = manifest.parent
        files = json.loads(manifest.read_text())["files"]
        models[f"{folder.parent.name}/{folder.name}"] = {
            name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in sorted(files)
        }
    return models


def differences(before: dict, after: dict) -> list[str]:
    lines = []
    for section in sorted(before.keys() | after.keys()):
        old, new = before.get(section, {}), after.get(section, {})
        for name in sorted(old.keys() | new.keys()):
            if name not in new or name not in old:
                lines.append(f"{section}/{name}: {'missing' if name not in new else 'new'}")
            elif old[name] != new[name]:
                keys = sorted(k for k in old[name].keys() | new[name].keys() if old[name].get(k) != new[name].get(k))
                lines.append(f"{section}/{name}: differs in {', '.join(keys)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--out", type=Path, help="write the fingerprints to this JSON file (default: print them)")
    parser.add_argument("--compare", type=Path, help="a saved fingerprint JSON: print the differences, exit 1 if any")
    args = parser.parse_args(argv)
    data_root = args.data_root.resolve()
    fingerprints = {"tables": table_fingerprints(data_root), "models": model_fingerprints(data_root)}
    text = json.dumps(fingerprints, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    elif not args.compare:
        print(text)
    if args.compare:
        diff = differences(json.loads(args.compare.read_text()), fingerprints)
        print("\n".join(diff) if diff else "identical")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
