"""refimpl.bert and refimpl.pos_embd against keras-bert and keras-pos-embd.

Each operation is compared with its Keras layer on Hypothesis-drawn shapes, weights and inputs;
the whole model with `keras_bert.load_trained_model_from_checkpoint` on the shipped bert-tiny,
every traced layer against the Keras layer of the same name. Tolerances: tests/tolerances.py.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl import bert, checkpoint, dialects, ops, pos_embd
from tolerances import assert_close, max_abs_error

tf = pytest.importorskip("tensorflow", reason="the Keras anchors need TensorFlow (the [test] extra)")
from tensorflow import keras  # noqa: E402  (tf-keras: TF_USE_LEGACY_KERAS=1 is set in conftest)
import keras_bert  # noqa: E402
from keras_bert.layers import EmbeddingSimilarity, TokenEmbedding  # noqa: E402
from keras_layer_normalization import LayerNormalization  # noqa: E402
from keras_multi_head import MultiHeadAttention  # noqa: E402
from keras_pos_embd import PositionEmbedding, TrigPosEmbedding  # noqa: E402
from keras_position_wise_feed_forward import FeedForward  # noqa: E402
from keras_transformer import gelu as keras_gelu  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BERT_TINY = os.path.join(ROOT, "golden", "checkpoints", "bert-tiny")
KERAS = dialects.get("keras")

finite = st.floats(-3, 3, allow_nan=False, width=32)


def weights(shape):
    return hnp.arrays(np.float32, shape, elements=finite)


# --- keras-pos-embd ------------------------------------------------------------------------
@given(data=st.data(), input_dim=st.integers(1, 12), output_dim=st.integers(1, 8),
       mask_zero=st.sampled_from([False, True, 3]))
def test_position_embedding_expand(data, input_dim, output_dim, mask_zero):
    table = data.draw(weights((2 * input_dim + 1, output_dim)))
    positions = data.draw(hnp.arrays(np.int32, data.draw(hnp.array_shapes(min_dims=2, max_dims=2, max_side=6)),
                                     elements=st.integers(-3 * input_dim, 3 * input_dim)))
    layer = PositionEmbedding(input_dim, output_dim, mode=PositionEmbedding.MODE_EXPAND, mask_zero=mask_zero)
    layer.build(positions.shape)
    layer.set_weights([table])
    expected = layer(tf.constant(positions)).numpy()
    expected_mask = layer.compute_mask(tf.constant(positions))
    out, mask = pos_embd.position_embedding(positions, table.astype(np.float64), "expand", mask_zero=mask_zero)
    assert_close(out, expected, "keras-op", "PositionEmbedding expand")
    if mask_zero is False:
        assert mask is None and expected_mask is None
    else:
        np.testing.assert_array_equal(mask, expected_mask.numpy())


@given(data=st.data(), mode=st.sampled_from(["add", "concat"]), input_dim=st.integers(1, 12))
def test_position_embedding_add_concat(data, mode, input_dim):
    output_dim = data.draw(st.integers(1, 8))
    width = output_dim if mode == "add" else data.draw(st.integers(1, 6))
    length = data.draw(st.integers(1, input_dim))
    batch = data.draw(st.integers(1, 3))
    table = data.draw(weights((input_dim, output_dim)))
    inputs = data.draw(weights((batch, length, width)))
    layer = PositionEmbedding(input_dim, output_dim, mode=mode)
    layer.build((None, None, width))
    layer.set_weights([table])
    expected = layer(tf.constant(inputs)).numpy()
    out, _ = pos_embd.position_embedding(inputs.astype(np.float64), table.astype(np.float64), mode)
    assert_close(out, expected, "keras-op", f"PositionEmbedding {mode}")


@given(data=st.data(), mode=st.sampled_from(["expand", "add", "concat"]))
def test_trig_pos_embedding(data, mode):
    batch, length = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 10))
    output_dim = 2 * data.draw(st.integers(1, 6))
    if mode == "expand":
        inputs = data.draw(hnp.arrays(np.int32, (batch, length), elements=st.integers(0, 50)))
        kwargs = dict(output_dim=output_dim)
    else:
        width = output_dim if mode == "add" else data.draw(st.integers(1, 5))
        inputs = data.draw(weights((batch, length, width)))
        kwargs = dict(output_dim=output_dim) if mode == "concat" else {}
    expected = TrigPosEmbedding(mode=mode, **kwargs)(tf.constant(inputs)).numpy()
    ours = pos_embd.trig_pos_embedding(inputs if mode == "expand" else inputs.astype(np.float64),
                                       mode, dtype=np.float64, **kwargs)
    assert_close(ours, expected, "keras-op", f"TrigPosEmbedding {mode}")


def test_position_lookup_is_a_one_hot_matmul():
    table = np.random.default_rng(0).normal(size=(9, 5))
    positions = np.array([[-7, -4, 0, 1, 4, 9]])
    out, _ = pos_embd.position_embedding(positions, table, "expand")
    one_hot = np.eye(9)[np.clip(positions, -4, 4) + 4]
    assert_close(out, one_hot @ table, "float64-identity")
    model = bert.load(BERT_TINY)
    trace = {}
    bert.forward(model, [[5, 6, 7]], trace=trace)
    position_rows = trace["Embedding-Position"] - trace["Embedding-Token-Segment"]
    assert_close(position_rows[0], np.eye(16)[:3] @ model.embeddings["position_embeddings"], "float64-identity")


def test_pos_embd_bad_input():
    with pytest.raises(ValueError, match="sequence length 5 is longer than the position table .4 positions"):
        pos_embd.position_embedding(np.zeros((1, 5, 2)), np.zeros((4, 2)), "add")
    with pytest.raises(ValueError, match="unknown position embedding mode 'sum'"):
        pos_embd.position_embedding(np.zeros((1, 2, 2)), np.zeros((4, 2)), "sum")
    with pytest.raises(ValueError, match="2\\*input_dim\\+1 rows, got 4"):
        pos_embd.position_embedding(np.zeros((1, 2), int), np.zeros((4, 2)), "expand")


# --- keras-bert layers ---------------------------------------------------------------------
@given(data=st.data())
def test_token_embedding_and_similarity(data):
    vocab, width = data.draw(st.integers(2, 20)), data.draw(st.integers(1, 8))
    table = data.draw(weights((vocab, width)))
    bias = data.draw(weights((vocab,)))
    ids = data.draw(hnp.arrays(np.int32, (2, data.draw(st.integers(1, 6))), elements=st.integers(0, vocab - 1)))
    embed = TokenEmbedding(vocab, width, mask_zero=True)
    embed.build(ids.shape)
    embed.set_weights([table])
    looked_up, returned_table = (t.numpy() for t in embed(tf.constant(ids)))
    assert_close(ops.embedding_lookup(table.astype(np.float64), ids), looked_up, "keras-op", "TokenEmbedding")
    sim = EmbeddingSimilarity()
    features = data.draw(weights((2, ids.shape[1], width)))
    sim.build([features.shape, returned_table.shape])
    sim.set_weights([bias])
    expected = sim([tf.constant(features), tf.constant(returned_table)], mask=[None, None]).numpy()
    logits = features.astype(np.float64) @ table.astype(np.float64).T + bias
    assert_close(ops.softmax(logits), expected, "keras-op", "EmbeddingSimilarity")


@given(data=st.data())
def test_layer_normalization(data):
    width = data.draw(st.integers(2, 16))
    x = data.draw(weights((data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5)), width)))
    gamma, beta = data.draw(weights((width,))), data.draw(weights((width,)))
    # Rows of (nearly) equal values are ill-conditioned in the float32 anchor: its rounding of
    # the mean (~6e-8 max |x|) is divided by sqrt(var + 1e-14), relative noise of 6e-8 max |x| /
    # sqrt(var), while the float64 reference is exact. Such rows say nothing about the formula:
    # rows need sqrt(var) >= 0.1 max |x| (noise <= 6e-7, under the 1e-5 tolerance). The earlier
    # bound, var > 1e-6, let [1.834, 1.828 x 6] through (var 2.5e-6: noise 7e-5, seen failing).
    x64 = x.astype(np.float64)
    assume((x64.var(axis=-1) >= 0.01 * np.abs(x64).max(axis=-1) ** 2).all())
    layer = LayerNormalization()
    layer.build(x.shape)
    layer.set_weights([gamma, beta])
    expected = layer(tf.constant(x)).numpy()
    ours = ops.layer_norm(x.astype(np.float64), gamma.astype(np.float64), beta.astype(np.float64), KERAS.layer_norm_eps)
    assert_close(ours, expected, "keras-op", "LayerNormalization")


@given(data=st.data())
def test_feed_forward(data):
    width, hidden = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 16))
    x = data.draw(weights((2, data.draw(st.integers(1, 5)), width)))
    w1, b1, w2, b2 = (data.draw(weights(s)) for s in ((width, hidden), (hidden,), (hidden, width), (width,)))
    layer = FeedForward(units=hidden, activation=keras_gelu)
    layer.build(x.shape)
    layer.set_weights([w1, b1, w2, b2])
    expected = layer(tf.constant(x)).numpy()
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    ours = ops.dense(ops.gelu_tanh(ops.dense(f64(x), f64(w1), f64(b1))), f64(w2), f64(b2))
    assert_close(ours, expected, "keras-op", "FeedForward")


@given(data=st.data())
def test_multi_head_attention_with_padding(data):
    heads, head_size = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    width = heads * head_size
    batch, length = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 7))
    x = data.draw(weights((batch, length, width)))
    lengths = data.draw(st.lists(st.integers(1, length), min_size=batch, max_size=batch))
    mask = (np.arange(length)[None, :] < np.array(lengths)[:, None])
    parts = [data.draw(weights(s)) for s in [(width, width), (width,)] * 4]
    layer = MultiHeadAttention(head_num=heads, activation=None)  # keras-bert passes None (default relu)
    layer.build(x.shape)
    layer.set_weights(parts)
    expected = layer(tf.constant(x), mask=tf.constant(mask)).numpy()
    names = ["query", "key", "value"]
    w = {}
    for i, name in enumerate(names):
        w[f"attention/self/{name}/kernel"], w[f"attention/self/{name}/bias"] = parts[2 * i], parts[2 * i + 1]
    w["attention/output/dense/kernel"], w["attention/output/dense/bias"] = parts[6], parts[7]
    w = {k: v.astype(np.float64) for k, v in w.items()}
    bias = bert.attention_mask_bias(mask.astype(np.float64), KERAS, np.dtype(np.float64))
    ours = bert.attention_layer(x.astype(np.float64), bias, w, heads)
    assert_close(ours, expected, "keras-op", "MultiHeadAttention")


# --- the whole model -----------------------------------------------------------------------
_KERAS_MODELS: dict = {}


def keras_bert_model(seq_len: int, training: bool):
    """keras-bert's model loaded from bert-tiny, and a sub-model exposing every traced layer."""
    key = (seq_len, training)
    if key not in _KERAS_MODELS:
        model = keras_bert.load_trained_model_from_checkpoint(
            os.path.join(BERT_TINY, "bert_config.json"), os.path.join(BERT_TINY, "bert_model.ckpt"),
            training=training, seq_len=seq_len)
        names = [layer.name for layer in model.layers
                 if not layer.name.startswith("Input-") and not layer.name.endswith(("-Dropout", "-Add"))
                 and layer.name != "MLM"]
        outputs = [model.get_layer(n).output for n in names]
        outputs = [o[0] if isinstance(o, list) else o for o in outputs]  # TokenEmbedding: [x, table]
        _KERAS_MODELS[key] = (model, names, keras.Model(model.inputs, outputs))
    return _KERAS_MODELS[key]


@st.composite
def bert_inputs(draw, seq_len: int, pad: bool = True):
    """Token ids 1..99 with trailing padding (id 0) and two segments, as keras-bert expects."""
    batch = draw(st.integers(1, 3))
    tokens = draw(hnp.arrays(np.int32, (batch, seq_len), elements=st.integers(1, 99)))
    segments = np.zeros_like(tokens)
    mask = np.ones_like(tokens)
    for b in range(batch):
        real = draw(st.integers(1, seq_len)) if pad else seq_len
        split = draw(st.integers(0, real))
        segments[b, split:real] = 1
        tokens[b, real:] = 0
        mask[b, real:] = 0
    return tokens, segments, mask


@pytest.mark.parametrize("seq_len", [7, 16])
@settings(max_examples=8)
@given(data=st.data())
def test_whole_model_matches_keras_bert(data, seq_len):
    tokens, segments, mask = data.draw(bert_inputs(seq_len))
    model = bert.load(BERT_TINY)
    _, names, sub = keras_bert_model(seq_len, training=True)
    keras_out = dict(zip(names, sub.predict([tokens, segments, np.zeros_like(tokens)], verbose=0)))
    trace = {}
    out = bert.forward(model, tokens, segments, dialect="keras", trace=trace)
    compared = 0
    for name in names:
        assert name in trace, f"refimpl does not trace Keras layer {name}"
        assert_close(trace[name], keras_out[name], "keras-model", name)
        compared += 1
    assert compared >= 3 * 4 + 8
    assert_close(out.mlm_probs, keras_out["MLM-Sim"], "keras-model", "mlm_probs")
    assert_close(out.nsp_probs, keras_out["NSP"], "keras-model", "nsp_probs")
    # tf dialect, given the padding mask keras-bert derives itself, differs only by the LayerNorm
    # epsilon (1e-12 vs 1e-14) and logits vs probabilities in the heads.
    other = bert.forward(model, tokens, segments, attention_mask=mask, dialect="tf")
    assert_close(other.sequence, keras_out["Encoder-3-FeedForward-Norm"], "keras-model", "tf sequence")
    assert_close(other.nsp_probs, keras_out["NSP"], "keras-model", "tf nsp_probs")


def test_inference_model_matches_keras_bert():
    """training=False: keras-bert returns the last encoder layer; padding and two segments."""
    model = bert.load(BERT_TINY)
    keras_model, _, _ = keras_bert_model(16, training=False)
    tokens = np.array([[2, 10, 11, 12, 3, 20, 21, 3] + [0] * 8, [2, 30, 31, 32, 33, 34, 35, 3] + [40] * 8])
    segments = np.array([[0] * 5 + [1] * 11, [0] * 8 + [1] * 8])
    expected = keras_model.predict([tokens, segments], verbose=0)
    ours = bert.forward(model, tokens, segments, dialect="keras").sequence
    assert_close(ours, expected, "keras-model", "sequence")
    # tf dialect needs the mask spelled out; it then agrees to within the LayerNorm epsilon.
    mask = (tokens != 0).astype(int)
    assert_close(bert.forward(model, tokens, segments, mask, dialect="tf").sequence, expected, "keras-model")
    # ... and without it, the padded keys are attended to: a real difference.
    assert max_abs_error(bert.forward(model, tokens, segments, dialect="tf").sequence[0, :8], expected[0, :8]) > 1e-3


def test_dialects_differ_only_where_the_table_says():
    model = bert.load(BERT_TINY)
    tokens = np.array([[2, 10, 11, 3, 20, 3, 0, 0]])
    mask = (tokens != 0).astype(int)
    tf_out = bert.forward(model, tokens, attention_mask=mask, dialect="tf")
    # Keras: epsilon 1e-14 instead of 1e-12 and the automatic mask (same as `mask` here).
    keras_out = bert.forward(model, tokens, dialect="keras")
    assert_close(keras_out.sequence, tf_out.sequence, "float32")
    # transformers: exact-erf GELU differs from the tanh approximation by up to ~1e-3 per unit.
    hf_out = bert.forward(model, tokens, attention_mask=mask, dialect="hf")
    assert max_abs_error(hf_out.sequence, tf_out.sequence) > 1e-5
    tanh_gelu_hf = dataclasses.replace(dialects.get("hf"), gelu="tanh")
    assert_close(bert.forward(model, tokens, attention_mask=mask, dialect=tanh_gelu_hf).sequence,
                 tf_out.sequence, "float32")
    # Fully padded row: -10000 leaves attention as if unmasked, finfo.min makes it uniform.
    none = np.zeros_like(tokens)
    trace_tf, trace_hf = {}, {}
    bert.forward(model, tokens, attention_mask=none, dialect="tf", trace=trace_tf)
    bert.forward(model, tokens, attention_mask=none, dialect=tanh_gelu_hf, trace=trace_hf)
    unmasked = {}
    bert.forward(model, tokens, dialect="tf", trace=unmasked)
    name = "Encoder-1-MultiHeadSelfAttention/prob"
    assert_close(trace_tf[name], unmasked[name], "float32")
    assert_close(trace_hf[name], np.full_like(trace_hf[name], 1 / tokens.shape[1]), "float64-identity")


# --- properties ----------------------------------------------------------------------------
@settings(max_examples=20)
@given(data=st.data(), dialect=st.sampled_from(["tf", "keras", "hf"]))
def test_trailing_padding_leaves_real_positions_unchanged(data, dialect):
    model = bert.load(BERT_TINY)
    length = data.draw(st.integers(1, 10))
    pad = data.draw(st.integers(1, 16 - length))
    tokens = data.draw(hnp.arrays(np.int64, (1, length), elements=st.integers(1, 99)))
    segments = data.draw(hnp.arrays(np.int64, (1, length), elements=st.integers(0, 1)))
    short = bert.forward(model, tokens, segments, np.ones_like(tokens), dialect=dialect)
    padded_tokens = np.concatenate([tokens, data.draw(hnp.arrays(np.int64, (1, pad), elements=st.integers(0, 99)))], 1)
    padded_segments = np.concatenate([segments, np.zeros((1, pad), np.int64)], 1)
    padded_mask = np.concatenate([np.ones_like(tokens), np.zeros((1, pad), np.int64)], 1)
    if dialect == "keras":  # keras masks id 0 itself; with other pad ids the mask says it
        padded_tokens[:, length:] = 0
    padded = bert.forward(model, padded_tokens, padded_segments, padded_mask, dialect=dialect)
    assert_close(padded.sequence[:, :length], short.sequence, "float64-identity", "sequence")
    assert_close(padded.pooled, short.pooled, "float64-identity", "pooled")
    assert_close(padded.mlm_logits[:, :length], short.mlm_logits, "float64-identity", "mlm")


@settings(max_examples=10)
@given(tokens=hnp.arrays(np.int64, (2, 9), elements=st.integers(0, 99)))
def test_float32_agrees_with_float64(tokens):
    model = bert.load(BERT_TINY)
    trace32 = {}
    out64 = bert.forward(model, tokens)
    out32 = bert.forward(model, tokens, dtype=np.float32, trace=trace32)
    for name, value in trace32.items():
        assert value.dtype == np.float32, f"{name} was promoted to {value.dtype}"
    assert out32.sequence.dtype == np.float32 and out32.mlm_logits.dtype == np.float32
    assert_close(out32.sequence, out64.sequence, "float32", "sequence")
    assert_close(out32.nsp_logits, out64.nsp_logits, "float32", "nsp")


# --- bad input and bad checkpoints ---------------------------------------------------------
def test_bad_input_names_the_value():
    model = bert.load(BERT_TINY)
    with pytest.raises(ValueError, match="sequence length 17 is longer than max_position_embeddings 16"):
        bert.forward(model, np.ones((1, 17), int))
    with pytest.raises(ValueError, match="token id 100 is out of range: expected 0 <= token id < 100"):
        bert.forward(model, [[1, 100]])
    with pytest.raises(ValueError, match="token id -1 is out of range"):
        bert.forward(model, [[1, -1]])
    with pytest.raises(ValueError, match="segment id 2 is out of range: expected 0 <= segment id < 2"):
        bert.forward(model, [[1, 2]], segment_ids=[[0, 2]])
    with pytest.raises(ValueError, match=r"segment_ids shape \(1, 3\) does not match token_ids shape \(1, 2\)"):
        bert.forward(model, [[1, 2]], segment_ids=[[0, 0, 0]])
    with pytest.raises(ValueError, match=r"attention_mask shape \(2, 2\) does not match"):
        bert.forward(model, [[1, 2]], attention_mask=[[1, 1], [1, 1]])
    with pytest.raises(ValueError, match="attention_mask must hold only 0"):
        bert.forward(model, [[1, 2]], attention_mask=[[1, 2]])
    with pytest.raises(ValueError, match=r"token_ids must have shape \(batch, length\)"):
        bert.forward(model, [1, 2])
    with pytest.raises(ValueError, match="unknown dialect 'torch'"):
        bert.forward(model, [[1, 2]], dialect="torch")
    with pytest.raises(ValueError, match="token ids must be integers"):
        bert.forward(model, [[1.5, 2]])


def _write_variant(tmp_path, change):
    """A copy of bert-tiny whose variables went through `change(dict) -> dict`."""
    import tf_writers
    values = checkpoint.load_checkpoint(BERT_TINY)
    values = change(dict(values))
    variables = {n: (str(v.dtype), v) for n, v in values.items()}
    shutil.copy(os.path.join(BERT_TINY, "bert_config.json"), tmp_path)
    tf_writers.save_raw(variables, str(tmp_path / "bert_model.ckpt"))
    return tmp_path


def test_load_lists_missing_unexpected_and_misshapen(tmp_path):
    def change(v):
        del v["bert/encoder/layer_1/attention/self/key/bias"]
        v["bert/encoder/layer_9/extra"] = np.zeros(3, np.float32)
        v["bert/pooler/dense/bias"] = np.zeros(31, np.float32)
        v["bert/embeddings/word_embeddings/adam_m"] = np.zeros((100, 32), np.float32)
        return v
    with pytest.raises(ValueError) as e:
        bert.load(_write_variant(tmp_path, change))
    message = str(e.value)
    assert "missing layer_1 variables: bert/encoder/layer_1/attention/self/key/bias" in message
    assert "unexpected variables: bert/encoder/layer_9/extra" in message
    assert "bert/pooler/dense/bias has shape (31,), expected (32,)" in message
    assert "adam_m" not in message


def test_heads_may_be_absent(tmp_path):
    def change(v):
        return {n: x for n, x in v.items() if not n.startswith("cls/")}
    model = bert.load(_write_variant(tmp_path, change))
    out = bert.forward(model, [[2, 5, 3]])
    assert out.sequence.shape == (1, 3, 32) and out.pooled.shape == (1, 32)
    with pytest.raises(ValueError, match=r"has no masked-LM head \(cls/predictions/\*\)"):
        out.mlm_logits
    with pytest.raises(ValueError, match="has no next-sentence head"):
        out.nsp_probs


def test_load_reports_skipped_and_missing_config(tmp_path):
    model = bert.load(BERT_TINY)
    assert model.skipped == ("global_step",)
    with pytest.raises(ValueError, match="no bert_config.json"):
        bert.load(tmp_path)
    (tmp_path / "bert_config.json").write_text(json.dumps({"hidden_size": 32}))
    with pytest.raises(ValueError, match=r"missing config keys \[vocab_size, "):
        bert.load(tmp_path)
    config = json.load(open(os.path.join(BERT_TINY, "bert_config.json")))
    for key, value, message in (("num_hidden_layers", 0, "num_hidden_layers 0, expected a positive integer"),
                                ("hidden_size", "32", "hidden_size '32', expected a positive integer"),
                                ("hidden_act", "swish2", "hidden_act: unknown activation 'swish2'"),
                                ("num_attention_heads", 5, "hidden_size 32 is not a multiple of num_attention_heads 5"),
                                ("type_vocab_size", True, "type_vocab_size True, expected a positive integer")):
        (tmp_path / "bert_config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ValueError, match=message):
            bert.load(tmp_path)
