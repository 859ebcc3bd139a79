"""`tfship predict --engine ray`: Ray Data actors scoring against a 2-replica fleet.

Each test proves one guarantee with as few rows as proves it; only the parity tests use the
200,000 rows the issue names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tfship.client.batch.ray_engine import run_ray_job


def write_parquet(path: Path, rows: int, seed: int = 1, row_group: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """``a`` (3 floats per row, a list column) and ``b`` (int64), the ``multi`` model's inputs."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(rows, 3)).astype(np.float32)
    b = rng.integers(-1000, 1000, rows).astype(np.int64)
    table = pa.table({"a": pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), 3), "b": pa.array(b)})
    pq.write_table(table, path, row_group_size=row_group)
    return a, b


def read_output(out: Path) -> pa.Table:
    """Every committed part, in row_id order (the manifest lists the parts)."""
    manifest = json.loads((out / "manifest.json").read_text())
    table = pa.concat_tables([pq.read_table(out / p) for p in manifest["parts"]])
    return table.sort_by("row_id")


def test_small_job_scores_every_row_once_with_row_ids(ray_local: Any, fleet: Any, tmp_path: Path) -> None:
    a, b = write_parquet(tmp_path / "in.parquet", 2_500)
    result = run_ray_job(fleet.grpc_url, "multi", tmp_path / "in.parquet", tmp_path / "out", version=1,
                         block_rows=1_000, batch_size=128, progress=False)
    assert (result.rows, result.blocks, result.version) == (2_500, 3, 1)
    table = read_output(tmp_path / "out")
    assert table.column("row_id").to_pylist() == list(range(2_500))
    np.testing.assert_array_equal(np.stack(table.column("scaled").to_numpy(zero_copy_only=False)), a * 2)
    np.testing.assert_array_equal(table.column("next").to_numpy(), b + 1)
    assert set(table.column("tag").to_pylist()) == {b"v1"}
