"""The client never imports TensorFlow: checked in fresh interpreters (sys.modules)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

_IMPORT_ONLY = """
import sys
import tfship.client
from tfship.client import connect, check_parity, predict_batches
import tfship.client.grpc_transport, tfship.client.rest_transport, tfship.client.batch.job
import tfship.deploy.pytest_plugin, tfship.deploy.launch
import tfship.manifest, tfship.tolerance, tfship.export.manifest
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tensorflow_serving"))
assert not heavy, heavy
print("ok")
"""

_PREDICT = """
import sys
import numpy as np
from tfship.client import connect
for url in sys.argv[1:]:
    with connect(url) as client:
        y = client.predict("multi", np.ones((2, 3), np.float32), signature="single", version=1)
        assert y.tolist() == [[2.0] * 3] * 2, y
        client.status("multi"); client.metadata("multi")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tensorflow_serving"))
assert not heavy, heavy
print("ok")
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_importing_the_client_never_imports_tensorflow() -> None:
    done = _run(_IMPORT_ONLY)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_predict_over_both_transports_never_imports_tensorflow(server: Any) -> None:
    done = _run(_PREDICT, server.grpc_url, server.rest_url)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
