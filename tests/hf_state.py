"""A BERT or XLNet model's weights as transformers' state dict, written by hand for the anchor tests.

Deliberately independent of refimpl.convert's name table (bert.transformers_names): the anchor
tests load transformers with this map, so a mistake in convert's table cannot hide itself.
Shared by tests/test_heads.py and tests/test_transformers_anchor.py.
"""
from __future__ import annotations

from refimpl import bert, xlnet


def bert_state(b: bert.Bert, pooler: bool = True) -> dict:
    """bert.embeddings.*, bert.pooler.* (pooler=True) and bert.encoder.layer.<i>.* as arrays:
    torch Linear weights are TF kernels transposed."""
    e = b.embeddings
    state = {"bert.embeddings.word_embeddings.weight": e["word_embeddings"],
             "bert.embeddings.position_embeddings.weight": e["position_embeddings"],
             "bert.embeddings.token_type_embeddings.weight": e["token_type_embeddings"],
             "bert.embeddings.LayerNorm.weight": e["LayerNorm/gamma"],
             "bert.embeddings.LayerNorm.bias": e["LayerNorm/beta"]}
    if pooler:
        state.update({"bert.pooler.dense.weight": b.pooler["dense/kernel"].T,
                      "bert.pooler.dense.bias": b.pooler["dense/bias"]})
    for i, w in enumerate(b.layers):
        p = f"bert.encoder.layer.{i}"
        for ours, theirs in (("attention/self/query", "attention.self.query"),
                             ("attention/self/key", "attention.self.key"),
                             ("attention/self/value", "attention.self.value"),
                             ("attention/output/dense", "attention.output.dense"),
                             ("intermediate/dense", "intermediate.dense"),
                             ("output/dense", "output.dense")):
            state[f"{p}.{theirs}.weight"] = w[f"{ours}/kernel"].T
            state[f"{p}.{theirs}.bias"] = w[f"{ours}/bias"]
        for ours, theirs in (("attention/output/LayerNorm", "attention.output.LayerNorm"),
                             ("output/LayerNorm", "output.LayerNorm")):
            state[f"{p}.{theirs}.weight"] = w[f"{ours}/gamma"]
            state[f"{p}.{theirs}.bias"] = w[f"{ours}/beta"]
    return state


def xlnet_state(m: xlnet.XLNet) -> dict:
    """transformers' XLNetModel names (prefix transformer.) for the encoder weights of m."""
    t = m.transformer
    state = {"transformer.word_embedding.weight": t["word_embedding/lookup_table"]}
    for i, w in enumerate(m.layers):
        p = f"transformer.layer.{i}"
        for part in ("q", "k", "v", "o", "r"):
            state[f"{p}.rel_attn.{part}"] = w[f"rel_attn/{part}/kernel"]
        for bias in ("r_w_bias", "r_r_bias", "r_s_bias"):
            state[f"{p}.rel_attn.{bias}"] = m.layer_bias(bias, i)
        state[f"{p}.rel_attn.seg_embed"] = t["seg_embed"][i]
        state[f"{p}.rel_attn.layer_norm.weight"] = w["rel_attn/LayerNorm/gamma"]
        state[f"{p}.rel_attn.layer_norm.bias"] = w["rel_attn/LayerNorm/beta"]
        state[f"{p}.ff.layer_norm.weight"] = w["ff/LayerNorm/gamma"]
        state[f"{p}.ff.layer_norm.bias"] = w["ff/LayerNorm/beta"]
        for n in (1, 2):
            state[f"{p}.ff.layer_{n}.weight"] = w[f"ff/layer_{n}/kernel"].T
            state[f"{p}.ff.layer_{n}.bias"] = w[f"ff/layer_{n}/bias"]
    return state
