"""Every trace lists its tensors in the order they are computed, so that `refimpl compare`, which
walks EXPECTED in its stored order, names the true first divergence.

The computation order is derived independently of the trace: a sys.settrace hook watches every
line and return of every function in refimpl/ and notes the first moment a local variable (or a
return value) holds each traced value (same shape, dtype and numbers). A value that never sits
in a local is computed where it is stored into the trace, so the moment of its insertion counts.
Walking the trace in order, these moments must never go back. Not checked: the final outputs
named_tensors lists after the trace (sequence, pooled, mlm_logits, nsp_logits, content, query:
each repeats a traced layer, or in dialect keras is the logits behind a traced probability), values equal to an
earlier entry (the same segment matrix for every layer, zero memories) and the memories handed
in (Memory-<i>, inputs of the forward, which must come before layer i+1's attention).
Regression for the bug where Attention-k/ef was stored after Attention-k/prob and a segment-term
bug was named at prob.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from refimpl import golden, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "golden")
PKG = os.path.join(ROOT, "refimpl") + os.sep
FINAL_OUTPUTS = {"sequence", "pooled", "mlm_logits", "nsp_logits", "content", "query"}


def computation_moments(fn, final: dict) -> tuple[dict, dict]:
    """Run fn() (which computes the named tensors `final` again) under a line tracer:
    -> ({name: first moment its value was seen in a local of refimpl code}, moments in all)."""
    by_shape: dict = {}
    for name, value in final.items():
        value = np.asarray(value)
        if value.size:
            by_shape.setdefault((value.shape, value.dtype.str), []).append(name)
    seen: dict = {}
    step = [0]
    keep_alive = []  # arrays seen stay referenced (no id reuse while we run)

    def look(value):
        if isinstance(value, np.ndarray) and value.size:
            names = by_shape.get((value.shape, value.dtype.str))
            for name in names or ():
                if name not in seen and np.array_equal(value, final[name], equal_nan=True):
                    seen[name] = step[0]
            keep_alive.append(value)

    def local_tracer(frame, event, arg):
        step[0] += 1
        for value in list(frame.f_locals.values()):
            look(value)
        if event == "return":
            look(arg)
        return local_tracer

    def global_tracer(frame, event, arg):
        if frame.f_code.co_filename.startswith(PKG):
            return local_tracer
        return None

    sys.settrace(global_tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return seen, step[0]


def assert_trace_in_computation_order(make_tensors):
    """make_tensors() -> dict of named tensors; checks their order (module docstring) and
    returns the names checked."""
    final = make_tensors()
    seen, _ = computation_moments(make_tensors, final)
    names = list(final)
    checked, previous, previous_name = [], -1, None
    for index, name in enumerate(names):
        value = np.asarray(final[name])
        if name in FINAL_OUTPUTS:
            continue
        if name.split("/")[-1].startswith("Memory-") or name.startswith("Memory-"):
            continue  # an input of the forward (the previous segment's memory)
        if any(value.shape == np.shape(final[earlier]) and np.array_equal(value, final[earlier], equal_nan=True)
               for earlier in names[:index]):
            continue  # the same value as an earlier entry (seg_mat for every layer, zero memories)
        if name not in seen:
            continue  # never held by a local: computed where it is stored, in order by construction
        moment = seen[name]
        assert moment >= previous, (
            f"{name} is listed after {previous_name}, but its value was computed earlier "
            f"(moment {moment} < {previous}): the trace is not in computation order")
        previous, previous_name = moment, name
        checked.append(name)
    assert len(checked) >= len(names) // 2, f"too few names checked: {checked}"
    return checked


def _xlnet(options=None, dialect="tf", checkpoint="xlnet-tiny", **inputs):
    def make():
        return run.named_tensors("xlnet", os.path.join(GOLDEN, "checkpoints", checkpoint), inputs,
                                 options or {}, dialect)
    return make


def _bert(dialect="tf", **inputs):
    def make():
        return run.named_tensors("bert", os.path.join(GOLDEN, "checkpoints", "bert-tiny"), inputs, {}, dialect)
    return make


rng = np.random.default_rng(7)
IDS = rng.integers(6, 100, (2, 6))
SEG = np.array([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
MASK = np.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
PERM = (rng.random((2, 6, 6)) < 0.3).astype(np.int64)
MAPPING = np.zeros((2, 2, 6), np.int64)
MAPPING[:, 0, 2] = MAPPING[:, 1, 5] = 1
MEMS = [rng.normal(size=(2, 3, 32)) for _ in range(3)]

CONFIGS = {
    "bert-plain": _bert(token_ids=IDS),
    "bert-padding-segments": _bert(token_ids=IDS, segment_ids=SEG % 2, attention_mask=MASK[::-1]),
    "bert-keras": _bert("keras", token_ids=IDS),
    "bert-hf": _bert("hf", token_ids=IDS, attention_mask=MASK[::-1]),
    "xlnet-bi": _xlnet(token_ids=IDS),
    "xlnet-bi-segments-padding": _xlnet(token_ids=IDS, segment_ids=SEG, attention_mask=MASK),
    "xlnet-uni-mems": _xlnet({"attn_type": "uni", "mem_len": 4}, token_ids=IDS, segment_ids=SEG, mems=MEMS),
    "xlnet-two-stream": _xlnet(token_ids=IDS, segment_ids=SEG, perm_mask=PERM, target_mapping=MAPPING),
    "xlnet-inp-q-keras": _xlnet(dialect="keras", token_ids=IDS, segment_ids=SEG,
                                inp_q=(rng.random((2, 6)) < 0.5).astype(np.int64)),
    "xlnet-tied-bi-data": _xlnet({"bi_data": True, "clamp_len": 2}, checkpoint="xlnet-tiny-tied",
                                 token_ids=IDS, segment_ids=SEG),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_trace_is_in_computation_order(config):
    checked = assert_trace_in_computation_order(CONFIGS[config])
    if config.startswith("xlnet") and "segments" in config or config == "xlnet-two-stream":
        # the regression: the segment term comes before the probabilities it feeds
        assert checked.index("Attention-1/ef") < checked.index("Attention-1/prob")


def test_the_order_check_can_fail():
    """The check rejects a trace whose entries are stored late (the original bug, rebuilt)."""
    make = CONFIGS["xlnet-bi-segments-padding"]

    def late_ef():
        tensors = make()
        ef = tensors.pop("Attention-1/ef")
        out = {}
        for name, value in tensors.items():
            out[name] = value
            if name == "Attention-1/prob":
                out["Attention-1/ef"] = ef  # stored after prob, as before the fix
        return out
    with pytest.raises(AssertionError, match="Attention-1/prob.*computed earlier|not in computation order"):
        assert_trace_in_computation_order(late_ef)


def test_memories_come_before_their_layer():
    tensors = CONFIGS["xlnet-uni-mems"]()
    names = list(tensors)
    for i in range(3):
        assert names.index(f"Memory-{i}") < names.index(f"Attention-{i + 1}/ac")


@pytest.mark.parametrize("folder", golden.case_folders(GOLDEN),
                         ids=[os.path.basename(f) for f in golden.case_folders(GOLDEN)])
def test_golden_cases_store_the_computation_order(folder):
    """Every shipped case stores its tensors in the order refimpl computes them now (multi-
    segment cases: segment after segment), so a port checked against it is told the true first
    divergence."""
    case = golden.read_case(folder)
    inputs = golden.read_npz(os.path.join(folder, golden.INPUTS))
    stored = list(golden.read_npz(os.path.join(folder, golden.OUTPUTS)))
    assert stored == list(golden.recompute(case, inputs, GOLDEN))
