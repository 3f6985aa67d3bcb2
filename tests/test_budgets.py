"""Error budgets (refimpl/compare.py, issue 13): telling rounding from a bug.

1. The metric by hand: scale, error, the unit-roundoff floor, values beyond a precision's range.
2. The shipped cases store budgets for every float tensor at float32, bfloat16 and float16, and
   refimpl's own runs at those precisions are within them (golden regression: the budgets were
   made by `python tools/make_golden.py --budgets`, recorded in each case.json).
3. Acceptance: correct independent ports pass with --budget: transformers in float32, bfloat16
   and float16 on every shipped case it can run; the porting drill in float32 and in
   ml_dtypes' bfloat16 (tests/budget_ports.py). The Keras ports: tests/test_budgets_keras.py.
4. Every injected bug of the porting drill is named at its first divergence with --budget, in
   float32 (the LayerNorm-epsilon bug too, which the default float32 tolerance names one layer
   late) and in bfloat16, except the bugs listed in BFLOAT16_EXCEPTIONS, each with its measured
   reason.
5. The command line and assert_matches.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import budget_ports as ports
import porting_drill as drill
from refimpl import compare, golden, run
from refimpl.testing import assert_matches

GOLDEN = golden.default_golden_dir()
K = compare.BUDGET_K
MODEL_CASES = ports.shipped_cases()

# Bugs the bfloat16 drill does not name at their float64 first divergence, measured:
# bug -> (where it is named: a trace name or None for nowhere, why)
BFLOAT16_EXCEPTIONS = {
    "layernorm_eps_1e-5": (None, "epsilon 1e-5 against row variances of 0.17-0.35 moves "
                           "Embedding-Norm by at most 2.3e-5 (|a - e| / (|e| + s)); bfloat16 "
                           "rounds by up to 3.9e-3 per value: the bug is 0.6% of one rounding, "
                           "and no tolerance can tell it from rounding"),
    "gelu_erf": (None, "the exact and tanh GELUs move layer 1's FeedForward by at most 6.3e-4, "
                 "median 7.6e-5 (|a - e| / (|e| + s)): a sixth of one bfloat16 rounding at most"),
    "pooler_last_token": ("NSP-Dense", "the first and last tokens' final states of the tiny "
                          "model differ by 24% relative, 5.0 bfloat16 budgets of Extract (< K = "
                          "8); the pooler's tanh(dense) over them, NSP-Dense, is 11 budgets off"),
}


# --- 1. the metric --------------------------------------------------------------------------------
def test_scale_is_the_median_size_or_the_mean_where_the_median_is_zero():
    assert compare.budget_scale(np.array([1.0, -2.0, 3.0, -40.0, 5.0])) == 3.0
    assert compare.budget_scale(np.array([0.0, 0.0, 0.0, 0.5, 0.3])) == pytest.approx(0.16)
    assert compare.budget_scale(np.array([np.inf, 2.0, -4.0, np.nan])) == 3.0
    assert compare.budget_scale(np.zeros(0)) == 0.0
    # a finfo.min mask constant counts as float16's largest number, not as 1.8e308
    assert compare.budget_scale(np.array([1.0, -np.finfo(np.float64).max, -np.finfo(np.float64).max])) == 65504.0


def test_error_is_relative_with_the_scale_below_it():
    e = np.array([10.0, 0.0, -1.0])
    a = np.array([10.5, 0.2, -1.0])
    # |a - e| / (|e| + s) with s = 1: 0.5/11, 0.2/1, 0
    assert compare.budget_error(e, a, 1.0) == pytest.approx(0.2)
    assert compare.budget_error(e, e, 1.0) == 0.0
    assert compare.budget_error(e, np.array([10.0, np.nan, -1.0]), 1.0) == np.inf
    assert compare.budget_error(np.array([0.0]), np.array([1e-3]), 0.0) == np.inf


def test_values_beyond_the_precisions_range_are_its_largest_number():
    """A float32 port's finfo.min mask is -3.4e38, float64's -1.8e308: not an error."""
    e = np.array([1.0, -np.finfo(np.float64).max])
    a = np.array([1.0, np.finfo(np.float32).min], np.float32)
    assert compare.budget_error(e, a, 1.0, "float32") == 0.0
    assert compare.budget_error(e, a, 1.0, "float64") == pytest.approx(1.0)


def test_tolerance_is_k_budgets_with_the_unit_roundoff_as_floor():
    budgets = {"scales": {"x": 2.0, "y": 1.0}, "bfloat16": {"x": 0.05, "y": 1e-9}, "float32": {}}
    tol = compare.budget_tolerance("x", budgets, "bfloat16")
    assert (tol.rtol, tol.atol, tol.budget) == (K * 0.05, K * 0.05 * 2.0, 0.05)
    assert compare.budget_tolerance("y", budgets, "bfloat16").budget == 2.0 ** -8
    assert compare.budget_tolerance("x", budgets, "float32") is None  # no budget stored
    with pytest.raises(ValueError, match="budget precision 'float64'"):
        compare.budget_tolerance("x", budgets, "float64")


def test_compare_with_budgets_reports_error_over_budget():
    expected = {"x": np.array([1.0, 2.0, 3.0]), "n": np.array([1, 2])}
    budgets = compare.measure_budgets(expected, {"bfloat16": {"x": np.array([1.0, 2.0, 3.03])}})
    assert budgets["bfloat16"] == {"x": pytest.approx(0.03 / 5.0)} and set(budgets["scales"]) == {"x"}
    inside = compare.compare(expected, {"x": np.array([1.0, 2.0, 3.1]), "n": np.array([1, 2])},
                             budgets=budgets, budget="bfloat16")
    row = inside.rows[0]
    assert inside.exit_code == 0 and row.err_budget == pytest.approx((0.1 / 5.0) / 0.006)
    assert "err/budget" in inside.format() and "budget bfloat16: 8 x 0.006" in str(row.tolerance)
    outside = compare.compare(expected, {"x": np.array([1.0, 2.0, 3.3]), "n": np.array([1, 2])},
                              budgets=budgets, budget="bfloat16")
    assert outside.exit_code == 1 and outside.first_divergence.name == "x"
    assert "error/budget 10" in outside.head()
    with pytest.raises(ValueError, match="budget given without budgets"):
        compare.compare(expected, expected, budget="bfloat16")


# --- 2. the shipped budgets -----------------------------------------------------------------------
def _case(name):
    folder = os.path.join(GOLDEN, "cases", name)
    return folder, golden.read_case(folder)


@pytest.mark.parametrize("name", MODEL_CASES)
def test_every_float_tensor_has_a_budget_at_every_precision(name):
    folder, case = _case(name)
    budgets = golden.read_budgets(folder)
    outputs = golden.read_npz(os.path.join(folder, golden.OUTPUTS))
    floats = [n for n, v in outputs.items() if v.dtype.kind == "f"]
    assert set(budgets["scales"]) == set(floats)
    for p in compare.BUDGET_PRECISIONS:
        assert set(budgets[p]) == set(floats), p
    assert "tools/make_golden.py" in budgets["command"] and budgets["how"] == golden.BUDGETS_HOW
    # the precisions in their order: float32 budgets far below float16's, below bfloat16's
    median = {p: np.median([v for v in budgets[p].values() if v is not None]) for p in budgets
              if p in compare.BUDGET_PRECISIONS}
    assert median["float32"] * 100 < median["float16"] < median["bfloat16"]


def test_pos_embd_cases_have_no_budgets():
    folder, _ = _case("pos-embd-add")
    with pytest.raises(golden.GoldenError, match="budgets are measured for BERT and XLNet cases only"):
        golden.read_budgets(folder)


@pytest.mark.parametrize("name", MODEL_CASES)
def test_refimpl_runs_are_within_their_own_stored_budgets(name):
    """Golden regression of the budgets: refimpl's emulated runs today reach error/budget <= 1
    (up to the 3 digits stored) on every tensor, and most tensors sit near 1."""
    folder, case = _case(name)
    inputs = golden.read_npz(os.path.join(folder, golden.INPUTS))
    expected, tolerances = golden.read_tensors(folder)
    budgets = golden.read_budgets(folder)
    for p in compare.BUDGET_PRECISIONS:
        got = run.compute(case["model"], os.path.join(GOLDEN, case["checkpoint"]), inputs,
                          case["options"], case["dialect"], p)
        report = compare.compare(expected, got, tolerances, budgets=budgets, budget=p)
        ratios = [r.err_budget for r in report.compared if r.err_budget is not None]
        assert report.exit_code == 0 and max(ratios) <= 1.01, (p, report.head())


def test_a_bfloat16_run_is_outside_the_float32_budget():
    """Budgets are per precision: the bfloat16 run fails float32's, a float32 run passes
    bfloat16's (less error than a 16-bit port is not a bug)."""
    folder, case = _case("xlnet-run-default")
    inputs = golden.read_npz(os.path.join(folder, golden.INPUTS))
    expected, _ = golden.read_tensors(folder)
    budgets = golden.read_budgets(folder)
    checkpoint = os.path.join(GOLDEN, case["checkpoint"])
    low = run.compute("xlnet", checkpoint, inputs, dialect="tf", dtype="bfloat16")
    single = run.compute("xlnet", checkpoint, inputs, dialect="tf", dtype="float32")
    assert compare.compare(expected, low, budgets=budgets, budget="float32").exit_code == 1
    assert compare.compare(expected, single, budgets=budgets, budget="bfloat16").exit_code == 0


# --- 3. correct ports pass ------------------------------------------------------------------------
TRANSFORMERS_CASES = [n for n in MODEL_CASES if not ports.transformers_skip(n)]


def test_transformers_skips_are_few_and_explained():
    skipped = {n: ports.transformers_skip(n) for n in MODEL_CASES if ports.transformers_skip(n)}
    assert len(TRANSFORMERS_CASES) >= 20 and all(len(reason) > 20 for reason in skipped.values())


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("name", TRANSFORMERS_CASES)
def test_transformers_passes_every_shipped_case_within_budget(name, precision):
    pytest.importorskip("transformers", reason="transformers ([test] extra)")
    report = ports.transformers_report(name, precision)
    assert report.exit_code in (0, 2) and not report.mismatches, report.head()
    assert len(report.compared) >= 0.75 * len(report.rows), "most tensors are compared"
    assert all(r.err_budget is not None for r in report.compared if r.tolerance.budget is not None)
    worst, where = ports.worst(report)
    # Headroom below K. Measured at most 3.4 with issue 13's budgets. Issue 14 changed refimpl's
    # float32 rounding (head projections as one matmul, GELU as x / (1 + exp(-2y))) and the
    # budgets were measured again: the worst is now 4.2, at xlnet-uni-mems-tf
    # segment-0/Attention-Normal-3, where refimpl's own error fell from 1.1e-6 to 7.0e-7 while
    # its neighbours stayed at 0.8-1.1e-6 (one run's rounding is a noisy measure of a budget).
    assert worst < 0.6 * K, (worst, where)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("case_name", list(drill.CASES))
def test_the_faithful_drill_passes_within_budget(case_name, precision):
    pytest.importorskip("ml_dtypes", reason="the drill's bfloat16 arithmetic")
    report = ports.drill_report(case_name, precision)
    assert report.exit_code == 0, report.head()
    assert len(report.compared) == len(report.rows)
    assert ports.worst(report)[0] < K / 2


# --- 4. bugs are named ----------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("bug", list(drill.BUGS))
def test_each_drill_bug_is_named_at_its_first_divergence_with_budgets(bug, precision):
    pytest.importorskip("ml_dtypes", reason="the drill's bfloat16 arithmetic")
    b = drill.BUGS[bug]
    report = ports.drill_report(b.case, precision, {bug})
    first = report.first_divergence
    expected_name = b.first
    if precision == "bfloat16" and bug in BFLOAT16_EXCEPTIONS:
        expected_name = BFLOAT16_EXCEPTIONS[bug][0]
    if expected_name is None:
        assert report.exit_code == 0 and first is None
        assert ports.worst(report)[0] < K
        return
    assert report.exit_code == 1 and first is not None, report.format(problems_only=True)
    assert first.name == expected_name
    assert first.status == "SHAPE" or first.err_budget > K


def test_the_float32_epsilon_bug_is_named_at_the_first_layernorm_only_with_budgets():
    """The issue's example: the default float32 tolerance names it one layer late (measured
    err/tol 0.28 at Embedding-Norm); the float32 budget names Embedding-Norm at 200 budgets."""
    expected = drill.reference_tensors("bert")
    actual = drill.drill_tensors("bert", np.float32, {"layernorm_eps_1e-5"})
    default = compare.compare(expected, actual)
    budgeted = compare.compare(expected, actual, budgets=ports.drill_budgets("bert"), budget="float32")
    assert default.first_divergence.name != "Embedding-Norm"
    assert budgeted.first_divergence.name == "Embedding-Norm"
    assert budgeted.first_divergence.err_budget > 50


def test_the_bfloat16_exceptions_are_as_measured():
    """The reasons' numbers: the epsilon bug's and the erf GELU's effect stays below one
    rounding, and the pooler bug's Extract is between 1 and K budgets off."""
    pytest.importorskip("ml_dtypes", reason="the drill's bfloat16 arithmetic")
    expected = drill.reference_tensors("bert")
    for bug, name, at_most in [("layernorm_eps_1e-5", "Embedding-Norm", 2.4e-5),
                               ("gelu_erf", "Encoder-1-FeedForward", 6.4e-4)]:
        e = expected[name]
        moved = compare.budget_error(e, drill.drill_tensors("bert", np.float64, {bug})[name],
                                     compare.budget_scale(e))
        assert at_most / 2 < moved < at_most < 2 ** -8 / 6, (bug, moved)
    pooled = ports.drill_report("bert", "bfloat16", {"pooler_last_token"})
    extract = next(r for r in pooled.rows if r.name == "Extract")
    assert 1 < extract.err_budget < K


# --- 5. command line, assert_matches --------------------------------------------------------------
def _refimpl(*args, cwd=None):
    exe = shutil.which("refimpl") or os.path.join(os.path.dirname(sys.executable), "refimpl")
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def bf16_port(tmp_path_factory):
    """transformers' bfloat16 tensors of xlnet-run-default as float32 arrays in an .npz."""
    pytest.importorskip("transformers", reason="transformers ([test] extra)")
    path = tmp_path_factory.mktemp("bf16") / "port.npz"
    golden.write_npz(path, ports.transformers_tensors("xlnet-run-default", "bfloat16"))
    return str(path)


def test_cli_budget_tells_bfloat16_from_the_values_of_float32_arrays(bf16_port):
    case = os.path.join(GOLDEN, "cases", "xlnet-run-default")
    done = _refimpl("compare", case, bf16_port, "--budget", "--allow-missing")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# --budget: ACTUAL's precision is bfloat16" in done.stdout
    assert "err/budget" in done.stdout and "first divergence: none" in done.stdout
    # without --budget: float32's default tolerance, which a bfloat16 port cannot meet
    assert _refimpl("compare", case, bf16_port, "--allow-missing").returncode == 1
    # the wrong precision named explicitly: float32 budgets, exit 1
    assert _refimpl("compare", case, bf16_port, "--budget", "float32", "--allow-missing").returncode == 1


def test_cli_budget_errors(tmp_path, bf16_port):
    plain = tmp_path / "expected.npz"
    golden.write_npz(plain, golden.read_npz(os.path.join(GOLDEN, "cases", "xlnet-run-default", "outputs.npz")))
    done = _refimpl("compare", str(plain), bf16_port, "--budget")
    assert done.returncode == 2 and "--budget needs a golden case folder as EXPECTED" in done.stderr
    done = _refimpl("compare", os.path.join(GOLDEN, "cases", "pos-embd-add"), bf16_port, "--budget")
    assert done.returncode == 2 and "budgets are measured for BERT and XLNet cases only" in done.stderr
    case = os.path.join(GOLDEN, "cases", "xlnet-run-default")
    done = _refimpl("compare", case, os.path.join(case, "outputs.npz"), "--budget")
    assert done.returncode == 2 and "ACTUAL is float64" in done.stderr
    broken = tmp_path / "broken"
    shutil.copytree(case, broken)
    meta = json.loads((broken / "case.json").read_text())
    meta["budgets"]["bfloat16"] = {"content": "small"}
    meta["name"] = "broken"
    (broken / "case.json").write_text(json.dumps(meta))
    done = _refimpl("compare", str(broken), bf16_port, "--budget")
    assert done.returncode == 2 and "malformed budgets" in done.stderr


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cli_run_in_emulated_precision_checks_the_default_case_within_budgets(dtype):
    done = _refimpl("run", "--dtype", dtype)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"within 8 x its {dtype} budgets" in done.stdout


def test_golden_make_refuses_an_emulated_dtype(tmp_path):
    inputs = tmp_path / "in.npz"
    golden.write_npz(inputs, {"token_ids": np.array([[5, 6, 7]])})
    done = _refimpl("golden", "make", str(tmp_path / "case"), "--model", "xlnet", "--checkpoint",
                    os.path.join(GOLDEN, "checkpoints", "xlnet-tiny"), "--inputs", str(inputs),
                    "--dtype", "bfloat16")
    assert done.returncode == 2 and "golden cases are computed in float64" in done.stderr


def test_golden_make_stores_budgets(tmp_path):
    inputs = tmp_path / "in.npz"
    golden.write_npz(inputs, {"token_ids": np.array([[5, 6, 7, 8]])})
    done = _refimpl("golden", "make", str(tmp_path / "case"), "--model", "bert", "--checkpoint",
                    os.path.join(GOLDEN, "checkpoints", "bert-tiny"), "--inputs", str(inputs))
    assert done.returncode == 0, done.stderr
    budgets = golden.read_budgets(str(tmp_path / "case"))
    assert budgets["bfloat16"]["sequence"] > budgets["float16"]["sequence"] > budgets["float32"]["sequence"] > 0


def test_assert_matches_with_a_budget(bf16_port):
    case = os.path.join(GOLDEN, "cases", "xlnet-run-default")
    report = assert_matches(case, bf16_port, budget="bfloat16", allow_missing=True)
    assert report.exit_code == 0
    with pytest.raises(AssertionError, match="error/budget"):
        assert_matches(case, bf16_port, budget="float32", allow_missing=True)
    with pytest.raises(TypeError, match="pass its budgets="):
        assert_matches(golden.read_npz(os.path.join(case, "outputs.npz")), bf16_port, budget="bfloat16")


def test_bfloat16_saved_by_ml_dtypes_gets_a_hint(tmp_path):
    """np.savez stores ml_dtypes' bfloat16 as 2-byte raw values ('|V2'): unusable, with a hint."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    path = tmp_path / "bf16.npz"
    np.savez(path, content=np.ones((1, 2, 3), ml_dtypes.bfloat16))
    expected = {"content": np.ones((1, 2, 3))}
    report = compare.compare(expected, golden.read_npz(path))
    assert report.exit_code == 2 and "save bfloat16 tensors as float32" in report.rows[0].detail
