"""Emulated low precision: bfloat16 and float16 storage with float32 arithmetic.

    o = bert.forward(b, token_ids, dtype="bfloat16")     # or "float16"; also xlnet.forward

A kernel on a TPU or a GPU's tensor cores reads bfloat16 / float16 operands, computes in
float32 (matmul accumulators, softmax and LayerNorm statistics) and stores its result rounded
back to 16 bits. refimpl emulates exactly that, in NumPy: arrays are float32 holding only
values the storage format can represent, every operation computes in float32, and its result
is rounded once to the storage format (`stored`). Where the roundings happen:

  weights       once, when the model is cast (word embeddings, kernels, biases, LayerNorm
                gamma/beta, XLNet's r_*_bias, seg_embed, mask_emb)
  ops.py        each function rounds its result once: dense (float32 accumulation, the bias
                added in float32, then rounded: a matmul with a fused bias), attention_scores
                and attention_values (float32 accumulation), softmax (max, exp, sum and
                division in float32; the mask is applied inside it), layer_norm (mean,
                variance, normalisation, gamma, beta in float32), the GELUs
  model code    every stored intermediate: embedding sums, q/k/v/r head projections, the
                scores ac, bd, ef and their scaled sum, residual sums (before LayerNorm), the
                sinusoid, mask_emb mixing; each is a `stored(...)` where it is computed
Outputs and trace entries are float32 arrays whose values are bfloat16 (float16) numbers.
The model's output of one run is thus what a faithful 16-bit port stores, rounding for
rounding up to the order of float32 accumulation: what `refimpl compare --budget` measures a
port against (golden cases store the error of these runs vs float64 per tensor).

Masks: BERT's additive mask is -10000 in every precision (TF, Keras) or the storage format's
most negative number (transformers: finfo(bfloat16).min, finfo(float16).min); XLNet subtracts
1e30 (bfloat16 holds it) or 65500 in float16 (transformers; 1e30 overflows float16).

Rounding: `round_bfloat16` is round-to-nearest-even on the float32 bit pattern (keep the high
16 bits, add half of the dropped part with ties to even), NaN kept NaN, overflow to +-inf,
subnormals rounded like normal numbers (bfloat16 has float32's exponent range); the same as
ml_dtypes' float32 -> bfloat16 cast, which tests/test_precision.py checks bit for bit.
`round_float16` is NumPy's float32 -> float16 cast (IEEE round-to-nearest-even, subnormals
down to 2^-24, overflow past 65519.99 to inf).

The storage format of the forward being run is a context variable set by `storage(...)`
(bert.forward and xlnet.forward set it); outside it `stored` returns its argument unchanged,
so float32 and float64 forwards, and ops called on their own, round nothing. Heads called
after a forward (xlnet.lm_logits, the fine-tuning heads, bert.classifier_logits) compute in
their input's dtype; to emulate them as well, call them inside the same format:

    with precision.storage("bfloat16"):
        logits = xlnet.lm_logits(m, out.content)      # weights and result rounded too

run.compute / run.named_tensors (and so the CLI and golden cases) do this for every head.
BERT's lazily computed outputs (o.mlm_logits, o.mlm_probs, o.nsp_probs) keep their forward's
format by themselves.
"""
from __future__ import annotations

import contextlib
import contextvars

import numpy as np

EMULATED = ("bfloat16", "float16")  # dtypes computed in float32, stored in 16 bits
NATIVE = ("float32", "float64")
# The largest finite values, the most negative finite values and the unit roundoffs
# (2^-precision bits: half an ulp at 1) of the storage formats.
FINFO = {
    "bfloat16": {"max": float.fromhex("0x1.fep127"), "unit_roundoff": 2.0 ** -8},
    "float16": {"max": 65504.0, "unit_roundoff": 2.0 ** -11},
    "float32": {"max": float(np.finfo(np.float32).max), "unit_roundoff": 2.0 ** -24},
    "float64": {"max": float(np.finfo(np.float64).max), "unit_roundoff": 2.0 ** -53},
}


def round_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 -> the nearest bfloat16 number, ties to even, as float32: (...) -> (...).

    bfloat16 is the high 16 bits of a float32. Adding 0x7FFF plus the lowest kept bit to the
    bit pattern, then clearing the low 16 bits, rounds to nearest with ties to even; a carry
    into the exponent is exactly right (up to the next binade, or to inf past the largest
    bfloat16, 0x7F7F). NaNs are kept as NaN (the addition could carry a NaN into inf)."""
    x = np.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    lowest_kept = (bits >> np.uint32(16)) & np.uint32(1)
    rounded = (bits + (np.uint32(0x7FFF) + lowest_kept)) & np.uint32(0xFFFF0000)
    out = rounded.view(np.float32)
    if np.isnan(x).any():
        out = np.where(np.isnan(x), x, out)
    return out


def round_float16(x: np.ndarray) -> np.ndarray:
    """float32 -> the nearest float16 number (IEEE, ties to even), as float32: (...) -> (...)."""
    with np.errstate(over="ignore"):  # overflow to inf is the rounding's correct result
        return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


ROUND = {"bfloat16": round_bfloat16, "float16": round_float16}

_storage: contextvars.ContextVar = contextvars.ContextVar("refimpl_storage", default=None)


def resolve(dtype) -> tuple[np.dtype, str | None]:
    """A forward's dtype argument -> (compute dtype, storage format or None).

    "float64" / "float32" (or NumPy dtypes): computed and stored in that dtype. "bfloat16" /
    "float16" (or np.float16, or ml_dtypes.bfloat16): computed in float32, stored rounded."""
    if isinstance(dtype, str):
        name = dtype
    else:
        try:
            name = np.dtype(dtype).name  # np.float32, np.float16, ml_dtypes.bfloat16, ...
        except TypeError:
            name = repr(dtype)
    if name in NATIVE:
        return np.dtype(name), None
    if name in EMULATED:
        return np.dtype(np.float32), name
    raise ValueError(f"dtype {name!r}: expected one of {', '.join(NATIVE + EMULATED)} "
                     "(bfloat16 and float16 are emulated: float32 arithmetic, 16-bit storage)")


@contextlib.contextmanager
def storage(fmt: str | None):
    """Within the block, `stored` rounds to `fmt` ("bfloat16", "float16"; None: no rounding)."""
    if fmt is not None and fmt not in ROUND:
        raise ValueError(f"storage format {fmt!r}: expected one of {', '.join(ROUND)} or None")
    token = _storage.set(fmt)
    try:
        yield
    finally:
        _storage.reset(token)


def current() -> str | None:
    """The storage format of the forward being run (None: float32/float64, nothing rounded)."""
    return _storage.get()


def stored(x: np.ndarray) -> np.ndarray:
    """x as the running forward stores it: rounded to bfloat16/float16 (a new float32 array)
    in an emulated forward, else x itself. (...) -> (...)"""
    fmt = _storage.get()
    if fmt is None:
        return x
    return ROUND[fmt](x)


def weights_dtype(dtype):
    """The dtype to cast a model's weights to for activations of `dtype`: the running forward's
    storage format when emulating (its weights rounded), else `dtype` itself."""
    return _storage.get() or dtype


def finfo_max(fmt: str) -> float:
    """The largest finite number of "bfloat16", "float16", "float32" or "float64"."""
    return FINFO[fmt]["max"]
