"""Golden cases: stored inputs and expected tensors, with their provenance and tolerances.

A case is a folder `golden/cases/<name>/` (or any folder `refimpl golden make` wrote):
  case.json    name, model, checkpoint (path relative to the golden folder, or absolute for a
               user's own checkpoint) and its sha256, dialect, dtype, options, who can match
               it, the generating command, package versions, tolerances, the sha256 of every
               data file, and the agreement measured against the anchor (shipped cases)
  inputs.npz   the forward's array arguments (token_ids, segment_ids, ...)
  outputs.npz  every named tensor in network order: the trace, then the final outputs
.npz is a zip of .npy files, readable from any language (numpy.load, cnpy, npyz, ...).
A case with option "segments": S holds S consecutive segments of one memory run: every input
has a leading segment axis (S, batch, length), segment s takes the mems of segment s - 1, and
the output names get a "segment-<s>/" prefix (segment-0/Embed-Token, ..., segment-2/lm_logits).

Tolerances are data (refimpl/compare.py): a default (rtol, atol) per precision, and narrow
overrides by name pattern, each with its reason. BERT and XLNet cases also store error budgets
(case.json "budgets"): per tensor, the error of refimpl's own run at float32, bfloat16 and
float16 (emulated, refimpl/precision.py) against the float64 outputs, with each tensor's scale;
`refimpl compare --budget` turns them into tolerances (refimpl/compare.py, error budgets). `verify` checks hashes, then recomputes a case
with the reference and compares within tolerance (never bytes).

    case, outputs = golden.make_case("xlnet", "golden/checkpoints/xlnet-tiny", inputs, options)
    golden.write_case("my-case", case, inputs, outputs)
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
import zipfile

import numpy as np

from refimpl import compare as comparing, run
from refimpl.compare import DEFAULT_TOLERANCES, Report, Tolerance, compare, tolerance_for  # noqa: F401

CASE_FILE = "case.json"
INPUTS = "inputs.npz"
OUTPUTS = "outputs.npz"
FORMAT_VERSION = 1

# Who can reproduce a case of each dialect within its tolerances (stored in case.json as
# "matchable_by"; the README's golden table says the same).
MATCHABLE_BY = {
    "tf": "the original TF code (google-research/bert, zihangdai/xlnet) and a faithful port of "
          "it; transformers with hidden_act/ff_activation 'gelu_new' (its BERT mask is finfo.min: "
          "the same wherever a row has a real token)",
    "keras": "keras-bert / keras-xlnet (keras dialect: LayerNorm eps 1e-14, keras-xlnet's "
             "multiplicative mask and pad id 5, softmax heads); a TF or transformers port will "
             "differ at Permutation and wherever padding or probabilities enter, by design",
    "hf": "transformers with its default exact-erf GELU ('gelu'); a port of the original TF code "
          "(tanh GELU) will differ from the first FeedForward on, by design",
}


class GoldenError(ValueError):
    """A golden file or case that cannot be used: missing, malformed, or inconsistent."""


# --- files -------------------------------------------------------------------------------------
def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_npz(path) -> dict[str, np.ndarray]:
    """Named arrays of an .npz, in file order; no pickles. GoldenError on anything unusable,
    naming what the file is instead (.npy, text, not a zip, object arrays)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise GoldenError(f"{path}: a folder without {CASE_FILE}: expected an .npz file or a golden case folder")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError:
        raise GoldenError(f"{path}: no such file") from None
    except OSError as e:
        raise GoldenError(f"{path}: cannot read ({e.strerror})") from None
    if magic == b"\x93NUMPY":
        raise GoldenError(f"{path}: a .npy file holds one unnamed array; expected an .npz of named "
                          "tensors (np.savez(path, **{name: array}))")
    if not magic.startswith(b"PK"):
        raise GoldenError(f"{path}: not an .npz file (an .npz is a zip of .npy arrays; this file "
                          f"starts with {magic!r})")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise GoldenError(f"{path}: holds object arrays (pickles), which are not read; expected "
                              "numeric arrays") from None
        raise GoldenError(f"{path}: not a readable .npz of numeric arrays ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise GoldenError(f"{path}: not a readable .npz of numeric arrays ({e})") from None


def write_npz(path, arrays: dict[str, np.ndarray]) -> str:
    """Write the named arrays to exactly `path` (NumPy's savez would append .npz to another
    suffix); returns the path written."""
    path = os.fspath(path)
    with open(path, "wb") as f:
        np.savez_compressed(f, **{name: np.asarray(value) for name, value in arrays.items()})
    return path


def read_tensors(path) -> tuple[dict[str, np.ndarray], dict]:
    """Tensors to compare from an .npz or a golden case folder: -> (tensors, tolerances)."""
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, CASE_FILE)):
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


def write_case(folder, case: dict, inputs: dict, outputs: dict) -> dict:
    """Write a case folder (case.json, inputs.npz, outputs.npz); fills case["files"] with the
    data files' sha256 and returns the case as written."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    write_npz(os.path.join(folder, INPUTS), inputs)
    write_npz(os.path.join(folder, OUTPUTS), outputs)
    case = {**case, "format": FORMAT_VERSION,
            "files": {name: sha256(os.path.join(folder, name)) for name in (INPUTS, OUTPUTS)}}
    with open(os.path.join(folder, CASE_FILE), "w", encoding="utf-8") as f:
        json.dump(case, f, indent=2, sort_keys=False)
        f.write("\n")
    return case


def checkpoint_sha256(directory: str) -> dict[str, str]:
    """{file name: sha256} of a model directory's weights and config (not of vocabularies or
    other files beside them)."""
    def is_model_file(f: str) -> bool:
        return f.endswith(("config.json", ".safetensors")) or ".ckpt" in f
    return {f: sha256(os.path.join(directory, f)) for f in sorted(os.listdir(directory))
            if os.path.isfile(os.path.join(directory, f)) and is_model_file(f)}


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for package in ("numpy", "refimpl", "tensorflow-cpu", "tf-keras", "keras-bert", "keras-xlnet",
                    "keras-pos-embd", "torch", "transformers"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def make_case(model: str, checkpoint, inputs: dict, options: dict | None = None, dialect: str = "tf",
              dtype="float64", name: str = "case", description: str = "", command: str = "",
              overrides: list | None = None, golden_dir: str | None = None) -> tuple[dict, dict]:
    """Compute a case with refimpl: -> (case dict for write_case, outputs).

    model "bert" or "xlnet"; checkpoint a model directory (stored relative to `golden_dir` when
    inside it, else absolute); inputs the forward's arrays (stacked on a leading segment axis
    with options["segments"] = S, see the module docstring); options the forward's other
    arguments (XLNet: mem_len, reuse_len, attn_type, clamp_len, bi_data, segments); overrides:
    per-name tolerance overrides, each {"name": glob, "rtol", "atol", "reason"}."""
    golden_dir = golden_dir or default_golden_dir()
    directory = os.path.abspath(os.fspath(checkpoint))
    if not os.path.isdir(directory):
        raise GoldenError(f"checkpoint {checkpoint}: not a model directory")
    inside = os.path.commonpath([directory, os.path.abspath(golden_dir)]) == os.path.abspath(golden_dir)
    for override in overrides or []:
        if not {"name", "rtol", "atol", "reason"} <= set(override):
            raise GoldenError(f"tolerance override {override}: needs name, rtol, atol and reason")
    case = {"name": name, "description": description, "model": model,
            "checkpoint": os.path.relpath(directory, golden_dir) if inside else directory,
            "dialect": dialect, "dtype": np.dtype(dtype).name, "options": dict(options or {}),
            "matchable_by": MATCHABLE_BY.get(dialect, ""), "command": command,
            "versions": versions(),
            "tolerances": {"defaults": DEFAULT_TOLERANCES, "overrides": list(overrides or [])},
            "files": {}, "checkpoint_sha256": checkpoint_sha256(directory)}
    outputs = recompute(case, inputs, golden_dir)
    budgets = measure_case_budgets(case, inputs, outputs, golden_dir)
    if budgets is not None:
        case["budgets"] = budgets
    return case, outputs


BUDGETS_HOW = ("refimpl's own runs of the case at float32 and, emulated (refimpl/precision.py), "
               "bfloat16 and float16, against outputs.npz (float64): per tensor max |a - e| / "
               "(|e| + scale), scale = median |e| (mean where the median is 0), e clipped to the "
               "precision's range; integer tensors it changes under \"discrete\" "
               "(refimpl/compare.py, error budgets)")


def measure_case_budgets(case: dict, inputs: dict, outputs: dict, golden_dir: str) -> dict | None:
    """The error budgets of a float64 BERT or XLNet case (None for other cases): refimpl runs
    the case at each of compare.BUDGET_PRECISIONS. Values kept to 3 significant digits."""
    if case["model"] not in ("bert", "xlnet") or case["dtype"] != "float64":
        return None
    checkpoint = os.path.join(golden_dir, case["checkpoint"])
    runs = {p: run.compute(case["model"], checkpoint, inputs, case["options"], case["dialect"], p)
            for p in comparing.BUDGET_PRECISIONS}
    measured = comparing.measure_budgets(outputs, runs)
    # JSON has no inf: a tensor a 16-bit run overflows gets null (no budget, its tolerance stays)
    discrete = measured.pop("discrete")
    short = {part: {n: float(f"{v:.3g}") if np.isfinite(v) else None for n, v in values.items()}
             for part, values in measured.items()}
    short["discrete"] = discrete
    return {"how": BUDGETS_HOW, "command": case.get("command", ""),
            "refimpl": versions()["refimpl"], **short}


def read_budgets(path) -> dict:
    """The budgets of a golden case folder; GoldenError when it has none or they are malformed."""
    path = os.fspath(path)
    if not (os.path.isdir(path) and os.path.isfile(os.path.join(path, CASE_FILE))):
        raise GoldenError(f"{path}: --budget needs a golden case folder as EXPECTED (its case.json "
                          "stores the budgets); make one with `refimpl golden make`")
    case = read_case(path)
    budgets = case.get("budgets")
    if budgets is None:
        raise GoldenError(f"{path}: case {case['name']!r} stores no error budgets ("
                          + ("budgets are measured for BERT and XLNet cases only)" if case["model"]
                             not in ("bert", "xlnet") else "made before budgets existed: make it "
                             "again with `refimpl golden make`)"))
    ok = isinstance(budgets, dict) and isinstance(budgets.get("scales"), dict) and all(
        isinstance(budgets.get(p), dict) for p in comparing.BUDGET_PRECISIONS)
    if not ok or not all(v is None or isinstance(v, (int, float)) and v >= 0
                         for part in ("scales", *comparing.BUDGET_PRECISIONS)
                         for v in budgets[part].values()):
        raise GoldenError(f"{path}/{CASE_FILE}: malformed budgets: expected \"scales\" and "
                          f"{', '.join(comparing.BUDGET_PRECISIONS)}, each an object of tensor name -> "
                          "number >= 0 or null")
    return budgets


# --- recomputing a case with the reference -------------------------------------------------
def _run_model(case: dict, inputs: dict, golden_dir: str) -> dict:
    return run.compute(case["model"], os.path.join(golden_dir, case["checkpoint"]), inputs,
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


RUNNERS = {"bert": _run_model, "pos_embd": _run_pos_embd, "xlnet": _run_model}


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


def check_default_run(model: str, tensors: dict, golden_dir: str, checkpoint_dir: str,
                      budget: str | None = None) -> str:
    """One line for `refimpl run`: does this run of the default example match the golden case
    <model>-run-default? Checked when checkpoint_dir holds the case's checkpoint (same sha256
    of every file: a copy of the shipped one counts). budget: "bfloat16" / "float16" for an
    emulated run, checked within the case's budgets at that precision."""
    folder = os.path.join(golden_dir, "cases", f"{model}-run-default")
    try:
        case = read_case(folder)
    except GoldenError:
        return f"golden: no case {model}-run-default in {golden_dir}"
    recorded = case.get("checkpoint_sha256", {})
    try:
        same = bool(recorded) and all(sha256(os.path.join(checkpoint_dir, f)) == digest
                                      for f, digest in recorded.items())
    except OSError:
        same = False
    if not same:
        return (f"golden: the checkpoint is not the one of case {model}-run-default (sha256 "
                "differs), nothing to compare with (see refimpl compare)")
    expected, tolerances = read_tensors(folder)
    try:
        budgets = None if budget is None else read_budgets(folder)
    except GoldenError as e:
        return f"golden: cannot check case {model}-run-default: {e}"
    report = compare(expected, tensors, tolerances, budgets=budgets, budget=budget)
    within = "" if budget is None else f", within {comparing.BUDGET_K:g} x its {budget} budgets"
    if report.exit_code == 0:
        worst = max(r.max_abs for r in report.compared)
        return (f"golden: matches case {model}-run-default ({len(report.compared)} tensors, max abs "
                f"error {worst:.2g}{within})")
    first = report.first_divergence
    if first is None:
        return f"golden: cannot check case {model}-run-default: " + "; ".join(report.problems())
    return (f"golden: DOES NOT match case {model}-run-default: first divergence {first.name} "
            f"({first.status} {first.detail})")


def default_golden_dir() -> str:
    """The golden/ folder beside the refimpl package (a source checkout or editable install)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden")
