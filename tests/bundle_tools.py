"""Rewrite checkpoints in ways TensorFlow cannot be asked to: big-endian bundles, Snappy-flagged
index blocks, unknown dtypes. A minimal LevelDB table writer (one data block, no key prefix
compression, every entry a restart point) and protobuf encoders for the bundle protos.
Test-only; the reader under test is refimpl.checkpoint.
"""
from __future__ import annotations

import dataclasses
import struct

import numpy as np

from refimpl import checkpoint as ckpt
from refimpl import crc32c


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        return key + _varint(payload)
    if wire == 5:
        return key + struct.pack("<I", payload)
    return key + _varint(len(payload)) + payload


def encode_header(header: ckpt.Header) -> bytes:
    out = _field(1, 0, header.num_shards)
    if header.big_endian:
        out += _field(2, 0, 1)
    return out + _field(3, 2, _field(1, 0, 1))  # version { producer: 1 }


def encode_entry(entry: ckpt.Entry) -> bytes:
    shape = b"".join(_field(2, 2, _field(1, 0, d) if d else b"") for d in entry.shape)
    out = _field(1, 0, entry.dtype) + _field(2, 2, shape)
    for name, number in (("shard_id", 3), ("offset", 4), ("size", 5)):
        if getattr(entry, name):
            out += _field(number, 0, getattr(entry, name))
    out += _field(6, 5, entry.crc32c)
    for extents in entry.slices:
        body = b""
        for start, length in extents:
            ext = (_field(1, 0, start) if start else b"") + (_field(2, 0, length) if length >= 0 else b"")
            body += _field(1, 2, ext)
        out += _field(7, 2, body)
    return out


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    out, restarts = bytearray(), []
    for key, value in entries:
        restarts.append(len(out))
        out += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    for r in restarts or [0]:
        out += struct.pack("<I", r)
    return bytes(out + struct.pack("<I", len(restarts or [0])))


def write_table(path: str, entries: list[tuple[bytes, bytes]], compression: int = 0) -> None:
    """A valid table of the sorted (key, value) pairs; `compression` is only written as the
    type byte of the data block (to provoke the reader), the contents stay uncompressed."""
    data = bytearray()

    def add_block(contents: bytes, ctype: int = 0) -> tuple[int, int]:
        handle = (len(data), len(contents))
        crc = crc32c.mask(crc32c.extend(crc32c.value(contents), bytes([ctype])))
        data.extend(contents + bytes([ctype]) + struct.pack("<I", crc))
        return handle

    data_handle = add_block(_block(entries), compression)
    meta_handle = add_block(_block([]))
    index_handle = add_block(_block([(entries[-1][0], _varint(data_handle[0]) + _varint(data_handle[1]))]))
    footer = _varint(meta_handle[0]) + _varint(meta_handle[1]) + _varint(index_handle[0]) + _varint(index_handle[1])
    footer += b"\0" * (40 - len(footer)) + struct.pack("<Q", ckpt.TABLE_MAGIC)
    with open(path, "wb") as f:
        f.write(bytes(data) + footer)


def read_raw(prefix: str) -> tuple[ckpt.Header, list[tuple[bytes, ckpt.Entry]]]:
    table = ckpt._read_table(prefix + ".index", verify=True)
    header = ckpt._parse_header(table[0][1], "header")
    return header, [(k, ckpt._parse_entry(v, repr(k))) for k, v in table[1:]]


def rewrite_index(prefix: str, out_prefix: str, header: ckpt.Header,
                  entries: list[tuple[bytes, ckpt.Entry]], compression: int = 0) -> None:
    rows = [(b"", encode_header(header))] + [(k, encode_entry(e)) for k, e in entries]
    write_table(out_prefix + ".index", rows, compression)


def to_big_endian(prefix: str, out_prefix: str) -> None:
    """Copy a little-endian single-shard bundle as the big-endian bundle a big-endian machine
    would have written: numeric data byte-swapped per element (per component for complex),
    string lengths checksum swapped, crc32c recomputed over the stored bytes."""
    header, entries = read_raw(prefix)
    assert header.num_shards == 1 and not header.big_endian
    with open(f"{prefix}.data-00000-of-00001", "rb") as f:
        data = bytearray(f.read())
    new_entries = []
    for key, entry in entries:
        dtype_name, stored = ckpt.DTYPES.get(entry.dtype, (None, None))
        chunk = bytes(data[entry.offset:entry.offset + entry.size])
        if entry.slices or not entry.size:
            new_entries.append((key, entry))
            continue
        if entry.dtype == ckpt.DT_STRING:
            count = int(np.prod(entry.shape))
            pos = 0
            lengths = []
            for _ in range(count):
                n, pos = ckpt._varint(chunk, pos, "test")
                lengths.append(n)
            crc = 0
            for n in lengths:
                crc = crc32c.extend(crc, struct.pack(">I", n))
            checksum = struct.pack(">I", crc32c.mask(crc))
            chunk = chunk[:pos] + checksum + chunk[pos + 4:]
            crc = crc32c.extend(crc32c.extend(crc, checksum), chunk[pos + 4:])
        else:
            base = np.dtype(stored.str.replace("c16", "f8").replace("c8", "f4"))
            chunk = np.frombuffer(chunk, base).byteswap().tobytes()
            crc = crc32c.value(chunk)
        data[entry.offset:entry.offset + entry.size] = chunk
        new_entries.append((key, dataclasses.replace(entry, crc32c=crc32c.mask(crc))))
    with open(f"{out_prefix}.data-00000-of-00001", "wb") as f:
        f.write(bytes(data))
    rewrite_index(prefix, out_prefix, dataclasses.replace(header, big_endian=True), new_entries)
