"""Write–audit–publish: a partition or model becomes visible only after its blocking rules pass.

An asset writes its output to a staging path (Lake.staged_path, or a model store staging
directory), runs on it the very rule functions its blocking asset checks run on published data,
and publishes it (os.replace, or the model store's publish) only when every rule passes. A
refused output stays staged, with `<staged name>.reason.json` next to it saying which rule
failed and why, and the previously published version stays as it was."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys_assets.core.storage import move_file, publish_file
from recsys_assets.services.errors import AuditFailed


@dataclass(frozen=True)
class Verdict:
    """One rule's judgement of one partition: the asset check reports it as its result."""

    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)


Rule = tuple[str, Callable[[], Verdict]]  # (the check's name, the rule bound to the staged data)


def reason_path(staged: Path) -> Path:
    return staged.with_name(staged.name + ".reason.json")


def audit(rules: Iterable[Rule]) -> dict[str, Verdict]:
    """The verdicts of the rules that failed (every rule runs, so the reason lists them all)."""
    failed = {}
    for name, rule in rules:
        verdict = rule()
        if not verdict.passed:
            failed[name] = verdict
    return failed


def hold(staged: Path, what: str, day: str, failed: dict[str, Verdict]) -> AuditFailed:
    """Leave `staged` where it is with its reason file, and the error that says so."""
    reason = {
        "what": what,
        "partition": day,
        "failed_rules": {name: _plain(v.metadata) for name, v in failed.items()},
        "staged": str(staged),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    reason_path(staged).write_text(json.dumps(reason, indent=1, sort_keys=True, default=str))
    details = "; ".join(f"{name} ({_summary(v.metadata)})" for name, v in failed.items())
    return AuditFailed(
        f"{what} {day} was not published: blocking rule {details} failed. The staged output is "
        f"{staged}, the reason {reason_path(staged)}; the previously published {what} {day}, if any, "
        "is unchanged."
    )


def refused_path(staged: Path, final: Path) -> Path:
    """Where a refused staged file of `final` is kept: its staging name without the writer's suffix."""
    return staged.with_name(final.name)


def publish_partition(what: str, day: str, files: list[tuple[Path, Path]], rules: Iterable[Rule]) -> None:
    """Publish the staged `files` [(staged, final), ...] of partition `day` if every rule passes;
    else keep them staged under refused_path and raise AuditFailed."""
    failed = audit(rules)
    if failed:
        for staged, final in files:
            move_file(staged, refused_path(staged, final))
        raise hold(refused_path(*files[0]), what, day, failed)
    for staged, final in files:
        publish_file(staged, final)
        # what an earlier refused attempt left: this partition replaces it
        refused_path(staged, final).unlink(missing_ok=True)
        reason_path(refused_path(staged, final)).unlink(missing_ok=True)


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, int | float | str | bool | None | list | dict) else str(v) for k, v in metadata.items()
    }


def _summary(metadata: dict[str, Any]) -> str:
    shown = {k: v for k, v in metadata.items() if v not in (0, 0.0, "none", "", None)} or metadata
    return ", ".join(f"{k}={v}" for k, v in list(shown.items())[:6])
