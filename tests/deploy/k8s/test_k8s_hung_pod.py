"""A hung server fails the rendered readiness probe within its timeout: the pod leaves the
Service's endpoints after the documented 7-12 s, and is ready again once it resumes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from k8s_pod import grpc_probe
from tfship.deploy.k8s.probes import ProbeTiming, probes, seconds_to_fail

pytestmark = pytest.mark.slow


def test_the_readiness_probe_takes_a_hung_server_out_within_its_documented_time(one_model: Path) -> None:
    pytest.importorskip("tensorflow")
    from tfship.deploy.launch import start_model_server

    readiness = probes(8500, ProbeTiming())["readinessProbe"]
    assert seconds_to_fail(readiness) == (7, 12)  # the figures in README and probes.py
    assert seconds_to_fail(probes(8500, ProbeTiming())["livenessProbe"]) == (55, 65)
    with start_model_server(one_model / "half_plus_two", "half_plus_two",
                            extra_args=["--enable_grpc_healthcheck_service"], rest=False) as server:
        probe = {**readiness, "grpc": {"port": server.grpc_port}}
        assert grpc_probe(probe)
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            assert not grpc_probe(probe)  # no answer: the probe fails by its timeout, not sooner
            took = time.monotonic() - start
            assert readiness["timeoutSeconds"] - 0.2 <= took <= readiness["timeoutSeconds"] + 2
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while not grpc_probe(probe):
            assert time.monotonic() < deadline, "not ready again 10 s after resuming"
            time.sleep(0.1)  # polling the probe, bounded above
