"""The swap history: one JSON line per swap or rollback, kept in the models dir.

``MODELS_DIR/.tfship/swap-history.jsonl``: the dot-dir is not a model, so neither TF Serving nor
``tfship serve`` ever mistakes it for one. Lines are appended with O_APPEND and fsynced, so
concurrent writers never interleave partial lines and a crash loses at most the line being written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SwapRecord", "history_path", "append_record", "read_history", "last_promoted"]


@dataclass(frozen=True)
class SwapRecord:
    """What happened in one swap or rollback.

    ``outcome`` is ``promoted`` (the new version is the default), ``rolled_back`` (the default went
    back to ``to_version``), ``refused`` (a guard rail stopped it before anything changed) or
    ``failed`` (load or parity failed; the old version kept serving).
    """

    model: str
    action: str  # "swap" | "rollback" | "rollout"
    outcome: str
    from_version: int | None
    to_version: int | None
    label: str | None = None
    reason: str = ""
    parity: dict[str, Any] | None = None
    publish_to_serving_s: float | None = None
    retired: list[int] = field(default_factory=list)
    quarantined: str | None = None
    time: float = field(default_factory=time.time)
    #: A fleet swap: one entry per replica (url, ok, available_s, parity, error, skipped).
    replicas: list[dict[str, Any]] | None = None
    #: A rollout (action "rollout"): steps, gates, the step reached and each step's numbers per replica.
    rollout: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("promoted", "rolled_back")


def history_path(models_dir: str | os.PathLike[str]) -> Path:
    return Path(models_dir) / ".tfship" / "swap-history.jsonl"


def append_record(models_dir: str | os.PathLike[str], record: SwapRecord) -> Path:
    """Append ``record`` durably to the models dir's history."""
    path = history_path(models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(asdict(record), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_history(models_dir: str | os.PathLike[str], model: str | None = None) -> Iterator[SwapRecord]:
    """Records oldest first (optionally of one model); a torn last line is skipped."""
    path = history_path(models_dir)
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        record = SwapRecord(**data)
        if model is None or record.model == model:
            yield record


def last_promoted(models_dir: str | os.PathLike[str], model: str, label: str | None = None) -> list[SwapRecord]:
    """Promotions (swaps and rollbacks that changed the default), newest first."""
    records = [r for r in read_history(models_dir, model) if r.ok and r.label == label]
    return records[::-1]
