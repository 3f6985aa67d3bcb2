"""Golden cases: stored inputs and expected tensors, with their provenance and tolerances.

A case is a folder `golden/cases/<name>/`:
  case.json    name, model, checkpoint (path relative to the golden folder) and its sha256,
               dialect, dtype, options, the generating command, package versions, tolerances,
               the sha256 of every data file, and the agreement measured against the anchor
  inputs.npz   the forward's array arguments (token_ids, segment_ids, ...)
  outputs.npz  every named tensor in network order: the trace, then the final outputs
.npz is a zip of .npy files, readable from any language (numpy.load, cnpy, npyz, ...).

Tolerances are data: a default (rtol, atol) per dtype of the tensors being checked, and narrow
overrides by name pattern, each with its reason. `compare` checks shapes before values and
reports max abs/rel error and where; `verify` checks hashes, then recomputes a case with the
reference and compares within tolerance (never bytes).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import zipfile

import numpy as np

CASE_FILE = "case.json"
INPUTS = "inputs.npz"
OUTPUTS = "outputs.npz"
FORMAT_VERSION = 1

# (rtol, atol) by the dtype of the tensors under test, compared with float64 expected values.
DEFAULT_TOLERANCES = {
    # Recomputing float64 golden values: other BLAS kernels, other summation orders; measured
    # differences are ~1e-15 relative, amplified a little through LayerNorm and softmax.
    "float64": {"rtol": 1e-7, "atol": 1e-9},
    # A float32 implementation against float64 golden values: float32 rounding (eps 1.2e-7)
    # accumulated over a few layers of tiny models; refimpl's own float32 path stays ~1e-6.
    "float32": {"rtol": 1e-4, "atol": 2e-5},
    # Half precision: rounding at 1e-3 relative per op.
    "float16": {"rtol": 2e-2, "atol": 2e-2},
    "bfloat16": {"rtol": 5e-2, "atol": 5e-2},
}


class GoldenError(ValueError):
    """A golden file or case that cannot be used: missing, malformed, or inconsistent."""


@dataclasses.dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    reason: str = "default"


def tolerance_for(name: str, dtype, tolerances: dict | None = None) -> Tolerance:
    """The tolerance for tensor `name` checked in `dtype`: the first matching override, else the
    default for the dtype (float64's for any other dtype not listed)."""
    tolerances = tolerances or {}
    key = np.dtype(dtype).name if np.dtype(dtype).kind == "f" else "float64"
    for override in tolerances.get("overrides", []):
        if fnmatch.fnmatchcase(name, override["name"]) and override.get("dtype", key) == key:
            return Tolerance(override["rtol"], override["atol"], override["reason"])
    defaults = {**DEFAULT_TOLERANCES, **tolerances.get("defaults", {})}
    entry = defaults.get(key, defaults["float64"])
    return Tolerance(entry["rtol"], entry["atol"], f"default for {key}")


# --- files -------------------------------------------------------------------------------------
def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_npz(path: str) -> dict[str, np.ndarray]:
    """Named arrays of an .npz, in file order; no pickles. GoldenError on anything unusable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise GoldenError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise GoldenError(f"{path}: not a readable .npz of numeric arrays ({e})") from None


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    np.savez_compressed(path, **{name: np.asarray(value) for name, value in arrays.items()})


def read_tensors(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """Tensors to compare from an .npz or a golden case folder: -> (tensors, tolerances)."""
    if os.path.isdir(path):
        case = read_case(path)
        return read_npz(os.path.join(path, OUTPUTS)), case.get("tolerances", {})
    return read_npz(path), {}


def read_case(folder: str) -> dict:
    path = os.path.join(folder, CASE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            case = json.load(f)
    except FileNotFoundError:
        raise GoldenError(f"{folder}: no {CASE_FILE}: not a golden case folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GoldenError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(case, dict):
        raise GoldenError(f"{path}: expected a JSON object, got {type(case).__name__}")
    required = ["name", "model", "dialect", "dtype", "options", "files", "tolerances", "command"]
    missing = [key for key in required if key not in case]
    if missing:
        raise GoldenError(f"{path}: missing keys {', '.join(missing)}")
    return case


def write_case(folder: str, case: dict, inputs: dict, outputs: dict) -> dict:
    """Write a case folder; fills case["files"] with the data files' sha256."""
    os.makedirs(folder, exist_ok=True)
    write_npz(os.path.join(folder, INPUTS), inputs)
    write_npz(os.path.join(folder, OUTPUTS), outputs)
    case = {**case, "format": FORMAT_VERSION,
            "files": {name: sha256(os.path.join(folder, name)) for name in (INPUTS, OUTPUTS)}}
    with open(os.path.join(folder, CASE_FILE), "w", encoding="utf-8") as f:
        json.dump(case, f, indent=2, sort_keys=False)
        f.write("\n")
    return case


# --- comparison ----------------------------------------------------------------------------
@dataclasses.dataclass
class Row:
    name: str
    shape: tuple
    status: str  # "ok", "MISMATCH", "missing", "shape", "dtype"
    max_abs: float = 0.0
    max_rel: float = 0.0
    where: tuple = ()
    tolerance: Tolerance | None = None
    detail: str = ""


@dataclasses.dataclass
class Report:
    rows: list
    extra: list  # names in ACTUAL only

    @property
    def unusable(self) -> list:
        return [r for r in self.rows if r.status in ("missing", "shape", "dtype")]

    @property
    def mismatches(self) -> list:
        return [r for r in self.rows if r.status == "MISMATCH"]

    @property
    def first_divergence(self) -> Row | None:
        return next((r for r in self.rows if r.status != "ok"), None)

    @property
    def exit_code(self) -> int:
        if self.unusable or not self.rows:
            return 2
        return 1 if self.mismatches else 0

    def format(self, problems_only: bool = False) -> str:
        """The table (every row, or only those not ok), then the first divergence."""
        width = max([len(r.name) for r in self.rows] + [4])
        lines = [f"{'name':<{width}}  {'shape':<18} {'max abs err':>11} {'max rel err':>11}  "
                 f"{'where':<16} status"]
        for r in self.rows:
            if problems_only and r.status == "ok":
                continue
            if r.status in ("missing", "shape", "dtype"):
                lines.append(f"{r.name:<{width}}  {str(r.shape):<18} {'':>11} {'':>11}  {'':<16} {r.detail}")
                continue
            lines.append(f"{r.name:<{width}}  {str(r.shape):<18} {r.max_abs:11.3g} {r.max_rel:11.3g}  "
                         f"{str(r.where):<16} {r.status if r.status == 'ok' else r.status + ' ' + r.detail}")
        if self.extra:
            lines.append(f"# {len(self.extra)} tensors of ACTUAL are not in EXPECTED (ignored): "
                         + ", ".join(self.extra[:10]) + (" ..." if len(self.extra) > 10 else ""))
        first = self.first_divergence
        lines.append(f"first divergence: {first.name if first else 'none'}")
        compared = [r for r in self.rows if r.status in ("ok", "MISMATCH")]
        lines.append(f"# {len(compared)} compared, {len(self.mismatches)} outside tolerance, "
                     f"{len(self.unusable)} unusable")
        return "\n".join(lines)


def compare_tensor(name: str, expected: np.ndarray, actual: np.ndarray, tolerances: dict | None = None,
                   rtol: float | None = None, atol: float | None = None) -> Row:
    """One tensor: shape first, then values within tolerance (for ACTUAL's dtype)."""
    shape = tuple(expected.shape)
    if tuple(actual.shape) != shape:
        return Row(name, shape, "shape", detail=f"shape mismatch: ACTUAL has {tuple(actual.shape)}, EXPECTED {shape}")
    for label, a in (("EXPECTED", expected), ("ACTUAL", actual)):
        if a.dtype.kind not in "biuf":
            return Row(name, shape, "dtype", detail=f"{label} has non-numeric dtype {a.dtype}")
    tol = tolerance_for(name, actual.dtype if actual.dtype.kind == "f" else expected.dtype, tolerances)
    if rtol is not None or atol is not None:
        tol = Tolerance(tol.rtol if rtol is None else rtol, tol.atol if atol is None else atol, "command line")
    e, a = expected.astype(np.float64), actual.astype(np.float64)
    if e.size == 0:
        return Row(name, shape, "ok", tolerance=tol)
    err = np.abs(a - e)
    err = np.where(np.isnan(a) & np.isnan(e), 0.0, err)  # NaN where NaN is expected agrees
    err = np.where(np.isinf(e) & (a == e), 0.0, err)     # so does the same infinity
    err = np.where(np.isnan(err), np.inf, err)
    rel = err / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
    bad = err > tol.atol + tol.rtol * np.abs(np.where(np.isfinite(e), e, 0.0))
    worst = np.unravel_index(int(np.argmax(np.where(bad, err, -1.0) if bad.any() else err)), shape)
    row = Row(name, shape, "MISMATCH" if bad.any() else "ok", float(err.max()), float(rel.max()),
              tuple(int(i) for i in worst), tol)
    if bad.any():
        row.detail = (f"{int(bad.sum())}/{err.size} outside rtol={tol.rtol:g} atol={tol.atol:g}; "
                      f"at {row.where}: expected {e[worst]:.6g}, actual {a[worst]:.6g}")
    return row


def compare(expected: dict, actual: dict, tolerances: dict | None = None, rtol=None, atol=None,
            allow_missing: bool = False) -> Report:
    """Walk EXPECTED in its (network) order and compare each tensor with ACTUAL's."""
    rows = []
    for name, value in expected.items():
        if name not in actual:
            if not allow_missing:
                rows.append(Row(name, tuple(value.shape), "missing", detail="missing from ACTUAL"))
            continue
        rows.append(compare_tensor(name, value, actual[name], tolerances, rtol, atol))
    extra = [name for name in actual if name not in expected]
    return Report(rows, extra)


# --- recomputing a case with the reference -------------------------------------------------
def _run_bert(case: dict, inputs: dict, golden_dir: str) -> dict:
    from refimpl import run
    return run.named_tensors("bert", os.path.join(golden_dir, case["checkpoint"]), inputs,
                             case["options"], case["dialect"], np.dtype(case["dtype"]))


def _run_pos_embd(case: dict, inputs: dict, golden_dir: str) -> dict:
    from refimpl import pos_embd
    opts = case["options"]
    if opts["layer"] == "PositionEmbedding":
        out, mask = pos_embd.position_embedding(inputs["inputs"], inputs["table"], opts["mode"],
                                                mask_zero=opts.get("mask_zero", False))
        return {"output": out, **({} if mask is None else {"mask": mask.astype(np.int8)})}
    if opts["layer"] == "TrigPosEmbedding":
        return {"output": pos_embd.trig_pos_embedding(inputs["inputs"], opts["mode"], opts.get("output_dim"),
                                                      dtype=np.dtype(case["dtype"]))}
    raise GoldenError(f"case {case['name']}: unknown pos_embd layer {opts['layer']!r}")


def _run_xlnet(case: dict, inputs: dict, golden_dir: str) -> dict:
    """One forward, or with option "segments": S, S consecutive segments (inputs stacked on a
    leading axis), each taking the previous one's mems; names then get a "segment-<s>/" prefix."""
    from refimpl import run, xlnet
    options = dict(case["options"])
    segments = options.pop("segments", None)
    model = xlnet.load(os.path.join(golden_dir, case["checkpoint"]))  # once for all segments
    dtype = np.dtype(case["dtype"])
    if segments is None:
        return run.named_tensors("xlnet", model, inputs, options, case["dialect"], dtype)
    outputs, mems = {}, None
    for s in range(segments):
        step = {name: value[s] for name, value in inputs.items()}
        tensors = run.named_tensors("xlnet", model, {**step, "mems": mems}, options,
                                    case["dialect"], dtype)
        mems = [tensors[name] for name in tensors if name.startswith("mems/")] or None
        outputs.update({f"segment-{s}/{name}": value for name, value in tensors.items()})
    return outputs


RUNNERS = {"bert": _run_bert, "pos_embd": _run_pos_embd, "xlnet": _run_xlnet}


def recompute(case: dict, inputs: dict, golden_dir: str) -> dict:
    """Every named tensor of a case, recomputed by refimpl from its inputs and options."""
    if case["model"] not in RUNNERS:
        raise GoldenError(f"case {case['name']}: unknown model {case['model']!r}; expected one of "
                          f"{', '.join(RUNNERS)}")
    return RUNNERS[case["model"]](case, inputs, golden_dir)


def case_folders(golden_dir: str) -> list[str]:
    cases = os.path.join(golden_dir, "cases")
    if not os.path.isdir(cases):
        raise GoldenError(f"{golden_dir}: no cases/ folder: not a golden folder")
    return [os.path.join(cases, name) for name in sorted(os.listdir(cases))
            if os.path.isdir(os.path.join(cases, name))]


def verify_case(folder: str, golden_dir: str) -> tuple[list[str], Report | None]:
    """(problems, report): hashes of the data files and the checkpoint, then the recomputation."""
    problems = []
    case = read_case(folder)
    if case["name"] != os.path.basename(folder):
        problems.append(f"case.json names it {case['name']!r}, but the folder is {os.path.basename(folder)!r}")
    for name, digest in case["files"].items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            problems.append(f"{name}: missing")
        elif (actual := sha256(path)) != digest:
            problems.append(f"{name}: sha256 {actual[:12]}... differs from case.json's {digest[:12]}... "
                            "(the file was changed)")
    for name, digest in case.get("checkpoint_sha256", {}).items():
        path = os.path.join(golden_dir, case["checkpoint"], name)
        if not os.path.isfile(path):
            problems.append(f"checkpoint file {path}: missing")
        elif sha256(path) != digest:
            problems.append(f"checkpoint file {path}: sha256 differs from case.json's (the checkpoint changed)")
    if problems:
        return problems, None
    inputs = read_npz(os.path.join(folder, INPUTS))
    expected = read_npz(os.path.join(folder, OUTPUTS))
    actual = recompute(case, inputs, golden_dir)
    return problems, compare(expected, actual, case["tolerances"])


def default_golden_dir() -> str:
    """The golden/ folder beside the refimpl package (a source checkout or editable install)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden")
