"""The fleet scenario on the Docker image: 3 containers (host network, models mounted read-only) + nginx.

Fewer changes than the process fleet (3 containers of the serving image on a shared CPU); the
same guarantees: no failed request on either path, and every replica serves and passed parity on
each new version.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from swap_checks import RAW, assert_fleet_traffic, outputs_of
from tfship.client import connect
from tfship.deploy.local_fleet import start_local_fleet
from tfship.deploy.swap import SwapOptions, rollback, swap
from tfship.deploy.traffic import Traffic
from tfship.export import export_model

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1200)]

X = np.ones((2, 4), np.float32)


def test_swaps_and_a_rollback_on_three_containers_behind_nginx(
        engine: Any, standin_base: str, tmp_path: Path, make_affine_model: Any) -> None:
    models = tmp_path / "models"
    export_model(make_affine_model(1.0), models, "affine")
    with start_local_fleet(models, ["affine"], replicas=3, image=standin_base, workdir=tmp_path / "run") as fleet:
        for replica in fleet.replicas:
            attrs = replica.server.container.attrs
            assert attrs["HostConfig"]["NetworkMode"] == "host" and attrs["HostConfig"]["ReadonlyRootfs"]
            mount = next(m for m in attrs["Mounts"] if m["Destination"] == "/models/affine")
            assert mount["RW"] is False
        options = SwapOptions(url=fleet.grpc_target, timeout=120)
        windows = []
        expected = {v: outputs_of(make_affine_model(float(v)), X) for v in (1, 2, 3, 4)}
        with Traffic(fleet.lb_grpc_url, "affine", X, clients=9, via=RAW, rest_url=fleet.lb_rest_url,
                     expected=expected, max_seconds=900) as through_lb, \
                Traffic(fleet.grpc_target, "affine", X, clients=8, via=RAW[:2], expected=expected,
                        max_seconds=900) as client_side:
            through_lb.wait_for_requests(50)
            client_side.wait_for_requests(50)
            for step in range(4):
                began = time.monotonic()
                record = (rollback(models, "affine", options=options) if step == 3
                          else swap(models, "affine", make_affine_model(2.0 + step), options=options))
                windows.append((began, time.monotonic(), record.to_version))
                assert record.ok and record.replicas and len(record.replicas) == 3
                for replica in fleet.replicas:
                    with connect(replica.grpc_url) as client:
                        assert client.predict_detailed("affine", X).version == record.to_version
        assert [w[2] for w in windows] == [2, 3, 4, 3]
        for traffic in (through_lb, client_side):
            assert_fleet_traffic(traffic, windows, {1, 2, 3, 4})
