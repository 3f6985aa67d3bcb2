"""XLNet forward pass in NumPy, function by function after zihangdai/xlnet modeling.py.

    m = xlnet.load("golden/checkpoints/xlnet-tiny")   # directory or checkpoint prefix
    out = xlnet.forward(m, token_ids, segment_ids=None, attention_mask=None, perm_mask=None,
                        target_mapping=None, mems=None, mem_len=None, reuse_len=None,
                        attn_type="bi", clamp_len=None, bi_data=False, dialect="tf",
                        dtype=np.float64, trace=None, inp_q=None)
    out.content (b, l, D)   out.query (b, m, D), (b, l, D) or None   out.mems [(b, mlen, D)] or None
    xlnet.lm_logits(m, hidden) (b, *, V); xlnet.lm_probs; xlnet.lm_head (per dialect);
    xlnet.sequence_summary(m, content, summary_type=None, use_summ_proj=None, attention_mask=None)
    fine-tuning heads (heads.py): xlnet.classification_logits(m, content, task) (b, n_class),
    xlnet.regression(m, content, task) (b,), xlnet.race_logits(m, content) (b, n_choice),
    xlnet.squad_outputs(m, content, p_mask, ...) {name: array}, xlnet.run_head(m, out, head)
    xlnet.KerasMemory + xlnet.stateful_forward: keras-xlnet's stateful Memory layers

Axis legend (all modules): b batch, i query position, j key position (memory first, then the
segment), r relative-position row, m prediction target, l sequence position, n head, d head dim,
s segment relation, D model width, V vocabulary. Arrays are batch-major.

Modules: weights (config, loading), positions (relative_positional_encoding, rel_shift),
attention (masks, rel_attn_core, post_attention, positionwise_ffn, rel_multihead_attn,
two_stream_rel_attn), memory (cache_mem, keras-transformer-xl's Memory), model (forward, LM head),
heads (sequence_summary and the fine-tuning heads of function_builder.py).

`trace`, when a dict, is filled with keras-xlnet's layer names: Embed-Token, Embed-Mask (query
stream start), Embed-Pos (b, r, D), Permutation (b, l, j) and Permutation/query (1 = may attend:
keras-xlnet's Permutation output times the padding mask its attention applies), Memory-<i>
(0-based: the memory of layer i+1), Embed-Segment-<k> (b, l, j, 2), and per layer k (1-based):
Attention-<k> (output projection, before the residual), Attention-Residual-<k>,
Attention-Normal-<k>, FeedForward-<k>, FeedForward-Residual-<k>, FeedForward-Normal-<k>; finer:
Attention-<k>/ac, /bd (after rel_shift), /ef (each (b, n, i, j), before scaling), /prob. The
query stream adds the suffix /query: Attention-1/query, Attention-1/query/prob, ...
"""
from refimpl.xlnet.attention import (attention_masks, head_projection, positionwise_ffn,
                                     post_attention, rel_attn_core, rel_multihead_attn,
                                     segment_matrix, softmax_additive, softmax_keras,
                                     two_stream_rel_attn)
from refimpl.xlnet.memory import KerasMemory, cache_mem, keras_memory_read, keras_memory_update
from refimpl.xlnet.model import (Output, forward, lm_head, lm_logits, lm_probs, mask_embedding,
                                 stateful_forward)
from refimpl.xlnet.heads import (classification_logits, race_logits, regression, run_head,
                                 sequence_summary, squad_outputs)
from refimpl.xlnet.positions import (clamp_positions, positional_embedding,
                                     relative_positional_encoding, rel_shift)
from refimpl.xlnet.weights import XLNet, XLNetConfig, cast, load

__all__ = [
    "KerasMemory", "Output", "XLNet", "XLNetConfig", "attention_masks", "cache_mem", "cast",
    "clamp_positions", "classification_logits", "race_logits", "regression", "run_head",
    "squad_outputs", "forward", "head_projection", "keras_memory_read", "keras_memory_update",
    "lm_head", "lm_logits", "lm_probs", "load", "mask_embedding", "positional_embedding",
    "positionwise_ffn",
    "post_attention", "rel_attn_core", "rel_multihead_attn", "rel_shift",
    "relative_positional_encoding", "segment_matrix", "sequence_summary", "softmax_additive",
    "softmax_keras", "stateful_forward", "two_stream_rel_attn",
]
