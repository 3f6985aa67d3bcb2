"""The Keras ports in float32 pass every keras-dialect golden case with error budgets.

keras-bert and keras-xlnet are built from the case's checkpoint in the case's configuration by
the anchor code of tools/make_golden.py (anchor_bert) and tools/xlnet_golden.py (anchor),
imported, not copied: tools/precision_anchors.py's keras_tensors runs those anchors with their
(refimpl, keras) pairs captured instead of checked, and adds the names the case stores twice
(sequence, pooled, content, query, segment-s/mems/i) where Keras exposes the other name and the
golden values of the two are identical. Each case is then compared with
`compare.compare(..., budgets=golden.read_budgets(folder), budget="float32")`, which must exit 0;
every name of the case that Keras does not expose must be one of precision_anchors.KERAS_UNEXPOSED
(with its reason), and every other float tensor of the case must be compared with a budget.

Not exposed by the Keras models (precision_anchors.KERAS_UNEXPOSED), in every case where the
case stores them: the attention internals (BERT's */scores and */prob; XLNet's */ac, */bd, */ef
and */prob of both streams): computed inside keras-multi-head's / keras-transformer-xl's
attention layers, not layer outputs; the logits (mlm_logits, nsp_logits, lm_logits,
lm_logits/query): the Keras heads output probabilities (MLM-Sim and NSP are compared; keras-xlnet's
Softmax exists only in the training-phase model and the case does not store it); and the memory
after the last segment (segment-2/mems/*), which keras-xlnet shows only when a next segment reads it.

Measured worst error/budget (max over the compared tensors of max |a - e| / (|e| + s) / B, B the
case's float32 budget; BUDGET_K = 8), keras-bert 0.89.0 / keras-xlnet 0.20.0 on TensorFlow-CPU
2.21 + tf-keras 2.21:

    case                              compared / float   not exposed   worst error/budget (tensor)
    bert-keras-dialect                25 / 33            8             2.22 (MLM-Dense)
    xlnet-bi-padding                  29 / 42            13            2.58 (content = FeedForward-Normal-3)
    xlnet-tied-bi                     29 / 42            13            1.60 (Attention-3)
    xlnet-train-phase-query-stream    49 / 75            26            1.96 (content = FeedForward-Normal-3)
    xlnet-uni                         29 / 42            13            1.61 (Attention-Residual-3)
    xlnet-uni-mems-3-segments         93 / 135           42            1.92 (segment-1/FeedForward-Residual-2)

Not exposed, exactly: BERT 3 x (scores, prob) + mlm_logits + nsp_logits; XLNet 3 x (ac, bd, ef,
prob) per stream and segment, lm_logits (+ lm_logits/query with the query stream) per segment,
and in the memory run segment-2/mems/0..2.
Run time: 45 s for the six cases under pytest on a 2-CPU machine (5 to 10 s a case), almost all
of it building the Keras models and tracing their predict functions.
"""
from __future__ import annotations

import fnmatch
import os
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="TensorFlow (the [test] extra) runs the Keras ports")
pytest.importorskip("keras_bert")
pytest.importorskip("keras_xlnet")

from refimpl import compare, golden  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "golden")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import precision_anchors  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:The initializer GlorotNormal is unseeded:UserWarning")


def keras_dialect_cases() -> list[str]:
    return [os.path.basename(f) for f in golden.case_folders(GOLDEN)
            if golden.read_case(f)["dialect"] == "keras" and golden.read_case(f)["model"] in ("bert", "xlnet")]


CASES = keras_dialect_cases()


def test_the_keras_dialect_cases_are_found():
    assert {"bert-keras-dialect", "xlnet-bi-padding", "xlnet-tied-bi", "xlnet-train-phase-query-stream",
            "xlnet-uni", "xlnet-uni-mems-3-segments"} <= set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_keras_float32_within_budget(name):
    why = precision_anchors.keras_cannot(name)
    if why:
        pytest.skip(f"the Keras ports cannot run {name}: {why}")
    folder = os.path.join(GOLDEN, "cases", name)
    expected, tolerances = golden.read_tensors(folder)
    budgets = golden.read_budgets(folder)
    actual = precision_anchors.keras_tensors(name, "float32")
    report = compare.compare(expected, actual, tolerances, allow_missing=True, budgets=budgets,
                             budget="float32")
    assert report.exit_code == 0, report.head() + "\n" + report.format(problems_only=True)

    floats = [n for n, v in expected.items() if np.asarray(v).dtype.kind == "f"]
    compared = {r.name for r in report.compared}
    missing = [n for n in floats if n not in compared]
    unexplained = [n for n in missing if precision_anchors.unexposed_reason(n) is None]
    assert not unexplained, f"{name}: Keras computes no tensor for {unexplained} (not in KERAS_UNEXPOSED)"
    segments = sorted({int(n.split("/")[0][len("segment-"):]) for n in expected if n.startswith("segment-")})
    if segments:  # the memory Keras cannot show: only the one left after the last segment
        assert all(n.startswith(f"segment-{segments[-1]}/") for n in missing if "/mems/" in n), missing
    assert len(compared) >= 0.6 * len(floats), f"{name}: only {len(compared)} of {len(floats)} compared"
    # the layers both models expose, at the least: embeddings, every layer's output
    must = ["Embedding-Norm", "Encoder-*-FeedForward-Norm", "MLM-Sim", "NSP"] if name.startswith("bert") \
        else ["*Embed-Token", "*Attention-Normal-*", "*FeedForward-Normal-*", "*content"]
    for pattern in must:
        assert any(fnmatch.fnmatchcase(n, pattern) for n in compared), f"{name}: no {pattern} compared"

    rows = [(r.err_budget, r.name) for r in report.compared]
    assert all(e is not None for e, _ in rows), \
        f"{name}: compared without a budget: {[n for e, n in rows if e is None]}"
    worst, where = max(rows)
    assert worst < compare.BUDGET_K, f"{name}: error/budget {worst:.2f} at {where}"
    print(f"{name}: {len(compared)} / {len(floats)} float tensors compared; worst error/budget "
          f"{worst:.2f} ({where}); not exposed by Keras: {len(missing)}")


def test_aliases_are_identical_golden_tensors():
    """The names keras_tensors adds are stored twice by the case (identical values), so the Keras
    tensor of the other name is the Keras value of this one."""
    folder = os.path.join(GOLDEN, "cases", "xlnet-uni-mems-3-segments")
    expected = golden.read_npz(os.path.join(folder, golden.OUTPUTS))
    keras_names = {n: None for n in expected if "/mems/" not in n and not n.endswith("content")}
    pairs = dict(precision_anchors.aliases(expected, keras_names))
    assert pairs["segment-0/mems/1"] == "segment-1/Memory-1"
    assert pairs["segment-2/content"] == "segment-2/FeedForward-Normal-3"
    assert "segment-2/mems/0" not in pairs  # no fourth segment reads it
    for alias, source in pairs.items():
        assert np.array_equal(expected[alias], expected[source])
