"""Read a TensorBundle checkpoint index (`<prefix>.index`) without TensorFlow.

The index is a LevelDB-format table (TF's `lib/io/table`): a footer points at an index block,
whose entries point at data blocks; each data-block entry maps a tensor name to a
`BundleEntryProto` (dtype, shape, shard, offset, size); the empty key holds the header. Blocks
are stored raw or Snappy-compressed (older TF builds, e.g. the zoo's checkpoints), each with a
masked CRC-32C that is verified as TensorFlow's reader does, so a corrupted index is refused
here rather than at restore time. Anything this reader cannot parse raises `UnsupportedIndex`
(TensorFlow's table format has only these two block types, so that means a broken file).

Reading the index this way takes milliseconds instead of the seconds `import tensorflow` costs,
and gives what TF's reader hides: each tensor's byte range, so truncated shards are exact.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import struct

from train import files, records, wireprotos

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_TRAILER = 5  # compression type byte + crc32c after every block
_DTYPE_SIZE = {
    1: 4,
    2: 8,
    3: 4,
    4: 1,
    5: 2,
    6: 1,
    8: 8,
    9: 8,
    10: 1,
    14: 2,
    17: 2,
    18: 16,
    19: 2,
    22: 4,
    23: 8,
}
DT_STRING = 7
DT_INT64 = 9


class UnsupportedIndex(Exception):
    """Not a TensorBundle index this reader can parse (corrupted, cut short, another format)."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tensor of the checkpoint."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise UnsupportedIndex("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise UnsupportedIndex("bad varint")


def _snappy(data: bytes) -> bytes:
    """Decompresses a raw Snappy block (the format LevelDB tables use)."""
    length, pos = _varint(data, 0)
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            size = tag >> 2
            if size >= 60:
                extra = size - 59
                size = int.from_bytes(data[pos : pos + extra], "little")
                pos += extra
            size += 1
            out += data[pos : pos + size]
            pos += size
            continue
        if kind == 1:
            size = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            size = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + 2], "little")
            pos += 2
        else:
            size = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise UnsupportedIndex("bad snappy copy")
        for _ in range(size):  # copies may overlap their own output
            out.append(out[-offset])
    if len(out) != length:
        raise UnsupportedIndex("snappy length mismatch")
    return bytes(out)


def _block(data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    if offset + size + _TRAILER > len(data):
        raise UnsupportedIndex("block beyond end of file")
    compression = data[offset + size]
    (stored_crc,) = struct.unpack_from("<I", data, offset + size + 1)
    if records.masked_crc32c(data[offset : offset + size + 1]) != stored_crc:
        raise UnsupportedIndex(f"block checksum mismatch at byte {offset} (corrupted index)")
    block = data[offset : offset + size]
    if compression == 1:
        block = _snappy(block)
    elif compression != 0:
        raise UnsupportedIndex(f"unknown block compression {compression}")
    if len(block) < 4:
        raise UnsupportedIndex("short block")
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise UnsupportedIndex("bad restart array")
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_length]))
        pos += value_length
    return entries


def read_index(prefix: str) -> tuple[int, tuple[Entry, ...]]:
    """Returns (number of shards, entries sorted by name) of `prefix.index`.

    Parsed once per file version: the preflight asks for names, the step and shard sizes of
    the same checkpoint.
    """
    stat = os.stat(prefix + ".index")
    return _parse_index(prefix + ".index", stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _parse_index(path: str, mtime_ns: int, size: int) -> tuple[int, tuple[Entry, ...]]:
    del mtime_ns, size  # cache key only: a rewritten index is parsed again
    with files.open_input(path) as f:
        data = f.read()
    if len(data) < _FOOTER or struct.unpack_from("<Q", data, len(data) - 8)[0] != _MAGIC:
        raise UnsupportedIndex("not a TensorBundle index (no table magic)")
    footer = data[len(data) - _FOOTER :]
    _, pos = _varint(footer, 0)  # metaindex handle (unused)
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    entry_class = wireprotos.bundle_entry()
    header_class = wireprotos.bundle_header()
    shards, entries = 1, []
    for _, handle in _block(data, index_offset, index_size):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        for key, value in _block(data, offset, size):
            try:
                if key == b"":
                    shards = header_class.FromString(value).num_shards or 1
                    continue
                proto = entry_class.FromString(value)
            except Exception as e:  # noqa: BLE001 - any decode failure means "not ours"
                raise UnsupportedIndex(f"undecodable entry {key!r}: {e}") from None
            entries.append(
                Entry(
                    key.decode("utf-8", "replace"),
                    proto.dtype,
                    tuple(d.size for d in proto.shape.dim),
                    proto.shard_id,
                    proto.offset,
                    proto.size,
                )
            )
    return shards, tuple(sorted(entries, key=lambda e: e.name))


def shard_path(prefix: str, shard: int, shards: int) -> str:
    """Path of one data shard."""
    return f"{prefix}.data-{shard:05d}-of-{shards:05d}"


def list_variables(prefix: str) -> list[tuple[str, list[int]]]:
    """Like tf.train.list_variables(prefix), from the index alone."""
    _, entries = read_index(prefix)
    return [(e.name, list(e.shape)) for e in entries]


def read_int64(prefix: str, name: str) -> int | None:
    """The value of a scalar int64 tensor (e.g. `step/...`), read from its shard; None if absent."""
    shards, entries = read_index(prefix)
    for entry in entries:
        if entry.name == name and entry.dtype == DT_INT64 and entry.size == 8:
            path = shard_path(prefix, entry.shard, shards)
            try:
                with files.open_input(path) as f:
                    f.seek(entry.offset)
                    value = f.read(8)
            except OSError:
                return None
            return struct.unpack("<q", value)[0] if len(value) == 8 else None
    return None


def truncated_shards(prefix: str) -> list[tuple[str, int, int]]:
    """(shard path, bytes present, bytes the index needs) for every shard that is too short."""
    shards, entries = read_index(prefix)
    needed: dict[int, int] = {}
    for entry in entries:
        needed[entry.shard] = max(needed.get(entry.shard, 0), entry.offset + entry.size)
    short = []
    for shard, size in sorted(needed.items()):
        path = shard_path(prefix, shard, shards)
        have = os.path.getsize(path) if os.path.exists(path) else 0
        if os.path.exists(path) and have < size:
            short.append((path, have, size))
    return short


def damage(prefix: str) -> str | None:
    """Why the checkpoint at `prefix` cannot be restored whole (None: it can), from its index.

    None means every data shard is present and as long as the index needs.
    What a crash or a quota leaves behind: an index that does not parse, a shard missing, or a
    shard cut short (TensorFlow's restore then fails with "Read less bytes than requested").
    """
    try:
        shards, _ = read_index(prefix)
        short = truncated_shards(prefix)
    except (UnsupportedIndex, OSError) as e:
        return f"its index {os.path.basename(prefix)}.index cannot be read ({e})"
    for shard in range(shards):
        path = shard_path(prefix, shard, shards)
        if not os.path.isfile(path):
            return f"its data file {os.path.basename(path)} is missing"
    if short:
        path, have, need = short[0]
        return f"{os.path.basename(path)} has {have} bytes, its index needs {need} (cut short)"
    return None


def data_bytes(prefix: str, only: str = "") -> int:
    """Bytes of the tensors the index places in data shards (those whose names start `only`)."""
    _, entries = read_index(prefix)
    return sum(e.size for e in entries if e.name.startswith(only))
