"""A job's inputs cut into deterministic blocks, and each block's output committed exactly once.

A *block* is a fixed row range of one input file: rows ``[k * block_rows, (k + 1) * block_rows)``
of the k-th slice, numbered across the sorted input files. The same inputs and ``block_rows``
always give the same blocks, so a block's output has a deterministic name (``part-000042.parquet``)
and "is block 42 done?" is "does that file exist?". A part is written to a unique temp name,
fsynced and renamed into place, so it appears whole or not at all; a block scored twice (an actor
killed after its rename, a retried task) finds its part committed and is not sent again.

Row ids: every output row carries ``row_id``, the input row's position in the whole job (the rows
of the files in sorted path order, counted from 0). CSV and JSONL row ids count data rows
(header and blank lines excluded); errors name the file's line number as well.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import mmap
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tfship.client.batch.formats import (
    FORMATS,
    ROW_ID,
    csv_inputs,
    jsonl_inputs,
    outputs_table,
    pyarrow_module,
    table_inputs,
)
from tfship.client.types import SignatureInfo

from tfship.durable import fsync_dir
from tfship.errors import ConfigError

__all__ = ["InputFile", "Block", "plan_blocks", "list_inputs", "read_block", "part_path", "commit_part",
           "committed_blocks", "commit_rejected", "ROW_ID"]

_SCAN_CHUNK = 64 << 20


@dataclass(frozen=True)
class InputFile:
    """One input file of a job: its identity (size, mtime: a changed file cannot be resumed into)."""

    path: str
    kind: str
    rows: int
    size: int
    mtime_ns: int
    first_row_id: int


@dataclass(frozen=True)
class Block:
    """Rows ``[start, stop)`` of input file ``file``; text formats also carry their byte range and
    the line number of the range's first line (for errors)."""

    index: int
    file: int
    start: int
    stop: int
    byte_start: int = 0
    byte_stop: int = 0
    first_line: int = 0

    @property
    def rows(self) -> int:
        return self.stop - self.start


def list_inputs(spec: str | os.PathLike[str]) -> list[Path]:
    """The input files of ``spec``: one file, every supported file in a directory, or a glob."""
    text = os.fspath(spec)
    path = Path(text)
    if path.is_dir():
        found = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in FORMATS and not p.name.startswith((".", "_")))
        where = f"directory {text!r}"
    elif glob.has_magic(text):
        found = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        where = f"pattern {text!r}"
    elif path.is_file():
        found = [path]
        where = text
    else:
        raise ConfigError(f"Input {text!r} does not exist: give a file, a directory or a glob.")
    if not found:
        raise ConfigError(f"No input files in {where}: expected {', '.join(FORMATS)} files.")
    kinds = {p.suffix.lower() for p in found}
    bad = sorted(k for k in kinds if k not in FORMATS)
    if bad:
        raise ConfigError(f"Unsupported input file type(s) {bad} in {where}: use one of {', '.join(FORMATS)}.")
    if len(kinds) > 1:
        raise ConfigError(f"The inputs in {where} mix formats {sorted(kinds)}: one job reads one format.")
    return found


def plan_blocks(spec: str | os.PathLike[str], block_rows: int) -> tuple[list[InputFile], list[Block]]:
    """Every input file and its blocks of at most ``block_rows`` rows (one pass over text files)."""
    if block_rows < 1:
        raise ConfigError(f"block_rows must be >= 1, got {block_rows}.")
    files: list[InputFile] = []
    blocks: list[Block] = []
    row_id = 0
    for number, path in enumerate(list_inputs(spec)):
        kind = path.suffix.lower()
        stat = path.stat()
        ranges = _row_ranges(path, kind, block_rows)
        rows = ranges[-1][1] if ranges else 0
        files.append(InputFile(str(path.resolve()), kind, rows, stat.st_size, stat.st_mtime_ns, row_id))
        for start, stop, byte_start, byte_stop, line in ranges:
            blocks.append(Block(len(blocks), number, start, stop, byte_start, byte_stop, line))
        row_id += rows
    return files, blocks


def _row_ranges(path: Path, kind: str, block_rows: int) -> list[tuple[int, int, int, int, int]]:
    """``(start, stop, byte_start, byte_stop, first_line)`` per block of one file."""
    try:
        if kind == ".parquet":
            rows = pyarrow_module("parquet").ParquetFile(path).metadata.num_rows
        elif kind == ".npy":
            rows = int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        elif kind == ".npz":
            with np.load(path, allow_pickle=False) as data:
                rows = int(data[data.files[0]].shape[0]) if data.files else 0
        else:
            return _text_ranges(path, kind == ".csv", block_rows)
    except ConfigError:
        raise
    except Exception as exc:  # every reader has its own error types; all mean "unreadable"
        raise ConfigError(f"Cannot read input file {path}: {exc}") from None
    return [(s, min(s + block_rows, rows), 0, 0, 0) for s in range(0, rows, block_rows)]


def _text_ranges(path: Path, header: bool, block_rows: int) -> list[tuple[int, int, int, int, int]]:
    """Scan newlines to find where each block's first row starts (blank lines are no rows)."""
    size = path.stat().st_size
    if size == 0:
        if header:
            raise ConfigError(f"{path} is empty: a CSV input needs a header row.")
        return []
    starts: list[int] = []
    lines: list[int] = []
    rows = 0
    line_start = 0
    line_no = 0  # lines before the current chunk
    skip = 1 if header else 0  # the CSV header is line 1 and no row
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        data = np.frombuffer(mm, np.uint8)
        try:
            for offset in range(0, size + 1, _SCAN_CHUNK):
                ends = np.flatnonzero(data[offset:offset + _SCAN_CHUNK] == 10) + offset
                if offset + _SCAN_CHUNK >= size and (ends.size == 0 or ends[-1] != size - 1) and line_start < size:
                    ends = np.append(ends, size)  # a last line without a newline
                if ends.size == 0:
                    continue
                begins = np.concatenate([[line_start], ends[:-1] + 1])
                lengths = ends - begins
                empty = lengths == 0
                one = np.flatnonzero(lengths == 1)
                empty[one] = data[begins[one]] == 13  # "\r\n" alone is blank too
                numbers = line_no + 1 + np.arange(ends.size)
                if skip:
                    empty[0] = True
                    skip = 0
                full = np.flatnonzero(~empty)
                ids = rows + np.arange(full.size)
                take = full[ids % block_rows == 0]
                starts += begins[take].tolist()
                lines += numbers[take].tolist()
                rows += full.size
                line_no += ends.size
                line_start = int(ends[-1]) + 1
                if offset + _SCAN_CHUNK >= size:
                    break
        finally:
            del data
    bounds = starts + [size]
    return [(i * block_rows, min((i + 1) * block_rows, rows), bounds[i], bounds[i + 1], lines[i])
            for i in range(len(starts))]


def read_block(files: list[InputFile], block: Block, sig: SignatureInfo) -> dict[str, np.ndarray]:
    """The block's rows as ``{input: array}`` in the signature's dtypes; errors name file and row."""
    source = files[block.file]
    path = Path(source.path)
    where = path.name
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConfigError(f"Input file {source.path} is gone: {exc.strerror}.") from None
    if (stat.st_size, stat.st_mtime_ns) != (source.size, source.mtime_ns):
        raise ConfigError(f"Input file {source.path} changed while the job ran (size or mtime): rerun the job "
                          "on a stable copy of the inputs.")
    if source.kind == ".parquet":
        return _parquet_block(path, block, sig, where)
    if source.kind in (".csv", ".jsonl"):
        with open(path, "rb") as fh:
            header = fh.readline() if source.kind == ".csv" else b""
            fh.seek(block.byte_start)
            data = fh.read(block.byte_stop - block.byte_start)
        numbered = enumerate(data.splitlines(keepends=True), block.first_line)
        if source.kind == ".jsonl":
            return jsonl_inputs(numbered, sig, where)
        names = next(csv.reader(io.StringIO(header.decode("utf-8"))), None) or []
        text = [(n, next(csv.reader([line.decode("utf-8")]), [])) for n, line in numbered]
        return csv_inputs(names, text, sig, where)
    if source.kind == ".npy":
        (name,) = sig.inputs if len(sig.inputs) == 1 else (None,)
        if name is None:
            raise ConfigError(f"{where} holds one array but the signature has inputs {sorted(sig.inputs)}: "
                              "use .npz, .jsonl, .csv or .parquet with one column per input.")
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        return {name: np.asarray(array[block.start:block.stop])}
    with np.load(path, allow_pickle=False) as data:  # .npz cannot be memory-mapped: each block loads it
        missing = set(sig.inputs) - set(data.files)
        if missing:
            raise ConfigError(f"{where} lacks input(s) {sorted(missing)}; it has {sorted(data.files)}.")
        return {k: data[k][block.start:block.stop] for k in sig.inputs}


def _parquet_block(path: Path, block: Block, sig: SignatureInfo, where: str) -> dict[str, np.ndarray]:
    pq = pyarrow_module("parquet")
    try:
        handle = pq.ParquetFile(path)
        meta = handle.metadata
        groups, first, row = [], None, 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if row + n > block.start and row < block.stop:
                groups.append(g)
                first = row if first is None else first
            row += n
        table = handle.read_row_groups(groups)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where} rows {block.start}-{block.stop - 1} are unreadable: {exc}") from None
    table = table.slice(block.start - (first or 0), block.rows)
    return table_inputs(table, sig, where, first_row=block.start)


def locate(files: list[InputFile], block: Block, offset: int) -> str:
    """``"x.csv line 7 (row_id 5)"``: where row ``offset`` of ``block`` is, for error messages."""
    source = files[block.file]
    row = block.start + offset
    where = f"{Path(source.path).name} row {row}"
    if source.kind in (".csv", ".jsonl"):
        with open(source.path, "rb") as fh:
            fh.seek(block.byte_start)
            lines = fh.read(block.byte_stop - block.byte_start).splitlines()
        full = [n for n, line in enumerate(lines, block.first_line) if line.strip()]
        if offset < len(full):
            where = f"{Path(source.path).name} line {full[offset]}"
    return f"{where} (row_id {source.first_row_id + row})"


def part_path(out: Path, block: Block | int) -> Path:
    index = block.index if isinstance(block, Block) else block
    return out / f"part-{index:06d}.parquet"


def rejected_path(out: Path, block: Block | int) -> Path:
    index = block.index if isinstance(block, Block) else block
    return out / "rejected" / f"part-{index:06d}.jsonl"


def committed_blocks(out: Path) -> set[int]:
    """Indexes of the blocks whose part is committed in ``out``."""
    return {int(p.name[5:11]) for p in out.glob("part-??????.parquet")}


def _atomic_write(path: Path, write: Any) -> None:
    # A unique temp name: a retried block and its killed predecessor never write the same temp file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def commit_part(out: Path, block: Block, row_ids: np.ndarray, outputs: dict[str, np.ndarray]) -> Path:
    """Write the block's outputs (with their row ids) under its deterministic name, atomically."""
    table = outputs_table(outputs, row_ids)
    path = part_path(out, block)
    _atomic_write(path, lambda fh: pyarrow_module("parquet").write_table(table, fh))
    return path


def commit_rejected(out: Path, block: Block, rejected: list[dict[str, Any]]) -> None:
    """The block's rejected rows, one JSON object per line (committed before its part)."""
    path = rejected_path(out, block)
    path.parent.mkdir(exist_ok=True)
    body = b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in rejected)
    _atomic_write(path, lambda fh: fh.write(body))


def describe(files: list[InputFile]) -> list[dict[str, Any]]:
    return [asdict(f) for f in files]


__all__ += ["rejected_path", "describe", "locate"]
