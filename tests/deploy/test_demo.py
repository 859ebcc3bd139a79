"""`tfship demo`, the README's first command, end to end (trains, exports, serves, swaps)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_passes_every_check(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tfship", "demo", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "all checks passed" in out
    for check in ("parity v1 grpc", "parity v1 rest", "accuracy v1 grpc batch", "hot switch to v2",
                  "parity v2 grpc", "parity v2 rest", "accuracy v2 rest"):
        assert f"PASS  {check}" in out
    assert (tmp_path / "models" / "digits" / "2" / "saved_model.pb").is_file()
