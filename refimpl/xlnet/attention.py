"""Relative multi-head attention, one stream or two, after zihangdai/xlnet modeling.py.

Axis legend: b batch, i query position, j key position (memory first, then the segment),
r relative-position row, m prediction target, l sequence position, n head, d head dim,
s segment relation (0 same, 1 different), D model width, I inner width.
Arrays are batch-major; the original is time-major ([i, b, ...]) with the same math.
Masks are boolean (b, i, j): True = query i may NOT attend key j.
"""
from __future__ import annotations

import math

import numpy as np

from refimpl import ops, precision
from refimpl.precision import stored
from refimpl.xlnet.positions import rel_shift

KERAS_EPSILON = 1e-7  # K.epsilon(), added to the softmax denominator by keras-xlnet
MASKED_SCORE = 1e30  # subtracted from masked scores by the original
MASKED_SCORE_FLOAT16 = 65500.0  # transformers' value in float16, where 1e30 overflows
QUERY = "/query"  # trace-name suffix of the query stream: Attention-1/query, ...


def head_projection(h: np.ndarray, kernel: np.ndarray, scratch_name: str | None = None) -> np.ndarray:
    """einsum("blD,Dnd->blnd", h, kernel), no bias, written as one matmul over the flattened
    (n d) axis, as TF's einsum runs it (12-15% faster than np.einsum at L=512, 33% for the
    float64 output projection): (b, l, D), (D, n, d) -> (b, l, n, d). scratch_name: into that
    workspace array when a workspace is active (ops.scratch)."""
    D, n, d = kernel.shape
    return ops.dense(h, kernel.reshape(D, n * d), scratch_name=scratch_name).reshape(
        h.shape[:-1] + (n, d))


def segment_matrix(segment_ids: np.ndarray, mlen: int, dtype) -> np.ndarray:
    """One-hot of "key j is in another segment than query i", memory counting as segment 0:
    (b, i) ints -> (b, i, j, 2) with j = mlen + i."""
    cat_ids = np.concatenate([np.zeros((segment_ids.shape[0], mlen), segment_ids.dtype),
                              segment_ids], axis=1)
    different = segment_ids[:, :, None] != cat_ids[:, None, :]
    return np.stack([~different, different], axis=-1).astype(dtype)


def attention_masks(bsz: int, qlen: int, mlen: int, input_mask: np.ndarray | None,
                    perm_mask: np.ndarray | None, attn_type: str, padded_self_visible: bool,
                    query_excludes_self: bool,
                    same_length: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(content mask, query mask), each (b, i, j) bool, True = blocked; memory is blocked only
    by same_length.

    input_mask (b, l): True = padding, applied to keys. perm_mask (b, i, l): True = blocked.
    "uni" blocks keys after the query (_create_mask). The content stream always sees its own
    position, where padded_self_visible (TF's (mask - eye) > 0) even a padded one; the query
    stream uses the mask as is, plus the diagonal when query_excludes_self (keras-xlnet).
    same_length with "uni" (_create_mask's band): query i also loses every key more than mlen
    positions back, memory included, so each query sees mlen + 1 keys; no effect with "bi"."""
    blocked = np.zeros((bsz, qlen, qlen), bool)
    if perm_mask is not None:
        blocked |= perm_mask
    if attn_type == "uni":
        blocked |= np.triu(np.ones((qlen, qlen), bool), k=1)[None]
    pad = np.zeros((bsz, 1, qlen), bool) if input_mask is None else input_mask[:, None, :]
    eye = np.eye(qlen, dtype=bool)[None]
    if padded_self_visible:
        content = (blocked | pad) & ~eye
    else:
        content = (blocked & ~eye) | pad
    query = blocked | pad | eye if query_excludes_self else blocked | pad
    mems = np.zeros((bsz, qlen, mlen), bool)
    content, query = np.concatenate([mems, content], axis=2), np.concatenate([mems, query], axis=2)
    if attn_type == "uni" and same_length:  # key j (memory first) blocked when j < i
        too_far = np.tril(np.ones((qlen, mlen + qlen), bool), k=-1)[None]
        content, query = content | too_far, query | too_far
    return content, query


def softmax_additive(score: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """TF / transformers: softmax(score - 1e30 * mask); a fully masked row becomes uniform.
    (b, n, i, j), (b, 1, i, j) bool -> (b, n, i, j). Overwrites `score` (a scratch array)."""
    masked = MASKED_SCORE_FLOAT16 if precision.current() == "float16" else MASKED_SCORE
    # score - 1e30 * mask, subtracting only where masked: the same numbers (elsewhere the
    # original subtracts 0), with no float copy of the mask
    np.subtract(score, score.dtype.type(masked), out=score, where=mask)
    return ops.softmax(score, axis=-1, inplace=True)


def softmax_keras(score: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """keras-xlnet: exp(score - max over ALL keys, masked ones included) * allowed, divided by
    (sum + 1e-7); a fully masked row becomes zeros, a row whose visible scores are far below the
    masked maximum gets a sum < 1. (b, n, i, j), (b, 1, i, j) bool -> (b, n, i, j).
    Overwrites `score` (a scratch array)."""
    score -= score.max(axis=-1, keepdims=True)
    e = np.exp(score, out=score)
    np.copyto(e, 0, where=mask)  # e * (1 - mask): masked keys to 0, the others as they are
    e /= e.sum(axis=-1, keepdims=True) + score.dtype.type(KERAS_EPSILON)
    return stored(e)


def rel_attn_core(q_head, k_head_h, v_head_h, k_head_r, seg_embed, seg_mat, r_w_bias, r_r_bias,
                  r_s_bias, attn_mask, xlnet_mask: str, trace: dict | None = None,
                  layer: int = 1, stream: str = "") -> np.ndarray:
    """Scores ac + bd + ef, scaled, masked, softmax, weighted values:
    q (b, i, n, d), k and v (b, j, n, d), k_r (b, r, n, d), seg_embed (2, n, d) or None,
    seg_mat (b, i, j, 2) or None, biases (n, d), mask (b, i, j) bool -> (b, i, n, d)."""
    if xlnet_mask not in ("keras", "additive"):
        raise ValueError(f"unknown xlnet_mask {xlnet_mask!r}; expected 'additive' or 'keras'")
    scale = q_head.dtype.type(1.0 / math.sqrt(q_head.shape[-1]))
    name = f"Attention-{layer}{stream}"  # trace names, each recorded right where it is computed
    ac = ops.attention_scores(stored(q_head + r_w_bias), k_head_h, "ac")  # einsum bind,bjnd->bnij
    assert attn_mask.shape == (ac.shape[0],) + ac.shape[2:], (attn_mask.shape, ac.shape)
    if trace is not None:
        trace[f"{name}/ac"] = ac
    bd = ops.attention_scores(stored(q_head + r_r_bias), k_head_r, "bd")  # einsum bind,brnd->bnir
    bd = rel_shift(bd, klen=ac.shape[-1])
    if trace is not None:
        trace[f"{name}/bd"] = bd
    # work: the scaled score ac + bd + ef, scratch that the softmax overwrites with attn_prob
    # (a new array, so ac and bd keep their meaning)
    work = np.add(ac, bd, out=ops.scratch("work", ac.shape, ac.dtype))
    if seg_mat is not None:
        ef = stored(np.einsum("bind,snd->bnis", stored(q_head + r_s_bias), seg_embed, optimize=True))
        # einsum("bijs,bnis->bnij", seg_mat, ef) with a one-hot seg_mat selects, for each key,
        # the ef of "same" (s = 0) or "different" (s = 1) segment: np.where selects the same
        # numbers without the multiply-adds (per head at L=512, float64: 1.4 -> 1.1 ms, with
        # 512 memory 3.8 -> 2.3 ms; float32 about the same, 0.7-2.0 ms either way)
        ef = np.where(seg_mat[:, None, :, :, 1] == 1, ef[:, :, :, None, 1], ef[:, :, :, None, 0])
        if trace is not None:
            trace[f"{name}/ef"] = ef
        work += ef
    work *= scale
    work = stored(work)  # emulated 16 bits: (ac + bd + ef) * scale in one rounding
    softmax = softmax_keras if xlnet_mask == "keras" else softmax_additive
    attn_prob = softmax(work, attn_mask[:, None])
    if trace is not None:
        trace[f"{name}/prob"] = attn_prob
    attn_vec = ops.attention_values(attn_prob, v_head_h)  # einsum bnij,bjnd->bind
    return attn_vec


def attend(q_head, k_head_h, v_head_h, k_head_r, seg_embed, seg_mat, r_w_bias, r_r_bias,
           r_s_bias, attn_mask, xlnet_mask: str, trace: dict | None = None, layer: int = 1,
           stream: str = "") -> np.ndarray:
    """rel_attn_core, arguments and result alike. With a trace, one call (the trace holds whole
    (b, n, i, j) tensors); without, one sequence and a block of heads at a time
    (ops.head_blocks): the same numbers, each block's (i, r) and (i, j) scores kept in cache."""
    if trace is not None:
        return rel_attn_core(q_head, k_head_h, v_head_h, k_head_r, seg_embed, seg_mat, r_w_bias,
                             r_r_bias, r_s_bias, attn_mask, xlnet_mask, trace, layer, stream)
    b, i, n, _ = q_head.shape
    attn_vec = ops.scratch(f"attn_vec{stream}", q_head.shape, q_head.dtype)
    widest = i * k_head_r.shape[1] * q_head.itemsize  # bd before the shift: (i, r) per head
    for seq, hs in ops.head_blocks(b, n, widest):
        attn_vec[seq, :, hs] = rel_attn_core(
            q_head[seq, :, hs], k_head_h[seq, :, hs], v_head_h[seq, :, hs], k_head_r[seq, :, hs],
            None if seg_embed is None else seg_embed[:, hs], None if seg_mat is None else seg_mat[seq],
            r_w_bias[hs], r_r_bias[hs], None if r_s_bias is None else r_s_bias[hs], attn_mask[seq],
            xlnet_mask)
    return attn_vec


def post_attention(h: np.ndarray, attn_vec: np.ndarray, w: dict, eps: float,
                   trace: dict | None = None, layer: int = 1, stream: str = "") -> np.ndarray:
    """Output projection (o applied transposed), residual, LayerNorm:
    (b, i, D), (b, i, n, d) -> (b, i, D). Traces Attention-<layer> (the projection),
    Attention-Residual-<layer>, Attention-Normal-<layer>, each with the stream suffix."""
    # einsum("bind,Dnd->biD", attn_vec, o) as one matmul over the flattened (n d) axis
    o = w["rel_attn/o/kernel"]
    attn_out = stored(attn_vec.reshape(attn_vec.shape[:2] + (-1,)) @ o.reshape(o.shape[0], -1).T)
    residual = stored(attn_out + h)
    output = ops.layer_norm(residual, w["rel_attn/LayerNorm/gamma"], w["rel_attn/LayerNorm/beta"],
                            eps)
    if trace is not None:
        trace.update({f"Attention-{layer}{stream}": attn_out,
                      f"Attention-Residual-{layer}{stream}": residual,
                      f"Attention-Normal-{layer}{stream}": output})
    return output


def positionwise_ffn(inp: np.ndarray, w: dict, activation, eps: float,
                     trace: dict | None = None, layer: int = 1, stream: str = "") -> np.ndarray:
    """LayerNorm(inp + layer_2(activation(layer_1(inp)))): (b, l, D) -> (b, l, D).
    Traces FeedForward-<layer> (before the residual), FeedForward-Residual-<layer> and
    FeedForward-Normal-<layer>, each with the stream suffix."""
    hidden = activation(ops.dense(inp, w["ff/layer_1/kernel"], w["ff/layer_1/bias"], "ff/layer_1"))
    out = ops.dense(hidden, w["ff/layer_2/kernel"], w["ff/layer_2/bias"])
    residual = stored(out + inp)
    output = ops.layer_norm(residual, w["ff/LayerNorm/gamma"], w["ff/LayerNorm/beta"], eps)
    if trace is not None:
        trace.update({f"FeedForward-{layer}{stream}": out,
                      f"FeedForward-Residual-{layer}{stream}": residual,
                      f"FeedForward-Normal-{layer}{stream}": output})
    return output


def key_heads(h, r, mems, w) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys and values over memory + segment, and position keys; both streams use these:
    h (b, i, D), r (b, r, D), mems (b, mlen, D) -> k, v (b, mlen + i, n, d), k_r (b, r, n, d)."""
    cat = np.concatenate([mems, h], axis=1)
    return (head_projection(cat, w["rel_attn/k/kernel"], "k_head_h"),
            head_projection(cat, w["rel_attn/v/kernel"], "v_head_h"),
            head_projection(r, w["rel_attn/r/kernel"], "k_head_r"))


def rel_multihead_attn(h, r, mems, w, r_w_bias, r_r_bias, seg_mat, r_s_bias, seg_embed,
                       attn_mask, xlnet_mask: str, eps: float, trace: dict | None = None,
                       layer: int = 1) -> np.ndarray:
    """Content stream of one layer: h (b, i, D), r (b, r, D), mems (b, mlen, D) ->
    LayerNorm(h + attention) (b, i, D)."""
    k_head_h, v_head_h, k_head_r = key_heads(h, r, mems, w)
    q_head_h = head_projection(h, w["rel_attn/q/kernel"], "q_head_h")
    attn_vec = attend(q_head_h, k_head_h, v_head_h, k_head_r, seg_embed, seg_mat,
                             r_w_bias, r_r_bias, r_s_bias, attn_mask, xlnet_mask, trace, layer)
    return post_attention(h, attn_vec, w, eps, trace, layer)


def two_stream_rel_attn(h, g, r, mems, w, r_w_bias, r_r_bias, seg_mat, r_s_bias, seg_embed,
                        attn_mask_h, attn_mask_g, target_mapping, xlnet_mask: str, eps: float,
                        trace: dict | None = None, layer: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Content stream h (b, i, D) and query stream g: (b, m, D) with target_mapping (b, m, l),
    else (b, i, D). Keys, values and k_r come from h; both streams share q, o and LayerNorm.
    With target_mapping the query heads are scattered to their positions, attended, and
    gathered back. -> (h (b, i, D), g like its input)."""
    k_head_h, v_head_h, k_head_r = key_heads(h, r, mems, w)

    q_head_h = head_projection(h, w["rel_attn/q/kernel"], "q_head_h")
    attn_vec_h = attend(q_head_h, k_head_h, v_head_h, k_head_r, seg_embed, seg_mat,
                               r_w_bias, r_r_bias, r_s_bias, attn_mask_h, xlnet_mask, trace, layer)
    output_h = post_attention(h, attn_vec_h, w, eps, trace, layer)

    q_head_g = head_projection(g, w["rel_attn/q/kernel"], "q_head_g")
    if target_mapping is not None:
        q_head_g = np.einsum("bmnd,bml->blnd", q_head_g, target_mapping, optimize=True)
    attn_vec_g = attend(q_head_g, k_head_h, v_head_h, k_head_r, seg_embed, seg_mat,
                               r_w_bias, r_r_bias, r_s_bias, attn_mask_g, xlnet_mask, trace,
                               layer, QUERY)
    if target_mapping is not None:
        attn_vec_g = np.einsum("blnd,bml->bmnd", attn_vec_g, target_mapping, optimize=True)
    output_g = post_attention(g, attn_vec_g, w, eps, trace, layer, QUERY)
    return output_h, output_g
