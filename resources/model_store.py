"""The model store: one directory per (model, day), published atomically, checksummed.

<data_root>/models/<model>/<day> is a symlink to an immutable version directory
<data_root>/models/<model>/.versions/<day>-<content hash>/ that holds the model's .npy /
.json files and a manifest.json with every file's SHA-256. Publishing swaps the symlink
with os.replace (atomic), so readers see the old version or the new one, never a half
written model; loading verifies every checksum first and names the file that fails.
"""

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import dagster as dg

from recsys_assets.core.storage import file_sha256 as _sha256

MANIFEST = "manifest.json"


class CorruptModelError(RuntimeError):
    pass


class ModelStoreResource(dg.ConfigurableResource):
    """Default root: $RECSYS_DATA_ROOT/models (./data/models)."""

    models_root: str = str(Path(os.getenv("RECSYS_DATA_ROOT", "data")) / "models")

    @property
    def root(self) -> Path:
        return Path(self.models_root).resolve()

    def path(self, model: str, day: str) -> Path:
        return self.root / model / day

    def exists(self, model: str, day: str) -> bool:
        return (self.path(model, day) / MANIFEST).exists()

    def staging_dir(self, model: str) -> Path:
        """A fresh private directory to write a model into before publish()."""
        staging = self.root / model / ".staging" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        return staging

    def publish(self, model: str, day: str, staging: Path, metadata: dict) -> Path:
        files = {p.name: _sha256(p) for p in sorted(staging.iterdir()) if p.is_file()}
        (staging / MANIFEST).write_text(json.dumps({"model": model, "day": day, "files": files,
                                                    "metadata": metadata}, sort_keys=True, indent=1, default=str))
        version = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
        final = self.root / model / ".versions" / f"{day}-{version}"
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # identical content already published: reuse it
            shutil.rmtree(staging)
        else:
            os.replace(staging, final)
        link = self.path(model, day)
        tmp_link = link.with_name(f".{day}.link-{uuid.uuid4().hex[:8]}")
        os.symlink(os.path.relpath(final, link.parent), tmp_link)
        os.replace(tmp_link, link)
        return final

    def verify(self, model: str, day: str) -> dict:
        """The manifest, after checking every file's checksum; raises CorruptModelError naming the file."""
        directory = self.path(model, day)
        manifest_path = directory / MANIFEST
        if not manifest_path.exists():
            raise CorruptModelError(f"no published {model} model for {day} at {directory}")
        manifest = json.loads(manifest_path.read_text())
        for name, expected in manifest["files"].items():
            path = directory / name
            if not path.exists():
                raise CorruptModelError(f"{path} is missing from the published {model} model of {day}")
            if _sha256(path) != expected:
                raise CorruptModelError(f"{path} does not match its checksum in {manifest_path}: "
                                        "the file is corrupt or was altered")
        return manifest
