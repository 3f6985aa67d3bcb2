"""Relative positions: sinusoidal encoding of distances and the rel_shift that aligns them.

Axis legend: b batch, i query position, j key position (memory first, then the segment),
r relative-position row, n head, d head dim, D model width. klen = mlen + qlen.
"""
from __future__ import annotations

import numpy as np


def positional_embedding(pos_seq: np.ndarray, inv_freq: np.ndarray) -> np.ndarray:
    """[sin(pos * inv_freq) | cos(pos * inv_freq)], halves, not interleaved:
    (r,), (D/2,) -> (r, D)."""
    sinusoid = np.einsum("r,k->rk", pos_seq, inv_freq)
    return np.concatenate([np.sin(sinusoid), np.cos(sinusoid)], axis=-1)


def clamp_positions(pos_seq: np.ndarray, clamp_len: int | None, clamp: str) -> np.ndarray:
    """Clip distances: "symmetric" to [-c, c] when c > 0 (TF: clamp_len=-1 means none;
    transformers), "nonnegative" to [0, c] whenever c is given (keras-xlnet: negative distances,
    i.e. keys after the query in "bi", become 0). (r,) -> (r,)."""
    if clamp_len is None:
        return pos_seq
    c = pos_seq.dtype.type(clamp_len)
    if clamp == "symmetric":
        return np.clip(pos_seq, -c, c) if clamp_len > 0 else pos_seq
    if clamp == "nonnegative":
        return np.clip(pos_seq, pos_seq.dtype.type(0), c)
    raise ValueError(f"unknown clamp {clamp!r}; expected 'symmetric' or 'nonnegative'")


def relative_positional_encoding(qlen: int, klen: int, d_model: int, clamp_len: int | None,
                                 attn_type: str, bi_data: bool, bsz: int, clamp: str,
                                 dtype) -> np.ndarray:
    """Encoding of the distances klen, klen-1, ..., -qlen+1 ("bi") or klen, ..., 0 ("uni"):
    -> (b, r, D) with r = klen + qlen ("bi") or klen + 1 ("uni"); row r is distance klen - r.

    bi_data: the first half of the batch gets these distances, the second half their negation
    (the backward direction of the bidirectional data pipeline); bsz must be even."""
    dtype = np.dtype(dtype)
    freq_seq = np.arange(0, d_model, 2.0, dtype=dtype)
    inv_freq = dtype.type(1.0) / dtype.type(10000.0) ** (freq_seq / dtype.type(d_model))
    if attn_type == "bi":
        beg, end = klen, -qlen
    elif attn_type == "uni":
        beg, end = klen, -1
    else:
        raise ValueError(f"unknown attn_type {attn_type!r}; expected 'bi' or 'uni'")
    fwd_pos_seq = clamp_positions(np.arange(beg, end, -1.0, dtype=dtype), clamp_len, clamp)
    fwd = positional_embedding(fwd_pos_seq, inv_freq)
    if not bi_data:
        return np.broadcast_to(fwd[None], (bsz,) + fwd.shape)
    if bsz % 2:
        raise ValueError(f"bi_data needs an even batch size (forward and backward halves), got "
                         f"batch size {bsz}")
    bwd_pos_seq = clamp_positions(np.arange(-beg, -end, 1.0, dtype=dtype), clamp_len, clamp)
    bwd = positional_embedding(bwd_pos_seq, inv_freq)
    half = bsz // 2
    return np.concatenate([np.broadcast_to(fwd[None], (half,) + fwd.shape),
                           np.broadcast_to(bwd[None], (half,) + bwd.shape)], axis=0)


def rel_shift(x: np.ndarray, klen: int) -> np.ndarray:
    """Align position scores with keys: (b, n, i, r) -> (b, n, i, klen).

    The original's reshape trick, kept exactly (also where keys are masked): view the (i, r)
    block as (r, i), drop its first row, view it as (i, r - 1), keep klen columns. Then
    out[i, j] = x[i, j + qlen - i] wherever 0 <= j + qlen - i < r, i.e. key j gets the row of
    distance (i + mlen) - j; elsewhere (masked keys in "uni") it reads on into row i + 1.

    In flat terms out[i, j] = flat[qlen + i * (r - 1) + j]: a strided view of x, built here
    without copying (the reshape of the sliced view would copy all of x)."""
    b, n, qlen, r = x.shape
    assert r > klen, f"{r} relative positions for {klen} keys: expected at least klen + 1"
    x = np.ascontiguousarray(x)
    flat = x.reshape(b, n, qlen * r)[:, :, qlen:]  # drop the first (r, i) row: a view
    step = x.strides[-1]
    return np.lib.stride_tricks.as_strided(flat, shape=(b, n, qlen, klen),
                                           strides=(x.strides[0], x.strides[1], (r - 1) * step, step),
                                           writeable=False)
