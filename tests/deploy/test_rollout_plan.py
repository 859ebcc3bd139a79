"""--steps and --gate parsing, and the gates judged on a replica's window (no server needed)."""

from __future__ import annotations

import pytest
from tfship.deploy.rollout_plan import Gates, Step, judge, parse_gates, parse_steps

from tfship.errors import ConfigError


def test_steps_parse_with_durations_and_a_promoting_last_step() -> None:
    steps = parse_steps("shadow:5m,5%:90s,25%:1h,100%")
    assert [(s.name, s.canary_percent, s.seconds) for s in steps] == [
        ("shadow", 0.0, 300.0), ("5%", 5.0, 90.0), ("25%", 25.0, 3600.0), ("100%", 100.0, 0.0)]
    assert steps[-1].promotes and not steps[0].promotes
    for bad, why in [("5%,100%", "needs a duration"), ("shadow:5m,50%:1m", "last step must be 100%"),
                     ("shadow:5x,100%", "not like 90s"), ("half:1m,100%", "expected shadow"),
                     ("0%:1m,100%", "above 0%"), ("", "empty")]:
        with pytest.raises(ConfigError, match=why):
            parse_steps(bad)


def test_gates_keep_defaults_for_what_is_left_out() -> None:
    gates = parse_gates("agreement>=0.99, p99<=2x")
    assert gates == Gates(agreement=0.99, p99_ratio=2.0)
    assert parse_gates(gates.text()) == gates
    with pytest.raises(ConfigError, match="is not one of"):
        parse_gates("agreement>0.99")


def window(pairs: int = 0, agreeing: int = 0, runs: int = 0, errors: int = 0,
           served: dict | None = None) -> dict:
    return {"stable": 1, "candidate": 2, "window": {
        "shadow": {"pairs": pairs, "agreeing": agreeing, "candidate_runs": runs, "candidate_errors": errors,
                   "worst_abs_error": 0.5, "worst_output": "y"},
        "served": served or {}}}


def test_each_gate_fails_naming_the_replica_and_the_numbers() -> None:
    gates, shadow, canary = Gates(min_pairs=100, min_samples=50), Step("shadow", 0, 60), Step("5%", 5, 60)
    assert judge("r1", window(pairs=99, agreeing=50, runs=99), gates, shadow) is None  # too few pairs yet
    failure = judge("r1", window(pairs=100, agreeing=98, runs=100), gates, shadow)
    assert failure is not None and failure.gate == "agreement>=0.999" and "98 of 100" in str(failure)
    assert "replica r1" in str(failure)
    assert judge("r1", window(pairs=100, agreeing=100, runs=101, errors=1), gates, shadow).gate \
        == "error_rate<=0.001"  # type: ignore[union-attr]
    slow = {"1": {"count": 500, "errors": 0, "p99_ms": 10.0, "latency_samples": 500},
            "2": {"count": 60, "errors": 0, "p99_ms": 30.0, "latency_samples": 60}}
    assert judge("r1", window(served=slow), gates, shadow) is None  # latency is judged in canary steps
    failure = judge("r1", window(served=slow), gates, canary)
    assert failure is not None and failure.gate == "p99<=1.5x" and "3.00x" in failure.detail
    few = {"2": {"count": 60, "errors": 0, "p99_ms": 30.0, "latency_samples": 60}}
    assert judge("r1", window(served=few), gates, canary) is None  # no baseline for stable
    assert judge("r1", window(served=few), gates, canary, stable_p99_ms=10.0) is not None  # the step before's
