"""Capture file layout: names that sort, carry the model, and never collide.

A model's capture is a series of TFRecord files::

    <filename_prefix>.<model>.<YYYYmmddTHHMMSSZ>.<seq>.tfrecord      prefix "/data/cap"  -> /data/cap.digits....
    <dir>/<model>.<YYYYmmddTHHMMSSZ>.<seq>.tfrecord                   prefix "/data/cap/" -> /data/cap/digits....

``seq`` (6+ digits) increases by one per file and continues from the highest already on disk, so
sorting a model's files by ``seq`` gives the capture in time order across restarts; the UTC time is
when the file was opened. A file being written is a valid TFRecord file at every moment except
for a torn last record while a write is under way.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CaptureFile", "capture_file_name", "model_capture_files", "expand_capture_paths", "SUFFIX"]

SUFFIX = ".tfrecord"
_NAME = re.compile(r"^(?P<model>.+)\.(?P<time>\d{8}T\d{6}Z)\.(?P<seq>\d{6,})\.tfrecord$")


@dataclass(frozen=True)
class CaptureFile:
    """One capture file on disk and what its name says."""

    path: Path
    model: str
    time: str
    seq: int


def _split(prefix: str) -> tuple[Path, str]:
    """(directory, name prefix before the model) of a filename_prefix."""
    if prefix.endswith(("/", os.sep)):
        return Path(prefix), ""
    path = Path(prefix)
    return path.parent, path.name + "."


def capture_file_name(prefix: str, model: str, seq: int, when: float | None = None) -> Path:
    """The path of file number ``seq`` of ``model`` under ``prefix``."""
    directory, head = _split(prefix)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if when is None else when))
    return directory / f"{head}{model}.{stamp}.{seq:06d}{SUFFIX}"


def parse_capture_name(path: Path) -> CaptureFile | None:
    """What a capture file's name says (None for a name that is not a capture file's)."""
    match = _NAME.match(path.name)
    if match is None:
        return None
    model = match.group("model")
    return CaptureFile(path, model, match.group("time"), int(match.group("seq")))


def model_capture_files(prefix: str, model: str) -> list[CaptureFile]:
    """``model``'s capture files under ``prefix``, oldest (lowest seq) first."""
    directory, head = _split(prefix)
    found = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        if not entry.name.startswith(head) or not entry.is_file():
            continue
        parsed = _NAME.match(entry.name[len(head):])
        if parsed is not None and parsed.group("model") == model:
            found.append(CaptureFile(Path(entry.path), model, parsed.group("time"), int(parsed.group("seq"))))
    return sorted(found, key=lambda f: (f.seq, f.time))


def expand_capture_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; a directory gives its ``*.tfrecord`` files, per model in ``seq`` order."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = [p for p in path.iterdir() if p.name.endswith(SUFFIX) and p.is_file()]

            def key(p: Path) -> tuple[str, int, str]:
                parsed = parse_capture_name(p)
                return (parsed.model, parsed.seq, p.name) if parsed else (p.name, -1, p.name)

            out.extend(sorted(files, key=key))
        else:
            out.append(path)
    return out
