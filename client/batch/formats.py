"""Input and output files of batch jobs: ``.npy``, ``.npz``, ``.jsonl`` (TF Serving rows), ``.csv``.

* ``.npy``   one array = the signature's only input / only output
* ``.npz``   one array per input / output name
* ``.jsonl`` one JSON value per line in TF Serving's row ("instances") format: the bare value for a
  single-input signature, else ``{"input_name": value, ...}``; strings may be ``{"b64": ...}``.
  Outputs are written the same way (bare value for one output, object for several).
* ``.csv``   a header row; if the column names are the signature's inputs, each column is one
  (scalar per row) input, otherwise all columns form the single input's feature vector. Outputs:
  one column per output element (``name`` or ``name_0``, ``name_1`` ...).
* ``.parquet`` (needs pyarrow: ``pip install 'tfship[ray]'``) columns named after the inputs (list
  columns for vector inputs), otherwise all columns form the single input's feature vector.
  Outputs: one column per output (a fixed-size list per row for vector outputs; strings as binary).

The parsers take a slice of a file too (``csv_inputs``, ``jsonl_inputs``, ``table_inputs``), so the
Ray engine (:mod:`tfship.client.batch.ray_engine`) reads its blocks with the same rules and errors.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tfship.client.types import SignatureInfo

from tfship.errors import ConfigError, InvalidArgumentError
from tfship.wire import dtypes
from tfship.wire.json import decode_value, dumps, encode_value, is_b64_object, loads

__all__ = ["FORMATS", "read_inputs", "OutputWriter", "csv_inputs", "jsonl_inputs", "table_inputs", "outputs_table"]

FORMATS = (".npy", ".npz", ".jsonl", ".csv", ".parquet")


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"Unsupported file type {path.name!r}: use one of {', '.join(FORMATS)}.")
    return suffix


def _dtype(sig: SignatureInfo, name: str) -> dtypes.DType | None:
    spec = sig.inputs.get(name)
    return dtypes.by_name(spec.dtype) if spec is not None else None


def _only_input(sig: SignatureInfo, what: str) -> str:
    if len(sig.inputs) != 1:
        raise ConfigError(f"A {what} file holds one array but the signature has inputs "
                          f"{sorted(sig.inputs)}: use .npz (one array per input) or .jsonl objects.")
    return next(iter(sig.inputs))


def read_inputs(path: str | os.PathLike[str], sig: SignatureInfo) -> dict[str, np.ndarray]:
    """All rows of an input file as ``{input_name: array}`` in the signature's dtypes."""
    path = Path(path)
    kind = _format(path)
    if not path.is_file():
        raise ConfigError(f"Input file {str(path)!r} does not exist.")
    if kind == ".npy":
        return {_only_input(sig, ".npy"): np.load(path, mmap_mode="r", allow_pickle=False)}
    if kind == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        missing = set(sig.inputs) - set(arrays)
        if missing:
            raise ConfigError(f"{path.name} lacks input(s) {sorted(missing)}; it has {sorted(arrays)}.")
        return {k: arrays[k] for k in sig.inputs}
    if kind == ".jsonl":
        with open(path, "rb") as fh:
            return jsonl_inputs(enumerate(fh, 1), sig, path.name)
    if kind == ".parquet":
        pq = pyarrow_module("parquet")
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path.name} is not a readable Parquet file: {exc}") from None
        return table_inputs(table, sig, path.name)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ConfigError(f"{path.name} is empty: a CSV input needs a header row.")
        return csv_inputs(header, enumerate(reader, 2), sig, path.name)


def pyarrow_module(name: str = "") -> Any:
    """``pyarrow`` (or ``pyarrow.<name>``), with the install hint when it is missing."""
    import importlib

    try:
        return importlib.import_module(f"pyarrow.{name}" if name else "pyarrow")
    except ImportError:
        raise ConfigError("Parquet needs pyarrow: pip install 'tfship[ray]' (or pyarrow).") from None


def jsonl_inputs(lines: Iterable[tuple[int, bytes]], sig: SignatureInfo, where: str) -> dict[str, np.ndarray]:
    """``(line number, line)`` pairs of TF Serving rows as ``{input: array}``; errors name ``where`` and the line."""
    names = list(sig.inputs)
    columns: dict[str, list[object]] = {n: [] for n in names}
    numbers: list[int] = []
    for number, line in lines:
        if not line.strip():
            continue
        numbers.append(number)
        try:
            row = loads(line)
        except InvalidArgumentError as exc:
            raise ConfigError(f"{where} line {number}: {exc.message}") from None
        if isinstance(row, dict) and not is_b64_object(row):
            if set(row) != set(names):
                raise ConfigError(f"{where} line {number}: keys {sorted(row)} differ from the "
                                  f"signature's inputs {names}.")
            for n in names:
                columns[n].append(row[n])
        elif len(names) == 1:
            columns[names[0]].append(row)
        else:
            raise ConfigError(f"{where} line {number}: the signature has inputs {names}, so "
                              "each line must be an object with those keys.")
    out = {}
    for n in names:
        try:
            out[n] = decode_value(columns[n], _dtype(sig, n))
        except InvalidArgumentError as exc:
            bad = _first_bad(columns[n], lambda v, n=n: decode_value([v], _dtype(sig, n)))  # type: ignore[misc]
            at = f" line {numbers[bad]}" if bad is not None else ""
            raise ConfigError(f"{where}{at}, input {n!r}: {exc.message}") from None
    return out


def _first_bad(values: list[Any], convert: Callable[[Any], object]) -> int | None:
    """Index of the first value ``convert`` rejects (the slow path, taken only to name a bad row)."""
    for i, value in enumerate(values):
        try:
            convert(value)
        except (InvalidArgumentError, ConfigError, ValueError, TypeError):
            return i
    return None


def _column(values: list[str], dtype: dtypes.DType | None) -> np.ndarray:
    if dtype is not None and dtype.is_string:
        out = np.empty(len(values), object)
        out[:] = [v.encode("utf-8") for v in values]
        return out
    target = dtype.numpy if dtype is not None and dtype.numpy is not None else np.dtype(np.float32)
    try:
        if target.kind in "iu":
            return np.array(values, dtype=np.int64).astype(target)
        if target.kind == "b":
            return np.array([v.strip().lower() in ("1", "true") for v in values])
        return np.array(values, dtype=np.float64).astype(target)
    except ValueError as exc:
        raise ConfigError(f"CSV value is not a {target.name} number: {exc}") from None


def csv_inputs(header: list[str], rows: Iterable[tuple[int, list[str]]], sig: SignatureInfo,
               where: str) -> dict[str, np.ndarray]:
    """``(line number, fields)`` CSV rows as ``{input: array}``; errors name ``where`` and the line."""
    numbered = [(n, r) for n, r in rows if r]
    bad = next(((n, r) for n, r in numbered if len(r) != len(header)), None)
    if bad is not None:
        raise ConfigError(f"{where} line {bad[0]} has {len(bad[1])} fields, the header {len(header)}.")
    lines = [n for n, _ in numbered]
    records = [r for _, r in numbered]
    cols = list(zip(*records, strict=False)) if records else [()] * len(header)

    def column(values: list[str], name: str) -> np.ndarray:
        try:
            return _column(values, _dtype(sig, name))
        except ConfigError as exc:
            index = _first_bad(values, lambda v: _column([v], _dtype(sig, name)))
            line = f" line {lines[index]}" if index is not None else ""
            raise ConfigError(f"{where}{line}: {exc}") from None

    if set(header) == set(sig.inputs):
        return {n: column(list(cols[header.index(n)]), n) for n in sig.inputs}
    name = _only_input(sig, ".csv (with feature columns)")
    width = len(header)
    try:
        flat = _column([v for r in records for v in r], _dtype(sig, name))
    except ConfigError:
        for values in cols:
            column(list(values), name)  # names the first bad line
        raise
    return {name: flat.reshape(len(records), width)}


def table_inputs(table: Any, sig: SignatureInfo, where: str, first_row: int = 0) -> dict[str, np.ndarray]:
    """A pyarrow Table (all or part of a Parquet file) as ``{input: array}``.

    Columns named after the inputs feed those inputs (list columns give one vector per row);
    otherwise every column is one feature of the single input. ``first_row`` numbers the rows
    in errors (the table's first row in its file).
    """
    pa = pyarrow_module()
    names = [n for n in table.column_names if n != ROW_ID]
    if set(names) == set(sig.inputs):
        return {n: _arrow_column(table.column(n), sig, n, where, first_row, pa) for n in sig.inputs}
    if len(sig.inputs) != 1:
        raise ConfigError(f"{where} has columns {names} but the signature's inputs are {sorted(sig.inputs)}: "
                          "name one column per input.")
    (name,) = sig.inputs
    parts = [_arrow_column(table.column(c), sig, name, where, first_row, pa) for c in names]
    return {name: np.stack(parts, axis=1) if parts else np.empty((table.num_rows, 0))}


def _arrow_column(column: Any, sig: SignatureInfo, name: str, where: str, first_row: int, pa: Any) -> np.ndarray:
    dtype = _dtype(sig, name)
    rows = len(column)
    if column.null_count:
        index = next(i for i, v in enumerate(column.is_null().to_pylist()) if v)
        raise ConfigError(f"{where} row {first_row + index}: input {name!r} is null; every input needs a value.")
    kind = column.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        combined = column.combine_chunks()
        lengths = combined.value_lengths().to_numpy(zero_copy_only=False) if rows else np.zeros(0, np.int64)
        if rows and (lengths != lengths[0]).any():
            index = int(np.flatnonzero(lengths != lengths[0])[0])
            raise ConfigError(f"{where} row {first_row + index}: input {name!r} has {lengths[index]} values, "
                              f"row {first_row} has {lengths[0]}; every row needs the same shape.")
        flat = _arrow_values(combined.flatten(), dtype, where, name)
        return flat.reshape(rows, int(lengths[0]) if rows else 0)
    return _arrow_values(column.combine_chunks(), dtype, where, name)


def _arrow_values(array: Any, dtype: dtypes.DType | None, where: str, name: str) -> np.ndarray:
    if dtype is not None and dtype.is_string:
        out = np.empty(len(array), object)
        out[:] = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.to_pylist()]
        return out
    values = array.to_numpy(zero_copy_only=False)
    target = dtype.numpy if dtype is not None and dtype.numpy is not None else values.dtype
    if values.dtype.kind not in "biuf" or (values.dtype.kind == "f" and target.kind in "iub"):
        raise ConfigError(f"{where}: input {name!r} is {array.type} in the file but the signature wants "
                          f"{target.name}; convert the column.")
    return values.astype(target, copy=False)


def outputs_table(outputs: dict[str, np.ndarray], row_ids: np.ndarray | None = None) -> Any:
    """Outputs as a pyarrow Table: a column per output (fixed-size lists for vectors, binary for
    strings), led by ``row_id`` when given. Column order: row_id, then outputs by name."""
    pa = pyarrow_module()
    columns: dict[str, Any] = {}
    if row_ids is not None:
        columns[ROW_ID] = pa.array(np.asarray(row_ids, np.int64))
    for name in sorted(outputs):
        array = outputs[name]
        if array.dtype.kind == "O":
            flat = pa.array([bytes(x) for x in array.reshape(-1)], pa.binary())
        else:
            flat = pa.array(np.ascontiguousarray(array).reshape(-1))
        width = int(np.prod(array.shape[1:])) if array.ndim > 1 else 0
        columns[name] = pa.FixedSizeListArray.from_arrays(flat, width) if array.ndim > 1 else flat
    return pa.table(columns)


#: The column that carries each output row's input row number in the Ray engine's parts.
ROW_ID = "row_id"


class OutputWriter:
    """Writes outputs to the final file, chunk by chunk, in row order (call ``write`` in order)."""

    def __init__(self, path: str | os.PathLike[str], rows: int) -> None:
        self.path = Path(path)
        self.kind = _format(self.path)
        self.rows = rows
        self._parts: list[dict[str, np.ndarray]] = []
        self._fh: io.BufferedWriter | None = None
        self._csv_header: list[str] | None = None
        self._npy: np.memmap | None = None
        self._parquet: Any = None
        self._done = 0

    def write(self, outputs: dict[str, np.ndarray]) -> None:
        if self.kind == ".npz":
            self._parts.append(outputs)
        elif self.kind == ".npy":
            if len(outputs) != 1:
                raise ConfigError(f"The model has outputs {sorted(outputs)}; a .npy file holds one "
                                  "array: write .npz, .jsonl or .csv instead.")
            (array,) = outputs.values()
            if array.dtype.kind == "O":
                raise ConfigError("String outputs cannot go to .npy without pickle: use .jsonl or .csv.")
            if self._npy is None:
                self._npy = np.lib.format.open_memmap(self.path, mode="w+", dtype=array.dtype,
                                                       shape=(self.rows, *array.shape[1:]))
            self._npy[self._done:self._done + len(array)] = array
            self._done += len(array)
        elif self.kind == ".parquet":
            table = outputs_table(outputs)
            if self._parquet is None:
                pq = pyarrow_module("parquet")
                self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in close()
                self._parquet = pq.ParquetWriter(self._fh, table.schema)
            self._parquet.write_table(table)
        elif self.kind == ".jsonl":
            self._fh = self._fh or open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self._fh.write(b"".join(dumps(row) + b"\n" for row in _json_rows(outputs)))
        else:
            self._write_csv(outputs)

    def _write_csv(self, outputs: dict[str, np.ndarray]) -> None:
        flat = {k: v.reshape(len(v), -1) for k, v in outputs.items()}
        if self._csv_header is None:
            self._csv_header = [k if v.shape[1] == 1 else f"{k}_{i}"
                                for k, v in flat.items() for i in range(v.shape[1])]
            self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self._fh.write((",".join(self._csv_header) + "\n").encode())
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        rows = len(next(iter(flat.values())))
        cells = [[_csv_cell(x) for x in v.tolist()] for v in flat.values()] if rows else []
        for r in range(rows):
            writer.writerow([c for col in cells for c in col[r]])
        assert self._fh is not None
        self._fh.write(text.getvalue().encode("utf-8"))

    def close(self) -> None:
        if self.kind == ".npz":
            merged = {k: np.concatenate([p[k] for p in self._parts]) for k in (self._parts[0] if self._parts else {})}
            if any(v.dtype.kind == "O" for v in merged.values()):
                raise ConfigError("String outputs cannot go to .npz without pickle: use .jsonl or .csv.")
            with open(self.path, "wb") as fh:
                np.savez(fh, **merged)  # type: ignore[arg-type]
                _fsync(fh)
        elif self._parquet is not None:
            self._parquet.close()
            self._parquet = None
            assert self._fh is not None
            _fsync(self._fh)
            self._fh.close()
            self._fh = None
        elif self._npy is not None:
            self._npy.flush()
            del self._npy
            self._npy = None
        elif self._fh is not None:
            self._fh.flush()
            _fsync(self._fh)
            self._fh.close()
            self._fh = None


def _csv_cell(values: Iterable[object]) -> list[object]:
    return [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v for v in values]


def _json_rows(outputs: dict[str, np.ndarray]) -> Iterable[object]:
    names = list(outputs)
    rows = len(outputs[names[0]])
    for r in range(rows):
        if len(names) == 1:
            yield encode_value(outputs[names[0]][r])
        else:
            yield {n: encode_value(outputs[n][r]) for n in names}


def _fsync(fh: object) -> None:
    fh.flush()  # type: ignore[attr-defined]
    os.fsync(fh.fileno())  # type: ignore[attr-defined]
