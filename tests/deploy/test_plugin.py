"""The pytest plugin users put in their CI: serves a model dir, yields clients, always stops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

pytest_plugins = ["pytester"]


def test_plugin_is_registered(pytestconfig: Any) -> None:
    assert pytestconfig.pluginmanager.has_plugin("tfship")


def test_tfship_serve_in_a_users_test_suite(pytester: Any, tf_serving_testdata: Path) -> None:
    model_dir = tf_serving_testdata / "saved_model_half_plus_two_cpu"
    pytester.makepyfile(test_user=f"""
        import numpy as np

        PIDS = []

        def test_served(tfship_serve):
            served = tfship_serve({str(model_dir)!r}, "half")
            PIDS.append(served.server.process)
            for client in served.clients:
                y = client.predict("half", np.array([[1.0], [3.0]], np.float32))
                assert y.tolist() == [[2.5], [3.5]]

        def test_stopped_after_the_test():
            (process,) = PIDS
            assert process.poll() is not None
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)


def test_tfship_server_from_ini(pytester: Any, tf_serving_testdata: Path) -> None:
    model_dir = tf_serving_testdata / "saved_model_half_plus_two_2_versions"
    pytester.makeini(f"[pytest]\ntfship_model_dir = {model_dir}\ntfship_model_name = half2\n")
    pytester.makepyfile(test_ini="""
        import numpy as np

        def test_latest_version(tfship_server):
            assert tfship_server.grpc.status("half2")[0].version == 124
            assert tfship_server.rest.predict("half2", np.array([2.0], np.float32)).shape == (1,)
    """)
    result = pytester.runpytest_inprocess("-q")
    result.assert_outcomes(passed=1)


_ = np  # numpy is used by the generated test files
