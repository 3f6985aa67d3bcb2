"""Shared math of BERT and XLNet: one short NumPy function per operation.

Every function computes in the dtype of its inputs (the caller casts weights and activations
to the compute dtype once); constants are cast to that dtype, so float32 stays float32.
Shapes are written `in -> out` on each function; `...` is any leading axes.
"""
from __future__ import annotations

import math

import numpy as np

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (XLNet TF, BERT TF since 2019-02-07, the Keras ports,
    transformers' "gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). (...) -> (...)"""
    c = x.dtype.type(SQRT_2_OVER_PI)
    inner = x * (x.dtype.type(1.0) + x.dtype.type(0.044715) * (x * x))  # x*x*x, not x**3 (slow pow)
    return x.dtype.type(0.5) * x * (x.dtype.type(1.0) + np.tanh(c * inner))


def gelu_erf(x: np.ndarray) -> np.ndarray:
    """GELU, exact: 0.5 x (1 + erf(x / sqrt(2))) (transformers' "gelu", BERT TF before
    2019-02-07). NumPy has no erf: math.erf is applied element-wise in float64 (correctly
    rounded to ~1 ulp), then cast back. (...) -> (...)"""
    erf = np.frompyfunc(math.erf, 1, 1)
    e = erf(x.astype(np.float64) / math.sqrt(2.0)).astype(np.float64).astype(x.dtype)
    return x.dtype.type(0.5) * x * (x.dtype.type(1.0) + e)


def relu(x: np.ndarray) -> np.ndarray:
    """(...) -> (...)"""
    return np.maximum(x, x.dtype.type(0))


def activation(name: str, gelu_form: str):
    """The activation function for a config name ("gelu", "relu", "tanh", ...)."""
    if name == "gelu":
        return gelu_tanh if gelu_form == "tanh" else gelu_erf
    table = {"gelu_new": gelu_tanh, "gelu_tanh": gelu_tanh, "gelu_erf": gelu_erf, "relu": relu,
             "tanh": np.tanh, "linear": lambda x: x}
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; expected one of "
                         f"{', '.join(['gelu', *table])}")
    return table[name]


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis with biased variance: (...,D), (D,), (D,) -> (...,D).

    (x - mean) / sqrt(var + eps) * gamma + beta, as keras-layer-normalization writes it; TF's
    tf.contrib layer_norm computes the same value as x * rsqrt(var + eps) * gamma + (beta -
    mean * rsqrt(var + eps) * gamma), equal up to rounding."""
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / np.sqrt(var + x.dtype.type(eps)) * gamma + beta


def dense(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """y = x K + b with K stored [in, out] as in TF: (..., I), (I, O), (O,) -> (..., O)."""
    y = x @ kernel
    return y if bias is None else y + bias


def einsum(subscripts: str, *operands: np.ndarray) -> np.ndarray:
    """np.einsum with optimize=True, so contractions go through BLAS (np.einsum's default
    loops are 10-20x slower on attention-sized operands)."""
    return np.einsum(subscripts, *operands, optimize=True)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax with the max subtracted: (...) -> (...)."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def embedding_lookup(table: np.ndarray, ids: np.ndarray, what: str = "token id") -> np.ndarray:
    """Rows of `table` for integer `ids`: (V, D), (...) int -> (..., D).

    Ids outside [0, V) are a ValueError naming the value (NumPy would wrap negatives)."""
    ids = np.asarray(ids)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{what}s must be integers, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        bad = ids[(ids < 0) | (ids >= table.shape[0])].reshape(-1)[0]
        raise ValueError(f"{what} {int(bad)} is out of range: expected 0 <= {what} < {table.shape[0]}")
    return table[ids]
