"""The XLNet golden cases and their anchor (keras-xlnet), used by tools/make_golden.py.

Every case that keras-xlnet can express is cross-checked against it layer by layer: dialect
"keras" cases on every traced layer, the default run (dialect tf, bi, no padding) too, since
there tf and keras differ only by the LayerNorm epsilon. The dialect "tf" cases keras-xlnet
cannot express (perm_mask with target_mapping, left padding through attention_mask, the
symmetric clamp_len, bi_data) are cross-checked against transformers' XLNet with its tanh GELU
("gelu_new"), which then computes the tf dialect: every layer's output of both streams, the
attention probabilities and the final output.

The head cases (options["head"]) are anchored end to end in float64 (anchor_heads): dialect tf
by transformers' XLNetModel for the encoder and the original's head code (tests/test_heads.py's
transcription of function_builder.py / modeling.py) on its content stream; dialect hf by
transformers' XLNetForQuestionAnswering.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from make_golden import HEAD_TOLERANCE, Case, _anchor_report, run_default, tests_module

# transformers (PyTorch float32), the same bound as tests/tolerances.py "hf-model".
HF_TOLERANCE = {"rtol": 1e-5, "atol": 1e-4}


def anchor_transformers(case, inputs: dict, outputs: dict) -> dict:
    """transformers' XLNet computes dialect "hf" (erf GELU), and with ff_activation "gelu_new"
    (the tanh GELU) dialect "tf" (clamp to [-c, c], additive -1e30 masking, query stream only
    through perm_mask): compare every layer's output of both streams (its hidden states), the
    attention probabilities, the final output and the mems, segment by segment for a memory
    run (transformers' mems passed on, as refimpl's)."""
    import importlib.metadata
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import test_transformers_anchor as harness
    assert case.dialect in ("tf", "hf"), case.name
    opts = case.options
    activation = "gelu_new" if case.dialect == "tf" else "gelu"
    m, model = harness.hf_xlnet(os.path.basename(case.checkpoint), opts.get("mem_len"),
                                opts.get("reuse_len"), opts.get("attn_type", "bi"),
                                opts.get("clamp_len") or -1, opts.get("bi_data", False), activation)
    same_length = bool(opts.get("same_length"))
    # the harness caches its models by their other settings: same_length (read by create_mask at
    # every call) is set for this case only, and put back below
    model.transformer.same_length = same_length
    try:
        pairs = _transformers_pairs(case, inputs, outputs, m, model.transformer)
    finally:
        model.transformer.same_length = False
    if same_length:
        pairs.update(_original_mask_pairs(case, inputs, outputs, m))
    why = f"; keras-xlnet cannot: {case.no_anchor}" if case.no_anchor else ""
    with_masks = ("; the masks of every attention (probability exactly 0) against the original's "
                  "_create_mask / transformer_xl mask code (tests/test_heads.py original_masks)"
                  if same_length else "")
    report = _anchor_report(f"transformers {importlib.metadata.version('transformers')} XLNetModel "
                            f"(PyTorch float32) with ff_activation {activation!r}"
                            f"{', same_length True' if same_length else ''} (= dialect "
                            f"{case.dialect}){why}{with_masks}", pairs, HF_TOLERANCE)
    return report


def _transformers_pairs(case, inputs: dict, outputs: dict, m, transformer) -> dict:
    """transformers' tensors beside refimpl's, by name: transformer is an XLNetModel (float32, or
    float64 for the head cases; the masks are handed over in its dtype)."""
    import torch
    opts = case.options
    segments = opts.get("segments")
    stacked = inputs if segments else {k: v[None] for k, v in inputs.items()}
    n_layer = m.config.n_layer
    pairs, mems = {}, None
    for s in range(len(stacked["token_ids"])):
        step = {k: v[s] for k, v in stacked.items()}
        prefix = f"segment-{s}/" if segments else ""
        as_float = lambda name: (None if name not in step  # noqa: E731
                                 else torch.from_numpy(step[name]).to(transformer.dtype))
        with torch.no_grad():
            theirs = transformer(
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
    return pairs


def _original_mask_pairs(case, inputs: dict, outputs: dict, m) -> dict:
    """same_length: which keys each query of the content stream sees, in refimpl (its attention
    probabilities are exactly 0 on masked keys: exp(-1e30) underflows) and in the original's mask
    code (tests/test_heads.py original_masks, time-major), segment by segment (the memory of
    segment s is min(mem_len, the rows so far))."""
    heads = tests_module("test_heads")
    opts = case.options
    segments = opts.get("segments")
    stacked = inputs if segments else {k: v[None] for k, v in inputs.items()}
    pairs, mlen = {}, 0
    for s in range(len(stacked["token_ids"])):
        bsz, qlen = stacked["token_ids"][s].shape
        prefix = f"segment-{s}/" if segments else ""
        input_mask = np.zeros((qlen, bsz), np.float32)
        if "attention_mask" in stacked:
            input_mask = (1 - stacked["attention_mask"][s]).T.astype(np.float32)
        content, _ = heads.original_masks(qlen, mlen, input_mask, np.zeros((qlen, qlen, bsz), np.float32),
                                          opts.get("same_length", False))
        masked = content[..., 0].transpose(2, 0, 1)[:, None]  # (b, 1, i, j)
        for k in range(1, m.config.n_layer + 1):
            prob = outputs[f"{prefix}Attention-{k}/prob"]
            pairs[f"{prefix}Attention-{k}/prob == 0"] = (
                (prob == 0).astype(np.float64), np.broadcast_to(masked, prob.shape).astype(np.float64))
        mlen = min(opts["mem_len"], mlen + qlen) if opts.get("mem_len") else mlen + qlen
    return pairs


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


# XLNet's special ids (golden/checkpoints/VOCAB.json) and the segment ids of the fine-tuning
# scripts (classifier_utils.py, run_race.py, run_squad.py: SEG_ID_A/P 0, B/Q 1, CLS 2, PAD 3)
SEP, CLS = 4, 3
SEG_A, SEG_B, SEG_CLS, SEG_PAD = 0, 1, 2, 3


def _pair(rng, len_a: int, len_b: int) -> tuple[list, list]:
    """A <sep> B <sep> <cls>: ids (words 9..99) and segment ids."""
    ids = [*rng.integers(9, 100, len_a), SEP, *rng.integers(9, 100, len_b), SEP, CLS]
    return ids, [SEG_A] * (len_a + 1) + [SEG_B] * (len_b + 1) + [SEG_CLS]


def classifier_layout(batch, length, min_real=5):
    """classifier_utils.py's convert_single_example: A <sep> B <sep> <cls>, left-padded with id 0
    and SEG_ID_PAD; attention_mask 1 = real token (the original's input_mask inverted)."""
    def make(rng):
        ids = np.zeros((batch, length), np.int64)
        seg = np.full((batch, length), SEG_PAD, np.int64)
        mask = np.zeros((batch, length), np.int64)
        for b in range(batch):
            real = length if b == 0 else int(rng.integers(min_real, length + 1))  # row 0 unpadded
            len_a = int(rng.integers(1, real - 3))
            row_ids, row_seg = _pair(rng, len_a, real - 3 - len_a)
            ids[b, length - real:], seg[b, length - real:], mask[b, length - real:] = row_ids, row_seg, 1
        return {"token_ids": ids, "segment_ids": seg, "attention_mask": mask}
    return make


def race_layout(examples, n_choice, length, context_len=2):
    """run_race.py's convert_single_example: per choice, context <sep> question+option <sep> <cls>,
    left-padded; the n_choice rows of one example consecutive (batch = examples * n_choice)."""
    def make(rng):
        ids = np.zeros((examples * n_choice, length), np.int64)
        seg = np.full(ids.shape, SEG_PAD, np.int64)
        mask = np.zeros(ids.shape, np.int64)
        for e in range(examples):
            context = rng.integers(9, 100, context_len)
            for c in range(n_choice):
                b = e * n_choice + c
                qa = rng.integers(9, 100, int(rng.integers(1, length - context_len - 2)))
                row = [*context, SEP, *qa, SEP, CLS]
                row_seg = [SEG_A] * (context_len + 1) + [SEG_B] * (len(qa) + 1) + [SEG_CLS]
                pad = length - len(row)
                ids[b, pad:], seg[b, pad:], mask[b, pad:] = row, row_seg, 1
        return {"token_ids": ids, "segment_ids": seg, "attention_mask": mask}
    return make


def squad_layout(batch, length, training=False, min_paragraph=3):
    """run_squad.py's convert_examples_to_features: paragraph <sep> question <sep> <cls>, then
    right padding with id 0 and SEG_ID_PAD; p_mask 0 on the paragraph and <cls> (the answer
    candidates), cls_index the position of <cls>; training: start_positions in the paragraph."""
    def make(rng):
        ids = np.zeros((batch, length), np.int64)
        seg = np.full((batch, length), SEG_PAD, np.int64)
        mask = np.zeros((batch, length), np.int64)
        p_mask = np.ones((batch, length), np.int64)
        cls_index = np.zeros(batch, np.int64)
        starts = np.zeros(batch, np.int64)
        for b in range(batch):
            real = length if b == 0 else int(rng.integers(min_paragraph + 4, length + 1))
            question = int(rng.integers(1, real - 2 - min_paragraph))
            paragraph = real - 3 - question
            row_ids, row_seg = _pair(rng, paragraph, question)
            ids[b, :real], seg[b, :real], mask[b, :real] = row_ids, row_seg, 1
            p_mask[b, :paragraph] = p_mask[b, real - 1] = 0
            cls_index[b] = real - 1
            starts[b] = rng.integers(0, paragraph)
        out = {"token_ids": ids, "segment_ids": seg, "attention_mask": mask, "p_mask": p_mask,
               "cls_index": cls_index}
        if training:
            out["start_positions"] = starts
        return out
    return make


def _case(name, make, checkpoint="xlnet-tiny", dialect="keras", options=None, keras=None,
          no_anchor=None, description="", original=None):
    """keras: how to build the keras-xlnet anchor; no_anchor: why keras-xlnet cannot express the
    case (transformers then anchors it, see anchor_transformers); original: a head case's FLAGS
    for the original's head code (anchor_heads)."""
    return Case(name, "xlnet", make, dialect=dialect, checkpoint=f"checkpoints/{checkpoint}",
                options=options or {}, description=description, keras=keras, no_anchor=no_anchor,
                original=original)


NO_KERAS_HEADS = "keras-xlnet has no fine-tuning heads"


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
    _case("xlnet-classifier-attn", classifier_layout(3, 8), checkpoint="xlnet-tiny-classifier",
          dialect="tf", options={"head": "classification"}, no_anchor=NO_KERAS_HEADS,
          original=dict(task="yelp5", n_class=5, summary_type="attn", use_summ_proj=True),
          description="run_classifier.py's head (task yelp5, summary_type attn with its padding "
                      "mask, use_summ_proj): A <sep> B <sep> <cls>, left padding"),
    _case("xlnet-regression-no-proj", classifier_layout(3, 8), checkpoint="xlnet-tiny-regression",
          dialect="tf", options={"head": "regression"}, no_anchor=NO_KERAS_HEADS,
          original=dict(task="sts-b", summary_type="last", use_summ_proj=False),
          description="run_classifier.py's regression head (sts-b) on the tied checkpoint, "
                      "summary last without projection (use_summ_proj False)"),
    _case("xlnet-race", race_layout(2, 4, 7), checkpoint="xlnet-tiny-race", dialect="tf",
          options={"head": "race", "n_choice": 4}, no_anchor=NO_KERAS_HEADS,
          original=dict(summary_type="last", use_summ_proj=True, n_choice=4),
          description="run_race.py's per-choice scores: 2 examples x 4 choices (batch 8), "
                      "context <sep> question+option <sep> <cls>, left padding"),
    _case("xlnet-squad-beam", squad_layout(3, 10), checkpoint="xlnet-tiny-squad", dialect="tf",
          options={"head": "squad", "start_n_top": 3, "end_n_top": 2}, no_anchor=NO_KERAS_HEADS,
          original=dict(start_n_top=3, end_n_top=2),
          description="run_squad.py's inference beam (start_n_top 3, end_n_top 2: log-probs, "
                      "start-major) with p_mask and cls_index, right padding"),
    _case("xlnet-squad-beam-hf", squad_layout(3, 10), checkpoint="xlnet-tiny-squad", dialect="hf",
          options={"head": "squad", "start_n_top": 3, "end_n_top": 2}, no_anchor=NO_KERAS_HEADS,
          description="dialect hf: XLNetForQuestionAnswering's beam (softmax probabilities, "
                      "end-major) and the erf GELU, p_mask and cls_index"),
    _case("xlnet-squad-train", squad_layout(3, 10, training=True), checkpoint="xlnet-tiny-squad",
          dialect="tf", options={"head": "squad"}, no_anchor=NO_KERAS_HEADS,
          original=dict(start_n_top=5, end_n_top=5),
          description="run_squad.py in training: start_positions given, the end log-probs "
                      "conditioned on them, p_mask and cls_index"),
    _case("xlnet-uni-same-length-mems", tokens(2, 5, segments=2), dialect="tf",
          options={"attn_type": "uni", "same_length": True, "mem_len": 3, "segments": 2},
          no_anchor="keras-xlnet has no same_length",
          description="uni with same_length: every query sees as many keys, the memory's length "
                      "+ 1 (1 in segment 0, 4 in segment 1); two segments of 5, mem_len 3"),
]


def anchor(case, inputs: dict, outputs: dict) -> dict:
    """keras-xlnet on the same checkpoint, layer by layer (tests/test_xlnet_model's harness)."""
    import importlib.metadata
    if case.options.get("head"):
        return anchor_heads(case, inputs, outputs)
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




# --- the fine-tuning heads ------------------------------------------------------------------------
def _float64_sinusoid(transformer):
    """transformers' XLNetModel builds its relative positional encoding in float32 (.float() in
    relative_positional_encoding), even after .double(): run its own function with Tensor.float
    meaning Tensor.double while it runs, so that the whole model computes in float64 (without
    this, 7.7e-8 abs on the content stream of xlnet-classifier-attn)."""
    import functools
    import torch
    own = transformer.relative_positional_encoding

    @functools.wraps(own)
    def in_float64(*args, **kwargs):
        saved = torch.Tensor.float
        torch.Tensor.float = torch.Tensor.double
        try:
            return own(*args, **kwargs)
        finally:
            torch.Tensor.float = saved
    transformer.relative_positional_encoding = in_float64
    return transformer


def _hf_encoder(heads, m, ff_activation: str):
    """transformers' XLNetModel with m's encoder weights (tests/test_heads.py xlnet_state),
    float64. Fine-tuned checkpoints have no mask_emb (only the query stream reads it)."""
    c = m.config
    config = heads.transformers.XLNetConfig(
        vocab_size=c.n_token, d_model=c.d_model, n_layer=c.n_layer, n_head=c.n_head,
        d_inner=c.d_inner, ff_activation=ff_activation, untie_r=c.untie_r, dropout=0.0,
        layer_norm_eps=1e-12)
    model = heads.transformers.XLNetModel(config).eval()
    state = {k[len("transformer."):]: heads._t(v) for k, v in heads.xlnet_state(m).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"mask_emb"}, (missing, unexpected)
    return _float64_sinusoid(model.double())  # float32 weights widen exactly


def anchor_heads(case, inputs: dict, outputs: dict) -> dict:
    """A head case, end to end, in float64. Dialect tf: transformers' XLNetModel with the tanh
    GELU computes the encoder (every layer, the attention probabilities, the content stream), and
    the original's head code (tests/test_heads.py Original: zihangdai/xlnet function_builder.py /
    modeling.py in a float64 tf.compat.v1 graph, each variable read by name from the checkpoint
    with TensorFlow's reader, FLAGS from case.original) runs on transformers' content stream.
    Dialect hf: transformers' XLNetForQuestionAnswering, encoder and beam. Every head tensor of
    the case is compared."""
    import importlib.metadata
    from refimpl import xlnet
    heads = tests_module("test_heads")
    torch, tf, tf1 = heads.torch, heads.tf, heads.tf1
    name = os.path.basename(case.checkpoint)
    m = xlnet.load(os.path.join(ROOT, "golden", case.checkpoint))
    head = case.options["head"]
    version = importlib.metadata.version("transformers")
    if case.dialect == "hf":
        assert head == "squad", case.name
        model = heads.hf_xlnet(heads.transformers.XLNetForQuestionAnswering, m, heads.squad_state(m),
                               start_n_top=case.options["start_n_top"], end_n_top=case.options["end_n_top"])
        model = model.double()
        _float64_sinusoid(model.transformer)
        pairs = _transformers_pairs(case, inputs, outputs, m, model.transformer)
        t = lambda key: torch.from_numpy(inputs[key])  # noqa: E731
        with torch.no_grad():
            theirs = model(t("token_ids"), token_type_ids=t("segment_ids"),
                           attention_mask=t("attention_mask").double(), p_mask=t("p_mask").double(),
                           cls_index=t("cls_index"))
        for key in ("start_top_log_probs", "start_top_index", "end_top_log_probs", "end_top_index",
                    "cls_logits"):
            pairs[f"squad/{key}"] = (outputs[f"squad/{key}"], getattr(theirs, key).numpy())
        anchor = (f"transformers {version} XLNetForQuestionAnswering (PyTorch float64 with a float64 "
                  "sinusoid; ff_activation 'gelu' = dialect hf): every layer, the content stream, the beam")
        short = "transformers XLNetForQuestionAnswering"
    else:
        assert case.dialect == "tf" and case.original is not None, case.name
        pairs = _transformers_pairs(case, inputs, outputs, m, _hf_encoder(heads, m, "gelu_new"))
        content = pairs["content"][1]  # transformers' content stream: the heads' input
        flags = case.original
        input_mask = (1 - inputs["attention_mask"]).astype(np.float64).T  # the original's: 1 = padding, time-major

        def build(o):
            hidden, mask = heads.time_major(content), tf.constant(input_mask)
            if head == "squad":
                training = "start_positions" in inputs
                return o.get_qa_outputs(hidden, m.config, tf.constant(inputs["p_mask"].astype(np.float64)),
                                        tf.constant(inputs["cls_index"]), flags["start_n_top"],
                                        flags["end_n_top"], training,
                                        tf.constant(inputs["start_positions"]) if training else None)
            summary = o.get_pooled_out(hidden, m.config, mask, flags["summary_type"], flags["use_summ_proj"])
            if head == "race":
                return {"logits": o.get_race_logits(summary, len(content) // flags["n_choice"], flags["n_choice"])}
            with tf1.variable_scope("model", reuse=tf1.AUTO_REUSE):
                if head == "classification":
                    return {"logits": o.classification_logits(summary, flags["n_class"],
                                                              f"classification_{flags['task']}")}
                return {"logits": o.regression_logits(summary, f"regression_{flags['task']}")}
        expected, used = heads.run_original(name, build)
        assert set(used) <= set(m.head_weights), sorted(set(used) - set(m.head_weights))
        for key, value in expected.items():
            pairs[f"{head}/{key}"] = (outputs[f"{head}/{key}"], value)
        anchor = (f"zihangdai/xlnet's head code (tests/test_heads.py Original, tf.compat.v1 float64 on "
                  f"TensorFlow {tf.__version__}, FLAGS {flags}, {len(set(used))} head variables read by "
                  f"name) on the content stream of transformers {version} XLNetModel (PyTorch float64 "
                  "with a float64 sinusoid; ff_activation 'gelu_new' = dialect tf), which also anchors "
                  "every layer")
        short = "original TF heads + transformers"
    unchecked = [n for n in outputs if n.startswith(head + "/") and n not in pairs]
    if unchecked:
        raise ValueError(f"{case.name}: the anchor does not compute {unchecked}")
    report = _anchor_report(anchor, pairs, HEAD_TOLERANCE)
    report["short"] = short
    return report
