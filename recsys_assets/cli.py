"""`recsys` console script. `recsys recommend --user U [--k 10] [--explain] [--json]
[--session FILE]` serves one user from the latest published models through the same funnel as
the batch assets; --session gives the live session's actions so far (JSON Lines of events:
item_id, type, occurred_at), which the ranker's request-time features read. `recsys serve
[--host 127.0.0.1] [--port 8000] [--reload-seconds 10]` answers the same requests over HTTP
(recsys_assets/server.py) and swaps in new models as they are published or rolled back."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from recsys_assets.core.ranking.session_features import SessionState
from recsys_assets.services.errors import MissingInput
from recsys_assets.services.explain import item_titles, plain_reason, title_of
from recsys_assets.services.model_store import CorruptModelError
from recsys_assets.services.online import OnlineRecommender
from recsys_assets.settings import Settings


def _recommend(args) -> int:
    settings = Settings.load(**({"data_root": args.data_root} if args.data_root else {}))
    recommender = OnlineRecommender.from_settings(settings, day=args.day)
    session = None
    if args.session:
        lines = [line for line in Path(args.session).read_text().splitlines() if line.strip()]
        session = SessionState.from_records(f"cli-{args.user}", [json.loads(line) for line in lines])
    answer = recommender.recommend(args.user, k=args.k, explain=args.explain, session=session)
    rows = answer.table.drop("stage").to_dicts()
    titles = item_titles(recommender.storage)
    for row in rows:  # what a person reads: the title and a plain reason
        row["title"] = title_of(row["item_id"], titles)
        row["reason"] = plain_reason(row.get("because_you_watched"), row.get("channels"), titles, row["item_id"])
    if args.json:
        print(
            json.dumps(
                {
                    "user_id": answer.user_id,
                    "path": answer.path,
                    "day": answer.day,
                    "stage": answer.stage,
                    "timings_ms": {k: round(v, 3) for k, v in answer.timings_ms.items()},
                    "items": rows,
                },
                default=str,
            )
        )
        return 0
    print(
        f"user {answer.user_id}: {answer.path} path, models of {answer.day}, {answer.stage} "
        f"({answer.timings_ms['total_ms']:.1f} ms after load)"
    )
    for row in rows:
        line = (
            f"{row['rank']:>3}. {row['title']} (item {row['item_id']}) "
            f"score {row['score']:+.4f}  via {','.join(row['channels'] or [])}"
        )
        if args.explain:
            line += f"\n       {row['reason'] or 'no reason recorded'}; top features {row.get('top_features') or []}"
        print(line)
    return 0


def _serve(args) -> int:
    from recsys_assets.server import serve  # Starlette and uvicorn only for this command

    settings = Settings.load(**({"data_root": args.data_root} if args.data_root else {}))
    overrides = {
        name: value
        for name, value in (("reload_seconds", args.reload_seconds), ("workers", args.workers))
        if value is not None
    }
    if overrides:
        settings = settings.model_copy(update={"serving": settings.serving.model_copy(update=overrides)})
    serve(settings, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _day(text: str) -> str:
    """--day: a real calendar date (2026-02-30 is refused by argparse with one line)."""
    try:
        date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None
    if len(text) != 10:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("recommend", help="top-K for one user from the latest published models")
    rec.add_argument("--user", type=int, required=True)
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--explain", action="store_true", help="add because-you-watched items and top features")
    rec.add_argument("--json", action="store_true", help="print one JSON object")
    rec.add_argument("--day", type=_day, default=None, help="serve with the models of this day (default: the latest)")
    rec.add_argument("--data-root", help="default: RECSYS_DATA_ROOT or ./data")
    rec.add_argument("--session", help="JSON Lines of the live session's events (item_id, type, occurred_at)")
    srv = sub.add_parser("serve", help="answer recommendation requests over HTTP (hot-swaps new models)")
    srv.add_argument("--host", default=None, help="default: 127.0.0.1 (settings.serving.host)")
    srv.add_argument("--port", type=int, default=None, help="default: 8000 (settings.serving.port)")
    srv.add_argument("--data-root", help="default: RECSYS_DATA_ROOT or ./data")
    srv.add_argument("--reload-seconds", type=float, default=None, help="how often to look for new models (default 10)")
    srv.add_argument("--workers", type=int, default=None, help="server processes, up to the cores (default 1)")
    srv.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if args.command == "serve":
        if args.reload_seconds is not None and args.reload_seconds <= 0:
            parser.error("--reload-seconds must be > 0")
        if args.workers is not None and not 1 <= args.workers <= 64:
            parser.error("--workers must be between 1 and 64")
        return _serve(args)
    if args.k < 1:
        parser.error("--k must be >= 1")
    try:
        return _recommend(args)
    except (MissingInput, CorruptModelError, ValueError, OSError) as error:  # a clear message, not a traceback
        print(f"recsys: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
