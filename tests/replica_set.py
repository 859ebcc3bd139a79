"""N tfship-model-server replicas on loopback over one models dir, for the fleet tests.

Each replica keeps its ports, so a killed replica restarts where its clients expect it, and
serves Prometheus metrics so a test can see which replica answered how many calls.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

MONITORING = 'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'


@dataclass
class ReplicaSet:
    """Running replicas; ``servers[i]`` is a ``ModelServer`` (``None`` while stopped)."""

    model_base_path: Path
    model_name: str
    workdir: Path
    servers: list[Any] = field(default_factory=list)
    ports: list[tuple[int, int]] = field(default_factory=list)
    extra_args: Sequence[str] = ()

    def grpc_urls(self) -> list[str]:
        return [f"grpc://127.0.0.1:{g}" for g, _ in self.ports]

    def rest_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{r}" for _, r in self.ports]

    def start(self, index: int, timeout: float = 120.0) -> None:
        from tfship.deploy.launch import start_model_server

        grpc_port, rest_port = self.ports[index]
        self.servers[index] = start_model_server(
            self.model_base_path, self.model_name, grpc_port=grpc_port, rest_port=rest_port, timeout=timeout,
            extra_args=[f"--monitoring_config_file={self.workdir / 'monitoring.txt'}", *self.extra_args],
            log_path=self.workdir / f"replica-{index}.log")

    def kill(self, index: int) -> None:
        """SIGKILL: no drain, connections reset (the fault a crashed pod or OOM kill produces)."""
        server = self.servers[index]
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
        self.servers[index] = None

    def predict_count(self, index: int) -> float:
        """Predict calls this replica answered OK (its own Prometheus counter, summed over versions/transports)."""
        page = httpx.get(f"{self.rest_urls()[index]}/monitoring/prometheus/metrics", timeout=10).text
        pattern = re.compile(r'^:tensorflow:serving:request_count\{[^}]*API="predict"[^}]*status="OK"[^}]*\} (\S+)$',
                             re.MULTILINE)
        return sum(float(v) for v in pattern.findall(page))

    def stop(self) -> None:
        for server in self.servers:
            if server is not None:
                server.stop()
        self.servers = [None] * len(self.servers)


@contextmanager
def replica_set(model_base_path: str | os.PathLike[str], model_name: str, replicas: int, workdir: Path,
                extra_args: Sequence[str] = ()) -> Iterator[ReplicaSet]:
    """Start ``replicas`` servers (one after the other: the CPU is shared) and always stop them."""
    from tfship.deploy.launch import free_port

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "monitoring.txt").write_text(MONITORING)
    ports: list[tuple[int, int]] = []
    taken: set[int] = set()
    while len(ports) < replicas:
        pair = (free_port(), free_port())
        if len(set(pair) | taken) == len(taken) + 2:
            taken |= set(pair)
            ports.append(pair)
    fleet = ReplicaSet(Path(model_base_path), model_name, workdir, [None] * replicas, ports, tuple(extra_args))
    try:
        for index in range(replicas):
            fleet.start(index)
        yield fleet
    finally:
        fleet.stop()
