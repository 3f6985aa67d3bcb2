"""ops.erf (fdlibm's s_erf.c, vectorised) against math.erf, and gelu_erf built on it; gelu_tanh
against the tanh formula it rewrites.

The reference is math.erf, element by element (on glibc it is glibc's erf, itself derived from
fdlibm, with its polynomials evaluated in another order: that is where the 1-ulp differences
come from). Run with -s to see the histograms of ulp errors.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from refimpl import ops

SQRT_2 = math.sqrt(2.0)
# fdlibm's interval bounds of |x| (and the "1/0.35" it writes, a little below its real bound).
BOUNDS = [2.0 ** -1015, 2.0 ** -28, 0.84375, 1.25, 1 / 0.35, ops.ERFC_SPLIT, 6.0]
# erff's (FreeBSD's current s_erff.c): underflow guard, tiny, main path, near one, split, 1 from 4.
BOUNDS_FLOAT32 = [2.0 ** -119, 2.0 ** -14, 0.84375, 1.25, 1 / 0.35, 2.85715, 4.0, 6.0]


def neighbours(points, dtype, k: int = 8) -> np.ndarray:
    """Each point, its k float neighbours on both sides, and the same negated."""
    out = []
    for p in np.asarray(points, dtype):
        up = down = p
        out.append(p)
        for _ in range(k):
            up, down = np.nextafter(up, dtype(np.inf)), np.nextafter(down, dtype(-np.inf))
            out += [up, down]
    out = np.array(out, dtype)
    return np.concatenate([out, -out])


def float64_points() -> np.ndarray:
    """>= 10^6 finite float64 points: uniform in [-7, 7], log-spaced magnitudes from 1e-310
    to 30 of both signs, fdlibm's interval bounds and their neighbours, subnormals."""
    rng = np.random.default_rng(14)
    tiny = np.finfo(np.float64).smallest_normal
    magnitudes = np.geomspace(1e-310, 30.0, 200_000)
    subnormals = np.concatenate([
        np.arange(1, 1001) * np.finfo(np.float64).smallest_subnormal,  # the smallest ones
        rng.uniform(0.0, tiny, 10_000),
        neighbours([tiny], np.float64, 64)])
    points = np.concatenate([
        rng.uniform(-7.0, 7.0, 1_000_000),
        magnitudes, -magnitudes,
        neighbours(BOUNDS, np.float64, 64),
        subnormals, -subnormals])
    assert points.size >= 10 ** 6 and np.isfinite(points).all()
    return points


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many floats of a's dtype lie between a and b (0 when equal; +0 and -0 are equal)."""
    bits = {np.dtype(np.float64): np.int64, np.dtype(np.float32): np.int32}[a.dtype]
    ia = a.view(bits).astype(np.int64)
    ib = b.view(bits).astype(np.int64)
    lowest = np.iinfo(bits).min  # sign-magnitude bits -> a monotone integer line
    ia = np.where(ia < 0, lowest - ia, ia)
    ib = np.where(ib < 0, lowest - ib, ib)
    return np.abs(ia - ib)


def histogram(ulps: np.ndarray) -> dict:
    return {int(k): int(n) for k, n in enumerate(np.bincount(ulps)) if n}


def test_erf_float64_within_one_ulp_of_math_erf():
    x = float64_points()
    ours = ops.erf(x)
    ref = np.array([math.erf(v) for v in x.tolist()])
    assert ours.dtype == np.float64 and ours.shape == x.shape
    ulps = ulp_distance(ours, ref)
    print(f"\nfloat64 erf vs math.erf on {x.size} points, ulps: {histogram(ulps)}")
    worst = int(np.argmax(ulps))
    assert ulps.max() <= 1, (f"erf({x[worst]!r}) = {ours[worst]!r}, math.erf gives {ref[worst]!r}: "
                             f"{ulps[worst]} ulps; histogram {histogram(ulps)}")
    # Every branch of fdlibm is odd in x: the sign is exact.
    assert np.array_equal(ops.erf(-x), -ours)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_erf_special_values(dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 6.0, -6.0, 30.0, -1e30, 5.9], dtype)
    e = ops.erf(x)
    assert e.dtype == dtype
    assert e[0] == 0 and not np.signbit(e[0]) and e[1] == 0 and np.signbit(e[1])
    np.testing.assert_array_equal(e[2:4], [1.0, -1.0])
    assert np.isnan(e[4])
    np.testing.assert_array_equal(e[5:9], [1.0, -1.0, 1.0, -1.0])
    assert e[9] == dtype(math.erf(float(x[9])))
    sub = np.finfo(dtype).smallest_subnormal
    np.testing.assert_array_equal(ops.erf(np.array([sub, -sub], dtype)),
                                  np.array([math.erf(float(sub)), -math.erf(float(sub))], dtype))


def test_erf_shapes_and_inputs():
    assert ops.erf(np.zeros((0, 3))).shape == (0, 3)
    assert ops.erf(0.5) == math.erf(0.5) and ops.erf(0.5).shape == ()
    assert ops.erf(np.array([1, 2])).dtype == np.float64
    x = np.linspace(-3, 3, 7 * (2 * ops.BLOCK_BYTES // 8 // 7 + 3)).reshape(-1, 7, 1)
    assert x.size % (ops.BLOCK_BYTES // 8)  # blocks and a remainder
    np.testing.assert_array_equal(ops.erf(x), ops.erf(x.reshape(-1)).reshape(x.shape))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_erf_and_gelu_same_bits_in_any_blocks(dtype, monkeypatch):
    """erf and gelu_erf work in blocks, the main path first, the other paths' elements gathered
    afterwards; gelu_tanh in blocks too: the block size must not change a bit, in every path (main, near one, both
    tails, >= 6, tiny, subnormal, zeros, inf, nan) and with either sign."""
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.concatenate([np.linspace(-7, 7, 4001), np.geomspace(tiny, 1e-6, 300),
                        -np.geomspace(tiny, 1e-6, 300), [0.0, -0.0, np.inf, -np.inf, np.nan]])
    x = np.random.default_rng(0).permutation(x.astype(dtype))
    with np.errstate(over="ignore", invalid="ignore"):  # the tanh form's exp at -inf, inf/inf
        one_block = {f: f(x) for f in (ops.erf, ops.gelu_erf, ops.gelu_tanh)}
    assert np.isnan(one_block[ops.erf]).sum() == 1 and np.signbit(one_block[ops.erf][x == 0]).sum() == 1
    for block_bytes in (x.itemsize, 5 * x.itemsize, 1000):
        monkeypatch.setattr(ops, "BLOCK_BYTES", block_bytes)
        for f, expected in one_block.items():
            with np.errstate(over="ignore", invalid="ignore"):
                got = f(x)
            assert np.array_equal(got, expected, equal_nan=True), (f.__name__, block_bytes)
            assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_erf_float32_within_one_ulp_of_math_erf():
    """float32 follows FreeBSD's s_erff.c in float32 arithmetic: within 1 float32 ulp of math.erf
    rounded to float32, on >= 10^6 points with erff's interval bounds and fdlibm's, and
    subnormals (tools/erf_check.py checks every float32 up to 4.5)."""
    x64 = float64_points()
    x = np.concatenate([x64.astype(np.float32),
                        neighbours(BOUNDS_FLOAT32 + BOUNDS[1:], np.float32, 64),
                        np.arange(1, 1001, dtype=np.float32) * np.finfo(np.float32).smallest_subnormal])
    ours = ops.erf(x)
    assert ours.dtype == np.float32
    ref = np.array([math.erf(v) for v in x.astype(np.float64).tolist()]).astype(np.float32)
    ulps = ulp_distance(ours, ref)
    print(f"\nfloat32 erf vs float32(math.erf) on {x.size} points, float32 ulps: {histogram(ulps)}")
    assert ulps.max() <= 1, histogram(ulps)


def test_erf_check_tool_counts_every_float32_and_flags_a_wrong_erf(monkeypatch):
    """tools/erf_check.py (the exhaustive float32 check) on the first 2^16 float32 numbers from
    0.84375 on: every number counted once, none above 1 ulp; and a float32 erf moved by 2 ulps at
    one x in that range is reported, with its x."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools"))
    import erf_check
    start = np.float32(0.84375)
    end = (start.view(np.uint32) + np.uint32(2 ** 16 - 1)).view(np.float32)
    histogram, _, worst = erf_check.ulp_histogram(float(start), float(end), chunk=5000)
    assert sum(histogram.values()) == 2 ** 16 and histogram[">1"] == 0 and worst <= 1, histogram
    assert erf_check.main(["--start", str(start), "--end", str(end)]) == 0

    erf = ops.erf
    bad = np.float32(0.846)

    def erf_off_at_bad(x):
        e = erf(x)
        if x.dtype == np.float32:
            e[x == bad] = np.nextafter(np.nextafter(e[x == bad], np.float32(0)), np.float32(0))
        return e

    monkeypatch.setattr(ops, "erf", erf_off_at_bad)
    histogram, worst_x, worst = erf_check.ulp_histogram(float(start), float(end), chunk=5000)
    # 2 ulps moved: 2 or 3 ulps from the reference, as erf there was 0 or 1 ulp off
    assert histogram[">1"] == 1 and worst in (2, 3) and worst_x == float(bad)
    assert erf_check.main(["--start", str(start), "--end", str(end)]) == 1
    with pytest.raises(ValueError, match="start=-1.0"):
        erf_check.ulp_histogram(-1.0, 1.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gelu_erf_matches_math_erf_formula(dtype):
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(50_000) * 3, rng.uniform(-12, 12, 50_000),
                        [0.0, -0.0, 40.0, -40.0]]).astype(dtype).reshape(-1, 4)
    ours = ops.gelu_erf(x)
    assert ours.dtype == dtype and ours.shape == x.shape
    # The element-by-element formula gelu_erf had before the vectorised erf.
    e = np.array([math.erf(v / SQRT_2) for v in x.astype(np.float64).ravel().tolist()])
    ref = dtype(0.5) * x * (dtype(1.0) + e.astype(dtype).reshape(x.shape))
    # erf may be 1 ulp off (float64), or in float32 1 ulp off after x / sqrt(2) rounded to
    # float32 (as transformers computes it): 0.5 |x| eps more.
    eps = np.finfo(dtype).eps
    bound = dtype(0.5) * np.abs(x) * eps + 2 * np.spacing(np.abs(ref))
    assert (np.abs(ours - ref) <= bound).all(), np.max(np.abs(ours - ref) - bound)
    print(f"\ngelu_erf {np.dtype(dtype).name}: {np.mean(ours == ref):.6f} of {x.size} equal "
          "to the math.erf formula")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gelu_tanh_is_the_tanh_formula(dtype):
    """gelu_tanh computes x / (1 + exp(-2y)); the originals write 0.5 x (1 + tanh(y)). Against
    the tanh form in long double, the error is within 2 eps |x| (eps of x's dtype), the
    rounding error the tanh form itself makes; the extremes give what the tanh form gives."""
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal(100_000) * 2, rng.uniform(-12, 12, 100_000),
                        np.geomspace(1e-30, 1e3, 1000), -np.geomspace(1e-30, 1e3, 1000)]).astype(dtype)
    ours = ops.gelu_tanh(x)
    assert ours.dtype == dtype
    xl = x.astype(np.longdouble)
    y = np.longdouble(ops.SQRT_2_OVER_PI) * (xl + np.longdouble(0.044715) * xl * xl * xl)
    ref = np.longdouble(0.5) * xl * (1 + np.tanh(y))
    err = np.abs(ours.astype(np.longdouble) - ref)
    bound = 2 * np.finfo(dtype).eps * np.maximum(np.abs(xl), np.finfo(dtype).tiny)
    assert (err <= bound).all(), (x[np.argmax(err / bound)], float(np.max(err / bound)))
    # x^3 overflows at -1e30 and inf (in either form); -inf gives 0.5 * -inf * 0 = nan in either
    with np.errstate(over="ignore", invalid="ignore"):
        special = ops.gelu_tanh(np.array([0.0, -0.0, -40.0, -1e30, 40.0, np.inf, -np.inf, np.nan],
                                         dtype))
    np.testing.assert_array_equal(special[:6], [0.0, -0.0, -0.0, -0.0, 40.0, np.inf])
    assert np.signbit(special[1:4]).all() and np.isnan(special[6:]).all()
