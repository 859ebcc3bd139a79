"""The rollout parts of the server in-process, on real servables through a real DataPlane (no
transport): canary weights, shadow sampling and comparison, pinned requests untouched, run-time
changes, shadow dropped under saturation.

Versions of model ``m``: 1 = half_plus_two (stable), 2 = half_plus_three (disagrees everywhere),
3 = half_plus_two again (agrees).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tfship.serving.config.model_config import ModelEntry, Specific
from tfship.serving.core.server_core import CoreOptions, ServerCore
from tfship.serving.data_plane import DataPlane, ModelRef
from tfship.serving.event_loop import ServingLoop
from tfship.serving.metrics import ServerMetrics

from tfship.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError

X = {"x": np.array([[1.0], [2.0]], np.float32)}


@pytest.fixture
def core(tmp_path: Path, tf_serving_testdata: Path) -> Iterator[ServerCore]:
    base = tmp_path / "m"
    base.mkdir()
    os.symlink(tf_serving_testdata / "saved_model_half_plus_two_cpu" / "00000123", base / "1")
    os.symlink(tf_serving_testdata / "saved_model_half_plus_three" / "00000123", base / "2")
    os.symlink(tf_serving_testdata / "saved_model_half_plus_two_cpu" / "00000123", base / "3")
    loop = ServingLoop(model_threads=2, name="rollout-test").start()
    server = ServerCore(CoreOptions(max_num_load_retries=0, file_system_poll_wait_seconds=0, serving_loop=loop),
                        metrics=ServerMetrics())
    server.plane = DataPlane(server, loop)  # type: ignore[attr-defined]
    server.rollout.attach(server.plane)  # type: ignore[attr-defined]
    server.manager.apply_config([ModelEntry("m", str(base), Specific([1, 2, 3]))])  # labels need loaded versions
    server.manager.wait_settled(["m"], timeout=60)
    relabel(server, 2)
    server.rollout.policy._rng = random.Random(7)  # noqa: SLF001 - reproducible sampling
    yield server
    server.stop(drain_timeout=5)
    loop.stop()


def relabel(core: ServerCore, canary: int) -> None:
    entry = core.manager.entries()["m"]
    core.manager.apply_config([ModelEntry("m", entry.base_path, entry.version_policy, {"stable": 1, "canary": canary})])


def predict(core: ServerCore, ref: ModelRef) -> tuple[int, np.ndarray]:
    plane = core.plane  # type: ignore[attr-defined]
    served = plane.loop.call(plane.predict(ref, "", X), timeout=60)
    return served.version, served.value["y"]


def unpinned_versions(core: ServerCore, n: int) -> list[int]:
    return [predict(core, ModelRef("m"))[0] for _ in range(n)]


def serve(core: ServerCore, *, pinned: bool = False, label: str | None = None) -> np.ndarray:
    """One predict through the data plane (routing, then the rollout's observer)."""
    return predict(core, ModelRef("m", 1 if pinned else None, label))[1]


def wait_pairs(core: ServerCore, count: int) -> dict:
    deadline = time.monotonic() + 30
    while True:
        shadow = core.rollout.get("m")["models"]["m"]["window"]["shadow"]
        if shadow["pairs"] + shadow["candidate_errors"] >= count:
            return shadow
        assert time.monotonic() < deadline, shadow
        time.sleep(0.01)  # polling the shadow thread's result; bounded above


def test_without_a_rollout_unpinned_requests_get_the_highest_version_as_in_tf_serving(core: ServerCore) -> None:
    assert set(unpinned_versions(core, 20)) == {3}
    assert core.rollout.get("m")["models"]["m"]["active"] is False


def test_canary_weight_splits_unpinned_requests_and_leaves_pinned_ones_alone(core: ServerCore) -> None:
    state = core.rollout.set({"model": "m", "canary_percent": 25, "step": "25%"})["models"]["m"]
    assert (state["stable"], state["candidate"], state["canary_percent"], state["step"]) == (1, 2, 25, "25%")
    versions = unpinned_versions(core, 2000)
    share = versions.count(2) / len(versions)
    # binomial(2000, 0.25): sd 0.0097; 4 sd
    assert abs(share - 0.25) < 0.04 and set(versions) == {1, 2}
    # pinned by version or label: exactly what was asked
    assert predict(core, ModelRef("m", 3))[0] == 3
    assert {predict(core, ModelRef("m", label="stable"))[0] for _ in range(50)} == {1}
    assert {predict(core, ModelRef("m", label="canary"))[0] for _ in range(50)} == {2}


def test_weights_change_at_run_time_and_clearing_restores_the_default(core: ServerCore) -> None:
    core.rollout.set({"model": "m", "canary_percent": 0})
    assert set(unpinned_versions(core, 200)) == {1}  # under rollout, 0% = stable only
    core.rollout.set({"model": "m", "canary_percent": 100})
    assert set(unpinned_versions(core, 200)) == {2}
    relabel(core, 3)  # a new candidate: the label moves, the weight stays
    assert set(unpinned_versions(core, 200)) == {3}
    core.rollout.set({"model": "m", "clear": True})
    assert set(unpinned_versions(core, 50)) == {3}
    assert core.rollout.get()["models"] == {}
    # no model under rollout: the plane runs without the rollout's hooks
    assert core.plane.routing is not core.rollout.choose and not core.plane._observers  # type: ignore[attr-defined]


def test_admin_requests_are_validated(core: ServerCore) -> None:
    with pytest.raises(InvalidArgumentError, match="canary_percent must be a number from 0 to 100"):
        core.rollout.set({"model": "m", "canary_percent": 101})
    with pytest.raises(InvalidArgumentError, match="Unknown rollout field"):
        core.rollout.set({"model": "m", "weight": 5})
    with pytest.raises(NotFoundError, match="not served here"):
        core.rollout.set({"model": "nope", "canary_percent": 5})
    entry = core.manager.entries()["m"]
    core.manager.apply_config([ModelEntry("m", entry.base_path, entry.version_policy, {"stable": 1})])
    with pytest.raises(FailedPreconditionError, match="no 'canary' version label"):
        core.rollout.set({"model": "m", "shadow_percent": 5})
    core.manager.apply_config([ModelEntry("m", entry.base_path, entry.version_policy, {})])
    with pytest.raises(FailedPreconditionError, match="no 'stable' version label"):
        core.rollout.set({"model": "m"})


def test_shadow_compares_a_sampled_share_and_the_caller_always_gets_stable(core: ServerCore) -> None:
    core.rollout.set({"model": "m", "shadow_percent": 30})
    answers = []
    for _ in range(300):
        answers.append(serve(core))
        time.sleep(0.002)  # paced like traffic: one shadow worker keeps up at this rate
    assert all(np.allclose(a, [[2.5], [3.0]]) for a in answers)  # half_plus_two: stable answered
    window = core.rollout.get("m")["models"]["m"]["window"]
    shadow = wait_pairs(core, window["shadow"]["sampled"] - window["shadow"]["dropped_saturated"])
    assert 60 <= shadow["sampled"] <= 120  # 30% of 300, sd ~8
    assert shadow["pairs"] > 0 and shadow["agreeing"] == 0  # half_plus_three differs by 1.0
    assert shadow["worst_abs_error"] == pytest.approx(1.0) and shadow["worst_output"] == "y"
    assert window["served"]["1"]["count"] == 300 and "2" not in window["served"]
    # a candidate that agrees
    relabel(core, 3)
    core.rollout.set({"model": "m", "shadow_percent": 100})
    for i in range(20):
        serve(core)
        wait_pairs(core, i + 1 - core.rollout.get("m")["models"]["m"]["window"]["shadow"]["dropped_saturated"])
    shadow = core.rollout.get("m")["models"]["m"]["window"]["shadow"]
    # a sample can find the worker still finishing the previous one (dropped, never queued)
    assert shadow["pairs"] + shadow["dropped_saturated"] == shadow["sampled"] == 20
    assert shadow["pairs"] == shadow["agreeing"] >= 10 and shadow["worst_abs_error"] == 0.0
    exposition = core.metrics.exposition().decode()
    assert ':tfship:serving:shadow_pairs{model_name="m",version="3",agree="true"}' in exposition
    assert ':tfship:serving:shadow_pairs{model_name="m",version="2",agree="false"}' in exposition


def test_pinned_and_labelled_requests_are_never_shadowed_or_counted(core: ServerCore) -> None:
    core.rollout.set({"model": "m", "shadow_percent": 100, "canary_percent": 0})
    for _ in range(20):
        serve(core, pinned=True)
        serve(core, label="stable")
    window = core.rollout.get("m")["models"]["m"]["window"]
    assert window["served"] == {} and window["shadow"]["sampled"] == 0


def test_shadow_is_dropped_and_counted_when_the_server_is_saturated(core: ServerCore) -> None:
    saturated = threading.Event()
    core.rollout.shadow._busy = saturated.is_set  # noqa: SLF001 - the load signal, set by the test
    core.rollout.set({"model": "m", "shadow_percent": 100})
    saturated.set()
    for _ in range(50):
        serve(core)
    shadow = core.rollout.get("m")["models"]["m"]["window"]["shadow"]
    assert shadow["sampled"] == shadow["dropped_saturated"] == 50 and shadow["candidate_runs"] == 0
    assert ':tfship:serving:shadow_dropped{model_name="m",version="2"} 50.0' in core.metrics.exposition().decode()
    saturated.clear()
    serve(core)
    assert wait_pairs(core, 1)["pairs"] == 1


def test_a_full_shadow_lane_drops_instead_of_making_callers_wait(core: ServerCore) -> None:
    """The lane holds 64 jobs: while its thread is stuck, further samples are dropped at once."""
    release = threading.Event()
    real_acquire = core.rollout.shadow._acquire  # noqa: SLF001

    def slow_acquire(model: str, version: int):  # type: ignore[no-untyped-def]
        release.wait(30)
        return real_acquire(model, version)

    core.rollout.shadow._acquire = slow_acquire  # noqa: SLF001
    core.rollout.set({"model": "m", "shadow_percent": 100})
    started = time.perf_counter()
    for _ in range(150):
        serve(core)
    elapsed = time.perf_counter() - started
    shadow = core.rollout.get("m")["models"]["m"]["window"]["shadow"]
    taken = shadow["sampled"] - shadow["dropped_saturated"]  # the stuck batch + 64 waiting
    assert shadow["sampled"] == 150 and 65 <= taken <= 80
    assert elapsed < 20  # the callers never waited for the stuck lane
    release.set()
    assert wait_pairs(core, taken)["pairs"] == taken


def test_agreement_is_judged_per_request_inside_a_batch() -> None:
    from tfship.serving.rollout.shadow import agreement

    from tfship.tolerance import resolve_tolerances

    expected = {"y": np.array([[1.0], [2.0], [3.0], [4.0], [5.0]], np.float32),
                "label": np.array([b"a", b"b", b"c", b"d", b"e"], object)}
    actual = {"y": np.array([[1.0], [2.5], [3.0], [np.nan], [5.0]], np.float32),
              "label": np.array([b"a", b"b", b"c", b"d", b"x"], object)}
    results = agreement(expected, actual, [1, 2, 1, 1], resolve_tolerances(None))
    assert [r[0] for r in results] == [True, False, False, False]
    assert results[1][1:] == (0.5, "y") and results[2][1] == float("inf") and results[3][2] == "label"


def test_an_expired_lease_sends_everything_back_to_stable_until_renewed(core: ServerCore) -> None:
    state = core.rollout.set({"model": "m", "canary_percent": 100, "shadow_percent": 100, "lease_seconds": 0.2})
    assert state["models"]["m"]["expired"] is False
    assert set(unpinned_versions(core, 20)) == {2}
    deadline = time.monotonic() + 10
    while not core.rollout.get("m")["models"]["m"]["expired"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)  # waiting out the lease; bounded above
    assert set(unpinned_versions(core, 50)) == {1}  # the tool stopped renewing: stable only
    serve(core)
    assert core.rollout.get("m")["models"]["m"]["window"]["shadow"]["sampled"] == 0
    core.rollout.set({"model": "m", "renew": True})
    assert set(unpinned_versions(core, 20)) == {2}
    core.rollout.set({"model": "m", "clear": True})
    with pytest.raises(FailedPreconditionError, match="no rollout to renew"):
        core.rollout.set({"model": "m", "renew": True})
