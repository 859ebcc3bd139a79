"""The model manager: which versions are aspired, loaded, serving; requests take references.

One worker thread per model applies :func:`serving.core.policy.next_action` one action at a time
(TF Serving's availability-preserving policy). Requests ``acquire`` a :class:`Handle` on a version
(a refcount); unloading first hides the version from new requests (UNLOADING), waits until the
in-flight requests released it, then closes the servable. A load is retried
``max_num_load_retries`` times; a version whose load failed stays in END with its error and never
replaces a serving version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfship.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ServingError,
    UnknownError,
)

from ..config.model_config import ModelEntry
from .policy import State, next_action

__all__ = ["ModelManager", "Handle", "VersionStatus", "ModelEntry", "State"]  # ModelEntry: serving.config

log = logging.getLogger("tfship.serving")

#: ``loader(name, version, path) -> servable`` (a ``serving.runtime.Servable`` in production).
Loader = Callable[[str, int, Path], Any]


@dataclass(frozen=True)
class VersionStatus:
    """Snapshot of one version for GetModelStatus."""

    version: int
    state: State
    error: ServingError | None = None


class _Version:
    __slots__ = ("version", "path", "state", "error", "servable", "refs")

    def __init__(self, version: int, path: Path) -> None:
        self.version = version
        self.path = path
        self.state = State.START
        self.error: ServingError | None = None
        self.servable: Any = None
        self.refs = 0


class _Model:
    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.versions: dict[int, _Version] = {}
        self.aspired: dict[int, Path] | None = None  # None until the first successful poll
        self.failed: set[int] = set()
        self.removed = False
        self.thread: threading.Thread | None = None


class Handle:
    """A reference on one loaded version; release it (or use ``with``) when the request is done."""

    __slots__ = ("servable", "name", "version", "_manager", "_v")

    def __init__(self, manager: ModelManager, name: str, v: _Version) -> None:
        self._manager = manager
        self._v: _Version | None = v
        self.name = name
        self.version = v.version
        self.servable = v.servable

    def release(self) -> None:
        v, self._v = self._v, None
        if v is not None:
            self._manager._release(v)

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _as_serving_error(exc: BaseException) -> ServingError:
    if isinstance(exc, ServingError):
        return exc
    return UnknownError(f"{type(exc).__name__}: {exc}")


class ModelManager:
    """Loads/unloads versions per policy and hands out references to serving versions.

    >>> mgr = ModelManager(loader)                      # doctest: +SKIP
    >>> mgr.apply_config([ModelEntry("m", "/models/m")])  # blocks until m is AVAILABLE or failed
    >>> with mgr.acquire("m") as h:                      # highest AVAILABLE version
    ...     h.servable.predict("", {"x": x})
    """

    def __init__(
        self,
        loader: Loader,
        *,
        max_num_load_retries: int = 5,
        load_retry_interval: float = 60.0,
        allow_version_labels_for_unavailable_models: bool = False,
        on_state: Callable[[str, int, State], None] | None = None,
        on_unloaded: Callable[[str, int, Path], None] | None = None,
    ) -> None:
        self._loader = loader
        self._on_unloaded = on_unloaded
        self._retries = max(0, max_num_load_retries)
        self._retry_interval = max(0.0, load_retry_interval)
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._on_state = on_state
        self._cond = threading.Condition(threading.Lock())
        self._models: dict[str, _Model] = {}
        self._stopping = False
        self._config_lock = threading.Lock()  # one config application at a time

    # ------------------------------------------------------------------ requests (hot path)

    def acquire(
        self,
        name: str,
        version: int | None = None,
        label: str | None = None,
        choose: Callable[[str, tuple[int, ...]], int] | None = None,
    ) -> Handle:
        """A handle on the requested version (TF Serving compat spec §4); raises NOT_FOUND / INVALID_ARGUMENT.

        Without a version or label the highest AVAILABLE version serves, unless ``choose`` is
        given: it is called (under the manager's lock, so keep it cheap) with the model name and
        its AVAILABLE versions, ascending, and returns the one to serve.
        """
        with self._cond:
            model = self._models.get(name)
            if label is not None and label != "":
                labels = model.entry.version_labels if model is not None and not model.removed else {}
                if label not in labels:
                    raise InvalidArgumentError(
                        f"Unrecognized servable version label: {label}", model=name
                    )
                version = labels[label]
            if model is not None:
                if version is None and choose is not None:
                    available = tuple(sorted(v.version for v in model.versions.values()
                                             if v.state == State.AVAILABLE))
                    if available:
                        version = choose(name, available)
                if version is None:
                    best: _Version | None = None
                    for v in model.versions.values():
                        if v.state == State.AVAILABLE and (best is None or v.version > best.version):
                            best = v
                    if best is not None:
                        best.refs += 1
                        return Handle(self, name, best)
                else:
                    found = model.versions.get(version)
                    if found is not None and found.state == State.AVAILABLE:
                        found.refs += 1
                        return Handle(self, name, found)
        if version is None:
            raise NotFoundError(f"Servable not found for request: Latest({name})", model=name)
        raise NotFoundError(
            f"Servable not found for request: Specific({name}, {version})", model=name, version=version
        )

    def _release(self, v: _Version) -> None:
        with self._cond:
            v.refs -= 1
            if v.refs == 0 and v.state == State.UNLOADING:
                self._cond.notify_all()

    # ------------------------------------------------------------------ status

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Version statuses, highest version first (TF Serving compat spec §5.5)."""
        with self._cond:
            model = self._models.get(name)
            versions = dict(model.versions) if model is not None else {}
            if version is not None:
                v = versions.get(version)
                if v is None:
                    raise NotFoundError(f"Could not find version {version} of model {name}")
                return [VersionStatus(v.version, v.state, v.error)]
            if not versions:
                raise NotFoundError(f"Could not find any versions of model {name}")
            return [
                VersionStatus(v.version, v.state, v.error)
                for v in sorted(versions.values(), key=lambda x: -x.version)
            ]

    def model_names(self) -> list[str]:
        with self._cond:
            return [n for n, m in self._models.items() if not m.removed]

    def entries(self) -> dict[str, ModelEntry]:
        with self._cond:
            return {n: m.entry for n, m in self._models.items() if not m.removed}

    def current_labels(self, name: str) -> Mapping[str, int]:
        """``labels`` without the lock (a config replaces a model's entry, never edits it), for
        callers that already hold it, such as a routing policy."""
        model = self._models.get(name)
        return model.entry.version_labels if model is not None and not model.removed else {}

    def labels(self, name: str) -> dict[str, int]:
        with self._cond:
            model = self._models.get(name)
            return dict(model.entry.version_labels) if model is not None else {}

    # ------------------------------------------------------------------ config

    def apply_config(
        self, entries: Iterable[ModelEntry], *, timeout: float | None = None, initial: bool = True
    ) -> None:
        """Make ``entries`` the served set (TF Serving compat spec §2.3/2.4).

        Labels are checked against the current states first (FAILED_PRECONDITION, nothing
        changes). Models absent from ``entries`` are unloaded; new models are polled and this call
        blocks until each has settled (a version AVAILABLE, or every aspired version failed);
        changes to existing models take effect asynchronously.
        """
        entries = list(entries)
        with self._config_lock:
            with self._cond:
                self._check_labels(entries)
                new_names = []
                wanted = {e.name for e in entries}
                for e in entries:
                    model = self._models.get(e.name)
                    if model is None or model.removed:
                        if model is None:
                            model = _Model(e)
                            self._models[e.name] = model
                        model.entry = e
                        model.removed = False
                        model.aspired = None
                        new_names.append(e.name)
                    else:
                        model.entry = e
                    self._ensure_worker(model)
                for name, model in self._models.items():
                    if name not in wanted and not model.removed:
                        model.removed = True
                        model.aspired = {}
                self._cond.notify_all()
            for name in new_names:
                self.poll_model(name)
            for name in {e.name for e in entries} - set(new_names):
                self.poll_model(name)
            self.wait_settled(new_names, timeout=timeout, what="servable" if initial else "model")

    def _check_labels(self, entries: list[ModelEntry]) -> None:
        for e in entries:
            model = self._models.get(e.name)
            current = model.entry.version_labels if model is not None and not model.removed else {}
            for label, version in e.version_labels.items():
                v = model.versions.get(version) if model is not None else None
                if v is not None and v.state == State.AVAILABLE:
                    continue
                if self._allow_unavailable_labels and current.get(label, version) == version:
                    continue
                raise FailedPreconditionError(
                    f"Request to assign label to version {version} of model {e.name}, which is "
                    "not currently available for inference",
                    model=e.name,
                    version=version,
                )

    # ------------------------------------------------------------------ file-system source

    def poll_model(self, name: str) -> None:
        """Re-read one model's base path and update its aspired versions (TF Serving compat spec §3.1)."""
        from .versions import discover_versions, select

        with self._cond:
            model = self._models.get(name)
            if model is None or model.removed:
                return
            entry = model.entry
        try:
            found = discover_versions(entry.base_path)
        except OSError as exc:
            log.error(
                "File system storage path source: could not list base path %s for servable %s: %s",
                entry.base_path, name, exc,
            )
            return
        if not found:
            log.warning("No versions of servable %s found under base path %s", name, entry.base_path)
        aspired = select(entry.version_policy, found, name)
        with self._cond:
            if model.removed or model.entry is not entry:
                return
            if model.aspired != aspired:
                model.aspired = aspired
                model.failed &= set(aspired)
                self._cond.notify_all()

    def poll_all(self) -> None:
        for name in self.model_names():
            self.poll_model(name)

    # ------------------------------------------------------------------ waiting

    def _settled(self, model: _Model) -> bool:
        if model.removed:
            return True
        if not model.aspired:  # not polled yet, or no versions on disk: wait (like upstream)
            return False
        for version in model.aspired:
            v = model.versions.get(version)
            if v is None:
                return False
            if v.state == State.AVAILABLE:
                continue
            if v.state == State.END and version in model.failed:
                continue
            return False
        return True

    def wait_settled(
        self, names: Iterable[str], timeout: float | None = None, what: str = "servable"
    ) -> None:
        """Block until every named model settled; raise if any aspired version failed to load.

        ``what`` is the noun of the error (upstream says ``servable(s)`` at startup and
        ``model(s)`` for models added by a reload).
        """
        names = list(names)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not all(self._settled(self._models[n]) for n in names):
                if self._stopping:
                    raise UnknownError("Server is shutting down")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise UnknownError(f"Timed out waiting for models {names} to load")
                self._cond.wait(remaining if remaining is not None else 1.0)
            errors: list[tuple[str, int, ServingError]] = []
            for n in names:
                model = self._models[n]
                for version in sorted(model.failed):
                    error = model.versions[version].error
                    if error is not None:
                        errors.append((n, version, error))
        if errors:
            # upstream's rendering: "{{{name: m version: 1} due to error: CODE: msg}, }"
            parts = "".join(
                f"{{{{name: {n} version: {ver}}} due to error: {err.code.name}: {err.message}}}, "
                for n, ver, err in errors
            )
            raise UnknownError(f"{len(errors)} {what}(s) did not become available: {{{parts}}}")

    # ------------------------------------------------------------------ workers

    def _ensure_worker(self, model: _Model) -> None:
        if model.thread is None or not model.thread.is_alive():
            model.thread = threading.Thread(
                target=self._work, args=(model,), name=f"manager-{model.entry.name}", daemon=True
            )
            model.thread.start()

    def _work(self, model: _Model) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    aspired = model.aspired or {}
                    states = {v: x.state for v, x in model.versions.items()}
                    action = next_action(aspired, states, model.failed)
                    if action is not None:
                        break
                    self._cond.wait()
                if action.kind == "load":
                    v = _Version(action.version, aspired[action.version])
                    model.versions[action.version] = v
                    self._set_state(model, v, State.LOADING)
                    v.error = None
                else:
                    v = model.versions[action.version]
                    self._set_state(model, v, State.UNLOADING)
            if action.kind == "load":
                self._load(model, v)
            else:
                self._unload(model, v)

    def _set_state(self, model: _Model, v: _Version, state: State) -> None:
        v.state = state
        self._cond.notify_all()
        if self._on_state is not None:
            try:
                self._on_state(model.entry.name, v.version, state)
            except Exception:  # metrics must never break serving
                log.exception("state hook failed")

    def _still_aspired(self, model: _Model, version: int) -> bool:
        with self._cond:
            return (
                not self._stopping and not model.removed and version in (model.aspired or {})
            )

    def _load(self, model: _Model, v: _Version) -> None:
        name = model.entry.name
        error: ServingError | None = None
        servable = None
        for attempt in range(self._retries + 1):
            log.info("Loading servable version {name: %s version: %d}", name, v.version)
            try:
                servable = self._loader(name, v.version, v.path)
                error = None
                break
            except Exception as exc:  # noqa: BLE001 - any load failure is a version error
                error = _as_serving_error(exc)
                log.error(
                    "Loading servable: {name: %s version: %d} failed: %s: %s",
                    name, v.version, error.code.name, error.message,
                )
            if attempt < self._retries and not self._sleep_unless_unaspired(model, v.version):
                break
        with self._cond:
            if error is None:
                v.servable = servable
                self._set_state(model, v, State.AVAILABLE)
                log.info("Successfully loaded servable version {name: %s version: %d}",
                         name, v.version)
            else:
                v.error = error
                model.failed.add(v.version)
                self._set_state(model, v, State.END)

    def _sleep_unless_unaspired(self, model: _Model, version: int) -> bool:
        deadline = time.monotonic() + self._retry_interval
        with self._cond:
            while True:
                if self._stopping or model.removed or version not in (model.aspired or {}):
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                self._cond.wait(remaining)

    def _unload(self, model: _Model, v: _Version, drain_timeout: float | None = None) -> None:
        deadline = None if drain_timeout is None else time.monotonic() + drain_timeout
        with self._cond:
            while v.refs > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            servable, v.servable = v.servable, None
        try:
            if servable is not None:
                servable.close()
        except Exception:  # noqa: BLE001
            log.exception("closing %s version %d failed", model.entry.name, v.version)
        servable = None  # the last reference: the after-unload hook can free it
        with self._cond:
            self._set_state(model, v, State.END)
        log.info("Unloaded servable version {name: %s version: %d}", model.entry.name, v.version)
        if self._on_unloaded is not None:  # outside the lock: it may take a few ms
            try:
                self._on_unloaded(model.entry.name, v.version, v.path)
            except Exception:  # noqa: BLE001
                log.exception("after-unload hook failed")

    # ------------------------------------------------------------------ shutdown

    def shutdown(self, drain_timeout: float = 30.0) -> None:
        """Stop the workers, wait for in-flight requests (bounded), close every servable."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            models = list(self._models.values())
        for model in models:
            if model.thread is not None and model.thread is not threading.current_thread():
                model.thread.join(timeout=drain_timeout)
        for model in models:
            for v in list(model.versions.values()):
                if v.state in (State.AVAILABLE, State.UNLOADING):
                    with self._cond:
                        v.state = State.UNLOADING
                    self._unload(model, v, drain_timeout=drain_timeout)
