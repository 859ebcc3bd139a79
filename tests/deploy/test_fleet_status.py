"""When a fleet agrees (TF-free: status documents built by hand)."""

from __future__ import annotations

from tfship.client.types import VersionStatus
from tfship.deploy.fleet import FleetStatus, ReplicaResult, ReplicaStatus


def replica(url: str, *available: int) -> ReplicaStatus:
    return ReplicaStatus(url, [VersionStatus(v, "AVAILABLE", 0, "") for v in available])


def test_a_fleet_agrees_when_every_replica_answers_with_the_same_default() -> None:
    assert FleetStatus("m", [replica("a", 2, 1), replica("b", 2)]).agrees
    assert not FleetStatus("m", [replica("a", 2), replica("b", 3)]).agrees        # half-done rollout
    assert not FleetStatus("m", [replica("a", 2), ReplicaStatus("b", error="refused")]).agrees
    assert ReplicaStatus("c", [VersionStatus(4, "LOADING", 0, "")]).default is None


def test_replica_results_keep_only_what_happened() -> None:
    assert ReplicaResult("grpc://a:1", available_s=0.5).as_dict() == {"url": "grpc://a:1", "ok": True,
                                                                        "available_s": 0.5}
    assert ReplicaResult("grpc://b:1", ok=False, error="down", skipped=True).as_dict() == {
        "url": "grpc://b:1", "ok": False, "error": "down", "skipped": True}
