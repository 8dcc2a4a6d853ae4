"""The raw-log contract: every table, field, type, required flag and domain rule.

This module is the single source of truth. Ingestion builds its validation SQL from it,
the generator writes records that satisfy it, and docs/data-contract.md describes it
(a test keeps the document and this module in step).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Logical types of the contract, mapped to the DuckDB type a loaded column gets.
DUCKDB_TYPES = {
    "int": "BIGINT",
    "float": "DOUBLE",
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP WITH TIME ZONE",  # ISO-8601 with an explicit offset; stored as UTC
    "string_list": "VARCHAR[]",
    "json": "JSON",
}

# Version 2 added sessions, engagement views, shown prices and request context (all optional:
# every version-1 log is a valid version-2 log). docs/data-contract.md keeps the change log.
CONTRACT_VERSION = 2

# `view` is engagement, never a positive by itself (an image, the details, the deals, the
# reviews of an item were looked at); its `subtype` says which.
EVENT_TYPES = ("click", "play_start", "like", "dislike", "rate", "view")
VIEW_SUBTYPES = ("image", "info", "deals", "rating", "search", "detail")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool
    description: str
    # A SQL predicate over the typed column (named by the field) that must hold when the
    # value is present; a violation quarantines the row as out_of_domain:<field>.
    domain_sql: str | None = None

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.type]


@dataclass(frozen=True)
class TableContract:
    name: str  # the landing file stem, e.g. "impressions"
    description: str
    fields: tuple[Field, ...]
    id_field: str
    # Timestamp that decides the daily partition (None for dimension snapshots).
    time_field: str | None = None
    # Cross-field rules: (reason, SQL predicate over typed columns that must hold).
    row_rules: tuple[tuple[str, str], ...] = ()
    references: tuple[str, ...] = field(default=())  # "user_id" / "item_id" checked against dimensions

    @property
    def asset_name(self) -> str:
        return f"raw_{self.name}"

    @property
    def partitioned(self) -> bool:
        return self.time_field is not None

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


_USER_ID = Field("user_id", "int", True, "User identifier.", "user_id >= 0")
_ITEM_ID = Field("item_id", "int", True, "Title (item) identifier.", "item_id >= 0")

ITEMS = TableContract(
    name="items",
    description="Catalog snapshot: one record per title.",
    id_field="item_id",
    fields=(
        _ITEM_ID,
        Field("title", "string", False, "Display title."),
        Field("release_year", "int", False, "Year of release.", "release_year BETWEEN 1870 AND 2100"),
        Field("duration_sec", "int", False, "Running time in seconds.", "duration_sec > 0"),
        Field("genres", "string_list", False, "Genres (content labels); empty list when unknown."),
        Field("tags", "string_list", False, "Free-form tags."),
        Field("added_at", "timestamp", False, "When the title became available in the catalog."),
    ),
)

USERS = TableContract(
    name="users",
    description="User snapshot: one record per user.",
    id_field="user_id",
    fields=(
        _USER_ID,
        Field("country", "string", False, "ISO 3166-1 alpha-2 country code.", "length(country) = 2"),
        Field("ui_language", "string", False, "Interface language (ISO 639-1)."),
        Field("registered_at", "timestamp", False, "Registration time."),
        Field(
            "genre_pref",
            "json",
            False,
            "Latent genre tastes (synthetic data only, for debugging; never a model input).",
        ),
    ),
)

IMPRESSIONS = TableContract(
    name="impressions",
    description="One record per item shown to a user in a response (the source of negatives).",
    id_field="impression_id",
    time_field="shown_at",
    references=("user_id", "item_id"),
    fields=(
        Field("impression_id", "int", True, "Unique impression identifier.", "impression_id >= 0"),
        _USER_ID,
        _ITEM_ID,
        Field(
            "surface", "string", True, "Screen or feed that showed the item (home, search, ...).", "length(surface) > 0"
        ),
        Field("position", "int", True, "0-based position of the item in the shown list.", "position >= 0"),
        Field("shown_at", "timestamp", True, "When the item was shown."),
        Field(
            "request_id",
            "string",
            True,
            "Identifier of the response (one request shows many items).",
            "length(request_id) > 0",
        ),
        Field("device_type", "string", False, "Device the response was shown on (tv, mobile, web, tablet)."),
        Field("session_id", "string", False, "Client session the request belongs to (v2).", "length(session_id) > 0"),
        Field(
            "price",
            "float",
            False,
            "Price of the item as shown in this list, in the source's unit (v2).",
            "price >= 0 AND isfinite(price)",
        ),
        # Request context (v2): the same on every item of a request.
        Field("platform", "string", False, "Site edition or app the request came from (v2).", "length(platform) > 0"),
        Field("sort_order", "string", False, "Sort order of the list; null = the default order (v2)."),
        Field("filters", "string_list", False, "Filters active when the list was requested (v2)."),
        Field("query", "string", False, "What was searched for: text, destination, place (v2)."),
    ),
)

EVENTS = TableContract(
    name="events",
    description="User actions on items: clicks, play starts, likes, dislikes, ratings, views.",
    id_field="event_id",
    time_field="occurred_at",
    references=("user_id", "item_id"),
    fields=(
        Field("event_id", "string", True, "Unique event identifier.", "length(event_id) > 0"),
        _USER_ID,
        _ITEM_ID,
        Field(
            "type",
            "string",
            True,
            "Event type: " + " | ".join(EVENT_TYPES) + ".",
            "type IN (" + ", ".join(f"'{t}'" for t in EVENT_TYPES) + ")",
        ),
        Field("value", "float", False, "Numeric payload (the rating for `rate`); null otherwise.", "isfinite(value)"),
        Field("occurred_at", "timestamp", True, "When the event happened."),
        Field("request_id", "string", False, "Response the event came from; null for organic actions."),
        Field(
            "subtype",
            "string",
            False,
            "What a `view` looked at: " + " | ".join(VIEW_SUBTYPES) + " (v2; null for other types).",
            "subtype IN (" + ", ".join(f"'{t}'" for t in VIEW_SUBTYPES) + ")",
        ),
        Field("session_id", "string", False, "Client session the event belongs to (v2).", "length(session_id) > 0"),
    ),
    row_rules=(
        ("out_of_domain:value", "type <> 'rate' OR value >= 0"),
        ("out_of_domain:subtype", "subtype IS NULL OR type = 'view'"),
    ),
)

WATCH_STATS = TableContract(
    name="watch_stats",
    description="One record per viewing session of a title.",
    id_field="watch_id",
    time_field="started_at",
    references=("user_id", "item_id"),
    fields=(
        Field("watch_id", "string", True, "Unique watch identifier.", "length(watch_id) > 0"),
        _USER_ID,
        _ITEM_ID,
        Field("started_at", "timestamp", True, "Playback start (decides the partition)."),
        Field("ended_at", "timestamp", False, "Playback end."),
        Field(
            "watch_time_sec",
            "float",
            True,
            "Seconds actually watched.",
            "watch_time_sec >= 0 AND isfinite(watch_time_sec)",
        ),
        Field("completion", "float", True, "Share of the title watched, in [0, 1].", "completion BETWEEN 0 AND 1"),
        Field("device_type", "string", False, "Playback device (tv, mobile, web, tablet)."),
        Field("session_id", "string", False, "Client session identifier."),
        Field("request_id", "string", False, "Response the watch came from; null for organic plays."),
    ),
    row_rules=(("out_of_domain:ended_at", "ended_at IS NULL OR ended_at >= started_at"),),
)

DIMENSIONS = (ITEMS, USERS)
# The dimension asset a reference field is checked against.
REFERENCED_ASSET = {"user_id": USERS.asset_name, "item_id": ITEMS.asset_name}
LOGS = (IMPRESSIONS, EVENTS, WATCH_STATS)
ALL_TABLES = DIMENSIONS + LOGS
BY_NAME = {t.name: t for t in ALL_TABLES}

# Every reason a row can be quarantined for; "<field>" is replaced by the field name.
QUARANTINE_REASONS = {
    "invalid_utf8": "The line is not valid UTF-8.",
    "line_too_long": "The line exceeds the configured byte cap (its head is kept).",
    "malformed_json": "The line is not strict JSON (RFC 8259).",
    "trailing_comma": "A comma before a closing `}` or `]` (`{...,}`, `[1,2,]`): not strict JSON.",
    "non_standard_number": "A NaN or Infinity literal in any spelling (`NaN`, `nan`, `-Inf`, `INFINITY`, ...), "
    "anywhere in the line: strict JSON has none.",
    "not_an_object": "The line is JSON but not an object.",
    "missing_required:<field>": "A required field is absent or null.",
    "wrong_type:<field>": "A field has the wrong JSON type (e.g. a number sent as a string).",
    "null_in_list:<field>": 'An array of strings holds a null element (`[null]`, `["a", null]`).',
    "bad_timestamp:<field>": "A timestamp is not ISO-8601 with an explicit UTC offset.",
    "out_of_domain:<field>": "A value violates the field's domain rule.",
    "outside_partition:<field>": "The record's timestamp is not on the partition's UTC day.",
    "duplicate_id": "Another row of the same partition already has this id (first line wins).",
    "unknown_user": "user_id is not in raw_users.",
    "unknown_item": "item_id is not in raw_items.",
}


def render_markdown() -> str:
    """The field tables of docs/data-contract.md (a test keeps the document equal to this)."""
    out = []
    for t in ALL_TABLES:
        where = "`<landing>/<YYYY-MM-DD>/" if t.partitioned else "`<landing>/"
        out.append(f"### `{t.name}` → asset `{t.asset_name}`\n")
        out.append(
            f"{t.description} File: {where}{t.name}.jsonl`. Unique id: `{t.id_field}`."
            + (f" Partition: the UTC day of `{t.time_field}`." if t.partitioned else " Unpartitioned snapshot.")
            + (f" References checked: {', '.join(f'`{r}`' for r in t.references)}." if t.references else "")
            + "\n"
        )
        out.append("| field | type | stored as | required | domain | meaning |")
        out.append("|---|---|---|---|---|---|")
        for f in t.fields:
            out.append(
                f"| `{f.name}` | {f.type} | {f.duckdb_type} | {'yes' if f.required else 'no'} | "
                f"{('`' + f.domain_sql + '`') if f.domain_sql else ''} | {f.description} |"
            )
        for reason, rule in t.row_rules:
            out.append(f"\nRow rule `{reason}`: `{rule}`.")
        out.append("")
    return "\n".join(out)
