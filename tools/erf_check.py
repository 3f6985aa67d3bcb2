"""Check refimpl's float32 erf on every float32 number of a range, not a sample.

    python tools/erf_check.py [--start 0] [--end 4.5] [--chunk 4194304]

Every float32 x in [start, end] (all of them: 1.08 billion from 0 to 4.5; about 80 s here) goes
through `ops.erf` in float32 and is compared with erf in float64 (`ops.erf` on the same x as
float64, within 1 float64 ulp of math.erf: tests/test_erf.py) rounded to float32. Prints the
histogram of float32 ulp distances and the worst x; exits 1 if any distance exceeds 1 ulp.
erf is odd bit for bit, so the positive half decides (tests check the sign on samples); from
4 on float32 erf is 1, as erf(4) = 1 - 1.5e-8 rounds to 1.

The float64 reference can be 1 float64 ulp off; that moves its float32 rounding only when the
exact value lies within 2^-53 relative of a float32 rounding boundary, a handful of the billion
points at most, and then by one ulp. The per-sample test in tests/test_erf.py uses math.erf
itself.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from refimpl import ops


def ulp_histogram(start: float, end: float, chunk: int = 1 << 22):
    """(histogram {ulps: count}, worst x, its ulps) over every float32 in [start, end], start >= 0."""
    if not 0 <= start <= end:
        raise ValueError(f"expected 0 <= start <= end, got start={start!r}, end={end!r}")
    first = int(np.array(start, np.float32).view(np.uint32))
    last = int(np.array(end, np.float32).view(np.uint32))
    counts = np.zeros(3, np.int64)  # 0, 1, more than 1 ulp
    worst_x, worst_ulps = float(start), -1
    for bits in range(first, last + 1, chunk):
        x = np.arange(bits, min(last + 1, bits + chunk), dtype=np.uint32).view(np.float32)
        ours = ops.erf(x)
        ref = ops.erf(x.astype(np.float64)).astype(np.float32)
        ulps = np.abs(ours.view(np.int32).astype(np.int64) - ref.view(np.int32).astype(np.int64))
        counts += np.bincount(np.minimum(ulps, 2), minlength=3)
        i = int(np.argmax(ulps))
        if ulps[i] > worst_ulps:
            worst_x, worst_ulps = float(x[i]), int(ulps[i])
    histogram = {"0": int(counts[0]), "1": int(counts[1]), ">1": int(counts[2])}
    return histogram, worst_x, worst_ulps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", type=float, default=0.0)
    parser.add_argument("--end", type=float, default=4.5)
    parser.add_argument("--chunk", type=int, default=1 << 22, help="float32 numbers per step")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    histogram, worst_x, worst_ulps = ulp_histogram(args.start, args.end, args.chunk)
    total = sum(histogram.values())
    print(f"float32 erf on every float32 in [{args.start}, {args.end}] ({total} numbers, "
          f"{time.perf_counter() - began:.0f} s): ulps {histogram}; worst {worst_ulps} ulp at "
          f"x = {worst_x!r}")
    return 0 if histogram[">1"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
