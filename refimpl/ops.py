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
    one = x.dtype.type(1.0)
    # Built in one buffer, in place: x*x*x, not x**3 (a slow pow), and no temporaries.
    y = x * x
    y *= x.dtype.type(0.044715)
    y += one
    y *= x
    y *= x.dtype.type(SQRT_2_OVER_PI)
    np.tanh(y, out=y)
    y += one
    y *= x
    y *= x.dtype.type(0.5)
    return y


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
    out = x - mean
    var = (out * out).mean(axis=-1, keepdims=True)
    out /= np.sqrt(var + x.dtype.type(eps))  # in place: the same numbers, fewer temporaries
    out *= gamma
    out += beta
    return out


def dense(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """y = x K + b with K stored [in, out] as in TF: (..., I), (I, O), (O,) -> (..., O)."""
    y = x @ kernel
    if bias is not None:
        y += bias  # in place: one array fewer of the output's size
    return y


def attention_scores(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """einsum("bind,bjnd->bnij", q, k) (b batch, i query, j key, n head, d head dim) written as
    a matmul: the same contraction, but the result comes out C-contiguous. np.einsum returns it
    transposed, and every pass over it afterwards (shift, mask, softmax) then strides badly or
    copies. (b, i, n, d), (b, j, n, d) -> (b, n, i, j)."""
    return q.transpose(0, 2, 1, 3) @ k.transpose(0, 2, 3, 1)


def attention_values(prob: np.ndarray, v: np.ndarray) -> np.ndarray:
    """einsum("bnij,bjnd->bind", prob, v) written as a matmul (2.5x faster than np.einsum at
    L=512): (b, n, i, j), (b, j, n, d) -> (b, i, n, d)."""
    return (prob @ v.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)


def softmax(x: np.ndarray, axis: int = -1, inplace: bool = False) -> np.ndarray:
    """Softmax with the max subtracted: (...) -> (...). inplace=True overwrites x (a scratch
    array) instead of allocating: the same numbers, less memory traffic."""
    if inplace:
        x -= x.max(axis=axis, keepdims=True)
        e = x
    else:
        e = x - x.max(axis=axis, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e


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
