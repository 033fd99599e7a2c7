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


def _next_record(f) -> tuple[bytes | None, str | None]:
    """(payload, None) for the record at f's position; (None, problem) otherwise.

    The problem is None at a clean end of file, else "truncated header", "bad length
    checksum" or "truncated".
    """
    header = f.read(12)
    if not header:
        return None, None
    if len(header) < 12:
        return None, "truncated header"
    length, length_crc = struct.unpack("<QI", header)
    if masked_crc32c(header[:8]) != length_crc:
        return None, "bad length checksum"
    body = f.read(length + 4)  # payload + its CRC
    if len(body) < length + 4:
        return None, "truncated"
    return body[:length], None


def read_records(path: str, limit: int):
    """Yields the payloads of the first `limit` records of a TFRecord file."""
    with open(path, "rb") as f:
        for index in range(limit):
            payload, problem = _next_record(f)
            if problem == "bad length checksum":
                raise RecordError(f"record {index}: bad length checksum (not a TFRecord file?)")
            if problem == "truncated":
                problem = "truncated (file cut short?)"
            if problem:
                raise RecordError(f"record {index}: {problem}")
            if payload is None:
                return
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
            payload, problem = _next_record(f)
            if problem == "bad length checksum":
                raise RecordError(f"{path}: bad length checksum at byte {offset}")
            if payload is None:
                break
            payloads.append(payload)
            offset += 12 + len(payload) + 4
    return payloads, offset
