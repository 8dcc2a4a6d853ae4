"""The model store: one directory per (model, day), published atomically, checksummed.

<data_root>/models/<model>/<day> is a symlink to an immutable version directory
<data_root>/models/<model>/.versions/<day>-<content hash>/ that holds the model's .npy /
.json files and a manifest.json with every file's SHA-256. Publishing swaps the symlink
with os.replace (atomic), so readers see the old version or the new one, never a half
written model; loading verifies every checksum first and names the file that fails.

On an object store (models_root = s3://bucket/prefix/models) there are no symlinks: the
version's files are uploaded to .versions/<day>-<hash>/ first, then <model>/<day>/manifest.json
(the manifest plus the version it points to) is written with one PUT, which is the publish
step. Readers get a local copy of the immutable version in a cache folder, downloaded into
a private folder and renamed into place, then checksum-verified like a local model.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from pydantic import BaseModel

from recsys_assets.core.storage import as_upath, is_remote, root_path
from recsys_assets.core.storage import file_sha256 as _sha256

MANIFEST = "manifest.json"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")  # a day's folder (not .versions, not staging)


class CorruptModelError(RuntimeError):
    pass


class ModelStore(BaseModel):
    """<models_root>/<model>/<day>; the Dagster resource ModelStoreResource is this, configurable."""

    models_root: str = "data/models"
    # Where models from an object store are copied to be loaded (local disk, immutable
    # versions, safe to share between processes). Default: <system temp>/recsys-model-cache.
    cache_dir: str = ""

    @property
    def root(self) -> Path:
        return root_path(self.models_root)

    @property
    def remote(self) -> bool:
        return is_remote(self.root)

    def path(self, model: str, day: str) -> Path:
        """The published model's folder, ready to load: for an object store, a verified-on-load
        local copy of the version it points to."""
        if self.remote:
            return self._cached_version(model, day)
        return self.root / model / day

    def exists(self, model: str, day: str) -> bool:
        return (self.root / model / day / MANIFEST).exists()

    def published_days(self, model: str) -> list[str]:
        folder = self.root / model
        if not folder.exists():
            return []
        return sorted(p.name for p in folder.iterdir() if _DAY.match(p.name) and (p / MANIFEST).exists())

    def staging_dir(self, model: str) -> Path:
        """A fresh private directory to write a model into before publish()."""
        if self.remote:
            return Path(tempfile.mkdtemp(prefix=f"recsys-staging-{model}-"))
        staging = self.root / model / ".staging" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        return staging

    def publish(self, model: str, day: str, staging: Path, metadata: dict) -> Path:
        files = {p.name: _sha256(p) for p in sorted(staging.iterdir()) if p.is_file()}
        (staging / MANIFEST).write_text(
            json.dumps(
                {"model": model, "day": day, "files": files, "metadata": metadata},
                sort_keys=True,
                indent=1,
                default=str,
            )
        )
        version = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
        if self.remote:
            return self._publish_remote(model, day, staging, f"{day}-{version}")
        final = self.root / model / ".versions" / f"{day}-{version}"
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # identical content already published: reuse it
            shutil.rmtree(staging)
        else:
            try:
                os.replace(staging, final)
            except OSError:
                # Another process published the same content between the check and the rename
                # ("Directory not empty"): its version holds these very files, so it is reused.
                if not (final / MANIFEST).exists():
                    raise
                shutil.rmtree(staging, ignore_errors=True)
        link = self.path(model, day)
        tmp_link = link.with_name(f".{day}.link-{uuid.uuid4().hex[:8]}")
        os.symlink(os.path.relpath(final, link.parent), tmp_link)
        os.replace(tmp_link, link)
        return final

    def _publish_remote(self, model: str, day: str, staging: Path, version: str) -> Path:
        final = self.root / model / ".versions" / version
        try:
            if not (final / MANIFEST).exists():  # identical content already uploaded: reuse it
                # The version's manifest goes last, so a version with a manifest is complete.
                for path in sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST):
                    as_upath(final).fs.put_file(str(path), as_upath(final / path.name).path)
            pointer = json.loads((staging / MANIFEST).read_text())
            pointer["version"] = version
            # One PUT publishes: readers see the previous pointer or this one.
            (self.root / model / day / MANIFEST).write_text(json.dumps(pointer, sort_keys=True, indent=1, default=str))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def _cached_version(self, model: str, day: str) -> Path:
        remote = self._version_dir(model, day)
        version = remote.name
        store = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        cache_root = Path(self.cache_dir) if self.cache_dir else Path(tempfile.gettempdir()) / "recsys-model-cache"
        local = cache_root / store / model / version
        if not (local / MANIFEST).exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            private = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=local.parent))
            for path in remote.iterdir():
                as_upath(remote).fs.get_file(as_upath(path).path, str(private / path.name))
            try:
                os.replace(private, local)  # another process may have won the race: its copy is identical
            except OSError:
                shutil.rmtree(private, ignore_errors=True)
        return local

    def verify(self, model: str, day: str) -> dict:
        """The manifest, after checking every file's checksum; raises CorruptModelError naming the file."""
        if self.remote:
            try:
                return self._verify_at(model, day, self.path(model, day))
            except CorruptModelError:
                # The local copy is only a cache: fetch the version again; if the object
                # store's copy is corrupt too, that is the error to report.
                shutil.rmtree(self.path(model, day), ignore_errors=True)
                return self._verify_at(model, day, self.path(model, day), source=self._version_dir(model, day))
        return self._verify_at(model, day, self.path(model, day))

    def _version_dir(self, model: str, day: str) -> Path:
        """The object-store folder of the version the day's pointer names."""
        pointer_path = self.root / model / day / MANIFEST
        if not pointer_path.exists():
            raise CorruptModelError(f"no published {model} model for {day} at {pointer_path.parent}")
        return self.root / model / ".versions" / json.loads(pointer_path.read_text())["version"]

    def _verify_at(self, model: str, day: str, directory: Path, source: Path | None = None) -> dict:
        source = source or directory
        manifest_path = directory / MANIFEST
        if not manifest_path.exists():
            raise CorruptModelError(f"no published {model} model for {day} at {directory}")
        manifest = json.loads(manifest_path.read_text())
        for name, expected in manifest["files"].items():
            path = directory / name
            if not path.exists():
                raise CorruptModelError(f"{source / name} is missing from the published {model} model of {day}")
            if _sha256(path) != expected:
                raise CorruptModelError(
                    f"{source / name} does not match its checksum in {source / MANIFEST}: "
                    "the file is corrupt or was altered"
                )
        return manifest
