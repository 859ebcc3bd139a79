"""Ray engine fixtures: one local Ray per session (2 CPUs, no dashboard, a small object store) and
a fleet of 2 tfship-model-server replicas sharing one model base, with request counters.

Models in the fleet's base (every version policy ``all``; the servers poll the base every second):

* ``multi`` (v1, v2): the client tests' model, left alone;
* ``swapped`` (v1, v2): a test publishes v3 into it mid-job (a hot swap);
* ``unloaded`` (v1, v2): a test removes v2 mid-job;
* ``killed`` (v1): counted by the SIGKILL test, nobody else sends to it;
* ``dtypes`` (v1): its ``checked`` signature rejects NaN (the poisoned-row tests).
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from client_test_models import HAS_TF

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports from tests (loopback only)

FLEET_MODELS = {"multi": (1, 2), "swapped": (1, 2), "unloaded": (1, 2), "killed": (1,), "dtypes": (1,)}


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 << 20, logging_level="ERROR",
             log_to_driver=False)
    yield ray
    ray.shutdown()


@dataclass
class Fleet:
    """Two replicas over one model base; ``urls`` is the fleet's gRPC URL list."""

    servers: list[Any]
    base: Path

    @property
    def grpc_url(self) -> str:
        return ",".join(s.grpc_url for s in self.servers)

    @property
    def rest_urls(self) -> list[str]:
        return [s.rest_url for s in self.servers]

    def predict_requests(self, model: str) -> int:
        """Predict requests for ``model`` counted by both replicas (their /metrics pages)."""
        total = 0
        pattern = re.compile(r':tensorflow:serving:request_count\{([^}]*)\} ([0-9.e+]+)')
        for url in self.rest_urls:
            text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
            for labels, value in pattern.findall(text):
                if f'model_name="{model}"' in labels and 'API="predict"' in labels:
                    total += int(float(value))
        return total

    def requests_in_flight(self) -> int:
        """Requests the replicas are still processing (their requests_in_flight gauges)."""
        pattern = re.compile(r':tfship:serving:requests_in_flight\{[^}]*\} ([0-9.e+]+)')
        return sum(int(float(v)) for url in self.rest_urls
                   for v in pattern.findall(urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()))

    def wait_for_states(self, model: str, wanted: Callable[[dict[int, str]], bool], what: str,
                        timeout: float = 60) -> None:
        """Wait (bounded) until every replica's GetModelStatus of ``model`` satisfies ``wanted``."""
        import time

        from tfship.client import connect

        deadline = time.monotonic() + timeout
        for server in self.servers:
            with connect(server.grpc_url) as client:
                while not wanted({s.version: s.state for s in client.status(model)}):
                    assert time.monotonic() < deadline, f"fleet never reached: {what}"
                    time.sleep(0.1)  # polling the servers' state, bounded above


@pytest.fixture(scope="session")
def fleet(model_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if not HAS_TF:
        pytest.skip("needs TensorFlow for the model servers")
    from tfship.deploy.launch import start_model_server

    base = tmp_path_factory.mktemp("ray-fleet")
    config = []
    for name, versions in FLEET_MODELS.items():
        for v in versions:
            source = "dtypes" if name == "dtypes" else "multi"
            shutil.copytree(model_base / source / str(v), base / name / str(v))
        config.append(f'config {{ name: "{name}" base_path: "{base / name}" model_platform: "tensorflow" '
                      'model_version_policy { all { } } }')
    (base / "models.config").write_text("model_config_list { " + " ".join(config) + " }")
    (base / "monitoring.config").write_text('prometheus_config { enable: true path: "/metrics" }')
    wait = [(n, v) for n, vs in FLEET_MODELS.items() for v in vs]
    servers: list[Any] = []
    try:
        for _ in range(2):
            servers.append(start_model_server(
                model_config_file=str(base / "models.config"), wait_for=wait, timeout=180,
                extra_args=[f"--monitoring_config_file={base / 'monitoring.config'}",
                            "--file_system_poll_wait_seconds=1"]))
        yield Fleet(servers, base)
    finally:
        for server in servers:
            server.stop()
