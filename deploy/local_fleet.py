"""A fleet on one machine, from real parts: N replicas over one models dir, nginx in front.

Replicas are ``tfship-model-server`` processes or containers of a serving image (host networking,
models mounted read-only), each on its own loopback ports, all reading the same models dir, the
way Kubernetes replicas share one volume or bucket; a version published into the dir reaches
every replica through its file-system poll. A generated nginx config balances gRPC (``grpc_pass``)
and REST (``proxy_pass``) over them (:mod:`tfship.deploy.nginx`).

Every replica is started and stopped by the fleet; readiness is GetModelStatus on each replica and
through the balancer, never an open port.

>>> with start_local_fleet("models", ["digits"], replicas=3) as fleet:   # doctest: +SKIP
...     fleet.lb_grpc_url              # through nginx
...     fleet.grpc_target              # client-side balancing: connect(fleet.grpc_target)
'grpc://127.0.0.1:40123'
'grpc://127.0.0.1:40001,127.0.0.1:40003,127.0.0.1:40005'
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfship.deploy.nginx import LoadBalancer, LoadBalancerConfig, start_nginx

from tfship.errors import ConfigError, NotFoundError, UnavailableError

__all__ = ["LocalFleet", "Replica", "start_local_fleet"]


@dataclass
class Replica:
    """One replica's ports and, while it runs, its server (a process or a container)."""

    index: int
    grpc_port: int
    rest_port: int
    server: Any = None

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def running(self) -> bool:
        return self.server is not None


@dataclass
class LocalFleet:
    """Running replicas and the balancer; ``stop()`` (or leaving the ``with`` block) ends them all."""

    models_dir: Path
    models: tuple[str, ...]
    replicas: list[Replica]
    workdir: Path
    image: str | None = None
    model_config_file: Path | None = None
    extra_args: tuple[str, ...] = ()
    poll_seconds: int = 1
    timeout: float = 180.0
    load_balancer: LoadBalancer | None = None
    _docker: Any = field(default=None, repr=False)

    # ---------------------------------------------------------------- addresses

    @property
    def grpc_target(self) -> str:
        """Every replica's gRPC address in one URL, for client-side balancing."""
        return "grpc://" + ",".join(f"127.0.0.1:{r.grpc_port}" for r in self.replicas)

    @property
    def rest_target(self) -> str:
        return "http://" + ",".join(f"127.0.0.1:{r.rest_port}" for r in self.replicas)

    @property
    def lb_grpc_url(self) -> str:
        return self._balancer().grpc_url

    @property
    def lb_rest_url(self) -> str:
        return self._balancer().rest_url

    def _balancer(self) -> LoadBalancer:
        if self.load_balancer is None:
            raise ConfigError("This fleet was started without a load balancer (load_balancer=False).")
        return self.load_balancer

    # ---------------------------------------------------------------- replica lifecycle

    def start_replica(self, index: int) -> None:
        """Start replica ``index`` on its ports and wait until it serves every model."""
        replica = self.replicas[index]
        if replica.running:
            return
        if self.image is None:
            replica.server = self._start_process(replica)
        else:
            replica.server = self._start_container(replica)

    def kill_replica(self, index: int) -> None:
        """SIGKILL replica ``index``: no drain, its connections reset (a crashed pod, an OOM kill)."""
        replica = self.replicas[index]
        server, replica.server = replica.server, None
        if server is None:
            return
        if self.image is None:
            server.process.kill()
            server.process.wait(30)
        else:
            with contextlib.suppress(Exception):
                server.container.kill()
            server.stop(timeout=1)

    def stop_replica(self, index: int) -> None:
        """Stop replica ``index`` gracefully (SIGTERM: in-flight requests finish)."""
        replica = self.replicas[index]
        server, replica.server = replica.server, None
        if server is not None:
            server.stop()

    def stop(self) -> None:
        """Stop the balancer and every replica (always safe to call again)."""
        if self.load_balancer is not None:
            self.load_balancer.stop()
        for replica in self.replicas:
            self.stop_replica(replica.index)
        if self._docker is not None:
            self._docker.close()
            self._docker = None

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- internals

    def _start_process(self, replica: Replica) -> Any:
        from tfship.deploy.launch import start_model_server

        args = [f"--file_system_poll_wait_seconds={self.poll_seconds}", *self.extra_args]
        return start_model_server(
            model_config_file=str(self._config_file()), grpc_port=replica.grpc_port, rest_port=replica.rest_port,
            wait_for=[(m, None) for m in self.models], extra_args=args, timeout=self.timeout,
            log_path=self.workdir / f"replica-{replica.index}.log")

    def _start_container(self, replica: Replica) -> Any:
        from tfship.deploy.docker.engine import connect
        from tfship.deploy.docker.run import start_container

        if self._docker is None:
            self._docker = connect()
        container = start_container(
            str(self.image), models_dir=self.models_dir, grpc_port=replica.grpc_port, rest_port=replica.rest_port,
            name=f"tfship-fleet-{os.getpid()}-{replica.grpc_port}", extra_args=self.extra_args,
            poll_seconds=self.poll_seconds, client=self._docker)
        try:
            container.wait_until_available(timeout=self.timeout)
        except BaseException:
            container.stop(timeout=1)
            raise
        return container

    def _config_file(self) -> Path:
        if self.model_config_file is not None:
            return self.model_config_file
        from tfship.serving.config import ModelEntry, format_model_config

        path = self.workdir / "models.config"
        if not path.exists():
            entries = [ModelEntry(m, str((self.models_dir / m).resolve())) for m in self.models]
            path.write_text(format_model_config(entries))
        return path


def start_local_fleet(
    models_dir: str | os.PathLike[str],
    models: Sequence[str] | None = None,
    *,
    replicas: int = 3,
    image: str | None = None,
    load_balancer: bool = True,
    model_config_file: str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    poll_seconds: int = 1,
    timeout: float = 180.0,
    upstream_timeout: float | None = None,
) -> LocalFleet:
    """Start ``replicas`` servers over ``models_dir`` (and nginx in front); wait until all serve.

    ``image``: run containers of this (locally present) serving image instead of
    ``tfship-model-server`` processes; the engine must use host networking or publish ports.
    ``models``: the model names to serve and wait for (default: every model under ``models_dir``).
    ``model_config_file``: a shared config file (label swaps rewrite it) instead of a generated one.
    ``upstream_timeout``: nginx's ``read_timeout`` (default 10 s): how long a call waits on a
    replica that hangs before nginx passes it to the next one.
    """
    if replicas < 1:
        raise ConfigError(f"A fleet needs at least one replica, not {replicas}.")
    base = Path(models_dir).resolve()
    if models is None:
        from tfship.deploy.docker.context import discover_models

        models = [m.name for m in discover_models(base)]
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="tfship-fleet-"))
    work.mkdir(parents=True, exist_ok=True)
    ports = _free_ports(2 * replicas + (2 if load_balancer else 0))
    fleet = LocalFleet(base, tuple(models), [Replica(i, ports[2 * i], ports[2 * i + 1]) for i in range(replicas)],
                       work, image, Path(model_config_file) if model_config_file else None, tuple(extra_args),
                       poll_seconds, timeout)
    try:
        # Started side by side: most of a replica's start is TensorFlow import and model load I/O.
        with ThreadPoolExecutor(max_workers=replicas) as pool:
            for future in [pool.submit(fleet.start_replica, r.index) for r in fleet.replicas]:
                future.result()
        if load_balancer:
            config = LoadBalancerConfig([f"127.0.0.1:{r.grpc_port}" for r in fleet.replicas],
                                        [f"127.0.0.1:{r.rest_port}" for r in fleet.replicas],
                                        ports[-2], ports[-1])
            if upstream_timeout is not None:
                config = dataclasses.replace(config, read_timeout=upstream_timeout)
            fleet.load_balancer = start_nginx(config, work / "nginx")
            _wait_through(fleet, timeout)
    except BaseException:
        fleet.stop()
        raise
    return fleet


def _wait_through(fleet: LocalFleet, timeout: float) -> None:
    """Readiness through the balancer: every model AVAILABLE over gRPC and REST via nginx."""
    from tfship.client import connect

    deadline = time.monotonic() + timeout
    for url in (fleet.lb_grpc_url, fleet.lb_rest_url):
        with connect(url) as client:
            for model in fleet.models:
                try:
                    client.wait_until_available(model, timeout=max(1.0, deadline - time.monotonic()))
                except (UnavailableError, NotFoundError) as exc:
                    lb = fleet.load_balancer
                    raise UnavailableError(f"{model!r} is not served through nginx at {url}: {exc}\n"
                                           f"{lb.log_tail() if lb else ''}") from None


def _free_ports(count: int) -> list[int]:
    from tfship.deploy.launch import free_port

    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
