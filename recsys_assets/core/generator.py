"""Deterministic synthetic logs of an online cinema (no Dagster import).

``generate(config, root)`` writes a landing zone that satisfies :mod:`recsys_assets.core.contract`::

    <root>/landing/items.jsonl                 catalog snapshot (all titles, incl. later ones)
    <root>/landing/users.jsonl                 user snapshot (all users, incl. later ones)
    <root>/landing/_injected_bad.jsonl         manifest of bad snapshot lines (bad_record_rate > 0)
    <root>/landing/<YYYY-MM-DD>/impressions.jsonl
    <root>/landing/<YYYY-MM-DD>/events.jsonl
    <root>/landing/<YYYY-MM-DD>/watch_stats.jsonl
    <root>/landing/<YYYY-MM-DD>/_injected_bad.jsonl   (bad_record_rate > 0)
    <root>/landing/<YYYY-MM-DD>/_SUCCESS      empty marker, written last

The simulation is vectorised with numpy (loops run per day, per chunk of rows, per genre or per
injected bad line, never per record) and one day is held in memory at a time.

World model
-----------
* 18 genres with a skewed base popularity; each item gets 1-3 genres, a Zipf popularity
  (exponent ``zipf_exponent``, rank order random w.r.t. item_id), a quality multiplier and a running time.
* Each user gets Dirichlet genre tastes (concentrated, centred on the base popularity), a
  lognormal activity level, a country (fixed UTC offset, used for every timestamp of the user),
  a UI language and a primary device.
* ``new_item_share`` / ``new_user_share`` of items/users appear on days 1..days-1; they are shown /
  active only from that UTC day (users only after their registration instant).
* A request = one active user (picked by activity), one surface, one device, ``slate_size``
  distinct available items drawn by popularity; all impressions of a request share shown_at.
* P(click) = base * surface multiplier * (1 + position)^-0.7 * quality * genre affinity, where the
  affinity is the user's mean taste over the item's genres (relative to uniform).
* Most clicks lead to a play_start and a watch (completion ~ Beta with mean rising with the
  affinity); likes / dislikes / ratings sometimes follow a watch. About 5% of watches are organic
  (no request: request_id null), with the item drawn from one of the user's favourite genres.
* Follow-up events are clamped to the request's UTC day; ``ended_at`` may cross midnight.

Shifts (``shift_date`` + ``shift_kind``, from that day on):
* ``genre``: every user's tastes are permuted (the most popular genre swaps with the least
  popular one, etc.) -> the genre mix of clicks/watches changes.
* ``traffic``: the surface mix and the device mix change, and other users become active
  (per-user lognormal re-weighting, IN/BR users boosted).
* ``new_items``: a burst of catalog items (5% of items) is added on that day with a boosted,
  slowly decaying popularity (they take ~35% of the impressions on the first day).

Bad records (``bad_record_rate > 0``): each file gets max(#kinds, round(rate * good lines)) extra
lines cycling over :data:`LOG_BAD_KINDS` (daily logs) or :data:`SNAPSHOT_BAD_KINDS` (items/users),
inserted at random positions. Each is listed in the folder's ``_injected_bad.jsonl`` as
``{"file": "impressions.jsonl", "line_no": 17, "kind": "out_of_domain", "reason": "out_of_domain:position"}``
(line_no 1-based in the final file; reason = the exact quarantine reason of contract.py). Bad records
carry fresh ids (except duplicate_id, an exact copy of an earlier good line) and valid values
elsewhere, so exactly one reason applies. Good lines are byte-identical with and without injection
(the simulation and the injection use independent random streams).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy.special import betainc

from recsys_assets.core import contract

GENRES: tuple[str, ...] = (
    "action",
    "adventure",
    "animation",
    "comedy",
    "crime",
    "documentary",
    "drama",
    "family",
    "fantasy",
    "history",
    "horror",
    "music",
    "mystery",
    "romance",
    "sci_fi",
    "thriller",
    "war",
    "western",
)
N_GENRES = len(GENRES)
SURFACES: tuple[str, ...] = ("home", "search", "similar", "continue_watching")
DEVICES: tuple[str, ...] = ("tv", "mobile", "web", "tablet")
SHIFT_KINDS: tuple[str, ...] = ("genre", "traffic", "new_items")
EVENT_TYPES: tuple[str, ...] = contract.EVENT_TYPES  # click, play_start, like, dislike, rate, view
_VIEW = EVENT_TYPES.index("view")
VIEW_SUBTYPES: tuple[str, ...] = ("info", "image", "detail")

# (ISO country, fixed UTC offset in minutes, native UI language, share of users)
COUNTRIES: tuple[tuple[str, int, str, float], ...] = (
    ("RU", 180, "ru", 0.20),
    ("US", -300, "en", 0.16),
    ("DE", 60, "de", 0.12),
    ("NL", 60, "nl", 0.08),
    ("GB", 0, "en", 0.08),
    ("BR", -180, "pt", 0.08),
    ("IN", 330, "hi", 0.08),
    ("FR", 60, "fr", 0.06),
    ("ES", 60, "es", 0.04),
    ("JP", 540, "ja", 0.04),
    ("KZ", 300, "ru", 0.03),
    ("AU", 600, "en", 0.03),
)
CATALOG_OFFSET_MIN = 60  # items' added_at is written in the catalog team's zone (+01:00)

LANDING = "landing"
SUCCESS_MARKER = "_SUCCESS"
MANIFEST = "_injected_bad.jsonl"
LOG_FILES: tuple[str, ...] = ("impressions", "events", "watch_stats")

# Ids used by injected bad records; they never collide with good ids.
UNKNOWN_ID_BASE = 10**9  # unknown_user / unknown_item ids in the daily logs
SNAPSHOT_BAD_ID_BASE = 2 * 10**9  # fresh ids of bad snapshot lines
BAD_IMPRESSION_ID_BASE = 10**15  # + day_index * 10**8 + k

_SECONDS_PER_DAY = 86_400
_ORGANIC_SHARE = 0.05
_BASE_CTR = 0.06
_SURFACE_P = np.array([0.55, 0.20, 0.15, 0.10])
_SURFACE_P_SHIFTED = np.array([0.30, 0.40, 0.20, 0.10])
_SURFACE_CTR = np.array([1.0, 1.6, 1.2, 1.8])
_DEVICE_P = np.array([0.35, 0.40, 0.15, 0.10])
_DEVICE_P_SHIFTED = np.array([0.10, 0.65, 0.10, 0.15])
_PRIMARY_DEVICE_P, _PRIMARY_DEVICE_P_SHIFTED = 0.75, 0.35
_TRAFFIC_BOOST_COUNTRIES = ("IN", "BR")
_HOUR_W = np.array(
    [
        0.30,
        0.20,
        0.15,
        0.10,
        0.10,
        0.15,
        0.30,
        0.50,
        0.60,
        0.60,
        0.60,
        0.70,
        0.80,
        0.80,
        0.80,
        0.90,
        1.00,
        1.20,
        1.50,
        1.90,
        2.20,
        2.10,
        1.60,
        0.80,
    ]
)
_BURST_SHARE, _BURST_DECAY, _BURST_ITEM_SHARE = 0.35, 0.85, 0.05
# Sessions: a visit is a run of requests seconds to minutes apart (mean length 1 / _SESSION_P).
# Before choosing, users look at items (views, driven by their tastes like clicks); a later list
# of the session shows again items the session looked at (_RESHOW_P each, up to _SESSION_MEMORY
# of the most recent), and an item looked at earlier in the session is chosen more readily.
_SESSION_P = 0.4
_SESSION_GAP_MIN, _SESSION_GAP_MEAN = 20, 90
_SESSION_MEMORY = 3
_VIEW_RATE = 0.10
_VIEW_SUBTYPE_P = np.array([0.5, 0.35, 0.15])
_RESHOW_P = 0.5
_SEEN_CLICK_BOOST = 2.0  # p_click x (1 + boost) for an item the session looked at before the request
_VIEWED_CLICK_BOOST = 1.0  # p_click x (1 + boost) for an item looked at in this list before choosing
_CHUNK_ROWS = 500_000


@dataclass
class GeneratorConfig:
    n_users: int = 2000
    n_items: int = 1500
    days: int = 14
    start_date: dt.date = dt.date(2026, 1, 1)
    impressions_per_day: int = 70_000
    slate_size: int = 10
    seed: int = 42
    new_item_share: float = 0.2
    new_user_share: float = 0.2
    shift_date: dt.date | None = None
    shift_kind: str = "genre"
    bad_record_rate: float = 0.0
    zipf_exponent: float = 1.0
    position_bias_exponent: float = 0.7
    # Share of requests whose slate the platform's previous recommender aimed at one of the
    # user's genres (drawn from their tastes); the rest are drawn by popularity alone.
    personalized_share: float = 0.5
    chunk_rows: int = _CHUNK_ROWS  # rows serialised at once (memory knob; no effect on output)

    def __post_init__(self) -> None:
        if isinstance(self.start_date, str):
            self.start_date = dt.date.fromisoformat(self.start_date)
        if isinstance(self.shift_date, str):
            self.shift_date = dt.date.fromisoformat(self.shift_date)
        if self.n_users < 1 or self.n_items < 1 or self.days < 1:
            raise ValueError("n_users, n_items and days must be >= 1")
        if self.slate_size < 1 or self.impressions_per_day < 1:
            raise ValueError("slate_size and impressions_per_day must be >= 1")
        if not (0.0 <= self.new_item_share < 1.0 and 0.0 <= self.new_user_share < 1.0):
            raise ValueError("new_item_share and new_user_share must be in [0, 1)")
        if self.shift_kind not in SHIFT_KINDS:
            raise ValueError(f"shift_kind must be one of {SHIFT_KINDS}, got {self.shift_kind!r}")
        if not 0.0 <= self.bad_record_rate <= 0.5:
            raise ValueError("bad_record_rate must be in [0, 0.5]")
        if not 0.0 <= self.personalized_share <= 1.0:
            raise ValueError("personalized_share must be in [0, 1]")
        if self.chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")

    @property
    def dates(self) -> list[dt.date]:
        return [self.start_date + dt.timedelta(days=d) for d in range(self.days)]

    @property
    def requests_per_day(self) -> int:
        return max(1, round(self.impressions_per_day / self.slate_size))


# --------------------------------------------------------------------------------------------
# small vectorised helpers
# --------------------------------------------------------------------------------------------


def _offset_str(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h:02d}:{m:02d}"


_COUNTRY_CODES = np.array([c[0] for c in COUNTRIES])
_COUNTRY_OFFSET_SEC = np.array([c[1] * 60 for c in COUNTRIES], dtype=np.int64)
_COUNTRY_OFFSET_STR = pl.Series([_offset_str(c[1]) for c in COUNTRIES], dtype=pl.String)
_COUNTRY_LANG = np.array([c[2] for c in COUNTRIES])
_COUNTRY_P = np.array([c[3] for c in COUNTRIES])
_SURFACE_S = pl.Series(SURFACES, dtype=pl.String)
_DEVICE_S = pl.Series(DEVICES, dtype=pl.String)
_EVENT_TYPE_S = pl.Series(EVENT_TYPES, dtype=pl.String)
_VIEW_SUBTYPE_S = pl.Series(VIEW_SUBTYPES, dtype=pl.String)
_TS_FMT = "%Y-%m-%dT%H:%M:%S"


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _choice(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """n draws of indices with probability proportional to weights (inverse CDF)."""
    cdf = np.cumsum(weights, dtype=np.float64)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)


def _format_ts(epoch_sec: np.ndarray, country: np.ndarray) -> pl.Series:
    """ISO-8601 strings with the country's fixed offset, e.g. 2026-01-03T12:00:01+01:00."""
    local = np.asarray(epoch_sec, dtype=np.int64) + _COUNTRY_OFFSET_SEC[country]
    text = pl.from_epoch(pl.Series(local), time_unit="s").dt.strftime(_TS_FMT)
    return text + _COUNTRY_OFFSET_STR.gather(country)


def _format_ts_fixed(epoch_sec: np.ndarray, offset_min: int) -> pl.Series:
    local = np.asarray(epoch_sec, dtype=np.int64) + offset_min * 60
    return pl.from_epoch(pl.Series(local), time_unit="s").dt.strftime(_TS_FMT) + _offset_str(offset_min)


def _epoch(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def _sample_slates(rng: np.random.Generator, weights: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """(n_rows, k) indices into weights, distinct within a row, drawn by weight.

    Duplicates inside a row are redrawn (vectorised over the rows that still have one)."""
    n = len(weights)
    k = min(k, n)
    cdf = np.cumsum(weights, dtype=np.float64)
    cdf /= cdf[-1]

    def draw(shape):
        return np.minimum(np.searchsorted(cdf, rng.random(shape), side="right"), n - 1)

    out = draw((n_rows, k))
    todo = np.arange(n_rows)
    for _ in range(200):
        if todo.size == 0 or k == 1:
            break
        sub = out[todo]
        order = np.argsort(sub, axis=1, kind="stable")
        srt = np.take_along_axis(sub, order, axis=1)
        dup_sorted = np.zeros(sub.shape, dtype=bool)
        dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
        has = dup_sorted.any(axis=1)
        todo, sub, order, dup_sorted = todo[has], sub[has], order[has], dup_sorted[has]
        if todo.size == 0:
            break
        dup = np.zeros(sub.shape, dtype=bool)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        r, c = np.nonzero(dup)
        sub[r, c] = draw(r.size)
        out[todo] = sub
    else:  # pathological (almost all mass on < k items): exact sampling for the leftovers
        p = cdf.copy()
        p[1:] -= cdf[:-1]
        for row in todo:  # only the few rows that did not converge
            out[row] = rng.choice(n, size=k, replace=False, p=p)
    return out


# --------------------------------------------------------------------------------------------
# the static world: items and users
# --------------------------------------------------------------------------------------------


@dataclass
class _World:
    cfg: GeneratorConfig
    day0_epoch: int
    shift_day: int | None
    genre_base: np.ndarray
    genre_perm: np.ndarray
    # items
    item_genres: np.ndarray  # (n_items, 3) int16, -1 = no genre in that slot
    item_ngen: np.ndarray
    item_pop: np.ndarray
    item_quality: np.ndarray
    item_duration: np.ndarray
    item_year: np.ndarray
    item_tags: np.ndarray  # (n_items, 4) int16, -1 = none
    item_added_day: np.ndarray
    item_added_epoch: np.ndarray
    item_burst: np.ndarray  # bool
    # users
    user_country: np.ndarray
    user_lang: np.ndarray
    user_pref: np.ndarray  # (n_users, 18) float64, rows sum to 1
    user_activity: np.ndarray
    user_traffic: np.ndarray
    user_device: np.ndarray
    user_reg_day: np.ndarray
    user_reg_epoch: np.ndarray


def _build_world(cfg: GeneratorConfig) -> _World:
    day0 = _epoch(cfg.start_date)
    rng = _rng(cfg.seed, 0)
    n_i, n_u = cfg.n_items, cfg.n_users

    # genres: skewed base popularity; the shift permutation swaps popular <-> rare genres
    genre_base = 1.0 / (rng.permutation(N_GENRES) + 1.0) ** 0.9
    genre_base /= genre_base.sum()
    by_pop = np.argsort(-genre_base, kind="stable")
    genre_perm = np.empty(N_GENRES, dtype=np.int64)
    genre_perm[by_pop] = by_pop[::-1]

    # ---- items
    ngen = rng.choice([1, 2, 3], size=n_i, p=[0.35, 0.45, 0.20])
    keys = np.log(genre_base)[None, :] + rng.gumbel(size=(n_i, N_GENRES))
    top3 = np.argsort(-keys, axis=1, kind="stable")[:, :3]
    item_genres = np.where(np.arange(3)[None, :] < ngen[:, None], top3, -1).astype(np.int16)
    pop = 1.0 / (rng.permutation(n_i) + 1.0) ** cfg.zipf_exponent
    quality = rng.lognormal(0.0, 0.3, size=n_i)
    is_series = rng.random(n_i) < 0.25
    duration = np.where(
        is_series,
        rng.integers(1200, 3600, size=n_i),
        np.clip(rng.normal(6300, 1500, size=n_i), 4200, 10800).astype(np.int64),
    ).astype(np.int64)
    year = np.clip(2025 - np.floor(rng.exponential(12.0, size=n_i)), 1920, 2025).astype(np.int64)
    # tags: one per genre (tag_0..tag_89, genre-related), sometimes a generic tag_90..tag_99
    tag_g = np.where(item_genres >= 0, item_genres.astype(np.int64) * 5 + rng.integers(0, 5, size=(n_i, 3)), -1)
    generic = np.where(rng.random(n_i) < 0.3, 90 + rng.integers(0, 10, size=n_i), -1)
    item_tags = np.concatenate([tag_g, generic[:, None]], axis=1).astype(np.int16)

    n_new_items = round(n_i * cfg.new_item_share) if cfg.days > 1 else 0
    n_new_items = min(n_new_items, max(0, n_i - cfg.slate_size))
    perm_i = rng.permutation(n_i)
    added_day = np.zeros(n_i, dtype=np.int64)
    past_i = rng.integers(_SECONDS_PER_DAY, 10 * 365 * _SECONDS_PER_DAY, size=n_i)
    added_epoch = day0 - past_i
    added_day[:] = np.floor_divide(added_epoch - day0, _SECONDS_PER_DAY)
    new_i = perm_i[:n_new_items]
    if n_new_items:
        added_day[new_i] = rng.integers(1, cfg.days, size=n_new_items)
        added_epoch[new_i] = day0 + added_day[new_i] * _SECONDS_PER_DAY
    # burst candidates (used only by shift_kind="new_items"); drawn always to keep streams stable
    old_i = perm_i[n_new_items:]
    n_burst = max(1, round(n_i * _BURST_ITEM_SHARE))
    burst_pick = old_i[rng.permutation(len(old_i))[:n_burst]]
    burst = np.zeros(n_i, dtype=bool)

    shift_day = None if cfg.shift_date is None else (cfg.shift_date - cfg.start_date).days
    if shift_day is not None and cfg.shift_kind == "new_items" and shift_day < cfg.days:
        # keep enough items on day 0 for a full slate
        keep = max(0, min(len(burst_pick), len(old_i) - cfg.slate_size)) if shift_day > 0 else len(burst_pick)
        burst_pick = burst_pick[:keep]
        burst[burst_pick] = True
        bday = max(shift_day, 0)
        added_day[burst_pick] = bday
        added_epoch[burst_pick] = day0 + bday * _SECONDS_PER_DAY

    # ---- users
    country = _choice(rng, _COUNTRY_P, n_u)
    lang = np.where(rng.random(n_u) < 0.8, _COUNTRY_LANG[country], np.where(rng.random(n_u) < 0.5, "en", "ru"))
    raw_pref = rng.dirichlet(2.0 * genre_base, size=n_u)
    raw_pref = np.nan_to_num(raw_pref, nan=0.0)
    pref = 0.97 * raw_pref + 0.03 / N_GENRES
    pref /= pref.sum(axis=1, keepdims=True)
    activity = rng.lognormal(0.0, 1.0, size=n_u)
    boost = np.isin(_COUNTRY_CODES[country], _TRAFFIC_BOOST_COUNTRIES)
    traffic = rng.lognormal(0.0, 1.0, size=n_u) * np.where(boost, 4.0, 1.0)
    device = _choice(rng, _DEVICE_P, n_u)
    n_new_users = round(n_u * cfg.new_user_share) if cfg.days > 1 else 0
    n_new_users = min(n_new_users, n_u - 1)
    reg_epoch = day0 - rng.integers(_SECONDS_PER_DAY, 3 * 365 * _SECONDS_PER_DAY, size=n_u)
    new_u = rng.permutation(n_u)[:n_new_users]
    reg_day_new = rng.integers(1, max(cfg.days, 2), size=n_new_users)
    reg_sec_new = rng.integers(0, _SECONDS_PER_DAY - 4 * 3600, size=n_new_users)
    if n_new_users:
        reg_epoch[new_u] = day0 + reg_day_new * _SECONDS_PER_DAY + reg_sec_new
    reg_day = np.floor_divide(reg_epoch - day0, _SECONDS_PER_DAY)

    return _World(
        cfg=cfg,
        day0_epoch=day0,
        shift_day=shift_day,
        genre_base=genre_base,
        genre_perm=genre_perm,
        item_genres=item_genres,
        item_ngen=ngen.astype(np.int64),
        item_pop=pop,
        item_quality=quality,
        item_duration=duration,
        item_year=year,
        item_tags=item_tags,
        item_added_day=added_day,
        item_added_epoch=added_epoch,
        item_burst=burst,
        user_country=country.astype(np.int64),
        user_lang=lang,
        user_pref=pref,
        user_activity=activity,
        user_traffic=traffic,
        user_device=device.astype(np.int64),
        user_reg_day=reg_day,
        user_reg_epoch=reg_epoch,
    )


def _list_column(codes: np.ndarray, names: pl.Series) -> pl.Series:
    """(n, m) int codes with -1 = absent -> list[str] column (empty list when all absent)."""
    cols = []
    for j in range(codes.shape[1]):  # per slot, not per record
        c = codes[:, j].astype(np.int64)
        s = names.gather(np.maximum(c, 0))
        cols.append(pl.Series(f"c{j}", s).set(pl.Series(c < 0), None))
    df = pl.DataFrame(cols)
    return df.select(pl.concat_list(pl.all()).list.drop_nulls().alias("x")).to_series()


def _items_builder(w: _World) -> Callable[[np.ndarray], pl.DataFrame]:
    genre_names = pl.Series(GENRES, dtype=pl.String)
    tag_names = pl.Series([f"tag_{i}" for i in range(100)], dtype=pl.String)

    def build(idx: np.ndarray) -> pl.DataFrame:
        ids = pl.Series("item_id", idx.astype(np.int64))
        return pl.DataFrame(
            {
                "item_id": ids,
                "title": pl.select(pl.format("Movie #{}", ids.cast(pl.String).str.zfill(5))).to_series(),
                "release_year": w.item_year[idx],
                "duration_sec": w.item_duration[idx],
                "genres": _list_column(w.item_genres[idx], genre_names),
                "tags": _list_column(w.item_tags[idx], tag_names),
                "added_at": _format_ts_fixed(w.item_added_epoch[idx], CATALOG_OFFSET_MIN),
            }
        )

    return build


def _users_builder(w: _World) -> Callable[[np.ndarray], pl.DataFrame]:
    def build(idx: np.ndarray) -> pl.DataFrame:
        pref = np.round(w.user_pref[idx], 4)
        gp = (
            pl.DataFrame({g: pref[:, j] for j, g in enumerate(GENRES)})
            .select(pl.struct(pl.all()).alias("genre_pref"))
            .to_series()
        )
        country = w.user_country[idx]
        return pl.DataFrame(
            {
                "user_id": idx.astype(np.int64),
                "country": _COUNTRY_CODES[country],
                "ui_language": w.user_lang[idx],
                "registered_at": _format_ts(w.user_reg_epoch[idx], country),
                "genre_pref": gp,
            }
        )

    return build


# --------------------------------------------------------------------------------------------
# one simulated day
# --------------------------------------------------------------------------------------------


@dataclass
class _Table:
    name: str
    n_rows: int
    build: Callable[[np.ndarray], pl.DataFrame]


def _times_in_day(rng: np.random.Generator, w: _World, users: np.ndarray, d: int) -> np.ndarray:
    """Seconds since the UTC day start: evening-peaked in the user's local time, wrapped into
    the UTC day, and after the registration instant for users who register that day."""
    n = len(users)
    hour = _choice(rng, _HOUR_W, n)
    local = hour * 3600 + rng.integers(0, 3600, size=n)
    t = np.mod(local - _COUNTRY_OFFSET_SEC[w.user_country[users]], _SECONDS_PER_DAY)
    u = rng.random(n)
    lo = w.user_reg_epoch[users] - (w.day0_epoch + d * _SECONDS_PER_DAY) + 60
    late = lo > 0  # registered today
    t = np.where(late, lo + np.floor(u * (_SECONDS_PER_DAY - lo)).astype(np.int64), t)
    return np.minimum(t, _SECONDS_PER_DAY - 1).astype(np.int64)


def _affinity(pref: np.ndarray, users: np.ndarray, items: np.ndarray, w: _World) -> np.ndarray:
    """Mean taste of each user over the item's genres, relative to uniform (1.0 = average)."""
    g = w.item_genres[items]
    aff = np.zeros(len(users), dtype=np.float32)
    for j in range(3):  # per genre slot
        gj = g[:, j].astype(np.int64)
        aff += np.where(gj >= 0, pref[users, np.maximum(gj, 0)], 0.0).astype(np.float32)
    return aff * (N_GENRES / w.item_ngen[items]).astype(np.float32)


def _post_watch(rng, completion, rel, end_t):
    """like / dislike / rate after a watch -> (type code per event, value, time, watch index)."""
    n = len(completion)
    r = rng.random(n)
    p_like = 0.04 + 0.40 * completion**2 * np.minimum(1.0, 0.4 + rel / 5.0)
    p_dislike = 0.25 * (1.0 - completion) ** 2
    like = r < p_like
    dislike = (~like) & (r < p_like + p_dislike)
    rate = rng.random(n) < 0.15
    stars = np.clip(np.round((0.6 + 4.4 * completion + rng.normal(0.0, 0.6, n)) * 2) / 2, 0.5, 5.0)
    t1 = end_t + 5 + np.floor(rng.exponential(30.0, n)).astype(np.int64)
    t2 = t1 + 3 + np.floor(rng.exponential(10.0, n)).astype(np.int64)
    wi_like, wi_dis, wi_rate = np.flatnonzero(like), np.flatnonzero(dislike), np.flatnonzero(rate)
    types = np.concatenate([np.full(len(wi_like), 2), np.full(len(wi_dis), 3), np.full(len(wi_rate), 4)])
    idx = np.concatenate([wi_like, wi_dis, wi_rate])
    value = np.concatenate([np.full(len(wi_like) + len(wi_dis), np.nan), stars[wi_rate]])
    times = np.concatenate([t1[wi_like], t1[wi_dis], t2[wi_rate]])
    return types.astype(np.int64), value, np.minimum(times, _SECONDS_PER_DAY - 1), idx


def _watch_stats(rng, rel, duration):
    mean = 0.15 + 0.70 * rel / (rel + 2.0)
    kappa = 3.0
    c = rng.beta(mean * kappa, (1.0 - mean) * kappa)
    watch_time = np.round(c * duration, 1)
    completion = np.clip(np.round(watch_time / duration, 4), 0.0, 1.0)
    pause = np.where(rng.random(len(c)) < 0.2, np.floor(rng.exponential(300.0, len(c))), 0).astype(np.int64)
    span = np.ceil(watch_time).astype(np.int64) + pause
    return watch_time, completion, span


_PERSONAL_FLOOR = 0.2  # weight of off-genre items in a personalized slate, relative to on-genre


def _personalize_slates(
    w: _World, pref: np.ndarray, req_user: np.ndarray, avail: np.ndarray, weights: np.ndarray, slate: np.ndarray, d: int
) -> None:
    """Redraw the slates of a share of requests around one genre drawn from the user's
    tastes (popularity within the genre), in place. Own RNG stream, one draw per genre."""
    rng = _rng(w.cfg.seed, 3, d)
    n_req, k = slate.shape
    pers = np.flatnonzero(rng.random(n_req) < w.cfg.personalized_share)
    if pers.size == 0:
        return
    cum = np.cumsum(pref[req_user[pers]], axis=1)
    genre = (cum < rng.random(pers.size)[:, None] * cum[:, -1:]).sum(axis=1)
    member = (w.item_genres[avail][:, :, None] == np.arange(N_GENRES)).any(axis=1)
    for g in np.unique(genre):
        rows = pers[genre == g]
        slate[rows] = avail[_sample_slates(rng, weights * (_PERSONAL_FLOOR + member[:, g]), rows.size, k)]


def _browse_sessions(
    w: _World,
    pref: np.ndarray,
    req_user: np.ndarray,
    req_sess: np.ndarray,
    req_round: np.ndarray,
    slate: np.ndarray,
    pos_bias: np.ndarray,
    d: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Sessions, request by request within each: a later list shows again items the session
    looked at (each with _RESHOW_P, in place of a random entry; `slate` (n_req, k) is changed in
    place), and the user looks at items of each list (views, by taste and position, more
    readily at ones looked at before). Returns per impression (n_req, k) whether the session had
    looked at the item before the request, and (flat) whether it was looked at in this list."""
    rng = _rng(w.cfg.seed, 6, d)
    n_req, k = slate.shape
    memory = np.full((int(req_sess.max()) + 1 if n_req else 0, _SESSION_MEMORY), -1, np.int64)
    seen = np.zeros((n_req, k), bool)
    viewed = np.zeros((n_req, k), bool)
    for r in range(int(req_round.max()) + 1 if n_req else 0):
        rows = np.flatnonzero(req_round == r)
        mem = memory[req_sess[rows]]
        if r > 0:
            present = (slate[rows][:, :, None] == mem[:, None, :]).any(axis=1)
            put = (mem >= 0) & ~present & (rng.random(mem.shape) < _RESHOW_P)
            slots = np.argsort(rng.random((len(rows), k)), axis=1)[:, : mem.shape[1]]
            for j in range(mem.shape[1]):
                sel = np.flatnonzero(put[:, j])
                slate[rows[sel], slots[sel, j]] = mem[sel, j]
            seen[rows] = ((slate[rows][:, :, None] == mem[:, None, :]) & (mem[:, None, :] >= 0)).any(axis=2)
        rel = _affinity(pref, np.repeat(req_user[rows], k), slate[rows].ravel(), w).reshape(len(rows), k)
        p_view = _VIEW_RATE * pos_bias[None, :] * ((rel + 0.05) / 1.05) * (1.0 + _SEEN_CLICK_BOOST * seen[rows])
        viewed[rows] = rng.random((len(rows), k)) < np.minimum(p_view, 0.9)
        # the session's memory: this list's views (in shown order) before the older ones
        for i, row in enumerate(rows):
            looked = slate[row][viewed[row]]
            if looked.size:
                old = mem[i][(mem[i] >= 0) & ~np.isin(mem[i], looked)]
                merged = np.concatenate([looked, old])[:_SESSION_MEMORY]
                memory[req_sess[row]] = np.pad(merged, (0, _SESSION_MEMORY - len(merged)), constant_values=-1)
    return seen, viewed.ravel()


def _simulate_day(w: _World, d: int) -> dict[str, _Table]:
    cfg = w.cfg
    rng = _rng(cfg.seed, 1, d)
    date = cfg.start_date + dt.timedelta(days=d)
    ymd = date.strftime("%Y%m%d")
    day_epoch = w.day0_epoch + d * _SECONDS_PER_DAY
    shifted = w.shift_day is not None and d >= w.shift_day
    kind = cfg.shift_kind if shifted else None
    pref = w.user_pref[:, w.genre_perm] if kind == "genre" else w.user_pref

    # ---- requests, in sessions
    n_req = cfg.requests_per_day
    active = np.flatnonzero(w.user_reg_day <= d)
    act_w = w.user_activity[active] * (w.user_traffic[active] if kind == "traffic" else 1.0)
    lengths = rng.geometric(_SESSION_P, n_req)
    n_sess = int(np.searchsorted(np.cumsum(lengths), n_req) + 1)
    lengths = lengths[:n_sess]
    lengths[-1] -= int(lengths.sum()) - n_req
    sess_user = active[_choice(rng, act_w, n_sess)]
    sess_t0 = _times_in_day(rng, w, sess_user, d)
    req_sess = np.repeat(np.arange(n_sess, dtype=np.int64), lengths)
    req_round = np.arange(n_req, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    gap = _SESSION_GAP_MIN + np.floor(rng.exponential(_SESSION_GAP_MEAN, n_req)).astype(np.int64)
    gap[req_round == 0] = 0
    offset = np.cumsum(gap) - np.repeat((np.cumsum(gap))[np.cumsum(lengths) - lengths], lengths)
    req_user = sess_user[req_sess]
    req_t = np.minimum(sess_t0[req_sess] + offset, _SECONDS_PER_DAY - 1)
    order = np.argsort(req_t, kind="stable")
    req_user, req_t, req_sess, req_round = req_user[order], req_t[order], req_sess[order], req_round[order]
    req_surface = _choice(rng, _SURFACE_P_SHIFTED if kind == "traffic" else _SURFACE_P, n_req)
    p_primary = _PRIMARY_DEVICE_P_SHIFTED if kind == "traffic" else _PRIMARY_DEVICE_P
    mix = _choice(rng, _DEVICE_P_SHIFTED if kind == "traffic" else _DEVICE_P, n_req)
    req_device = np.where(rng.random(n_req) < p_primary, w.user_device[req_user], mix)
    req_gid = np.int64(d) * n_req + np.arange(n_req, dtype=np.int64)

    # ---- slates
    avail = np.flatnonzero(w.item_added_day <= d)
    weights = w.item_pop[avail].copy()
    if kind == "new_items":
        b = w.item_burst[avail]
        assert w.shift_day is not None  # kind is set only from the shift day on
        if b.any() and (~b).any():
            share = _BURST_SHARE * _BURST_DECAY ** (d - max(w.shift_day, 0))
            weights[b] *= share / (1.0 - share) * weights[~b].sum() / weights[b].sum()
    k = min(cfg.slate_size, len(avail))
    slate = avail[_sample_slates(rng, weights, n_req, k)].astype(np.int64)
    if cfg.personalized_share > 0:
        _personalize_slates(w, pref, req_user, avail, weights, slate, d)
    pos_bias = (1.0 / (1.0 + np.arange(k)) ** cfg.position_bias_exponent).astype(np.float32)
    seen, viewed = _browse_sessions(w, pref, req_user, req_sess, req_round, slate, pos_bias, d)
    slate = slate.ravel()
    n_imp = n_req * k
    imp_base = np.int64(d) * n_req * cfg.slate_size

    # ---- views (before choosing, seconds after the list was shown)
    vrng = _rng(cfg.seed, 7, d)
    vi = np.flatnonzero(viewed)
    view_t = np.minimum(
        req_t[vi // k] + 1 + vi % k + np.minimum(np.floor(vrng.exponential(4.0, len(vi))), 10).astype(np.int64),
        _SECONDS_PER_DAY - 1,
    )
    view_sub = _choice(vrng, _VIEW_SUBTYPE_P, len(vi))

    # ---- clicks (per impression, vectorised)
    imp_req = np.repeat(np.arange(n_req, dtype=np.int64), k)
    imp_pos = np.tile(np.arange(k, dtype=np.int64), n_req)
    imp_user = req_user[imp_req]
    rel = _affinity(pref, imp_user, slate, w)
    p_click = (
        _BASE_CTR
        * _SURFACE_CTR[req_surface].astype(np.float32)[imp_req]
        * pos_bias[imp_pos]
        * w.item_quality.astype(np.float32)[slate]
        * ((rel + 0.05) / 1.05)
        * (1.0 + _SEEN_CLICK_BOOST * seen.ravel())
        * (1.0 + _VIEWED_CLICK_BOOST * viewed)
    )
    np.minimum(p_click, 0.9, out=p_click)
    ci = np.flatnonzero(rng.random(n_imp, dtype=np.float32) < p_click)
    del p_click, imp_user
    c_rel = rel[ci].astype(np.float64)
    del rel
    c_req = imp_req[ci]
    del imp_req
    c_pos = imp_pos[ci]
    del imp_pos
    c_user, c_item = req_user[c_req], slate[ci]
    click_t = np.minimum(
        req_t[c_req] + 2 + c_pos + np.floor(rng.exponential(20.0, len(ci))).astype(np.int64), _SECONDS_PER_DAY - 1
    )
    play = rng.random(len(ci)) < 0.65 + 0.25 * np.minimum(c_rel / 6.0, 1.0)
    pl_i = np.flatnonzero(play)
    play_t = np.minimum(
        click_t[pl_i] + 1 + np.floor(rng.exponential(6.0, len(pl_i))).astype(np.int64), _SECONDS_PER_DAY - 1
    )
    p_user, p_item, p_rel, p_req = c_user[pl_i], c_item[pl_i], c_rel[pl_i], c_req[pl_i]
    p_wt, p_comp, p_span = _watch_stats(rng, p_rel, w.item_duration[p_item])
    pw_type, pw_val, pw_t, pw_idx = _post_watch(rng, p_comp, p_rel, play_t + p_span)

    # ---- organic plays (no request)
    n_org = int(round(len(pl_i) * _ORGANIC_SHARE / (1.0 - _ORGANIC_SHARE)))
    o_user = active[_choice(rng, act_w, n_org)]
    o_t = _times_in_day(rng, w, o_user, d)
    cum = np.cumsum(pref[o_user], axis=1)
    o_genre = np.minimum((cum < rng.random(n_org)[:, None] * cum[:, -1:]).sum(axis=1), N_GENRES - 1)
    o_item = np.empty(n_org, dtype=np.int64)
    u_pick = rng.random(n_org)
    avail_genres = w.item_genres[avail]
    for g in range(N_GENRES):  # per genre
        sel = np.flatnonzero(o_genre == g)
        if sel.size == 0:
            continue
        cand = avail[(avail_genres == g).any(axis=1)]
        if cand.size == 0:
            cand = avail
        cdf = np.cumsum(w.item_pop[cand])
        cdf /= cdf[-1]
        o_item[sel] = cand[np.minimum(np.searchsorted(cdf, u_pick[sel], side="right"), len(cand) - 1)]
    o_rel = _affinity(pref, o_user, o_item, w).astype(np.float64)
    o_wt, o_comp, o_span = _watch_stats(rng, o_rel, w.item_duration[o_item])
    ow_type, ow_val, ow_t, ow_idx = _post_watch(rng, o_comp, o_rel, o_t + o_span)
    o_dev = w.user_device[o_user]

    # ---- events: one columnar set, then time-sorted
    n_c, n_p, n_v = len(ci), len(pl_i), len(vi)
    ev_imp = np.concatenate(
        [
            imp_base + ci,
            imp_base + ci[pl_i],
            imp_base + ci[pl_i][pw_idx],
            np.full(n_org + len(ow_idx), -1, dtype=np.int64),
            imp_base + vi,
        ]
    )
    ev_org = np.concatenate(
        [
            np.full(n_c + n_p + len(pw_idx), -1, dtype=np.int64),
            np.arange(n_org, dtype=np.int64),
            ow_idx.astype(np.int64),
            np.full(n_v, -1, dtype=np.int64),
        ]
    )
    ev_user = np.concatenate([c_user, p_user, p_user[pw_idx], o_user, o_user[ow_idx], req_user[vi // k]])
    ev_item = np.concatenate([c_item, p_item, p_item[pw_idx], o_item, o_item[ow_idx], slate[vi]])
    ev_type = np.concatenate(
        [
            np.zeros(n_c, np.int64),
            np.ones(n_p, np.int64),
            pw_type,
            np.ones(n_org, np.int64),
            ow_type,
            np.full(n_v, _VIEW, np.int64),
        ]
    )
    ev_val = np.concatenate([np.full(n_c + n_p, np.nan), pw_val, np.full(n_org, np.nan), ow_val, np.full(n_v, np.nan)])
    ev_t = np.concatenate([click_t, play_t, pw_t, o_t, ow_t, view_t])
    ev_rg = np.concatenate(
        [
            req_gid[c_req],
            req_gid[p_req],
            req_gid[p_req][pw_idx],
            np.full(n_org + len(ow_idx), -1, dtype=np.int64),
            req_gid[vi // k],
        ]
    )
    ev_sub = np.concatenate([np.full(len(ev_t) - n_v, -1, np.int64), view_sub])
    o = np.argsort(ev_t, kind="stable")
    ev = {
        k_: v[o]
        for k_, v in dict(
            imp=ev_imp, org=ev_org, user=ev_user, item=ev_item, type=ev_type, val=ev_val, t=ev_t, rg=ev_rg, sub=ev_sub
        ).items()
    }

    # ---- watches
    wa_imp = np.concatenate([imp_base + ci[pl_i], np.full(n_org, -1, dtype=np.int64)])
    wa_org = np.concatenate([np.full(n_p, -1, dtype=np.int64), np.arange(n_org, dtype=np.int64)])
    wa_user = np.concatenate([p_user, o_user])
    wa_t = np.concatenate([play_t, o_t])
    o = np.argsort(wa_t, kind="stable")
    wa = dict(
        imp=wa_imp[o],
        org=wa_org[o],
        user=wa_user[o],
        item=np.concatenate([p_item, o_item])[o],
        t=wa_t[o],
        span=np.concatenate([p_span, o_span])[o],
        wt=np.concatenate([p_wt, o_wt])[o],
        comp=np.concatenate([p_comp, o_comp])[o],
        dev=np.concatenate([req_device[p_req], o_dev])[o],
        rg=np.concatenate([req_gid[p_req], np.full(n_org, -1, dtype=np.int64)])[o],
    )

    # ---- request-level strings (shared by the impressions of a request)
    req_country = w.user_country[req_user]
    shown_s = _format_ts(day_epoch + req_t, req_country)
    reqid_s = "req-" + pl.Series(req_gid).cast(pl.String).str.zfill(12)
    sess_s = "s-" + ymd + "-" + pl.Series(req_sess).cast(pl.String).str.zfill(7)
    # a request's global id -> its session string (events and watches of requests carry it)
    req_of_gid = {"base": np.int64(d) * n_req}

    def _sess_col(rg: np.ndarray) -> pl.Series:
        linked = rg >= 0
        idx = np.where(linked, rg - req_of_gid["base"], 0)
        return sess_s.gather(idx).set(pl.Series(~linked), None)

    def build_impressions(idx: np.ndarray) -> pl.DataFrame:
        r = idx // k
        return pl.DataFrame(
            {
                "impression_id": imp_base + idx,
                "user_id": req_user[r],
                "item_id": slate[idx],
                "surface": _SURFACE_S.gather(req_surface[r]),
                "position": idx % k,
                "shown_at": shown_s.gather(r),
                "request_id": reqid_s.gather(r),
                "device_type": _DEVICE_S.gather(req_device[r]),
                "session_id": sess_s.gather(r),
            }
        )

    def _req_col(rg: np.ndarray) -> pl.Series:
        s = pl.Series(rg)
        return ("req-" + s.cast(pl.String).str.zfill(12)).set(s < 0, None).cast(pl.String)

    def build_events(idx: np.ndarray) -> pl.DataFrame:
        imp, org, typ = ev["imp"][idx], ev["org"][idx], ev["type"][idx]
        tname = _EVENT_TYPE_S.gather(typ)
        linked = pl.Series(imp >= 0)
        eid = ("ev-" + pl.Series(imp).cast(pl.String) + "-" + tname).zip_with(
            linked, "ev-o" + ymd + "-" + pl.Series(org).cast(pl.String).str.zfill(7) + "-" + tname
        )
        user = ev["user"][idx]
        return pl.DataFrame(
            {
                "event_id": eid,
                "user_id": user,
                "item_id": ev["item"][idx],
                "type": tname,
                "value": pl.Series(ev["val"][idx], dtype=pl.Float64, nan_to_null=True),
                "occurred_at": _format_ts(day_epoch + ev["t"][idx], w.user_country[user]),
                "request_id": _req_col(ev["rg"][idx]),
                "subtype": _VIEW_SUBTYPE_S.gather(np.maximum(ev["sub"][idx], 0)).set(
                    pl.Series(ev["sub"][idx] < 0), None
                ),
                "session_id": _sess_col(ev["rg"][idx]),
            }
        )

    def build_watches(idx: np.ndarray) -> pl.DataFrame:
        imp, org, user, t = wa["imp"][idx], wa["org"][idx], wa["user"][idx], wa["t"][idx]
        country = w.user_country[user]
        linked = pl.Series(imp >= 0)
        wid = ("w-" + pl.Series(imp).cast(pl.String)).zip_with(
            linked, "w-o" + ymd + "-" + pl.Series(org).cast(pl.String).str.zfill(7)
        )
        # a watch of a request belongs to the request's session; an organic one to the user's
        # four-hour block of the day
        organic = "sess-" + pl.Series(user).cast(pl.String) + "-" + ymd + "-" + pl.Series(t // 14_400).cast(pl.String)
        sess = _sess_col(wa["rg"][idx]).fill_null(organic)
        return pl.DataFrame(
            {
                "watch_id": wid,
                "user_id": user,
                "item_id": wa["item"][idx],
                "started_at": _format_ts(day_epoch + t, country),
                "ended_at": _format_ts(day_epoch + t + wa["span"][idx], country),
                "watch_time_sec": pl.Series(wa["wt"][idx], dtype=pl.Float64),
                "completion": pl.Series(wa["comp"][idx], dtype=pl.Float64),
                "device_type": _DEVICE_S.gather(wa["dev"][idx]),
                "session_id": sess,
                "request_id": _req_col(wa["rg"][idx]),
            }
        )

    return {
        "impressions": _Table("impressions", n_imp, build_impressions),
        "events": _Table("events", len(ev["t"]), build_events),
        "watch_stats": _Table("watch_stats", len(wa["t"]), build_watches),
    }


# --------------------------------------------------------------------------------------------
# bad-record injection
# --------------------------------------------------------------------------------------------

# (kind, variant) cycled in this order; the reason each one must be quarantined for is given by
# _bad_line(). Daily logs:
_COMMON_HEAD: list[tuple[str, str | None]] = [
    ("malformed_json", None),
    ("invalid_utf8", None),
    ("not_an_object", None),
    ("missing_required", None),
    ("wrong_type", None),
    ("bad_timestamp", None),
]
_COMMON_TAIL: list[tuple[str, str | None]] = [
    ("duplicate_id", None),
    ("outside_partition", None),
    ("unknown_user", None),
    ("unknown_item", None),
]
LOG_BAD_KINDS: dict[str, list[tuple[str, str | None]]] = {
    "impressions": _COMMON_HEAD + [("out_of_domain", "position")] + _COMMON_TAIL,
    "events": _COMMON_HEAD + [("out_of_domain", "type"), ("out_of_domain", "value")] + _COMMON_TAIL,
    "watch_stats": _COMMON_HEAD
    + [("out_of_domain", "completion"), ("out_of_domain", "watch_time_sec"), ("out_of_domain", "ended_at")]
    + _COMMON_TAIL,
}
SNAPSHOT_BAD_KINDS: list[tuple[str, str | None]] = [
    ("wrong_type", None),
    ("missing_required", None),
    ("duplicate_id", None),
    ("malformed_json", None),
]

_UTF8_FIELD = {
    "impressions": "device_type",
    "events": "event_id",
    "watch_stats": "session_id",
    "items": "title",
    "users": "ui_language",
}
_NAN_FIELD = {
    "impressions": "position",
    "events": "value",
    "watch_stats": "completion",
    "items": "duration_sec",
    "users": "user_id",
}
_NOT_OBJECTS = (b"[1,2,3]", b'"not an object"', b"42")
_PLACEHOLDER = "__INVALID_UTF8__"


def _dumps(rec: dict) -> bytes:
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _shift_ts(s: str, **delta) -> str:
    return (dt.datetime.fromisoformat(s) + dt.timedelta(**delta)).isoformat()


@dataclass
class _Bad:
    gap: int  # inserted before good line `gap` (0-based; n = at the end)
    line: bytes
    kind: str
    reason: str


def _bad_line(
    table: str, kind: str, variant: str | None, cycle: int, rec: dict, fresh_id, serial: int, dup_line: bytes
) -> tuple[bytes, str]:
    """Turn a copy of a good record into exactly one kind of bad line -> (line, reason)."""
    tc = contract.BY_NAME[table]
    id_f, time_f = tc.id_field, tc.time_field
    if kind == "duplicate_id":
        return dup_line, "duplicate_id"
    rec = dict(rec)
    if table in LOG_FILES or kind != "missing_required":
        rec[id_f] = fresh_id
    if kind == "malformed_json":
        if cycle % 2 == 0:
            text = _dumps(rec)
            return text[: max(1, len(text) // 2)], "malformed_json"
        rec[_NAN_FIELD[table]] = float("nan")
        return json.dumps(rec, separators=(",", ":"), allow_nan=True).encode("ascii"), "non_standard_number"
    if kind == "invalid_utf8":
        rec[_UTF8_FIELD[table]] = str(rec[_UTF8_FIELD[table]]) + _PLACEHOLDER
        return _dumps(rec).replace(_PLACEHOLDER.encode(), b"\xff\xfe"), "invalid_utf8"
    if kind == "not_an_object":
        return _NOT_OBJECTS[cycle % len(_NOT_OBJECTS)], "not_an_object"
    ref = "user_id" if table != "items" else "item_id"
    if kind == "missing_required":
        field = ref if table in LOG_FILES else id_f
        del rec[field]
        return _dumps(rec), f"missing_required:{field}"
    if kind == "wrong_type":
        field = ref if table in LOG_FILES else id_f
        rec[field] = str(rec[field])
        return _dumps(rec), f"wrong_type:{field}"
    if kind == "bad_timestamp":
        rec[time_f] = rec[time_f][:19]  # drop the offset
        return _dumps(rec), f"bad_timestamp:{time_f}"
    if kind == "out_of_domain":
        if variant == "position":
            rec["position"] = -1
        elif variant == "type":
            rec["type"], rec["value"], rec["subtype"] = "teleport", None, None
        elif variant == "value":
            rec["type"], rec["value"], rec["subtype"] = "rate", -1.0, None
        elif variant == "completion":
            rec["completion"] = 1.5
        elif variant == "watch_time_sec":
            rec["watch_time_sec"] = -5.0
        elif variant == "ended_at":
            rec["ended_at"] = _shift_ts(rec["started_at"], seconds=-60)
        return _dumps(rec), f"out_of_domain:{variant}"
    if kind == "outside_partition":
        days = -1 if cycle % 2 == 0 else 1
        rec[time_f] = _shift_ts(rec[time_f], days=days)
        if table == "watch_stats" and rec.get("ended_at"):
            rec["ended_at"] = _shift_ts(rec["ended_at"], days=days)
        return _dumps(rec), f"outside_partition:{time_f}"
    if kind == "unknown_user":
        rec["user_id"] = UNKNOWN_ID_BASE + serial
        return _dumps(rec), "unknown_user"
    if kind == "unknown_item":
        rec["item_id"] = UNKNOWN_ID_BASE + serial
        return _dumps(rec), "unknown_item"
    raise ValueError(f"unknown bad kind {kind!r}")


def _plan_bad(
    rng: np.random.Generator, table: _Table, kinds, rate: float, fresh_id: Callable[[int], object], serial_base: int
) -> list[_Bad]:
    n = table.n_rows
    if rate <= 0 or n == 0:
        return []
    n_bad = max(len(kinds), int(round(rate * n)))
    seq = [kinds[j % len(kinds)] for j in range(n_bad)]
    gaps = rng.integers(0, n + 1, size=n_bad)
    rows = rng.integers(0, n, size=n_bad)
    is_dup = np.array([kd == "duplicate_id" for kd, _ in seq])
    if is_dup.any():  # the copy goes after its original
        gaps[is_dup] = rng.integers(1, n + 1, size=int(is_dup.sum()))
        rows[is_dup] = np.floor(rng.random(int(is_dup.sum())) * gaps[is_dup]).astype(np.int64)
    lines = table.build(rows.astype(np.int64)).write_ndjson().encode().splitlines(keepends=True)
    out = []
    for j, (kind, variant) in enumerate(seq):  # per bad record
        line, reason = _bad_line(
            table.name, kind, variant, j // len(kinds), json.loads(lines[j]), fresh_id(j), serial_base + j, lines[j]
        )
        if not line.endswith(b"\n"):
            line += b"\n"
        out.append(_Bad(int(gaps[j]), line, kind, reason))
    out.sort(key=lambda b: b.gap)  # stable: keeps the plan order among equal gaps
    return out


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _write_table(path: Path, table: _Table, bad: list[_Bad], chunk_rows: int) -> None:
    """Atomically write the good rows (chunked) with the bad lines interleaved at their gaps."""
    tmp = _tmp_path(path)
    n = table.n_rows
    with open(tmp, "wb") as f:
        b = 0
        for lo in range(0, n, chunk_rows):
            hi = min(lo + chunk_rows, n)
            df = table.build(np.arange(lo, hi, dtype=np.int64))
            if b >= len(bad) or bad[b].gap >= hi:
                df.write_ndjson(f)
                continue
            buf = io.BytesIO()
            df.write_ndjson(buf)
            data = buf.getvalue()
            del df, buf
            nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
            prev = 0
            while b < len(bad) and bad[b].gap < hi:  # per bad record
                rel_line = bad[b].gap - lo
                cut = 0 if rel_line == 0 else int(nl[rel_line - 1]) + 1
                f.write(data[prev:cut])
                f.write(bad[b].line)
                prev = cut
                b += 1
            f.write(data[prev:])
        for rest in bad[b:]:
            f.write(rest.line)
    os.replace(tmp, path)


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _manifest_lines(file_name: str, bad: list[_Bad]) -> list[bytes]:
    out = []
    for j, b in enumerate(bad):
        rec = {"file": file_name, "line_no": b.gap + j + 1, "kind": b.kind, "reason": b.reason}
        out.append(json.dumps(rec, separators=(",", ":")).encode() + b"\n")
    return out


def _write_manifest(path: Path, lines: list[bytes], enabled: bool) -> None:
    if enabled:
        _write_bytes(path, b"".join(lines))
    elif path.exists():
        path.unlink()  # stale manifest of an earlier run with injection


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------


def generate(config: GeneratorConfig, root: Path | str) -> dict:
    """Write the landing zone under ``<root>/landing`` and return a summary.

    Summary: {"root", "landing", "config", "items": {"path", "rows", "bad"}, "users": {...},
    "days": {"YYYY-MM-DD": {"path", "impressions", "events", "watch_stats", "bad": {file: n}}},
    "totals": {"items", "users", "impressions", "events", "watch_stats", "bad"}}.
    Row counts are good rows; "bad" counts injected lines (see the manifests)."""
    cfg = config
    landing = Path(root) / LANDING
    landing.mkdir(parents=True, exist_ok=True)
    w = _build_world(cfg)
    inject = cfg.bad_record_rate > 0
    summary: dict = {
        "root": str(Path(root)),
        "landing": str(landing),
        "config": {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in dataclasses.asdict(cfg).items()},
        "days": {},
    }
    totals = {"items": cfg.n_items, "users": cfg.n_users, "impressions": 0, "events": 0, "watch_stats": 0, "bad": 0}

    # ---- snapshots
    snap_manifest: list[bytes] = []
    for s, (name, n, builder) in enumerate(
        (("items", cfg.n_items, _items_builder(w)), ("users", cfg.n_users, _users_builder(w)))
    ):
        table = _Table(name, n, builder)
        bad = _plan_bad(
            _rng(cfg.seed, 2, 0, s),
            table,
            SNAPSHOT_BAD_KINDS,
            cfg.bad_record_rate,
            lambda j: SNAPSHOT_BAD_ID_BASE + j,
            0,
        )
        _write_table(landing / f"{name}.jsonl", table, bad, cfg.chunk_rows)
        snap_manifest += _manifest_lines(f"{name}.jsonl", bad)
        summary[name] = {"path": str(landing / f"{name}.jsonl"), "rows": n, "bad": len(bad)}
        totals["bad"] += len(bad)
    _write_manifest(landing / MANIFEST, snap_manifest, inject)

    # ---- days
    for d, date in enumerate(cfg.dates):
        day_dir = landing / date.isoformat()
        day_dir.mkdir(parents=True, exist_ok=True)
        marker = day_dir / SUCCESS_MARKER
        if marker.exists():
            marker.unlink()  # readers must not see a half-rewritten partition as complete
        tables = _simulate_day(w, d)
        ymd = date.strftime("%Y%m%d")
        info: dict = {"path": str(day_dir), "bad": {}}
        manifest: list[bytes] = []
        for t_i, name in enumerate(LOG_FILES):
            table = tables[name]
            if name == "impressions":
                fresh = lambda j, d=d: BAD_IMPRESSION_ID_BASE + d * 10**8 + j  # noqa: E731
            elif name == "events":
                fresh = lambda j, ymd=ymd: f"ev-bad-{ymd}-{j:07d}"  # noqa: E731
            else:
                fresh = lambda j, ymd=ymd: f"w-bad-{ymd}-{j:07d}"  # noqa: E731
            bad = _plan_bad(
                _rng(cfg.seed, 2, 1 + d, t_i), table, LOG_BAD_KINDS[name], cfg.bad_record_rate, fresh, t_i * 10**7
            )
            _write_table(day_dir / f"{name}.jsonl", table, bad, cfg.chunk_rows)
            manifest += _manifest_lines(f"{name}.jsonl", bad)
            info[name] = table.n_rows
            info["bad"][name] = len(bad)
            totals[name] += table.n_rows
            totals["bad"] += len(bad)
        del tables
        _write_manifest(day_dir / MANIFEST, manifest, inject)
        _write_bytes(marker, b"")
        summary["days"][date.isoformat()] = info
    summary["totals"] = totals
    return summary


__all__ = [
    "GeneratorConfig",
    "generate",
    "GENRES",
    "SURFACES",
    "DEVICES",
    "SHIFT_KINDS",
    "COUNTRIES",
    "LOG_BAD_KINDS",
    "SNAPSHOT_BAD_KINDS",
    "MANIFEST",
    "SUCCESS_MARKER",
    "LANDING",
    "LOG_FILES",
    "UNKNOWN_ID_BASE",
    "SNAPSHOT_BAD_ID_BASE",
    "BAD_IMPRESSION_ID_BASE",
]


# --------------------------------------------------------------------------------------------
# the truth: what a perfect recommender would know
# --------------------------------------------------------------------------------------------


def true_positive_rates(config: GeneratorConfig, day: dt.date | str, min_completion: float = 0.6) -> np.ndarray:
    """(n_users, n_items) float64: the generator's own expectation of how many positives (a watch
    at least `min_completion` complete) each user gives each item on `day`, up to a factor per
    user (their activity), from its latent truth alone: tastes, item popularity and quality,
    how slates are drawn, clicks, plays and completion. No log is read, so it cannot see the test
    labels. Items not yet available on `day` are 0. Position bias enters as its mean over slate
    slots; the within-session boosts are left out (they act inside a day, after a first look).
    The oracle ceiling ranks by it (benchmarks/bench_oracle.py)."""
    cfg = config
    w = _build_world(cfg)
    d = ((dt.date.fromisoformat(day) if isinstance(day, str) else day) - cfg.start_date).days
    if not 0 <= d < cfg.days:
        raise ValueError(f"{day} is outside the generated days {cfg.start_date} + {cfg.days}")
    shifted = w.shift_day is not None and d >= w.shift_day
    kind = cfg.shift_kind if shifted else None
    pref = w.user_pref[:, w.genre_perm] if kind == "genre" else w.user_pref
    avail = np.flatnonzero(w.item_added_day <= d)
    weights = w.item_pop[avail].copy()
    if kind == "new_items":
        b = w.item_burst[avail]
        assert w.shift_day is not None
        if b.any() and (~b).any():
            share = _BURST_SHARE * _BURST_DECAY ** (d - max(w.shift_day, 0))
            weights[b] *= share / (1.0 - share) * weights[~b].sum() / weights[b].sum()
    member = (w.item_genres[avail][:, :, None] == np.arange(N_GENRES)).any(axis=1).astype(np.float64)
    # P(the item is in a slate): popularity slates, and personalized ones aimed at a genre drawn
    # from the user's tastes (slate slots sampled by weight: the share of weight, times k)
    k = min(cfg.slate_size, len(avail))
    popular = weights / weights.sum()
    aimed = weights[:, None] * (_PERSONAL_FLOOR + member)  # items x genres
    aimed /= aimed.sum(axis=0, keepdims=True)
    exposure = k * ((1.0 - cfg.personalized_share) * popular[None, :] + cfg.personalized_share * pref @ aimed.T)
    # affinity of every user to every available item (as _affinity, vectorised over users)
    genres = w.item_genres[avail].astype(np.int64)
    rel = np.zeros((pref.shape[0], len(avail)))
    for j in range(3):
        slot = genres[:, j]
        rel += np.where(slot >= 0, pref[:, np.maximum(slot, 0)], 0.0)
    rel *= N_GENRES / w.item_ngen[avail]
    pos_bias = np.mean(1.0 / (1.0 + np.arange(k)) ** cfg.position_bias_exponent)
    surface_ctr = float(_SURFACE_P @ _SURFACE_CTR)
    p_click = np.minimum(_BASE_CTR * surface_ctr * pos_bias * w.item_quality[avail] * (rel + 0.05) / 1.05, 0.9)
    p_play = 0.65 + 0.25 * np.minimum(rel / 6.0, 1.0)
    mean = 0.15 + 0.70 * rel / (rel + 2.0)
    # completion ~ Beta(3 mean, 3 (1 - mean)) (_watch_stats): P(completion >= min_completion)
    p_complete = 1.0 - betainc(mean * 3.0, (1.0 - mean) * 3.0, min_completion)
    from_slates = exposure * p_click * p_play
    # organic plays: a genre from the user's tastes, an item by popularity within it
    in_genre = w.item_pop[avail][:, None] * member
    in_genre /= np.maximum(in_genre.sum(axis=0, keepdims=True), 1e-300)
    organic = pref @ in_genre.T
    organic *= _ORGANIC_SHARE / (1.0 - _ORGANIC_SHARE) * from_slates.sum(axis=1, keepdims=True).mean()
    out = np.zeros((pref.shape[0], cfg.n_items))
    out[:, avail] = (from_slates + organic) * p_complete
    return out
