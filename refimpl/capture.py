"""A transformers model's tensors under refimpl's trace names, for `refimpl compare`.

    from refimpl import capture, golden
    actual = capture.transformers(hf_model, token_ids, segment_ids)      # {name: ndarray}
    report = golden.compare(expected, actual)                            # expected: refimpl's trace

`transformers(model, token_ids, ...)` runs ONE forward of a BertModel / BertForPreTraining or
XLNetModel / XLNetLMHeadModel (PyTorch) and returns every tensor of refimpl's trace that the
model computes (names in refimpl/bert.py and refimpl/xlnet/__init__.py), batch-major, plus the
outputs under refimpl.run's names (sequence, pooled, mlm_logits, nsp_logits; content, query,
mems/<i>, lm_logits or lm_logits/query). Each tensor is the one transformers computed, observed, never recomputed:
module inputs and outputs through forward hooks on the instance's submodules, and values inside
functions (XLNet's ac, bd, ef and prob in rel_attn_core, BERT's scores and prob) through the
instance's methods wrapped for this call with a torch function mode that records the einsum,
softmax and add results computed inside them. Everything is restored afterwards, also on error;
classes are never patched, so a port monkeypatched on one instance is captured as it runs.

Where transformers and refimpl name or shape things differently:
- BERT's scores and probabilities exist only in transformers' "eager" attention: by default the
  call runs with attn_implementation "eager" (restored afterwards); pass None to keep the
  model's own (then no /scores, /prob).
- XLNet's run-time options are model attributes in transformers (copied from its config when
  built): attn_type, bi_data, clamp_len (None = -1, no clamping), mem_len, reuse_len given here
  are set on the instance for the call and restored.
- XLNet without mems: Memory-<i> is (b, 0, D), as in refimpl. mems/<i> are the mems
  transformers returns (use_mems=True is passed). Without a query stream, lm_logits are the
  LM head's logits; with target_mapping transformers' logits are on the query stream:
  refimpl's lm_logits/query (refimpl's lm_logits, of the content stream, is then not captured).
- transformers builds XLNet's sinusoid (Embed-Pos) in float32 whatever the model's dtype:
  captured as it is (float32), so compare applies float32 tolerances to it.
- A bfloat16 model's tensors are handed over as float32 arrays of bfloat16 values (NumPy has
  no bfloat16); float16 ones as float16.
torch and transformers are imported only when a capture runs.
"""
from __future__ import annotations

import numpy as np

QUERY = "/query"  # refimpl.xlnet's query-stream suffix
_UNSET = object()


def _torch():
    try:
        import torch
        from torch.overrides import TorchFunctionMode
    except ImportError:
        raise ImportError("refimpl.capture needs PyTorch and transformers: pip install torch "
                          "transformers (both are in refimpl's [test] extra)") from None
    return torch, TorchFunctionMode


class _Recorder:
    """Named tensors, kept in the order they are computed (detached copies)."""

    def __init__(self):
        self.tensors: dict = {}

    def put(self, name: str, value, transpose=None):
        value = value.detach().clone()
        if transpose is not None:
            value = value.permute(*transpose)
        self.tensors[name] = value

    def arrays(self) -> dict[str, np.ndarray]:
        """NumPy arrays in the tensors' dtypes; bfloat16, which NumPy lacks, as float32 (exact:
        every bfloat16 is a float32; `refimpl compare --budget` tells the format by the values)."""
        out = {}
        for name, t in self.tensors.items():
            t = t.cpu()
            if str(t.dtype) == "torch.bfloat16":
                t = t.float()
            out[name] = np.ascontiguousarray(t.numpy())
        return out


class _Patches:
    """Instance-level hooks and method wrappers, all removed or restored by close()."""

    def __init__(self):
        self._undo = []

    def hook(self, module, fn, pre: bool = False, with_kwargs: bool = False):
        register = module.register_forward_pre_hook if pre else module.register_forward_hook
        self._undo.append(register(fn, with_kwargs=with_kwargs).remove)

    def wrap(self, obj, name: str, make):
        """obj.name = make(current bound callable), on this instance only."""
        had_own = name in vars(obj)
        own = vars(obj).get(name)
        setattr(obj, name, make(getattr(obj, name)))

        def restore():
            if had_own:
                setattr(obj, name, own)
            else:
                delattr(obj, name)
        self._undo.append(restore)

    def set(self, obj, name: str, value):
        old = getattr(obj, name)
        setattr(obj, name, value)
        self._undo.append(lambda: setattr(obj, name, old))

    def close(self):
        while self._undo:
            self._undo.pop()()


def _calls_recorder(TorchFunctionMode):
    """A torch function mode that lists (function name, args, result) of every torch call
    made while it is active (the args as given, the result as computed)."""
    class Calls(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            self.calls.append((getattr(func, "__name__", str(func)), args, result))
            return result
    return Calls


def _as_tensor(torch, x, dtype):
    return None if x is None else torch.as_tensor(np.asarray(x)).to(dtype)


# --- BERT ------------------------------------------------------------------------------------
def _bert(model, torch, Calls, token_ids, segment_ids, attention_mask, attn_implementation,
          patches: _Patches, rec: _Recorder):
    base = model.bert if hasattr(model, "bert") else model
    put = rec.put
    if attn_implementation is not None and model.config._attn_implementation != attn_implementation:
        previous = model.config._attn_implementation
        model.set_attn_implementation(attn_implementation)
        patches._undo.append(lambda: model.set_attn_implementation(previous))
    emb = base.embeddings
    seen = {}

    def embedding_output(key: str, name: str):
        def hook(module, args, output):  # a forward hook must return None (or it replaces the output)
            seen[key] = output
            put(name, output)
        return hook
    patches.hook(emb.word_embeddings, embedding_output("word", "Embedding-Token"))
    patches.hook(emb.token_type_embeddings, embedding_output("type", "Embedding-Segment"))

    def embeddings_forward(original):
        def forward(*args, **kwargs):
            with Calls() as calls:
                out = original(*args, **kwargs)
            for name, call_args, result in calls.calls:  # word + token type, as computed
                if name in ("add", "__add__") and len(call_args) == 2 and \
                        call_args[0] is seen.get("word") and call_args[1] is seen.get("type"):
                    put("Embedding-Token-Segment", result)
                    break
            return out
        return forward
    patches.wrap(emb, "forward", embeddings_forward)
    patches.hook(emb.LayerNorm, lambda m, i: put("Embedding-Position", i[0]), pre=True)
    patches.hook(emb.LayerNorm, lambda m, i, o: put("Embedding-Norm", o))

    for k, layer in enumerate(base.encoder.layer, start=1):
        name = f"Encoder-{k}-MultiHeadSelfAttention"

        def self_attention_forward(original, name=name):
            def forward(*args, **kwargs):
                with Calls() as calls:
                    out = original(*args, **kwargs)
                softmaxes = [(a, r) for f, a, r in calls.calls if f == "softmax"]
                if len(softmaxes) == 1:  # eager attention: scores (masked) -> probabilities
                    put(f"{name}/scores", softmaxes[0][0][0])
                    put(f"{name}/prob", softmaxes[0][1])
                return out
            return forward
        patches.wrap(layer.attention.self, "forward", self_attention_forward)
        patches.hook(layer.attention.output.dense, lambda m, i, o, name=name: put(name, o))
        patches.hook(layer.attention.output.LayerNorm, lambda m, i, o, name=name: put(f"{name}-Norm", o))
        patches.hook(layer.output.dense, lambda m, i, o, k=k: put(f"Encoder-{k}-FeedForward", o))
        patches.hook(layer.output.LayerNorm, lambda m, i, o, k=k: put(f"Encoder-{k}-FeedForward-Norm", o))

    heads = getattr(model, "cls", None)
    if heads is not None and hasattr(heads, "predictions"):
        transform = heads.predictions.transform
        patches.hook(transform.LayerNorm, lambda m, i: put("MLM-Dense", i[0]), pre=True)
        patches.hook(transform.LayerNorm, lambda m, i, o: put("MLM-Norm", o))
        patches.hook(heads.predictions, lambda m, i, o: put("MLM-Sim", o))
    if base.pooler is not None:
        patches.hook(base.pooler.dense, lambda m, i: put("Extract", i[0]), pre=True)
        patches.hook(base.pooler, lambda m, i, o: put("NSP-Dense", o))
    if heads is not None and hasattr(heads, "seq_relationship"):
        patches.hook(heads.seq_relationship, lambda m, i, o: put("NSP", o))
    patches.hook(base, lambda m, i, o: put("sequence", o.last_hidden_state))

    ids = torch.as_tensor(np.asarray(token_ids)).long()
    with torch.no_grad():
        model(input_ids=ids,
              token_type_ids=None if segment_ids is None else torch.as_tensor(np.asarray(segment_ids)).long(),
              attention_mask=None if attention_mask is None else torch.as_tensor(np.asarray(attention_mask)).long())
    for ours, theirs in (("pooled", "NSP-Dense"), ("mlm_logits", "MLM-Sim"), ("nsp_logits", "NSP")):
        if theirs in rec.tensors:
            rec.tensors[ours] = rec.tensors[theirs]


# --- XLNet -----------------------------------------------------------------------------------
def _xlnet(model, torch, Calls, token_ids, segment_ids, attention_mask, perm_mask,
           target_mapping, mems, options: dict, patches: _Patches, rec: _Recorder):
    base = model.transformer if hasattr(model, "transformer") else model
    put = rec.put
    for name, value in options.items():
        if value is not _UNSET:
            patches.set(base, name, -1 if name == "clamp_len" and value is None else value)
    dtype = model.dtype
    ids = np.asarray(token_ids)
    bsz, qlen = ids.shape
    tm = (1, 0, 2)  # time-major (l, b, D) -> batch-major
    ijb = (2, 0, 1)  # (i, j, b) -> (b, i, j)

    patches.hook(base.word_embedding, lambda m, i, o: put("Embed-Token", o, tm))
    state = {"stream": ""}

    def layer_inputs(k):
        def pre(module, args, kwargs):
            h, g = args[0], args[1]
            if k == 1:  # what every layer receives: masks, positions, the query stream's start
                for name, mask in (("Permutation", kwargs["attn_mask_h"]),
                                   ("Permutation" + QUERY, kwargs["attn_mask_g"])):
                    klen = h.shape[0] + (0 if kwargs.get("mems") is None else kwargs["mems"].shape[0])
                    visible = torch.ones((qlen, klen, bsz), dtype=h.dtype) if mask is None else \
                        (1 - mask[..., 0]).expand(qlen, klen, bsz)
                    put(name, visible, ijb)
                if g is not None:
                    put("Embed-Mask", g, tm)
                r = kwargs["r"]
                put("Embed-Pos", r.expand(r.shape[0], bsz, r.shape[2]), tm)
            mem = kwargs.get("mems")
            put(f"Memory-{k - 1}", torch.zeros((0, bsz, h.shape[2]), dtype=h.dtype) if mem is None else mem, tm)
            if kwargs.get("seg_mat") is not None:
                put(f"Embed-Segment-{k}", kwargs["seg_mat"], (2, 0, 1, 3))
        return pre

    for k, layer in enumerate(base.layer, start=1):
        attn, ff = layer.rel_attn, layer.ff
        patches.hook(layer, layer_inputs(k), pre=True, with_kwargs=True)
        streams = {}  # the rel_attn call's inputs and outputs, to tell the streams apart

        def attn_pre(module, args, kwargs, streams=streams):
            streams.clear()
            streams.update(h=args[0], g=args[1], core_calls=0)
        patches.hook(attn, attn_pre, pre=True, with_kwargs=True)

        def attn_post(module, args, output, streams=streams):
            streams.update(out_h=output[0], out_g=output[1])
        patches.hook(attn, attn_post)

        def core(original, k=k, streams=streams):
            def rel_attn_core(*args, **kwargs):
                # transformers calls it for the content stream first, then the query stream
                stream = "" if streams["core_calls"] == 0 else QUERY
                streams["core_calls"] += 1
                shifted = streams["shifted"] = []
                with Calls() as calls:
                    out = original(*args, **kwargs)
                name = f"Attention-{k}{stream}"
                found = {}
                for f, call_args, result in calls.calls:
                    if f == "einsum" and call_args[0] == "ibnd,jbnd->bnij" and "ac" not in found:
                        found["ac"] = result  # the first: content scores (the second: bd before the shift)
                    elif f == "einsum" and call_args[0] == "ijbs,ibns->bnij":
                        found["ef"] = result
                    elif f == "softmax":
                        found["prob"] = result
                if shifted:
                    found["bd"] = shifted[0]  # rel_shift_bnij's result
                for part in ("ac", "bd", "ef", "prob"):
                    if part in found:
                        put(f"{name}/{part}", found[part])
                return out
            return rel_attn_core
        patches.wrap(attn, "rel_attn_core", core)

        def shift(original, streams=streams):
            def rel_shift_bnij(*args, **kwargs):
                out = original(*args, **kwargs)
                streams.setdefault("shifted", []).append(out)
                return out
            return rel_shift_bnij
        patches.wrap(attn, "rel_shift_bnij", shift)

        def post(original, k=k, streams=streams):
            def post_attention(h, attn_vec, *args, **kwargs):
                stream = QUERY if streams.get("g") is not None and h is streams["g"] else ""
                state["stream"] = stream  # for the LayerNorm hooks below, called inside
                with Calls() as calls:
                    out = original(h, attn_vec, *args, **kwargs)
                for f, call_args, result in calls.calls:
                    if f == "einsum" and call_args[0] == "ibnd,hnd->ibh":
                        put(f"Attention-{k}{stream}", result, tm)
                        break
                return out
            return post_attention
        patches.wrap(attn, "post_attention", post)
        patches.hook(attn.layer_norm, lambda m, i, k=k: put(f"Attention-Residual-{k}{state['stream']}", i[0], tm), pre=True)
        patches.hook(attn.layer_norm, lambda m, i, o, k=k: put(f"Attention-Normal-{k}{state['stream']}", o, tm))

        def ff_pre(module, args, streams=streams):
            state["stream"] = QUERY if streams.get("out_g") is not None and args[0] is streams["out_g"] else ""
        patches.hook(ff, ff_pre, pre=True)
        patches.hook(ff.layer_2, lambda m, i, o, k=k: put(f"FeedForward-{k}{state['stream']}", o, tm))
        patches.hook(ff.layer_norm, lambda m, i, k=k: put(f"FeedForward-Residual-{k}{state['stream']}", i[0], tm), pre=True)
        patches.hook(ff.layer_norm, lambda m, i, o, k=k: put(f"FeedForward-Normal-{k}{state['stream']}", o, tm))

    inputs = dict(
        input_ids=torch.as_tensor(ids).long(),
        token_type_ids=None if segment_ids is None else torch.as_tensor(np.asarray(segment_ids)).long(),
        attention_mask=_as_tensor(torch, attention_mask, dtype),
        perm_mask=_as_tensor(torch, perm_mask, dtype),
        target_mapping=_as_tensor(torch, target_mapping, dtype),
        mems=None if mems is None else [torch.as_tensor(np.asarray(m)).to(dtype).permute(1, 0, 2)
                                        for m in mems],
        use_mems=True)
    with torch.no_grad():
        out = model(**inputs)
    n_layer = len(base.layer)
    rec.tensors["content"] = rec.tensors[f"FeedForward-Normal-{n_layer}"]
    if target_mapping is not None:
        rec.tensors["query"] = rec.tensors[f"FeedForward-Normal-{n_layer}{QUERY}"]
    for i, mem in enumerate(out.mems or ()):
        put(f"mems/{i}", mem, tm)
    if hasattr(out, "logits"):  # with target_mapping: the query stream's (refimpl's lm_logits/query)
        put("lm_logits" if target_mapping is None else "lm_logits/query", out.logits)


def transformers(model, token_ids, segment_ids=None, attention_mask=None, perm_mask=None,
                 target_mapping=None, mems=None, *, attn_type=_UNSET, bi_data=_UNSET,
                 clamp_len=_UNSET, mem_len=_UNSET, reuse_len=_UNSET,
                 attn_implementation: str | None = "eager") -> dict[str, np.ndarray]:
    """One forward of a transformers BERT or XLNet model -> {refimpl trace name: ndarray},
    batch-major, in the order computed (see the module docstring).

    token_ids (b, l) ints; segment_ids (b, l) ints or None; attention_mask (b, l) 1 = real token,
    0 = padding. XLNet only: perm_mask (b, l, l) 1 = may not attend, target_mapping (b, m, l),
    mems (list of (b, mlen, D), refimpl's layout), and attn_type, bi_data, clamp_len, mem_len,
    reuse_len set on the model for this call. The model runs in eval mode as given (its dtype:
    call .double() for float64). BERT: attn_implementation for the call ("eager" exposes the
    scores; None keeps the model's)."""
    torch, TorchFunctionMode = _torch()
    kind = type(model).__name__
    is_bert = hasattr(model, "bert") or (hasattr(model, "embeddings") and hasattr(model, "encoder"))
    is_xlnet = hasattr(model, "transformer") or (hasattr(model, "word_embedding") and hasattr(model, "layer"))
    if not (is_bert or is_xlnet):
        raise TypeError(f"expected a transformers BertModel, BertForPreTraining, XLNetModel or "
                        f"XLNetLMHeadModel, got {kind}")
    token_ids = np.asarray(token_ids)
    if token_ids.ndim != 2 or not np.issubdtype(token_ids.dtype, np.integer):
        raise ValueError(f"token_ids has shape {token_ids.shape} and dtype {token_ids.dtype}, "
                         "expected integers of shape (batch, length)")
    options = dict(attn_type=attn_type, bi_data=bi_data, clamp_len=clamp_len, mem_len=mem_len,
                   reuse_len=reuse_len)
    if is_bert:
        xlnet_only = {**{k: v for k, v in options.items() if v is not _UNSET},
                      **{k: v for k, v in (("perm_mask", perm_mask), ("target_mapping", target_mapping),
                                           ("mems", mems)) if v is not None}}
        if xlnet_only:
            raise ValueError(f"{kind} is a BERT model: {', '.join(xlnet_only)} apply to XLNet only")
    if model.training:
        raise ValueError(f"{kind} is in training mode (dropout active): call model.eval() first")
    Calls = _calls_recorder(TorchFunctionMode)
    patches, rec = _Patches(), _Recorder()
    try:
        if is_bert:
            _bert(model, torch, Calls, token_ids, segment_ids, attention_mask, attn_implementation,
                  patches, rec)
        else:
            _xlnet(model, torch, Calls, token_ids, segment_ids, attention_mask, perm_mask,
                   target_mapping, mems, options, patches, rec)
    finally:
        patches.close()
    return rec.arrays()

