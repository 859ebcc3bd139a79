"""bench/capture_bench.py's verdicts, without running a benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from capture_bench import capture_checks  # noqa: E402


def test_capture_cost_is_judged_per_cell_on_the_median_paired_ratio() -> None:
    paired = {
        "capture_mlp_s001_b1_c16": [(990.0, 1000.0), (960.0, 1000.0), (1000.0, 1000.0)],  # median 0.99
        "capture_mlp_s1_b1_c16": [(800.0, 1000.0), (700.0, 1000.0), (900.0, 1000.0)],     # median 0.80
        "batching_mlp": [(1.0, 1.0)],                                                       # not capture's
    }
    verdicts = {label: (ok, detail) for label, ok, detail in capture_checks(paired)}
    low = "capture at sampling 0.01 costs <= 3% (mlp grpc b1 c16)"
    full = "capture at sampling 1.0 costs <= 15% (mlp grpc b1 c16)"
    assert set(verdicts) == {low, full}
    assert verdicts[low][0] and not verdicts[full][0]
    assert "median 0.80x over 3 alternating rounds" in verdicts[full][1]
