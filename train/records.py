"""Read TFRecord files without TensorFlow (for the preflight's bounded data scan).

Framing per record: uint64 length, uint32 masked CRC-32C of the length, the bytes, uint32
masked CRC-32C of the bytes. Both checksums are verified, as TensorFlow's reader does (a
corrupted payload fails training with "corrupted record at N" and no file name): with
google-crc32c (C, GB/s) when installed, else in pure Python (~6 MB/s).
"""

from __future__ import annotations

import glob
import io
import os
import struct

from train import files

try:
    import google_crc32c as _fast_crc
except ImportError:  # pragma: no cover - the locks install it; the fallback is correct, slow
    _fast_crc = None

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
    if _fast_crc is not None:
        return _fast_crc.value(bytes(data))
    return crc32c_python(data)


def crc32c_python(data: bytes) -> int:
    """CRC-32C of `data`, table-driven in Python (the reference the fast path is tested on)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC TFRecord stores."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# JPEG, PNG, BMP: what the OD API's decoder (tf-slim: decode_jpeg, else decode_image) turns
# into an RGB image; a GIF decodes to a stack of frames, anything else fails.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_SIGNATURES = (b"\xff\xd8\xff", PNG_SIGNATURE, b"BM")


def image_problem(example) -> tuple[str, bytes] | None:
    """Why training could not decode a tf.train.Example's image, or None when it could.

    ("no_image", b"") when there is no image/encoded; ("not_image", its first bytes) when the
    bytes are no JPEG, PNG or BMP (`image/format: raw` holds decoded pixels on purpose). Works on
    TensorFlow's Example and on train.wireprotos' (the same fields).
    """
    feature = example.features.feature
    encoded = feature.get("image/encoded")
    values = list(encoded.bytes_list.value) if encoded is not None else []
    if not values:
        return "no_image", b""
    declared = feature.get("image/format")
    if declared is not None and list(declared.bytes_list.value) == [b"raw"]:
        return None
    if not values[0].startswith(IMAGE_SIGNATURES):
        return "not_image", values[0][:8]
    return None


def top_level_fields(payload: bytes) -> set[int]:
    """The field numbers at the top level of a serialized proto (what kind of record it is).

    A tf.train.SequenceExample parses as a tf.train.Example (its context is field 1, like an
    Example's features); only its field 2 (feature_lists) tells the two apart. Stops quietly at
    the first malformed tag.
    """

    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = payload[at]
            value |= (byte & 0x7F) << shift
            at += 1
            if not byte & 0x80:
                return value, at
            shift += 7

    found: set[int] = set()
    at = 0
    try:
        while at < len(payload):
            tag, at = varint(at)
            wire = tag & 7
            if wire == 0:
                _, at = varint(at)
            elif wire == 1:
                at += 8
            elif wire == 2:
                length, at = varint(at)
                at += length
            elif wire == 5:
                at += 4
            else:
                break
            found.add(tag >> 3)
    except IndexError:
        pass
    return found


def expand(pattern: str) -> list[str]:
    """Paths an input_path matches, the way tf.io.gfile.glob does for local paths."""
    if "\0" in pattern:
        return []
    if any(ch in pattern for ch in "*?["):
        return sorted(glob.glob(pattern))
    return [pattern] if os.path.lexists(pattern) else []


class RecordError(Exception):
    """The file is not a well-formed TFRecord file."""


def next_record(f, verify_payload: bool = True) -> tuple[bytes | None, str | None]:
    """(payload, None) for the record at f's position; (None, problem) otherwise.

    The problem is None at a clean end of file, else "truncated header", "bad length
    checksum", "truncated" or "bad data checksum" (`explain` gives the sentence). The payload
    and its checksum are read apart: no copy of the payload beyond the read itself (the full
    scan reads every record through here).
    """
    header = f.read(12)
    if not header:
        return None, None
    if len(header) < 12:
        return None, "truncated header"
    length, length_crc = struct.unpack("<QI", header)
    if masked_crc32c(header[:8]) != length_crc:
        return None, "bad length checksum"
    if length >= _MAX_RECORD:  # never allocate what a corrupted length field claims
        return None, "bad length"
    remaining = _remaining(f)
    if remaining is not None and length + 4 > remaining:
        return None, "truncated"
    payload = f.read(length)
    crc = f.read(4)
    if len(payload) < length or len(crc) < 4:
        return None, "truncated"
    if verify_payload and masked_crc32c(payload) != struct.unpack("<I", crc)[0]:
        return None, "bad data checksum"
    return payload, None


_MAX_RECORD = 1 << 31  # a serialized Example is a protobuf message: under 2 GiB


def _remaining(f) -> int | None:
    """Bytes left after f's position (None when f is not a plain file)."""
    try:
        return os.fstat(f.fileno()).st_size - f.tell()
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


_EXPLAINED = {
    "bad length": "bad length: the record claims 2 GiB or more (the file is corrupted)",
    "truncated header": "truncated header (file cut short?)",
    "bad length checksum": "bad length checksum (not a TFRecord file?)",
    "truncated": "truncated (file cut short?)",
    "bad data checksum": "bad data checksum (the record's bytes are corrupted)",
}


def explain(problem: str) -> str:
    """A next_record problem as the sentence findings use."""
    return _EXPLAINED.get(problem, problem)


def read_records(path: str, limit: int):
    """Yields the payloads of the first `limit` records of a TFRecord file.

    Raises:
      files.InputError: the path is not a readable regular file (a FIFO, a folder, ...).
      RecordError: a record is malformed; the message starts with "record N:".
    """
    with files.open_input(path) as f:
        for index in range(limit):
            payload, problem = next_record(f)
            if problem:
                raise RecordError(f"record {index}: {explain(problem)}")
            if payload is None:
                return
            yield payload


def frame(payload: bytes) -> bytes:
    """One record as a TFRecord file holds it (length, its CRC, payload, its CRC)."""
    header = struct.pack("<Q", len(payload))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + payload
        + struct.pack("<I", masked_crc32c(payload))
    )


def read_new_records(path: str, offset: int) -> tuple[list[bytes], int]:
    """Complete records written after byte `offset`, and the offset to resume from.

    For files another process is still appending to: a record cut off at the end is left for
    the next call.
    """
    payloads = []
    with files.open_input(path) as f:
        f.seek(offset)
        while True:
            payload, problem = next_record(f, verify_payload=False)
            if problem == "bad length checksum":
                raise RecordError(f"{path}: bad length checksum at byte {offset}")
            if payload is None:
                break
            payloads.append(payload)
            offset += 12 + len(payload) + 4
    return payloads, offset
