"""Checks shared by the hot-swap tests (local server and Docker): traffic that survived a swap.

Traffic runs without retries (tfship's client with max_attempts=1, a plain gRPC stub, plain httpx)
and every answer is compared with the in-memory Keras model of the version that answered, so a
moment of UNAVAILABLE or a wrong answer during a swap fails the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tfship.client import connect
from tfship.deploy.history import read_history
from tfship.deploy.swap import SwapOptions, swap
from tfship.deploy.traffic import Traffic

#: The callers that never retry: a swap must not fail a single one of their calls.
RAW = ("client", "stub", "http")


def outputs_of(model: Any, x: np.ndarray) -> np.ndarray:
    """What the in-memory Keras ``model`` answers for ``x``: the reference for its served version."""
    return np.asarray(model(x))


def assert_no_failure_without_retries(traffic: Traffic) -> None:
    """Every call answered at its first attempt with the values of the version that answered."""
    summary = traffic.summary()
    print(f"traffic {traffic.url or traffic.rest_url} via {traffic.vias}: {summary.line()}")
    assert summary.requests > 0
    assert summary.failed_without_retries == 0, (summary.line(), summary.errors)
    assert summary.wrong_values == 0 and summary.unchecked == 0, (summary.line(), summary.value_errors)
    if set(traffic.vias) <= set(RAW):
        assert summary.attempts == summary.requests  # one attempt per call: nothing retried


def assert_clean_traffic(traffic: Traffic, allowed: set[int]) -> None:
    """No failed call without retries, right values, only ``allowed`` versions, per client never backwards."""
    assert_no_failure_without_retries(traffic)
    summary = traffic.summary()
    assert set(summary.versions) <= allowed, summary.versions
    # Per client, the answering version never goes backwards: old until the new one serves.
    by_client: dict[int, list[int]] = {}
    for sample in sorted(traffic.samples, key=lambda s: s.start):
        by_client.setdefault(sample.client, []).append(traffic.version_of(sample))  # type: ignore[arg-type]
    for versions in by_client.values():
        assert versions == sorted(versions)


def assert_fleet_traffic(traffic: Traffic, windows: list[tuple[float, float, int]], allowed: set[int]) -> None:
    """A fleet's traffic: no failed request, only ``allowed`` versions, and between one change's end
    and the next one's start every answer came from the changed-to version.

    Not per client monotonic as on one server: during a change a balancer may send one request to a
    replica already switched and the next to one still switching.
    """
    assert_no_failure_without_retries(traffic)
    summary = traffic.summary()
    assert set(summary.versions) <= allowed, summary.versions
    ends = [(end, version) for _, end, version in windows]
    starts = [start for start, _, _ in windows[1:]] + [float("inf")]
    for (end, version), next_start in zip(ends, starts, strict=True):
        seen = {traffic.version_of(s) for s in traffic.window(end, next_start)}
        assert seen <= {version}, (version, seen)


def check_latest_swaps_under_load(url: str, models_dir: Path, make_affine_model: Any, *, swaps: int,
                                  timeout: float, rest_url: str | None = None) -> None:
    """The latest-1 acceptance scenario against any server at ``url`` serving ``models_dir/affine``.

    9 raw clients (tfship's without retries, plain gRPC stubs, plain HTTP when ``rest_url`` is given)
    send requests while ``swaps`` new versions (y = 2*sum(x) + 1 + i) are swapped in: no call fails
    at its only attempt, every answer has the values of the version that answered, every swap is
    promoted with parity, the last version answers, retention keeps two version dirs and the
    history holds one promotion per swap.
    """
    x = np.ones((2, 4), np.float32)
    options = SwapOptions(url=url, retention=2, timeout=timeout)
    expected = {1: outputs_of(make_affine_model(1.0), x)}
    vias = RAW if rest_url else RAW[:2]
    with Traffic(url, "affine", x, clients=9, via=vias, rest_url=rest_url, expected=expected,
                 max_seconds=400) as traffic:
        traffic.wait_for_requests(50)
        records = []
        for i in range(1, swaps + 1):
            model = make_affine_model(1.0 + i)
            records.append(swap(models_dir, "affine", model, options=options))
            expected[int(records[-1].to_version)] = outputs_of(model, x)  # type: ignore[arg-type]
    assert_clean_traffic(traffic, set(range(1, swaps + 2)))
    assert [r.to_version for r in records] == list(range(2, swaps + 2))
    assert all(r.outcome == "promoted" and r.parity and r.parity["ok"] for r in records)
    assert all(r.publish_to_serving_s is not None and r.publish_to_serving_s > 0 for r in records)
    with connect(url) as client:
        np.testing.assert_allclose(client.predict("affine", x), np.full((2, 1), 8.0 + 1.0 + swaps))
    # Retention 2: the serving version and one rollback target stay on disk.
    assert sorted(int(p.name) for p in (models_dir / "affine").iterdir() if p.name.isdigit()) == [swaps, swaps + 1]
    assert [r.outcome for r in read_history(models_dir, "affine")] == ["promoted"] * swaps
