"""Short non-batched runs on a quiet serving loop run on the loop itself (no executor round trip).

One client at a time pays the loop -> executor -> loop hand-offs on every call otherwise (a quarter
of a one-row MLP call). A run goes inline only when the last run of its fetches and batch size
class took at most ``INLINE_RUN_SECONDS`` and nothing else is in progress on the loop.
"""

from __future__ import annotations

import numpy as np
import pytest
from model_server_process import wait_until
from tfship.serving.event_loop import ServingLoop
from tfship.serving.runtime import LoadOptions, Servable
from tfship.serving.runtime import servable as servable_module


@pytest.fixture
def serving_loop():
    loop = ServingLoop(2, "test").start()
    yield loop
    loop.stop()


def load(path, serving_loop: ServingLoop, name: str = "m") -> Servable:
    return Servable.load(name, 1, path, LoadOptions(serving_loop=serving_loop, enable_warmup=False))


def predict(serving_loop: ServingLoop, servable: Servable, signature: str, x: list) -> list:
    out = serving_loop.call(servable.predict_async(signature, {"x": np.float32(x)}, (), 30, serving_loop), 60)
    return out["y"].tolist()


def quiet(serving_loop: ServingLoop) -> bool:
    async def ask() -> bool:
        return serving_loop.quiet()

    return serving_loop.call(ask(), 30)


@pytest.fixture
def everything_short(monkeypatch):
    # a loaded CI box can stretch a 0.1 ms run past the real bound: what is short is not under test
    monkeypatch.setattr(servable_module, "INLINE_RUN_SECONDS", 10.0)


def test_a_short_run_on_a_quiet_loop_runs_inline(half_plus_two_dir, serving_loop, everything_short):
    servable = load(half_plus_two_dir, serving_loop)
    try:
        assert predict(serving_loop, servable, "", [[1.0]]) == [[2.5]]
        assert servable.inline_runs == 0  # the first run of a size class is timed on the executor
        assert predict(serving_loop, servable, "", [[3.0]]) == [[3.5]]
        assert servable.inline_runs == 1
        assert predict(serving_loop, servable, "", [[1.0], [2.0], [3.0], [4.0]]) == [[2.5], [3.0], [3.5], [4.0]]
        assert servable.inline_runs == 1  # four rows: another class, timed first
        assert quiet(serving_loop)
    finally:
        servable.close()


def test_a_run_measured_slow_goes_to_the_executor(half_plus_two_dir, serving_loop, monkeypatch):
    monkeypatch.setattr(servable_module, "INLINE_RUN_SECONDS", 0.0)
    servable = load(half_plus_two_dir, serving_loop)
    try:
        for _ in range(3):
            assert predict(serving_loop, servable, "", [[1.0]]) == [[2.5]]
        assert servable.inline_runs == 0
    finally:
        servable.close()


def test_runs_go_to_the_executor_while_another_is_in_flight(gated_model_dir, serving_loop, open_gate,
                                                            everything_short):
    servable = load(gated_model_dir, serving_loop)
    try:
        assert predict(serving_loop, servable, "", [1.0]) == [2.0]  # serving_default: 2x, now timed
        held = serving_loop.submit(
            servable.predict_async("gated", {"x": np.float32([5.0])}, (), 60, serving_loop))
        wait_until(lambda: not quiet(serving_loop), 30, "the gated run holding an executor thread")
        # short and timed, but the loop is not quiet: it must not block it (nor wait on the gate)
        assert predict(serving_loop, servable, "", [2.0]) == [4.0]
        assert servable.inline_runs == 0
        open_gate(servable, 1)
        assert held.result(timeout=30)["y"].tolist() == [5.0]
        assert predict(serving_loop, servable, "", [3.0]) == [6.0]
        assert servable.inline_runs == 1
    finally:
        servable.close()
