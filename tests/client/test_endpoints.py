"""TF-free: how connect() reads several replicas and how calls rotate over them."""

from __future__ import annotations

import pytest
from tfship.client import connect
from tfship.client.endpoints import Endpoint, RoundRobin, parse_target
from tfship.client.grpc_transport import channel_target

from tfship.errors import ConfigError


def test_comma_separated_replicas_share_the_scheme_and_default_ports() -> None:
    target = parse_target("grpc://127.0.0.1:8500,127.0.0.2,localhost:9000")
    assert target.several and target.is_grpc
    assert [e.url for e in target.resolve()] == ["grpc://127.0.0.1:8500", "grpc://127.0.0.2:8500",
                                                 "grpc://localhost:9000"]
    assert [e.url for e in parse_target(["http://a:1", "http://b:2/"]).resolve()] == ["http://a:1", "http://b:2"]


def test_a_list_of_replicas_is_one_round_robin_grpc_channel() -> None:
    assert channel_target(parse_target("grpc://127.0.0.1:1,127.0.0.2:2")) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert channel_target(parse_target("grpc://[::1]:1,127.0.0.1:2")) == "ipv6:[::1]:1,[::ffff:127.0.0.1]:2"
    assert channel_target(parse_target("dns:///models-headless.ns.svc:8500")) == "dns:///models-headless.ns.svc:8500"
    assert channel_target(parse_target("grpc://127.0.0.1:1")) == "127.0.0.1:1"


def test_a_dns_server_authority_is_asked_instead_of_the_system_resolver() -> None:
    target = parse_target("dns://127.0.0.1:5353/models.test:8500")
    assert (target.dns_server, target.dns_name, target.dns_port) == ("127.0.0.1:5353", "models.test", 8500)
    assert channel_target(target) == "dns://127.0.0.1:5353/models.test:8500"  # gRPC's c-ares asks it itself
    assert parse_target("dns+http://10.0.0.10/models.test:8501").dns_server == "10.0.0.10:53"


def test_dns_names_resolve_to_one_endpoint_per_address() -> None:
    target = parse_target("dns+http:///localhost:8501")
    assert target.scheme == "http" and target.dns_name == "localhost" and target.several
    endpoints = target.resolve()
    assert endpoints and all(e.port == 8501 and e.server_name == "localhost" for e in endpoints)
    assert {e.host for e in endpoints} <= {"127.0.0.1", "::1"}
    assert parse_target("dns:///h").dns_port == 8500  # gRPC by default, TF Serving's port


@pytest.mark.parametrize(("url", "problem"), [
    ("grpc://a:1,http://b:2", "scheme"),
    (["grpc://a:1", "http://b:2"], "one scheme"),
    ("grpc://a:1,a:1", "listed twice"),
    ("dns://dns.example/h:1", "DNS_SERVER_IP:PORT"),
    ("dns://8.8.8.8:99999/h:1", "DNS_SERVER_IP:PORT"),
    ("dns:///a:1,b:1", "names one host"),
    ("grpc://a:1,b:99999", "1-65535"),
    ([], "No server URL"),
])
def test_bad_fleet_targets_say_what_to_write(url: str | list[str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_target(url)


def test_an_unknown_dns_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="does not resolve"):
        parse_target("dns+http:///no-such-replica.invalid:8501").resolve()


def test_round_robin_skips_a_failed_endpoint_until_its_cooldown_ends() -> None:
    a, b, c = (Endpoint("grpc", f"127.0.0.{i}", 1) for i in (1, 2, 3))
    rr = RoundRobin([a, b, c], cooldown=60.0)
    assert [rr.pick() for _ in range(6)] == [a, b, c, a, b, c]
    rr.mark_down(b)
    assert b not in {rr.pick() for _ in range(6)} and rr.healthy() == [a, c]
    rr.mark_up(b)
    assert b in {rr.pick() for _ in range(3)}
    for e in (a, b, c):
        rr.mark_down(e)
    assert rr.pick() in (a, b, c)  # all cooling down: still try one rather than fail without a call


def test_replica_handles_are_owned_by_the_fleet_client() -> None:
    with connect("http://127.0.0.1:1,127.0.0.1:2") as fleet, connect("grpc://127.0.0.1:3") as single:
        handles = fleet.replicas()
        assert [h.url for h in handles] == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
        assert fleet.replicas()[0] is handles[0]
        assert single.replicas() == [single]
