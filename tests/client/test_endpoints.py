"""TF-free: how connect() reads several replicas and how calls rotate over them."""

from __future__ import annotations

import time

import pytest
from tfship.client import connect
from tfship.client.endpoints import Endpoint, RoundRobin, parse_target
from tfship.client.grpc_transport import channel_target
from tfship.client.resilience import RetryBudget

from tfship.errors import ConfigError


def test_comma_separated_replicas_share_the_scheme_and_default_ports() -> None:
    target = parse_target("grpc://127.0.0.1:8500,127.0.0.2,localhost:9000")
    assert target.several and target.is_grpc
    assert [e.url for e in target.resolve()] == ["grpc://127.0.0.1:8500", "grpc://127.0.0.2:8500",
                                                 "grpc://localhost:9000"]
    assert [e.url for e in parse_target(["http://a:1", "http://b:2/"]).resolve()] == ["http://a:1", "http://b:2"]


def test_a_list_of_replicas_without_fault_handling_is_one_round_robin_grpc_channel() -> None:
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


def test_a_timed_out_replica_is_ejected_then_one_call_probes_it_back() -> None:
    a, b, c = (Endpoint("grpc", f"127.0.0.{i}", 1) for i in (1, 2, 3))
    rr = RoundRobin([a, b, c], cooldown=0.05, max_cooldown=0.2)
    assert rr.eject(b, "timeout")
    assert b not in {rr.pick() for _ in range(6)}
    assert rr.health()[1].state == "ejected" and rr.health()[1].timeouts == 1
    rr.mark_up(b)  # a late answer to a call sent before the ejection does not end it
    assert b not in {rr.pick() for _ in range(6)}
    deadline = time.monotonic() + 5
    picks: list[Endpoint] = []
    while b not in picks:  # the cool-down ends: b is picked as a probe, once
        assert time.monotonic() < deadline
        picks = [rr.pick() for _ in range(6)]
    assert picks.count(b) == 1 and rr.health()[1].state == "probing"
    rr.eject(b, "timeout")  # the probe timed out too: out again, for twice as long
    assert rr.health()[1].state == "ejected" and rr.health()[1].ejections == 2
    while rr.health()[1].ejected_for_s > 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)  # waiting out a cool-down, bounded above
    assert b in {rr.pick() for _ in range(3)}
    rr.mark_up(b)  # the probe answered
    assert rr.health()[1].state == "healthy" and [rr.pick() for _ in range(3)].count(b) == 1


def test_at_most_half_the_replicas_are_ejected_for_timeouts_or_slowness() -> None:
    a, b, c = (Endpoint("http", f"127.0.0.{i}", 1) for i in (1, 2, 3))
    rr = RoundRobin([a, b, c], cooldown=60)
    assert rr.eject(a, "timeout") and not rr.eject(b, "timeout")
    assert rr.healthy() == [b, c]
    rr.mark_down(b)  # a refused connection is not capped: that replica is gone
    assert rr.healthy() == [c]


def test_a_replica_far_slower_than_the_others_is_ejected() -> None:
    a, b, c = (Endpoint("grpc", f"127.0.0.{i}", 1) for i in (1, 2, 3))
    rr = RoundRobin([a, b, c], cooldown=60, slow_factor=5)
    for _ in range(20):
        rr.observe(a, 0.010)
        rr.observe(c, 0.012)
        rr.observe(b, 0.300)
    health = rr.health()
    assert health[1].state == "ejected" and health[1].reason == "slow"
    assert health[0].state == health[2].state == "healthy"


def test_the_retry_budget_bounds_extra_attempts_to_its_ratio() -> None:
    budget = RetryBudget(ratio=0.1, min_per_second=0.0)
    budget._balance = 0.0  # start empty: only the calls' deposits count
    spent = 0
    for _ in range(1000):
        budget.deposit()
        spent += budget.withdraw()
    assert 95 <= spent <= 100
    assert not budget.withdraw() and budget.withdraw(force=True)


def test_fault_stats_and_replica_health_are_visible_without_a_server() -> None:
    with connect("grpc://127.0.0.1:1,127.0.0.1:2") as fleet:
        stats = fleet.fault_stats()
        assert stats.calls == 0 and stats.load_factor == 1.0
        assert [h.state for h in stats.replicas] == ["healthy", "healthy"]
        assert fleet.replicas()[1].health is not None and fleet.replicas()[1].health.url == "grpc://127.0.0.1:2"
        assert fleet.health is None
