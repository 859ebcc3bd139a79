"""Atomic publication of a version directory.

A version is built in a staging dir *beside* its final place (``BASE/NAME/.tfship-tmp-<token>``,
a name TF Serving ignores because it is not numeric), fsynced, then renamed to
``BASE/NAME/<version>`` in one ``rename(2)``. A server polling the model dir therefore sees either
no version or a complete one, whatever moment the exporter dies at.

Two locks, both ``flock(2)`` so the kernel drops them when their holder dies (even by SIGKILL):
* ``BASE/NAME/.tfship-lock`` serialises version allocation + rename between exporters, so two
  exports running at once get different versions;
* each staging dir has a ``.tfship-tmp-<token>.lock`` held by its builder for its whole life; a
  staging dir whose lock can be taken belongs to a dead exporter and is removed by the next export.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tfship.export.versions import list_versions, next_version, validate_version

from tfship.durable import fsync_dir, fsync_tree, rename_noreplace
from tfship.errors import ExportError, VersionExistsError

__all__ = [
    "STAGING_PREFIX",
    "LOCK_NAME",
    "prepare_model_dir",
    "remove_created_dirs",
    "staging_dir",
    "clean_stale_staging",
    "fsync_tree",
    "publish",
    "pause_point",
    "check_version_free",
    "share_like",
]

STAGING_PREFIX = ".tfship-tmp-"
LOCK_NAME = ".tfship-lock"
# Test hook (see tests/export/test_publish_crash.py): pause at a named stage so a test can
# SIGKILL the exporter at a known point instead of racing a timer.
PAUSE_STAGE_ENV = "TFSHIP_TEST_PAUSE_AT"
PAUSE_FILE_ENV = "TFSHIP_TEST_PAUSE_FILE"


def prepare_model_dir(base_dir: str | os.PathLike[str], name: str) -> tuple[Path, list[Path]]:
    """Create ``base_dir/name`` if needed; return it and the dirs this call created (deepest last).

    Raises :class:`ExportError` naming the directory and the fix when it cannot be written.
    """
    model_dir = Path(base_dir).absolute() / name
    missing: list[Path] = []
    probe = model_dir
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    missing.reverse()
    created: list[Path] = []
    try:
        if probe.exists() and not probe.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(probe))
        for path in missing:
            try:
                path.mkdir()
            except FileExistsError:
                if not path.is_dir():
                    raise
                continue  # another exporter made it between our look and our mkdir: share it
            created.append(path)
        if not os.access(model_dir, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "permission denied", str(model_dir))
    except OSError as exc:
        remove_created_dirs(created)
        raise ExportError(
            f"cannot write to base dir {str(base_dir)!r}: {exc.strerror or exc} "
            f"({exc.filename or model_dir}). Pass a writable directory as base_dir / --base."
        ) from exc
    return model_dir, created


def remove_created_dirs(created: list[Path]) -> None:
    """Undo :func:`prepare_model_dir` after a failure: remove the dirs it made if still empty."""
    for path in reversed(created):
        with contextlib.suppress(OSError):
            path.rmdir()


@contextlib.contextmanager
def _flock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def staging_dir(model_dir: Path) -> Iterator[Path]:
    """A fresh staging dir beside the versions, removed on exit unless it was published."""
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    path = model_dir / f"{STAGING_PREFIX}{token}"
    lock = model_dir / f"{STAGING_PREFIX}{token}.lock"
    # The lock exists (and is held) before the dir, so a dir without a live lock is always stale.
    with _flock(lock):
        try:
            path.mkdir()
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()


def clean_stale_staging(model_dir: Path) -> list[Path]:
    """Remove staging dirs (and orphan staging locks) left behind by dead exporters; return the
    staging dirs removed. A staging dir whose lock is held by a live exporter is left alone."""
    removed: list[Path] = []
    try:
        names = {e.name for e in os.scandir(model_dir) if e.name.startswith(STAGING_PREFIX)}
    except FileNotFoundError:
        return removed
    stems = {n[: -len(".lock")] if n.endswith(".lock") else n for n in names}
    for stem in sorted(stems):
        path, lock = model_dir / stem, model_dir / f"{stem}.lock"
        try:
            fd: int | None = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = None  # the owner died before taking its lock or after releasing it: stale
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live exporter is building here
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def share_like(version_dir: Path, model_dir: Path) -> None:
    """Grant a version the read access its model dir grants to group and others.

    The server may run as another user (the Docker image runs as uid 10001 on a bind mount): a
    version exported under a private umask (077) would stay LOADING there until the swap times
    out. Only adds read (and directory search) bits; never follows symlinks out of the version.
    """
    shared = model_dir.stat().st_mode & 0o055
    if not shared:
        return
    for dirpath, _dirnames, filenames in os.walk(version_dir):
        os.chmod(dirpath, os.stat(dirpath).st_mode | shared)
        for filename in filenames:
            path = os.path.join(dirpath, filename)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | (shared & 0o044))


def check_version_free(model_dir: Path, version: int) -> None:
    """Raise :class:`VersionExistsError` when ``version`` (in any spelling) is already on disk."""
    existing = list_versions(model_dir).get(version)
    if existing is not None:
        raise VersionExistsError(
            f"version {version} of model {model_dir.name!r} already exists at {existing}; "
            "tfship never overwrites a version. Omit the version to publish the next free one "
            f"({next_version(model_dir)}) or choose another."
        )


def publish(
    staging: Path,
    model_dir: Path,
    version: int | None = None,
    finalize: Callable[[Path, int], None] | None = None,
) -> tuple[int, Path]:
    """Move a complete ``staging`` dir to ``model_dir/<version>``; return both.

    ``version=None`` takes the next free version. Never replaces an existing version.
    ``finalize(staging, version)`` runs under the allocation lock once the version is chosen
    (to write files that name the version, e.g. the manifest); the tree is fsynced after it.
    """
    if version is not None:
        validate_version(version)
    with _flock(model_dir / LOCK_NAME):
        while True:
            chosen = version if version is not None else next_version(model_dir)
            check_version_free(model_dir, chosen)
            target = model_dir / str(chosen)
            if finalize is not None:
                finalize(staging, chosen)
                fsync_tree(staging)
            share_like(staging, model_dir)
            pause_point("before_rename")
            try:
                rename_noreplace(staging, target)
            except FileExistsError:
                if version is not None:
                    check_version_free(model_dir, chosen)
                    raise ExportError(f"{target} exists and is not a version dir; remove it") from None
                # A non-tfship writer (or a stray file) took this name: try the next one.
                version = None
                if next_version(model_dir) <= chosen:
                    raise ExportError(
                        f"{target} exists and blocks version allocation; remove it"
                    ) from None
                continue
            fsync_dir(model_dir)
            return chosen, target


def pause_point(stage: str) -> None:
    """Test hook: if ``$TFSHIP_TEST_PAUSE_AT == stage``, signal and wait for permission.

    Creates ``$TFSHIP_TEST_PAUSE_FILE.reached`` then waits (bounded, 300 s) until
    ``$TFSHIP_TEST_PAUSE_FILE`` exists. Does nothing when the variables are unset.
    """
    if os.environ.get(PAUSE_STAGE_ENV) != stage:
        return
    gate = Path(os.environ[PAUSE_FILE_ENV])
    Path(f"{gate}.reached").write_text(str(os.getpid()))
    deadline = time.monotonic() + 300
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
