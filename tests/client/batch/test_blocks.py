"""Block plans: deterministic row ranges over files, text byte ranges that respect blank lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tfship.client.batch.blocks import locate, plan_blocks, read_block
from tfship.client.types import SignatureInfo, TensorSpec

from tfship.errors import ConfigError

SINGLE = SignatureInfo("tensorflow/serving/predict", {"a": TensorSpec("DT_FLOAT", (-1, 3))},
                       {"scaled": TensorSpec("DT_FLOAT", (-1, 3))})


def test_csv_blocks_cover_every_row_once_whatever_the_line_endings(tmp_path: Path) -> None:
    rows = [f"{i},{i + 1},{i + 2}" for i in range(10)]
    text = "f0,f1,f2\r\n" + "\r\n".join(rows[:4]) + "\r\n\r\n\n" + "\n".join(rows[4:])  # blank lines, no final \n
    (tmp_path / "x.csv").write_text(text, newline="")
    files, blocks = plan_blocks(tmp_path / "x.csv", 3)
    assert files[0].rows == 10 and [(b.start, b.stop) for b in blocks] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    got = np.concatenate([read_block(files, b, SINGLE)["a"] for b in blocks])
    np.testing.assert_array_equal(got, [[i, i + 1, i + 2] for i in range(10)])
    assert locate(files, blocks[1], 1) == "x.csv line 8 (row_id 4)"  # two blank lines before it
    assert plan_blocks(tmp_path / "x.csv", 3) == (files, blocks)  # deterministic


def test_row_ids_run_across_the_sorted_files_of_a_directory_or_glob(tmp_path: Path) -> None:
    np.save(tmp_path / "b.npy", np.ones((5, 3), np.float32))
    np.save(tmp_path / "a.npy", np.zeros((4, 3), np.float32))
    (tmp_path / "_SUCCESS").write_text("")
    files, blocks = plan_blocks(tmp_path, 3)
    assert [Path(f.path).name for f in files] == ["a.npy", "b.npy"] and [f.first_row_id for f in files] == [0, 4]
    assert [(b.file, b.start, b.stop) for b in blocks] == [(0, 0, 3), (0, 3, 4), (1, 0, 3), (1, 3, 5)]
    assert plan_blocks(str(tmp_path / "*.npy"), 3) == (files, blocks)


def test_bad_inputs_are_refused_with_their_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        plan_blocks(tmp_path / "nope.csv", 10)
    (tmp_path / "x.csv").write_text("f0\n1\n")
    (tmp_path / "y.jsonl").write_text("[1]\n")
    with pytest.raises(ConfigError, match=r"mix formats \['.csv', '.jsonl'\]"):
        plan_blocks(tmp_path, 10)
    (tmp_path / "x.csv").write_text("f0,f1,f2\n1,2,3\n1,2\n")
    files, blocks = plan_blocks(tmp_path / "x.csv", 10)
    with pytest.raises(ConfigError, match="x.csv line 3 has 2 fields, the header 3"):
        read_block(files, blocks[0], SINGLE)
    (tmp_path / "x.csv").write_text("f0,f1,f2\n1,2,3\n1,2,4\n")  # changed after planning
    with pytest.raises(ConfigError, match="changed while the job ran"):
        read_block(files, blocks[0], SINGLE)
