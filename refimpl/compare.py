"""The comparison report: named tensors of a port (ACTUAL) against expected ones, in network order.

    report = compare.compare(expected, actual, tolerances=case["tolerances"])
    print(report.format()); report.exit_code; report.first_divergence; report.to_json()

EXPECTED's order is the network's order (refimpl records every trace entry where it is
computed), so the first row outside tolerance is where the port first goes wrong.

Per tensor (a Row): shape first, then, in float64 arithmetic,
  abs err   |a - e| per element; max, mean, median and 99th percentile over the tensor;
  rel err   |a - e| / max(|e|, atol / rtol): relative where |e| is large enough for rtol to
            matter, measured against the atol / rtol scale where e is (near) zero, so it stays
            finite where e = 0 (with rtol = 0 it is |a - e| / max(|e|, atol), and 0 where both
            are 0);
  err/tol   max of |a - e| / (atol + rtol * |e|): how close the tensor is to failing (1 = at
            the tolerance); it shows a bug growing before it crosses the line;
  outside   the count of elements with |a - e| > atol + rtol * |e|, and where the worst one
            (largest err/tol) is, with both values printed at full precision (repr of the float).
NaN where NaN is expected and the same infinity where an infinity is expected agree; NaN or Inf
in ACTUAL where EXPECTED is finite is always outside tolerance, and counted.

Tolerance of a tensor: the first per-name override of the case (fnmatch pattern, with its
reason) for the precision, else the default (rtol, atol) of the precision: the LOWER of the two
sides' (a float32 port checked against float64 golden values gets float32's tolerance, and so
does a float64 port checked against float32 values), or the precision given explicitly.

Exit codes (`Report.exit_code`): 1 if any compared tensor is outside tolerance or has another
shape, whatever else is missing; otherwise 2 if the input is unusable (nothing in common,
a non-numeric tensor) or names of EXPECTED are missing from ACTUAL (unless allow_missing);
otherwise 0. Missing names are listed as "not checked" and never hide a mismatch.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import math

import numpy as np

from refimpl.precision import ROUND, finfo_max

# (rtol, atol) by precision, for tensors compared with values of at least that precision.
DEFAULT_TOLERANCES = {
    # Recomputing float64 golden values: other BLAS kernels, other summation orders; measured
    # differences are ~1e-15 relative, amplified a little through LayerNorm and softmax.
    "float64": {"rtol": 1e-7, "atol": 1e-9},
    # A float32 implementation against float64 golden values: float32 rounding (eps 1.2e-7)
    # accumulated over a few layers of tiny models; refimpl's own float32 path stays ~1e-6.
    "float32": {"rtol": 1e-4, "atol": 2e-5},
    # Half precision: rounding at 1e-3 (float16) and 8e-3 (bfloat16) relative per op.
    "float16": {"rtol": 2e-2, "atol": 2e-2},
    "bfloat16": {"rtol": 5e-2, "atol": 5e-2},
}
# Lowest first: the order in which "the lower precision of the two sides" is chosen.
PRECISIONS = ("bfloat16", "float16", "float32", "float64")


@dataclasses.dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    reason: str = "default"

    budget: float | None = None  # the error budget B when the tolerance is K x B (see budgets)

    def __str__(self) -> str:
        return f"rtol={self.rtol:g} atol={self.atol:g} ({self.reason})"


def precision_of(dtype) -> str:
    """"float64", "float32", "float16" or "bfloat16" for a floating dtype (ml_dtypes' bfloat16
    included); integer and boolean tensors are exact: "float64"."""
    dtype = np.dtype(dtype)
    if dtype.name in PRECISIONS:
        return dtype.name
    if dtype.kind == "f" and dtype.itemsize < 4:
        return "float16"
    return "float64"


def lower_precision(*precisions: str) -> str:
    return min(precisions, key=PRECISIONS.index)


def tolerance_for(name: str, precision: str, tolerances: dict | None = None) -> Tolerance:
    """The tolerance for tensor `name` at `precision`: the first matching override of
    `tolerances` (a case's {"defaults": {...}, "overrides": [{"name", "rtol", "atol", "reason",
    optional "dtype"}]}), else the default for the precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    tolerances = tolerances or {}
    for override in tolerances.get("overrides", []):
        if fnmatch.fnmatchcase(name, override["name"]) and override.get("dtype", precision) == precision:
            return Tolerance(override["rtol"], override["atol"], override["reason"])
    entry = {**DEFAULT_TOLERANCES, **tolerances.get("defaults", {})}[precision]
    return Tolerance(entry["rtol"], entry["atol"], f"default for {precision}")


# --- error budgets ------------------------------------------------------------------------
# A budget answers "bug or rounding?": the error that refimpl's own run at a precision (float32,
# or bfloat16 / float16 emulated: refimpl/precision.py) makes against float64, per tensor, on
# the case's inputs. A correct port at that precision rounds as often, in other places and
# orders: its error is of the same size, a few times larger at most; a bug is not bounded so.
#   scale s   median |e| of the float64 tensor e (its mean where the median is 0, as in
#             probabilities of mostly masked keys): the size of its typical element. Values
#             beyond float16's range count as 65504: they are mask constants (finfo.min), not sizes
#   error     max over elements of |a - e| / (|e| + s): relative error, measured against the
#             typical size where e is near 0 (cancellation in a sum makes any relative error
#             of such elements meaningless). e beyond the precision's range is taken as its
#             largest number (a float32 port's finfo.min is float32's, not float64's)
#   budget B  the error of refimpl's run at the precision, at least the precision's unit
#             roundoff (a tensor refimpl happens to compute exactly still has one rounding)
# Tolerance with a budget: |a - e| <= BUDGET_K * B * (|e| + s), per element.
# BUDGET_K: measured (tests/test_budgets.py, tests/budget_ports.py): correct independent ports
# reach error / budget of at most 3.4 on any tensor (transformers in float32, bfloat16 and
# float16 on 22 shipped cases; the porting drill in float32 and in ml_dtypes' bfloat16 on its
# 6 cases; the Keras ports in float32). The drill's bugs reach 10 to 1e8 budgets at their first
# tensor (the smallest: a missing MLM bias in bfloat16, 10.1; pooler on the last token in
# bfloat16, 5.0 at Extract, is named at NSP-Dense, 11). 8 sits between: 2.3x the largest
# correct port, below the smallest bug named.
BUDGET_K = 8.0
BUDGET_PRECISIONS = ("float32", "bfloat16", "float16")
UNIT_ROUNDOFF = {"float64": 2.0 ** -53, "float32": 2.0 ** -24, "float16": 2.0 ** -11,
                 "bfloat16": 2.0 ** -8}


def within_range(expected, precision: str) -> np.ndarray:
    """expected (float64) with values beyond the precision's largest finite number clipped to it."""
    e = np.asarray(expected, dtype=np.float64)
    largest = finfo_max(precision)
    return np.clip(e, -largest, largest) if np.abs(e[np.isfinite(e)]).max(initial=0) > largest else e


def budget_scale(expected) -> float:
    """The scale s of a float64 tensor (see above): median |e| (mean where that is 0) over the
    finite elements, values beyond float16's range counted as 65504."""
    e = np.abs(within_range(expected, "float16"))
    e = e[np.isfinite(e)]
    if e.size == 0:
        return 0.0
    return float(np.median(e) or e.mean())


def budget_error(expected, actual, scale: float, precision: str = "float64") -> float:
    """max |a - e| / (|e| + scale) over the finite elements of e, e clipped to the precision's
    range (inf where a is not finite there; 0 for an empty tensor)."""
    e, a = within_range(expected, precision), np.asarray(actual, dtype=np.float64)
    finite = np.isfinite(e)
    if not finite.any():
        return 0.0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        err = np.abs(a[finite] - e[finite])
        err[np.isnan(err)] = np.inf
        denominator = np.abs(e[finite]) + scale
        ratio = np.divide(err, denominator, out=np.zeros_like(err), where=err > 0)
        ratio[(err > 0) & (denominator == 0)] = np.inf
    return float(ratio.max())


def measure_budgets(expected: dict, runs: dict) -> dict:
    """The budgets of a case: expected {name: float64 tensor}, runs {precision: {name: tensor}}
    (refimpl's runs at each precision) -> {"scales": {name: s}, precision: {name: B}} with
    B before the unit-roundoff floor (applied when used). Integer tensors (top-k indices) get
    no budget: they are exact, unless refimpl's own run at a precision changes them (near-ties
    ranked otherwise), listed then under "discrete": {precision: {name: fraction changed}}."""
    floats = [n for n, e in expected.items() if np.asarray(e).dtype.kind == "f"]
    scales = {n: budget_scale(expected[n]) for n in floats}
    out = {"scales": scales, "discrete": {}}
    for precision, tensors in runs.items():
        out[precision] = {n: budget_error(expected[n], tensors[n], scales[n], precision)
                          for n in floats if n in tensors}
        changed = {n: float(np.mean(np.asarray(tensors[n]) != np.asarray(e)))
                   for n, e in expected.items() if n not in scales and n in tensors
                   and np.shape(tensors[n]) == np.shape(e) and np.asarray(e).size}
        changed = {n: f for n, f in changed.items() if f > 0}
        if changed:
            out["discrete"][precision] = changed
    return out


def budget_tolerance(name: str, budgets: dict, precision: str, k: float = BUDGET_K) -> Tolerance | None:
    """Tolerance K x B for tensor `name` at `precision` from a case's budgets, or None when the
    case stores no budget for it. |a - e| <= K B (|e| + s) is rtol = K B, atol = K B s."""
    if precision not in BUDGET_PRECISIONS:
        raise ValueError(f"budget precision {precision!r}: expected one of {', '.join(BUDGET_PRECISIONS)}")
    changed = budgets.get("discrete", {}).get(precision, {}).get(name)
    if changed:
        return Tolerance(math.inf, math.inf, f"not judged at {precision}: refimpl's own {precision} "
                         f"run changes {changed:.0%} of it (near-ties ranked otherwise)")
    stored = budgets.get(precision, {})
    if stored.get(name) is None or budgets.get("scales", {}).get(name) is None:
        return None
    b = max(float(stored[name]), UNIT_ROUNDOFF[precision])
    s = float(budgets["scales"][name])
    return Tolerance(k * b, k * b * s, f"budget {precision}: {k:g} x {b:.3g}", budget=b)


def precision_of_values(tensors: dict) -> str | None:
    """The precision ACTUAL's values show when its dtype does not say: "bfloat16" when every
    float value is a bfloat16 number, else "float16" when every one is a float16 number (a
    16-bit port saved as float32); None when it has fewer than 64 non-integer values to tell."""
    values = [np.asarray(t, dtype=np.float32).reshape(-1) for t in tensors.values()
              if np.asarray(t).dtype.kind == "f"]
    if not values:
        return None
    flat = np.concatenate(values)
    flat = flat[np.isfinite(flat) & (flat != np.round(flat))]
    if flat.size < 64:
        return None
    for fmt in ("bfloat16", "float16"):
        if (ROUND[fmt](flat) == flat).all():
            return fmt
    return None


# --- one tensor ----------------------------------------------------------------------------
OK, MISMATCH, SHAPE, NOT_CHECKED, UNUSABLE = "ok", "MISMATCH", "SHAPE", "not checked", "unusable"


@dataclasses.dataclass
class Row:
    """The comparison of one tensor. Statistics are None where nothing was compared."""
    name: str
    shape: tuple  # EXPECTED's shape
    status: str  # ok, MISMATCH (values outside tolerance), SHAPE, not checked, unusable
    tolerance: Tolerance | None = None
    actual_shape: tuple | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    err_tol: float | None = None  # max |a - e| / (atol + rtol |e|)
    mean_abs: float | None = None
    median_abs: float | None = None
    p99_abs: float | None = None
    outside: int = 0  # elements outside tolerance
    nonfinite: int = 0  # NaN/Inf in ACTUAL where EXPECTED is finite
    size: int = 0
    where: tuple | None = None  # index of the worst element (largest err/tol)
    expected_value: float | None = None
    actual_value: float | None = None
    detail: str = ""
    err_budget: float | None = None  # max |a - e| / (|e| + scale) / budget, with a budget


    @property
    def diverges(self) -> bool:
        return self.status in (MISMATCH, SHAPE)

    def explain(self) -> list[str]:
        """A few lines about this tensor, for the first divergence."""
        if self.status == SHAPE:
            return [f"  shape: EXPECTED {self.shape}, ACTUAL {self.actual_shape}"]
        if self.status in (NOT_CHECKED, UNUSABLE):
            return [f"  {self.detail}"]
        lines = [f"  shape {self.shape}, tolerance {self.tolerance}",
                 f"  max abs err {_g(self.max_abs)}, max rel err {_g(self.max_rel)}, "
                 f"err/tol {_g(self.err_tol)}"
                 + ("" if self.err_budget is None else f", error/budget {_g(self.err_budget)}"),
                 f"  abs err mean {_g(self.mean_abs)}, median {_g(self.median_abs)}, "
                 f"99th percentile {_g(self.p99_abs)}",
                 f"  {self.outside} of {self.size} elements outside tolerance"
                 + (f", {self.nonfinite} of them NaN/Inf where EXPECTED is finite" if self.nonfinite else "")]
        if self.where is not None:
            lines.append(f"  worst at {self.where}: expected {self.expected_value!r}, "
                         f"actual {self.actual_value!r}")
        return lines

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["tolerance"] = None if self.tolerance is None else {
            k: (_json_float(v) if isinstance(v, float) else v)
            for k, v in dataclasses.asdict(self.tolerance).items()}
        out["shape"], out["actual_shape"] = list(self.shape), (
            None if self.actual_shape is None else list(self.actual_shape))
        out["where"] = None if self.where is None else list(self.where)
        return {k: (_json_float(v) if isinstance(v, float) else v) for k, v in out.items()}


def _g(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _json_float(x: float):
    """JSON has no inf/nan: write them as strings."""
    return x if math.isfinite(x) else repr(x)


def _numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in "biuf" or a.dtype.name == "bfloat16"


def compare_tensor(name: str, expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> Row:
    """Shape first, then every statistic of the module docstring."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    shape = tuple(expected.shape)
    for label, a in (("EXPECTED", expected), ("ACTUAL", actual)):
        if not _numeric(a):
            hint = (": 2-byte raw values, as np.save stores ml_dtypes' bfloat16 (NumPy reads them "
                    "back as bytes); save bfloat16 tensors as float32, which holds them exactly"
                    if a.dtype.kind == "V" and a.dtype.itemsize == 2 else "")
            return Row(name, shape, UNUSABLE, tolerance, tuple(actual.shape),
                       detail=f"{label} has non-numeric dtype {a.dtype}{hint}")
    if tuple(actual.shape) != shape:
        return Row(name, shape, SHAPE, tolerance, tuple(actual.shape),
                   detail=f"ACTUAL has shape {tuple(actual.shape)}, EXPECTED {shape}")
    row = Row(name, shape, OK, tolerance, shape, size=int(expected.size))
    if expected.size == 0:
        row.max_abs = row.max_rel = row.err_tol = row.mean_abs = row.median_abs = row.p99_abs = 0.0
        row.err_budget = 0.0 if tolerance.budget else None
        return row
    e, a = expected.astype(np.float64), actual.astype(np.float64)
    rtol, atol = tolerance.rtol, tolerance.atol
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        err = np.abs(a - e)
        agree = (np.isnan(a) & np.isnan(e)) | (np.isinf(e) & (a == e))  # NaN for NaN, same inf
        err[agree] = 0.0
        nonfinite = np.isfinite(e) & ~np.isfinite(a)
        err[np.isnan(err)] = np.inf  # NaN where a number (or an infinity) is expected
        scale = np.where(np.isfinite(e), np.abs(e), 0.0)
        allowed = atol + rtol * scale
        bad = err > allowed
        floor = atol / rtol if rtol > 0 else atol
        rel = np.divide(err, np.maximum(scale, floor), out=np.zeros_like(err), where=err > 0)
        rel[(err > 0) & (np.maximum(scale, floor) == 0)] = np.inf
        ratio = np.divide(err, allowed, out=np.zeros_like(err), where=err > 0)
        ratio[(err > 0) & (allowed == 0)] = np.inf
    worst = np.unravel_index(int(np.argmax(ratio)), shape)
    row.max_abs, row.max_rel, row.err_tol = float(err.max()), float(rel.max()), float(ratio.max())
    top = row.max_abs  # errors near float64's max (finfo.min masks) would overflow the sum
    row.mean_abs = float(top * np.mean(err / top) if 0 < top < np.inf else err.mean())
    row.median_abs, row.p99_abs = (float(v) for v in np.percentile(err, [50, 99], method="nearest"))
    row.outside, row.nonfinite = int(bad.sum()), int(nonfinite.sum())
    row.where = tuple(int(i) for i in worst)
    row.expected_value, row.actual_value = float(e[worst]), float(a[worst])
    if tolerance.budget:  # the tolerance is BUDGET_K x budget: error / budget = K x err/tol
        row.err_budget = row.err_tol * tolerance.rtol / tolerance.budget
    if row.outside:
        row.status = MISMATCH
        row.detail = (f"{row.outside}/{row.size} outside {tolerance}"
                      + (f", {row.nonfinite} NaN/Inf" if row.nonfinite else ""))
    return row


# --- the report ------------------------------------------------------------------------------
@dataclasses.dataclass
class Report:
    rows: list  # one Row per name of EXPECTED that passed the filters, in EXPECTED's order
    extra: list  # names in ACTUAL only
    filtered: list = dataclasses.field(default_factory=list)  # names left out by only/skip
    allow_missing: bool = False

    @property
    def compared(self) -> list:
        return [r for r in self.rows if r.status in (OK, MISMATCH)]

    @property
    def mismatches(self) -> list:
        return [r for r in self.rows if r.diverges]

    @property
    def not_checked(self) -> list:
        return [r for r in self.rows if r.status == NOT_CHECKED]

    @property
    def unusable(self) -> list:
        return [r for r in self.rows if r.status == UNUSABLE]

    @property
    def first_divergence(self) -> Row | None:
        """The first tensor, in network order, outside tolerance or of another shape."""
        return next((r for r in self.rows if r.diverges), None)

    @property
    def exit_code(self) -> int:
        if self.mismatches:
            return 1
        if self.unusable or not self.compared or (self.not_checked and not self.allow_missing):
            return 2
        return 0

    def problems(self) -> list[str]:
        """Why the exit code is 2, one message each (empty when it is not)."""
        if self.exit_code != 2:
            return []
        out = []
        if not self.compared:
            out.append("no tensor names in common between EXPECTED and ACTUAL"
                       if not self.unusable else "no tensor could be compared")
        if self.unusable:
            out.append(f"{len(self.unusable)} tensors unusable: "
                       + "; ".join(f"{r.name}: {r.detail}" for r in self.unusable[:5]))
        if self.not_checked and not self.allow_missing:
            out.append(f"{len(self.not_checked)} names of EXPECTED are missing from ACTUAL (not "
                       "checked; pass --allow-missing to accept that): "
                       + ", ".join(r.name for r in self.not_checked[:10])
                       + (" ..." if len(self.not_checked) > 10 else ""))
        return out

    def format(self, problems_only: bool = False) -> str:
        """The table (every row, or only those not ok), the first divergence with its detail,
        then a count line."""
        shown = [r for r in self.rows if not (problems_only and r.status == OK)
                 and r.status != NOT_CHECKED]
        width = max([len(r.name) for r in shown] + [4])
        budgeted = any(r.err_budget is not None for r in shown)
        extra = f" {'err/budget':>10}" if budgeted else ""
        lines = [f"{'name':<{width}}  {'shape':<18} {'max abs err':>11} {'max rel err':>11} "
                 f"{'err/tol':>9}{extra}  status"]
        for r in shown:
            if r.status in (SHAPE, UNUSABLE):
                lines.append(f"{r.name:<{width}}  {str(r.shape):<18} {'':>11} {'':>11} {'':>9}"
                             f"{' ' * len(extra)}  {r.status}: {r.detail}")
            else:
                cell = "" if not budgeted else (f" {'n/a':>10}" if r.err_budget is None
                                                else f" {r.err_budget:10.3g}")
                lines.append(f"{r.name:<{width}}  {str(r.shape):<18} {r.max_abs:11.3g} "
                             f"{r.max_rel:11.3g} {r.err_tol:9.3g}{cell}  "
                             + (OK if r.status == OK else f"{r.status} {r.outside}/{r.size} outside"))
        if self.not_checked:
            names = [r.name for r in self.not_checked]
            lines.append(f"# not checked, missing from ACTUAL ({len(names)}): " + ", ".join(names[:12])
                         + (" ..." if len(names) > 12 else ""))
        if self.filtered:
            lines.append(f"# {len(self.filtered)} names of EXPECTED left out by --only/--skip")
        if self.extra:
            lines.append(f"# {len(self.extra)} tensors of ACTUAL are not in EXPECTED (ignored): "
                         + ", ".join(self.extra[:10]) + (" ..." if len(self.extra) > 10 else ""))
        first = self.first_divergence
        lines.append(f"first divergence: {first.name if first else 'none'}")
        if first is not None:
            lines += first.explain()
        lines.append(f"# {len(self.compared)} compared, {len(self.mismatches)} outside tolerance "
                     f"or of another shape, {len(self.not_checked)} not checked, "
                     f"{len(self.unusable)} unusable")
        return "\n".join(lines)

    def head(self) -> str:
        """The first divergence and its detail (for an AssertionError), or the problems."""
        first = self.first_divergence
        if first is None:
            return "; ".join(self.problems()) or "first divergence: none"
        n = len(self.mismatches)
        return "\n".join([f"first divergence: {first.name} ({n} of {len(self.rows)} tensors "
                          "outside tolerance or of another shape)"] + first.explain())

    def to_json(self) -> dict:
        first = self.first_divergence
        return {"first_divergence": first.name if first else None, "exit_code": self.exit_code,
                "compared": len(self.compared), "mismatches": len(self.mismatches),
                "not_checked": [r.name for r in self.not_checked],
                "unusable": [r.name for r in self.unusable],
                "extra": list(self.extra), "filtered": list(self.filtered),
                "problems": self.problems(),
                "rows": [r.to_json() for r in self.rows]}


def select(names, only=(), skip=()) -> tuple[list, list]:
    """(kept, left out): names matching any `only` glob (all when none) and no `skip` glob."""
    kept, left = [], []
    for name in names:
        keep = (not only or any(fnmatch.fnmatchcase(name, p) for p in only)) and not any(
            fnmatch.fnmatchcase(name, p) for p in skip)
        (kept if keep else left).append(name)
    return kept, left


def compare(expected: dict, actual: dict, tolerances: dict | None = None, rtol=None, atol=None,
            allow_missing: bool = False, precision: str | None = None, only=(), skip=(),
            budgets: dict | None = None, budget: str | None = None) -> Report:
    """Walk EXPECTED in its (network) order and compare each tensor with ACTUAL's.

    tolerances: a case's tolerance table (defaults and per-name overrides). rtol / atol replace
    the tolerance of every tensor (either alone keeps the other of the table). precision: the
    precision whose tolerances apply (default: the lower of the two sides', per tensor).
    only / skip: glob patterns selecting names of EXPECTED. budgets + budget (a precision of
    BUDGET_PRECISIONS): each tensor's tolerance is BUDGET_K x its budget at that precision
    (the case's overrides do not apply; a tensor without a budget keeps its tolerance)."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if budget is not None and budgets is None:
        raise ValueError("budget given without budgets (a golden case's measured errors)")
    names, filtered = select(expected, only, skip)
    rows = []
    for name in names:
        value = np.asarray(expected[name])
        if name not in actual:
            rows.append(Row(name, tuple(value.shape), NOT_CHECKED, detail="missing from ACTUAL"))
            continue
        other = np.asarray(actual[name])
        level = precision or lower_precision(precision_of(value.dtype), precision_of(other.dtype))
        tol = tolerance_for(name, level, tolerances)
        if budget is not None and (budgeted := budget_tolerance(name, budgets, budget)):
            tol = budgeted
            value = within_range(value, budget)  # (see error budgets above)
        if rtol is not None or atol is not None:
            tol = Tolerance(tol.rtol if rtol is None else rtol, tol.atol if atol is None else atol,
                            "given on the command line")
        rows.append(compare_tensor(name, value, other, tol))
    extra = [name for name in actual if name not in expected]
    return Report(rows, extra, filtered, allow_missing)


# --- the plot --------------------------------------------------------------------------------
def plot(report: Report, path: str, title: str = "error through the network") -> None:
    """Max and median abs error per tensor in network order, log scale, with each tensor's
    absolute tolerance (atol + rtol * max|e| is not known here: atol is drawn, and err/tol on a
    second panel, whose line at 1 is the tolerance) and the first divergence marked."""
    plt = _pyplot()
    rows = report.compared
    if not rows:
        raise ValueError("nothing was compared: no error to plot")
    x = np.arange(len(rows))
    floor = 1e-18  # log scale: exact agreement is drawn at the floor
    max_abs = np.maximum([r.max_abs for r in rows], floor)
    median = np.maximum([r.median_abs for r in rows], floor)
    ratio = np.maximum([min(r.err_tol, 1e30) for r in rows], floor)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 0.12 * len(rows) + 4), 7), sharex=True,
                                      constrained_layout=True)
    top.semilogy(x, max_abs, ".-", label="max abs err")
    top.semilogy(x, median, ".-", alpha=0.7, label="median abs err")
    top.semilogy(x, [max(r.tolerance.atol, floor) for r in rows], "k--", lw=0.8, label="atol")
    top.set_ylabel("abs error (exact: drawn at 1e-18)")
    bottom.semilogy(x, ratio, ".-", color="tab:red", label="err / tol (max over the tensor)")
    bottom.axhline(1.0, color="k", lw=1, ls="--", label="tolerance")
    bottom.set_ylabel("err / tol")
    first = report.first_divergence
    if first is not None and first in rows:
        i = rows.index(first)
        for ax in (top, bottom):
            ax.axvline(i, color="tab:red", lw=1)
        top.annotate(f"first divergence: {first.name}", (i, max_abs[i]), xytext=(5, 5),
                     textcoords="offset points", fontsize=8, color="tab:red")
    step = max(1, len(rows) // 60)
    bottom.set_xticks(x[::step])
    bottom.set_xticklabels([r.name for r in rows][::step], rotation=90, fontsize=6)
    for ax in (top, bottom):
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("plots need matplotlib: pip install 'refimpl[plot]'") from None
    return plt


def to_json_text(report: Report) -> str:
    return json.dumps(report.to_json(), indent=1)
