"""A DNS name with one A record per replica, served by a real DNS server (dnsmasq on a loopback port),
as a Kubernetes headless Service is: 3 replicas on 127.0.0.2-4, all on the same ports, as pods are.

Clients reach them through ``dns://DNS_SERVER/NAME:PORT`` (gRPC's c-ares resolver asks that server;
REST asks it with dnspython): calls are balanced per call over both transports, a fleet swap and
``tfship status`` find every replica through the name, and a fourth record is reached once the
client re-resolves (REST: every ``DNS_REFRESH_SECONDS``; gRPC: when a connection ends, here each
``grpc.max_connection_age_ms``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from dns_server import DnsServer, dns_server
from prometheus_client.parser import text_string_to_metric_families
from swap_checks import RAW, assert_no_failure_without_retries, outputs_of
from tfship.cli import main as cli
from tfship.client import connect
from tfship.client.resilience import Faults
from tfship.deploy.launch import ModelServer, free_port, start_model_server
from tfship.deploy.swap import SwapOptions, swap
from tfship.deploy.traffic import Traffic
from tfship.export import export_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

NAME = "models.tfship.test"
X = np.ones((2, 4), np.float32)
METRICS = "/monitoring/prometheus/metrics"
#: Servers end each gRPC connection after this long, so clients re-resolve (upstream's advice too).
MAX_CONNECTION_AGE_MS = 3000


class DnsFleet:
    def __init__(self, models: Path, workdir: Path, dns: DnsServer, stack: ExitStack) -> None:
        self.models, self.workdir, self.dns, self.stack = models, workdir, dns, stack
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.replicas: list[ModelServer] = []

    def start_replica(self, address: str) -> ModelServer:
        monitoring = self.workdir / "monitoring.txt"
        monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS}" }}\n')
        server = start_model_server(self.models / "affine", "affine", host=address, grpc_port=self.grpc_port,
                                    rest_port=self.rest_port, timeout=300,
                                    extra_args=[f"--monitoring_config_file={monitoring}",
                                                f"--grpc_channel_arguments=grpc.max_connection_age_ms="
                                                f"{MAX_CONNECTION_AGE_MS},grpc.max_connection_age_grace_ms=2000"])
        self.stack.enter_context(server)
        self.replicas.append(server)
        return server

    @property
    def grpc_url(self) -> str:
        return f"dns://{self.dns.address}/{NAME}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"dns+http://{self.dns.address}/{NAME}:{self.rest_port}"

    def predicts(self, entrypoint: str) -> list[int]:
        """Predict calls each replica answered over ``entrypoint`` (GRPC/REST), from its own metrics."""
        out = []
        for server in self.replicas:
            page = httpx.get(server.rest_url + METRICS, timeout=10).text
            out.append(int(sum(s.value for f in text_string_to_metric_families(page) for s in f.samples
                               if s.name.startswith(":tensorflow:serving:request_count")
                               and s.labels.get("API") == "predict" and s.labels.get("entrypoint") == entrypoint)))
        return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, make_affine_model: Any) -> Iterator[DnsFleet]:
    root = tmp_path_factory.mktemp("dns-fleet")
    export_model(make_affine_model(1.0), root / "models", "affine")
    with ExitStack() as stack:
        dns = stack.enter_context(dns_server({NAME: ["127.0.0.2", "127.0.0.3", "127.0.0.4"]}, root))
        running = DnsFleet(root / "models", root, dns, stack)
        for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            running.start_replica(address)
        yield running


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_calls_through_the_name_are_balanced_per_call_over_every_replica(fleet: DnsFleet, transport: str) -> None:
    entrypoint, url = ("GRPC", fleet.grpc_url) if transport == "grpc" else ("REST", fleet.rest_url)
    want = outputs_of_current(fleet)
    before = fleet.predicts(entrypoint)
    with connect(url) as client:
        scheme, port = ("grpc", fleet.grpc_port) if transport == "grpc" else ("http", fleet.rest_port)
        assert sorted(r.url for r in client.replicas()) == [f"{scheme}://127.0.0.{i}:{port}" for i in (2, 3, 4)]
        for _ in range(30):
            np.testing.assert_allclose(client.predict("affine", X), want)
    per_replica = [b - a for a, b in zip(before, fleet.predicts(entrypoint), strict=True)]
    assert sum(per_replica) == 30 and min(per_replica) >= 5, per_replica  # round robin: ~10 each


def outputs_of_current(fleet: DnsFleet) -> np.ndarray:
    with connect(fleet.replicas[0].grpc_url) as client:
        return client.predict("affine", X)


def test_a_fleet_swap_and_status_through_the_name(fleet: DnsFleet, make_affine_model: Any) -> None:
    expected = {1: outputs_of(make_affine_model(1.0), X)}
    model = make_affine_model(5.0)
    with Traffic(fleet.grpc_url, "affine", X, clients=6, via=RAW[:2], expected=expected, max_seconds=300) as traffic:
        traffic.wait_for_requests(50)
        record = swap(fleet.models, "affine", model, options=SwapOptions(url=fleet.grpc_url, timeout=120))
        expected[int(record.to_version)] = outputs_of(model, X)  # type: ignore[arg-type]
    assert record.outcome == "promoted" and record.replicas is not None
    assert sorted(r["url"] for r in record.replicas) == [
        f"grpc://127.0.0.{i}:{fleet.grpc_port}" for i in (2, 3, 4)]
    assert_no_failure_without_retries(traffic)
    shown = CliRunner().invoke(cli, ["status", "--url", fleet.grpc_url, "--model", "affine"])
    assert shown.exit_code == 0, shown.output
    for i in (2, 3, 4):
        assert f"grpc://127.0.0.{i}:{fleet.grpc_port}" in shown.output
    assert "REPLICAS DISAGREE" not in shown.output


def test_a_fourth_record_is_reached_after_re_resolution(fleet: DnsFleet) -> None:
    fleet.start_replica("127.0.0.5")
    with connect(fleet.grpc_url) as grpc_client, connect(fleet.rest_url) as rest_client:
        grpc_client.predict("affine", X)
        rest_client.predict("affine", X)
        fleet.dns.add(NAME, "127.0.0.5")
        added = time.monotonic()
        reached: dict[str, float] = {}
        # Both transports steer attempts over their own replica list, asked again every
        # Faults.DNS_REFRESH_SECONDS (gRPC keeps a channel per replica). Slack for a loaded 2-core box.
        limit = Faults.DNS_REFRESH_SECONDS + 30
        while len(reached) < 2:
            assert time.monotonic() - added < limit, f"not reached within {limit:g} s: {reached}"
            for _ in range(4):  # a full rotation over 4 replicas per round
                grpc_client.predict("affine", X)
                rest_client.predict("affine", X)
            counts = {"grpc": fleet.predicts("GRPC")[3], "rest": fleet.predicts("REST")[3]}
            for transport, count in counts.items():
                if count and transport not in reached:
                    reached[transport] = time.monotonic() - added
            time.sleep(0.2)  # steady traffic, not a synchronisation
    print(f"fourth replica reached after: REST {reached['rest']:.1f} s, gRPC {reached['grpc']:.1f} s")
    assert reached["rest"] <= Faults.DNS_REFRESH_SECONDS + 20.0
    assert reached["grpc"] <= Faults.DNS_REFRESH_SECONDS + 20.0
