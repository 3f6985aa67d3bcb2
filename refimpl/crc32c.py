"""CRC-32C (Castagnoli), as TensorFlow checkpoints use it, with NumPy alone.

TensorFlow stores a *masked* CRC-32C of every tensor's bytes and of every index block.
`value(data)` is the plain CRC-32C (value(b"123456789") == 0xE3069283); `mask` is
LevelDB's rotation-plus-constant that TensorFlow applies before storing it.

When the optional `google-crc32c` package is installed with its C extension, `value` uses
it (hardware CRC, ~7 GB/s here). Otherwise it uses `value_numpy`, a vectorised NumPy
version (no per-byte Python loop) built on the linearity of the CRC over GF(2):

* `raw(data)`, the CRC register after feeding `data` from a zero register, is linear in the
  data, so a chunk of n bytes is the XOR of one table lookup per byte position:
  raw(chunk) = XOR_k T_k[chunk[k]], where T_k[v] = raw(v followed by n-1-k zero bytes).
  Leading zero bytes do not change raw(), so the data is zero-padded at the front to whole
  chunks.
* Chunks combine with raw(A || B) = shift(raw(A), len(B)) ^ raw(B), where shift(x, s) is
  the register after feeding s zero bytes from x: a 32x32 bit matrix, applied to a vector
  of registers as four byte-table lookups. Chunks are combined pairwise, level by level.
* The standard CRC-32C is raw(data) ^ shift(0xFFFFFFFF, len(data)) ^ 0xFFFFFFFF.
"""
from __future__ import annotations

import functools

import numpy as np

try:  # optional C implementation; the NumPy path below is the fallback
    import google_crc32c as _google_crc32c

    HAVE_C = _google_crc32c.implementation == "c"
except ImportError:  # pragma: no cover - depends on the environment
    _google_crc32c = None
    HAVE_C = False

POLY = 0x82F63B78  # CRC-32C polynomial, bit-reversed
MASK_DELTA = 0xA282EAD8
CHUNK = 128  # bytes per chunk in the NumPy path (tables: CHUNK x 256 uint32 = 128 KiB)
BLOCK = 1 << 20  # bytes processed per NumPy step, bounds temporary memory to ~10 MiB


def mask(crc: int) -> int:
    """LevelDB/TensorFlow masking of a CRC before it is stored."""
    crc &= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


@functools.cache
def _byte_table() -> np.ndarray:
    """T[v] = raw register after feeding the single byte v: (256,) uint32."""
    crc = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        crc = np.where(crc & 1, (crc >> 1) ^ np.uint32(POLY), crc >> 1).astype(np.uint32)
    return crc


def _apply_columns(columns: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Apply the linear map whose image of bit i is columns[i] to registers x: (n,) -> (n,).

    Bits of x above len(columns) must be zero."""
    out = np.zeros(x.shape, dtype=np.uint32)
    for bit in range(len(columns)):
        out ^= np.where((x >> np.uint32(bit)) & 1, columns[bit], np.uint32(0))
    return out


def _zero_byte_columns(register: np.ndarray) -> np.ndarray:
    """One zero byte fed into each register: (n,) -> (n,)."""
    table = _byte_table()
    return table[register & 0xFF] ^ (register >> np.uint32(8))


@functools.cache
def _shift_columns(nbytes: int) -> np.ndarray:
    """Columns (32,) of shift(., nbytes), built by repeated squaring of the one-byte shift."""
    identity = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
    result = identity.copy()
    power = _zero_byte_columns(identity)  # shift by 1 byte
    n = nbytes
    while n:
        if n & 1:
            result = _apply_columns(power, result)
        power = _apply_columns(power, power)
        n >>= 1
    return result


@functools.cache
def _shift_byte_tables(nbytes: int) -> np.ndarray:
    """(4, 256) tables so that shift(x, nbytes) = XOR_j tables[j][byte j of x]."""
    columns = _shift_columns(nbytes)
    values = np.arange(256, dtype=np.uint32)
    return np.stack([_apply_columns(columns[8 * j: 8 * j + 8], values) for j in range(4)])


def _shift(x: np.ndarray, nbytes: int) -> np.ndarray:
    """shift(x, nbytes) for a vector of registers: (n,) uint32 -> (n,) uint32."""
    if nbytes == 0:
        return x
    t = _shift_byte_tables(nbytes)
    return (t[0][x & 0xFF] ^ t[1][(x >> np.uint32(8)) & 0xFF]
            ^ t[2][(x >> np.uint32(16)) & 0xFF] ^ t[3][x >> np.uint32(24)])


@functools.cache
def _position_tables() -> np.ndarray:
    """Flattened (CHUNK * 256,) table: entry k*256 + v = raw(v then CHUNK-1-k zero bytes)."""
    rows = [_shift(_byte_table(), CHUNK - 1 - k) for k in range(CHUNK)]
    return np.concatenate(rows)


@functools.cache
def _position_offsets() -> np.ndarray:
    return (np.arange(CHUNK, dtype=np.uint16) * 256)[None, :]


def _raw_block(block: np.ndarray) -> int:
    """raw() of a uint8 block of any length, vectorised: (n,) uint8 -> int."""
    pad = (-block.size) % CHUNK
    if pad:
        block = np.concatenate([np.zeros(pad, np.uint8), block])
    rows = block.reshape(-1, CHUNK)
    regs = np.bitwise_xor.reduce(_position_tables()[rows + _position_offsets()], axis=1)
    span = CHUNK  # bytes covered by each register in regs
    while regs.size > 1:
        if regs.size % 2:  # a leading zero chunk changes nothing
            regs = np.concatenate([np.zeros(1, np.uint32), regs])
        regs = _shift(regs[0::2], span) ^ regs[1::2]
        span *= 2
    return int(regs[0])


def _as_bytes(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def extend_numpy(crc: int, data) -> int:
    """CRC-32C of (previous data whose CRC is `crc`) followed by `data`, NumPy only."""
    buf = _as_bytes(data)
    reg = np.array([crc ^ 0xFFFFFFFF], dtype=np.uint32)
    for start in range(0, buf.size, BLOCK):
        block = buf[start:start + BLOCK]
        reg = _shift(reg, block.size) ^ np.uint32(_raw_block(block))
    return int(reg[0]) ^ 0xFFFFFFFF


def value_numpy(data) -> int:
    return extend_numpy(0, data)


def extend(crc: int, data) -> int:
    """CRC-32C continued over `data` (bytes-like or ndarray); C-accelerated when available."""
    if HAVE_C:
        buf = _as_bytes(data)
        if buf.flags.writeable:
            buf = buf.view()
            buf.flags.writeable = False  # google_crc32c accepts read-only buffers only
        return _google_crc32c.extend(crc, buf)
    return extend_numpy(crc, data)


def value(data) -> int:
    return extend(0, data)
