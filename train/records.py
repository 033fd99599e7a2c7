"""Read TFRecord files without TensorFlow (for the preflight's bounded data scan).

Framing per record: uint64 length, uint32 masked CRC-32C of the length, the bytes, uint32
masked CRC-32C of the bytes. The length CRC is checked (8 bytes: cheap in Python), so a file
that is not a TFRecord is caught at its first record; the payload CRC is not (a pure-Python
CRC over megabytes of JPEG would cost seconds), so payload corruption shows up only when the
payload does not parse.
"""

from __future__ import annotations

import struct

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_POLY if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _table()


def crc32c(data: bytes) -> int:
    """CRC-32C of `data`."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC TFRecord stores."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class RecordError(Exception):
    """The file is not a well-formed TFRecord file."""


def read_records(path: str, limit: int):
    """Yields the payloads of the first `limit` records of a TFRecord file."""
    with open(path, "rb") as f:
        for index in range(limit):
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise RecordError(f"record {index}: truncated header")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise RecordError(f"record {index}: bad length checksum (not a TFRecord file?)")
            payload = f.read(length)
            footer = f.read(4)
            if len(payload) < length or len(footer) < 4:
                raise RecordError(f"record {index}: truncated (file cut short?)")
            yield payload


def read_new_records(path: str, offset: int) -> tuple[list[bytes], int]:
    """Complete records written after byte `offset`, and the offset to resume from.

    For files another process is still appending to: a record cut off at the end is left for
    the next call.
    """
    payloads = []
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            header = f.read(12)
            if len(header) < 12:
                break
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise RecordError(f"{path}: bad length checksum at byte {offset}")
            body = f.read(length + 4)
            if len(body) < length + 4:
                break
            payloads.append(body[:length])
            offset += 12 + length + 4
    return payloads, offset
