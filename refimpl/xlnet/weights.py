"""XLNet config and weights: official checkpoint names mapped explicitly, every shape checked.

The weights stay in dicts keyed by their checkpoint names relative to each scope, so that
`m.layers[0]["rel_attn/q/kernel"]` is `model/transformer/layer_0/rel_attn/q/kernel`.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from refimpl import loading

CONFIG_FILE = "xlnet_config.json"
CHECKPOINT_FILE = "xlnet_model.ckpt"


@dataclasses.dataclass(frozen=True)
class XLNetConfig:
    """The fields of an official xlnet_config.json."""
    d_head: int
    d_inner: int
    d_model: int
    ff_activation: str
    n_head: int
    n_layer: int
    n_token: int
    untie_r: bool

    @classmethod
    def from_json(cls, path: str) -> "XLNetConfig":
        config = loading.read_config(cls, path, exact_keys=True)
        if config.ff_activation not in ("gelu", "relu"):
            raise ValueError(f"{path}: ff_activation {config.ff_activation!r}, expected 'gelu' or 'relu'")
        if not isinstance(config.untie_r, bool):
            raise ValueError(f"{path}: untie_r {config.untie_r!r}, expected true or false")
        return config


@dataclasses.dataclass(frozen=True, eq=False)
class XLNet:
    """Weights in dicts keyed by their checkpoint names relative to each scope."""
    config: XLNetConfig
    transformer: dict  # model/transformer/{word_embedding/lookup_table, r_w_bias, r_r_bias, ...}
    layers: tuple  # model/transformer/layer_i/{rel_attn/q/kernel, ..., ff/layer_1/kernel, ...}
    lm_loss: dict | None  # model/lm_loss/{bias}
    summary: dict | None  # model/sequnece_summary/summary/{kernel, bias} (sic: the original typo)
    skipped: tuple = ()  # checkpoint names not used (global_step, optimizer state)
    source: str = ""
    # the heads the checkpoint holds, by part name: "lm_loss", "summary", "summary_attn",
    # "classification_<task>", "regression_<task>", "squad", "race" (see head_names)
    heads: tuple = ()
    # every fine-tuning head weight by its official name ("model/classification_imdb/logit/kernel",
    # "start_logits/dense/kernel", ...), the summary projection included; read by xlnet.heads
    head_weights: dict = dataclasses.field(default_factory=dict)

    def layer_bias(self, name: str, index: int) -> np.ndarray | None:
        """r_w_bias / r_r_bias / r_s_bias of layer `index`: [n_head, d_head] (tied or untied)."""
        bias = self.transformer.get(name)
        if bias is None:
            return None
        return bias[index] if self.config.untie_r else bias


# --- loading -------------------------------------------------------------------------------
def expected_names(c: XLNetConfig) -> dict[str, dict[str, tuple[int, ...]]]:
    """Every official variable name, grouped by part, with its shape."""
    D, N, H, I = c.d_model, c.n_head, c.d_head, c.d_inner
    bias = (c.n_layer, N, H) if c.untie_r else (N, H)
    t = "model/transformer"
    parts = {
        "embedding": {f"{t}/word_embedding/lookup_table": (c.n_token, D)},
        "relative_bias": {f"{t}/r_w_bias": bias, f"{t}/r_r_bias": bias},
        # seg_embed and r_s_bias exist only when the model was built with segment ids
        "segment": {f"{t}/r_s_bias": bias, f"{t}/seg_embed": (c.n_layer, 2, N, H)},
        # mask_emb exists only when the model was built with a query stream (pretraining)
        "mask_emb": {f"{t}/mask_emb/mask_emb": (1, 1, D)},
        "lm_loss": {"model/lm_loss/bias": (c.n_token,)},
        "summary": {"model/sequnece_summary/summary/kernel": (D, D),
                    "model/sequnece_summary/summary/bias": (D,)},
    }
    for i in range(c.n_layer):
        p = f"{t}/layer_{i}"
        parts[f"layer_{i}"] = {
            **{f"{p}/rel_attn/{w}/kernel": (D, N, H) for w in ("q", "k", "v", "r", "o")},
            f"{p}/rel_attn/LayerNorm/gamma": (D,), f"{p}/rel_attn/LayerNorm/beta": (D,),
            f"{p}/ff/layer_1/kernel": (D, I), f"{p}/ff/layer_1/bias": (I,),
            f"{p}/ff/layer_2/kernel": (I, D), f"{p}/ff/layer_2/bias": (D,),
            f"{p}/ff/LayerNorm/gamma": (D,), f"{p}/ff/LayerNorm/beta": (D,)}
    return parts


def transformers_names(c: XLNetConfig) -> dict[str, tuple[str, str | int]]:
    """The name table shared by loading, convert and capture: each name of transformers'
    XLNetLMHeadModel state dict -> (official name, how the array is stored there): "=" as is,
    "T" transposed (torch Linear weights are [out, in]), or an int i: row i of the official
    array (seg_embed, and the untied r_*_bias, are stored per layer). Tied biases (untie_r false)
    are copied into every layer ("="). The attention kernels keep TF's [d_model, n_head, d_head]
    layout. lm_loss.weight is transformers' tied copy of the word embedding: not listed."""
    t = "model/transformer"
    table = {"transformer.word_embedding.weight": (f"{t}/word_embedding/lookup_table", "="),
             "transformer.mask_emb": (f"{t}/mask_emb/mask_emb", "="),
             "lm_loss.bias": ("model/lm_loss/bias", "=")}
    for i in range(c.n_layer):
        p, q = f"{t}/layer_{i}", f"transformer.layer.{i}"
        table.update({f"{q}.rel_attn.{w}": (f"{p}/rel_attn/{w}/kernel", "=")
                      for w in ("q", "k", "v", "o", "r")})
        table.update({f"{q}.rel_attn.{bias}": (f"{t}/{bias}", i if c.untie_r else "=")
                      for bias in ("r_w_bias", "r_r_bias", "r_s_bias")})
        table.update({
            f"{q}.rel_attn.seg_embed": (f"{t}/seg_embed", i),
            f"{q}.rel_attn.layer_norm.weight": (f"{p}/rel_attn/LayerNorm/gamma", "="),
            f"{q}.rel_attn.layer_norm.bias": (f"{p}/rel_attn/LayerNorm/beta", "="),
            f"{q}.ff.layer_1.weight": (f"{p}/ff/layer_1/kernel", "T"),
            f"{q}.ff.layer_1.bias": (f"{p}/ff/layer_1/bias", "="),
            f"{q}.ff.layer_2.weight": (f"{p}/ff/layer_2/kernel", "T"),
            f"{q}.ff.layer_2.bias": (f"{p}/ff/layer_2/bias", "="),
            f"{q}.ff.layer_norm.weight": (f"{p}/ff/LayerNorm/gamma", "="),
            f"{q}.ff.layer_norm.bias": (f"{p}/ff/LayerNorm/beta", "=")})
    return table


OPTIONAL_PARTS = ("segment", "mask_emb", "lm_loss", "summary")

_TASK_HEAD = re.compile(r"model/(classification|regression)_(.+)/logit/(kernel|bias)")


def head_names(c: XLNetConfig, shapes: dict) -> dict[str, dict[str, tuple[int, ...]]]:
    """The fine-tuning heads' official names and shapes (function_builder.py, modeling.py),
    grouped by head; each head is optional as a whole. Classification and regression tasks are
    found from the checkpoint's names: shapes {name: shape} -> {part: {name: shape}}.

    summary_attn: summarize_sequence's "attn" (summary_bias, abs_attn/{q,k,v,o}, LayerNorm);
    classification_<task> / regression_<task>: model/<scope>/logit/{kernel, bias};
    squad (get_qa_outputs, root scope): start_logits/dense, end_logits/{dense_0, LayerNorm,
    dense_1}, answer_class/{dense_0, dense_1 (no bias)}; race (get_race_loss): logits/dense."""
    D, N, H = c.d_model, c.n_head, c.d_head
    s = "model/sequnece_summary"
    parts = {
        "summary_attn": {f"{s}/summary_bias": (D,),
                         **{f"{s}/abs_attn/{w}/kernel": (D, N, H) for w in ("q", "k", "v", "o")},
                         f"{s}/abs_attn/LayerNorm/gamma": (D,), f"{s}/abs_attn/LayerNorm/beta": (D,)},
        "squad": {"start_logits/dense/kernel": (D, 1), "start_logits/dense/bias": (1,),
                  "end_logits/dense_0/kernel": (2 * D, D), "end_logits/dense_0/bias": (D,),
                  "end_logits/LayerNorm/gamma": (D,), "end_logits/LayerNorm/beta": (D,),
                  "end_logits/dense_1/kernel": (D, 1), "end_logits/dense_1/bias": (1,),
                  "answer_class/dense_0/kernel": (2 * D, D), "answer_class/dense_0/bias": (D,),
                  "answer_class/dense_1/kernel": (D, 1)},
        "race": {"logits/dense/kernel": (D, 1), "logits/dense/bias": (1,)},
    }
    for name, shape in sorted(shapes.items()):
        match = _TASK_HEAD.fullmatch(name)
        if match:
            kind, task = match.group(1), match.group(2)
            n_class = 1 if kind == "regression" or not shape else int(shape[-1])
            scope = f"model/{kind}_{task}/logit"
            parts[f"{kind}_{task}"] = {f"{scope}/kernel": (D, n_class), f"{scope}/bias": (n_class,)}
    return parts


def transformers_head_names(heads) -> tuple[str, dict[str, tuple[str, str]]]:
    """The transformers class for the fine-tuning head a checkpoint holds (head parts as in
    head_names, plus "summary"), and the head's names in the name table's form:
    classification_<task> / regression_<task> -> XLNetForSequenceClassification, race ->
    XLNetForMultipleChoice (both with the summary projection), squad ->
    XLNetForQuestionAnswering; ("", {}) for none. transformers has no "attn" summary."""
    summary = {"sequence_summary.summary.weight": ("model/sequnece_summary/summary/kernel", "T"),
               "sequence_summary.summary.bias": ("model/sequnece_summary/summary/bias", "=")}
    dense = lambda ours, theirs: {f"{theirs}.weight": (f"{ours}/kernel", "T"),  # noqa: E731
                                  f"{theirs}.bias": (f"{ours}/bias", "=")}
    tasks = [h for h in heads if h.startswith(("classification_", "regression_"))]
    if tasks:
        return "XLNetForSequenceClassification", {**summary, **dense(f"model/{tasks[0]}/logit", "logits_proj")}
    if "race" in heads:
        return "XLNetForMultipleChoice", {**summary, **dense("logits/dense", "logits_proj")}
    if "squad" in heads:
        return "XLNetForQuestionAnswering", {
            **dense("start_logits/dense", "start_logits.dense"),
            **dense("end_logits/dense_0", "end_logits.dense_0"),
            "end_logits.LayerNorm.weight": ("end_logits/LayerNorm/gamma", "="),
            "end_logits.LayerNorm.bias": ("end_logits/LayerNorm/beta", "="),
            **dense("end_logits/dense_1", "end_logits.dense_1"),
            **dense("answer_class/dense_0", "answer_class.dense_0"),
            "answer_class.dense_1.weight": ("answer_class/dense_1/kernel", "T")}
    return "", {}


OPTIMIZER_STATE = ("global_step", "beta1_power", "beta2_power")
OPTIMIZER_SLOTS = ("/adam_m", "/adam_v", "/Adam", "/Adam_1")


def skippable(name: str) -> bool:
    """Known variables refimpl does not use: the step counter and the optimizer state, in both
    forms the original scripts write: AdamWeightDecayOptimizer's <var>/adam_m, <var>/adam_v,
    and tf.train.AdamOptimizer's <var>/Adam, <var>/Adam_1, beta1_power, beta2_power."""
    return name in OPTIMIZER_STATE or name.endswith(OPTIMIZER_SLOTS)


def load(path, verify: bool = True, dtype=None) -> XLNet:
    """Load an XLNet model directory (xlnet_config.json + xlnet_model.ckpt.*) or checkpoint prefix.
    dtype: None keeps the checkpoint's weights dtype; "float64" (or "float32") converts each
    tensor as it is read, so that forwards in that dtype use the weights without a copy.

    Tied (untie_r false: biases [n_head, d_head]) and untied ([n_layer, n_head, d_head]) models.
    Optional parts, each present as a whole or absent: seg_embed + r_s_bias, mask_emb,
    lm_loss/bias, sequnece_summary/summary/*, and the fine-tuning heads of head_names (listed in
    `.heads`, weights in `.head_weights`). Anything else missing, any unknown name or a wrong
    shape is a ValueError listing the names; the optimizer state is listed in `.skipped`."""
    v = loading.read_variables(path, "xlnet", CONFIG_FILE, CHECKPOINT_FILE,
                               XLNetConfig.from_json, verify, dtype)  # or a transformers folder
    config, values = v.config, v.values
    heads = head_names(config, {name: value.shape for name, value in values.items()})
    present, skipped = loading.match_variables(values, {**expected_names(config), **heads},
                                               OPTIONAL_PARTS + tuple(heads),
                                               v.skippable(skippable), v.config_file, v.where,
                                               v.aliases)
    strip = loading.strip_scope
    held = tuple(part for part in ("lm_loss", "summary", *heads) if present[part])

    t = "model/transformer"
    transformer = {**strip(present["embedding"], t), **strip(present["relative_bias"], t),
                   **strip(present["segment"], t), **strip(present["mask_emb"], t)}
    return XLNet(
        config=config, transformer=transformer,
        layers=tuple(strip(present[f"layer_{i}"], f"{t}/layer_{i}") for i in range(config.n_layer)),
        lm_loss=strip(present["lm_loss"], "model/lm_loss") or None,
        summary=strip(present["summary"], "model/sequnece_summary/summary") or None,
        skipped=skipped, source=v.source, heads=held,
        head_weights={name: value for part in ("summary", *heads) for name, value in present[part].items()})


def cast(model: XLNet, dtype) -> XLNet:
    """The model with every weight in `dtype` (cast once, cached per model and dtype)."""
    return loading.cast_weights(model, dtype)
