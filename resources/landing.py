"""The landing zone: where producers drop raw JSONL logs, one folder per UTC day."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg

from recsys_assets.core.adapters.landing import SOURCE_MANIFEST
from recsys_assets.core.adapters.source import read_marker
from recsys_assets.core.storage import is_remote, not_a_regular_file
from resources.storage import UnsafePathError, ensure_within, validate_partition_key, validated_root

LOG_FILES = ("impressions.jsonl", "events.jsonl", "watch_stats.jsonl")
SUCCESS_MARKER = "_SUCCESS"


def _complete(folder: Path) -> bool:
    return (folder / SUCCESS_MARKER).exists() or all((folder / f).exists() for f in LOG_FILES)


def _is_day(name: str) -> bool:
    """A folder name that is a partition key (a real date); other folders are not days."""
    try:
        validate_partition_key(name)
    except UnsafePathError:
        return False
    return name != "snapshot"


class LandingZoneResource(dg.ConfigurableResource):
    """<landing_root>/<YYYY-MM-DD>/{impressions,events,watch_stats}.jsonl and
    <landing_root>/{items,users}.jsonl. Settings.landing: $RECSYS_LANDING_ROOT or
    <data root>/landing (./data/landing)."""

    landing_root: str = "data/landing"

    @property
    def root(self) -> Path:
        return validated_root(self.landing_root, "landing root")

    def _inside(self, path: Path, what: str) -> Path:
        try:
            return ensure_within(path, self.root, what)
        except UnsafePathError as error:
            raise dg.Failure(description=f"Refused: {error}.") from None

    def snapshot_file(self, table: str) -> Path:
        if table not in ("items", "users"):
            raise dg.Failure(description=f"Refused: unknown snapshot table {table!r}.")
        return self._inside(self.root / f"{table}.jsonl", "landing file")

    def day_file(self, day: str, table: str) -> Path:
        """<landing>/<day>/<table>.jsonl; the day must be a date and the file (symlinks
        followed) must stay inside the landing zone."""
        try:
            validate_partition_key(day)
        except UnsafePathError as error:
            raise dg.Failure(description=f"Refused: {error}.") from None
        if f"{table}.jsonl" not in LOG_FILES:
            raise dg.Failure(description=f"Refused: unknown landing table {table!r}.")
        return self._inside(self.root / day / f"{table}.jsonl", "landing file")

    def is_complete(self, day: str) -> bool:
        """A day is complete when its producer wrote _SUCCESS, or all three log files exist."""
        return _complete(self.root / day)

    def day_fingerprint(self, day: str) -> str:
        """A fingerprint of a day folder's delivery: the name, size and modification time of
        each file in it (read from the file system, not the files' bytes, so polling stays cheap).
        A re-delivered day (files rewritten) gets another fingerprint."""
        folder = self.root / day
        entries = []
        for path in sorted(folder.iterdir(), key=lambda p: p.name) if folder.exists() else []:
            info = path.stat()
            entries.append(
                f"{path.name}\t{info.st_size}\t{getattr(info, 'st_mtime_ns', getattr(info, 'st_mtime', ''))}"
            )
        return hashlib.sha256("\n".join(entries).encode()).hexdigest()

    def complete_days(self) -> list[str]:
        root = self.root  # validated once: a long history has thousands of day folders
        if not root.exists():
            return []
        return sorted(p.name for p in root.iterdir() if _is_day(p.name) and p.is_dir() and _complete(p))

    def latest_complete_day(self) -> str | None:
        """The newest complete day; reads names newest first and stops at the first complete one,
        so asking it for one more day costs a listing, not a check of the whole history."""
        root = self.root
        if not root.exists():
            return None
        for name in sorted((p.name for p in root.iterdir() if _is_day(p.name)), reverse=True):
            if (root / name).is_dir() and _complete(root / name):
                return name
        return None

    def skips_empty_days(self) -> bool:
        """The adapter's manifest says a day without data has no folder (`empty_days: absent`,
        adapted ratings datasets): such a day, before the latest landed one, is empty, not late."""
        manifest = self.root / SOURCE_MANIFEST
        try:
            return json.loads(manifest.read_text()).get("empty_days") == "absent" if manifest.is_file() else False
        except (OSError, ValueError, AttributeError):
            return False

    def require_file(self, path: Path) -> Path:
        """`path` if it is a regular file; else one message saying what is wrong and what to do
        (a FIFO or a directory is never opened, so it cannot hang the run)."""
        kind = not_a_regular_file(path)
        if kind:
            raise dg.Failure(
                description=f"Refused: landing file {path} is {kind}, not a regular file. "
                "Replace it with the JSONL file itself."
            )
        if not path.exists():
            if self._is_synthetic():
                hint = "Generate data with `python -m recsys_assets.generate` (or `recsys quickstart`)."
            else:
                hint = (
                    f"The producer has not delivered it: deliver it into {self.root} (a day's folder is "
                    f"complete with its {SUCCESS_MARKER} marker), or point RECSYS_LANDING_ROOT at the landing "
                    "zone that holds it."
                )
            raise dg.Failure(description=f"Landing file missing: {path}. {hint}")
        return path

    def _is_synthetic(self) -> bool:
        """The landing zone is missing, or is the `landing/` folder of a data root whose
        SOURCE.json names the synthetic generator (or that has none yet) and no adapter wrote it.
        A user's own zone (`--source landing`, an adapted dataset, or any other folder) is not."""
        root = self.root
        if is_remote(root) or not root.exists():
            return True
        if root.name != "landing" or (root / SOURCE_MANIFEST).exists():
            return False
        try:
            marker = read_marker(root.parent)
        except (OSError, ValueError):
            return False
        return marker is None or marker.get("source") == "synthetic"
