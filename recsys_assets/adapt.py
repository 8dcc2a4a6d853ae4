"""Turn a public dataset into a landing zone in the contract format, and mark the data root.

    python -m recsys_assets.adapt movielens ../shared/data/ml-100k --data-root data-ml100k
    python -m recsys_assets.adapt trivago ../shared/data/trivago-recsys2019-100k --data-root data-trivago

Writes <data-root>/landing (ingested by the same raw assets as the synthetic logs) and
<data-root>/SOURCE.json (source, path, first and last day). A data root holds one source:
adapting another one into it is refused. Adapting the same source again is a no-op.
Then materialize with RECSYS_DATA_ROOT=<data-root>: the partitions start at the marker's first
day (or run the quickstart: python -m recsys_assets.quickstart --source movielens --source-path ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recsys_assets.core.adapters import movielens, trivago
from recsys_assets.core.adapters.source import SourceConflict, check_compatible, write_marker

ADAPTED = ("movielens", "trivago")


def prepare_source(
    source: str,
    source_path: str | Path,
    data_root: str | Path,
    rule: movielens.RatingRule | None = None,
    max_tags: int = 20,
    min_pos_completion: float = movielens.DEFAULT_MIN_POS_COMPLETION,
) -> dict:
    """The data root's SOURCE.json marker, adapting the source first if the root is empty.
    Raises SourceConflict if the root holds another source."""
    rule = rule or movielens.RatingRule()
    if source not in ADAPTED:
        raise ValueError(f"source must be one of {ADAPTED}")
    data_root, source_path = Path(data_root).resolve(), Path(source_path).resolve()
    if not source_path.exists():
        raise FileNotFoundError(f"source path {source_path} does not exist")
    marker = check_compatible(data_root, source, source_path)
    if marker is not None and (data_root / "landing").exists():
        return marker  # already adapted from this very source
    if source == "movielens":
        manifest = movielens.convert(source_path, data_root, rule, min_pos_completion, max_tags)
    else:
        manifest = trivago.convert(source_path, data_root)
    keep = ("format", "has_impressions", "days", "empty_days", "test_start")
    return write_marker(
        data_root,
        source,
        source_path,
        manifest["first_day"],
        manifest["last_day"],
        **{k: manifest[k] for k in keep if k in manifest},
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m recsys_assets.adapt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("source", choices=ADAPTED)
    p.add_argument("source_path", help="MovieLens release folder, or trivago log (file or folder)")
    p.add_argument("--data-root", required=True, help="a fresh folder for this source's landing zone and warehouse")
    d = movielens.RatingRule()
    p.add_argument("--min-positive-rating", type=float, default=d.min_positive_rating)
    p.add_argument("--positive-completion", type=float, default=d.positive_completion)
    p.add_argument("--other-completion", type=float, default=d.other_completion)
    p.add_argument("--max-tags", type=int, default=20, help="MovieLens: most frequent tags kept per movie")
    args = p.parse_args(argv)
    rule = movielens.RatingRule(args.min_positive_rating, args.positive_completion, args.other_completion)
    try:
        marker = prepare_source(args.source, args.source_path, args.data_root, rule, args.max_tags)
    except (SourceConflict, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(marker, indent=2))
    print(
        f"\nNext: RECSYS_DATA_ROOT={args.data_root} "
        "dagster asset materialize -m recsys_assets.definitions ...  (or the quickstart with --source)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
