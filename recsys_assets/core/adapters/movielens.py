"""MovieLens, every release format, into a landing zone in the contract format (no Dagster).

    ml-100k            u.data (TSV user item rating ts), u.item ('|', latin-1, 19 genre
                       flags named by u.genre), u.user ('|')
    ml-1m / ml-10m     ratings.dat, movies.dat ('::', genres '|'-joined; latin-1 in 1m),
                       users.dat (1m), tags.dat (10m)
    CSV family         ratings.csv, movies.csv, tags.csv with headers
                       (ml-latest-small, ml-20m, ml-25m, ml-32m)

What a rating becomes (the same raw assets then ingest it):

* a ``rate`` event with the rating as ``value``, and
* a watch record (``watch_stats``) whose ``completion`` follows :class:`RatingRule`:
  ``positive_completion`` (1.0) for rating >= ``min_positive_rating`` (4), otherwise
  ``other_completion`` (0.3). The feature layer marks a watch positive when completion >=
  ``FeatureSettings.min_pos_completion`` (0.6), so with the defaults exactly the ratings
  >= 4 are positives; :meth:`RatingRule.check` refuses a rule that would not do that.
  ``watch_time_sec`` is 0 (MovieLens has no viewing time), ``request_id`` null (organic).

Both go to the folder of the rating's UTC day. Ids are ``ml:<user>:<item>:<ts>``.
MovieLens logs no impressions: every day gets an empty ``impressions.jsonl``, and the
landing zone's ``_source.json`` says ``has_impressions: false`` (ranking falls back to
sampled negatives). Items get normalised genres (``Sci-Fi`` -> ``sci_fi``; ``unknown`` and
``(no genres listed)`` -> none), the release year, and up to ``max_tags`` most frequent
lower-cased tags; ``added_at`` and ``duration_sec`` are unknown (null). Users get a
snapshot of every id in the ratings or the users file (no contract field fits the
demographics, so they are left out).

Ratings (and tags) stream through DuckDB: ``read_csv`` → a Parquet spill → sorted JSON
lines written per day (:func:`landing.copy_by_day`), so ml-32m never sits in Python memory.

Malformed lines are never dropped. Every one is listed in ``<landing>/_adapter_rejects.jsonl``
(file, line, DuckDB's or the parser's reason, the line). A malformed rating, movie or
user line is *also* written to the landing zone as a record that breaks the contract —
fields that parse are typed, the others keep their source text (``wrong_type:<field>``)
or are null when missing (``missing_required:<field>``) — with ``source_file``,
``source_line_no`` and ``source_error`` alongside, so raw ingestion quarantines it with a
reason and the quarantine's ``raw_line`` names the source line. A bad rating whose time
is unreadable goes to the first day's files. Tag lines map to no record: they are only in
the rejects file.
"""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from recsys_assets.core.adapters import landing as lz

# The feature layer's default positive threshold (FeatureSettings.min_pos_completion);
# a test keeps the two equal.
DEFAULT_MIN_POS_COMPLETION = 0.6

ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_NO_GENRE = {"unknown", "no_genres_listed"}
_YEAR = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class RatingRule:
    """How a rating becomes a watch: completion = positive_completion when rating >=
    min_positive_rating, else other_completion."""

    min_positive_rating: float = 4.0
    positive_completion: float = 1.0
    other_completion: float = 0.3

    def check(self, min_pos_completion: float = DEFAULT_MIN_POS_COMPLETION) -> None:
        """The feature layer must mark exactly the ratings >= min_positive_rating positive."""
        for name in ("positive_completion", "other_completion"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if not self.other_completion < min_pos_completion <= self.positive_completion:
            raise ValueError(
                f"rule inconsistent with min_pos_completion={min_pos_completion}: need other_completion "
                f"({self.other_completion}) < {min_pos_completion} <= positive_completion ({self.positive_completion})"
            )

    def completion(self, rating: float) -> float:
        return self.positive_completion if rating >= self.min_positive_rating else self.other_completion


@dataclass(frozen=True)
class Layout:
    """Where a release keeps its files and how they are split."""

    format: str  # "ml-100k" | "dat" | "csv"
    sep: str
    header: bool
    ratings: str
    movies: str
    users: str | None = None
    tags: str | None = None


def detect_layout(source: Path) -> Layout:
    source = Path(source)
    if (source / "u.data").exists():
        return Layout("ml-100k", "\t", False, "u.data", "u.item", _opt(source, "u.user"))
    if (source / "ratings.dat").exists():
        return Layout(
            "dat", "::", False, "ratings.dat", "movies.dat", _opt(source, "users.dat"), _opt(source, "tags.dat")
        )
    if (source / "ratings.csv").exists():
        return Layout("csv", ",", True, "ratings.csv", "movies.csv", None, _opt(source, "tags.csv"))
    raise FileNotFoundError(f"{source}: no u.data, ratings.dat or ratings.csv — not a MovieLens release folder")


def _opt(source: Path, name: str) -> str | None:
    return name if (source / name).exists() else None


def normalize_genre(name: str) -> str:
    """'Sci-Fi' -> 'sci_fi', "Children's" and 'Children' -> 'children', 'Film-Noir' -> 'film_noir'."""
    g = name.strip().lower().replace("'s", "").replace("'", "")
    return re.sub(r"[^a-z0-9]+", "_", g).strip("_")


def genre_list(names) -> list[str]:
    out = []
    for n in names:
        g = normalize_genre(n)
        if g and g not in _NO_GENRE and g not in out:
            out.append(g)
    return out


def release_year(title: str | None, date_text: str | None = None) -> int | None:
    year = None
    if date_text and (match := re.search(r"(\d{4})\s*$", date_text)):
        year = int(match.group(1))
    elif title and (match := _YEAR.search(title)):
        year = int(match.group(1))
    return year if year is not None and 1870 <= year <= 2100 else None


def _read_text(path: Path) -> str:
    """Small metadata files: UTF-8 when valid, else latin-1 (ml-100k, ml-1m)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _split(line: str, layout: Layout, ratings: bool = False) -> list[str]:
    if layout.format == "csv":
        return next(csv.reader([line]), [])
    # ml-100k: ratings are tab-separated, its metadata files '|'-separated
    sep = layout.sep if ratings or layout.format != "ml-100k" else "|"
    return line.split(sep)


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        v = float(text.strip()) if text is not None else None
    except ValueError:
        return None
    return v if v is not None and v == v and abs(v) != float("inf") else None


def _typed_or_text(text: str | None, parse):
    """The parsed value, or the source text (so the contract says wrong_type), or None."""
    if text is None:
        return None
    value = parse(text)
    return value if value is not None else text


def _reject(file: str, line_no: int, error: str, line: str) -> dict:
    return {"file": file, "line_no": line_no, "error": error, "line": line}


# ------------------------------------------------------------------------------------------
# items, users, tags
# ------------------------------------------------------------------------------------------


def parse_items(
    source: Path, layout: Layout, tags: dict[int, list[str]] | None = None, genre_names: tuple[str, ...] | None = None
) -> tuple[list[dict], list[dict]]:
    """(item records, rejects) from u.item / movies.dat / movies.csv; bad lines become items
    that break the contract (quarantined by raw_items)."""
    tags = tags or {}
    items, rejects = [], []
    text = _read_text(source / layout.movies)
    names = genre_names or ML100K_GENRES
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or (layout.header and line_no == 1):
            continue
        f = _split(line, layout)
        error = None
        if layout.format == "ml-100k":
            if len(f) != 5 + len(names):
                error = f"expected {5 + len(names)} '|'-separated fields, got {len(f)}"
            elif any(flag not in ("0", "1") for flag in f[5:]):
                error = "genre flags must be 0 or 1"
        elif len(f) != 3:
            error = f"expected 3 fields, got {len(f)}"
        item_id = _int(f[0]) if f else None
        if error is None and item_id is None:
            error = f"movie id {f[0]!r} is not an integer"
        if error:
            rejects.append(_reject(layout.movies, line_no, error, line))
            items.append(
                {
                    "item_id": _typed_or_text(f[0] if f else None, _int),
                    "title": None,
                    "genres": [],
                    "source_file": layout.movies,
                    "source_line_no": line_no,
                    "source_error": error,
                    "source_line": line,
                }
            )
            continue
        assert item_id is not None  # a line without an integer id has its error set above
        if layout.format == "ml-100k":
            title, genres = f[1], genre_list(n for n, flag in zip(names, f[5:], strict=False) if flag == "1")
            year = release_year(title, f[2])
        else:
            title, genres = f[1], genre_list(f[2].split("|"))
            year = release_year(title)
        items.append(
            {"item_id": item_id, "title": title, "release_year": year, "genres": genres, "tags": tags.get(item_id, [])}
        )
    return items, rejects


def parse_user_ids(source: Path, layout: Layout) -> tuple[list[dict], list[dict]]:
    """(user records, rejects) from u.user / users.dat when the release has one."""
    if layout.users is None:
        return [], []
    users, rejects = [], []
    for line_no, line in enumerate(_read_text(source / layout.users).splitlines(), start=1):
        if not line.strip():
            continue
        f = _split(line, layout)
        user_id = _int(f[0]) if f else None
        error = None if len(f) == 5 else f"expected 5 fields, got {len(f)}"
        if error is None and user_id is None:
            error = f"user id {f[0]!r} is not an integer"
        if error:
            rejects.append(_reject(layout.users, line_no, error, line))
            users.append(
                {
                    "user_id": _typed_or_text(f[0] if f else None, _int),
                    "source_file": layout.users,
                    "source_line_no": line_no,
                    "source_error": error,
                    "source_line": line,
                }
            )
        else:
            users.append({"user_id": user_id})
    return users, rejects


def _read_csv_sql(path: Path, layout: Layout, columns: dict[str, str], rejects_name: str, quote: bool) -> str:
    cols = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"
    q = "'\"'" if quote else "''"
    # nullstr that never occurs: an empty field is a cast error (rejected), not a NULL.
    return (
        f"read_csv({lz.sql_str(path)}, delim={lz.sql_str(layout.sep)}, header={str(layout.header).lower()}, "
        f"columns={cols}, auto_detect=false, quote={q}, escape={q}, nullstr='\x01', "
        f"store_rejects=true, rejects_table='{rejects_name}', rejects_scan='{rejects_name}_scan')"
    )


def _fetch_rejects(con, rejects_name: str, file: str) -> list[dict]:
    rows = con.execute(f"""SELECT line, string_agg(DISTINCT error_type || ': ' || error_message, '; ' ORDER BY error_type || ': ' || error_message),
                                  any_value(csv_line)
                           FROM {rejects_name} GROUP BY line ORDER BY line""").fetchall()
    return [_reject(file, int(line), error, (text or "").strip("\r\n")) for line, error, text in rows]


def aggregate_tags(con, source: Path, layout: Layout, max_tags: int) -> tuple[dict[int, list[str]], list[dict], int]:
    """The max_tags most frequent tags of each movie (lower-cased), streamed through DuckDB."""
    if layout.tags is None:
        return {}, [], 0
    columns = {"user_id": "VARCHAR", "item_id": "BIGINT", "tag": "VARCHAR", "ts": "VARCHAR"}
    scan = _read_csv_sql(source / layout.tags, layout, columns, "rej_tags", quote=layout.format == "csv")
    con.execute(
        f"CREATE TEMP TABLE tag_counts AS SELECT item_id, lower(trim(tag)) AS tag, count(*) AS n "
        f"FROM {scan} WHERE trim(tag) <> '' GROUP BY ALL"
    )
    rows = con.execute(
        """SELECT item_id, list(tag ORDER BY n DESC, tag) FROM (
                              SELECT * FROM tag_counts
                              QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY n DESC, tag) <= $k)
                          GROUP BY item_id""",
        {"k": max_tags},
    ).fetchall()
    n_lines = con.execute("SELECT coalesce(sum(n), 0) FROM tag_counts").fetchone()[0]
    return {int(i): list(t) for i, t in rows}, _fetch_rejects(con, "rej_tags", layout.tags), int(n_lines)


# ------------------------------------------------------------------------------------------
# ratings
# ------------------------------------------------------------------------------------------


# Share of the ratings, the latest by time, in the held-out period (SOURCE.json test_start).
TEST_SHARE = 0.2


def _bad_rating_records(
    reject: dict, layout: Layout, rule: RatingRule, first_day: str, last_day: str
) -> tuple[str, dict, dict]:
    """The event and the watch a malformed rating line becomes, and the day file they go to."""
    f = _split(reject["line"], layout, ratings=True) if reject["line"] else []
    if len(f) == 4:  # fields in place: the ones that parse are typed, the others keep their text
        user, item, rating, ts = (
            _typed_or_text(f[0], _int),
            _typed_or_text(f[1], _int),
            _typed_or_text(f[2], _float),
            _int(f[3]),
        )
        when: str | None = lz.iso_utc(ts) if ts is not None else f[3]
    else:  # fields out of place: nothing can be trusted, all stay text (missing ones null)
        padded: list[str | None] = [*f, *[None] * (4 - len(f))]
        user, item, rating, when, ts = padded[0], padded[1], padded[2], padded[3], None
    day = lz.utc_day(ts) if ts is not None else first_day
    if not first_day <= day <= last_day:
        day = first_day
    key = f"ml:bad:{reject['file']}:{reject['line_no']}"
    trace = {"source_file": reject["file"], "source_line_no": reject["line_no"], "source_error": reject["error"]}
    completion = rule.completion(rating) if isinstance(rating, float) else None
    event = {
        "event_id": key,
        "user_id": user,
        "item_id": item,
        "type": "rate",
        "value": rating,
        "occurred_at": when,
        "request_id": None,
        **trace,
    }
    watch = {
        "watch_id": key,
        "user_id": user,
        "item_id": item,
        "started_at": when,
        "watch_time_sec": 0.0,
        "completion": completion,
        "request_id": None,
        **trace,
    }
    return day, event, watch


def convert(
    source: Path,
    data_root: Path,
    rule: RatingRule = RatingRule(),
    min_pos_completion: float = DEFAULT_MIN_POS_COMPLETION,
    max_tags: int = 20,
) -> dict:
    """Write <data_root>/landing from the MovieLens release in `source`; returns the manifest."""
    source, data_root = Path(source).resolve(), Path(data_root).resolve()
    rule.check(min_pos_completion)
    layout = detect_layout(source)
    tmp = lz.staging_landing(data_root)
    con = lz.connect(tmp)
    try:
        spill = tmp / ".ratings.parquet"
        columns = {"user_id": "BIGINT", "item_id": "BIGINT", "rating": "DOUBLE", "ts": "BIGINT"}
        scan = _read_csv_sql(source / layout.ratings, layout, columns, "rej_ratings", quote=layout.format == "csv")
        con.execute(f"COPY (SELECT * FROM {scan}) TO {lz.sql_str(spill)} (FORMAT parquet)")
        rating_rejects = _fetch_rejects(con, "rej_ratings", layout.ratings)
        ratings = f"read_parquet({lz.sql_str(spill)})"
        span = con.execute(f"SELECT count(*), min(ts), max(ts) FROM {ratings}").fetchone()
        assert span is not None  # an aggregate query returns one row
        n_ratings, t0, t1 = span
        if not n_ratings:
            raise ValueError(f"{source / layout.ratings}: no valid rating line")
        first_day, last_day = lz.utc_day(t0), lz.utc_day(t1)

        key = "'ml:' || user_id || ':' || item_id || ':' || ts"
        events = lz.copy_by_day(
            con,
            f"""
            SELECT {lz.day_sql("ts")} AS day, {key} AS event_id, user_id, item_id, 'rate' AS type, rating AS value,
                   {lz.iso_utc_sql("ts")} AS occurred_at, NULL::VARCHAR AS request_id
            FROM {ratings}""",
            tmp,
            "events",
            "occurred_at, user_id, item_id",
        )
        # The rule's numbers are validated floats, safe to inline (COPY takes no parameters).
        completion = (
            f"CASE WHEN rating >= {float(rule.min_positive_rating)!r} THEN {float(rule.positive_completion)!r} "
            f"ELSE {float(rule.other_completion)!r} END"
        )
        watches = lz.copy_by_day(
            con,
            f"""
            SELECT {lz.day_sql("ts")} AS day, {key} AS watch_id, user_id, item_id, {lz.iso_utc_sql("ts")} AS started_at,
                   0.0::DOUBLE AS watch_time_sec, {completion}::DOUBLE AS completion, NULL::VARCHAR AS request_id
            FROM {ratings}""",
            tmp,
            "watch_stats",
            "started_at, user_id, item_id",
        )
        positives_row = con.execute(
            f"SELECT count(*) FILTER (WHERE rating >= $r) FROM {ratings}", {"r": float(rule.min_positive_rating)}
        ).fetchone()
        assert positives_row is not None  # an aggregate query returns one row
        positives = positives_row[0]
        rating_users = [u for (u,) in con.execute(f"SELECT DISTINCT user_id FROM {ratings} ORDER BY 1").fetchall()]

        for reject in rating_rejects:
            day, event, watch = _bad_rating_records(reject, layout, rule, first_day, last_day)
            lz.append_jsonl(tmp / day / "events.jsonl", [event])
            lz.append_jsonl(tmp / day / "watch_stats.jsonl", [watch])
        # Decades of history: only the days with ratings get a folder (no files for empty days).
        days = lz.finish_days(tmp, first_day, last_day, days_with_data_only=True)
        # The held-out period of the temporal protocol: the day the last 20% of the ratings begin.
        # quantile_disc(ts, 0.8)'s day from per-day counts: a holistic quantile over 32M ratings
        # would hold them all in memory (the connection's limit is 512 MB, sorts spill)
        cut_row = con.execute(
            f"""
            WITH per_day AS (SELECT {lz.day_sql("ts")} AS day, count(*) AS n FROM {ratings} GROUP BY ALL),
                 running AS (SELECT day, sum(n) OVER (ORDER BY day) AS upto, sum(n) OVER () AS total FROM per_day)
            SELECT min(day) FROM running WHERE upto >= total * {1 - TEST_SHARE}"""
        ).fetchone()
        assert cut_row is not None
        test_start = cut_row[0]

        tags, tag_rejects, tag_lines = aggregate_tags(con, source, layout, max_tags)
        genre_names = None
        if layout.format == "ml-100k" and (source / "u.genre").exists():
            rows = [ln.split("|") for ln in _read_text(source / "u.genre").splitlines() if ln.strip()]
            genre_names = tuple(name for name, _ in sorted(((r[0], int(r[1])) for r in rows), key=lambda r: r[1]))
        items, item_rejects = parse_items(source, layout, tags, genre_names)
        lz.append_jsonl(tmp / "items.jsonl", items)

        users, user_rejects = parse_user_ids(source, layout)
        known = {u["user_id"] for u in users if isinstance(u["user_id"], int)}
        users += [{"user_id": u} for u in rating_users if u not in known]
        lz.append_jsonl(tmp / "users.jsonl", users)

        rejects = rating_rejects + item_rejects + user_rejects + tag_rejects
        lz.append_jsonl(tmp / lz.ADAPTER_REJECTS, rejects)
        spill.unlink()
        manifest = {
            "source": "movielens",
            "format": layout.format,
            "path": str(source),
            "files": {k: v for k, v in asdict(layout).items() if k in ("ratings", "movies", "users", "tags") and v},
            "has_impressions": False,
            "impressions_note": "MovieLens logs ratings only; every impressions.jsonl is empty and ranking uses "
            "sampled negatives",
            "rule": {**asdict(rule), "min_pos_completion": min_pos_completion},
            "first_day": first_day,
            "last_day": last_day,
            "days": len(days),
            "empty_days": "absent",
            "test_start": test_start,
            "ratings": int(n_ratings),
            "positives": int(positives),
            "events": sum(events.values()),
            "watch_stats": sum(watches.values()),
            "items": len(items),
            "users": len(users),
            "tag_lines": tag_lines,
            "tagged_items": len(tags),
            "malformed_lines": {f: sum(r["file"] == f for r in rejects) for f in sorted({r["file"] for r in rejects})},
        }
        return manifest | {"landing": str(lz.publish_landing(tmp, data_root, manifest))}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        con.close()
