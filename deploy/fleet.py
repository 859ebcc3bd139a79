"""Swaps, rollbacks and status over a fleet: every replica must load, serve and pass parity.

Behind a load balancer a URL reaches a random replica, so a swap checked through it can be
declared good while other replicas still serve the old version or failed to load the new one.
Here the fleet is the unit: the swap plans of :mod:`tfship.deploy.swap` run unchanged, but every
server-facing step fans out over the replicas (one handle each, :meth:`Client.replicas`):

* shared storage (latest-N): publish once; wait (bounded) until *every* replica reports the new
  version AVAILABLE; parity on *each* replica against that exact version; then wait until every
  replica answers unlabelled requests with it;
* labels: every config push goes to every replica, every wait and check runs on each of them;
* any replica that fails to load, fails parity or stops answering fails the swap, which is then
  rolled back on all replicas (the new version dir leaves the shared storage: every replica
  loads the old version again before unloading the new one);
* ``min_replicas`` (default: all) decides whether replicas that do not answer before the swap
  starts block it, or are left out (they read the shared storage when they come back).

The history record lists each replica's result and timings (:class:`ReplicaResult`).

>>> options = SwapOptions(url="grpc://10.0.0.1:8500,10.0.0.2:8500,10.0.0.3:8500")  # doctest: +SKIP
>>> swap("models", "mnist", "mnist_v2.keras", options=options).replicas  # doctest: +SKIP
[{'url': 'grpc://10.0.0.1:8500', 'ok': True, 'available_s': 1.1, ...}, ...]
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tfship.deploy.plan import (
    ServingClient,
    Staged,
    SwapOptions,
    SwapPlan,
    SwapRecord,
    reload_config,
    report_dict,
)

from tfship.errors import NotFoundError, ServingError, SwapError, TfshipError, UnavailableError, error_for_code

__all__ = ["ReplicaResult", "ReplicaStatus", "FleetStatus", "fleet_status", "FleetPlan"]

T = TypeVar("T")


@dataclass
class ReplicaResult:
    """What one replica did during a fleet swap or rollback."""

    url: str
    ok: bool = True
    #: seconds from publish to AVAILABLE on this replica
    available_s: float | None = None
    parity: dict[str, Any] | None = None
    error: str | None = None
    #: not part of this swap: it did not answer when the swap started (allowed by min_replicas)
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v is not False or k == "ok"}


class _Fleet:
    """The replica handles of one swap and their per-replica results."""

    def __init__(self, options: SwapOptions, name: str) -> None:
        from tfship.client import ClientConfig, connect

        self.name = name
        self.options = options
        # Fleet operations ask each replica directly; one retry pass is enough for a status poll.
        self.client = connect(options.url, ClientConfig(timeout=min(options.timeout, 30.0)))
        handles = self.client.replicas()
        self.results = {h.url: ReplicaResult(h.url) for h in handles}
        self.live = self._probe(handles)
        self.published_at: float | None = None
        self._lock = threading.Lock()

    def _probe(self, handles: Sequence[Any]) -> list[Any]:
        """The replicas that answer now; refuse when fewer than ``min_replicas`` do."""
        def answers(handle: ServingClient) -> str | None:
            try:
                handle.status(self.name, timeout=5.0)
                return None
            except ServingError as exc:
                return exc.message.splitlines()[0]

        problems = _each(handles, answers)
        down = {h.url: p for h, p in zip(handles, problems, strict=True) if p is not None}
        needed = self.options.min_replicas if self.options.min_replicas is not None else len(handles)
        if len(handles) - len(down) < needed:
            listed = "; ".join(f"{url}: {why}" for url, why in down.items())
            self.client.close()
            raise SwapError(
                f"Only {len(handles) - len(down)} of {len(handles)} replicas of {self.name!r} answer "
                f"(down: {listed}); the swap needs {needed}. Bring them back, or pass --min-replicas "
                f"{len(handles) - len(down)} to swap the ones that answer (the others load the shared "
                "storage's latest version when they return).")
        for url, why in down.items():
            self.results[url] = ReplicaResult(url, ok=False, error=f"down before the swap: {why}", skipped=True)
        return [h for h in handles if h.url not in down]

    # ------------------------------------------------------------ fan-out

    def each(self, what: str, fn: Callable[[Any], T]) -> list[T]:
        """Run ``fn(replica)`` on every live replica at once; fail naming every replica that failed."""
        failures: list[str] = []

        def run(handle: ServingClient) -> Any:
            try:
                return fn(handle)
            except TfshipError as exc:
                message = str(exc).splitlines()[0]
                with self._lock:
                    result = self.results[handle.url]
                    result.ok, result.error = False, result.error or f"{what}: {message}"
                    failures.append(f"replica {handle.url}: {message}")
                return None

        out = _each(self.live, run)
        if failures:
            raise SwapError(f"{what} failed on {len(failures)} of {len(self.live)} replicas: " + "; ".join(failures))
        return out

    def wait_available(self, version: int) -> None:
        """Every live replica reports ``version`` AVAILABLE (its load error, or silence, fails it)."""
        def wait(handle: ServingClient) -> None:
            _wait_replica_available(handle, self.name, version, self.options.timeout)
            if self.published_at is not None:
                with self._lock:
                    self.results[handle.url].available_s = round(time.monotonic() - self.published_at, 4)

        self.each(f"loading version {version}", wait)

    def close(self) -> None:
        self.client.close()


def _wait_replica_available(handle: ServingClient, model: str, version: int, timeout: float,
                            silent_limit: float = 5.0) -> None:
    """Poll one replica until ``version`` is AVAILABLE; its load error fails at once, and so does a
    replica that stops answering for ``silent_limit`` s (instead of being waited for until ``timeout``)."""
    deadline = time.monotonic() + timeout
    last_answer = time.monotonic()
    delay = 0.05
    while True:
        versions = []
        try:
            versions = handle.status(model, timeout=5.0)
            last_answer = time.monotonic()
        except NotFoundError:  # it answers; the model is not loaded yet
            last_answer = time.monotonic()
        except UnavailableError as exc:
            if time.monotonic() - last_answer > silent_limit:
                raise UnavailableError(f"stopped answering ({exc.message.splitlines()[0]})") from None
        for v in versions:
            if v.version == version and v.available:
                return
            if v.version == version and v.state == "END" and v.error_code:
                raise error_for_code(v.error_code, f"version {version} failed to load: {v.error_message}")
        if time.monotonic() > deadline:
            seen = ", ".join(str(v) for v in versions) or "no version"
            raise UnavailableError(f"version {version} of {model!r} not AVAILABLE after {timeout:g} s ({seen})")
        time.sleep(delay)  # polling a remote state; bounded by the deadline above
        delay = min(delay * 1.5, 0.5)


def _wait_replica(handle: ServingClient, condition: Callable[[Any], bool], what: str, timeout: float,
                  silent_limit: float = 5.0) -> None:
    """Poll ``condition(handle)`` until true; fail on timeout or when the replica stops answering."""
    deadline = time.monotonic() + timeout
    last_answer = time.monotonic()
    delay = 0.05
    while True:
        try:
            if condition(handle):
                return
            last_answer = time.monotonic()
        except UnavailableError as exc:
            if time.monotonic() - last_answer > silent_limit:
                raise UnavailableError(f"stopped answering ({exc.message.splitlines()[0]})") from None
        except ServingError:
            last_answer = time.monotonic()
        if time.monotonic() > deadline:
            raise UnavailableError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(delay)  # polling a remote state; bounded by the deadline above
        delay = min(delay * 1.5, 0.5)


def _each(handles: Sequence[Any], fn: Callable[[Any], T]) -> list[T]:
    if len(handles) <= 1:
        return [fn(h) for h in handles]
    with ThreadPoolExecutor(max_workers=len(handles)) as pool:
        return list(pool.map(fn, handles))


class _FleetView:
    """What a swap plan asks of "the server", answered by every live replica."""

    def __init__(self, fleet: _Fleet) -> None:
        self.fleet = fleet
        self.url = fleet.options.url

    def wait_until_available(self, model: str, version: int | None = None, *, timeout: float = 60.0,
                             poll_interval: float = 0.1) -> int:
        assert version is not None
        self.fleet.wait_available(version)
        return version

    def signature_info(self, model: str, **kwargs: Any) -> Any:
        # Every replica reads the same storage: the first live one answers for the version's signature.
        return self.fleet.live[0].signature_info(model, **kwargs)

    def __enter__(self) -> _FleetView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fleet.close()


class FleetPlan(SwapPlan):
    """:class:`tfship.deploy.plan.SwapPlan` over several replicas (see the module doc)."""

    fleet: _Fleet

    def client(self) -> Any:
        self.fleet = _Fleet(self.options, self.name)
        return _FleetView(self.fleet)

    def current_default(self, client: ServingClient) -> int | None:
        """The version every live replica's unlabelled requests (or the label) resolve to.

        Replicas that disagree (a swap half done by hand, a replica with its own storage) stop
        the swap: which version would a rollback return to?
        """
        if self.options.label is not None:
            return super().current_default(client)

        def default(handle: ServingClient) -> int | None:
            available = [v.version for v in handle.status(self.name) if v.available]
            return max(available) if available else None

        defaults = self.fleet.each("reading the served version", default)
        if len(set(defaults)) > 1:
            listed = ", ".join(f"{h.url}: {d}" for h, d in zip(self.fleet.live, defaults, strict=True))
            raise SwapError(f"The replicas of {self.name!r} serve different versions ({listed}); "
                            "wait until they agree (`tfship status`) or roll back first.")
        return defaults[0] if defaults else None

    def promote(self, client: ServingClient, current: int | None, staged: Staged) -> SwapRecord:
        self.fleet.published_at = time.monotonic()
        return super().promote(client, current, staged)

    def _server_parity(self, client: ServingClient, staged: Staged) -> dict[str, Any]:
        from tfship.client.parity import check_parity

        def parity(handle: ServingClient) -> dict[str, Any]:
            report = check_parity(handle, self.name, self.model_dir / str(staged.version),
                                  version=staged.version, tolerances=self.options.tolerances)
            summary = report_dict(report)
            self.fleet.results[handle.url].parity = summary
            if not report.ok:
                raise SwapError(f"served outputs differ from the reference: {report.text().splitlines()[0]}")
            return summary

        reports = self.fleet.each(f"parity of version {staged.version}", parity)
        # The record's summary is the worst replica per output; each replica's own is in .replicas.
        outputs: dict[str, dict[str, Any]] = {}
        for report in reports:
            for name, out in report["outputs"].items():
                prev = outputs.get(name, {"max_abs": 0.0, "max_rel": 0.0, "ok": True})
                outputs[name] = {"max_abs": max(prev["max_abs"], out["max_abs"]),
                                 "max_rel": max(prev["max_rel"], out["max_rel"]), "ok": prev["ok"] and out["ok"]}
        return {"ok": True, "rows": reports[0]["rows"], "replicas": len(reports), "outputs": outputs}

    def _wait_default(self, client: ServingClient, version: int) -> None:
        self.fleet.each(f"serving version {version} by default", lambda h: _wait_replica(
            h, lambda r: r.metadata(self.name).version == version,
            f"unlabelled requests to resolve to version {version}", self.options.timeout))

    def _wait_label(self, client: ServingClient, label: str, version: int) -> None:
        self.fleet.each(f"moving label {label!r}", lambda h: _wait_replica(
            h, lambda r: r.metadata(self.name, label=label).version == version,
            f"label {label!r} to resolve to version {version}", self.options.timeout))

    def _reload(self, text: str) -> None:
        self.fleet.each("pushing the model config",
                        lambda handle: reload_config(handle.url, text, self.options.timeout))

    def record(self, record: SwapRecord) -> SwapRecord:
        return super().record(self._with_replicas(record))

    def fail(self, record: SwapRecord) -> SwapError:
        error = super().fail(self._with_replicas(record))
        failed = [r.url for r in self.fleet.results.values() if not r.ok and not r.skipped]
        if failed:
            error.args = (f"{error.args[0]}\nFailed replicas: {', '.join(failed)}",)
        return error

    def _with_replicas(self, record: SwapRecord) -> SwapRecord:
        if getattr(self, "fleet", None) is None:
            return record
        return dataclasses.replace(record, replicas=[r.as_dict() for r in self.fleet.results.values()])


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica's versions of a model (``error`` when it did not answer)."""

    url: str
    versions: list[Any] = field(default_factory=list)
    error: str | None = None

    @property
    def default(self) -> int | None:
        available = [v.version for v in self.versions if v.available]
        return max(available) if available else None


@dataclass(frozen=True)
class FleetStatus:
    model: str
    replicas: list[ReplicaStatus]

    @property
    def agrees(self) -> bool:
        """Every replica answers and serves the same default version."""
        return all(r.error is None for r in self.replicas) and len({r.default for r in self.replicas}) == 1


def fleet_status(url: str | Sequence[str], model: str, *, timeout: float = 10.0) -> FleetStatus:
    """Each replica's versions of ``model``; a replica that does not answer is reported, not raised."""
    from tfship.client import ClientConfig, connect

    with connect(url, ClientConfig(timeout=timeout)) as client:
        def one(handle: ServingClient) -> ReplicaStatus:
            try:
                return ReplicaStatus(handle.url, handle.status(model))
            except ServingError as exc:
                return ReplicaStatus(handle.url, error=exc.message.splitlines()[0])

        return FleetStatus(model, _each(client.replicas(), one))
