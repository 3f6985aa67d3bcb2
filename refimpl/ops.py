"""Shared math of BERT and XLNet: one short NumPy function per operation.

Every function computes in the dtype of its inputs (the caller casts weights and activations
to the compute dtype once); constants are cast to that dtype, so float32 stays float32.
In an emulated bfloat16/float16 forward (refimpl/precision.py) the inputs are float32 arrays of
16-bit numbers, and every function rounds its result once (`stored`), as a 16-bit kernel
computing in float32 does; elsewhere `stored` changes nothing.
Shapes are written `in -> out` on each function; `...` is any leading axes.
"""
from __future__ import annotations

import math

import numpy as np

from refimpl.precision import stored

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
    return stored(y)


# erf after fdlibm's s_erf.c (@(#)s_erf.c 1.3 95/01/18), which glibc's erf also derives from.
# Its notice, preserved as it asks:
#   Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
#   Developed at SunSoft, a Sun Microsystems, Inc. business.
#   Permission to use, copy, modify, and distribute this software is freely granted,
#   provided that this notice is preserved.
# The coefficients below are fdlibm's, digit for digit, under fdlibm's names.
ERX = 8.45062911510467529297e-01  # erx: erf(1) rounded to float32 (24 bits), 0x3FEB0AC1 60000000
EFX = 1.28379167095512586316e-01  # efx = 2/sqrt(pi) - 1
EFX8 = 1.02703333676410069053e+00  # efx8 = 8 efx
# erf on [0, 0.84375]: erf(x) = x + x R(x^2), R = PP/QQ (|R - (erf(x)-x)/x| <= 2^-57.90)
PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
      -5.77027029648944159157e-03, -2.37630166566501626084e-05)  # pp0..pp4
QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02,
      5.08130628187576562776e-03, 1.32494738004321644526e-04,
      -3.96022827877536812320e-06)  # one, qq1..qq5
# erf on [0.84375, 1.25], s = |x| - 1: erf(x) = erx + PA(s)/QA(s) (error <= 2^-59.06)
PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
      3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
      -2.16637559486879084300e-03)  # pa0..pa6
QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
      1.26171219808761642112e-01, 1.36370839120290507362e-02,
      1.19844998467991074170e-02)  # one, qa1..qa6
# erfc on [1.25, 1/0.35], s = 1/x^2: erfc(x) = exp(-x*x - 0.5625 + RA(s)/SA(s)) / x
RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
      -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
      -8.12874355063065934246e+01, -9.81432934416914548592e+00)  # ra0..ra7
SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
      6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
      6.57024977031928170135e+00, -6.04244152148580987438e-02)  # one, sa1..sa8
# erfc on [1/0.35, 6] (fdlibm's erfc goes on to 28; erf is 1 from 6 on), same form: RB/SB
RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
      -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
      -4.83519191608651397019e+02)  # rb0..rb6
SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
      3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
      -2.24409524465858183362e+01)  # one, sb1..sb7
# fdlibm tests the high 32 bits of |x|; these are the same bounds as float64 numbers.
TINY_ERF = 2.0 ** -28  # 0x3e300000: below it erf(x) = x + efx x
SUBNORMAL_ERF = 2.0 ** -1015  # 0x00800000: below it fdlibm scales by 8 so efx x cannot underflow
ERFC_SPLIT = 2.8571434020996094  # 0x4006DB6E 00000000, "1/0.35" as fdlibm's high-word test has it
ERF_BLOCK = 2 ** 16  # elements per block (512 KiB of float64): its temporaries stay in cache


def _poly(s: np.ndarray, coefs: tuple) -> np.ndarray:
    """c0 + s*(c1 + s*(c2 + ...)), Horner in fdlibm's order of operations. (n,) -> (n,)"""
    p = np.full_like(s, coefs[-1])
    for c in coefs[-2::-1]:
        p *= s
        p += c
    return p


def _erf_small(ax: np.ndarray) -> np.ndarray:
    """fdlibm, |x| in [2^-28, 0.84375): x + x*(PP(z)/QQ(z)), z = x*x. (n,) -> (n,)"""
    z = ax * ax
    return ax + ax * (_poly(z, PP) / _poly(z, QQ))


def _erf_near_one(ax: np.ndarray) -> np.ndarray:
    """fdlibm, |x| in [0.84375, 1.25): erx + PA(s)/QA(s), s = |x| - 1. (n,) -> (n,)"""
    s = ax - 1.0
    return ERX + _poly(s, PA) / _poly(s, QA)


def _erf_tail(ax: np.ndarray, r_coefs: tuple, s_coefs: tuple) -> np.ndarray:
    """fdlibm, |x| in [1.25, 6): 1 - erfc(x), erfc(x) = exp(-x*x - 0.5625 + R/S) / x with
    R/S = r_coefs(s)/s_coefs(s) at s = 1/x^2 (RA/SA below 1/0.35, RB/SB above). -x*x is
    split as -z*z + (z-x)(z+x), z = x with its low 32 bits cleared (fdlibm: SET_LOW_WORD(z, 0)),
    so z*z is exact and the rounding error of x*x does not reach exp. (n,) -> (n,)"""
    s = 1.0 / (ax * ax)
    ratio = _poly(s, r_coefs) / _poly(s, s_coefs)
    z = (ax.view(np.uint64) & np.uint64(0xFFFFFFFF00000000)).view(np.float64)
    erfc_x = np.exp(-z * z - 0.5625) * np.exp((z - ax) * (z + ax) + ratio) / ax
    return 1.0 - erfc_x


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, vectorised after fdlibm's s_erf.c: (...) -> (...).

    Each float64 element takes fdlibm's path for its interval of |x|, with fdlibm's
    coefficients and order of operations: within 1 ulp of math.erf (tests/test_erf.py).
    Special values as fdlibm: erf(+-0) = +-0, erf(+-inf) = +-1, erf(nan) = nan, |x| >= 6
    gives +-1. Other dtypes (float32, float16, integers) are computed in float64 and rounded
    once to the input dtype (integers stay float64). The work goes in blocks of ERF_BLOCK
    elements so that its temporaries stay in cache."""
    x = np.asarray(x)
    if x.dtype != np.float64:
        out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        return erf(x.astype(np.float64)).astype(out_dtype)
    flat = x.reshape(-1)
    e = np.empty_like(flat)
    for start in range(0, flat.size, ERF_BLOCK):
        e[start:start + ERF_BLOCK] = _erf_block(flat[start:start + ERF_BLOCK])
    return e.reshape(x.shape)


def _erf_block(x: np.ndarray) -> np.ndarray:
    """erf of a float64 vector, each element by fdlibm's branch for its |x|. (n,) -> (n,)

    The branch of |x| < 0.84375 (three quarters of GELU's inputs) is computed for the whole
    block, the other branches only for their elements (gathered, computed, scattered back):
    1.6x faster than gathering every branch, and the same numbers."""
    ax = np.abs(x)
    with np.errstate(invalid="ignore", over="ignore"):  # inf/inf at |x| = inf, replaced below
        e = _erf_small(ax)  # 2^-28 <= |x| < 0.84375 (and NaN); replaced below for the others
    big = np.flatnonzero(ax >= 0.84375)
    if big.size:
        a = ax[big]
        # |x| >= 6 (inf included): 1 (fdlibm: one - tiny, which rounds to one); np.minimum keeps nan.
        e_big = np.minimum(a, 1.0)
        for low, high, branch in [
                (0.84375, 1.25, _erf_near_one),
                (1.25, ERFC_SPLIT, lambda v: _erf_tail(v, RA, SA)),  # 1.25 <= |x| < 1/0.35
                (ERFC_SPLIT, 6.0, lambda v: _erf_tail(v, RB, SB))]:  # 1/0.35 <= |x| < 6
            i = np.flatnonzero((a >= low) & (a < high))
            if i.size:
                e_big[i] = branch(a[i])
        e[big] = e_big
    tiny = ax < TINY_ERF
    if tiny.any():  # |x| < 2^-28: x + efx*x; below 2^-1015 fdlibm takes 0.125*(8x + efx8*x)
        subnormal = ax < SUBNORMAL_ERF
        e[tiny] = ax[tiny] + EFX * ax[tiny]
        e[subnormal] = 0.125 * (8.0 * ax[subnormal] + EFX8 * ax[subnormal])
    np.copysign(e, x, out=e)  # every fdlibm branch is odd in x
    return e


def gelu_erf(x: np.ndarray) -> np.ndarray:
    """GELU, exact: 0.5 x (1 + erf(x / sqrt(2))) (transformers' "gelu", BERT TF before
    2019-02-07). erf is `erf` above (fdlibm's, within 1 ulp of math.erf); x / sqrt(2) and erf
    are computed in float64 and erf rounded once to x's dtype, the rest in x's dtype, as the
    element-by-element math.erf version did. (...) -> (...)"""
    e = erf(x.astype(np.float64) / math.sqrt(2.0)).astype(x.dtype, copy=False)
    return stored(x.dtype.type(0.5) * x * (x.dtype.type(1.0) + e))


def relu(x: np.ndarray) -> np.ndarray:
    """(...) -> (...)"""
    return np.maximum(x, x.dtype.type(0))


def activation(name: str, gelu_form: str):
    """The activation function for a config name ("gelu", "relu", "tanh", ...)."""
    if name == "gelu":
        return gelu_tanh if gelu_form == "tanh" else gelu_erf
    table = {"gelu_new": gelu_tanh, "gelu_tanh": gelu_tanh, "gelu_erf": gelu_erf, "relu": relu,
             "tanh": lambda x: stored(np.tanh(x)), "linear": lambda x: x}
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
    return stored(out)


def dense(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """y = x K + b with K stored [in, out] as in TF: (..., I), (I, O), (O,) -> (..., O)."""
    y = x @ kernel
    if bias is not None:
        y += bias  # in place: one array fewer of the output's size
    return stored(y)


def attention_scores(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """einsum("bind,bjnd->bnij", q, k) (b batch, i query, j key, n head, d head dim) written as
    a matmul: the same contraction, but the result comes out C-contiguous. np.einsum returns it
    transposed, and every pass over it afterwards (shift, mask, softmax) then strides badly or
    copies. (b, i, n, d), (b, j, n, d) -> (b, n, i, j)."""
    return stored(q.transpose(0, 2, 1, 3) @ k.transpose(0, 2, 3, 1))


def attention_values(prob: np.ndarray, v: np.ndarray) -> np.ndarray:
    """einsum("bnij,bjnd->bind", prob, v) written as a matmul (2.5x faster than np.einsum at
    L=512): (b, n, i, j), (b, j, n, d) -> (b, i, n, d)."""
    return stored((prob @ v.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3))


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
    return stored(e)


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
