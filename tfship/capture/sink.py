"""CaptureSink: append records to a model's size-rotated TFRecord files, never blocking the caller.

``sink.record(item)`` puts ``item`` -- the record's bytes, or a function that builds them -- on a
bounded queue and returns at once; one writer thread builds (so proto encoding happens off the
request path), frames and writes. Nothing the sink does can fail or slow a request: a full queue,
a spent disk budget or a failing disk drop the record and count it (``stats.dropped`` by reason,
and the ``on_dropped`` callback, which the server turns into a Prometheus counter).

Durability: after draining what is queued the writer hands the bytes to the kernel (``flush``), so
a SIGKILL of the process loses only records still queued; files are fsynced when rotated and on
:meth:`close`. Readers stop cleanly at a torn last record (:class:`~tfship.capture.tfrecord.RecordFile`).

Small and public on purpose: anything that wants to add records to a capture (the server's
observer, the client, shadow traffic) builds a PredictionLog and calls :meth:`CaptureSink.record`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tfship.durable import fsync_dir

from .config import CaptureConfig
from .files import capture_file_name, model_capture_files
from .tfrecord import encode_record

__all__ = ["CaptureSink", "SinkStats", "DROP_REASONS"]

log = logging.getLogger("tfship.capture")

#: Why a record was dropped: the queue was full, the disk budget was spent, building or writing it failed.
DROP_REASONS = ("queue_full", "budget", "error")
_RESCAN_SECONDS = 2.0  # a spent budget re-counts the files this often (an operator may have moved some away)

Item = bytes | Callable[[], bytes | None]


@dataclass
class SinkStats:
    """Counts since the sink started."""

    written: int = 0
    bytes_written: int = 0
    files_opened: int = 0
    files_deleted: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class CaptureSink:
    """One model's capture files under ``config.filename_prefix`` (see :mod:`tfship.capture.files`)."""

    def __init__(self, config: CaptureConfig, model: str, *,
                 on_written: Callable[[int], None] | None = None,
                 on_dropped: Callable[[str], None] | None = None) -> None:
        self.config, self.model = config, model
        self.stats = SinkStats()
        self._on_written, self._on_dropped = on_written, on_dropped
        self._queue: queue.Queue[Any] = queue.Queue(config.queue_records)
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._file_path: Path | None = None
        self._file_bytes = 0
        self._closed = False
        existing = model_capture_files(config.filename_prefix, model)
        self._next_seq = existing[-1].seq + 1 if existing else 1
        self._total = self._disk_bytes()
        self._rescanned = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"capture-{model}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller side

    def record(self, item: Item, nbytes: int = 0) -> bool:
        """Queue one record (bytes, or a function building them in the writer thread).

        ``nbytes`` is what the queued item holds in memory (bytes items count their length): the
        queue is bounded by ``queue_records`` and ``queue_bytes``, so a writer that falls behind
        on big requests drops records instead of holding gigabytes. Returns False when it was
        dropped (queue full, sink closed); never blocks, never raises.
        """
        if self._closed:
            return False
        size = len(item) if isinstance(item, bytes) else nbytes
        with self._bytes_lock:
            if self._queued_bytes + size > self.config.queue_bytes and self._queued_bytes:
                full = True
            else:
                full = False
                self._queued_bytes += size
        if not full:
            try:
                self._queue.put_nowait((item, size))
                return True
            except queue.Full:
                with self._bytes_lock:
                    self._queued_bytes -= size
        self._drop("queue_full")
        return False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued so far is written to the kernel; False on timeout."""
        if self._closed or not self._thread.is_alive():
            return not self._thread.is_alive()
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, fsync and close the current file, stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("capture of %s: queue still full after %.0f s; closing anyway", self.model, timeout)
        self._thread.join(timeout)

    def __enter__(self) -> CaptureSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def current_file(self) -> Path | None:
        """The file being appended to (None before the first record or right after a rotation)."""
        return self._file_path

    # ------------------------------------------------------------------ writer thread

    def _drop(self, reason: str) -> None:
        self.stats.dropped[reason] += 1
        if self._on_dropped is not None:
            try:
                self._on_dropped(reason)
            except Exception:  # noqa: BLE001 - a metrics hook must not break capture
                log.exception("capture drop hook failed")

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = False
            for item in batch:
                if item is _STOP:
                    stop = True
                elif isinstance(item, _Flush):
                    self._flush_file()
                    item.done.set()
                else:
                    record, size = item
                    with self._bytes_lock:
                        self._queued_bytes -= size
                    self._write_item(record)
            self._flush_file()
            if stop:
                self._close_file()
                return

    def _write_item(self, item: Item) -> None:
        try:
            data = item() if callable(item) else item
        except Exception:  # noqa: BLE001 - a record that cannot be built is dropped, never raised
            log.exception("capture of %s: building a record failed", self.model)
            self._drop("error")
            return
        if data is None:
            return
        framed = encode_record(data)
        size = len(framed)
        if self._file is not None and self._file_bytes and self._file_bytes + size > self.config.max_file_bytes:
            self._close_file()
        if not self._fits(size):
            self._drop("budget")
            return
        try:
            if self._file is None:
                self._open_file()
            assert self._file is not None
            self._file.write(framed)
        except OSError as exc:
            log.warning("capture of %s: writing %s failed: %s", self.model, self._file_path, exc)
            self._drop("error")
            self._close_file(quiet=True)
            return
        self._file_bytes += size
        self._total += size
        self.stats.written += 1
        self.stats.bytes_written += size
        if self._on_written is not None:
            try:
                self._on_written(size)
            except Exception:  # noqa: BLE001
                log.exception("capture write hook failed")

    def _fits(self, size: int) -> bool:
        limit = self.config.max_total_bytes
        if self._total + size <= limit:
            return True
        if self.config.retention == "delete_oldest":
            for old in model_capture_files(self.config.filename_prefix, self.model):
                if self._total + size <= limit:
                    break
                if old.path == self._file_path:
                    continue
                try:
                    freed = old.path.stat().st_size
                    old.path.unlink()
                except OSError:
                    continue
                self._total -= freed
                self.stats.files_deleted += 1
            if self._total + size > limit and self._file is not None:
                self._close_file()  # the current file alone is too big: start over in a new one
                return self._fits(size)
            return self._total + size <= limit
        now = time.monotonic()
        if now - self._rescanned >= _RESCAN_SECONDS:
            self._rescanned = now
            self._total = self._disk_bytes()
            return self._total + size <= limit
        return False

    def _disk_bytes(self) -> int:
        # the current file counts what was written to it, flushed to the kernel or not
        total = self._file_bytes if self._file is not None else 0
        for f in model_capture_files(self.config.filename_prefix, self.model):
            if f.path == self._file_path:
                continue
            with contextlib.suppress(OSError):
                total += f.path.stat().st_size
        return total

    def _open_file(self) -> None:
        path = capture_file_name(self.config.filename_prefix, self.model, self._next_seq)
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
                break
            except FileExistsError:  # another writer took this seq: take the next one
                self._next_seq += 1
                path = capture_file_name(self.config.filename_prefix, self.model, self._next_seq)
        self._next_seq += 1
        self._file = os.fdopen(fd, "wb", buffering=1 << 16)
        self._file_path, self._file_bytes = path, 0
        self.stats.files_opened += 1
        fsync_dir(path.parent)

    def _flush_file(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                log.warning("capture of %s: flushing %s failed: %s", self.model, self._file_path, exc)
                self._close_file(quiet=True)

    def _close_file(self, quiet: bool = False) -> None:
        if self._file is None:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            if not quiet:
                log.warning("capture of %s: closing %s failed: %s", self.model, self._file_path, exc)
        finally:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file, self._file_path, self._file_bytes = None, None, 0
