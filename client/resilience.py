"""The attempts of one call over several replicas: attempt timeouts, retries elsewhere, hedging,
and the one budget that bounds them.

I/O-free, shared by the blocking and the asyncio clients (the httpx model: the drivers in
:mod:`tfship.client.base` and :mod:`tfship.client.aio.base` only wait). A replica that hangs, in
a long GC pause, on a frozen VM or with a stuck disk, keeps its sockets open and answers nothing;
without an attempt timeout every call sent to it waits out its whole deadline, and within a few
calls every caller is stuck behind it. So:

* each attempt gets an attempt timeout below the call's deadline (adaptive: a multiple of the
  recent p99), and a call whose attempt timed out is retried at once on another replica (every
  call the client makes is idempotent);
* the replica that timed out is ejected (:class:`tfship.client.endpoints.RoundRobin`) and probed
  back after a cool-down;
* optionally a hedge: a second attempt to another replica after about the p95, first answer wins;
* retries after a timeout and hedges draw on one :class:`RetryBudget` (10% of calls by default),
  so a fleet that is slow everywhere is not sent 2x its load.

The driver sets :data:`ATTEMPT_ENDPOINT` around each attempt; a transport that balances itself
(one server, or several) sends the attempt to :func:`current_endpoint` when it is set.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from tfship.client.config import FaultPolicy
from tfship.client.endpoints import Endpoint, ReplicaHealth, RoundRobin, Target

from tfship.errors import ConfigError, DeadlineExceededError, ServingError, UnavailableError

__all__ = ["ATTEMPT_ENDPOINT", "current_endpoint", "Attempt", "CallAttempts", "FaultStats", "Faults",
           "LatencyWindow", "RetryBudget"]

#: The replica the current attempt goes to (None: the transport picks, e.g. a single server).
ATTEMPT_ENDPOINT: ContextVar[Endpoint | None] = ContextVar("tfship_attempt_endpoint", default=None)


def current_endpoint() -> Endpoint | None:
    """The replica the running attempt was sent to by the driver, if any."""
    return ATTEMPT_ENDPOINT.get()


@contextlib.contextmanager
def attempt_to(endpoint: Endpoint | None) -> Iterator[None]:
    token = ATTEMPT_ENDPOINT.set(endpoint)
    try:
        yield
    finally:
        ATTEMPT_ENDPOINT.reset(token)


class LatencyWindow:
    """The last ``size`` successful attempt latencies and their quantiles (recomputed every
    ``every`` samples, so a call costs an append, not a sort)."""

    def __init__(self, size: int = 512, every: int = 16, min_samples: int = 20) -> None:
        self._ring: list[float] = []
        self._size, self._every, self._min = size, every, min_samples
        self._next = 0
        self._fresh = 0
        self._sorted: list[float] = []
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            if len(self._ring) < self._size:
                self._ring.append(seconds)
            else:
                self._ring[self._next] = seconds
                self._next = (self._next + 1) % self._size
            self._fresh += 1

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the window, None before ``min_samples`` answers."""
        with self._lock:
            if len(self._ring) < self._min:
                return None
            if self._fresh >= self._every or not self._sorted:
                self._sorted, self._fresh = sorted(self._ring), 0
            return self._sorted[min(len(self._sorted) - 1, int(q * len(self._sorted)))]


class RetryBudget:
    """Finagle's retry budget: each call deposits ``ratio`` of a token, each retry after a
    timeout or hedge spends one; ``min_per_second`` tokens accrue with time so a client making
    few calls can still retry. The balance is capped at ten seconds' worth of both."""

    def __init__(self, ratio: float, min_per_second: float) -> None:
        self.ratio, self.min_per_second = ratio, min_per_second
        self.cap = max(1.0, 10 * min_per_second)
        self._balance = self.cap
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._balance = min(self.cap, self._balance + (now - self._at) * self.min_per_second)
        self._at = now

    def deposit(self) -> None:
        with self._lock:
            self._refill()
            self.cap = max(self.cap, 10 * self.min_per_second)
            self._balance = min(self._balance + self.ratio, max(self.cap, self._balance))

    def affordable(self) -> bool:
        with self._lock:
            self._refill()
            return self._balance >= 1.0 - 1e-9

    def withdraw(self, force: bool = False, reserve: float = 0.0) -> bool:
        """Spend one token; False (nothing spent) when the balance is short of 1 + ``reserve``
        (hedges leave a reserve for timeout retries), unless ``force`` (an attempt that was cut
        short because a retry was affordable then)."""
        with self._lock:
            self._refill()
            if self._balance < 1.0 + reserve - 1e-9 and not force:  # tenths add up to 0.999...
                return False
            self._balance -= 1.0
            return True


@dataclass(frozen=True)
class FaultStats:
    """What the client's fault handling did (:meth:`tfship.client.Client.fault_stats`).

    ``attempts / calls`` is the load the client put on the fleet relative to a client without
    retries or hedges; the budget keeps it near ``1 + FaultPolicy.budget_ratio``.
    """

    calls: int
    attempts: int
    timeout_retries: int
    unavailable_retries: int
    hedges: int
    hedge_wins: int
    attempt_timeouts: int
    budget_denied: int
    #: the current attempt timeout and hedge delay per model
    attempt_timeout_s: dict[str, float]
    hedge_delay_s: dict[str, float]
    replicas: list[ReplicaHealth] = field(default_factory=list)

    @property
    def load_factor(self) -> float:
        """Attempts per call (1.0 = no extra load)."""
        return self.attempts / self.calls if self.calls else 1.0


@dataclass
class Attempt:
    """One attempt of a call: where it goes, its timeout, and whether the attempt timeout (not
    the call's deadline) is what bounds it."""

    endpoint: Endpoint | None
    timeout: float | None
    cut: bool = False
    hedge: bool = False
    started: float = field(default_factory=time.monotonic)


class Faults:
    """A client's fault handling: its replicas' rotation and health, the latency window, the
    budget and the counters. One per client; thread-safe."""

    DNS_REFRESH_SECONDS = 10.0

    def __init__(self, target: Target, policy: FaultPolicy, max_attempts: int = 4) -> None:
        self.target, self.policy, self.max_attempts = target, policy, max(1, max_attempts)
        self.pool: RoundRobin | None = None
        if target.several:
            self.pool = RoundRobin(target.resolve(), cooldown=policy.ejection_seconds,
                                   max_cooldown=policy.max_ejection_seconds,
                                   max_ejected_fraction=policy.max_ejected_fraction,
                                   slow_factor=policy.slow_factor)
        self._resolved_at = time.monotonic()
        # Latencies per model: a model's own calls set its attempt timeout and hedge delay.
        self._windows: dict[str, LatencyWindow] = {}
        self.budget = RetryBudget(policy.budget_ratio, policy.budget_min_per_second)
        self._counts = dict.fromkeys(("calls", "attempts", "timeout_retries", "unavailable_retries", "hedges",
                                      "hedge_wins", "attempt_timeouts", "budget_denied"), 0)
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether attempts are steered, cut short and hedged (several replicas, policy enabled)."""
        return self.pool is not None and self.policy.enabled

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def pick(self, exclude: tuple[Endpoint, ...] = ()) -> Endpoint | None:
        """The replica for an attempt (None for a single server); a DNS name is resolved again
        every ``DNS_REFRESH_SECONDS``."""
        if self.pool is None:
            return None
        if self.target.dns_name is not None and time.monotonic() - self._resolved_at > self.DNS_REFRESH_SECONDS:
            self._resolved_at = time.monotonic()
            with contextlib.suppress(ConfigError):  # keep the last good answer through a DNS hiccup
                self.pool.refresh(self.target.resolve())
        return self.pool.pick(exclude)

    def window(self, key: str) -> LatencyWindow:
        window = self._windows.get(key)
        if window is None:
            with self._lock:
                window = self._windows.setdefault(key, LatencyWindow())
        return window

    def attempt_timeout(self, key: str) -> float | None:
        """Seconds an attempt of a call about ``key`` (a model) may take before the call moves
        on (None: not known yet)."""
        if self.policy.attempt_timeout is not None:
            return self.policy.attempt_timeout
        p99 = self.window(key).quantile(0.99)
        if p99 is None:
            return None
        return max(self.policy.min_attempt_timeout, self.policy.attempt_timeout_p99_factor * p99)

    def hedge_delay(self, key: str) -> float | None:
        """Seconds before a hedge is sent (None: hedging off or nothing to base it on)."""
        if not (self.active and self.policy.hedge):
            return None
        if self.policy.hedge_delay is not None:
            return self.policy.hedge_delay
        p95 = self.window(key).quantile(0.95)
        return None if p95 is None else max(self.policy.min_hedge_delay, p95)

    def call(self, key: str, deadline: float | None,
             retry_delay: Callable[[ServingError, int, float | None], float | None]) -> CallAttempts:
        """The attempts of a new call about ``key`` (the model) with ``deadline`` (monotonic;
        None: none); ``retry_delay`` is the client's schedule for UNAVAILABLE (see
        ``BaseClient._retry_delay``)."""
        self.count("calls")
        self.budget.deposit()
        return CallAttempts(self, key, deadline, retry_delay)

    def stats(self) -> FaultStats:
        with self._lock:
            counts = dict(self._counts)
        keys = list(self._windows)
        timeouts = {k: t for k in keys if self.active and (t := self.attempt_timeout(k)) is not None}
        hedges = {k: d for k in keys if (d := self.hedge_delay(k)) is not None}
        return FaultStats(**counts, attempt_timeout_s=timeouts, hedge_delay_s=hedges,
                          replicas=self.pool.health() if self.pool is not None else [])


class CallAttempts:
    """One call's attempts: where the next goes and how long it may take, what an outcome means
    for the replica, and whether (and when) to try again. No I/O."""

    def __init__(self, faults: Faults, key: str, deadline: float | None,
                 retry_delay: Callable[[ServingError, int, float | None], float | None]) -> None:
        self.faults, self.key, self.deadline, self._retry_delay = faults, key, deadline, retry_delay
        self.timed_out = False
        self.number = 0
        self.tried: list[Endpoint] = []
        self.hedged = False

    def left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def next(self, *, hedge: bool = False) -> Attempt:
        """The next attempt: to a replica this call has not tried yet when there is one."""
        faults = self.faults
        self.number += 1
        faults.count("attempts")
        endpoint = faults.pick(tuple(self.tried)) if faults.active else faults.pick()
        if endpoint is not None:
            self.tried.append(endpoint)
        left = self.left()
        limit = faults.attempt_timeout(self.key) if faults.active else None
        # One attempt per call is cut short at most: when the retry times out as well, the
        # request is slow, not the replica, and it gets the rest of the deadline.
        cut = (limit is not None and (left is None or limit < left) and faults.budget.affordable()
               and self.number < faults.max_attempts and not self.timed_out)
        return Attempt(endpoint, limit if cut else left, cut=cut, hedge=hedge)

    def hedge(self) -> Attempt | None:
        """A hedge to another replica, when this call has not hedged yet and the budget allows."""
        if self.hedged or not self.faults.active:
            return None
        healthy = self.faults.pool.healthy() if self.faults.pool is not None else []
        if not [e for e in healthy if e not in self.tried]:
            return None
        # Hedges leave a quarter of the budget's cap to the retries of attempts that time out:
        # a hung replica must never find the budget spent on hedges of merely slow calls.
        if not self.faults.budget.withdraw(reserve=self.faults.budget.cap / 4):
            self.faults.count("budget_denied")
            return None
        self.hedged = True
        self.faults.count("hedges")
        return self.next(hedge=True)

    def succeeded(self, attempt: Attempt) -> None:
        faults = self.faults
        seconds = time.monotonic() - attempt.started
        faults.window(self.key).add(seconds)
        if attempt.hedge:
            faults.count("hedge_wins")
        if faults.pool is not None and attempt.endpoint is not None:
            faults.pool.mark_up(attempt.endpoint)
            faults.pool.observe(attempt.endpoint, seconds)

    def cancelled(self, attempt: Attempt) -> None:
        """The attempt lost a hedge race and was cancelled: it says nothing about its replica."""
        if self.faults.pool is not None and attempt.endpoint is not None:
            self.faults.pool.release(attempt.endpoint)

    def failed(self, attempt: Attempt, exc: ServingError) -> float | None:
        """Seconds to wait before the next attempt, or None to give up with ``exc``."""
        faults, pool, endpoint = self.faults, self.faults.pool, attempt.endpoint
        if isinstance(exc, DeadlineExceededError) and attempt.cut:
            faults.count("attempt_timeouts")
            self.timed_out = True
            if pool is not None and endpoint is not None:
                pool.eject(endpoint, "timeout")
            left = self.left()
            if left is None or left > 0.001:
                faults.budget.withdraw(force=True)  # affordable when the attempt was cut short
                faults.count("timeout_retries")
                return 0.0
            return None
        if isinstance(exc, UnavailableError):
            delay = self._retry_delay(exc, self.number, self.deadline)
            if delay is not None:
                faults.count("unavailable_retries")
            return delay
        if pool is not None and endpoint is not None:
            limit = faults.attempt_timeout(self.key)
            if isinstance(exc, DeadlineExceededError):
                if limit is not None and not self.timed_out and time.monotonic() - attempt.started > limit:
                    pool.eject(endpoint, "timeout")  # not cut short (no budget), still hung
                else:
                    pool.release(endpoint)
            else:
                pool.mark_up(endpoint)  # it answered (with an error about the request): it is alive
        return None
