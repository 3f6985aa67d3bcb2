"""The porting drill: a second, independent NumPy port of BERT and XLNet, with injectable bugs.

Written from the original sources (google-research/bert modeling.py + run_pretraining.py heads,
zihangdai/xlnet modeling.py), not from refimpl: the port below imports nothing of refimpl and
reads the weights with TensorFlow's own checkpoint reader. Like the originals, BERT is
batch-major and XLNet is time-major (x[i, b, ...]); every tensor the port produces is handed
over batch-major under refimpl's trace names with refimpl's shapes, as a user's port would be
captured for `refimpl compare`. Dialect "tf": tanh GELU, LayerNorm eps 1e-12, BERT additive
-10000 mask, XLNet -1e30 mask, symmetric clamp_len (the original's `if clamp_len > 0`).

    tensors = drill_tensors("xlnet-two-stream", np.float32, bugs={"bias_swap"})

`bugs` injects realistic porting bugs (BUGS: each a one-line deviation where a real port would
have it, with the case it shows in and the trace name where the first divergence must be
named). The harness at the end (the only part that imports refimpl, lazily: for the expected
tensors and `compare`) builds the table of where each bug is named:

    python tests/porting_drill.py --table

Axis legend. BERT (as modeling.py): B batch, F from (query), T to (key), N heads, H head size,
D width, V vocabulary. XLNet (as modeling.py): i query, j key (memory first), r relative
position, b batch, n head, d head dim, h model width, m prediction target, l position.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sys
from typing import NamedTuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINTS = os.path.join(ROOT, "golden", "checkpoints")


# --- weights: TensorFlow's own reader -------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _read_checkpoint(folder: str, prefix: str, config_file: str) -> tuple[dict, dict]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # the anchor's reader, not refimpl's

    path = os.path.join(CHECKPOINTS, folder, prefix)
    reader = tf.train.load_checkpoint(path)
    names = [n for n in reader.get_variable_to_shape_map() if n != "global_step"]
    weights = {n: np.asarray(reader.get_tensor(n), dtype=np.float64) for n in names}
    with open(os.path.join(CHECKPOINTS, folder, config_file)) as f:
        config = json.load(f)
    return weights, config


def load(folder: str, dtype) -> tuple[dict, dict]:
    """{variable name: array in the compute dtype}, config dict."""
    prefix, config_file = (("bert_model.ckpt", "bert_config.json") if folder.startswith("bert")
                           else ("xlnet_model.ckpt", "xlnet_config.json"))
    weights, config = _read_checkpoint(folder, prefix, config_file)
    return {n: v.astype(dtype) for n, v in weights.items()}, config


# --- shared math ----------------------------------------------------------------------------------
def layer_norm(x, gamma, beta, eps):
    """tf.contrib.layers.layer_norm(begin_norm_axis=-1): moments, then batch_normalization."""
    mean = x.mean(axis=-1, keepdims=True)
    variance = np.square(x - mean).mean(axis=-1, keepdims=True)
    inv = (variance + x.dtype.type(eps)) ** x.dtype.type(-0.5) * gamma
    return x * inv + (beta - mean * inv)


def gelu_tanh(x):
    c = x.dtype.type
    return x * (c(0.5) * (c(1.0) + np.tanh(c(math.sqrt(2 / math.pi)) * (x + c(0.044715) * x ** 3))))


def gelu_erf(x):
    c = x.dtype.type
    erf = np.vectorize(math.erf, otypes=[x.dtype])
    return x * c(0.5) * (c(1.0) + erf(x / c(math.sqrt(2.0))))


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def einsum(spec, *operands):
    """np.einsum, which does not take ml_dtypes' bfloat16: bfloat16 operands are contracted in
    float32 and the result rounded to bfloat16 once, as a TPU / tensor-core kernel does (the
    port in dtype=ml_dtypes.bfloat16: every other operation is ml_dtypes' bfloat16 arithmetic)."""
    low = [x.dtype for x in operands if np.asarray(x).dtype.name == "bfloat16"]
    if not low:
        return np.einsum(spec, *operands)
    wide = [np.asarray(x).astype(np.float32) for x in operands]
    return np.einsum(spec, *wide).astype(low[0])


def dense(x, kernel, bias=None):
    y = x @ kernel
    return y if bias is None else y + bias


# --- BERT (batch-major, modeling.py) --------------------------------------------------------------
def bert_forward(w: dict, config: dict, input_ids, token_type_ids=None, input_mask=None,
                 dtype=np.float64, bugs=frozenset()) -> dict:
    """BertModel + the pretraining heads, every intermediate under refimpl's names."""
    dtype = np.dtype(dtype)
    c = dtype.type
    eps = 1e-5 if "layernorm_eps_1e-5" in bugs else 1e-12
    act = gelu_erf if "gelu_erf" in bugs else gelu_tanh
    t = {}
    B, F = input_ids.shape
    D, N = config["hidden_size"], config["num_attention_heads"]
    H = D // N
    if token_type_ids is None:
        token_type_ids = np.zeros_like(input_ids)
    if input_mask is None:
        input_mask = np.ones_like(input_ids)

    # embedding_lookup (tf.gather) and embedding_postprocessor
    word = w["bert/embeddings/word_embeddings"][input_ids]
    t["Embedding-Token"] = word
    if "token_type_dropped" in bugs:
        token_type_ids = np.zeros_like(token_type_ids)  # the port never passes token_type_ids
    one_hot = np.eye(config["type_vocab_size"], dtype=dtype)[token_type_ids]
    token_type = one_hot @ w["bert/embeddings/token_type_embeddings"]
    t["Embedding-Segment"] = token_type
    output = word + token_type
    t["Embedding-Token-Segment"] = output
    start = 1 if "position_ids_plus_one" in bugs else 0  # position ids 1..F (a padding_idx habit)
    output = output + w["bert/embeddings/position_embeddings"][start:start + F][None]
    t["Embedding-Position"] = output
    output = layer_norm(output, w["bert/embeddings/LayerNorm/gamma"],
                        w["bert/embeddings/LayerNorm/beta"], eps)
    t["Embedding-Norm"] = output

    # create_attention_mask_from_input_mask -> [B, F, T]; the additive adder
    to_mask = input_mask.astype(dtype)[:, None, :]
    attention_mask = np.ones((B, F, 1), dtype) * to_mask
    sign = c(10000.0) if "mask_sign" in bugs else c(-10000.0)
    adder = (c(1.0) - attention_mask[:, None]) * sign  # [B, 1, F, T]

    prev_output = output
    for layer_idx in range(config["num_hidden_layers"]):
        p = f"bert/encoder/layer_{layer_idx}/"
        name = f"Encoder-{layer_idx + 1}"
        layer_input = prev_output
        wq, wk = w[p + "attention/self/query/kernel"], w[p + "attention/self/key/kernel"]
        if "qk_kernel_transposed_layer2" in bugs and layer_idx == 1:
            wq, wk = wq.T, wk.T  # torch Linear stores [out, in]: the .T forgotten for q and k
        q = dense(layer_input, wq, w[p + "attention/self/query/bias"])
        k = dense(layer_input, wk, w[p + "attention/self/key/bias"])
        v = dense(layer_input, w[p + "attention/self/value/kernel"],
                  w[p + "attention/self/value/bias"])
        q = q.reshape(B, F, N, H).transpose(0, 2, 1, 3)  # transpose_for_scores: [B, N, F, H]
        k = k.reshape(B, F, N, H).transpose(0, 2, 1, 3)
        v = v.reshape(B, F, N, H).transpose(0, 2, 1, 3)
        scores = q @ k.transpose(0, 1, 3, 2)
        scores = scores * c(1.0 / math.sqrt(float(H)))
        scores = scores + adder
        t[f"{name}-MultiHeadSelfAttention/scores"] = scores
        probs = softmax(scores, axis=-1)
        t[f"{name}-MultiHeadSelfAttention/prob"] = probs
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(B, F, D)
        attention_output = dense(context, w[p + "attention/output/dense/kernel"],
                                 w[p + "attention/output/dense/bias"])
        t[f"{name}-MultiHeadSelfAttention"] = attention_output
        residual = layer_input if "residual_missing" not in bugs else 0
        attention_output = layer_norm(attention_output + residual,
                                      w[p + "attention/output/LayerNorm/gamma"],
                                      w[p + "attention/output/LayerNorm/beta"], eps)
        t[f"{name}-MultiHeadSelfAttention-Norm"] = attention_output
        intermediate = act(dense(attention_output, w[p + "intermediate/dense/kernel"],
                                 w[p + "intermediate/dense/bias"]))
        layer_output = dense(intermediate, w[p + "output/dense/kernel"], w[p + "output/dense/bias"])
        t[f"{name}-FeedForward"] = layer_output
        layer_output = layer_norm(layer_output + attention_output, w[p + "output/LayerNorm/gamma"],
                                  w[p + "output/LayerNorm/beta"], eps)
        t[f"{name}-FeedForward-Norm"] = layer_output
        prev_output = layer_output
    sequence = prev_output

    # run_pretraining.get_masked_lm_output, over every position
    mlm = act(dense(sequence, w["cls/predictions/transform/dense/kernel"],
                    w["cls/predictions/transform/dense/bias"]))
    t["MLM-Dense"] = mlm
    mlm = layer_norm(mlm, w["cls/predictions/transform/LayerNorm/gamma"],
                     w["cls/predictions/transform/LayerNorm/beta"], eps)
    t["MLM-Norm"] = mlm
    logits = mlm @ w["bert/embeddings/word_embeddings"].T
    if "mlm_bias_missing" not in bugs:
        logits = logits + w["cls/predictions/output_bias"]
    t["MLM-Sim"] = logits
    # BertModel pooler, then get_next_sentence_output
    # pooler_last_token: XLNet's "last" summary habit
    first = sequence[:, -1] if "pooler_last_token" in bugs else sequence[:, 0]
    t["Extract"] = first
    pooled = np.tanh(dense(first, w["bert/pooler/dense/kernel"], w["bert/pooler/dense/bias"]))
    t["NSP-Dense"] = pooled
    nsp = (pooled @ w["cls/seq_relationship/output_weights"].T
           + w["cls/seq_relationship/output_bias"])
    t["NSP"] = nsp
    t.update({"sequence": sequence, "pooled": pooled, "mlm_logits": logits, "nsp_logits": nsp})
    return t


# --- XLNet (time-major, modeling.py) --------------------------------------------------------------
def _bmajor(x):
    """[i, b, ...] -> [b, i, ...]"""
    return np.swapaxes(x, 0, 1)


def _scores_bnij(x):
    """[i, j, b, n] -> [b, n, i, j] (refimpl's layout of ac, bd, ef, prob)"""
    return x.transpose(2, 3, 0, 1)


def rel_shift(x, klen, bugs):
    x_size = x.shape
    x = np.reshape(x, [x_size[1], x_size[0], x_size[2], x_size[3]])
    x = x[:-1] if "rel_shift_wrong_row" in bugs else x[1:]
    x = np.reshape(x, [x_size[0], x_size[1] - 1, x_size[2], x_size[3]])
    return x[:, :klen]


def rel_attn_core(q_head, k_head_h, v_head_h, k_head_r, seg_embed, seg_mat, r_w_bias, r_r_bias,
                  r_s_bias, attn_mask, scale, bugs, t, name):
    """[i, b, n, d] query heads -> [i, b, n, d] attention vectors."""
    ac = einsum("ibnd,jbnd->ijbn", q_head + r_w_bias, k_head_h)
    t[f"{name}/ac"] = _scores_bnij(ac)
    bd = einsum("ibnd,jbnd->ijbn", q_head + r_r_bias, k_head_r)
    bd = rel_shift(bd, klen=ac.shape[1], bugs=bugs)
    t[f"{name}/bd"] = _scores_bnij(bd)
    if seg_mat is None:
        ef = 0
    else:
        s_bias = 0 if "r_s_bias_missing" in bugs else r_s_bias
        ef = einsum("ibnd,snd->ibns", q_head + s_bias, seg_embed)
        ef = einsum("ijbs,ibns->ijbn", seg_mat, ef)
        t[f"{name}/ef"] = _scores_bnij(ef)
    attn_score = (ac + bd + ef) * scale
    if attn_mask is not None:
        sign = -1 if "xlnet_mask_sign" in bugs else 1
        attn_score = attn_score - sign * attn_score.dtype.type(1e30) * attn_mask
    axis = -1 if "softmax_wrong_axis" in bugs else 1  # tf.nn.softmax(attn_score, 1): keys
    attn_prob = softmax(attn_score, axis=axis)
    t[f"{name}/prob"] = _scores_bnij(attn_prob)
    return einsum("ijbn,jbnd->ibnd", attn_prob, v_head_h)


def post_attention(h, attn_vec, w, p, eps, t, layer, stream=""):
    attn_out = einsum("ibnd,hnd->ibh", attn_vec, w[p + "rel_attn/o/kernel"])
    t[f"Attention-{layer}{stream}"] = _bmajor(attn_out)
    residual = attn_out + h
    t[f"Attention-Residual-{layer}{stream}"] = _bmajor(residual)
    output = layer_norm(residual, w[p + "rel_attn/LayerNorm/gamma"],
                        w[p + "rel_attn/LayerNorm/beta"], eps)
    t[f"Attention-Normal-{layer}{stream}"] = _bmajor(output)
    return output


def positionwise_ffn(inp, w, p, activation, eps, t, layer, stream=""):
    output = activation(dense(inp, w[p + "ff/layer_1/kernel"], w[p + "ff/layer_1/bias"]))
    output = dense(output, w[p + "ff/layer_2/kernel"], w[p + "ff/layer_2/bias"])
    t[f"FeedForward-{layer}{stream}"] = _bmajor(output)
    residual = output + inp
    t[f"FeedForward-Residual-{layer}{stream}"] = _bmajor(residual)
    output = layer_norm(residual, w[p + "ff/LayerNorm/gamma"], w[p + "ff/LayerNorm/beta"], eps)
    t[f"FeedForward-Normal-{layer}{stream}"] = _bmajor(output)
    return output


def relative_positional_encoding(qlen, klen, d_model, clamp_len, attn_type, bsz, dtype, bugs):
    c = np.dtype(dtype).type
    freq_seq = np.arange(0, d_model, 2.0, dtype=dtype)
    inv_freq = c(1) / (c(10000) ** (freq_seq / c(d_model)))
    beg, end = (klen, -qlen) if attn_type == "bi" else (klen, -1)
    if "relpos_off_by_one" in bugs:
        beg, end = beg - 1, end - 1  # "the largest distance is klen - 1" (the original's comment)
    fwd_pos_seq = np.arange(beg, end, -1.0, dtype=dtype)
    if clamp_len > 0 and "clamp_len_forgotten" not in bugs:
        fwd_pos_seq = np.clip(fwd_pos_seq, c(-clamp_len), c(clamp_len))
    sinusoid_inp = einsum("i,d->id", fwd_pos_seq, inv_freq)
    pos_emb = np.concatenate([np.sin(sinusoid_inp), np.cos(sinusoid_inp)], -1)[:, None, :]
    return np.tile(pos_emb, [1, bsz, 1])


def _cache_mem(curr_out, prev_mem, mem_len, reuse_len=None):
    if mem_len is None or mem_len == 0:
        return None
    if reuse_len is not None and reuse_len > 0:
        curr_out = curr_out[:reuse_len]
    if prev_mem is None:
        return curr_out[-mem_len:]
    return np.concatenate([prev_mem, curr_out], 0)[-mem_len:]


def _create_mask(qlen, mlen, dtype):
    attn_mask = np.ones([qlen, qlen], dtype=dtype)
    mask_u = np.triu(attn_mask)
    mask_dia = np.diag(np.diag(attn_mask))
    attn_mask_pad = np.zeros([qlen, mlen], dtype=dtype)
    return np.concatenate([attn_mask_pad, mask_u - mask_dia], 1)


def transformer_xl(w, config, inp_k, seg_id=None, input_mask=None, mems=None, perm_mask=None,
                   target_mapping=None, inp_q=None, mem_len=None, reuse_len=None, attn_type="bi",
                   clamp_len=-1, dtype=np.float64, bugs=frozenset()):
    """modeling.transformer_xl at inference, time-major inputs as there: inp_k [l, b],
    seg_id [l, b], input_mask [l, b] (1 = padding), mems list of [mlen, b, h], perm_mask
    [i, j, b] (1 = may not attend), target_mapping [m, l, b], inp_q [l, b].
    -> (trace dict, batch-major, refimpl's names), output_h, output_g, new_mems (time-major)."""
    dtype = np.dtype(dtype)
    c = dtype.type
    t = {}
    n_layer, d_model = config["n_layer"], config["d_model"]
    n_head, d_head = config["n_head"], config["d_head"]
    untie_r = config["untie_r"]
    eps = 1e-12
    tr = "model/transformer/"
    activation = {"gelu": gelu_tanh, "relu": lambda x: np.maximum(x, 0)}[
        "relu" if "ff_activation_default_relu" in bugs else config["ff_activation"]]
    r_w_bias, r_r_bias = w[tr + "r_w_bias"], w[tr + "r_r_bias"]
    if "bias_swap" in bugs:
        r_w_bias, r_r_bias = r_r_bias, r_w_bias  # loaded under each other's name

    qlen, bsz = inp_k.shape
    mlen = mems[0].shape[0] if mems is not None else 0
    klen = mlen + qlen

    # attention mask
    attn_mask = _create_mask(qlen, mlen, dtype)[:, :, None, None] if attn_type == "uni" else None
    if perm_mask is not None and "perm_mask_transposed" in bugs:
        perm_mask = perm_mask.transpose(1, 0, 2)  # [b, i, j] -> [i, j, b] done as [j, i, b]
    if input_mask is not None and perm_mask is not None:
        data_mask = input_mask[None] + perm_mask
    elif input_mask is not None and perm_mask is None:
        data_mask = input_mask[None]
    elif input_mask is None and perm_mask is not None:
        data_mask = perm_mask
    else:
        data_mask = None
    if data_mask is not None:
        mems_mask = np.zeros([data_mask.shape[0], mlen, bsz], dtype=dtype)
        data_mask = np.concatenate([mems_mask, data_mask], 1)
        if attn_mask is None:
            attn_mask = data_mask[:, :, :, None]
        else:
            attn_mask = attn_mask + data_mask[:, :, :, None]
    if attn_mask is not None:
        attn_mask = (attn_mask > 0).astype(dtype)
    if attn_mask is not None:
        non_tgt_mask = -np.eye(qlen, dtype=dtype)
        non_tgt_mask = np.concatenate([np.zeros([qlen, mlen], dtype=dtype), non_tgt_mask], axis=-1)
        non_tgt_mask = ((attn_mask + non_tgt_mask[:, :, None, None]) > 0).astype(dtype)
        if "non_tgt_mask_forgotten" in bugs:
            non_tgt_mask = attn_mask  # the content stream given the query stream's mask
    else:
        non_tgt_mask = None

    def visible(mask):  # refimpl's Permutation: (b, i, j), 1 = may attend; masks broadcast here
        full = np.zeros((qlen, klen, bsz, 1), dtype) if mask is None else mask
        full = np.broadcast_to(c(1) - full, (qlen, klen, bsz, 1))
        return full[:, :, :, 0].transpose(2, 0, 1).copy()
    t["Permutation"] = visible(non_tgt_mask)
    t["Permutation/query"] = visible(attn_mask)

    # word embedding (tf.nn.embedding_lookup)
    lookup_table = w[tr + "word_embedding/lookup_table"]
    word_emb_k = lookup_table[inp_k]
    t["Embed-Token"] = _bmajor(word_emb_k)
    output_g = None
    if inp_q is not None:
        mask_emb = w[tr + "mask_emb/mask_emb"]
        if target_mapping is not None:
            word_emb_q = np.tile(mask_emb, [target_mapping.shape[0], bsz, 1])
        else:
            inp_q_ext = inp_q[:, :, None]
            word_emb_q = inp_q_ext * mask_emb + (c(1) - inp_q_ext) * word_emb_k
        output_g = word_emb_q
        t["Embed-Mask"] = _bmajor(output_g)
    output_h = word_emb_k

    # segment embedding
    if seg_id is not None:
        r_s_bias, seg_embed = w[tr + "r_s_bias"], w[tr + "seg_embed"]
        mem_pad = np.full([mlen, bsz], 1 if "mem_segment_one" in bugs else 0, dtype=seg_id.dtype)
        cat_ids = np.concatenate([mem_pad, seg_id], 0)
        seg_mat = np.logical_not(seg_id[:, None] == cat_ids[None, :]).astype(np.int64)
        seg_mat = np.eye(2, dtype=dtype)[seg_mat]  # tf.one_hot: [i, j, b, 2]
    else:
        seg_mat = None

    # positional encoding
    pos_emb = relative_positional_encoding(qlen, klen, d_model, clamp_len, attn_type, bsz, dtype,
                                           bugs)
    t["Embed-Pos"] = _bmajor(pos_emb)

    scale = c(1 / (d_head ** 0.5)) if "scale_1_over_d" not in bugs else c(1 / d_head)
    if mems is None:
        mems = [None] * n_layer
    new_mems = []
    for i in range(n_layer):
        layer = i + 1
        p = f"{tr}layer_{i}/"
        t[f"Memory-{i}"] = (np.zeros((bsz, 0, d_model), dtype) if mems[i] is None
                            else _bmajor(mems[i]))
        new_mems.append(_cache_mem(output_h, mems[i], mem_len, reuse_len))
        if new_mems[i] is not None:
            t[f"mems/{i}"] = _bmajor(new_mems[i])
        if seg_id is None:
            r_s_bias_i = seg_embed_i = None
        else:
            r_s_bias_i = r_s_bias if not untie_r else r_s_bias[i]
            seg_embed_i = seg_embed[i][::-1] if "seg_embed_swapped" in bugs else seg_embed[i]
            t[f"Embed-Segment-{layer}"] = seg_mat.transpose(2, 0, 1, 3)
        bias_layer = 0 if "untie_r_ignored" in bugs else i  # layer 0's biases shared by all
        r_w_bias_i = r_w_bias if not untie_r else r_w_bias[bias_layer]
        r_r_bias_i = r_r_bias if not untie_r else r_r_bias[bias_layer]

        # rel_multihead_attn / two_stream_rel_attn: keys and values from [mems, h]
        cat = np.concatenate([mems[i], output_h], 0) if mems[i] is not None else output_h
        q_kernel, k_kernel = w[p + "rel_attn/q/kernel"], w[p + "rel_attn/k/kernel"]
        if "qk_kernels_swapped_layer2" in bugs and i == 1:
            q_kernel, k_kernel = k_kernel, q_kernel
        k_head_h = einsum("ibh,hnd->ibnd", cat, k_kernel)
        v_head_h = einsum("ibh,hnd->ibnd", cat, w[p + "rel_attn/v/kernel"])
        k_head_r = einsum("ibh,hnd->ibnd", pos_emb, w[p + "rel_attn/r/kernel"])
        q_head_h = einsum("ibh,hnd->ibnd", output_h, q_kernel)
        attn_vec_h = rel_attn_core(q_head_h, k_head_h, v_head_h, k_head_r, seg_embed_i, seg_mat,
                                   r_w_bias_i, r_r_bias_i, r_s_bias_i, non_tgt_mask, scale, bugs,
                                   t, f"Attention-{layer}")
        new_h = post_attention(output_h, attn_vec_h, w, p, eps, t, layer)
        if output_g is not None:
            q_head_g = einsum("ibh,hnd->ibnd", output_g, q_kernel)
            name = f"Attention-{layer}/query"
            if target_mapping is not None:
                q_head_g = einsum("mbnd,mlb->lbnd", q_head_g, target_mapping)
                attn_vec_g = rel_attn_core(q_head_g, k_head_h, v_head_h, k_head_r, seg_embed_i,
                                           seg_mat, r_w_bias_i, r_r_bias_i, r_s_bias_i, attn_mask,
                                           scale, bugs, t, name)
                attn_vec_g = einsum("lbnd,mlb->mbnd", attn_vec_g, target_mapping)
            else:
                attn_vec_g = rel_attn_core(q_head_g, k_head_h, v_head_h, k_head_r, seg_embed_i,
                                           seg_mat, r_w_bias_i, r_r_bias_i, r_s_bias_i, attn_mask,
                                           scale, bugs, t, name)
            output_g = post_attention(output_g, attn_vec_g, w, p, eps, t, layer, "/query")
            output_g = positionwise_ffn(output_g, w, p, activation, eps, t, layer, "/query")
        output_h = positionwise_ffn(new_h, w, p, activation, eps, t, layer)
        if "mems_cache_output" in bugs:  # caches the layer's output instead of its input
            new_mems[i] = _cache_mem(output_h, mems[i], mem_len, reuse_len)
            t[f"mems/{i}"] = _bmajor(new_mems[i])
    return t, output_h, output_g, (None if new_mems[0] is None else new_mems)


def xlnet_forward(w, config, token_ids, segment_ids=None, attention_mask=None, perm_mask=None,
                  target_mapping=None, mems=None, mem_len=None, reuse_len=None, attn_type="bi",
                  clamp_len=None, dtype=np.float64, bugs=frozenset(), inp_q=None):
    """Batch-major inputs in refimpl's conventions, converted to the original's:
    attention_mask (b, l) 1 = real token; perm_mask (b, i, j); target_mapping (b, m, l); inp_q
    (b, l); mems as this function returned them (time-major). The query stream runs when
    inp_q or target_mapping is given (the original needs inp_q: a port derives it from
    target_mapping). -> (named tensors, new mems)."""
    dtype = np.dtype(dtype)
    def tm(x, axes):
        return None if x is None else np.asarray(x).transpose(axes).astype(dtype)

    inp_k = np.asarray(token_ids).T
    seg_id = None if segment_ids is None else np.asarray(segment_ids).T
    input_mask = (None if attention_mask is None
                  else (1 - np.asarray(attention_mask).T).astype(dtype))  # 1 = padding
    perm = tm(perm_mask, (1, 2, 0))
    tmap = tm(target_mapping, (1, 2, 0))
    if inp_q is not None:
        inp_q = np.asarray(inp_q).T.astype(dtype)
    elif tmap is not None:
        inp_q = tmap.sum(0)  # the targets: the query stream runs
    t, output_h, output_g, new_mems = transformer_xl(
        w, config, inp_k, seg_id, input_mask, mems, perm, tmap, inp_q, mem_len, reuse_len,
        attn_type, -1 if clamp_len is None else clamp_len, dtype, bugs)
    t["content"] = _bmajor(output_h)
    if output_g is not None:
        t["query"] = _bmajor(output_g)
    # lm_loss with tie_weight: einsum('ibd,nd->ibn', hidden, lookup_table) + bias
    lookup_table = w["model/transformer/word_embedding/lookup_table"]
    t["lm_logits"] = _bmajor(einsum("ibd,nd->ibn", output_h, lookup_table)
                             + w["model/lm_loss/bias"])
    if output_g is not None:  # the prediction: the query stream's logits
        t["lm_logits/query"] = _bmajor(einsum("ibd,nd->ibn", output_g, lookup_table)
                                       + w["model/lm_loss/bias"])
    return t, new_mems


# --- the cases ------------------------------------------------------------------------------------
class Case(NamedTuple):
    model: str  # "bert" or "xlnet"
    checkpoint: str  # folder under golden/checkpoints
    options: dict  # XLNet's keyword options (attn_type, mem_len, clamp_len, ...)
    segments: int  # consecutive segments sharing mems (names prefixed "segment-<s>/" when > 1)
    description: str


CASES = {
    "bert": Case("bert", "bert-tiny", {}, 1,
                 "2 x 10, two segments, row 1 with 3 padded positions"),
    "xlnet-bi": Case("xlnet", "xlnet-tiny", {"attn_type": "bi"}, 1,
                     "untied biases, 2 x 10, segment ids, row 1 with 2 padded positions"),
    "xlnet-uni-mems": Case("xlnet", "xlnet-tiny", {"attn_type": "uni", "mem_len": 4}, 2,
                           "uni, two segments of 2 x 6 with mem_len 4, segment ids"),
    "xlnet-clamp": Case("xlnet", "xlnet-tiny-tied", {"attn_type": "bi", "clamp_len": 3}, 1,
                        "tied biases, bi, clamp_len 3, no segment ids"),
    "xlnet-two-stream": Case("xlnet", "xlnet-tiny-tied", {"attn_type": "bi"}, 1,
                             "tied, perm_mask (a factorisation order) + target_mapping (3 "
                             "targets), segment ids, row 1 with one padded position"),
    "xlnet-inp-q": Case("xlnet", "xlnet-tiny", {"attn_type": "bi", "mem_len": 5, "reuse_len": 4}, 1,
                        "query stream from inp_q (no target_mapping: g over every position), "
                        "perm_mask hiding the 2 targets, mems cached with reuse_len"),
}


def case_inputs(name: str) -> list[dict]:
    """The forward's array arguments, one dict per segment; each case reseeds its generator."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "bert":
        ids = rng.integers(1, 100, (2, 10))
        seg = np.array([[0] * 5 + [1] * 5, [0] * 4 + [1] * 6])
        mask = np.ones((2, 10), np.int64)
        mask[1, -3:] = 0
        return [{"token_ids": ids, "segment_ids": seg, "attention_mask": mask}]
    if name == "xlnet-bi":
        mask = np.ones((2, 10), np.int64)
        mask[1, -2:] = 0
        return [{"token_ids": rng.integers(0, 100, (2, 10)), "attention_mask": mask,
                 "segment_ids": np.array([[0] * 6 + [1] * 4, [0] * 3 + [1] * 7])}]
    if name == "xlnet-uni-mems":
        return [{"token_ids": rng.integers(0, 100, (2, 6)),
                 "segment_ids": np.array([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]]) ^ s}
                for s in range(2)]
    if name == "xlnet-clamp":
        return [{"token_ids": rng.integers(0, 100, (2, 10))}]
    if name == "xlnet-two-stream":
        B, L, M = 2, 10, 3
        perm_mask = np.zeros((B, L, L))
        target_mapping = np.zeros((B, M, L))
        for b in range(B):
            order = rng.permutation(L)  # order[l]: the step at which position l is predicted
            perm_mask[b] = order[None, :] > order[:, None]  # i may not see j predicted later
            targets = np.argsort(order)[-M:]  # the last M in the order: the prediction targets
            perm_mask[b, targets, targets] = 1  # ... nor itself (content stream still does)
            target_mapping[b, np.arange(M), np.sort(targets)] = 1
        mask = np.ones((B, L), np.int64)
        mask[1, 0] = 0
        return [{"token_ids": rng.integers(0, 100, (B, L)), "attention_mask": mask,
                 "segment_ids": np.array([[0] * 5 + [1] * 5, [0] * 7 + [1] * 3]),
                 "perm_mask": perm_mask, "target_mapping": target_mapping}]
    if name == "xlnet-inp-q":
        inp_q = np.zeros((2, 8))
        inp_q[0, [2, 5]] = inp_q[1, [0, 7]] = 1
        perm_mask = np.repeat(inp_q[:, None, :], 8, axis=1)  # nobody sees a target's token
        return [{"token_ids": rng.integers(0, 100, (2, 8)), "inp_q": inp_q, "perm_mask": perm_mask,
                 "segment_ids": np.array([[0] * 4 + [1] * 4] * 2)}]
    raise KeyError(name)


def drill_tensors(case_name: str, dtype=np.float64, bugs=frozenset()) -> dict:
    """Every tensor the port produces for a case, batch-major, under refimpl's names."""
    case = CASES[case_name]
    return run_port(case.model, case.checkpoint, case_inputs(case_name), case.options, dtype, bugs)


def run_port(model: str, checkpoint: str, steps: list, options: dict | None = None,
             dtype=np.float64, bugs=frozenset()) -> dict:
    """The port on any inputs: steps, one dict of forward arrays per segment (several share
    mems; names then get the prefix "segment-<s>/"); checkpoint, a folder of golden/checkpoints."""
    bugs, options = frozenset(bugs), dict(options or {})
    w, config = load(checkpoint, dtype)
    if model == "bert":
        x = steps[0]
        return bert_forward(w, config, x["token_ids"], x.get("segment_ids"),
                            x.get("attention_mask"), dtype, bugs)
    out, mems = {}, None
    for s, x in enumerate(steps):
        if s > 0 and "memory_not_passed" in bugs:
            mems = None  # the loop calls the model on the next segment without its mems
        t, mems = xlnet_forward(w, config, **x, mems=mems, **options, dtype=dtype, bugs=bugs)
        out.update({(f"segment-{s}/" if len(steps) > 1 else "") + n: v for n, v in t.items()})
    return out


# --- the bugs -------------------------------------------------------------------------------------
class Bug(NamedTuple):
    model: str
    case: str  # a key of CASES: the inputs and options the bug shows in
    first: str  # the trace name where the first divergence must be named (float64)
    description: str


BUGS = {
    # BERT
    "layernorm_eps_1e-5": Bug("bert", "bert", "Embedding-Norm",
                              "LayerNorm epsilon 1e-5 (PyTorch's default) instead of 1e-12"),
    "gelu_erf": Bug("bert", "bert", "Encoder-1-FeedForward",
                    "exact erf GELU instead of the tanh approximation (first: layer 1's FFN)"),
    "qk_kernel_transposed_layer2": Bug("bert", "bert", "Encoder-2-MultiHeadSelfAttention/scores",
                                       "layer 2's query and key kernels used untransposed "
                                       "(torch Linear [out, in] habit)"),
    "mask_sign": Bug("bert", "bert", "Encoder-1-MultiHeadSelfAttention/scores",
                     "padding adder (1 - mask) * +10000: padded keys favoured, not blocked"),
    "position_ids_plus_one": Bug("bert", "bert", "Embedding-Position",
                                 "position ids start at 1 (rows 1..F of position_embeddings)"),
    "token_type_dropped": Bug("bert", "bert", "Embedding-Segment",
                              "token_type_ids never passed: every token gets type 0"),
    "mlm_bias_missing": Bug("bert", "bert", "MLM-Sim", "cls/predictions/output_bias not added"),
    "residual_missing": Bug("bert", "bert", "Encoder-1-MultiHeadSelfAttention-Norm",
                            "attention output LayerNorm without the residual (layer input)"),
    "pooler_last_token": Bug("bert", "bert", "Extract",
                             "pooler on the last token (XLNet's 'last' summary) instead of [CLS]"),
    # XLNet
    "bias_swap": Bug("xlnet", "xlnet-bi", "Attention-1/ac",
                     "r_w_bias and r_r_bias loaded under each other's name"),
    "relpos_off_by_one": Bug("xlnet", "xlnet-bi", "Embed-Pos",
                             "relative positions klen-1 .. -qlen (every distance one less)"),
    "seg_embed_swapped": Bug("xlnet", "xlnet-bi", "Attention-1/ef",
                             "seg_embed rows swapped (same/different segment)"),
    "r_s_bias_missing": Bug("xlnet", "xlnet-bi", "Attention-1/ef",
                            "segment term without r_s_bias"),
    "scale_1_over_d": Bug("xlnet", "xlnet-bi", "Attention-1/prob",
                          "scores scaled by 1/d_head instead of 1/sqrt(d_head)"),
    "softmax_wrong_axis": Bug("xlnet", "xlnet-bi", "Attention-1/prob",
                              "softmax over the last axis (heads in [i, j, b, n]), not axis 1"),
    "untie_r_ignored": Bug("xlnet", "xlnet-bi", "Attention-2/ac",
                           "untied r_w_bias/r_r_bias: layer 0's used by every layer"),
    "ff_activation_default_relu": Bug("xlnet", "xlnet-bi", "FeedForward-1",
                                      "ff_activation not passed: transformer_xl's default 'relu'"),
    "clamp_len_forgotten": Bug("xlnet", "xlnet-clamp", "Embed-Pos",
                               "clamp_len option dropped: relative positions not clipped"),
    "rel_shift_wrong_row": Bug("xlnet", "xlnet-uni-mems", "segment-0/Attention-1/bd",
                               "rel_shift drops the last row instead of the first"),
    "xlnet_mask_sign": Bug("xlnet", "xlnet-uni-mems", "segment-0/Attention-1/prob",
                           "mask added as +1e30 * mask: blocked keys take all the weight"),
    "memory_not_passed": Bug("xlnet", "xlnet-uni-mems", "segment-1/Permutation",
                             "second segment run without the first one's mems (the mask, "
                             "the first tensor over memory + segment, has another shape)"),
    "mems_cache_output": Bug("xlnet", "xlnet-uni-mems", "segment-0/mems/0",
                             "each layer caches its output instead of its input"),
    "mem_segment_one": Bug("xlnet", "xlnet-uni-mems", "segment-1/Embed-Segment-1",
                           "memory columns given segment 1 instead of 0 in seg_mat"),
    "perm_mask_transposed": Bug("xlnet", "xlnet-two-stream", "Permutation",
                                "perm_mask's i and j swapped when moved to the original's "
                                "[i, j, b] layout"),
    "non_tgt_mask_forgotten": Bug("xlnet", "xlnet-two-stream", "Permutation",
                                  "content stream uses the query-stream mask (cannot see itself)"),
    "qk_kernels_swapped_layer2": Bug("xlnet", "xlnet-two-stream", "Attention-2/ac",
                                     "layer 2's rel_attn q and k kernels swapped (same shape)"),
}

# Bugs whose float32 first divergence is named later than in float64: float32's tolerance hides
# the first affected tensor. bug -> (the latest name allowed in float32, why).
FLOAT32_NAMED_LATER = {
    "layernorm_eps_1e-5": (
        "Encoder-1-MultiHeadSelfAttention/scores",
        "eps 1e-5 against row variances of 0.17-0.35 moves Embedding-Norm by at most 7.6e-5 on "
        "values of ~1.3: err/tol 0.28 under float32's rtol 1e-4 + atol 2e-5, hidden; layer 1's "
        "scores, sums of D products of the shifted values, reach err/tol 1.7 (measured)"),
}


# --- the harness: refimpl's tensors as EXPECTED, golden.compare (the port above never imports it)
def check(bug: str | None, dtype=np.float64, case_name: str | None = None):
    """compare(refimpl float64, the drill in dtype [with the bug]) -> the report."""
    from refimpl import golden  # the harness, not the port
    case_name = case_name or BUGS[bug].case
    expected = reference_tensors(case_name)
    actual = drill_tensors(case_name, dtype, {bug} if bug else set())
    return golden.compare(expected, actual)


@functools.lru_cache(maxsize=None)
def _reference(case_name: str, dtype: str = "float64") -> tuple:
    from refimpl import run  # the harness: refimpl's tensors, float64 (other dtypes: budgets)
    case = CASES[case_name]
    checkpoint = os.path.join(CHECKPOINTS, case.checkpoint)
    steps = case_inputs(case_name)
    if case.model == "bert":
        return tuple(run.named_tensors("bert", checkpoint, steps[0], dtype=dtype).items())
    out, mems = {}, None
    for s, x in enumerate(steps):
        t = run.named_tensors("xlnet", checkpoint, {**x, "mems": mems}, case.options, dtype=dtype)
        mems = [t[n] for n in t if n.startswith("mems/")] or None
        out.update({(f"segment-{s}/" if len(steps) > 1 else "") + n: v for n, v in t.items()})
    return tuple(out.items())


def reference_tensors(case_name: str, dtype: str = "float64") -> dict:
    """refimpl's named tensors for a case (network order): float64, compare's EXPECTED; in
    another dtype (float32, bfloat16, float16), what budgets are measured from."""
    return dict(_reference(case_name, dtype))


def table() -> str:
    rows = ["| bug | model | case | expected first divergence | named in float64 (exit) | "
            "named in float32 (exit) |", "|---|---|---|---|---|---|"]
    for bug, b in BUGS.items():
        cells = []
        for dtype in (np.float64, np.float32):
            r = check(bug, dtype)
            first = r.first_divergence
            status = "" if first is None or first.status == "MISMATCH" else f" [{first.status}]"
            cells.append(f"{first.name if first else 'none'}{status} ({r.exit_code})")
        rows.append(f"| {bug} | {b.model} | {b.case} | {b.first} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] != ["--table"]:
        sys.exit("usage: python tests/porting_drill.py --table")
    sys.path.insert(0, ROOT)
    print(table())
