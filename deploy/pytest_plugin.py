"""pytest plugin (entry point ``tfship``): serve an exported model dir in your own CI.

Installed with tfship, so the fixtures are available in any test suite::

    def test_served_model_matches(tfship_serve):
        served = tfship_serve("models/digits")          # BASE/NAME dir with numeric versions
        assert served.grpc.predict("digits", x).shape == (len(x), 10)
        report = check_parity(served.rest, "digits", "models/digits/1")
        assert report.ok, report.text()

``tfship_serve(model_dir, model_name=None, *, wait_for=None, extra_args=(), timeout=120)`` starts
``tfship-model-server`` on free loopback ports, waits (bounded) until the model is AVAILABLE over
gRPC and REST, and returns a :class:`ServedModel` with connected ``grpc`` and ``rest`` clients.
Every server is terminated when the test ends (``tfship_serve``) or when the session ends
(``tfship_serve_session``, for sharing one server between tests).

Or configure one model in ``pytest.ini`` / ``pyproject.toml`` and use ``tfship_server``::

    [tool.pytest.ini_options]
    tfship_model_dir = "models/digits"
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["ServedModel", "tfship_serve", "tfship_serve_session", "tfship_server"]


@dataclass
class ServedModel:
    """A running server (``server``) and clients connected to it over both transports."""

    name: str
    server: Any  # tfship.deploy.launch.ModelServer
    grpc: Any  # tfship.client.Client
    rest: Any

    @property
    def clients(self) -> tuple[Any, Any]:
        return self.grpc, self.rest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("tfship_model_dir", "exported model dir (BASE/NAME) served by the tfship_server fixture")
    parser.addini("tfship_model_name", "model name for tfship_server (default: the dir's name)")


class _Servers:
    def __init__(self) -> None:
        self._running: list[ServedModel] = []

    def serve(self, model_dir: str | Path, model_name: str | None = None, *,
              wait_for: Sequence[tuple[str, int | None]] | None = None,
              extra_args: Sequence[str] = (), timeout: float = 120.0, **kwargs: Any) -> ServedModel:
        from tfship.client import connect
        from tfship.deploy.launch import start_model_server

        name = model_name or Path(model_dir).resolve().name
        server = start_model_server(model_dir, name, wait_for=wait_for, extra_args=extra_args,
                                    timeout=timeout, **kwargs)
        served = ServedModel(name, server, connect(server.grpc_url), connect(server.rest_url))
        self._running.append(served)
        return served

    def stop_all(self) -> None:
        while self._running:
            served = self._running.pop()
            for client in served.clients:
                client.close()
            served.server.stop()


@pytest.fixture
def tfship_serve() -> Iterator[Callable[..., ServedModel]]:
    """Factory: ``tfship_serve(model_dir, model_name=None, ...)`` -> :class:`ServedModel`."""
    servers = _Servers()
    try:
        yield servers.serve
    finally:
        servers.stop_all()


@pytest.fixture(scope="session")
def tfship_serve_session() -> Iterator[Callable[..., ServedModel]]:
    """Like ``tfship_serve`` but servers live until the end of the test session."""
    servers = _Servers()
    try:
        yield servers.serve
    finally:
        servers.stop_all()


@pytest.fixture(scope="session")
def tfship_server(request: pytest.FixtureRequest,
                  tfship_serve_session: Callable[..., ServedModel]) -> ServedModel:
    """The model configured by the ``tfship_model_dir`` ini option, served once per session."""
    model_dir = request.config.getini("tfship_model_dir")
    if not model_dir:
        pytest.fail("tfship_server needs `tfship_model_dir = <BASE/NAME>` in the pytest ini options; "
                    "or use the tfship_serve factory fixture.")
    root = Path(str(request.config.rootpath))
    return tfship_serve_session(root / str(model_dir), request.config.getini("tfship_model_name") or None)
