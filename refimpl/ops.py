"""Shared math of BERT and XLNet: one short NumPy function per operation.

Every function computes in the dtype of its inputs (the caller casts weights and activations
to the compute dtype once); constants are cast to that dtype, so float32 stays float32.
In an emulated bfloat16/float16 forward (refimpl/precision.py) the inputs are float32 arrays of
16-bit numbers, and every function rounds its result once (`stored`), as a 16-bit kernel
computing in float32 does; elsewhere `stored` changes nothing.
Shapes are written `in -> out` on each function; `...` is any leading axes.
"""
from __future__ import annotations

import contextlib
import contextvars
import math

import numpy as np

from refimpl.precision import stored

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
# GELU and erf run over their input a block of BLOCK_BYTES at a time, so that the temporaries of
# their passes stay in cache (256 KiB: half a core's L2 here) instead of streaming from memory.
BLOCK_BYTES = 1 << 18


def _block_slices(size: int, itemsize: int):
    """slice objects covering range(size), BLOCK_BYTES of items each, in order."""
    step = max(1, BLOCK_BYTES // itemsize)
    for start in range(0, size, step):
        yield slice(start, start + step)


def _blocks(x: np.ndarray, out: np.ndarray):
    """Matching vectors of BLOCK_BYTES from x and from out (C-contiguous, x's shape), in order."""
    flat, flat_out = x.reshape(-1), out.reshape(-1)
    for block in _block_slices(flat.size, flat.itemsize):
        yield flat[block], flat_out[block]


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (XLNet TF, BERT TF since 2019-02-07, the Keras ports,
    transformers' "gelu_new"): 0.5 x (1 + tanh(y)), y = sqrt(2/pi) (x + 0.044715 x^3).
    (...) -> (...)

    Computed as x / (1 + exp(-2y)), the same function: 0.5 (1 + tanh(y)) = 1 / (1 + exp(-2y)).
    NumPy's exp is faster than its tanh (512 x 3072 values: float64 60 -> 29 ms, float32
    10.9 -> 7.8 ms) and the form needs one pass fewer (8 instead of 9); it agrees with the tanh form to
    within 2 eps |x| (tests/test_erf.py). exp(-2y) overflows to inf for x below about -10
    (float32) or -27 (float64), where x / inf = -0 is the tanh form's 0.5 x (1 - 1) = -0."""
    t = x.dtype.type
    out = np.empty(x.shape, x.dtype)
    # Built in place in the output, a block at a time (float64 GELU of 512 x 3072: 16 -> 13 ms;
    # float32 the same): x*x*x, not x**3 (a slow pow), and no temporaries.
    for v, y in _blocks(x, out):
        np.multiply(v, v, out=y)
        y *= t(0.044715)
        y += t(1.0)
        y *= v
        y *= t(-2.0 * SQRT_2_OVER_PI)  # now -2y
        with np.errstate(over="ignore"):
            np.exp(y, out=y)
        y += t(1.0)
        np.divide(v, y, out=y)
    return stored(out)


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


def _f32(*words: int) -> tuple:
    """float32 numbers from their bit patterns (s_erff.c gives each constant's hex word)."""
    return tuple(np.array(words, np.uint32).view(np.float32))


# erff, the float32 version, after FreeBSD msun's s_erff.c (fdlibm's erf converted to float by
# Ian Lance Taylor, Cygnus Support, under the Sun notice above; in its current revision the rational
# approximations are refit for float precision at lower degree, error bounds in the comments):
# the same intervals and forms, computed in float32, with these coefficients under erff's names.
# Within 1 float32 ulp of math.erf: tests/test_erf.py on 10^6 points, and every float32 from 0 to
# 4.5 by `python tools/erf_check.py` (63.3M of 1.08G one ulp off, none more; the first, same-degree
# conversion of s_erf.c also had 63.4M). The main path costs 14 passes instead of 22 (GELU of
# 512 x 3072 at std 0.5: 13.0 -> 7.7 ms, the tanh form 7.1 ms).
ERF_FLOAT32 = dict(
    erx=_f32(0x3f57bb00)[0], efx=_f32(0x3e0375d4)[0], efx8=_f32(0x3f8375d4)[0],
    pp=_f32(0x3e0375d4, 0xbeac0c2d, 0xbaf422f4),  # pp0..pp2: |(erf(x)-x)/x - pp/qq| < 2^-31
    qq=_f32(0x3f800000, 0x3e9fe8f9, 0x3cb10140, 0xbb025311),  # one, qq1..qq3
    pa=_f32(0x3674f993, 0x3ed48935, 0xbe566bd5, 0x3db1b34b),  # pa0..pa3: |erf(x)-erx - pa/qa| < 2^-31
    qa=_f32(0x3f800000, 0x3efdba2b, 0x3ebe1449, 0x3d20c267),  # one, qa1..qa3
    ra=_f32(0xbc21e64c, 0xbf0b2d32, 0xbfd58a4d, 0xbf3109b2),  # ra0..ra3 on [1.25, 2.85715): 2^-28
    sa=_f32(0x3f800000, 0x408f8bcd, 0x408374ab, 0x3f0dc974),  # one, sa1..sa3
    rb=_f32(0xbc21a0ae, 0xbf0c4cfe, 0xbfebab07),  # rb0..rb2 on [2.85715, 11): 2^-30
    sb=_f32(0x3f800000, 0x409be1ea, 0x4043305e, 0xbf430bec),  # one, sb1..sb3
    # erff tests the bits of |x|: 0x38800000 = 2^-14, 0x04000000 = 2^-119, 0x4036db8c = 2.85715,
    # and returns one - tiny (which rounds to 1) from 0x40800000 = 4 on
    tiny=_f32(0x38800000)[0], subnormal=_f32(0x04000000)[0], split=_f32(0x4036db8c)[0],
    one_from=_f32(0x40800000)[0],
    z_bits=np.uint32(0xffffe000))  # SET_FLOAT_WORD(z, hx & 0xffffe000)
ERF_FLOAT64 = dict(erx=ERX, efx=EFX, efx8=EFX8, pp=PP, qq=QQ, pa=PA, qa=QA, ra=RA, sa=SA, rb=RB,
                   sb=SB, tiny=TINY_ERF, subnormal=SUBNORMAL_ERF, split=ERFC_SPLIT, one_from=6.0,
                   z_bits=np.uint64(0xFFFFFFFF00000000))  # SET_LOW_WORD(z, 0)
ERF_COEFFICIENTS = {np.dtype(np.float64): ERF_FLOAT64, np.dtype(np.float32): ERF_FLOAT32}


def _poly(s: np.ndarray, coefs: tuple) -> np.ndarray:
    """c0 + s*(c1 + s*(c2 + ...)), Horner in fdlibm's order of operations. (n,) -> (n,)"""
    p = s * coefs[-1]  # the first step, c_last * s, without a pass that fills in c_last
    p += coefs[-2]
    for c in coefs[-3::-1]:
        p *= s
        p += c
    return p


def _erf_small(x: np.ndarray, c: dict, out: np.ndarray | None = None) -> np.ndarray:
    """fdlibm, |x| in [tiny, 0.84375) (tiny: 2^-28, erff 2^-14): x + x*(PP(z)/QQ(z)), z = x*x.
    (n,) -> (n,), into `out` if given.
    Odd in x bit for bit (rounding to nearest is symmetric), so x may carry its sign."""
    z = x * x
    r = _poly(z, c["pp"])
    r /= _poly(z, c["qq"])  # r = PP(z)/QQ(z); in place: this runs on every element
    r *= x
    return np.add(x, r, out=r if out is None else out)


def _erf_near_one(ax: np.ndarray, c: dict) -> np.ndarray:
    """fdlibm, |x| in [0.84375, 1.25): erx + PA(s)/QA(s), s = |x| - 1. (n,) -> (n,)"""
    s = ax - ax.dtype.type(1.0)
    return c["erx"] + _poly(s, c["pa"]) / _poly(s, c["qa"])


def _erf_tail(ax: np.ndarray, c: dict, r_coefs: str, s_coefs: str) -> np.ndarray:
    """fdlibm, |x| in [1.25, 6) (erff: 4): 1 - erfc(x), erfc(x) = exp(-x*x - 0.5625 + R/S) / x
    with R/S = r_coefs(s)/s_coefs(s) at s = 1/x^2 (RA/SA below 1/0.35, RB/SB above). -x*x is
    split as -z*z + (z-x)(z+x), z = x with its low bits cleared (fdlibm: SET_LOW_WORD(z, 0);
    erff: the low 13 bits), so z*z is exact and the rounding error of x*x does not reach exp.
    (n,) -> (n,)"""
    one = ax.dtype.type(1.0)
    s = one / (ax * ax)
    ratio = _poly(s, c[r_coefs]) / _poly(s, c[s_coefs])
    bits = c["z_bits"]
    z = (ax.view(bits.dtype) & bits).view(ax.dtype)
    erfc_x = np.exp(-z * z - ax.dtype.type(0.5625)) * np.exp((z - ax) * (z + ax) + ratio) / ax
    return one - erfc_x


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, vectorised after fdlibm: (...) -> (...).

    Each element takes fdlibm's path for its interval of |x|, with fdlibm's coefficients and
    order of operations: float64 after s_erf.c, within 1 ulp of math.erf; float32 after
    s_erff.c, in float32, within 1 float32 ulp of math.erf (tests/test_erf.py).
    Special values as fdlibm: erf(+-0) = +-0, erf(+-inf) = +-1, erf(nan) = nan, |x| >= 6
    (float32: 4) gives +-1. Other dtypes (float16, integers) are computed in float64 and rounded once to
    the input dtype (integers stay float64). See `_by_erf_paths` for the order of the work."""
    x = np.asarray(x)
    if x.dtype not in ERF_COEFFICIENTS:
        out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        return erf(x.astype(np.float64)).astype(out_dtype)
    return _by_erf_paths(x, lambda v: v, lambda v, erf_v: None)


def _by_erf_paths(x: np.ndarray, argument, finish) -> np.ndarray:
    """finish(x, erf(argument(x))) for every element of x (float64 or float32); `argument` and
    `finish` are elementwise, in x's dtype, and `finish(v, e)` writes its result over e.
    (...) -> (...)

    erf takes fdlibm's path for each |u|, u = argument(x), in two steps:
    1. every element by the main path, |u| in [tiny, 0.84375) (three quarters of GELU's
       inputs, 97% at BERT's initialisation), a block of BLOCK_BYTES at a time so that the
       temporaries stay in cache;
    2. the other elements (and |u| < tiny), gathered from all blocks, by their paths
       (`_erf_other_paths`), a block at a time, written over the results of step 1.
    Gathering the other paths' elements per block instead costs their ~100 NumPy calls in
    every block: GELU of 512 x 3072 float32 at BERT's initialisation took 13-18 ms that way,
    10-11 ms in two steps (the tanh form: 8-9 ms in the same runs)."""
    c = ERF_COEFFICIENTS[x.dtype]
    t = x.dtype.type
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    other = [np.empty(0, np.intp)]  # indices for step 2 (none if x is empty)
    with np.errstate(invalid="ignore", over="ignore"):  # inf/inf at |u| = inf, replaced in step 2
        for block in _block_slices(flat.size, flat.itemsize):
            v = flat[block]
            u = argument(v)
            finish(v, _erf_small(u, c, out=out[block]))  # in the output: no copy
            a = np.abs(u)  # NaN compares false below and stays on the main path: NaN
            other.append(block.start + np.flatnonzero((a >= t(0.84375)) | (a < c["tiny"])))
        other = np.concatenate(other)
        for block in _block_slices(other.size, flat.itemsize):
            i = other[block]
            v = flat[i]
            u = argument(v)
            e = np.copysign(_erf_other_paths(np.abs(u), c), u)  # odd in u
            finish(v, e)
            out[i] = e
    return out.reshape(x.shape)


def _erf_other_paths(a: np.ndarray, c: dict) -> np.ndarray:
    """erf of |x| = a outside [tiny, 0.84375), each element by fdlibm's path for its
    interval. (n,) -> (n,)"""
    t = a.dtype.type
    # NaN stays NaN; |x| >= 6 (erff: 4; inf included): 1 (fdlibm: one - tiny, which rounds to one)
    e = np.minimum(a, t(1.0))
    for low, high, path in [
            (t(0.84375), t(1.25), lambda v: _erf_near_one(v, c)),
            (t(1.25), c["split"], lambda v: _erf_tail(v, c, "ra", "sa")),  # 1.25 <= |x| < 1/0.35
            (c["split"], t(c["one_from"]), lambda v: _erf_tail(v, c, "rb", "sb"))]:  # to 6 (4)
        i = np.flatnonzero((a >= low) & (a < high))
        if i.size:
            e[i] = path(a[i])
    # |x| < tiny: x + efx*x; near underflow fdlibm takes 0.125*(8x + efx8*x) (erff: (8x + efx8*x)/8,
    # the same number: both scale by an exact power of two)
    tiny = np.flatnonzero(a < c["tiny"])
    e[tiny] = a[tiny] + c["efx"] * a[tiny]
    subnormal = np.flatnonzero(a < c["subnormal"])
    e[subnormal] = t(0.125) * (t(8.0) * a[subnormal] + c["efx8"] * a[subnormal])
    return e


def gelu_erf(x: np.ndarray) -> np.ndarray:
    """GELU, exact: 0.5 x (1 + erf(x / sqrt(2))) (transformers' "gelu", BERT TF before
    2019-02-07), all in x's dtype as transformers computes it. erf is `erf` above (fdlibm's:
    within 1 ulp of math.erf in float64, 1 float32 ulp in float32), worked in erf's two steps
    with the GELU around it (`_by_erf_paths`). (...) -> (...)"""
    half, one, sqrt_2 = x.dtype.type(0.5), x.dtype.type(1.0), x.dtype.type(math.sqrt(2.0))
    if x.dtype not in ERF_COEFFICIENTS:  # float16: the formula in float16, erf rounded from float64
        return stored(half * x * (one + erf(x / sqrt_2)))

    def gelu(v, erf_v):
        erf_v += one
        np.multiply(half * v, erf_v, out=erf_v)  # (0.5 x) (1 + erf), transformers' order

    return stored(_by_erf_paths(x, lambda v: v / sqrt_2, gelu))


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


# A workspace: arrays that the layers and head blocks of one forward reuse, one per name, shape
# and dtype (the projections q, k, v, the FFN's inner layer, the context, the scores of a head
# block). Fresh arrays of a few MB are returned to the operating system by glibc when freed and
# page-faulted in again at the next layer or block: XLNet-base L=512 with 512 memory took
# ~70k page faults per float32 forward, 18k with the workspace (BERT-base 21k -> 7k), 4-7%
# of the time (tools/bench.py). TensorFlow keeps its own memory pool to the same end.
# Active only in a forward without trace: a trace keeps every array it is given, and a reused
# one would change under it. Nothing that a forward returns is a workspace array.
_workspace: contextvars.ContextVar = contextvars.ContextVar("refimpl_workspace", default=None)


@contextlib.contextmanager
def workspace(active: bool = True):
    """Within the block (when `active`), `scratch` hands out reused arrays."""
    token = _workspace.set({} if active else None)
    try:
        yield
    finally:
        _workspace.reset(token)


def scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """An uninitialised array of (shape, dtype): in a workspace the one kept for `name` (the
    same array at every call with that name, shape and dtype), else a new one. Each name is
    one quantity of the math; two quantities alive at once never share a name."""
    arrays = _workspace.get()
    if arrays is None:
        return np.empty(shape, dtype)
    key = (name, tuple(shape), np.dtype(dtype))
    if key not in arrays:
        arrays[key] = np.empty(shape, dtype)
    return arrays[key]


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


def dense(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None,
          scratch_name: str | None = None) -> np.ndarray:
    """y = x K + b with K stored [in, out] as in TF: (..., I), (I, O), (O,) -> (..., O).
    scratch_name: y goes into that workspace array when a workspace is active (see scratch)."""
    out = None if scratch_name is None else scratch(
        scratch_name, x.shape[:-1] + kernel.shape[1:], np.result_type(x, kernel))
    y = np.matmul(x, kernel, out=out)
    if bias is not None:
        y += bias  # in place: one array fewer of the output's size
    return stored(y)


# Attention is computed for one sequence and a block of heads at a time when no trace is asked:
# a block's (F, T) scores then stay in cache through every pass over them (scale, mask, max,
# exp, sum, divide) instead of streaming from memory once per pass. Each head's matmuls and
# softmax rows are the same operations on the same numbers either way, so the result is the
# same bit for bit (tests/test_blocks.py). BERT-base L=512 float32: 33.6 -> 22.0 ms for one
# layer's attention core, one head (1 MiB of scores) per block. This machine's L2 is 512 KiB per
# core (L3 32 MiB); blocks of 256 KiB to 2 MiB gave forwards within the machine's noise of
# each other (BERT and XLNet, L=128 and 512), and 1 MiB is kept.
HEAD_BLOCK_BYTES = 1 << 20


def head_blocks(batch: int, num_heads: int, score_bytes_per_head: int, limit: int | None = None):
    """(sequence slice, head slice) pairs covering batch x heads, in order: one sequence at a
    time and as many heads as keep their scores within `limit` bytes (default
    HEAD_BLOCK_BYTES), at least one."""
    limit = HEAD_BLOCK_BYTES if limit is None else limit
    per_block = max(1, min(num_heads, limit // max(1, score_bytes_per_head)))
    for b in range(batch):
        for n in range(0, num_heads, per_block):
            yield slice(b, b + 1), slice(n, n + per_block)


def attention_scores(q: np.ndarray, k: np.ndarray, scratch_name: str | None = None) -> np.ndarray:
    """einsum("bind,bjnd->bnij", q, k) (b batch, i query, j key, n head, d head dim) written as
    a matmul: the same contraction, but the result comes out C-contiguous. np.einsum returns it
    transposed, and every pass over it afterwards (shift, mask, softmax) then strides badly or
    copies. (b, i, n, d), (b, j, n, d) -> (b, n, i, j)."""
    shape = (q.shape[0], q.shape[2], q.shape[1], k.shape[1])
    out = None if scratch_name is None else scratch(scratch_name, shape, np.result_type(q, k))
    return stored(np.matmul(q.transpose(0, 2, 1, 3), k.transpose(0, 2, 3, 1), out=out))


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
