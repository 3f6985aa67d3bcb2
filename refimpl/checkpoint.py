"""Read TensorFlow checkpoints (the V2 "tensor bundle" format) with NumPy alone.

A checkpoint with prefix P is
  P.index                      a LevelDB-style sorted table: tensor name -> BundleEntryProto
  P.data-00000-of-0000N ...    the raw tensor bytes, one file per shard

The index table (TensorFlow's core/lib/io/table_builder.cc):
  [data block]... [metaindex block] [index block] [footer: 48 bytes]
  footer = metaindex handle, index handle (varint64 offset, size each), zero padding to
           40 bytes, then the 8-byte magic 0xdb4775248b80fb57 (little endian)
  block  = entries, restart offsets (uint32 each), restart count (uint32), then a 5-byte
           trailer: compression type (0 = none, 1 = Snappy) + masked crc32c(contents + type)
  entry  = varint shared, varint non_shared, varint value_len, key[shared:] bytes, value
The index block maps the last key of each data block to that block's handle. The empty key
holds the BundleHeaderProto; every other key is a tensor name (or the encoded key of one slice
of a partitioned variable) with a BundleEntryProto value. Protobuf messages are decoded by the
small wire-format reader below; field numbers come from tensor_bundle.proto.

Everything unreadable raises CheckpointError (a ValueError) naming the file and the tensor.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import struct

import numpy as np

from refimpl import crc32c

__all__ = ["CheckpointError", "list_variables", "load_checkpoint", "resolve_prefix"]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5


class CheckpointError(ValueError):
    """Raised for every missing, unreadable, corrupt or unsupported checkpoint file."""


# --- dtypes (tensorflow/core/framework/types.proto) ---------------------------------------
# enum value -> (name as TensorFlow prints it, numpy dtype of the stored little-endian bytes)
DTYPES = {
    1: ("float32", np.dtype("<f4")),
    2: ("float64", np.dtype("<f8")),
    3: ("int32", np.dtype("<i4")),
    4: ("uint8", np.dtype("u1")),
    5: ("int16", np.dtype("<i2")),
    6: ("int8", np.dtype("i1")),
    7: ("string", None),
    8: ("complex64", np.dtype("<c8")),
    9: ("int64", np.dtype("<i8")),
    10: ("bool", np.dtype("?")),
    14: ("bfloat16", np.dtype("<u2")),  # widened to float32 exactly after reading
    17: ("uint16", np.dtype("<u2")),
    18: ("complex128", np.dtype("<c16")),
    19: ("float16", np.dtype("<f2")),
    22: ("uint32", np.dtype("<u4")),
    23: ("uint64", np.dtype("<u8")),
}
DT_STRING = 7
DT_BFLOAT16 = 14


# --- protobuf wire format ------------------------------------------------------------------
def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    """Decode a base-128 varint at buf[pos]: -> (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError(f"{where}: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError(f"{where}: varint longer than 10 bytes")


def _fields(buf: bytes, where: str):
    """Yield (field number, wire type, value) of a serialized protobuf message.

    value: int for varint (0) and fixed32/64 (5/1), bytes for length-delimited (2)."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, where)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise CheckpointError(f"{where}: truncated fixed64 field {field}")
            (value,), pos = struct.unpack_from("<Q", buf, pos), pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos, where)
            if pos + size > len(buf):
                raise CheckpointError(f"{where}: field {field} runs past the end of its message")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            if pos + 4 > len(buf):
                raise CheckpointError(f"{where}: truncated fixed32 field {field}")
            (value,), pos = struct.unpack_from("<I", buf, pos), pos + 4
        else:
            raise CheckpointError(f"{where}: unsupported protobuf wire type {wire} (field {field})")
        yield field, wire, value


def _int64(value: int) -> int:
    """Reinterpret a varint as a signed int64 (protobuf int64 encoding)."""
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclasses.dataclass(frozen=True)
class Header:
    """BundleHeaderProto: num_shards = 1, endianness = 2 (0 little, 1 big), version = 3."""
    num_shards: int = 1
    big_endian: bool = False


@dataclasses.dataclass(frozen=True)
class Entry:
    """BundleEntryProto: dtype 1, shape 2, shard_id 3, offset 4, size 5, crc32c 6, slices 7."""
    dtype: int = 0
    shape: tuple[int, ...] = ()
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0
    slices: tuple[tuple[tuple[int, int], ...], ...] = ()  # per slice: (start, length|-1) per dim


def _parse_header(buf: bytes, where: str) -> Header:
    num_shards, big = 1, False
    for field, wire, value in _fields(buf, where):
        if field == 1 and wire == 0:
            num_shards = _int64(value)
        elif field == 2 and wire == 0:
            big = value == 1
    if num_shards < 1:
        raise CheckpointError(f"{where}: header says num_shards={num_shards}, expected >= 1")
    return Header(num_shards=num_shards, big_endian=big)


def _parse_shape(buf: bytes, where: str) -> tuple[int, ...]:
    """TensorShapeProto: dim = 2 (Dim: size = 1), unknown_rank = 3."""
    dims = []
    for field, wire, value in _fields(buf, where):
        if field == 2 and wire == 2:
            size = 0
            for f, w, v in _fields(value, where):
                if f == 1 and w == 0:
                    size = _int64(v)
            if size < 0:
                raise CheckpointError(f"{where}: dimension of unknown size {size}")
            dims.append(size)
        elif field == 3 and wire == 0 and value:
            raise CheckpointError(f"{where}: shape of unknown rank")
    return tuple(dims)


def _parse_slice(buf: bytes, where: str) -> tuple[tuple[int, int], ...]:
    """TensorSliceProto: extent = 1 (Extent: start = 1, length = 2; no length = whole dim)."""
    extents = []
    for field, wire, value in _fields(buf, where):
        if field == 1 and wire == 2:
            start, length = 0, -1
            for f, w, v in _fields(value, where):
                if f == 1 and w == 0:
                    start = _int64(v)
                elif f == 2 and w == 0:
                    length = _int64(v)
            extents.append((start, length))
    return tuple(extents)


def _parse_entry(buf: bytes, where: str) -> Entry:
    values: dict = {"slices": []}
    for field, wire, value in _fields(buf, where):
        if field == 1 and wire == 0:
            values["dtype"] = value
        elif field == 2 and wire == 2:
            values["shape"] = _parse_shape(value, where)
        elif field == 3 and wire == 0:
            values["shard_id"] = _int64(value)
        elif field == 4 and wire == 0:
            values["offset"] = _int64(value)
        elif field == 5 and wire == 0:
            values["size"] = _int64(value)
        elif field == 6 and wire == 5:
            values["crc32c"] = value
        elif field == 7 and wire == 2:
            values["slices"].append(_parse_slice(value, where))
    values["slices"] = tuple(values["slices"])
    return Entry(**values)


# --- the index table -----------------------------------------------------------------------
def _block_handle(buf: bytes, pos: int, where: str) -> tuple[tuple[int, int], int]:
    offset, pos = _varint(buf, pos, where)
    size, pos = _varint(buf, pos, where)
    return (offset, size), pos


def _read_block(data: bytes, handle: tuple[int, int], where: str, verify: bool) -> bytes:
    """Contents of the block at handle (offset, size), its trailer checked."""
    offset, size = handle
    end = offset + size + BLOCK_TRAILER_SIZE
    if end > len(data):
        raise CheckpointError(f"{where}: block at offset {offset} (size {size}) runs past the end "
                              f"of the file ({len(data)} bytes): the file is truncated or corrupt")
    contents = data[offset:offset + size]
    compression = data[offset + size]
    if verify:
        (stored,) = struct.unpack_from("<I", data, offset + size + 1)
        actual = crc32c.mask(crc32c.extend(crc32c.value(contents), bytes([compression])))
        if stored != actual:
            raise CheckpointError(f"{where}: crc32c mismatch in the index block at offset {offset} "
                                  f"(stored {stored:#010x}, computed {actual:#010x}): corrupt file")
    if compression == 1:
        raise CheckpointError(f"{where}: index block at offset {offset} is Snappy-compressed, "
                              "which only very old TensorFlow wrote and refimpl does not support; "
                              "re-save the checkpoint with a current TensorFlow")
    if compression != 0:
        raise CheckpointError(f"{where}: unknown block compression type {compression} at offset "
                              f"{offset}: corrupt file")
    return contents


def _block_entries(block: bytes, where: str):
    """Yield (key, value) of a table block, undoing the prefix compression of keys."""
    if len(block) < 4:
        raise CheckpointError(f"{where}: table block of {len(block)} bytes is too short")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise CheckpointError(f"{where}: table block claims {num_restarts} restart points, "
                              f"more than its {len(block)} bytes hold")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos, where)
        non_shared, pos = _varint(block, pos, where)
        value_len, pos = _varint(block, pos, where)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise CheckpointError(f"{where}: corrupt table entry at block offset {pos}")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + value_len]
        pos += value_len


def _read_table(index_path: str, verify: bool) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of the .index table, in key order."""
    try:
        with open(index_path, "rb") as f:
            data = f.read()  # the index is small: names and entry protos only
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint index {index_path}: {e.strerror}") from None
    if len(data) < FOOTER_SIZE:
        raise CheckpointError(f"{index_path}: {len(data)} bytes, too short for a table footer "
                              f"({FOOTER_SIZE} bytes): the file is truncated or not a checkpoint index")
    footer = data[-FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)
    if magic != TABLE_MAGIC:
        raise CheckpointError(f"{index_path}: bad table magic {magic:#018x} (expected "
                              f"{TABLE_MAGIC:#018x}): not a TensorFlow checkpoint index, or corrupt")
    _metaindex, pos = _block_handle(footer, 0, index_path)
    index_handle, _ = _block_handle(footer, pos, index_path)
    entries = []
    index_block = _read_block(data, index_handle, index_path, verify)
    for _last_key, handle_bytes in _block_entries(index_block, index_path):
        handle, _ = _block_handle(handle_bytes, 0, index_path)
        entries.extend(_block_entries(_read_block(data, handle, index_path, verify), index_path))
    keys = [k for k, _ in entries]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise CheckpointError(f"{index_path}: table keys are not strictly sorted: corrupt index")
    return entries


# --- keys of partitioned-variable slices (tensor_bundle.cc EncodeTensorNameSlice) -----------
def _ordered_string(s: bytes) -> bytes:
    """OrderedCode::WriteString: escape 0x00 and 0xff, terminate with 0x00 0x01."""
    return s.replace(b"\xff", b"\xff\x00").replace(b"\x00", b"\x00\xff") + b"\x00\x01"


def _ordered_unsigned(n: int) -> bytes:
    """OrderedCode::WriteNumIncreasing: length byte then big-endian bytes."""
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([len(body)]) + body


_SIGNED_HEADER = [(0, 0), (0x80, 0), (0xC0, 0), (0xE0, 0), (0xF0, 0), (0xF8, 0), (0xFC, 0),
                  (0xFE, 0), (0xFF, 0), (0xFF, 0x80), (0xFF, 0xC0)]


def _ordered_signed(val: int) -> bytes:
    """OrderedCode::WriteSignedNumIncreasing."""
    x = ~val if val < 0 else val
    if x < 64:
        return bytes([(_SIGNED_HEADER[1][0] ^ val) & 0xFF])
    length = (x.bit_length()) // 7 + 1  # kBitsToLength[bits] == bits // 7 + 1
    buf = bytearray((b"\xff\xff" if val < 0 else b"\x00\x00") + struct.pack(">q", val))
    begin = len(buf) - length
    buf[begin] ^= _SIGNED_HEADER[length][0]
    buf[begin + 1] ^= _SIGNED_HEADER[length][1]
    return bytes(buf[begin:])


def slice_key(name: bytes, extents: tuple[tuple[int, int], ...]) -> bytes:
    """The table key under which one saved slice of variable `name` is stored."""
    key = _ordered_unsigned(0) + _ordered_string(name) + _ordered_unsigned(len(extents))
    for start, length in extents:
        key += _ordered_signed(start) + _ordered_signed(length)
    return key


# --- opening a checkpoint ------------------------------------------------------------------
def _is_v1_table(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < FOOTER_SIZE:
                return False
            f.seek(-8, os.SEEK_END)
            return struct.unpack("<Q", f.read(8))[0] == TABLE_MAGIC
    except OSError:
        return False


def _v1_error(path: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is a checkpoint in the legacy V1 format (one table file, no .index), which "
        "refimpl does not read; re-save it with a current TensorFlow to convert it to V2: "
        "tf.compat.v1.train.Saver(write_version=tf.compat.v1.train.SaverDef.V2)")


def _prefix_from_state_file(directory: str) -> str | None:
    """model_checkpoint_path from the directory's `checkpoint` file (text proto), if any."""
    state = os.path.join(directory, "checkpoint")
    if not os.path.isfile(state):
        return None
    with open(state, encoding="utf-8", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == "model_checkpoint_path":
                path = value.strip().strip('"')
                if not os.path.isabs(path):
                    path = os.path.join(directory, path)
                if os.path.exists(path + ".index"):
                    return path
                # Often an absolute path on the machine that trained the model.
                local = os.path.join(directory, os.path.basename(path.replace("\\", "/")))
                if os.path.exists(local + ".index") or _is_v1_table(local):
                    return local
                raise CheckpointError(
                    f"{state} names model_checkpoint_path {path!r}, but neither {path}.index "
                    f"nor {local}.index exists")
    return None


def resolve_prefix(path: str | os.PathLike) -> str:
    """Checkpoint prefix for `path`: a prefix, a .index file, or a directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        prefix = _prefix_from_state_file(path)
        if prefix is not None:
            return prefix
        indexes = sorted(glob.glob(os.path.join(glob.escape(path), "*.index")))
        if len(indexes) == 1:
            return indexes[0][:-len(".index")]
        if not indexes:
            v1 = [p for p in sorted(glob.glob(os.path.join(glob.escape(path), "*")))
                  if os.path.isfile(p) and _is_v1_table(p)]
            if v1:
                raise _v1_error(v1[0])
            raise CheckpointError(f"{path}: directory holds no `checkpoint` state file and no "
                                  "*.index file: no TensorFlow checkpoint here")
        names = ", ".join(os.path.basename(p) for p in indexes)
        raise CheckpointError(f"{path}: directory holds several checkpoints ({names}) and no "
                              "`checkpoint` state file; pass the prefix of the one you want")
    if path.endswith(".index") and os.path.isfile(path):
        return path[:-len(".index")]
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isfile(path) and _is_v1_table(path):
        raise _v1_error(path)
    v1_shards = sorted(glob.glob(glob.escape(path) + "-?????-of-?????"))
    if v1_shards and _is_v1_table(v1_shards[0]):
        raise _v1_error(v1_shards[0])
    raise CheckpointError(f"checkpoint index {path}.index does not exist (path {path!r} is "
                          "neither a checkpoint prefix nor a directory holding one)")


@dataclasses.dataclass
class _Bundle:
    prefix: str
    header: Header
    entries: dict[str, Entry]  # variable name -> entry, slice entries excluded
    slice_entries: dict[bytes, Entry]  # encoded slice key -> entry

    def data_path(self, shard: int) -> str:
        return f"{self.prefix}.data-{shard:05d}-of-{self.header.num_shards:05d}"


def _open(path, verify: bool) -> _Bundle:
    prefix = resolve_prefix(path)
    index_path = prefix + ".index"
    table = _read_table(index_path, verify)
    if not table or table[0][0] != b"":
        raise CheckpointError(f"{index_path}: no bundle header (empty key): not a V2 checkpoint "
                              "index, or corrupt")
    header = _parse_header(table[0][1], f"{index_path} (header)")
    raw = {}
    for key, value in table[1:]:
        raw[key] = _parse_entry(value, f"{index_path} (entry {key!r})")
    slice_keys = set()
    for key, entry in raw.items():
        for extents in entry.slices:
            slice_keys.add(slice_key(key, extents))
    entries, slices = {}, {}
    for key, entry in raw.items():
        if key in slice_keys:
            slices[key] = entry
            continue
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{index_path}: tensor name {key!r} is not UTF-8: corrupt index") from None
        if entry.dtype not in DTYPES:
            raise CheckpointError(f"{index_path}: tensor {name!r} has unsupported or unknown dtype "
                                  f"enum {entry.dtype} (supported: "
                                  f"{', '.join(n for n, _ in DTYPES.values())})")
        entries[name] = entry
    return _Bundle(prefix=prefix, header=header, entries=entries, slice_entries=slices)


def list_variables(path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (dtype name, shape)} of every variable, as tf.train.list_variables names them.

    Partitioned variables appear once, under their full name and shape."""
    bundle = _open(path, verify=False)
    return {name: (DTYPES[e.dtype][0], e.shape) for name, e in sorted(bundle.entries.items())}


# --- reading tensor data -------------------------------------------------------------------
class _Shards:
    """Open data files of one bundle, each opened once; sizes known up front."""

    def __init__(self, bundle: _Bundle):
        self.bundle = bundle
        self.files: dict[int, tuple[object, int]] = {}

    def get(self, shard: int, name: str):
        if not 0 <= shard < self.bundle.header.num_shards:
            raise CheckpointError(f"{self.bundle.prefix}.index: tensor {name!r} is in shard {shard}, "
                                  f"but the header says there are {self.bundle.header.num_shards}")
        if shard not in self.files:
            path = self.bundle.data_path(shard)
            try:
                f = open(path, "rb")
            except OSError as e:
                raise CheckpointError(f"missing or unreadable data file {path} (needed for tensor "
                                      f"{name!r}): {e.strerror}") from None
            self.files[shard] = (f, os.fstat(f.fileno()).st_size)
        return self.files[shard]

    def close(self):
        for f, _ in self.files.values():
            f.close()


def _read_bytes(shards: _Shards, entry: Entry, name: str, out: np.ndarray, verify: bool):
    """Fill `out` (contiguous) with the entry's bytes, straight from the file."""
    f, file_size = shards.get(entry.shard_id, name)
    path = shards.bundle.data_path(entry.shard_id)
    if entry.offset < 0 or entry.size < 0 or entry.offset + entry.size > file_size:
        raise CheckpointError(f"{path}: tensor {name!r} at offset {entry.offset} with {entry.size} "
                              f"bytes runs past the end of the file ({file_size} bytes): the data "
                              "file is truncated or the index is corrupt")
    view = memoryview(out.reshape(-1).view(np.uint8))
    f.seek(entry.offset)
    got = f.readinto(view)
    if got != entry.size:
        raise CheckpointError(f"{path}: tensor {name!r}: read {got} of {entry.size} bytes: truncated file")
    if verify:
        actual = crc32c.mask(crc32c.value(out))
        if actual != entry.crc32c:
            raise CheckpointError(f"{path}: crc32c mismatch for tensor {name!r} (stored "
                                  f"{entry.crc32c:#010x}, computed {actual:#010x}): corrupt data")


def _read_strings(shards: _Shards, entry: Entry, name: str, count: int, big: bool,
                  verify: bool) -> np.ndarray:
    """String tensor (tensor_bundle.cc WriteStringTensor): varint64 lengths, a uint32 masked
    checksum of the lengths, then the bytes. The entry's crc32c covers each length as a
    uint32 (uint64 past 2**32 - 1), then the checksum's 4 bytes, then the string bytes."""
    buf = np.empty(entry.size, np.uint8)
    _read_bytes(shards, entry, name, buf, verify=False)
    data = buf.tobytes()
    where = f"{shards.bundle.data_path(entry.shard_id)}: tensor {name!r}"
    pos, lengths = 0, []
    for _ in range(count):
        n, pos = _varint(data, pos, where)
        lengths.append(n)
    if pos + 4 > len(data):
        raise CheckpointError(f"{where}: string tensor truncated before its length checksum")
    order = ">" if big else "<"
    checksum = data[pos:pos + 4]
    pos += 4
    if pos + sum(lengths) != len(data):
        raise CheckpointError(f"{where}: string lengths add up to {pos + sum(lengths)} bytes, but "
                              f"the entry holds {len(data)}: corrupt data")
    if verify:
        crc = 0
        for n in lengths:
            crc = crc32c.extend(crc, struct.pack(order + ("I" if n <= 0xFFFFFFFF else "Q"), n))
        if struct.unpack(order + "I", checksum)[0] != crc32c.mask(crc):
            raise CheckpointError(f"{where}: crc32c mismatch in the string lengths: corrupt data")
        crc = crc32c.extend(crc32c.extend(crc, checksum), data[pos:])
        if crc32c.mask(crc) != entry.crc32c:
            raise CheckpointError(f"{where}: crc32c mismatch (stored {entry.crc32c:#010x}, "
                                  f"computed {crc32c.mask(crc):#010x}): corrupt data")
    out = np.empty(count, dtype=object)
    for i, n in enumerate(lengths):
        out[i] = data[pos:pos + n]
        pos += n
    return out


def _read_entry(shards: _Shards, entry: Entry, name: str, verify: bool) -> np.ndarray:
    dtype_name, stored = DTYPES[entry.dtype]
    count = int(np.prod(entry.shape, dtype=np.int64))
    big = shards.bundle.header.big_endian
    if entry.dtype == DT_STRING:
        return _read_strings(shards, entry, name, count, big, verify).reshape(entry.shape)
    if count * stored.itemsize != entry.size:
        raise CheckpointError(f"{shards.bundle.prefix}.index: tensor {name!r} ({dtype_name}, shape "
                              f"{entry.shape}) needs {count * stored.itemsize} bytes, but the "
                              f"entry says {entry.size}: corrupt index")
    if big:
        stored = stored.newbyteorder(">")
    out = np.empty(entry.shape, dtype=stored)
    _read_bytes(shards, entry, name, out, verify)
    if big:
        out = out.astype(out.dtype.newbyteorder("="))
    if entry.dtype == DT_BFLOAT16:  # bfloat16 is the top half of a float32: exact widening
        out = (out.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return out


def _assemble_slices(bundle: _Bundle, shards: _Shards, entry: Entry, name: str,
                     verify: bool) -> np.ndarray:
    """A partitioned variable: read each saved slice into its place in the full tensor."""
    dtype_name, stored = DTYPES[entry.dtype]
    full = None
    covered = np.zeros(entry.shape, dtype=bool)
    for extents in entry.slices:
        key = slice_key(name.encode("utf-8"), extents)
        if key not in bundle.slice_entries:
            raise CheckpointError(f"{bundle.prefix}.index: slice {extents} of partitioned tensor "
                                  f"{name!r} is listed but has no entry: corrupt index")
        if len(extents) != len(entry.shape):
            raise CheckpointError(f"{bundle.prefix}.index: slice {extents} of {name!r} does not "
                                  f"match its rank {len(entry.shape)}")
        index = tuple(slice(None) if length < 0 else slice(start, start + length)
                      for start, length in extents)
        part_entry = dataclasses.replace(bundle.slice_entries[key], dtype=entry.dtype)
        part = _read_entry(shards, part_entry, f"{name} slice {extents}", verify)
        if full is None:
            full = np.empty(entry.shape, dtype=part.dtype)
        if covered[index].shape != part.shape:
            raise CheckpointError(f"{bundle.prefix}.index: slice {extents} of {name!r} has shape "
                                  f"{part.shape}, expected {covered[index].shape}")
        full[index] = part
        covered[index] = True
    if full is None or not covered.all():
        raise CheckpointError(f"{bundle.prefix}.index: the saved slices of partitioned tensor "
                              f"{name!r} do not cover its shape {entry.shape}")
    return full


def load_checkpoint(path, verify: bool = True, names=None, float_dtype=None) -> dict[str, np.ndarray]:
    """{name: ndarray} of every variable (or only of `names`); bfloat16 widened to float32,
    strings as bytes objects. float_dtype: floating-point tensors are converted to it as each
    is read (the stored copy is dropped at once, so the peak memory is the converted weights
    plus one tensor); None keeps the stored dtype.

    verify=True checks the masked crc32c of every tensor read and of every index block.
    A name in `names` that the checkpoint lacks is a CheckpointError."""
    bundle = _open(path, verify)
    wanted = bundle.entries
    if names is not None:
        unknown = [n for n in names if n not in bundle.entries]
        if unknown:
            raise CheckpointError(f"{bundle.prefix}: no variable {', '.join(map(repr, unknown))}")
        wanted = {n: bundle.entries[n] for n in names}
    shards = _Shards(bundle)
    try:
        out = {}
        for name, entry in sorted(wanted.items(), key=lambda kv: (kv[1].shard_id, kv[1].offset)):
            if entry.slices:
                value = _assemble_slices(bundle, shards, entry, name, verify)
            else:
                value = _read_entry(shards, entry, name, verify)
            if float_dtype is not None and value.dtype.kind == "f":
                value = value.astype(float_dtype, copy=False)
            out[name] = value
    finally:
        shards.close()
    return dict(sorted(out.items()))
