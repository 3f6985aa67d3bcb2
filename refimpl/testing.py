"""For pytest users: check a port's tensors against refimpl's in one call.

    from refimpl.testing import assert_matches
    assert_matches("golden/cases/xlnet-run-default", my_port_tensors)      # a dict or an .npz
    assert_matches("golden/cases/xlnet-run-default", my_bf16_tensors, budget="bfloat16")

The AssertionError's message is the head of `refimpl compare`'s report: the first divergence,
its errors and tolerance, and the worst element with both values at full precision.
"""
from __future__ import annotations

import os

from refimpl import compare, golden


def _tensors(source, what: str) -> tuple[dict, dict]:
    """(tensors, tolerances) from a case folder, an .npz path or a dict of arrays."""
    if isinstance(source, dict):
        return source, {}
    if isinstance(source, (str, os.PathLike)):
        return golden.read_tensors(source)
    raise TypeError(f"{what}: expected a golden case folder, an .npz path or a dict of arrays, "
                    f"got {type(source).__name__}")


def assert_matches(expected, actual, *, rtol: float | None = None, atol: float | None = None,
                   precision: str | None = None, only=(), skip=(), allow_missing: bool = False,
                   tolerances: dict | None = None, budget: str | None = None,
                   budgets: dict | None = None) -> compare.Report:
    """Raise AssertionError unless every tensor of `expected` (a case folder, an .npz or a dict)
    is matched by `actual` (an .npz or a dict of arrays) within tolerance, as `refimpl compare`
    decides (same options; a case folder's tolerances apply unless `tolerances` is given).
    Names missing from `actual` fail unless allow_missing. Returns the report.
    budget: "float32", "bfloat16" or "float16": tolerance = compare.BUDGET_K x the error budget
    at that precision, from the case folder `expected` (or `budgets`, as compare.measure_budgets
    returns them, with a dict `expected`), as `refimpl compare --budget PRECISION`."""
    expected_tensors, case_tolerances = _tensors(expected, "expected")
    actual_tensors, _ = _tensors(actual, "actual")
    if budget is not None and budgets is None:
        if isinstance(expected, dict):
            raise TypeError("budget= with a dict `expected`: pass its budgets= too (or a case folder)")
        budgets = golden.read_budgets(expected)
    report = compare.compare(expected_tensors, actual_tensors,
                             case_tolerances if tolerances is None else tolerances, rtol, atol,
                             allow_missing, precision, tuple(only), tuple(skip),
                             budgets, budget)
    if report.exit_code:
        raise AssertionError(report.head())
    return report
