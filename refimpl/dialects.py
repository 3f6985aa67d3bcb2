"""Named numeric conventions: where the original TF code, the Keras ports and transformers differ.

A reference that silently picks one convention cannot check the others, so each difference is a
field of `Dialect`, and `DIALECTS` holds the three presets. Forward functions take
`dialect="tf" | "keras" | "hf"` or a `Dialect` (for example `dataclasses.replace(get("tf"),
gelu="erf")` for BERT checkpoints trained before 2019-02-07).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from refimpl import precision


@dataclasses.dataclass(frozen=True)
class Dialect:
    name: str
    # GELU for config value "gelu": "tanh" approximation or exact "erf".
    gelu: str
    # LayerNorm epsilon: 1e-12 in TF (tf.contrib layer_norm) and transformers, K.epsilon()**2 =
    # 1e-14 in keras-layer-normalization.
    layer_norm_eps: float
    # BERT attention mask, added to the scores of padded keys: "-10000" (TF, Keras) or "finfo.min"
    # (transformers: the most negative number of the compute dtype).
    bert_mask: str
    # keras-bert builds its padding mask from token id 0 itself (Embedding mask_zero=True).
    bert_mask_from_token_zero: bool
    # XLNet attention: "additive" (-1e30 added to masked scores, then softmax: TF, transformers) or
    # "keras" (exp(s - max over ALL keys) * allowed / (sum + 1e-7): keras-xlnet).
    xlnet_mask: str
    # XLNet clamp_len c: "symmetric" clips relative positions to [-c, c] (TF, transformers),
    # "nonnegative" to [0, c] (keras-xlnet).
    clamp: str
    # XLNet query stream never sees its own position (keras-xlnet builds this into its mask); TF and
    # transformers exclude it only through perm_mask.
    query_excludes_self: bool
    # Heads return "logits" (TF, transformers) or softmax "probs" (the Keras ports).
    heads: str
    # XLNet: a token id masked as padding automatically, on top of attention_mask (keras-xlnet
    # masks Tokenizer.SYM_PAD = 5 itself); None = only attention_mask (TF, transformers).
    xlnet_pad_id: int | None = None
    # XLNet content stream: a padded position still attends to itself (TF and transformers use
    # (mask - eye) > 0); keras-xlnet multiplies the padding mask in after its permutation mask,
    # so a padded position does not see itself there.
    xlnet_padded_self_visible: bool = True
    # XLNet mems when mem_len is None or 0: "none" returns no mems (TF _cache_mem), "all" keeps
    # all of the previous mems plus the current segment (transformers' cache_mem).
    xlnet_mems_without_mem_len: str = "none"
    # XLNet SQuAD beam at inference (get_qa_outputs): start_top_log_probs / end_top_log_probs
    # hold "log_softmax" values (TF) or "softmax" probabilities under the same names
    # (transformers' XLNetForQuestionAnswering).
    squad_top_probs: str = "log_softmax"
    # ... and end_top_log_probs / end_top_index (b, start_n_top * end_n_top) are flattened
    # "start_major" (TF: column s * end_n_top + e) or "end_major" (transformers: e * start_n_top + s).
    squad_end_top_order: str = "start_major"

    def bert_mask_value(self, dtype, storage: str | None = None) -> np.floating:
        """The additive mask value in `dtype`: -10000, or finfo.min of `dtype` (of the storage
        format "bfloat16" / "float16" when emulating one: float32's min would round to -inf)."""
        dtype = np.dtype(dtype)
        if self.bert_mask != "finfo.min":
            return dtype.type(-10000.0)
        return dtype.type(-precision.finfo_max(storage) if storage else np.finfo(dtype).min)


DIALECTS = {
    "tf": Dialect(name="tf", gelu="tanh", layer_norm_eps=1e-12, bert_mask="-10000",
                  bert_mask_from_token_zero=False, xlnet_mask="additive", clamp="symmetric",
                  query_excludes_self=False, heads="logits", xlnet_pad_id=None,
                  xlnet_padded_self_visible=True, xlnet_mems_without_mem_len="none"),
    "keras": Dialect(name="keras", gelu="tanh", layer_norm_eps=1e-14, bert_mask="-10000",
                     bert_mask_from_token_zero=True, xlnet_mask="keras", clamp="nonnegative",
                     query_excludes_self=True, heads="probs", xlnet_pad_id=5,
                     xlnet_padded_self_visible=False, xlnet_mems_without_mem_len="none"),
    "hf": Dialect(name="hf", gelu="erf", layer_norm_eps=1e-12, bert_mask="finfo.min",
                  bert_mask_from_token_zero=False, xlnet_mask="additive", clamp="symmetric",
                  query_excludes_self=False, heads="logits", xlnet_pad_id=None,
                  xlnet_padded_self_visible=True, xlnet_mems_without_mem_len="all",
                  squad_top_probs="softmax", squad_end_top_order="end_major"),
}


def get(dialect: str | Dialect) -> Dialect:
    """The Dialect for a preset name, or the Dialect itself."""
    if isinstance(dialect, Dialect):
        return dialect
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {', '.join(DIALECTS)} "
                         "or a refimpl.dialects.Dialect")
    return DIALECTS[dialect]
