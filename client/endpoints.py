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
* :class:`RoundRobin` picks the endpoint for each attempt and ejects, for a short cool-down, an
  endpoint that refused or dropped a connection, timed out or answers far slower than the others,
  so a dead or hung replica costs one retried call, not a third of all calls; one probe call
  brings it back.

>>> target = parse_target("grpc://127.0.0.1:8500,127.0.0.1:8510")
>>> [e.url for e in target.resolve()]
['grpc://127.0.0.1:8500', 'grpc://127.0.0.1:8510']
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from tfship.errors import ConfigError

__all__ = ["Endpoint", "Target", "RoundRobin", "ReplicaHealth", "parse_target"]

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


@dataclass(frozen=True)
class ReplicaHealth:
    """What a client knows about one replica right now (``client.replicas()[i].health``)."""

    url: str
    #: "healthy", "ejected" (skipped until ``ejected_for_s`` ends) or "probing" (one call is
    #: finding out whether it is back).
    state: str
    attempts: int
    failures: int
    timeouts: int
    ejections: int
    latency_ewma_ms: float | None
    ejected_for_s: float
    reason: str | None


class _Replica:
    __slots__ = ("ejected_until", "backoff", "probe_since", "attempts", "failures", "timeouts",
                 "ejections", "ewma", "samples", "reason")

    def __init__(self) -> None:
        self.ejected_until = 0.0  # 0: not ejected
        self.backoff = 0.0
        self.probe_since: float | None = None
        self.attempts = self.failures = self.timeouts = self.ejections = self.samples = 0
        self.ewma: float | None = None
        self.reason: str | None = None


@dataclass
class RoundRobin:
    """Per-call rotation over endpoints that skips ejected ones: outlier detection in the spirit
    of Envoy's, shared by the sync and the asyncio clients (no I/O).

    A replica is ejected when it refuses or drops a connection (:meth:`mark_down`), when an
    attempt to it times out (:meth:`eject`), or when its latency EWMA grows ``slow_factor``
    times the median of the others (:meth:`observe`). It is skipped for ``cooldown`` seconds,
    doubling while it keeps failing up to ``max_cooldown``; then exactly one call probes it
    (the others still skip it) and that call's answer (:meth:`mark_up`) brings it back, so a
    replica that hangs costs one slow call per cool-down, not every third call. At most
    ``max_ejected_fraction`` of the endpoints (at least one) are ejected for timeouts or
    slowness, so a fleet-wide slowdown never empties the rotation. A lock guards the state:
    the sync client's threads and the asyncio client share the code.
    """

    endpoints: Sequence[Endpoint]
    cooldown: float = 0.5
    max_cooldown: float = 5.0
    max_ejected_fraction: float = 0.5
    slow_factor: float = 5.0
    #: Latency EWMA below which a replica is never "slow" (loopback jitter is not an outlier).
    slow_floor: float = 0.02
    _counter: itertools.count[int] = field(default_factory=itertools.count, repr=False)
    _state: dict[Endpoint, _Replica] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.endpoints = list(self.endpoints)
        self._state = {e: _Replica() for e in self.endpoints}

    def pick(self, exclude: Collection[Endpoint] = ()) -> Endpoint:
        """The endpoint for the next call: the next one in turn that is not ejected (nor in
        ``exclude``, the replicas this call already tried), or an ejected one whose cool-down
        ended and that nobody is probing yet (this call becomes its probe).

        When every endpoint is ejected or excluded the next in turn is returned anyway (the call
        fails or succeeds on its own; the caller's retry policy decides what happens next).
        """
        n = len(self.endpoints)
        if n == 0:
            raise ConfigError("No endpoints to call: the target resolved to no address.")
        now = time.monotonic()
        with self._lock:
            start = next(self._counter)
            fallback: Endpoint | None = None
            for offset in range(n):
                endpoint = self.endpoints[(start + offset) % n]
                if endpoint in exclude:
                    continue
                replica = self._state[endpoint]
                if not replica.ejected_until:
                    return self._started(endpoint, replica)
                if now >= replica.ejected_until and (
                        replica.probe_since is None or now - replica.probe_since > self.max_cooldown):
                    replica.probe_since = now  # the probe: one call finds out whether it is back
                    return self._started(endpoint, replica)
                fallback = fallback or endpoint
            endpoint = fallback or self.endpoints[start % n]
            return self._started(endpoint, self._state[endpoint])

    @staticmethod
    def _started(endpoint: Endpoint, replica: _Replica) -> Endpoint:
        replica.attempts += 1
        return endpoint

    def refresh(self, endpoints: Sequence[Endpoint]) -> None:
        """Replace the endpoints (a DNS name answered anew); the state of the ones kept is remembered."""
        with self._lock:
            self.endpoints = list(endpoints)
            self._state = {e: self._state.get(e) or _Replica() for e in self.endpoints}

    def mark_down(self, endpoint: Endpoint, reason: str = "unreachable") -> None:
        """``endpoint`` refused or dropped a connection: skip it for a while (not capped: it is gone)."""
        with self._lock:
            replica = self._state.get(endpoint)
            if replica is not None:
                replica.failures += 1
                self._eject(replica, reason)

    def eject(self, endpoint: Endpoint, reason: str) -> bool:
        """An attempt to ``endpoint`` timed out (``reason``): skip it for a while, unless that
        would eject more than ``max_ejected_fraction`` of the endpoints. True if ejected."""
        with self._lock:
            replica = self._state.get(endpoint)
            if replica is None:
                return False
            replica.failures += 1
            if reason == "timeout":
                replica.timeouts += 1
            return self._eject_capped(replica, reason)

    def _eject_capped(self, replica: _Replica, reason: str) -> bool:
        if not (replica.ejected_until or replica.probe_since is not None):
            ejected = sum(1 for r in self._state.values() if r.ejected_until)
            if ejected >= max(1, int(len(self._state) * self.max_ejected_fraction)):
                return False
        self._eject(replica, reason)
        return True

    def _eject(self, replica: _Replica, reason: str) -> None:
        if replica.ejected_until and replica.probe_since is None and time.monotonic() < replica.ejected_until:
            return  # already out: attempts that were in flight do not lengthen the cool-down
        replica.backoff = self.cooldown if not replica.backoff else min(self.max_cooldown, replica.backoff * 2)
        replica.ejected_until = time.monotonic() + replica.backoff
        replica.probe_since = None
        replica.ejections += 1
        replica.reason = reason
        replica.ewma, replica.samples = None, 0

    def mark_up(self, endpoint: Endpoint) -> None:
        """``endpoint`` answered: it is back in the rotation if it was unreachable, or if its
        cool-down ended (the probe). A late answer from a replica ejected as hung or slow, to a
        call sent before, does not end its cool-down."""
        with self._lock:
            replica = self._state.get(endpoint)
            if replica is not None and replica.ejected_until and (
                    replica.reason == "unreachable" or time.monotonic() >= replica.ejected_until):
                replica.ejected_until, replica.probe_since, replica.backoff = 0.0, None, 0.0

    def release(self, endpoint: Endpoint) -> None:
        """An attempt to ``endpoint`` ended without telling anything (cancelled): if it was the
        probe, another call may probe."""
        with self._lock:
            replica = self._state.get(endpoint)
            if replica is not None:
                replica.probe_since = None

    def observe(self, endpoint: Endpoint, seconds: float) -> None:
        """A successful attempt's latency: update ``endpoint``'s EWMA and eject it when it is an
        outlier (``slow_factor`` x the median EWMA of the others, and above ``slow_floor``)."""
        with self._lock:
            replica = self._state.get(endpoint)
            if replica is None:
                return
            replica.ewma = seconds if replica.ewma is None else 0.8 * replica.ewma + 0.2 * seconds
            replica.samples += 1
            if replica.samples < 10 or replica.ewma < self.slow_floor or len(self._state) < 2:
                return
            others = sorted(r.ewma for e, r in self._state.items()
                            if e != endpoint and r.ewma is not None and not r.ejected_until)
            if others and replica.ewma > self.slow_factor * others[len(others) // 2]:
                self._eject_capped(replica, "slow")

    def healthy(self) -> list[Endpoint]:
        """Endpoints not ejected right now (a cool-down that ended counts as healthy)."""
        now = time.monotonic()
        with self._lock:
            return [e for e in self.endpoints if now >= self._state[e].ejected_until]

    def health(self) -> list[ReplicaHealth]:
        """A snapshot of every endpoint's state and counters, in endpoint order."""
        now = time.monotonic()
        with self._lock:
            return [self._health(e, self._state[e], now) for e in self.endpoints]

    def health_of(self, endpoint: Endpoint) -> ReplicaHealth | None:
        now = time.monotonic()
        with self._lock:
            replica = self._state.get(endpoint)
            return None if replica is None else self._health(endpoint, replica, now)

    @staticmethod
    def _health(endpoint: Endpoint, r: _Replica, now: float) -> ReplicaHealth:
        if not r.ejected_until:
            state = "healthy"
        elif r.probe_since is not None:
            state = "probing"
        else:
            state = "ejected"
        return ReplicaHealth(endpoint.url, state, r.attempts, r.failures, r.timeouts, r.ejections,
                             None if r.ewma is None else r.ewma * 1e3,
                             max(0.0, r.ejected_until - now) if r.ejected_until else 0.0, r.reason)
