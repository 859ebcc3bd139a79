"""TFRecord framing, TensorFlow-free: the container of capture files and warmup files.

Each record on disk is ``uint64 length | uint32 masked_crc32c(length) | data | uint32
masked_crc32c(data)`` (little-endian), exactly what ``tf.io.TFRecordWriter`` writes, so a capture
file opens with ``tf.data.TFRecordDataset`` and a TF Serving warmup file opens here.

Reading distinguishes two failures. A *torn tail* -- the file ends inside its last record, which is
what a writer killed mid-write leaves -- is not an error: iteration stops before it and
:attr:`RecordFile.torn_at` tells where. A *corrupt* record (a length or data CRC that does not match)
raises :class:`~tfship.errors.CorruptRecordError` naming the file and the byte offset.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import google_crc32c

from tfship.errors import CorruptRecordError

__all__ = ["encode_record", "RecordFile", "Record", "read_records", "write_records", "HEADER_BYTES"]

HEADER_BYTES = 12  # length + its CRC
_FOOTER_BYTES = 4
_MASK_DELTA = 0xA282EAD8
_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")


def _masked_crc(data: bytes | memoryview) -> int:
    crc = google_crc32c.value(bytes(data) if isinstance(data, memoryview) else data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def encode_record(data: bytes) -> bytes:
    """One framed record (header, data, footer) ready to append to a TFRecord file."""
    length = _LEN.pack(len(data))
    return b"".join((length, _CRC.pack(_masked_crc(length)), data, _CRC.pack(_masked_crc(data))))


@dataclass(frozen=True)
class Record:
    """One record: its payload, the byte offset of its header and its index in the file."""

    index: int
    offset: int
    data: bytes


class RecordFile:
    """Iterate the records of one TFRecord file (``for record in RecordFile(path)``).

    After iteration, :attr:`torn_at` is the offset of a torn last record (``None`` when the file
    ended cleanly) and :attr:`records` the number of whole records read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.torn_at: int | None = None
        self.records = 0

    def __iter__(self) -> Iterator[Record]:
        self.torn_at, self.records = None, 0
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            offset = 0
            while offset < size:
                header = fh.read(HEADER_BYTES)
                if len(header) < HEADER_BYTES:
                    self.torn_at = offset
                    return
                (length,) = _LEN.unpack_from(header)
                (crc,) = _CRC.unpack_from(header, 8)
                if crc != _masked_crc(header[:8]):
                    raise CorruptRecordError(self.path, offset, "the length's CRC does not match (bad length)")
                end = offset + HEADER_BYTES + length + _FOOTER_BYTES
                if end > size:
                    self.torn_at = offset
                    return
                data = fh.read(length)
                (crc,) = _CRC.unpack(fh.read(_FOOTER_BYTES))
                if crc != _masked_crc(data):
                    raise CorruptRecordError(self.path, offset, "the data's CRC does not match")
                yield Record(self.records, offset, data)
                self.records += 1
                offset = end


def read_records(path: str | os.PathLike[str]) -> list[bytes]:
    """Every whole record's payload (a torn last record is left out)."""
    return [record.data for record in RecordFile(path)]


def write_records(path: str | os.PathLike[str], records: list[bytes]) -> int:
    """Write ``records`` as a complete TFRecord file (temp file + fsync + rename); return the count."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        for data in records:
            fh.write(encode_record(data))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return len(records)
