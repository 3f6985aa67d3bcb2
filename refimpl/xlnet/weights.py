"""XLNet config and weights: official checkpoint names mapped explicitly, every shape checked.

The weights stay in dicts keyed by their checkpoint names relative to each scope, so that
`m.layers[0]["rel_attn/q/kernel"]` is `model/transformer/layer_0/rel_attn/q/kernel`.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from refimpl import checkpoint, loading

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
    skipped: tuple = ()  # checkpoint names not used (global_step, optimizer slots, task heads)
    source: str = ""

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


OPTIONAL_PARTS = ("segment", "mask_emb", "lm_loss", "summary")


def skippable(name: str) -> bool:
    """Known variables refimpl does not use: step counter, Adam slots, fine-tuning heads."""
    return (name == "global_step" or name.endswith(("/adam_m", "/adam_v"))
            or name.startswith(("model/sequnece_summary/", "model/classification_",
                                "model/regression_")))


def load(path, verify: bool = True) -> XLNet:
    """Load an XLNet model directory (xlnet_config.json + xlnet_model.ckpt.*) or checkpoint prefix.

    Tied (untie_r false: biases [n_head, d_head]) and untied ([n_layer, n_head, d_head]) models.
    Optional parts, each present as a whole or absent: seg_embed + r_s_bias, mask_emb,
    lm_loss/bias, sequnece_summary/summary/*. Anything else missing, any unknown name or a wrong
    shape is a ValueError listing the names; known unused names are listed in `.skipped`."""
    config_path, ckpt_path = loading.find_files(path, CONFIG_FILE, CHECKPOINT_FILE)
    config = XLNetConfig.from_json(config_path)
    values = checkpoint.load_checkpoint(ckpt_path, verify=verify)
    present, skipped = loading.match_variables(values, expected_names(config), OPTIONAL_PARTS,
                                               skippable, CONFIG_FILE,
                                               f"{ckpt_path} does not match {config_path}")
    strip = loading.strip_scope

    t = "model/transformer"
    transformer = {**strip(present["embedding"], t), **strip(present["relative_bias"], t),
                   **strip(present["segment"], t), **strip(present["mask_emb"], t)}
    return XLNet(
        config=config, transformer=transformer,
        layers=tuple(strip(present[f"layer_{i}"], f"{t}/layer_{i}") for i in range(config.n_layer)),
        lm_loss=strip(present["lm_loss"], "model/lm_loss") or None,
        summary=strip(present["summary"], "model/sequnece_summary/summary") or None,
        skipped=skipped, source=os.fspath(ckpt_path))


def cast(model: XLNet, dtype) -> XLNet:
    """The model with every weight in `dtype` (cast once, cached per model and dtype)."""
    return loading.cast_weights(model, dtype)
