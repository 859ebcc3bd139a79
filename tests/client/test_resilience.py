"""TF-free: the attempts of one call over several replicas (client/resilience.py), driven by hand."""

from __future__ import annotations

from tfship.client.config import FaultPolicy
from tfship.client.endpoints import parse_target
from tfship.client.resilience import Faults

from tfship.errors import DeadlineExceededError, InvalidArgumentError, UnavailableError

TARGET = parse_target("grpc://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3")


def no_retry(exc: object, attempt: int, deadline: float | None) -> float | None:
    return None


def test_a_timed_out_attempt_is_retried_at_once_on_another_replica_and_that_one_is_ejected() -> None:
    faults = Faults(TARGET, FaultPolicy(attempt_timeout=0.1))
    call = faults.call("m", None, no_retry)
    first = call.next()
    assert first.cut and first.timeout == 0.1
    assert call.failed(first, DeadlineExceededError("Deadline Exceeded")) == 0.0
    second = call.next()
    assert second.endpoint != first.endpoint
    assert not second.cut  # one attempt per call is cut short at most
    call.succeeded(second)
    stats = faults.stats()
    assert (stats.calls, stats.attempts, stats.timeout_retries, stats.attempt_timeouts) == (1, 2, 1, 1)
    states = {h.url: h.state for h in stats.replicas}
    assert states[first.endpoint.url] == "ejected" and states[second.endpoint.url] == "healthy"
    assert all(faults.call("m", None, no_retry).next().endpoint != first.endpoint for _ in range(6))


def test_the_call_deadline_bounds_the_attempt_and_a_bad_request_is_not_retried() -> None:
    faults = Faults(TARGET, FaultPolicy(attempt_timeout=5.0))
    import time

    call = faults.call("m", time.monotonic() + 1.0, no_retry)
    attempt = call.next()
    assert not attempt.cut and attempt.timeout is not None and attempt.timeout <= 1.0
    assert call.failed(attempt, InvalidArgumentError("bad input")) is None
    assert all(h.state == "healthy" for h in faults.stats().replicas)


def test_no_attempt_is_cut_short_when_the_budget_could_not_pay_for_its_retry() -> None:
    faults = Faults(TARGET, FaultPolicy(attempt_timeout=0.1, budget_min_per_second=0.0))
    faults.budget._balance = 0.0
    attempt = faults.call("m", None, no_retry).next()
    assert not attempt.cut and attempt.timeout is None


def test_adaptive_timeouts_and_hedge_delays_follow_each_models_latency() -> None:
    faults = Faults(TARGET, FaultPolicy(hedge=True))
    assert faults.attempt_timeout("fast") is None and faults.hedge_delay("fast") is None  # not known yet
    for _ in range(100):
        faults.call("fast", None, no_retry).succeeded(faults.call("fast", None, no_retry).next())
    slow = faults.window("slow")
    for _ in range(100):
        slow.add(2.0)
    assert faults.attempt_timeout("fast") == 0.1  # the floor
    assert faults.attempt_timeout("slow") == 8.0  # 4 x p99
    assert faults.hedge_delay("slow") == 2.0


def test_a_hedge_goes_to_another_replica_within_the_budget() -> None:
    faults = Faults(TARGET, FaultPolicy(hedge=True, hedge_delay=0.01))
    call = faults.call("m", None, no_retry)
    first = call.next()
    hedge = call.hedge()
    assert hedge is not None and hedge.endpoint != first.endpoint and hedge.hedge
    assert call.hedge() is None  # one hedge per call
    call.cancelled(first)
    call.succeeded(hedge)
    stats = faults.stats()
    assert (stats.hedges, stats.hedge_wins) == (1, 1)


def test_unavailable_follows_the_retry_policy() -> None:
    faults = Faults(TARGET, FaultPolicy())
    call = faults.call("m", None, lambda exc, attempt, deadline: 0.05 if attempt < 4 else None)
    attempt = call.next()
    assert call.failed(attempt, UnavailableError("refused")) == 0.05
    assert faults.stats().unavailable_retries == 1
