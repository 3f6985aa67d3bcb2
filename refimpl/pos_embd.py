"""Where BERT's position embedding comes from, as plain functions.

google-research/bert: `bert/embeddings/position_embeddings` is a trainable table of
[max_position_embeddings, width]; `embedding_postprocessor` slices its first L rows (after
asserting L <= max_position_embeddings) and adds them to the token + token-type embeddings.
keras-bert does the same with keras-pos-embd's `PositionEmbedding` in "add" mode, whose table is
the checkpoint's cut to the model's seq_len. The other keras-pos-embd modes, and its sinusoidal
sibling `TrigPosEmbedding`, are here too, each a function of its inputs and table:

| mode   | PositionEmbedding (trainable table W)                  | TrigPosEmbedding (no weights)        |
|--------|--------------------------------------------------------|--------------------------------------|
| expand | W[clip(x, -n, n) + n], W of [2n+1, D]; x = positions   | sinusoid of the positions x          |
| add    | inputs + W[:L], W of [n, D]                            | inputs + sinusoid of 0..L-1          |
| concat | [inputs, W[:L]] on the last axis                       | [inputs, sinusoid of 0..L-1]         |

Axes: B batch, L sequence length, D embedding width. n is the layer's input_dim.
"""
from __future__ import annotations

import numpy as np

MODES = ("expand", "add", "concat")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown position embedding mode {mode!r}; expected one of {', '.join(MODES)}")


def position_embedding(inputs: np.ndarray, table: np.ndarray, mode: str = "add",
                       mask_zero=False) -> tuple[np.ndarray, np.ndarray | None]:
    """keras-pos-embd PositionEmbedding: -> (output, mask or None).

    expand: inputs (...) int positions, table (2n+1, D) -> (..., D). Positions may be negative
            (relative positions); they are clipped to [-n, n] and shifted by n. When mask_zero
            is set the mask is `inputs != mask_zero`, compared as a VALUE as Keras does (so
            mask_zero=True masks position 1, not 0).
    add:    inputs (B, L, D), table (n, D) with L <= n -> inputs + table[:L]   (B, L, D)
    concat: inputs (B, L, E), table (n, D) with L <= n -> [inputs, table[:L]] (B, L, E + D)
    In add and concat modes the mask is None (Keras passes the incoming mask through)."""
    _check_mode(mode)
    table = np.asarray(table)
    if table.ndim != 2:
        raise ValueError(f"position table must be 2-D (rows, width), got shape {table.shape}")
    if mode == "expand":
        inputs = np.asarray(inputs)
        if inputs.size and not np.issubdtype(inputs.dtype, np.integer):
            raise ValueError(f"expand mode takes integer positions, got dtype {inputs.dtype}")
        if table.shape[0] % 2 != 1:
            raise ValueError(f"expand mode needs a table of 2*input_dim+1 rows, got {table.shape[0]}")
        n = table.shape[0] // 2
        out = table[np.clip(inputs, -n, n) + n]
        mask = (inputs != int(mask_zero)) if mask_zero is not False and mask_zero is not None else None
        return out, mask
    inputs = np.asarray(inputs)
    if inputs.ndim != 3:
        raise ValueError(f"{mode} mode takes inputs of shape (batch, length, width), got {inputs.shape}")
    length = inputs.shape[1]
    if length > table.shape[0]:
        raise ValueError(f"sequence length {length} is longer than the position table "
                         f"({table.shape[0]} positions)")
    rows = table[:length].astype(inputs.dtype, copy=False)
    if mode == "add":
        if inputs.shape[2] != table.shape[1]:
            raise ValueError(f"add mode: input width {inputs.shape[2]} != table width {table.shape[1]}")
        return inputs + rows, None
    return np.concatenate([inputs, np.broadcast_to(rows, (inputs.shape[0], *rows.shape))], axis=-1), None


def sinusoid(positions: np.ndarray, width: int, dtype=np.float64) -> np.ndarray:
    """TrigPosEmbedding's sinusoid, sin and cos INTERLEAVED: (...) -> (..., width).

    even column 2k: sin(p / 10000^(2k / width)); odd column 2k+1: cos(p / 10000^(2k / width))."""
    if width % 2:
        raise ValueError(f"sinusoid width must be even, got {width}")
    dtype = np.dtype(dtype)
    inv_freq = dtype.type(1.0) / np.power(dtype.type(10000.0), np.arange(0, width, 2, dtype=dtype) / dtype.type(width))
    angles = np.asarray(positions, dtype=dtype)[..., None] * inv_freq
    return np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(*angles.shape[:-1], width)


def trig_pos_embedding(inputs: np.ndarray, mode: str = "add", output_dim: int | None = None,
                       dtype=None) -> np.ndarray:
    """keras-pos-embd TrigPosEmbedding (no weights).

    expand: inputs (B, L) positions -> (B, L, output_dim)
    add:    inputs (B, L, D) -> inputs + sinusoid(0..L-1, D)
    concat: inputs (B, L, E) -> [inputs, sinusoid(0..L-1, output_dim)]"""
    _check_mode(mode)
    inputs = np.asarray(inputs)
    if mode == "add":
        if inputs.ndim != 3:
            raise ValueError(f"add mode takes inputs of shape (batch, length, width), got {inputs.shape}")
        return inputs + sinusoid(np.arange(inputs.shape[1]), inputs.shape[2], inputs.dtype)
    if output_dim is None:
        raise ValueError(f"{mode} mode needs output_dim")
    if mode == "expand":
        if inputs.ndim != 2:
            raise ValueError(f"expand mode takes positions of shape (batch, length), got {inputs.shape}")
        return sinusoid(inputs, output_dim, dtype or np.float64)
    if inputs.ndim != 3:
        raise ValueError(f"concat mode takes inputs of shape (batch, length, width), got {inputs.shape}")
    pos = sinusoid(np.arange(inputs.shape[1]), output_dim, inputs.dtype)
    return np.concatenate([inputs, np.broadcast_to(pos, (inputs.shape[0], *pos.shape))], axis=-1)
