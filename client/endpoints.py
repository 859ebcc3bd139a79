"""Where a client sends requests: one server, a list of replicas, or a DNS name of many.

Transport-neutral (no sockets held, no threads, no event loop), so the sync and the asyncio
clients parse and pick endpoints the same way:

* :func:`parse_target` reads what a user passes to ``connect()``:
  ``grpc://a:8500``, ``grpc://a:8500,b:8500,c:8500``, ``http://a:8501,b:8501``, a list of URLs,
  or ``dns:///models-headless.ns.svc:8500`` (gRPC; ``dns+http:///``, ``dns+https:///`` and
  ``dns+grpcs:///`` for the others): a name whose A/AAAA records are the replicas, which is what
  a Kubernetes headless Service is. ``dns://10.0.0.10:53/NAME:8500`` asks that DNS server instead
  of the system resolver (gRPC's own syntax; REST needs ``tfship[dns]``, i.e. dnspython).
* ``v2+`` before any of these (``v2+grpc://a:8500``, ``v2+http://a:8501,b:8501``,
  ``v2+dns:///NAME:8500``) selects the Open Inference Protocol (KServe V2) instead of TF Serving's
  API, for the same hosts and ports: :attr:`Target.protocol` is ``"v2"``.
* :meth:`Target.resolve` turns it into concrete :class:`Endpoint` s (one per replica address).
* :class:`RoundRobin` picks the endpoint for each call and skips, for a short cool-down, an endpoint
  that just refused or dropped a connection, so a dead replica costs one retried call, not a third
  of all calls.

>>> target = parse_target("grpc://127.0.0.1:8500,127.0.0.1:8510")
>>> [e.url for e in target.resolve()]
['grpc://127.0.0.1:8500', 'grpc://127.0.0.1:8510']
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from tfship.errors import ConfigError

__all__ = ["Endpoint", "Target", "RoundRobin", "parse_target"]

_SCHEMES = ("grpc", "grpcs", "http", "https")
_DEFAULT_PORTS = {"grpc": 8500, "grpcs": 443, "http": 8501, "https": 443}
_DNS_SCHEMES = {"dns": "grpc", "dns+grpc": "grpc", "dns+grpcs": "grpcs", "dns+http": "http", "dns+https": "https"}

_V2_PREFIX = "v2+"
_USAGE = ("use grpc://HOST:PORT (TF Serving's --port, default 8500) or http://HOST:PORT "
          "(--rest_api_port, default 8501), grpcs:// and https:// for TLS; several replicas as "
          "grpc://a:8500,b:8500 or a DNS name that resolves to every replica as dns:///NAME:8500 "
          "(dns+http:///NAME:8501 for REST); put v2+ in front (v2+grpc://, v2+http://, v2+dns:///) for "
          "the Open Inference Protocol (KServe V2: Triton, KServe, MLServer, tfship-model-server).")


class _Scheme:
    scheme: str

    @property
    def is_grpc(self) -> bool:
        return self.scheme.startswith("grpc")

    @property
    def secure(self) -> bool:
        return self.scheme in ("grpcs", "https")


@dataclass(frozen=True)
class Endpoint(_Scheme):
    """One server (replica): scheme, host (name or IP literal) and port."""

    scheme: str
    host: str
    port: int
    #: The name the endpoint was found under when ``host`` is an address from a DNS lookup; REST
    #: sends it as the Host header and TLS as the server name.
    server_name: str | None = None
    #: ``"tfs"`` (TF Serving's API) or ``"v2"`` (the Open Inference Protocol).
    protocol: str = "tfs"

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        prefix = _V2_PREFIX if self.protocol == "v2" else ""
        return f"{prefix}{self.scheme}://{self.netloc}"

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class Target(_Scheme):
    """What ``connect()`` was given: explicit endpoints, or a DNS name to resolve (``dns_name``)."""

    url: str
    scheme: str
    endpoints: tuple[Endpoint, ...] = ()
    dns_name: str | None = None
    dns_port: int | None = None
    #: ``HOST:PORT`` of the DNS server to ask (``dns://HOST:PORT/NAME``); None = the system resolver.
    dns_server: str | None = None
    #: ``"tfs"`` (TF Serving's API) or ``"v2"`` (the Open Inference Protocol, a ``v2+`` URL).
    protocol: str = "tfs"

    @property
    def several(self) -> bool:
        """True when calls may go to more than one server (a list, or a DNS name)."""
        return self.dns_name is not None or len(self.endpoints) > 1

    def resolve(self) -> list[Endpoint]:
        """Concrete endpoints: the explicit list, or one per address the DNS name has right now.

        Raises :class:`ConfigError` when a name does not resolve (a typo, or a Service with no
        ready pods).
        """
        if self.dns_name is None:
            return list(self.endpoints)
        port = self.dns_port or _DEFAULT_PORTS[self.scheme]
        return [Endpoint(self.scheme, address, port, server_name=self.dns_name, protocol=self.protocol)
                for address in resolve_addresses(self.dns_name, port, server=self.dns_server)]


def resolve_addresses(name: str, port: int, *, server: str | None = None) -> list[str]:
    """Every distinct address ``name`` resolves to (A and AAAA), in resolver order.

    ``server`` (``HOST:PORT``) asks that DNS server directly instead of the system resolver.
    """
    if server is not None:
        return _ask_dns_server(name, server)
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"DNS name {name!r} does not resolve: {exc}. Check the name (a headless "
                          "Service resolves to its ready pods only).") from None
    addresses: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _ask_dns_server(name: str, server: str) -> list[str]:
    try:
        import dns.exception
        import dns.resolver
    except ImportError:
        raise ConfigError(f"Asking the DNS server {server} for {name!r} needs dnspython: "
                          "pip install 'tfship[dns]' (or use dns:///NAME for the system resolver).") from None
    host, _, port = server.rpartition(":")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host.strip("[]")]
    resolver.port = int(port)
    resolver.lifetime = 5.0
    addresses: list[str] = []
    for kind in ("A", "AAAA"):
        try:
            answer = resolver.resolve(name, kind, search=False)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as exc:
            if addresses:  # e.g. a server that refuses AAAA for a name it only has A records for
                continue
            raise ConfigError(f"DNS server {server} did not answer for {name!r}: {exc}") from None
        addresses += [r.address for r in answer if r.address not in addresses]
    if not addresses:
        raise ConfigError(f"DNS name {name!r} does not resolve at {server}. Check the name (a headless "
                          "Service resolves to its ready pods only).")
    return addresses


def parse_target(url: str | Sequence[str]) -> Target:
    """Parse ``connect()``'s argument (see the module doc). Raises :class:`ConfigError` with the fix."""
    if not isinstance(url, str):
        urls = [u.strip() for u in url if u.strip()]
        if not urls:
            raise ConfigError(f"No server URL given: {_USAGE}")
        return _merge([parse_target(u) for u in urls], ",".join(urls))
    text = url.strip().rstrip("/")
    if text.lower().startswith(_V2_PREFIX):
        # "v2+grpc://a:8500,v2+grpc://b:8500": every host of the list is a V2 one
        hosts = text[len(_V2_PREFIX):].split(",")
        base = parse_target(",".join(h[len(_V2_PREFIX):] if h.lower().startswith(_V2_PREFIX) else h for h in hosts))
        endpoints = tuple(replace(e, protocol="v2") for e in base.endpoints)
        return replace(base, url=text, endpoints=endpoints, protocol="v2")
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError(f"Cannot connect to {url!r}: {_USAGE}")
    if scheme in _DNS_SCHEMES:
        return _parse_dns(text, _DNS_SCHEMES[scheme], rest)
    if scheme not in _SCHEMES:
        raise ConfigError(f"Cannot connect to {url!r}: unknown scheme {scheme!r}; {_USAGE}")
    first, *others = rest.split(",")
    if others:
        # "grpc://a:8500,b:8500" or "grpc://a:8500,grpc://b:8500": later hosts inherit the scheme.
        urls = [f"{scheme}://{first}", *(h if "://" in h else f"{scheme}://{h}" for h in others)]
        return _merge([parse_target(u) for u in urls], text)
    return Target(text, scheme, (_endpoint(text, scheme),))


def _endpoint(url: str, scheme: str) -> Endpoint:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"Cannot connect to {url!r}: the port is not a number in 1-65535.") from None
    if not parts.hostname:
        raise ConfigError(f"Cannot connect to {url!r}: no host; {_USAGE}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        what = "A gRPC URL" if scheme.startswith("grpc") else "A server URL"
        raise ConfigError(f"{what} has no path: use {scheme}://{parts.netloc} instead of {url!r}.")
    return Endpoint(scheme, parts.hostname, port or _DEFAULT_PORTS[scheme])


def _parse_dns(url: str, scheme: str, rest: str) -> Target:
    # gRPC's own target syntax: dns:[//AUTHORITY]/HOST[:PORT], AUTHORITY = the DNS server to ask.
    server: str | None = None
    if not rest.startswith("/"):
        authority, slash, rest = rest.partition("/")
        if authority and is_ip_literal(authority.strip("[]")):
            authority = f"{authority}:53"  # DNS's port, as gRPC defaults it
        if not slash or not authority or not _is_host_port(authority):
            raise ConfigError(f"Cannot connect to {url!r}: write dns:///NAME:PORT (three slashes), or "
                              "dns://DNS_SERVER_IP:PORT/NAME:PORT to ask a given DNS server.")
        server = authority
        rest = "/" + rest
    if rest.startswith("//"):
        raise ConfigError(f"Cannot connect to {url!r}: write dns:///NAME:PORT (three slashes).")
    parts = urlsplit(f"{scheme}://{rest.lstrip('/')}")
    if "," in rest or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"Cannot connect to {url!r}: a dns:/// target names one host, e.g. "
                          "dns:///models-headless.default.svc.cluster.local:8500.")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"Cannot connect to {url!r}: the port is not a number in 1-65535.") from None
    return Target(url, scheme, dns_name=parts.hostname, dns_port=port or _DEFAULT_PORTS[scheme], dns_server=server)


def _is_host_port(authority: str) -> bool:
    """``IP:PORT`` (``[v6]:PORT``): a DNS server is named by address, as gRPC's c-ares resolver needs."""
    host, sep, port = authority.rpartition(":")
    return bool(sep) and port.isdigit() and 0 < int(port) < 65536 and is_ip_literal(host.strip("[]"))


def _merge(targets: list[Target], url: str) -> Target:
    schemes = {t.scheme for t in targets}
    if len(schemes) > 1:
        raise ConfigError(f"Cannot connect to {url!r}: all replicas must use one scheme, got {sorted(schemes)}; "
                          "open one client per transport.")
    if len({t.protocol for t in targets}) > 1:
        raise ConfigError(f"Cannot connect to {url!r}: mix of v2+ (Open Inference Protocol) and TF Serving URLs; "
                          "open one client per protocol.")
    if any(t.dns_name for t in targets):
        if len(targets) > 1:
            raise ConfigError(f"Cannot connect to {url!r}: give one dns:/// name or a list of endpoints, not both.")
        return targets[0]
    endpoints: list[Endpoint] = []
    for target in targets:
        for endpoint in target.endpoints:
            if endpoint in endpoints:
                raise ConfigError(f"Cannot connect to {url!r}: {endpoint.url} is listed twice.")
            endpoints.append(endpoint)
    return Target(url, targets[0].scheme, tuple(endpoints), protocol=targets[0].protocol)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass
class RoundRobin:
    """Per-call rotation over endpoints, skipping ones that recently failed to connect.

    Lock-free (``itertools.count`` is atomic under the GIL and asyncio is single-threaded), so the
    sync client's threads and the asyncio client share the same code. A failed endpoint is skipped
    for ``cooldown`` seconds (doubling while it keeps failing, up to ``max_cooldown``), then tried
    again, so a restarted replica gets calls back without anybody telling the client.
    """

    endpoints: Sequence[Endpoint]
    cooldown: float = 0.5
    max_cooldown: float = 5.0
    _counter: itertools.count[int] = field(default_factory=itertools.count, repr=False)
    _down: dict[Endpoint, tuple[float, float]] = field(default_factory=dict, repr=False)

    def pick(self) -> Endpoint:
        """The endpoint for the next call: the next one in turn that is not cooling down.

        When every endpoint is cooling down the next in turn is returned anyway (the call fails
        or succeeds on its own; the caller's retry policy decides what happens next).
        """
        n = len(self.endpoints)
        if n == 0:
            raise ConfigError("No endpoints to call: the target resolved to no address.")
        start = next(self._counter)
        now = time.monotonic()
        for offset in range(n):
            endpoint = self.endpoints[(start + offset) % n]
            down = self._down.get(endpoint)
            if down is None or now >= down[0]:
                return endpoint
        return self.endpoints[start % n]

    def refresh(self, endpoints: Sequence[Endpoint]) -> None:
        """Replace the endpoints (a DNS name answered anew); failures of the ones kept are remembered."""
        self.endpoints = list(endpoints)
        self._down = {e: mark for e, mark in self._down.items() if e in self.endpoints}

    def mark_down(self, endpoint: Endpoint) -> None:
        """``endpoint`` refused or dropped a connection: skip it for a while."""
        previous = self._down.get(endpoint)
        cooldown = self.cooldown if previous is None else min(self.max_cooldown, previous[1] * 2)
        self._down[endpoint] = (time.monotonic() + cooldown, cooldown)

    def mark_up(self, endpoint: Endpoint) -> None:
        """``endpoint`` answered: forget its failures."""
        if endpoint in self._down:
            self._down.pop(endpoint, None)

    def healthy(self) -> list[Endpoint]:
        """Endpoints not cooling down right now."""
        now = time.monotonic()
        return [e for e in self.endpoints if e not in self._down or now >= self._down[e][0]]
