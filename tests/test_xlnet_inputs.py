"""refimpl.xlnet's loader and its input checks: every bad input is a ValueError that names the
value and what was expected. NumPy only (checkpoint variants are made by editing the dict the
reader returns)."""
from __future__ import annotations

import functools
import json
import os
import shutil

import numpy as np
import pytest

from refimpl import checkpoint, xlnet
from refimpl.xlnet import weights as xlnet_weights

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden", "checkpoints")
UNTIED, TIED = os.path.join(GOLDEN, "xlnet-tiny"), os.path.join(GOLDEN, "xlnet-tiny-tied")


@functools.cache
def model(path: str = UNTIED) -> xlnet.XLNet:
    return xlnet.load(path)


def load_with(monkeypatch, edit, path=UNTIED) -> xlnet.XLNet:
    """Load the checkpoint at `path` after `edit(variables)` changed what the reader returns."""
    real = checkpoint.load_checkpoint

    def patched(p, verify=True, **kwargs):
        values = dict(real(p, verify, **kwargs))
        edit(values)
        return values

    monkeypatch.setattr(checkpoint, "load_checkpoint", patched)  # loading.py reads through it
    return xlnet.load(path)


# --- loading -------------------------------------------------------------------------------
def test_load_directory_and_prefix_agree():
    a, b = xlnet.load(UNTIED), xlnet.load(os.path.join(UNTIED, "xlnet_model.ckpt"))
    assert a.config == b.config
    for name in a.transformer:
        np.testing.assert_array_equal(a.transformer[name], b.transformer[name])
    assert a.skipped == ("global_step",)


def test_tied_and_untied_biases():
    untied, tied = model(UNTIED), model(TIED)
    assert untied.config.untie_r and not tied.config.untie_r
    assert untied.transformer["r_w_bias"].shape == (3, 4, 8)
    assert tied.transformer["r_w_bias"].shape == (4, 8)
    for i in range(3):
        np.testing.assert_array_equal(untied.layer_bias("r_r_bias", i), untied.transformer["r_r_bias"][i])
        np.testing.assert_array_equal(tied.layer_bias("r_r_bias", i), tied.transformer["r_r_bias"])
    assert tied.transformer["seg_embed"].shape == (3, 2, 4, 8)  # per layer even when tied


def test_known_extras_are_skipped_and_listed(monkeypatch):
    """Optimizer state is skipped and listed; a complete fine-tuning head is read (issue 11)."""
    def edit(values):
        values["model/transformer/layer_0/ff/layer_1/kernel/adam_m"] = np.zeros((32, 64), np.float32)
        values["model/transformer/layer_0/ff/layer_1/kernel/adam_v"] = np.zeros((32, 64), np.float32)
        values["model/classification_imdb/logit/kernel"] = np.zeros((32, 2), np.float32)
        values["model/classification_imdb/logit/bias"] = np.zeros((2,), np.float32)
        values["model/sequnece_summary/summary/kernel"] = np.eye(32, dtype=np.float32)
        values["model/sequnece_summary/summary/bias"] = np.full((32,), 0.5, np.float32)

    m = load_with(monkeypatch, edit)
    assert m.skipped == ("global_step", "model/transformer/layer_0/ff/layer_1/kernel/adam_m",
                         "model/transformer/layer_0/ff/layer_1/kernel/adam_v")
    assert "summary" in m.heads and "classification_imdb" in m.heads
    hidden = np.random.default_rng(0).standard_normal((2, 3, 32))
    # identity kernel, bias 0.5: tanh(h + 0.5) of the picked position
    np.testing.assert_allclose(xlnet.sequence_summary(m, hidden, "last"), np.tanh(hidden[:, -1] + 0.5), rtol=1e-12)
    np.testing.assert_allclose(xlnet.sequence_summary(m, hidden, "first"), np.tanh(hidden[:, 0] + 0.5), rtol=1e-12)
    np.testing.assert_allclose(xlnet.sequence_summary(m, hidden, "mean"), np.tanh(hidden.mean(1) + 0.5), rtol=1e-12)
    with pytest.raises(ValueError, match="summary_type 'max'"):
        xlnet.sequence_summary(m, hidden, "max")


def test_optional_parts_may_be_absent(monkeypatch):
    """A fine-tuned checkpoint has no mask_emb and lm_loss; a model built without segment ids
    has no seg_embed / r_s_bias. Loading works; using them is a ValueError."""
    def edit(values):
        for name in ("model/transformer/mask_emb/mask_emb", "model/lm_loss/bias",
                     "model/transformer/seg_embed", "model/transformer/r_s_bias"):
            del values[name]

    m = load_with(monkeypatch, edit)
    ids = np.ones((1, 3), int)
    assert xlnet.forward(m, ids).content.shape == (1, 3, 32)
    with pytest.raises(ValueError, match="mask_emb"):
        xlnet.forward(m, ids, inp_q=np.ones((1, 3), int))
    with pytest.raises(ValueError, match="seg_embed"):
        xlnet.forward(m, ids, segment_ids=np.zeros((1, 3), int))
    with pytest.raises(ValueError, match="lm_loss/bias"):
        xlnet.lm_logits(m, np.zeros((1, 32)))
    with pytest.raises(ValueError, match="sequnece_summary"):
        xlnet.sequence_summary(m, np.zeros((1, 3, 32)))


@pytest.mark.parametrize("edit, message", [
    (lambda v: v.pop("model/transformer/layer_2/rel_attn/o/kernel"),
     r"missing layer_2 variables: model/transformer/layer_2/rel_attn/o/kernel"),
    (lambda v: v.pop("model/transformer/r_s_bias"), r"missing segment variables: model/transformer/r_s_bias"),
    (lambda v: v.update({"model/transformer/layer_3/ff/layer_1/bias": np.zeros(64, np.float32)}),
     r"unexpected variables: model/transformer/layer_3/ff/layer_1/bias"),
    (lambda v: v.update({"model/transformer/r_w_bias": np.zeros((4, 8), np.float32)}),
     r"model/transformer/r_w_bias has shape \(4, 8\), expected \(3, 4, 8\)"),
    (lambda v: v.update({"model/transformer/word_embedding/lookup_table": np.zeros((100, 32), np.int32)}),
     r"lookup_table has dtype int32, expected floating point"),
])
def test_bad_checkpoints(monkeypatch, edit, message):
    with pytest.raises(ValueError, match=message):
        load_with(monkeypatch, edit)


def test_tied_config_with_untied_checkpoint(tmp_path):
    """untie_r false with [n_layer, n_head, d_head] biases: every bias is named."""
    for f in os.listdir(UNTIED):
        shutil.copy(os.path.join(UNTIED, f), tmp_path)
    config = json.load(open(tmp_path / "xlnet_config.json"))
    json.dump({**config, "untie_r": False}, open(tmp_path / "xlnet_config.json", "w"))
    with pytest.raises(ValueError) as e:
        xlnet.load(tmp_path)
    for name in ("r_w_bias", "r_r_bias", "r_s_bias"):
        assert f"model/transformer/{name} has shape (3, 4, 8), expected (4, 8)" in str(e.value)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("d_inner"), r"missing config keys \[d_inner\]"),
    (lambda c: c.update(dropout=0.1), r"unknown keys \[dropout\]"),
    (lambda c: c.update(ff_activation="swish"), r"ff_activation 'swish', expected 'gelu' or 'relu'"),
    (lambda c: c.update(n_head=0), r"n_head 0, expected a positive integer"),
])
def test_bad_configs(tmp_path, change, message):
    for f in os.listdir(UNTIED):
        shutil.copy(os.path.join(UNTIED, f), tmp_path)
    config = json.load(open(tmp_path / "xlnet_config.json"))
    change(config)
    json.dump(config, open(tmp_path / "xlnet_config.json", "w"))
    with pytest.raises(ValueError, match=message):
        xlnet.load(tmp_path)


def test_no_config(tmp_path):
    with pytest.raises(ValueError, match="no xlnet_config.json in"):
        xlnet.load(tmp_path)


# --- forward inputs ----------------------------------------------------------------------------
B, L = 2, 4
IDS = np.arange(B * L).reshape(B, L) + 10


@pytest.mark.parametrize("kwargs, message", [
    (dict(token_ids=[[1, 100]]), r"token id 100 is out of range: expected 0 <= token id < 100"),
    (dict(token_ids=[[-1, 3]]), r"token id -1 is out of range"),
    (dict(token_ids=[[1.0, 2.0]]), r"token_ids must be integers, got dtype float64"),
    (dict(token_ids=[1, 2, 3]), r"token_ids has shape \(3,\), expected \(batch, length\)"),
    (dict(token_ids=np.zeros((1, 0), int)), r"token_ids has shape \(1, 0\)"),
    (dict(segment_ids=np.zeros((B, L + 1), int)), r"segment_ids has shape \(2, 5\), expected token_ids' shape \(2, 4\)"),
    (dict(segment_ids=np.zeros((B, L))), r"segment_ids must be integers, got dtype float64"),
    (dict(attention_mask=np.ones((B, L - 1))), r"attention_mask has shape \(2, 3\), expected \(batch, length\) = \(2, 4\)"),
    (dict(attention_mask=np.full((B, L), 2)), r"attention_mask must hold only 0 and 1, got values \[2\]"),
    (dict(perm_mask=np.zeros((B, L))), r"perm_mask has shape \(2, 4\), expected \(batch, length, length\) = \(2, 4, 4\)"),
    (dict(perm_mask=np.full((B, L, L), 0.5)), r"perm_mask must hold only 0 and 1, got values \[0.5\]"),
    (dict(target_mapping=np.zeros((B, L))), r"target_mapping has shape \(2, 4\), expected \(batch, num_predict, length\)"),
    (dict(target_mapping=np.zeros((B, 0, L))), r"target_mapping has shape \(2, 0, 4\)"),
    (dict(target_mapping=np.full((B, 1, L), -1)), r"target_mapping must hold only 0 and 1, got values \[-1\]"),
    (dict(target_mapping=np.ones((B, 1, L))), r"target_mapping rows must be one-hot"),
    (dict(target_mapping=np.ones((B, 2, 1)) * np.eye(L)[:1]), r"two targets at the same position"),
    (dict(target_mapping=np.eye(L)[None, :1].repeat(B, 0), inp_q=np.ones((B, L))), r"either target_mapping .* or inp_q"),
    (dict(inp_q=np.ones((B, L + 1))), r"inp_q has shape \(2, 5\), expected \(batch, length\)"),
    (dict(mems=[np.zeros((B, 3, 32))] * 2), r"mems has 2 entries, expected one per layer \(3\)"),
    (dict(mems=[np.zeros((B, 3, 32))] * 2 + [np.zeros((B, 2, 32))]), r"mems\[2\] has shape \(2, 2, 32\)"),
    (dict(mems=[np.zeros((B, 3, 31))] * 3), r"mems\[0\] has shape \(2, 3, 31\) .* d_model\) = \(2, mlen, 32\)"),
    (dict(mems=[np.zeros((B + 1, 3, 32))] * 3), r"mems\[0\] has shape \(3, 3, 32\)"),
    (dict(mems=[np.zeros((B, 3, 32), int)] * 3), r"mems\[0\] has shape \(2, 3, 32\) and dtype int64, expected floats"),
    (dict(token_ids=IDS[:1], bi_data=True), r"bi_data needs an even batch size .* got batch size 1"),
    (dict(attn_type="causal"), r"unknown attn_type 'causal'; expected 'bi' or 'uni'"),
    (dict(dialect="torch"), r"unknown dialect 'torch'"),
    (dict(dtype=np.int32), r"dtype 'int32': expected one of float32, float64, bfloat16, float16"),
    (dict(dtype="float8"), r"dtype 'float8': expected one of"),
    (dict(mem_len=2.5), r"mem_len 2.5: expected None or an integer"),
    (dict(mem_len=-1), r"mem_len -1: expected None or an integer >= 0"),
    (dict(reuse_len=-2), r"reuse_len -2: expected None or an integer >= 0"),
    (dict(clamp_len=-3), r"clamp_len -3: expected None or an integer >= 0"),
    (dict(reuse_len="2"), r"reuse_len '2': expected None or an integer"),
    (dict(clamp_len=1.5), r"clamp_len 1.5: expected None or an integer"),
])
def test_bad_inputs(kwargs, message):
    kwargs = {"token_ids": IDS, **kwargs}
    with pytest.raises(ValueError, match=message):
        xlnet.forward(model(), **kwargs)


def test_bad_head_and_memory_inputs():
    m = model()
    with pytest.raises(ValueError, match=r"hidden has shape \(2, 31\) .* d_model = 32"):
        xlnet.lm_logits(m, np.zeros((2, 31)))
    with pytest.raises(ValueError, match=r"hidden has shape \(2, 32\) and dtype int64"):
        xlnet.lm_probs(m, np.zeros((2, 32), int))
    memory = xlnet.KerasMemory(3, 32, batch_size=2, memory_len=3, target_len=4)
    with pytest.raises(ValueError, match=r"batch of 3 sequences: .* batch_size 2"):
        memory.read(3, 4, 0)
    with pytest.raises(ValueError, match=r"segment length 5: expected 1 <= length <= target_len 4"):
        memory.read(2, 5, 0)
    with pytest.raises(ValueError, match=r"memory_length -1: expected an integer >= 0"):
        memory.read(2, 4, -1)
    with pytest.raises(ValueError, match=r"memory_len -1: expected an integer >= 0"):
        xlnet.KerasMemory(3, 32, batch_size=2, memory_len=-1, target_len=4)
    with pytest.raises(ValueError, match=r"2 layer inputs, expected 3"):
        memory.update([np.zeros((2, 4, 32))] * 2)
