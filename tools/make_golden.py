"""Recompute every golden case, cross-check it against the Keras anchors, report, and (only with
--write) store it under golden/cases/.

    python tools/make_golden.py            # recompute into a scratch folder and report differences
    python tools/make_golden.py --write    # ... and replace golden/cases/ with the new cases

Each case reseeds its own generator (seed = crc32 of its name), is computed by refimpl in
float64, and is checked against the anchor (keras-bert, keras-pos-embd, keras-xlnet on
TensorFlow-CPU in float32; transformers where Keras cannot express a case; for the fine-tuning
heads transformers and the original's head code, both in float64, see HEAD_TOLERANCE); a case
the anchor disagrees with beyond its tolerance is refused.
Nothing is overwritten unless --write is given; without it the new cases stay in the scratch
folder (printed) for inspection.
"""
from __future__ import annotations

import argparse
import json
import dataclasses
import importlib.metadata
import os
import shutil
import sys
import tempfile
import zlib

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
from refimpl import golden  # noqa: E402

GOLDEN = os.path.join(ROOT, "golden")
COMMAND = "python tools/make_golden.py --write"
# refimpl float64 vs an anchor computing in TF float32 (3-layer tiny models, std-0.3 weights):
# measured up to ~4e-6 abs on BERT; the same bound as tests/tolerances.py "keras-model".
ANCHOR_TOLERANCE = {"rtol": 1e-5, "atol": 1.5e-5}


@dataclasses.dataclass
class Case:
    name: str
    model: str  # bert | pos_embd | xlnet
    make_inputs: object  # rng -> dict of arrays
    dialect: str = "tf"
    checkpoint: str | None = None  # relative to golden/
    options: dict = dataclasses.field(default_factory=dict)
    description: str = ""
    overrides: list = dataclasses.field(default_factory=list)  # tolerance overrides with reasons
    keras: dict | None = None  # XLNet: how to build the keras-xlnet anchor (see xlnet_golden.py)
    no_anchor: str | None = None  # XLNet: why keras-xlnet cannot express it (transformers anchors it)
    anchor_tolerance: dict | None = None  # instead of ANCHOR_TOLERANCE, with a "reason"
    original: dict | None = None  # head cases: the FLAGS of the original fine-tuning script the
    #                               head anchor runs with (tests/test_heads.py's transcription)


# --- inputs --------------------------------------------------------------------------------
def bert_tokens(batch, length, real_lengths=None, split=None, vocab=100):
    """A batch with [CLS]=2 ... [SEP]=3 layout, two segments, trailing padding with id 0."""
    def make(rng):
        tokens = rng.integers(5, vocab, (batch, length))
        segments = np.zeros((batch, length), np.int64)
        mask = np.ones((batch, length), np.int64)
        for b in range(batch):
            real = length if real_lengths is None else real_lengths[b]
            cut = real // 2 if split is None else split[b]
            tokens[b, 0] = 2
            tokens[b, real - 1] = 3
            if 0 < cut < real - 1:
                tokens[b, cut] = 3
                segments[b, cut + 1:real] = 1
            tokens[b, real:] = 0
            mask[b, real:] = 0
        return {"token_ids": tokens, "segment_ids": segments, "attention_mask": mask}
    return make


def run_default(model):
    """The example `refimpl run --model MODEL` uses by default (checked against this case)."""
    from refimpl import run

    def make(rng):
        example = run.DEFAULTS[model]
        return {"token_ids": run.parse_ids(example.tokens, "tokens"),
                "segment_ids": run.parse_ids(example.segments, "segments")}
    return make


BERT_CASES = [
    Case("bert-run-default", "bert", run_default("bert"), checkpoint="checkpoints/bert-tiny",
         description="the default example of `refimpl run --model bert`"),
    Case("bert-plain", "bert", bert_tokens(1, 8, split=[0]), checkpoint="checkpoints/bert-tiny",
         description="one unpadded sequence, one segment"),
    Case("bert-padding-two-segments", "bert", bert_tokens(3, 12, real_lengths=[12, 9, 4], split=[5, 4, 2]),
         checkpoint="checkpoints/bert-tiny", description="batch of 3, trailing padding, two segments"),
    Case("bert-max-length", "bert", bert_tokens(2, 16, real_lengths=[16, 16], split=[7, 10]),
         checkpoint="checkpoints/bert-tiny", description="length = max_position_embeddings (16)"),
    Case("bert-keras-dialect", "bert", bert_tokens(2, 10, real_lengths=[10, 6]), dialect="keras",
         checkpoint="checkpoints/bert-tiny",
         description="keras-bert conventions: mask from token id 0, LayerNorm eps 1e-14, softmax heads"),
    Case("bert-hf-dialect", "bert", bert_tokens(2, 10, real_lengths=[10, 7], split=[4, 3]), dialect="hf",
         checkpoint="checkpoints/bert-tiny",
         description="transformers conventions: exact-erf GELU, finfo.min mask (anchor: transformers)"),
    Case("bert-fully-padded-row", "bert", bert_tokens(3, 8, real_lengths=[8, 5, 0], split=[3, 2, 0]),
         checkpoint="checkpoints/bert-tiny",
         description="row 2 is all padding: with the -10000 mask it attends as if unmasked",
         overrides=[{"name": "*", "dtype": "float32", "rtol": 1e-3, "atol": 3e-3,
                     "reason": "row 2 is fully padded: a float32 port adds -10000 to its scores, and "
                               "float32 keeps only ~3 decimals of a score next to 10000 (ulp(10000) "
                               "= 9.8e-4); refimpl float32 vs float64 measured 1.2e-3 abs in the layer outputs of "
                               "row 2 (2e-6 in the other rows): atol 3e-3 is 2.5x that"}],
         anchor_tolerance={"rtol": 1e-5, "atol": 1e-3,
                           "reason": "keras-bert runs in float32: its fully padded row carries the "
                                     "-10000 rounding (measured 2.7e-4 abs there)"}),
    Case("bert-classifier", "bert", bert_tokens(3, 10, real_lengths=[10, 8, 5], split=[4, 3, 2]),
         checkpoint="checkpoints/bert-tiny-classifier", options={"head": "classifier"},
         description="run_classifier.py's head (output_weights, output_bias) on the pooled [CLS], "
                     "3 labels, trailing padding"),
    Case("bert-squad", "bert", bert_tokens(3, 10, real_lengths=[10, 8, 6], split=[3, 3, 2]),
         checkpoint="checkpoints/bert-tiny-squad", options={"head": "squad"},
         description="run_squad.py's head (cls/squad/output_weights): start and end logits of "
                     "[CLS] question [SEP] paragraph [SEP], trailing padding"),
]


def pos_inputs(kind):
    def make(rng):
        if kind == "expand":
            return {"inputs": rng.integers(-9, 10, (2, 7)), "table": rng.normal(0, 1, (2 * 6 + 1, 5))}
        if kind == "add":
            return {"inputs": rng.normal(0, 1, (2, 6, 4)), "table": rng.normal(0, 1, (10, 4))}
        if kind == "concat":
            return {"inputs": rng.normal(0, 1, (2, 6, 3)), "table": rng.normal(0, 1, (10, 4))}
        return {"inputs": rng.integers(0, 40, (2, 7))}  # trig expand: positions
    return make


POS_CASES = [
    Case("pos-embd-expand", "pos_embd", pos_inputs("expand"),
         options={"layer": "PositionEmbedding", "mode": "expand", "mask_zero": True},
         description="relative positions -9..9 clipped to [-6, 6]; mask_zero=True masks position 1"),
    Case("pos-embd-add", "pos_embd", pos_inputs("add"), options={"layer": "PositionEmbedding", "mode": "add"},
         description="BERT's mode: inputs + table[:L]"),
    Case("pos-embd-concat", "pos_embd", pos_inputs("concat"),
         options={"layer": "PositionEmbedding", "mode": "concat"}, description="[inputs, table[:L]]"),
    Case("trig-pos-embd-expand", "pos_embd", pos_inputs("trig"),
         options={"layer": "TrigPosEmbedding", "mode": "expand", "output_dim": 8},
         description="interleaved sin/cos of positions 0..39"),
]


def all_cases() -> list[Case]:
    import xlnet_golden  # tools/xlnet_golden.py: the XLNet cases and their anchor
    cases = BERT_CASES + POS_CASES + xlnet_golden.CASES
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "golden case names must be unique"
    return cases


# --- anchors -------------------------------------------------------------------------------
def _errors(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    err = np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64))
    rel = err / np.maximum(np.abs(np.asarray(theirs, np.float64)), 1e-30)
    return float(err.max(initial=0.0)), float(rel.max(initial=0.0))


_KERAS_BERT: dict = {}


def anchor_bert(case: Case, inputs: dict, outputs: dict) -> dict:
    """keras-bert (training=True, seq_len = L) on the same checkpoint: every traced layer for the
    keras dialect; the sequence and head probabilities for the others (same padding mask)."""
    import keras_bert
    from tensorflow import keras
    tokens = inputs["token_ids"]
    seq_len = tokens.shape[1]
    if seq_len not in _KERAS_BERT:
        ckpt = os.path.join(GOLDEN, case.checkpoint)
        model = keras_bert.load_trained_model_from_checkpoint(
            os.path.join(ckpt, "bert_config.json"), os.path.join(ckpt, "bert_model.ckpt"),
            training=True, seq_len=seq_len)
        names = [layer.name for layer in model.layers if not layer.name.startswith("Input-")
                 and not layer.name.endswith(("-Dropout", "-Add")) and layer.name != "MLM"]
        outs = [model.get_layer(n).output for n in names]
        outs = [o[0] if isinstance(o, list) else o for o in outs]
        _KERAS_BERT[seq_len] = (names, keras.Model(model.inputs, outs))
    names, sub = _KERAS_BERT[seq_len]
    mask = inputs.get("attention_mask", np.ones_like(tokens))
    if not np.array_equal(mask, (tokens != 0).astype(mask.dtype)):
        raise ValueError(f"{case.name}: keras-bert derives its mask from token id 0; pad with 0")
    keras_out = dict(zip(names, sub.predict([tokens, inputs["segment_ids"], np.zeros_like(tokens)], verbose=0)))
    if case.dialect == "keras":
        pairs = {n: (outputs[n], keras_out[n]) for n in names}
    else:
        softmax = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)  # noqa: E731
        pairs = {"sequence": (outputs["sequence"], keras_out["Encoder-3-FeedForward-Norm"]),
                 "pooled": (outputs["pooled"], keras_out["NSP-Dense"]),
                 "softmax(mlm_logits)": (softmax(outputs["mlm_logits"]), keras_out["MLM-Sim"]),
                 "softmax(nsp_logits)": (softmax(outputs["nsp_logits"]), keras_out["NSP"])}
    return _anchor_report(f"keras-bert {importlib.metadata.version('keras-bert')} "
                          "load_trained_model_from_checkpoint(training=True), TF float32", pairs,
                          case.anchor_tolerance or ANCHOR_TOLERANCE)


def anchor_pos_embd(case: Case, inputs: dict, outputs: dict) -> dict:
    import tensorflow as tf
    from keras_pos_embd import PositionEmbedding, TrigPosEmbedding
    opts = case.options
    if opts["layer"] == "PositionEmbedding":
        table = inputs["table"]
        input_dim = table.shape[0] // 2 if opts["mode"] == "expand" else table.shape[0]
        layer = PositionEmbedding(input_dim, table.shape[1], mode=opts["mode"], mask_zero=opts.get("mask_zero", False))
        layer.build(inputs["inputs"].shape)
        layer.set_weights([table.astype(np.float32)])
        x = tf.constant(inputs["inputs"].astype(np.int32 if opts["mode"] == "expand" else np.float32))
        pairs = {"output": (outputs["output"], layer(x).numpy())}
        if "mask" in outputs:
            pairs["mask"] = (outputs["mask"], layer.compute_mask(x).numpy().astype(np.int8))
    else:
        layer = TrigPosEmbedding(mode=opts["mode"], output_dim=opts.get("output_dim"))
        pairs = {"output": (outputs["output"], layer(tf.constant(inputs["inputs"].astype(np.float32))).numpy())}
    return _anchor_report(f"keras-pos-embd {importlib.metadata.version('keras-pos-embd')} {opts['layer']}, TF float32", pairs)


def _anchor_report(anchor: str, pairs: dict, tolerance: dict = ANCHOR_TOLERANCE) -> dict:
    report = {"anchor": anchor, "tolerance": tolerance, "compared": {}}
    worst_abs = worst_rel = 0.0
    for name, (ours, theirs) in pairs.items():
        if np.shape(ours) != np.shape(theirs):
            raise ValueError(f"anchor disagrees on the shape of {name}: {np.shape(ours)} vs {np.shape(theirs)}")
        max_abs, max_rel = _errors(ours, theirs)
        bound = tolerance["atol"] + tolerance["rtol"] * np.abs(np.asarray(theirs, np.float64))
        if (np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64)) > bound).any():
            raise ValueError(f"anchor disagrees beyond tolerance on {name}: max abs error {max_abs:.3g}")
        report["compared"][name] = {"max_abs": max_abs, "max_rel": max_rel}
        worst_abs, worst_rel = max(worst_abs, max_abs), max(worst_rel, max_rel)
    report["max_abs"], report["max_rel"] = worst_abs, worst_rel
    return report


def anchor_bert_transformers(case: Case, inputs: dict, outputs: dict) -> dict:
    """transformers' BertForPreTraining (erf GELU, finfo.min mask) computes dialect "hf": every
    layer's output, the attention probabilities, the sequence and both heads' logits."""
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import test_transformers_anchor as harness
    _, model = harness.hf_bert()
    t = lambda name: torch.from_numpy(inputs[name])  # noqa: E731
    with torch.no_grad():
        theirs = model(t("token_ids"), attention_mask=t("attention_mask"), token_type_ids=t("segment_ids"),
                       output_hidden_states=True, output_attentions=True)
    pairs = {}
    for k, hidden in enumerate(theirs.hidden_states[1:], start=1):
        pairs[f"Encoder-{k}-FeedForward-Norm"] = (outputs[f"Encoder-{k}-FeedForward-Norm"], hidden.numpy())
        pairs[f"Encoder-{k}-MultiHeadSelfAttention/prob"] = (
            outputs[f"Encoder-{k}-MultiHeadSelfAttention/prob"], theirs.attentions[k - 1].numpy())
    pairs["Embedding-Norm"] = (outputs["Embedding-Norm"], theirs.hidden_states[0].numpy())
    pairs["mlm_logits"] = (outputs["mlm_logits"], theirs.prediction_logits.numpy())
    pairs["nsp_logits"] = (outputs["nsp_logits"], theirs.seq_relationship_logits.numpy())
    return _anchor_report(f"transformers {importlib.metadata.version('transformers')} BertForPreTraining "
                          "(PyTorch float32, eager attention) = dialect hf", pairs, {"rtol": 1e-5, "atol": 1e-4})


def tests_module(name: str):
    """A test harness of tests/ (the anchors live there, imported, not copied)."""
    import importlib
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    return importlib.import_module(name)


# Head cases: refimpl float64 against anchors run in float64 (transformers with .double(), the
# original's heads in a float64 tf.compat.v1 graph): only the summation order differs. Measured
# 2.2e-15 to 6.4e-15 max abs over the 8 head cases (each case's anchor_agreement); 1e-9 leaves
# room for another BLAS and still catches a float32 step anywhere in the chain (>= 1e-8:
# transformers' float32 XLNet sinusoid alone gives 7.7e-8).
HEAD_TOLERANCE = {"rtol": 1e-9, "atol": 1e-9,
                  "reason": "float64 vs float64: measured 2.2e-15 to 6.4e-15 max abs over the 8 head "
                            "cases; a float32 step anywhere in the chain shows as >= 1e-8"}


def anchor_bert_heads(case: Case, inputs: dict, outputs: dict) -> dict:
    """transformers' BertForSequenceClassification / BertForQuestionAnswering (tests/test_heads.py's
    hf_bert) in float64 with the tanh GELU (hidden_act "gelu_new" = dialect tf; its finfo.min mask
    equals -10000 in float64 wherever a row has a real token): every layer's output and attention
    probabilities, the sequence, the pooled [CLS] (the classifier's input) and the head logits."""
    import torch
    from refimpl import bert
    heads = tests_module("test_heads")
    assert case.dialect == "tf", case.name
    b = bert.load(os.path.join(GOLDEN, case.checkpoint))
    tanh = dataclasses.replace(b, config=dataclasses.replace(b.config, hidden_act="gelu_new"))
    w = b.head_weights
    head = case.options["head"]
    if head == "classifier":
        model = heads.hf_bert(heads.transformers.BertForSequenceClassification, tanh,
                              {"classifier.weight": w["output_weights"], "classifier.bias": w["output_bias"]},
                              pooler=True, num_labels=w["output_weights"].shape[0])
    else:
        model = heads.hf_bert(heads.transformers.BertForQuestionAnswering, tanh,
                              {"qa_outputs.weight": w["cls/squad/output_weights"],
                               "qa_outputs.bias": w["cls/squad/output_bias"]}, pooler=False)
    model = model.double()
    t = lambda name: torch.from_numpy(inputs[name])  # noqa: E731
    with torch.no_grad():
        theirs = model(t("token_ids"), attention_mask=t("attention_mask"), token_type_ids=t("segment_ids"),
                       output_hidden_states=True, output_attentions=True)
        encoder = model.bert(t("token_ids"), attention_mask=t("attention_mask"), token_type_ids=t("segment_ids"))
    pairs = {"Embedding-Norm": (outputs["Embedding-Norm"], theirs.hidden_states[0].numpy())}
    for k, hidden in enumerate(theirs.hidden_states[1:], start=1):
        pairs[f"Encoder-{k}-MultiHeadSelfAttention/prob"] = (
            outputs[f"Encoder-{k}-MultiHeadSelfAttention/prob"], theirs.attentions[k - 1].numpy())
        pairs[f"Encoder-{k}-FeedForward-Norm"] = (outputs[f"Encoder-{k}-FeedForward-Norm"], hidden.numpy())
    pairs["sequence"] = (outputs["sequence"], encoder.last_hidden_state.numpy())
    if head == "classifier":
        pairs["pooled"] = (outputs["pooled"], encoder.pooler_output.numpy())
        pairs["classifier/logits"] = (outputs["classifier/logits"], theirs.logits.numpy())
    else:
        for key in ("start_logits", "end_logits"):
            pairs[f"squad/{key}"] = (outputs[f"squad/{key}"], getattr(theirs, key).numpy())
    report = _anchor_report(f"transformers {importlib.metadata.version('transformers')} "
                            f"{type(model).__name__} (PyTorch float64, eager attention, hidden_act "
                            "'gelu_new' = dialect tf)", pairs, HEAD_TOLERANCE)
    report["short"] = f"transformers {type(model).__name__}"
    return report


def anchor_bert_any(case: Case, inputs: dict, outputs: dict) -> dict:
    if case.options.get("head"):
        return anchor_bert_heads(case, inputs, outputs)
    return (anchor_bert_transformers if case.dialect == "hf" else anchor_bert)(case, inputs, outputs)


ANCHORS = {"bert": anchor_bert_any, "pos_embd": anchor_pos_embd}


# --- building and writing ------------------------------------------------------------------
def build(case: Case, folder: str) -> dict:
    """Compute a case with refimpl (golden.make_case), cross-check with its anchor, write it
    into `folder`."""
    seed = zlib.crc32(case.name.encode())
    inputs = case.make_inputs(np.random.default_rng(seed))
    if case.model == "pos_embd":  # no checkpoint: the layer's table is among the inputs
        meta = {"name": case.name, "description": case.description, "model": case.model,
                "checkpoint": None, "dialect": case.dialect, "dtype": "float64",
                "options": case.options, "matchable_by": "keras-pos-embd's layer",
                "command": COMMAND, "versions": golden.versions(),
                "tolerances": {"defaults": golden.DEFAULT_TOLERANCES, "overrides": case.overrides},
                "files": {}}
        outputs = golden.recompute(meta, inputs, GOLDEN)
    else:
        meta, outputs = golden.make_case(case.model, os.path.join(GOLDEN, case.checkpoint), inputs,
                                         case.options, case.dialect, "float64", name=case.name,
                                         description=case.description, command=COMMAND,
                                         overrides=case.overrides, golden_dir=GOLDEN)
    meta["seed"] = seed
    if case.model == "xlnet":
        import xlnet_golden
        anchor = xlnet_golden.anchor
    else:
        anchor = ANCHORS[case.model]
    meta["anchor_agreement"] = anchor(case, inputs, outputs)
    return golden.write_case(folder, meta, inputs, outputs)


def store_budgets(only=None) -> int:
    """Measure each stored BERT / XLNet case's budgets (golden.measure_case_budgets) and write
    them into its case.json; the data files, and so their hashes, stay as they are."""
    for folder in golden.case_folders(GOLDEN):
        case = golden.read_case(folder)
        if only and case["name"] not in only:
            continue
        inputs = golden.read_npz(os.path.join(folder, golden.INPUTS))
        outputs = golden.read_npz(os.path.join(folder, golden.OUTPUTS))
        budgets = golden.measure_case_budgets(case, inputs, outputs, GOLDEN)
        if budgets is None:
            print(f"{case['name']:<32} no budgets ({case['model']})")
            continue
        case["budgets"] = {**budgets, "command": "python tools/make_golden.py --budgets"}
        with open(os.path.join(folder, golden.CASE_FILE), "w", encoding="utf-8") as f:
            json.dump(case, f, indent=2)
            f.write("\n")
        worst = {p: max((v for v in budgets[p].values() if v is not None), default=0.0)
                 for p in ("float32", "bfloat16", "float16")}
        print(f"{case['name']:<32} " + "  ".join(f"{p} max {v:.2g}" for p, v in worst.items()))
    return 0


def readme_table() -> str:
    """The README's golden-case table, from the stored case.json files."""
    rows = ["| case | what | dialect: who can match it | anchor | max abs error |", "|---|---|---|---|---|"]
    for folder in golden.case_folders(GOLDEN):
        case = golden.read_case(folder)
        agreement = case["anchor_agreement"]
        anchor = agreement["anchor"].split(" (")[0].split(" load_")[0].split(" XLNetModel")[0]
        anchor = agreement.get("short") or " ".join(anchor.split()[:2])
        who = case.get("matchable_by") or ""
        short = {"tf": "tf: the original TF code, transformers with gelu_new",
                 "keras": "keras: keras-bert / keras-xlnet; a TF or transformers port differs by design",
                 "hf": "hf: transformers with its erf GELU"}.get(case["dialect"], who)
        if case["model"] == "pos_embd":
            short = "keras-pos-embd's layer"
        rows.append(f"| `{case['name']}` | {case['description']} | {short} | {anchor} | "
                    f"{agreement['max_abs']:.2g} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace golden/cases/ with the new cases")
    parser.add_argument("--only", nargs="*", help="case names to build (default: all)")
    parser.add_argument("--readme-table", action="store_true",
                        help="print the README's table of the stored cases and exit")
    parser.add_argument("--budgets", action="store_true",
                        help="measure the error budgets of the stored cases again and write them "
                        "into their case.json (inputs and outputs untouched), then exit")
    args = parser.parse_args(argv)
    if args.readme_table:
        print(readme_table())
        return 0
    if args.budgets:
        return store_budgets(args.only)
    cases = [c for c in all_cases() if not args.only or c.name in args.only]
    scratch = tempfile.mkdtemp(prefix="refimpl-golden-")
    stored_dir = os.path.join(GOLDEN, "cases")
    changed = 0
    for case in cases:
        folder = os.path.join(scratch, case.name)
        meta = build(case, folder)
        stored = os.path.join(stored_dir, case.name)
        agreement = meta["anchor_agreement"]
        line = f"{case.name:<32} anchor max abs {agreement['max_abs']:.2g}"
        if not os.path.isdir(stored):
            line += "  NEW"
            changed += 1
        else:
            report = golden.compare(golden.read_npz(os.path.join(stored, golden.OUTPUTS)),
                                    golden.read_npz(os.path.join(folder, golden.OUTPUTS)), meta["tolerances"])
            worst = max((r.max_abs for r in report.rows), default=0.0)
            line += f"  vs stored: max abs {worst:.2g}" + ("" if report.exit_code == 0 else "  CHANGED")
            changed += report.exit_code != 0
        print(line)
    known = {c.name for c in all_cases()}
    for name in sorted(os.listdir(stored_dir)) if os.path.isdir(stored_dir) else []:
        if name not in known:
            print(f"{name:<32} stored but no longer defined (removed with --write)")
    if args.write:
        os.makedirs(stored_dir, exist_ok=True)
        for case in cases:
            shutil.rmtree(os.path.join(stored_dir, case.name), ignore_errors=True)
            shutil.copytree(os.path.join(scratch, case.name), os.path.join(stored_dir, case.name))
        if not args.only:
            for name in os.listdir(stored_dir):
                if name not in known:
                    shutil.rmtree(os.path.join(stored_dir, name))
        print(f"wrote {len(cases)} cases to {stored_dir}")
    else:
        print(f"{changed} new or changed; scratch copies in {scratch} (nothing written; use --write)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
