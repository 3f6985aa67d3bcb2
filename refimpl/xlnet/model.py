"""The XLNet forward pass (transformer_xl in zihangdai/xlnet modeling.py) and the LM head
(fine-tuning heads: heads.py).

Axis legend: b batch, l (= i) segment position, j key position (memory first), m prediction
target, D model width, V vocabulary. Batch-major throughout.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from refimpl import dialects, ops, precision
from refimpl.precision import stored
from refimpl.xlnet.attention import (QUERY, attention_masks, positionwise_ffn, rel_multihead_attn,
                                     segment_matrix, two_stream_rel_attn)
from refimpl.xlnet.memory import KerasMemory, cache_mem
from refimpl.xlnet.positions import relative_positional_encoding
from refimpl.xlnet.weights import XLNet, cast


@dataclasses.dataclass(frozen=True)
class Output:
    content: np.ndarray  # (b, l, D) content stream h after the last layer
    query: np.ndarray | None  # (b, m, D) query stream g with target_mapping, (b, l, D) with inp_q
    mems: list | None  # one (b, mlen, D) per layer, each layer's input: pass as `mems` next time


# --- input checks ----------------------------------------------------------------------------
def _zero_one(x, name: str, shape: tuple, shape_text: str) -> np.ndarray:
    x = np.asarray(x)
    if x.shape != shape:
        raise ValueError(f"{name} has shape {x.shape}, expected {shape_text} = {shape}")
    if x.size and not np.isin(x, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1, got values {np.unique(x)[:5].tolist()}")
    return x


def _optional_int(value, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} {value!r}: expected None or an integer >= 0")
    return int(value)


def _clamp_len(value) -> int | None:
    """clamp_len: None, or -1 (zihangdai/xlnet's default spelling), mean no clamping."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value == -1:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value < 0:
        raise ValueError(f"clamp_len {value!r}: expected None or an integer >= 0 (or -1, the "
                         "original's spelling of no clamping)")
    return _optional_int(value, "clamp_len")


def _check_inputs(m: XLNet, token_ids, segment_ids, attention_mask, perm_mask, target_mapping,
                  inp_q, mems, attn_type, bi_data) -> dict:
    c = m.config
    token_ids = np.asarray(token_ids)
    if token_ids.ndim != 2 or 0 in token_ids.shape:
        raise ValueError(f"token_ids has shape {token_ids.shape}, expected (batch, length) with "
                         "batch >= 1 and length >= 1")
    if not np.issubdtype(token_ids.dtype, np.integer):
        raise ValueError(f"token_ids must be integers, got dtype {token_ids.dtype}")
    bsz, qlen = token_ids.shape
    if attn_type not in ("bi", "uni"):
        raise ValueError(f"unknown attn_type {attn_type!r}; expected 'bi' or 'uni'")
    if bi_data and bsz % 2:
        raise ValueError(f"bi_data needs an even batch size (forward and backward halves), got "
                         f"batch size {bsz}")
    if segment_ids is not None:
        segment_ids = np.asarray(segment_ids)
        if segment_ids.shape != token_ids.shape:
            raise ValueError(f"segment_ids has shape {segment_ids.shape}, expected token_ids' "
                             f"shape {token_ids.shape}")
        if not np.issubdtype(segment_ids.dtype, np.integer):
            raise ValueError(f"segment_ids must be integers, got dtype {segment_ids.dtype}")
        if "seg_embed" not in m.transformer:
            raise ValueError(f"segment_ids given, but {m.source} has no seg_embed / r_s_bias "
                             "(a model built without segment ids)")
    if attention_mask is not None:
        attention_mask = _zero_one(attention_mask, "attention_mask", (bsz, qlen), "(batch, length)")
    if perm_mask is not None:
        perm_mask = _zero_one(perm_mask, "perm_mask", (bsz, qlen, qlen), "(batch, length, length)")
    if inp_q is not None:
        if target_mapping is not None:
            raise ValueError("give either target_mapping (query stream at the targets, starting "
                             "from mask_emb) or inp_q (query stream at every position), not both")
        inp_q = _zero_one(inp_q, "inp_q", (bsz, qlen), "(batch, length)")
    if target_mapping is not None:
        target_mapping = np.asarray(target_mapping)
        if target_mapping.ndim != 3 or target_mapping.shape[0] != bsz or \
                target_mapping.shape[2] != qlen or target_mapping.shape[1] == 0:
            raise ValueError(f"target_mapping has shape {target_mapping.shape}, expected "
                             f"(batch, num_predict, length) = ({bsz}, M >= 1, {qlen})")
        target_mapping = _zero_one(target_mapping, "target_mapping", target_mapping.shape,
                                   "(batch, num_predict, length)")
        if (target_mapping.sum(axis=-1) > 1).any():
            raise ValueError("target_mapping rows must be one-hot (or all zero for padding "
                             "targets); some row has more than one 1")
        if (target_mapping.sum(axis=1) > 1).any():
            raise ValueError("target_mapping has two targets at the same position (a column with "
                             "more than one 1): their query heads would be summed when scattered")
    query_stream = inp_q is not None or target_mapping is not None
    if query_stream and "mask_emb/mask_emb" not in m.transformer:
        raise ValueError(f"a query stream needs mask_emb, which {m.source} does not have")
    if mems is not None:
        mems = list(mems)
        if len(mems) != c.n_layer:
            raise ValueError(f"mems has {len(mems)} entries, expected one per layer ({c.n_layer})")
        mems = [np.asarray(x) for x in mems]
        mlen = mems[0].shape[1] if mems[0].ndim == 3 else -1
        for i, x in enumerate(mems):
            if x.ndim != 3 or x.shape != (bsz, mlen, c.d_model) or x.dtype.kind != "f":
                raise ValueError(f"mems[{i}] has shape {x.shape} and dtype {x.dtype}, expected "
                                 f"floats of shape (batch, mlen, d_model) = ({bsz}, mlen, "
                                 f"{c.d_model}) with the same mlen for every layer")
    return dict(token_ids=token_ids, segment_ids=segment_ids, attention_mask=attention_mask,
                perm_mask=perm_mask, target_mapping=target_mapping, inp_q=inp_q, mems=mems)


# --- the forward pass --------------------------------------------------------------------------
def mask_embedding(word_emb_k: np.ndarray, mask_emb: np.ndarray, inp_q: np.ndarray | None = None,
                   target_mapping: np.ndarray | None = None) -> np.ndarray:
    """The query stream g before the first layer: mask_emb (1, 1, D) for each target,
    (b, m, D), when target_mapping (b, m, l) is given (TF, transformers); otherwise
    inp_q * mask_emb + (1 - inp_q) * word_emb_k at every position, (b, l, D) (the original
    without target_mapping; keras-xlnet's Embed-Mask with its Input-Mask)."""
    if target_mapping is not None:
        return np.broadcast_to(mask_emb, target_mapping.shape[:2] + mask_emb.shape[-1:])
    inp_q_ext = inp_q[:, :, None]
    return inp_q_ext * mask_emb + (inp_q.dtype.type(1) - inp_q_ext) * word_emb_k


def forward(model: XLNet, token_ids, segment_ids=None, attention_mask=None, perm_mask=None,
            target_mapping=None, mems=None, mem_len=None, reuse_len=None, attn_type="bi",
            clamp_len=None, bi_data=False, dialect="tf", dtype=np.float64,
            trace: dict | None = None, inp_q=None, same_length=False) -> Output:
    """XLNet: (b, l) token ids -> Output(content (b, l, D), query, mems).

    segment_ids (b, l) ints or None (None: no segment term, as the original with seg_id=None).
    attention_mask (b, l): 1 real token, 0 padding (applied to keys; memory always visible).
    perm_mask (b, l, l): 1 = query i may not attend key j. Query stream: target_mapping
    (b, m, l) one-hot, g starting from mask_emb per target (TF, transformers), or inp_q (b, l)
    0/1, g = inp_q * mask_emb + (1 - inp_q) * word embedding at every position (the original
    without target_mapping, keras-xlnet's Input-Mask). mems: list of (b, mlen, D), one per layer.
    mem_len / reuse_len: see cache_mem. clamp_len: None, -1 (the original's default) or 0 = no
    clamping. same_length (with "uni" only, as in the original): every query sees the same
    number of keys, mlen + 1 (itself and the mlen before it).
    trace: a dict filled with named intermediates (keras-xlnet layer names).
    dtype: float64, float32, or "bfloat16" / "float16" emulated (refimpl/precision.py: float32
    arithmetic, every stored value rounded to 16 bits, given mems too; outputs are float32)."""
    d = dialects.get(dialect)
    dtype, storage = precision.resolve(dtype)
    mem_len, reuse_len = _optional_int(mem_len, "mem_len"), _optional_int(reuse_len, "reuse_len")
    clamp_len = _clamp_len(clamp_len)
    x = _check_inputs(model, token_ids, segment_ids, attention_mask, perm_mask, target_mapping,
                      inp_q, mems, attn_type, bi_data)
    with precision.storage(storage), ops.workspace(active=trace is None):
        return _forward(model, x, mem_len, reuse_len, attn_type, clamp_len, bi_data, d, dtype,
                        storage, trace, bool(same_length))


def _forward(model, x, mem_len, reuse_len, attn_type, clamp_len, bi_data, d, dtype, storage,
             trace, same_length) -> Output:
    m = cast(model, storage or dtype)
    c, t = m.config, m.transformer
    bsz, qlen = x["token_ids"].shape
    mems = x["mems"] or [np.zeros((bsz, 0, c.d_model), dtype)] * c.n_layer
    mems = [stored(mem.astype(dtype, copy=False)) for mem in mems]
    mlen = mems[0].shape[1]

    padding = None if x["attention_mask"] is None else x["attention_mask"] == 0
    if d.xlnet_pad_id is not None:  # keras-xlnet: Masking of its pad id
        is_pad = x["token_ids"] == d.xlnet_pad_id
        padding = is_pad if padding is None else padding | is_pad
    perm = None if x["perm_mask"] is None else x["perm_mask"] == 1
    mask_h, mask_g = attention_masks(bsz, qlen, mlen, padding, perm, attn_type,
                                     d.xlnet_padded_self_visible, d.query_excludes_self,
                                     same_length=same_length)
    # trace entries are recorded right where each value is computed: the trace's order is the
    # network's order, and `refimpl compare` names the first divergence by it
    if trace is not None:
        trace["Permutation"] = (~mask_h).astype(dtype)
        trace["Permutation" + QUERY] = (~mask_g).astype(dtype)

    word_emb_k = ops.embedding_lookup(t["word_embedding/lookup_table"], x["token_ids"], "token id")
    if trace is not None:
        trace["Embed-Token"] = word_emb_k
    target_mapping = None if x["target_mapping"] is None else x["target_mapping"].astype(dtype)
    inp_q = None if x["inp_q"] is None else x["inp_q"].astype(dtype)
    output_h, output_g = word_emb_k, None
    if target_mapping is not None or inp_q is not None:
        output_g = mask_embedding(word_emb_k, t["mask_emb/mask_emb"], inp_q, target_mapping)
        if trace is not None:
            trace["Embed-Mask"] = output_g
    seg_mat = None if x["segment_ids"] is None else segment_matrix(x["segment_ids"], mlen, dtype)
    if trace is not None and seg_mat is not None:  # keras-xlnet's per-layer name, one value
        trace.update({f"Embed-Segment-{i + 1}": seg_mat for i in range(c.n_layer)})
    pos_emb = stored(relative_positional_encoding(qlen, mlen + qlen, c.d_model, clamp_len,
                                                  attn_type, bi_data, bsz, d.clamp, dtype))
    if trace is not None:
        trace["Embed-Pos"] = pos_emb

    activation = ops.activation(c.ff_activation, d.gelu)
    eps = d.layer_norm_eps
    new_mems = []
    for i, w in enumerate(m.layers):
        if trace is not None:
            trace[f"Memory-{i}"] = mems[i]
        new_mems.append(cache_mem(output_h, mems[i], mem_len, reuse_len,
                                  d.xlnet_mems_without_mem_len))
        if trace is not None and new_mems[i] is not None:
            trace[f"mems/{i}"] = new_mems[i]  # what this layer hands to the next segment
        seg_embed = None if seg_mat is None else t["seg_embed"][i]
        r_s_bias = None if seg_mat is None else m.layer_bias("r_s_bias", i)
        args = dict(r=pos_emb, mems=mems[i], w=w, r_w_bias=m.layer_bias("r_w_bias", i),
                    r_r_bias=m.layer_bias("r_r_bias", i), seg_mat=seg_mat, r_s_bias=r_s_bias,
                    seg_embed=seg_embed, xlnet_mask=d.xlnet_mask, eps=eps, trace=trace, layer=i + 1)
        if output_g is None:
            output_h = rel_multihead_attn(output_h, attn_mask=mask_h, **args)
        else:
            output_h, output_g = two_stream_rel_attn(output_h, output_g, attn_mask_h=mask_h,
                                                     attn_mask_g=mask_g,
                                                     target_mapping=target_mapping, **args)
            output_g = positionwise_ffn(output_g, w, activation, eps, trace, i + 1, QUERY)
        output_h = positionwise_ffn(output_h, w, activation, eps, trace, i + 1)
    return Output(content=output_h, query=output_g,
                  mems=None if new_mems[0] is None else new_mems)


def stateful_forward(model: XLNet, memory: KerasMemory, token_ids, segment_ids, memory_length: int,
                     attention_mask=None, perm_mask=None, inp_q=None, attn_type="bi",
                     dialect="keras", dtype=np.float32, trace: dict | None = None) -> Output:
    """One predict call of a keras-xlnet model built with batch_size, memory_len, target_len:
    reads each layer's memory from `memory` (Input-Memory-Length = memory_length), runs
    `forward`, then appends each layer's input to `memory`, as the Memory layers do.
    out.mems holds those layer inputs (b, l, D)."""
    token_ids = np.asarray(token_ids)
    if token_ids.ndim != 2:
        raise ValueError(f"token_ids has shape {token_ids.shape}, expected (batch, length)")
    mems = memory.read(token_ids.shape[0], token_ids.shape[1], memory_length)
    out = forward(model, token_ids, segment_ids, attention_mask=attention_mask,
                  perm_mask=perm_mask, mems=mems,
                  mem_len=token_ids.shape[1], attn_type=attn_type, dialect=dialect, dtype=dtype,
                  trace=trace, inp_q=inp_q)
    memory.update(out.mems)  # mem_len = segment length: each layer's input for this segment
    return out


# --- heads -------------------------------------------------------------------------------------
def lm_logits(model: XLNet, hidden) -> np.ndarray:
    """Tied LM head: hidden E^T + lm_loss/bias: (b, *, D) -> (b, *, V), in hidden's dtype."""
    hidden = np.asarray(hidden)
    if hidden.dtype not in (np.float32, np.float64) or hidden.shape[-1:] != (model.config.d_model,):
        raise ValueError(f"hidden has shape {hidden.shape} and dtype {hidden.dtype}, expected "
                         f"float32/float64 of shape (..., d_model = {model.config.d_model})")
    if model.lm_loss is None:
        raise ValueError(f"{model.source} has no model/lm_loss/bias")
    m = cast(model, precision.weights_dtype(hidden.dtype))
    return stored(hidden @ m.transformer["word_embedding/lookup_table"].T + m.lm_loss["bias"])


def lm_probs(model: XLNet, hidden) -> np.ndarray:
    """Softmax of lm_logits, what keras-xlnet's Softmax (EmbeddingSim) layer outputs:
    (b, *, D) -> (b, *, V)."""
    return ops.softmax(lm_logits(model, hidden), axis=-1)


def lm_head(model: XLNet, hidden, dialect="tf") -> np.ndarray:
    """lm_logits or lm_probs, as the dialect's `heads` says: (b, *, D) -> (b, *, V)."""
    if dialects.get(dialect).heads == "probs":
        return lm_probs(model, hidden)
    return lm_logits(model, hidden)
