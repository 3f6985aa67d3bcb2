"""Memory: the original's functional cache_mem, and keras-transformer-xl's stateful Memory layer.

Axis legend: b batch, l segment position, mlen memory length, D model width.
Both cache each layer's INPUT (memory 0 holds the word embeddings of earlier segments).
"""
from __future__ import annotations

import numpy as np


def cache_mem(curr_out: np.ndarray, prev_mem: np.ndarray | None, mem_len: int | None,
              reuse_len: int | None = None, without_mem_len: str = "none") -> np.ndarray | None:
    """The memory for the next segment: (b, l, D), (b, mlen, D) or None -> (b, <= mem_len, D).

    reuse_len > 0 first cuts the current segment to its first reuse_len positions; then
    concat(prev_mem, curr_out)[-mem_len:]. mem_len None or 0: without_mem_len "none" returns
    None (TF _cache_mem), "all" keeps everything (transformers)."""
    if not mem_len:
        if without_mem_len == "none":
            return None
        if without_mem_len != "all":
            raise ValueError(f"unknown xlnet_mems_without_mem_len {without_mem_len!r}; "
                             "expected 'none' or 'all'")
    if reuse_len is not None and reuse_len > 0:
        curr_out = curr_out[:, :reuse_len]
    cat = curr_out if prev_mem is None else np.concatenate([prev_mem, curr_out], axis=1)
    return cat[:, -mem_len:] if mem_len else cat


# --- keras-transformer-xl's Memory layer ----------------------------------------------------
def keras_memory_read(buffer: np.ndarray, batch: int, seq_len: int, memory_length: int,
                      memory_len: int, target_len: int) -> np.ndarray:
    """What Memory.call returns: (batch_size, memory_len + target_len, D) buffer ->
    (batch, min(memory_len, memory_length), D).

    Memory.call appends the (batch-padded) input to the buffer, keeps the last
    memory_len + target_len rows, and returns min(memory_len, memory_length) rows starting at
    max(0, memory_len + target_len - seq_len - memory_length); those rows lie before the
    current segment, so they are read from the buffer as it was before the call."""
    before = buffer[:batch, seq_len:]  # the rows that precede the current segment after the update
    start = max(0, memory_len + target_len - seq_len - memory_length)
    return before[:, start:start + min(memory_len, memory_length)]


def keras_memory_update(buffer: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """The new buffer: concat(buffer, inputs padded to batch_size by repeating sample 0) cut to
    its last memory_len + target_len rows: (batch_size, T, D), (b, l, D) -> (batch_size, T, D)."""
    batch_size, rows = buffer.shape[:2]
    pad = np.repeat(inputs[:1], batch_size - inputs.shape[0], axis=0)
    padded = np.concatenate([inputs, pad], axis=0)
    return np.concatenate([buffer, padded.astype(buffer.dtype)], axis=1)[:, -rows:]


class KerasMemory:
    """The state of keras-xlnet's Memory-0 ... Memory-(n_layer-1) layers, one zero-initialised
    (batch_size, memory_len + target_len, D) buffer per layer, persisting across calls as the
    Keras variables persist across predict calls. Use with `xlnet.stateful_forward`."""

    def __init__(self, n_layer: int, d_model: int, batch_size: int, memory_len: int,
                 target_len: int, dtype=np.float32):
        for name, value, low in (("batch_size", batch_size, 1), ("memory_len", memory_len, 0),
                                 ("target_len", target_len, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} {value!r}: expected an integer >= {low}")
        self.batch_size, self.memory_len, self.target_len = batch_size, memory_len, target_len
        self.buffers = [np.zeros((batch_size, memory_len + target_len, d_model), dtype)
                        for _ in range(n_layer)]

    def read(self, batch: int, seq_len: int, memory_length: int) -> list[np.ndarray]:
        """Each layer's memory for a segment of (batch, seq_len): list of (batch, mlen, D)."""
        if not 1 <= batch <= self.batch_size:
            raise ValueError(f"batch of {batch} sequences: the Memory layers hold batch_size "
                             f"{self.batch_size}, expected 1 <= batch <= {self.batch_size}")
        if not 1 <= seq_len <= self.target_len:
            raise ValueError(f"segment length {seq_len}: expected 1 <= length <= target_len "
                             f"{self.target_len}")
        if isinstance(memory_length, bool) or not isinstance(memory_length, (int, np.integer)) \
                or memory_length < 0:
            raise ValueError(f"memory_length {memory_length!r}: expected an integer >= 0 "
                             "(Input-Memory-Length)")
        return [keras_memory_read(buf, batch, seq_len, int(memory_length), self.memory_len,
                                  self.target_len) for buf in self.buffers]

    def update(self, layer_inputs: list[np.ndarray]) -> None:
        """Append each layer's input for the current segment: list of (b, l, D)."""
        if len(layer_inputs) != len(self.buffers):
            raise ValueError(f"{len(layer_inputs)} layer inputs, expected {len(self.buffers)}")
        self.buffers = [keras_memory_update(buf, x) for buf, x in zip(self.buffers, layer_inputs)]
