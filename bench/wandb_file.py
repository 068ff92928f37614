"""W&B's offline run file (``run-*.wandb``): its records, and waiting until it is closed.

wandb 0.31 writes every offline run to
``<dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb`` and ships no Python reader
for it. The format (from wandb-core's ``stream/store.go`` and ``pkg/leveldb``,
checked against files this version writes):

- a 7-byte file header: ``b":W&B"``, uint16 LE magic ``0xBEE1``, version byte 0;
- then the LevelDB log format, counted from the start of the file (so block 0
  holds the header and 32 761 bytes of chunks): 32 KiB blocks of chunks, each
  with a 7-byte header (uint32 LE crc, uint16 LE length, uint8 type
  full=1/first=2/middle=3/last=4) and its payload. Chunks never cross blocks;
  fewer than 7 bytes left in a block are zero padding.
- the crc is the plain IEEE CRC-32 (``zlib.crc32``) of the type byte and the
  payload, *not* LevelDB's masked CRC-32C (wandb-core selects ``CRCAlgoIEEE``).
- each record is a serialized ``wandb.proto.wandb_internal_pb2.Record``.

A crashed run leaves a file that stops mid-chunk or mid-record: :func:`iter_records`
ends quietly there. A checksum mismatch or a malformed chunk inside the file
raises :class:`CorruptRunFileError`.

At run time only :func:`wait_until_closed` is used (:mod:`bench.wandb_settings`,
:mod:`bench.report.publish`): ``run.finish()`` returns before wandb-core has
written the file's last block. The tests fold the records into whole runs
(``tests/wandb_runs.py``: config, history, summary, metric definitions, exit code).
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from wandb.proto import wandb_internal_pb2 as pb

FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER = struct.Struct("<IHB")  # crc32, payload length, chunk type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# wandb picks its generated protobuf module when imported (by protobuf's major
# version), so a type checker finds no ``Record`` class in ``pb``.
RECORD: Any = pb.Record  # type: ignore[attr-defined]


class CorruptRunFileError(ValueError):
    """A ``.wandb`` file that is not a W&B run file, or is damaged inside."""


# ----------------------------------------------------------------------------- low level


def _iter_payloads(f: BinaryIO, path: Path) -> Iterator[bytes]:
    """Reassembled record payloads of an open ``.wandb`` file, in order."""
    head = f.read(len(FILE_HEADER))
    if head != FILE_HEADER[: len(head)]:
        raise CorruptRunFileError(f"{path}: not a W&B run file (header {head!r})")
    if len(head) < len(FILE_HEADER):
        return  # crashed before the header was complete: no records
    block_start, pos = 0, len(FILE_HEADER)
    block = head + f.read(BLOCK_SIZE - len(head))
    parts: list[bytes] = []
    while True:
        if pos + CHUNK_HEADER.size > len(block):
            if len(block) < BLOCK_SIZE:
                return  # end of file (a partial chunk header here is a crashed write)
            block_start += BLOCK_SIZE
            block, pos = f.read(BLOCK_SIZE), 0
            if not block:
                return
            continue
        crc, length, kind = CHUNK_HEADER.unpack_from(block, pos)
        where = block_start + pos
        if crc == 0 and length == 0 and kind == 0:
            pos = len(block)  # zero padding to the end of the block
            continue
        start, end = pos + CHUNK_HEADER.size, pos + CHUNK_HEADER.size + length
        if end > len(block):
            if len(block) < BLOCK_SIZE:
                return  # the last chunk was cut short: a crashed run, keep what we have
            raise CorruptRunFileError(f"{path}: chunk at byte {where} overflows its block")
        payload = block[start:end]
        if zlib.crc32(block[start - 1 : end]) != crc:
            raise CorruptRunFileError(f"{path}: checksum mismatch in chunk at byte {where}")
        if kind not in (FULL, FIRST, MIDDLE, LAST):
            raise CorruptRunFileError(f"{path}: unknown chunk type {kind} at byte {where}")
        if (kind in (FULL, FIRST)) == bool(parts):  # a record starts mid-record, or vice versa
            raise CorruptRunFileError(f"{path}: chunk type {kind} out of order at byte {where}")
        pos = end
        if kind == FULL:
            yield payload
        elif kind == LAST:
            yield b"".join([*parts, payload])
            parts = []
        else:
            parts.append(payload)


def iter_records(path: str | Path) -> Iterator[Any]:
    """Every ``Record`` (``wandb_internal_pb2.Record``) in a ``run-*.wandb`` file, in the order written.

    A file cut short by a crash (a partial last chunk or an unfinished
    multi-chunk record) yields the complete records before the cut.

    Raises:
        CorruptRunFileError: wrong file header, checksum mismatch, a malformed
            chunk or a payload that is not a ``Record``.
    """
    path = Path(path)
    with path.open("rb") as f:
        for payload in _iter_payloads(f, path):
            record = RECORD()
            try:
                record.ParseFromString(payload)
            except Exception as e:  # protobuf's DecodeError
                raise CorruptRunFileError(f"{path}: undecodable record ({e})") from None
            yield record


def wait_until_closed(path: str | Path, timeout: float = 30.0, poll: float = 0.01) -> bool:
    """Wait until a run file holds its exit record; True if it does within ``timeout``.

    wandb-core buffers the file in 32 KiB blocks and writes the last one when it
    closes the run's stream, a moment *after* ``run.finish()`` returns. The file
    is only re-read when its size changes.
    """
    path = Path(path)
    deadline = time.monotonic() + timeout
    last_size = -1
    while True:
        size = path.stat().st_size if path.exists() else -1
        if size != last_size:
            last_size = size
            try:
                if size > 0 and any(r.HasField("exit") for r in iter_records(path)):
                    return True
            except CorruptRunFileError:
                pass  # mid-write; look again when the size changes
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
