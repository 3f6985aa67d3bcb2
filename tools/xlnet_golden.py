"""The XLNet golden cases and their anchor (keras-xlnet), used by tools/make_golden.py.

Every case that keras-xlnet can express is cross-checked against it layer by layer: dialect
"keras" cases on every traced layer, the default run (dialect tf, bi, no padding) too, since
there tf and keras differ only by the LayerNorm epsilon. The dialect "tf" cases keras-xlnet
cannot express (perm_mask with target_mapping, left padding through attention_mask, the
symmetric clamp_len, bi_data) are cross-checked against transformers' XLNet with its tanh GELU
("gelu_new"), which then computes the tf dialect: every layer's output of both streams, the
attention probabilities and the final output.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from make_golden import Case, _anchor_report, run_default

# transformers (PyTorch float32), the same bound as tests/tolerances.py "hf-model".
HF_TOLERANCE = {"rtol": 1e-5, "atol": 1e-4}


def anchor_transformers(case, inputs: dict, outputs: dict) -> dict:
    """transformers' XLNet computes dialect "hf" (erf GELU), and with ff_activation "gelu_new"
    (the tanh GELU) dialect "tf" (clamp to [-c, c], additive -1e30 masking, query stream only
    through perm_mask): compare every layer's output of both streams (its hidden states), the
    attention probabilities, the final output and the mems, segment by segment for a memory
    run (transformers' mems passed on, as refimpl's)."""
    import importlib.metadata
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import test_transformers_anchor as harness
    assert case.dialect in ("tf", "hf"), case.name
    opts = case.options
    activation = "gelu_new" if case.dialect == "tf" else "gelu"
    m, model = harness.hf_xlnet(os.path.basename(case.checkpoint), opts.get("mem_len"),
                                opts.get("reuse_len"), opts.get("attn_type", "bi"),
                                opts.get("clamp_len") or -1, opts.get("bi_data", False), activation)
    segments = opts.get("segments")
    stacked = inputs if segments else {k: v[None] for k, v in inputs.items()}
    n_layer = m.config.n_layer
    pairs, mems = {}, None
    for s in range(len(stacked["token_ids"])):
        step = {k: v[s] for k, v in stacked.items()}
        prefix = f"segment-{s}/" if segments else ""
        as_float = lambda name: None if name not in step else torch.from_numpy(step[name]).float()  # noqa: E731
        with torch.no_grad():
            theirs = model.transformer(
                torch.from_numpy(step["token_ids"]), attention_mask=as_float("attention_mask"),
                token_type_ids=None if "segment_ids" not in step else torch.from_numpy(step["segment_ids"]),
                perm_mask=as_float("perm_mask"), target_mapping=as_float("target_mapping"),
                mems=mems, use_mems=True, output_hidden_states=True, output_attentions=True)
        mems = theirs.mems
        two_stream = "target_mapping" in step
        hidden = theirs.hidden_states  # before each layer, then the output; (h, g) pairs interleaved
        for k in range(1, n_layer + 1):
            if two_stream:
                pairs[f"{prefix}FeedForward-Normal-{k}"] = (outputs[f"{prefix}FeedForward-Normal-{k}"], hidden[2 * k].numpy())
                pairs[f"{prefix}FeedForward-Normal-{k}/query"] = (outputs[f"{prefix}FeedForward-Normal-{k}/query"], hidden[2 * k + 1].numpy())
                probs_h, probs_g = theirs.attentions[k - 1]
                pairs[f"{prefix}Attention-{k}/prob"] = (outputs[f"{prefix}Attention-{k}/prob"], probs_h.numpy())
                pairs[f"{prefix}Attention-{k}/query/prob"] = (outputs[f"{prefix}Attention-{k}/query/prob"], probs_g.numpy())
            else:
                pairs[f"{prefix}FeedForward-Normal-{k}"] = (outputs[f"{prefix}FeedForward-Normal-{k}"], hidden[k].numpy())
                pairs[f"{prefix}Attention-{k}/prob"] = (outputs[f"{prefix}Attention-{k}/prob"], theirs.attentions[k - 1].numpy())
        final = "query" if two_stream else "content"
        pairs[prefix + final] = (outputs[prefix + final], theirs.last_hidden_state.numpy())
        for i, mem in enumerate(theirs.mems or []):  # transformers keeps mems time-major
            if f"{prefix}mems/{i}" in outputs:
                pairs[f"{prefix}mems/{i}"] = (outputs[f"{prefix}mems/{i}"], mem.numpy().transpose(1, 0, 2))
    why = f"; keras-xlnet cannot: {case.no_anchor}" if case.no_anchor else ""
    report = _anchor_report(f"transformers {importlib.metadata.version('transformers')} XLNetModel "
                            f"(PyTorch float32) with ff_activation {activation!r} (= dialect "
                            f"{case.dialect}){why}", pairs, HF_TOLERANCE)
    return report


# The whole keras-xlnet model, every traced layer (values up to ~30 before LayerNorm): the bound
# of tests/tolerances.py "xlnet-keras-model", which records the measurements behind it.
XLNET_TOLERANCE = {"rtol": 1e-5, "atol": 1e-4}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAD = 5  # keras-xlnet's pad id (Tokenizer.SYM_PAD), masked by its Masking layer


def tokens(batch, length, segments=1, pad_left=(), pad_right=(), pad_id=PAD, two_segments=True,
           with_mask=False, inp_q=False):
    """Random ids 6..99 (never the pad id), optional padding at either end, two segments."""
    def make(rng):
        shape = (segments, batch, length)
        ids = rng.integers(6, 100, shape)
        seg = np.zeros(shape, np.int64)
        if two_segments:
            seg[..., length // 2:] = 1
        mask = np.ones(shape, np.int64)
        for b, n in enumerate(pad_left):
            ids[:, b, :n], mask[:, b, :n] = pad_id, 0
        for b, n in enumerate(pad_right):
            ids[:, b, length - n:], mask[:, b, length - n:] = pad_id, 0
        out = {"token_ids": ids, "segment_ids": seg}
        if with_mask:
            out["attention_mask"] = mask
        if inp_q:
            out["inp_q"] = rng.integers(0, 2, shape)
        if segments == 1:
            out = {k: v[0] for k, v in out.items()}
        return out
    return make


def two_stream(batch, length, targets):
    """TF-style pre-training input: a random factorisation order gives perm_mask (i may not
    see j when j comes at or after i in the order, for the predicted positions), and
    target_mapping picks `targets` positions at the end of the order."""
    def make(rng):
        ids = rng.integers(6, 100, (batch, length))
        seg = np.zeros((batch, length), np.int64)
        seg[:, length // 2:] = 1
        perm = np.zeros((batch, length, length), np.int64)
        mapping = np.zeros((batch, targets, length), np.int64)
        for b in range(batch):
            order = rng.permutation(length)
            rank = np.empty(length, int)
            rank[order] = np.arange(length)
            predicted = order[-targets:]
            for i in range(length):
                for j in range(length):
                    # j is hidden from i if j is predicted and comes at or after i in the order
                    perm[b, i, j] = int(j in predicted and rank[j] >= rank[i])
            for m, position in enumerate(sorted(predicted)):
                mapping[b, m, position] = 1
        return {"token_ids": ids, "segment_ids": seg, "perm_mask": perm, "target_mapping": mapping}
    return make


def _case(name, make, checkpoint="xlnet-tiny", dialect="keras", options=None, keras=None,
          no_anchor=None, description=""):
    """keras: how to build the keras-xlnet anchor; no_anchor: why keras-xlnet cannot express the
    case (transformers then anchors it, see anchor_transformers)."""
    return Case(name, "xlnet", make, dialect=dialect, checkpoint=f"checkpoints/{checkpoint}",
                options=options or {}, description=description, keras=keras, no_anchor=no_anchor)


CASES = [
    _case("xlnet-run-default", run_default("xlnet"), dialect="tf",
          keras=dict(train=False, attn="bi", memory_len=0),
          description="the default example of `refimpl run` (dialect tf, bi, two segments)"),
    _case("xlnet-bi-padding", tokens(2, 8, pad_left=(0, 2), pad_right=(2, 0)),
          keras=dict(train=False, attn="bi", memory_len=0),
          description="bi, keras dialect, pad id 5 at either end, two segments"),
    _case("xlnet-uni", tokens(2, 6), options={"attn_type": "uni"},
          keras=dict(train=False, attn="uni", memory_len=0),
          description="uni (causal), keras dialect: its epsilon softmax at position 0"),
    _case("xlnet-uni-mems-3-segments", tokens(2, 4, segments=3), options={"attn_type": "uni", "mem_len": 8, "segments": 3},
          keras=dict(train=False, attn="uni", memory_len=8, memory_lengths=[0, 4, 8]),
          description="three consecutive segments of 4, functional mems with mem_len 8 (keras-xlnet: "
                      "memory_len 8, Input-Memory-Length 0, 4, 8)"),
    _case("xlnet-train-phase-query-stream", tokens(2, 6, inp_q=True),
          keras=dict(train=True, attn="bi", memory_len=0),
          description="keras-xlnet's in_train_phase form: query stream over all positions from Input-Mask"),
    _case("xlnet-tied-bi", tokens(2, 7, pad_right=(0, 3)), checkpoint="xlnet-tiny-tied",
          keras=dict(train=False, attn="bi", memory_len=0),
          description="the untie_r false checkpoint: biases shared by all layers"),
    _case("xlnet-two-stream-perm-mask", two_stream(2, 8, 3), dialect="tf",
          no_anchor="keras-xlnet has no perm_mask or target_mapping input",
          description="TF pre-training form: perm_mask from a factorisation order, 3 targets per row"),
    _case("xlnet-padding-tf", tokens(2, 8, pad_left=(3, 0), pad_id=0, with_mask=True), dialect="tf",
          no_anchor="left padding with attention_mask (XLNet fine-tuning layout): keras-xlnet's "
                    "softmax (max over all keys, + 1e-7) differs from the exact one by ~2e-4",
          description="left padding with id 0 and attention_mask, dialect tf"),
    _case("xlnet-clamp-len", tokens(1, 8), dialect="tf", options={"clamp_len": 3},
          no_anchor="keras-xlnet's loader fixes clamp_len=None (and clamps to [0, c], not [-c, c])",
          description="clamp_len 3: relative positions clipped to [-3, 3]"),
    _case("xlnet-bi-data", tokens(2, 6), dialect="tf", options={"bi_data": True},
          no_anchor="keras-xlnet has no bi_data",
          description="bi_data: forward positions for the first half of the batch, backward for the second"),
    _case("xlnet-uni-tf", tokens(2, 6), dialect="tf", options={"attn_type": "uni"},
          no_anchor="keras-xlnet's uni differs by design (its epsilon softmax, 1.3e-3 at position 0)",
          description="uni (causal), dialect tf: what a port of the original computes"),
    _case("xlnet-uni-mems-tf", tokens(2, 4, segments=3), dialect="tf",
          options={"attn_type": "uni", "mem_len": 6, "segments": 3},
          no_anchor="keras-xlnet's memory is a stateful buffer and its uni softmax differs",
          description="three consecutive segments of 4, uni, functional mems with mem_len 6, dialect tf"),
    _case("xlnet-tied-two-stream-tf", two_stream(2, 7, 2), checkpoint="xlnet-tiny-tied", dialect="tf",
          no_anchor="keras-xlnet has no perm_mask or target_mapping input",
          description="the untie_r false checkpoint in the TF pre-training form (perm_mask, 2 targets)"),
    _case("xlnet-hf-mems", tokens(2, 5, segments=2), dialect="hf", options={"segments": 2},
          no_anchor="dialect hf: the exact-erf GELU, and mems kept whole when mem_len is None",
          description="dialect hf (transformers): erf GELU, two segments, mem_len None keeps every row"),
]


def anchor(case, inputs: dict, outputs: dict) -> dict:
    """keras-xlnet on the same checkpoint, layer by layer (tests/test_xlnet_model's harness)."""
    import importlib.metadata
    if case.keras is None:
        return anchor_transformers(case, inputs, outputs)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import test_xlnet_model as harness
    from refimpl import xlnet
    spec = case.keras
    segments = case.options.get("segments")
    stacked = inputs if segments else {k: v[None] for k, v in inputs.items()}
    ids_all = stacked["token_ids"]
    batch, length = ids_all.shape[1:]
    name = os.path.basename(case.checkpoint)
    run = harness.KerasRun(name, spec["train"], spec["attn"], spec["memory_len"], length, batch_size=batch)
    run.reset()
    model = xlnet.load(os.path.join(ROOT, "golden", case.checkpoint))
    pairs = {}
    for s in range(ids_all.shape[0]):
        ids, seg = ids_all[s], stacked["segment_ids"][s]
        memory_length = spec.get("memory_lengths", [0] * ids_all.shape[0])[s]
        inp_q = stacked["inp_q"][s] if "inp_q" in stacked else None
        expected = run.predict(ids, seg, memory_length, inp_q)
        prefix = f"segment-{s}/" if segments else ""
        real = np.concatenate([np.ones((batch, memory_length)), ids != PAD], axis=1)
        for key, value in expected.items():
            trace_name = harness.name_of(key)
            if trace_name is None or harness.keras_weights(model, key) is not None:
                continue
            if trace_name == "Permutation/query" and case.dialect != "keras":
                continue  # keras-xlnet hides each query from itself; tf only through perm_mask
            if key[0] == "Permutation":  # keras applies the padding mask inside its attention
                value = value * real[:, None, :]
            if trace_name == "Softmax":
                ours = xlnet.lm_probs(model, outputs[prefix + "query"])
            else:
                ours = outputs[prefix + trace_name]
            pairs[prefix + trace_name] = (ours, value)
    return _anchor_report(f"keras-xlnet {importlib.metadata.version('keras-xlnet')} "
                          f"load_trained_model_from_checkpoint(in_train_phase={spec['train']}, "
                          f"attention_type={spec['attn']!r}, memory_len={spec['memory_len']}), TF float32",
                          pairs, XLNET_TOLERANCE)


