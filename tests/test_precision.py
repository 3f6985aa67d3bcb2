"""Emulated bfloat16 / float16 (refimpl/precision.py): the rounding itself, and forwards whose
every stored value is a 16-bit number.

The rounding is pinned against ml_dtypes (a well-kept bfloat16 implementation, the one TF and
JAX use) bit for bit, and against hand-worked values: round-to-nearest-even ties, subnormals,
overflow to inf, NaN. The emulated forwards' error against float64 is checked against what
real 16-bit implementations measure in tests/test_precision_anchors.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl import bert, golden, precision, run, xlnet
from refimpl.xlnet import weights as xlnet_weights
from refimpl.precision import round_bfloat16, round_float16

ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes pins the bfloat16 rounding ([test] extra)")

GOLDEN = golden.default_golden_dir()


def f32(bits: int) -> np.float32:
    return np.array([bits], np.uint32).view(np.float32)[0]


# --- the rounding -------------------------------------------------------------------------------
@given(st.lists(st.integers(0, 2 ** 32 - 1), min_size=1, max_size=200))
def test_bfloat16_rounding_is_ml_dtypes_bit_for_bit(bit_patterns):
    x = np.array(bit_patterns, np.uint32).view(np.float32)  # every float32: NaNs, subnormals, inf
    ours = round_bfloat16(x)
    theirs = x.astype(ml_dtypes.bfloat16).astype(np.float32)
    nan = np.isnan(theirs)
    assert (np.isnan(ours) == nan).all()
    assert (ours[~nan].view(np.uint32) == theirs[~nan].view(np.uint32)).all()


def test_bfloat16_rounding_on_a_million_normal_values():
    x = np.random.default_rng(0).standard_normal(10 ** 6).astype(np.float32) * np.float32(300)
    assert (round_bfloat16(x) == x.astype(ml_dtypes.bfloat16).astype(np.float32)).all()


@pytest.mark.parametrize("value, expected", [
    (1 + 2 ** -8, 1.0),  # halfway between 1 and 1 + 2^-7: ties to even (1)
    (1 + 3 * 2 ** -8, 1 + 2 ** -6),  # halfway between 1 + 2^-7 and 1 + 2^-6: to even (up)
    (1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -7),  # just above halfway: up
    (-(1 + 2 ** -8), -1.0),  # symmetric
    (2 ** -133, 2 ** -133),  # the smallest bfloat16 subnormal is kept
    (0.75 * 2 ** -133, 2 ** -133),  # a float32 subnormal rounds to the nearest bfloat16 one
    (0.5 * 2 ** -133, 0.0),  # half the smallest subnormal: tie to even (0)
    (float.fromhex("0x1.fep127"), float.fromhex("0x1.fep127")),  # the largest bfloat16
    (float.fromhex("0x1.fefffep127"), float.fromhex("0x1.fep127")),  # below max + half an ulp
    (float.fromhex("0x1.ffp127"), np.inf),  # max + half an ulp: the tie goes to even, inf
    (float(np.finfo(np.float32).max), np.inf),
    (-float(np.finfo(np.float32).max), -np.inf),
    (np.inf, np.inf), (0.0, 0.0),
])
def test_bfloat16_rounding_pinned(value, expected):
    got = round_bfloat16(np.array([value], np.float32))[0]
    assert got == np.float32(expected) and np.signbit(got) == np.signbit(np.float32(expected))


def test_bfloat16_rounding_keeps_nan_and_signed_zero():
    x = np.array([np.nan, -np.nan, f32(0x7FFFFFFF), f32(0xFF800001), -0.0], np.float32)
    out = round_bfloat16(x)
    assert np.isnan(out[:4]).all()  # 0x7FFFFFFF + 0x8000 would carry a NaN into 0x80000000 = -0
    assert out[4] == 0 and np.signbit(out[4])


@pytest.mark.parametrize("value, expected", [
    (1 + 2 ** -11, 1.0),  # tie to even
    (1 + 3 * 2 ** -11, 1 + 2 ** -9),  # tie to even, up
    (65504.0, 65504.0), (65519.0, 65504.0),  # below max + half an ulp (65520)
    (65520.0, np.inf),  # the tie at max + half an ulp rounds to even: inf
    (2 ** -24, 2 ** -24),  # the smallest float16 subnormal
    (2 ** -25, 0.0),  # half of it: tie to even (0)
    (3 * 2 ** -26, 2 ** -24),  # 0.75 of it: up
    (-1e6, -np.inf),
])
def test_float16_rounding_pinned(value, expected):
    assert round_float16(np.array([value], np.float32))[0] == np.float32(expected)


def test_stored_rounds_only_inside_an_emulated_forward():
    x = np.array([1 + 2 ** -10, 3.14159265], np.float32)
    assert precision.stored(x) is x  # float32 / float64 forwards round nothing
    with precision.storage("bfloat16"):
        assert precision.current() == "bfloat16"
        np.testing.assert_array_equal(precision.stored(x), round_bfloat16(x))
        with precision.storage("float16"):
            np.testing.assert_array_equal(precision.stored(x), round_float16(x))
        assert precision.current() == "bfloat16"
    assert precision.current() is None and precision.stored(x) is x


@pytest.mark.parametrize("dtype, expected", [
    ("bfloat16", ("float32", "bfloat16")), ("float16", ("float32", "float16")),
    (np.float16, ("float32", "float16")), ("float32", ("float32", None)),
    (np.float64, ("float64", None)),
])
def test_resolve(dtype, expected):
    compute, fmt = precision.resolve(dtype)
    assert (compute.name, fmt) == expected
    assert precision.resolve(ml_dtypes.bfloat16) == (np.dtype(np.float32), "bfloat16")


@pytest.mark.parametrize("dtype", ["float8", np.int64, "half", object()])
def test_resolve_rejects_other_dtypes(dtype):
    with pytest.raises(ValueError, match=r"expected one of float32, float64, bfloat16, float16"):
        precision.resolve(dtype)


# --- emulated forwards --------------------------------------------------------------------------
def _is_stored_in(fmt: str, a: np.ndarray) -> bool:
    return bool((precision.ROUND[fmt](a) == a)[np.isfinite(a)].all())


CASES = ["bert-padding-two-segments", "bert-hf-dialect", "bert-keras-dialect", "bert-classifier",
         "xlnet-two-stream-perm-mask", "xlnet-uni-mems-tf", "xlnet-bi-padding",
         "xlnet-train-phase-query-stream", "xlnet-squad-beam", "xlnet-tied-two-stream-tf"]


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", CASES)
def test_every_named_tensor_of_an_emulated_forward_is_a_16_bit_number(name, fmt):
    """Outputs, every trace entry and the heads: float32 arrays of bfloat16 (float16) values,
    finite, and not the float32 run (so something was rounded)."""
    case = golden.read_case(f"{GOLDEN}/cases/{name}")
    inputs = golden.read_npz(f"{GOLDEN}/cases/{name}/inputs.npz")
    checkpoint = f"{GOLDEN}/{case['checkpoint']}"
    low = run.compute(case["model"], checkpoint, inputs, case["options"], case["dialect"], fmt)
    single = run.compute(case["model"], checkpoint, inputs, case["options"], case["dialect"], "float32")
    assert list(low) == list(single)
    not_rounded = [n for n, a in low.items() if a.dtype.kind == "f" and not _is_stored_in(fmt, a)]
    assert not not_rounded, f"not {fmt} numbers: {not_rounded[:5]}"
    assert all(a.dtype in (np.float32, np.int64, np.int32, np.bool_) for a in low.values())
    assert all(np.isfinite(a).all() for a in low.values() if a.dtype.kind == "f")
    differ = [n for n in low if low[n].dtype.kind == "f" and not np.array_equal(low[n], single[n])]
    assert len(differ) > len(low) // 2


def test_emulated_weights_are_rounded_once_and_cached():
    b = bert.load(f"{GOLDEN}/checkpoints/bert-tiny")
    low = bert.cast(b, "bfloat16")
    assert low is bert.cast(b, "bfloat16") and low is not bert.cast(b, np.float32)
    w = low.layers[0]["attention/self/query/kernel"]
    assert w.dtype == np.float32 and _is_stored_in("bfloat16", w)
    np.testing.assert_array_equal(w, round_bfloat16(b.layers[0]["attention/self/query/kernel"].astype(np.float32)))


def test_bert_finfo_min_mask_is_the_storage_formats():
    """Dialect hf masks with finfo.min: of bfloat16/float16 when emulating them (float32's min
    rounds to -inf in bfloat16, and a fully padded row would then be NaN, not uniform)."""
    b = bert.load(f"{GOLDEN}/checkpoints/bert-tiny")
    ids = np.array([[5, 6, 7, 0]])
    mask = np.array([[0, 0, 0, 0]])  # a fully padded row: uniform attention in transformers
    for fmt in ("bfloat16", "float16"):
        trace: dict = {}
        bert.forward(b, ids, attention_mask=mask, dialect="hf", dtype=fmt, trace=trace)
        prob = trace["Encoder-1-MultiHeadSelfAttention/prob"]
        np.testing.assert_array_equal(prob, np.float32(0.25))
        assert trace["Encoder-1-MultiHeadSelfAttention/scores"].min() == -precision.finfo_max(fmt)


def test_xlnet_float16_masks_with_65500():
    """1e30 overflows float16: transformers subtracts 65500 there, and so does refimpl."""
    m = xlnet.load(f"{GOLDEN}/checkpoints/xlnet-tiny")
    ids = np.array([[5, 6, 7, 8]])
    for fmt in ("float16", "bfloat16"):
        out = xlnet.forward(m, ids, attn_type="uni", dtype=fmt)
        assert np.isfinite(out.content).all() and _is_stored_in(fmt, out.content)


def test_emulated_mems_given_from_outside_are_rounded():
    m = xlnet.load(f"{GOLDEN}/checkpoints/xlnet-tiny")
    ids = np.array([[5, 6, 7, 8]])
    mems = [np.full((1, 2, m.config.d_model), 1 + 2 ** -12, np.float32)] * m.config.n_layer
    trace: dict = {}
    xlnet.forward(m, ids, mems=mems, dtype="bfloat16", trace=trace)
    np.testing.assert_array_equal(trace["Memory-0"], np.float32(1.0))


def test_emulated_error_is_of_the_formats_size():
    """vs float64: float32 ~1e-6, float16 ~1e-3, bfloat16 ~1e-2 (unit roundoffs 6e-8, 4.9e-4,
    3.9e-3): each an order of magnitude apart, in that order, on the final hidden states."""
    case = "xlnet-two-stream-perm-mask"
    c = golden.read_case(f"{GOLDEN}/cases/{case}")
    inputs = golden.read_npz(f"{GOLDEN}/cases/{case}/inputs.npz")
    expected = golden.read_npz(f"{GOLDEN}/cases/{case}/outputs.npz")["content"]
    errors = {}
    for fmt in ("float32", "float16", "bfloat16"):
        got = run.compute("xlnet", f"{GOLDEN}/{c['checkpoint']}", inputs, c["options"], c["dialect"], fmt)
        errors[fmt] = float(np.median(np.abs(got["content"] - expected)) / np.median(np.abs(expected)))
    assert 1e-8 < errors["float32"] < 1e-5, errors
    assert 1e-4 < errors["float16"] < 1e-2, errors
    assert 1e-3 < errors["bfloat16"] < 5e-2, errors
    assert errors["float32"] * 10 < errors["float16"] and errors["float16"] * 3 < errors["bfloat16"]


def test_heads_after_the_forward_round_inside_the_storage_format():
    """lm_logits called after an emulated forward: in float32 outside the format (its input's
    dtype), rounded inside `precision.storage`, as run.compute calls it."""
    m = xlnet.load(f"{GOLDEN}/checkpoints/xlnet-tiny")
    out = xlnet.forward(m, np.array([[5, 6, 7, 8]]), dtype="bfloat16")
    plain = xlnet.lm_logits(m, out.content)
    with precision.storage("bfloat16"):
        emulated = xlnet.lm_logits(m, out.content)
    assert _is_stored_in("bfloat16", emulated) and not _is_stored_in("bfloat16", plain)
    inputs = {"token_ids": np.array([[5, 6, 7, 8]])}
    np.testing.assert_array_equal(run.compute("xlnet", f"{GOLDEN}/checkpoints/xlnet-tiny", inputs,
                                              dtype="bfloat16")["lm_logits"], emulated)


@pytest.mark.parametrize("family", ["bert", "xlnet"])
def test_load_in_the_forwards_dtype_shares_the_weights(family, tmp_path):
    """load(dtype=) converts each weight as it is read; a forward in the weights' own dtype uses
    them without a copy (for float32 checkpoints also without dtype=), and the numbers are those
    of the default load. A transformers folder converts the same way."""
    module, weights = (bert, bert) if family == "bert" else (xlnet, xlnet_weights)
    path = f"{GOLDEN}/checkpoints/{family}-tiny"
    m32, m64 = module.load(path), module.load(path, dtype="float64")
    for key, value in m32.layers[0].items():
        assert value.dtype == np.float32 and m64.layers[0][key].dtype == np.float64
        np.testing.assert_array_equal(m64.layers[0][key], value.astype(np.float64))
    for model, dtype in ((m32, np.float32), (m64, np.float64)):
        cast = weights.cast(model, dtype)
        for key, value in cast.layers[-1].items():
            assert np.shares_memory(value, model.layers[-1][key]), key
    assert not np.shares_memory(weights.cast(m32, np.float64).layers[0][key], m32.layers[0][key])
    ids = np.random.default_rng(0).integers(5, 90, (2, 6))
    if family == "bert":
        outputs = [bert.forward(m, ids).sequence for m in (m32, m64)]
    else:
        outputs = [xlnet.forward(m, ids, mem_len=3).content for m in (m32, m64)]
    np.testing.assert_array_equal(*outputs)
    pytest.importorskip("safetensors", reason="the [convert] extra writes the transformers folder")
    from refimpl import convert
    convert.to_transformers(path, tmp_path / "hf")
    folder64 = module.load(tmp_path / "hf", dtype=np.float64)
    np.testing.assert_array_equal(folder64.layers[0][key], m64.layers[0][key])
    tuned = module.load(f"{path}-squad", dtype="float64")  # global_step (int64) and Adam slots too
    assert tuned.skipped and all(v.dtype == np.float64 for v in tuned.head_weights.values())
    for bad in ("bfloat16", np.int32, "float65"):
        with pytest.raises(ValueError, match="expected None .*float32 or float64"):
            module.load(path, dtype=bad)
