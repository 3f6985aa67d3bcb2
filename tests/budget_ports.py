"""Correct independent ports at low precision, checked with error budgets (issue 13's acceptance).

    python tests/budget_ports.py --table      # the error/budget of every port on every case

Ports (none of them refimpl):
- transformers (PyTorch CPU) in float32, bfloat16 and float16, from the official checkpoint
  converted by refimpl.convert, captured under refimpl's names by refimpl.capture, on every
  shipped golden case it can run (TRANSFORMERS_SKIPS says why the others are left out);
- the porting drill (tests/porting_drill.py) in float32 and in bfloat16: ml_dtypes' bfloat16
  arithmetic op by op, contractions in float32 rounded once;
- the Keras ports (keras-bert, keras-xlnet) in float32, as tools/make_golden.py anchors them.
`port_reports()` yields (port, case, precision, compare report with --budget).
"""
from __future__ import annotations

import functools
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GOLDEN = os.path.join(ROOT, "golden")
sys.path.insert(0, HERE)

# Shipped cases transformers cannot run as refimpl does, and why.
TRANSFORMERS_SKIPS = {
    "keras": "dialect keras (keras-xlnet's mask and pad id, softmax heads): other numbers by design",
    "bert-fully-padded-row": "the fully padded row: -10000 (tf) vs transformers' finfo.min, "
                             "another attention by design",
    "xlnet-train-phase-query-stream": "inp_q (a query stream at every position): transformers "
                                      "has no such input",
    "xlnet-classifier-attn": "summary_type 'attn' (abs_attn): transformers' sequence summary has "
                             "none, refimpl.convert refuses the checkpoint",
}
# Tensors a transformers port computes otherwise by design, left out of its comparison.
TRANSFORMERS_OTHERWISE = {
    # tf dialect BERT: masked scores hold -10000 + s in refimpl, finfo.min + s in transformers
    "bert": ["*/scores"],
    "xlnet": [],
    # converted as BertForQuestionAnswering, which has no pooler: AutoModelForPreTraining, used
    # here to capture every tensor, gives it a random one
    "bert-squad": ["NSP-Dense", "pooled"],
}
PRECISIONS = ("float32", "bfloat16", "float16")  # transformers runs each


def shipped_cases() -> list[str]:
    from refimpl import golden
    return [os.path.basename(f) for f in golden.case_folders(GOLDEN)
            if golden.read_case(f)["model"] in ("bert", "xlnet")]


def transformers_skip(name: str) -> str | None:
    from refimpl import golden
    case = golden.read_case(os.path.join(GOLDEN, "cases", name))
    if case["dialect"] == "keras":
        return TRANSFORMERS_SKIPS["keras"]
    return TRANSFORMERS_SKIPS.get(name)


@functools.lru_cache(maxsize=None)
def _converted(checkpoint: str, dialect: str) -> str:
    from refimpl import convert
    folder = tempfile.mkdtemp(prefix=f"refimpl-budget-{os.path.basename(checkpoint)}-{dialect}-")
    convert.to_transformers(os.path.join(GOLDEN, checkpoint), folder, dialect=dialect)
    return folder


def transformers_tensors(name: str, precision: str) -> dict:
    """transformers' tensors for shipped case `name`, run in `precision`, under refimpl's names."""
    import torch
    import transformers
    from refimpl import capture, golden
    folder = os.path.join(GOLDEN, "cases", name)
    case = golden.read_case(folder)
    inputs = golden.read_npz(os.path.join(folder, golden.INPUTS))
    options = {k: v for k, v in case["options"].items() if k not in ("head", "n_choice", "start_n_top", "end_n_top")}
    segments = options.pop("segments", None)
    same_length = options.pop("same_length", False)
    # .to(dtype), not from_pretrained(dtype=): transformers 5.23 leaves XLNet's bare parameters
    # (rel_attn q, k, v, o, r, the biases, mask_emb) in float32 with dtype=
    hf = transformers.AutoModelForPreTraining.from_pretrained(
        _converted(case["checkpoint"], case["dialect"])).to(getattr(torch, precision)).eval()
    core = hf.transformer if hasattr(hf, "transformer") else getattr(hf, "bert", hf)
    if same_length:
        core.same_length = True
    if case["model"] == "xlnet" and precision != "float32":
        sinusoid_in_model_dtype(core)
    arrays = {k: v for k, v in inputs.items()
              if k in ("token_ids", "segment_ids", "attention_mask", "perm_mask", "target_mapping")}
    if segments is None:
        return capture.transformers(hf, **arrays, **options)
    out, mems = {}, None
    for s in range(segments):
        step = {k: v[s] for k, v in arrays.items()}
        t = capture.transformers(hf, **step, mems=mems, **options)
        mems = [t[f"mems/{i}"] for i in range(hf.config.n_layer)]
        out.update({f"segment-{s}/{n}": v for n, v in t.items()})
    return out


def sinusoid_in_model_dtype(transformer) -> None:
    """transformers 5.23's XLNet builds the relative-position sinusoid in float32 whatever the
    model's dtype, and a bfloat16 / float16 model then stops at the first einsum with it
    (RuntimeError: expected scalar type Float but found BFloat16). On this instance only, the
    sinusoid is cast to the model's dtype, as a 16-bit model stores it (and as the original's
    use_bfloat16 path does: tf.cast(pos_emb, tf_float))."""
    built = transformer.relative_positional_encoding
    dtype = transformer.word_embedding.weight.dtype

    def in_model_dtype(*args, **kwargs):
        return built(*args, **kwargs).to(dtype)
    transformer.relative_positional_encoding = in_model_dtype


def transformers_report(name: str, precision: str):
    from refimpl import compare, golden
    folder = os.path.join(GOLDEN, "cases", name)
    expected, tolerances = golden.read_tensors(folder)
    actual = transformers_tensors(name, precision)
    case = golden.read_case(folder)
    skip = (TRANSFORMERS_OTHERWISE[case["model"]] if case["dialect"] == "tf" else []) + \
        TRANSFORMERS_OTHERWISE.get(name, [])
    return compare.compare(expected, actual, tolerances, allow_missing=True, skip=skip,
                           budgets=golden.read_budgets(folder), budget=precision)


def drill_report(case_name: str, precision: str, bugs=frozenset()):
    """The porting drill on one of its cases, in float32 or bfloat16 (ml_dtypes), checked with
    budgets measured on the fly from refimpl's runs (compare.measure_budgets)."""
    import porting_drill as drill
    from refimpl import compare
    dtype = np.float32 if precision == "float32" else _ml_dtype(precision)
    expected = drill.reference_tensors(case_name)
    actual = drill.drill_tensors(case_name, dtype, frozenset(bugs))
    actual = {n: (v.astype(np.float32) if v.dtype.name == "bfloat16" else v) for n, v in actual.items()}
    return compare.compare(expected, actual, budgets=drill_budgets(case_name), budget=precision)


@functools.lru_cache(maxsize=None)
def drill_budgets(case_name: str) -> dict:
    import porting_drill as drill
    from refimpl import compare
    expected = drill.reference_tensors(case_name)
    runs = {p: drill.reference_tensors(case_name, p) for p in compare.BUDGET_PRECISIONS}
    return compare.measure_budgets(expected, runs)


def _ml_dtype(precision: str):
    import ml_dtypes
    return getattr(ml_dtypes, precision)


def worst(report) -> tuple[float, str]:
    """(largest error/budget, its tensor) over the compared tensors that have a budget."""
    rows = [(r.err_budget, r.name) for r in report.compared if r.err_budget is not None]
    return max(rows) if rows else (0.0, "-")


def table() -> str:
    lines = ["| port | case | precision | exit | worst error/budget (tensor) |", "|---|---|---|---|---|"]
    for name in shipped_cases():
        if transformers_skip(name):
            continue
        for precision in PRECISIONS:
            r = transformers_report(name, precision)
            e, where = worst(r)
            lines.append(f"| transformers | {name} | {precision} | {r.exit_code} | {e:.2f} ({where}) |")
    import porting_drill as drill
    for case_name in drill.CASES:
        for precision in ("float32", "bfloat16"):
            r = drill_report(case_name, precision)
            e, where = worst(r)
            lines.append(f"| porting drill | {case_name} | {precision} | {r.exit_code} | {e:.2f} ({where}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "--table" in sys.argv:
        print(table())
