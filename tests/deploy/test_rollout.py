"""Progressive rollouts on 3 tfship-model-server replicas behind nginx, under unpinned traffic.

8 clients call through nginx and 8 balance client-side; every request is one row of random
features in [0, 1). Stable computes y = 2*sum(x) + 1. The candidates:

* ``threshold``: stable's answer plus 5 * relu(x0 - 0.98), i.e. it differs on ~2 % of the traffic's
  inputs, but not on the export's samples (all 0.5), so the pre-flight and server parity pass;
* ``slow``: stable's answer plus zero times a stack of wide dense layers (same numbers, several
  times the time per request, so its p99 stands out even on a saturated replica);
* ``good``: stable's numbers exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tfship.client import connect
from tfship.deploy.history import read_history
from tfship.deploy.local_fleet import LocalFleet, start_local_fleet
from tfship.deploy.rollout import RolloutOptions, rollout, rollout_status
from tfship.deploy.traffic import Traffic
from tfship.export import export_model

from tfship.errors import SwapError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SAMPLES = {"x": np.full((4, 4), 0.5, np.float32)}


def features(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"x": rng.random((1, 4), dtype=np.float32)}


def affine(extra: str | None = None) -> Any:
    """y = 2*sum(x) + 1, plus the candidate's twist."""
    import keras

    x = keras.Input(shape=(4,), name="x")
    base = keras.layers.Dense(1, name="y" if extra is None else "y0")
    y = base(x)
    base.set_weights([np.full((4, 1), 2.0, np.float32), np.ones((1,), np.float32)])
    if extra == "threshold":
        gate = keras.layers.Dense(1, activation="relu", name="gate")
        lift = keras.layers.Dense(1, use_bias=False, name="lift")
        y = keras.layers.Add(name="y")([y, lift(gate(x))])
        gate.set_weights([np.array([[1.0], [0.0], [0.0], [0.0]], np.float32), np.array([-0.98], np.float32)])
        lift.set_weights([np.array([[5.0]], np.float32)])
    elif extra == "slow":
        # work without weights to ship: every row is repeated 16 times through 4 wide layers
        h = keras.layers.RepeatVector(16, name="repeat")(x)
        for i in range(4):
            h = keras.layers.Dense(1024, activation="relu", name=f"wide{i}")(h)
        h = keras.layers.Flatten(name="flat")(keras.layers.Dense(1, use_bias=False, name="narrow")(h))
        zero = keras.layers.Dense(1, kernel_initializer="zeros", use_bias=False, name="zero")
        y = keras.layers.Add(name="y")([y, zero(h)])
    return keras.Model(x, y)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    models = tmp_path_factory.mktemp("rollout")
    export_model(affine(), models, "affine", samples=SAMPLES)
    # Labels in the config a replica starts with name versions it has yet to load: TF Serving (and
    # tfship-model-server) refuse that unless told otherwise, and a restarted replica must start.
    with start_local_fleet(models, ["affine"], replicas=3, workdir=models.parent / f"{models.name}-run",
                           extra_args=["--allow_version_labels_for_unavailable_models"]) as running:
        yield running


def served_versions(fleet: LocalFleet) -> list[int]:
    out = []
    for replica in fleet.replicas:
        with connect(replica.grpc_url) as client:
            out.append(client.predict_detailed("affine", SAMPLES["x"][:1]).version)
    return out


def options(fleet: LocalFleet, steps: str, gates: str, events: list[tuple[float, str]], **kw: Any) -> RolloutOptions:
    def on_event(message: str) -> None:
        events.append((time.monotonic(), message))

    return RolloutOptions(url=fleet.grpc_target, config_file=fleet.workdir / "models.config", steps=steps,
                          gates=gates, poll_seconds=0.5, lease_seconds=10, timeout=90, on_event=on_event, **kw)


def traffic_pair(fleet: LocalFleet, via: str = "client") -> tuple[Traffic, Traffic]:
    """8 callers through nginx and 8 balancing client-side. ``client``: tfship's client without
    retries (every failure counts); ``client+retries`` where a replica is killed: a SIGKILL drops
    the gRPC calls it holds, which only a retry (the failover) can save."""
    return (Traffic(fleet.lb_grpc_url, "affine", features, clients=8, via=via, max_seconds=600),
            Traffic(fleet.grpc_target, "affine", features, clients=8, via=via, max_seconds=600))


def test_a_candidate_disagreeing_on_2_percent_is_caught_in_shadow_and_rolled_back(fleet: LocalFleet) -> None:
    stable = served_versions(fleet)[0]
    events: list[tuple[float, str]] = []
    through_lb, client_side = traffic_pair(fleet)
    with through_lb, client_side:
        through_lb.wait_for_requests(50)
        client_side.wait_for_requests(50)
        with pytest.raises(SwapError, match=r"rolled back at step 'shadow': gate agreement>=0.999 failed on "
                                            r"replica grpc://127\.0\.0\.1:\d+: \d+ of \d+ shadow pairs agree") as info:
            rollout(fleet.models_dir, "affine", affine("threshold"), options=options(
                fleet, "shadow:3s,5%:3s,100%", "agreement>=0.999,min_pairs=400", events, shadow_percent=100),
                export_kwargs={"samples": SAMPLES})
    record = info.value.record  # type: ignore[attr-defined]
    candidate = record.to_version
    for traffic in (through_lb, client_side):
        summary = traffic.summary()
        assert summary.failed == 0, summary.errors
        assert set(summary.versions) == {stable}, summary.versions  # nobody got a candidate answer
    assert served_versions(fleet) == [stable] * 3
    assert record.action == "rollout" and record.outcome == "failed" and record.parity["ok"]
    assert record.rollout["failure"]["gate"] == "agreement>=0.999"
    assert not (fleet.models_dir / "affine" / str(candidate)).exists()  # set aside in quarantine
    status = rollout_status(fleet.models_dir, "affine", fleet.grpc_target)
    assert status["saved"] is None
    assert [(r["active"], r["loaded"]) for r in status["replicas"]] == [(False, [stable])] * 3


def test_a_three_times_slower_candidate_is_rolled_back_at_canary_on_latency(fleet: LocalFleet) -> None:
    stable = served_versions(fleet)[0]
    events: list[tuple[float, str]] = []
    through_lb, client_side = traffic_pair(fleet)
    with through_lb, client_side:
        through_lb.wait_for_requests(50)
        client_side.wait_for_requests(50)
        with pytest.raises(SwapError, match=r"rolled back at step '50%': gate p99<=1.5x failed on replica "
                                            r"grpc://127\.0\.0\.1:\d+: candidate p99 [\d.]+ ms vs stable") as info:
            rollout(fleet.models_dir, "affine", affine("slow"), options=options(
                fleet, "shadow:2s,50%:30s,100%", "p99<=1.5x,min_pairs=30,min_samples=60", events,
                shadow_percent=20), export_kwargs={"samples": SAMPLES})
    record = info.value.record  # type: ignore[attr-defined]
    for traffic in (through_lb, client_side):
        summary = traffic.summary()
        assert summary.failed == 0, summary.errors
        assert set(summary.versions) <= {stable, record.to_version}
    assert record.rollout["step_reached"] == "50%"
    assert served_versions(fleet) == [stable] * 3


def test_a_good_candidate_goes_shadow_5_25_100_and_is_promoted(fleet: LocalFleet) -> None:
    stable = served_versions(fleet)[0]
    events: list[tuple[float, str]] = []
    through_lb, client_side = traffic_pair(fleet)
    with through_lb, client_side:
        through_lb.wait_for_requests(50)
        client_side.wait_for_requests(50)
        record = rollout(fleet.models_dir, "affine", affine(), options=options(
            fleet, "shadow:3s,5%:6s,25%:6s,100%", "agreement>=0.999,error_rate<=0.001,p99<=3x,min_pairs=100",
            events, shadow_percent=50), export_kwargs={"samples": SAMPLES})
        done = time.monotonic()
        through_lb.wait_for_requests(len(through_lb.samples) + 100)
    candidate = record.to_version
    assert record.outcome == "promoted" and record.from_version == stable and candidate != stable
    assert [w["step"] for w in record.rollout["windows"]] == ["shadow", "5%", "25%"]
    assert served_versions(fleet) == [candidate] * 3
    steps = [(t, m.split()[2].rstrip(":")) for t, m in events if m.startswith("step ")]
    assert [name for _, name in steps] == ["shadow", "5%", "25%"]
    ends = [t for t, m in events if m.startswith("promoting")]
    bounds = [(steps[0][0], steps[1][0], 0.0), (steps[1][0], steps[2][0], 0.05), (steps[2][0], ends[0], 0.25)]
    for traffic in (through_lb, client_side):
        summary = traffic.summary()
        assert summary.failed == 0, summary.errors
        assert set(summary.versions) == {stable, candidate}
        for start, end, weight in bounds:
            # skip the second in which the replicas are switched one by one
            answers = [s.version for s in traffic.window(start + 1.0, end)]
            share = answers.count(candidate) / len(answers)
            sigma = math.sqrt(weight * (1 - weight) / len(answers))
            assert abs(share - weight) <= 4 * sigma + 0.01, (weight, share, len(answers))
        assert {s.version for s in traffic.window(done, math.inf)} == {candidate}
    promoted = [r for r in read_history(fleet.models_dir, "affine") if r.action == "rollout"][-1]
    assert promoted.outcome == "promoted" and promoted.to_version == candidate
    status = rollout_status(fleet.models_dir, "affine", fleet.grpc_target)
    assert [(r["active"], r["loaded"]) for r in status["replicas"]] == [(False, [candidate])] * 3


def test_a_replica_killed_mid_rollout_fails_it_cleanly_below_min_replicas(fleet: LocalFleet) -> None:
    stable = served_versions(fleet)[0]
    victim = fleet.replicas[2]
    events: list[tuple[float, str]] = []

    def kill_in_shadow(message: str) -> None:
        events.append((time.monotonic(), message))
        if message.startswith("step 1/"):
            fleet.kill_replica(victim.index)

    opts = options(fleet, "shadow:60s,100%", "min_pairs=50", events, shadow_percent=50)
    opts = RolloutOptions(**{**opts.__dict__, "on_event": kill_in_shadow})
    try:
        through_lb, client_side = traffic_pair(fleet, via="client+retries")
        with through_lb, client_side:
            through_lb.wait_for_requests(50)
            client_side.wait_for_requests(50)
            with pytest.raises(SwapError, match=r"only 2 of 3 replicas answer .*--min-replicas is 3") as info:
                rollout(fleet.models_dir, "affine", affine(), options=opts, export_kwargs={"samples": SAMPLES})
        record = info.value.record  # type: ignore[attr-defined]
        assert victim.grpc_url in record.rollout["lost_replicas"]
        for traffic in (through_lb, client_side):
            summary = traffic.summary()
            assert summary.failed == 0, summary.errors
            assert set(summary.versions) == {stable}
    finally:
        fleet.start_replica(victim.index)
    assert served_versions(fleet) == [stable] * 3  # the restarted one reads the rolled-back config


def test_a_server_without_the_rollout_admin_is_refused_pointing_to_the_replay_gate(
        tmp_path: Path, start_like_tf_serving: Any) -> None:
    """What the real TensorFlow Serving image answers (UNIMPLEMENTED), emulated by switching tfship's
    admin off: refused before anything changes, with the way to check predictions there."""
    from click.testing import CliRunner
    from tfship.cli import main as cli

    models, server = start_like_tf_serving
    config = Path(models) / "models.config"
    before = config.read_text()
    result = CliRunner().invoke(cli, ["rollout", str(models), "affine", "--version", "1", "--url", server.grpc_url,
                                      "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "cannot shadow or split" in result.output and "tfship replay" in result.output
    assert config.read_text() == before
    result = CliRunner().invoke(cli, ["rollout", str(models), "affine", "--status", "--url", server.rest_url])
    assert result.exit_code == 0 and "no rollout admin" in result.output


@pytest.fixture
def start_like_tf_serving(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    from tfship.deploy.launch import start_model_server
    from tfship.serving.config import ModelEntry, format_model_config

    models = tmp_path / "models"
    export_model(affine(), models, "affine", samples=SAMPLES)
    config = models / "models.config"
    config.write_text(format_model_config([ModelEntry("affine", str(models / "affine"))]))
    with start_model_server(model_config_file=str(config), wait_for=[("affine", None)],
                            extra_args=["--enable_rollout_admin=false"]) as server:
        yield models, server


def test_with_min_replicas_2_a_killed_replica_is_left_out_and_the_rest_promote(fleet: LocalFleet) -> None:
    stable = served_versions(fleet)[0]
    victim = fleet.replicas[1]
    events: list[tuple[float, str]] = []

    def kill_in_shadow(message: str) -> None:
        events.append((time.monotonic(), message))
        if message.startswith("step 1/"):
            fleet.kill_replica(victim.index)

    # the replicas are the point here, not latency: a lenient p99 keeps the noisy box from deciding
    opts = options(fleet, "shadow:3s,50%:3s,100%", "min_pairs=50,p99<=5x", events, shadow_percent=50,
                   min_replicas=2)
    opts = RolloutOptions(**{**opts.__dict__, "on_event": kill_in_shadow})
    try:
        with Traffic(fleet.lb_grpc_url, "affine", features, clients=8, via="client+retries",
                     max_seconds=600) as through_lb:
            through_lb.wait_for_requests(50)
            record = rollout(fleet.models_dir, "affine", affine(), options=opts, export_kwargs={"samples": SAMPLES})
        assert record.outcome == "promoted" and victim.grpc_url in record.rollout["lost_replicas"]
        summary = through_lb.summary()
        assert summary.failed == 0, summary.errors
        assert set(summary.versions) <= {stable, record.to_version}
        assert any(m.startswith(f"replica {victim.grpc_url} stopped answering") for _, m in events)
    finally:
        fleet.start_replica(victim.index)
    assert served_versions(fleet) == [record.to_version] * 3  # the restarted one reads the promoted config


def test_an_interrupted_rollout_leaves_stable_serving_and_resumes_to_promotion(fleet: LocalFleet) -> None:
    from tfship.deploy.rollout import resume_rollout

    stable = served_versions(fleet)[0]
    events: list[tuple[float, str]] = []

    def ctrl_c_in_step_2(message: str) -> None:
        events.append((time.monotonic(), message))
        if message.startswith("step 2/"):
            raise KeyboardInterrupt

    opts = options(fleet, "shadow:2s,25%:2s,100%", "min_pairs=30,p99<=5x", events, shadow_percent=50)
    with Traffic(fleet.lb_grpc_url, "affine", features, clients=8, max_seconds=600) as traffic:
        traffic.wait_for_requests(50)
        with pytest.raises(KeyboardInterrupt):
            rollout(fleet.models_dir, "affine", affine(), options=RolloutOptions(
                **{**opts.__dict__, "on_event": ctrl_c_in_step_2}), export_kwargs={"samples": SAMPLES})
        paused = time.monotonic()
        status = rollout_status(fleet.models_dir, "affine")
        assert status["saved"]["phase"] == "paused" and status["saved"]["step"] == 1
        assert {(r["step"], r["canary_percent"]) for r in status["replicas"]} == {("paused", 0.0)}
        traffic.wait_for_requests(len(traffic.samples) + 200)
        assert {s.version for s in traffic.window(paused, math.inf)} == {stable}  # stable only while paused
        record = resume_rollout(fleet.models_dir, "affine", options=opts)
    assert record.outcome == "promoted" and traffic.summary().failed == 0
    assert served_versions(fleet) == [record.to_version] * 3
    assert rollout_status(fleet.models_dir, "affine")["saved"] is None
