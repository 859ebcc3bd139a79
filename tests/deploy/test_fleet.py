"""Fleet swaps: 3 tfship-model-server replicas over one models dir, nginx in front, clients on both paths.

8 clients call through nginx and 8 balance client-side over the replicas while swaps and rollbacks
run. Each version computes y = 2*sum(x) + bias with its own bias, so an answer's values and its
model_spec.version both tell which version answered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from swap_checks import RAW, assert_fleet_traffic, assert_no_failure_without_retries, outputs_of
from tfship.cli import main as cli
from tfship.client import connect
from tfship.deploy.fleet import fleet_status
from tfship.deploy.history import read_history
from tfship.deploy.local_fleet import LocalFleet, start_local_fleet
from tfship.deploy.swap import SwapOptions, rollback, swap
from tfship.deploy.traffic import Traffic
from tfship.export import export_model

from tfship.errors import SwapError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

X = np.ones((2, 4), np.float32)


@pytest.fixture(scope="module")
def expected(make_affine_model: Any) -> dict[int, np.ndarray]:
    """What each version the module's fleet serves answers for X, from the in-memory Keras models."""
    return {1: outputs_of(make_affine_model(1.0), X)}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, make_affine_model: Any,
          expected: dict[int, np.ndarray]) -> Iterator[LocalFleet]:
    models = tmp_path_factory.mktemp("fleet")
    export_model(make_affine_model(1.0), models, "affine")
    with start_local_fleet(models, ["affine"], replicas=3, workdir=models.parent / f"{models.name}-run") as running:
        yield running


def raw_traffic(fleet: LocalFleet, expected: dict[int, np.ndarray], *, max_seconds: float) -> tuple[Traffic, Traffic]:
    """No-retry traffic through nginx (tfship client, plain stub, plain HTTP) and client-side over the replicas."""
    return (Traffic(fleet.lb_grpc_url, "affine", X, clients=9, via=RAW, rest_url=fleet.lb_rest_url,
                    expected=expected, max_seconds=max_seconds),
            Traffic(fleet.grpc_target, "affine", X, clients=8, via=RAW[:2], expected=expected,
                    max_seconds=max_seconds))


def served_versions(fleet: LocalFleet) -> list[int]:
    """The default version each replica answers with (asked one by one, not through a balancer)."""
    out = []
    for replica in fleet.replicas:
        with connect(replica.grpc_url) as client:
            out.append(client.predict_detailed("affine", X).version)
    return out


def test_ten_swaps_and_two_rollbacks_under_load_on_every_replica(fleet: LocalFleet, make_affine_model: Any,
                                                                  expected: dict[int, np.ndarray]) -> None:
    models = fleet.models_dir
    start = served_versions(fleet)
    assert len(set(start)) == 1
    options = SwapOptions(url=fleet.grpc_target, timeout=90)
    windows: list[tuple[float, float, int]] = []
    records = []
    through_lb, client_side = raw_traffic(fleet, expected, max_seconds=900)
    with through_lb, client_side:
        through_lb.wait_for_requests(50)
        client_side.wait_for_requests(50)
        for step in range(12):
            began = time.monotonic()
            if step in (5, 11):
                record = rollback(models, "affine", options=options)
            else:
                model = make_affine_model(10.0 + step)
                record = swap(models, "affine", model, options=options)
                expected[int(record.to_version)] = outputs_of(model, X)  # type: ignore[arg-type]
            windows.append((began, time.monotonic(), int(record.to_version)))  # type: ignore[arg-type]
            records.append(record)
            # After each change every replica answers with the new version and passed parity on it.
            assert served_versions(fleet) == [record.to_version] * 3
            assert record.replicas is not None and len(record.replicas) == 3
            if record.action == "swap":
                assert all(r["ok"] and r["parity"]["ok"] and r["available_s"] > 0 for r in record.replicas)
    for traffic in (through_lb, client_side):
        assert traffic.summary().requests > 100
        assert_fleet_traffic(traffic, windows, {start[0]} | {int(r.to_version or 0) for r in records})
    assert [r.outcome for r in records] == ["promoted"] * 5 + ["rolled_back"] + ["promoted"] * 5 + ["rolled_back"]
    status = fleet_status(fleet.grpc_target, "affine")
    assert status.agrees and {r.default for r in status.replicas} == {records[-1].to_version}
    history = [r for r in read_history(models, "affine") if r.replicas]
    assert len(history) >= 12


def _current(fleet: LocalFleet) -> int:
    versions = served_versions(fleet)
    assert len(set(versions)) == 1, versions
    return versions[0]


def _stage_wrong_outputs(models: Path, make_affine_model: Any) -> int:
    """A version whose exported reference samples do not match what it computes."""
    taken = [int(p.name) for d in ("affine", ".tfship/quarantine/affine", ".tfship/staging/affine")
             if (models / d).is_dir() for p in (models / d).iterdir() if p.name.split(".")[0].isdigit()]
    version = max(taken) + 1
    result = export_model(make_affine_model(50.0), models / ".tfship" / "staging", "affine", version=version)
    samples = Path(result.path) / "assets.extra" / "tfship_samples.npz"
    with np.load(samples) as data:
        arrays = {k: (data[k] * 3 + 1 if k.startswith("outputs/") else data[k]) for k in data.files}
    np.savez(samples, **arrays)
    return version


def test_wrong_outputs_fail_parity_on_every_replica_and_roll_back(
        fleet: LocalFleet, make_affine_model: Any, expected: dict[int, np.ndarray]) -> None:
    old = _current(fleet)
    version = _stage_wrong_outputs(fleet.models_dir, make_affine_model)
    expected[version] = outputs_of(make_affine_model(50.0), X)  # computes right; its samples lie
    # Skip the in-process pre-flight so the version really reaches the replicas.
    options = SwapOptions(url=fleet.grpc_target, timeout=60, verify_in_process=False)
    with Traffic(fleet.lb_grpc_url, "affine", X, clients=9, via=RAW, rest_url=fleet.lb_rest_url,
                 expected=expected, max_seconds=300) as traffic:
        traffic.wait_for_requests(50)
        with pytest.raises(SwapError, match="parity of version .* failed on 3 of 3 replicas") as info:
            swap(fleet.models_dir, "affine", version=version, options=options)
    assert_no_failure_without_retries(traffic)
    assert set(traffic.summary().versions) <= {old, version}
    assert served_versions(fleet) == [old] * 3
    record = info.value.record
    assert record.outcome == "failed" and not (fleet.models_dir / "affine" / str(version)).exists()
    assert [r["ok"] for r in record.replicas] == [False] * 3
    assert all(r["parity"]["ok"] is False for r in record.replicas)


def test_a_replica_killed_during_the_swap_fails_it_naming_the_replica(
        fleet: LocalFleet, make_affine_model: Any, expected: dict[int, np.ndarray]) -> None:
    old = _current(fleet)
    victim = fleet.replicas[2]

    def kill_after_publish(message: str) -> None:
        if message.startswith("published"):
            fleet.kill_replica(victim.index)

    options = SwapOptions(url=fleet.grpc_target, timeout=60, on_event=kill_after_publish)
    try:
        # A SIGKILLed replica drops the calls it holds. Through nginx, REST calls are retried by
        # nginx (proxy_next_upstream: it buffers the body); gRPC calls in flight are not (the
        # request streams through unbuffered, so grpc_next_upstream cannot resend it): raw gRPC
        # callers may see UNAVAILABLE, never a wrong answer. tfship's retries hide both (counted).
        model = make_affine_model(77.0)
        with Traffic(fleet.lb_grpc_url, "affine", X, clients=9, via=("client+retries", "stub", "http"),
                     rest_url=fleet.lb_rest_url, expected=expected, max_seconds=300) as through_lb, \
                Traffic(fleet.grpc_target, "affine", X, clients=8, via="client+retries", expected=expected,
                        max_seconds=300) as client_side:
            through_lb.wait_for_requests(50)
            client_side.wait_for_requests(50)
            with pytest.raises(SwapError, match=victim.grpc_url) as info:
                swap(fleet.models_dir, "affine", model, options=options)
        new = info.value.record.to_version
        expected[new] = outputs_of(model, X)
        for name, traffic in (("through nginx", through_lb), ("client-side", client_side)):
            summary = traffic.summary()
            print(f"a replica killed, {name}: {summary.line()}; by caller {summary.by_via}")
            assert summary.wrong_values == 0 and summary.unchecked == 0, summary.value_errors
            assert summary.by_via["client+retries"]["failed"] == 0, summary.errors
        by_via = through_lb.summary().by_via
        assert by_via["http"]["failed"] == 0, through_lb.summary().errors  # nginx retried them
        assert all("UNAVAILABLE" in e or "Unavailable" in e for e in through_lb.summary().errors
                   if e.startswith("stub")), through_lb.summary().errors
        for traffic in (through_lb, client_side):
            assert set(traffic.summary().versions) <= {old, new}
        failed = [r["url"] for r in info.value.record.replicas if not r["ok"]]
        assert failed == [victim.grpc_url]
    finally:
        fleet.start_replica(victim.index)
    assert served_versions(fleet) == [old] * 3  # the restarted one reads the shared storage: old version


def test_a_replica_down_before_the_swap_blocks_it_unless_min_replicas_allows(
        fleet: LocalFleet, make_affine_model: Any, tmp_path: Path) -> None:
    old = _current(fleet)
    fleet.stop_replica(0)
    down = fleet.replicas[0].grpc_url
    try:
        shown = CliRunner().invoke(cli, ["status", "--url", fleet.grpc_target, "--model", "affine"])
        assert shown.exit_code == 1, shown.output
        assert f"affine  {down}  NOT ANSWERING" in shown.output and "REPLICAS DISAGREE" in shown.output
        with pytest.raises(SwapError, match=rf"Only 2 of 3 replicas .*down: {down}.*--min-replicas 2"):
            swap(fleet.models_dir, "affine", make_affine_model(88.0), options=SwapOptions(url=fleet.grpc_target))
        assert served_versions_of(fleet, [1, 2]) == [old] * 2  # nothing was published

        v = tmp_path / "v.keras"
        make_affine_model(89.0).save(v)
        urls = [r.grpc_url for r in fleet.replicas]
        ran = CliRunner().invoke(cli, ["swap", str(fleet.models_dir), "affine", str(v), "--url", urls[0],
                                       "--url", f"{urls[1]},{urls[2]}", "--min-replicas", "2"])
        assert ran.exit_code == 0, ran.output
        assert f"{down}  skipped" in ran.output
        new = served_versions_of(fleet, [1, 2])[0]
        assert new > old
    finally:
        fleet.start_replica(0)
    assert served_versions(fleet) == [new] * 3  # it came back reading the shared storage
    shown = CliRunner().invoke(cli, ["status", "--url", fleet.grpc_target, "--model", "affine"])
    assert shown.exit_code == 0, shown.output
    last = json.loads((fleet.models_dir / ".tfship" / "swap-history.jsonl").read_text().splitlines()[-1])
    assert [r.get("skipped", False) for r in last["replicas"]] == [True, False, False]


def served_versions_of(fleet: LocalFleet, indexes: list[int]) -> list[int]:
    out = []
    for i in indexes:
        with connect(fleet.replicas[i].grpc_url) as client:
            out.append(client.predict_detailed("affine", X).version)
    return out


def test_label_swaps_push_load_verify_and_move_the_label_on_every_replica(
        tmp_path: Path, make_affine_model: Any) -> None:
    models = tmp_path / "models"
    export_model(make_affine_model(1.0), models, "affine")
    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list { config { name: "affine" base_path: "%s" model_platform: "tensorflow" '
        "model_version_policy { specific { versions: 1 } } version_labels { key: 'stable' value: 1 } } }"
        % (models / "affine"))
    with start_local_fleet(models, ["affine"], replicas=3, load_balancer=False, model_config_file=config,
                           workdir=tmp_path / "run",
                           extra_args=["--allow_version_labels_for_unavailable_models"]) as fleet:
        options = SwapOptions(url=fleet.grpc_target, label="stable", config_file=config, timeout=90)
        expected = {v: outputs_of(make_affine_model(float(v)), X) for v in (1, 2, 3)}
        with Traffic(fleet.grpc_target, "affine", X, clients=8, label="stable", via=RAW[:2], expected=expected,
                     max_seconds=400) as traffic:
            traffic.wait_for_requests(50)
            records = [swap(models, "affine", make_affine_model(1.0 + i), options=options) for i in (1, 2)]
            back = rollback(models, "affine", options=options)
        assert_no_failure_without_retries(traffic)
        assert set(traffic.summary().versions) <= {1, 2, 3}
        assert [(r.outcome, r.to_version) for r in [*records, back]] == [("promoted", 2), ("promoted", 3),
                                                                         ("rolled_back", 2)]
        assert all(r["ok"] and r["parity"]["ok"] for rec in records for r in rec.replicas or [])
        for replica in fleet.replicas:
            with connect(replica.grpc_url) as client:
                assert client.metadata("affine", label="stable").version == 2
                # the last push unloaded every version no label points at, on every replica
                assert [v.version for v in client.status("affine") if v.available] == [2]
        assert "value: 2" in config.read_text()
