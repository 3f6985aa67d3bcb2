"""refimpl.xlnet's operations, one by one, against the Keras layers keras-xlnet builds on.

Each test draws shapes, weights and inputs with Hypothesis, runs the Keras layer eagerly
(TensorFlow float32) and the matching refimpl function (float64 unless said), and compares within
tests/tolerances.py. Masks, one-hots and memory rows are compared exactly.
The layers: keras-xlnet PositionalEmbedding, PermutationMask, RelativeSegmentEmbedding,
MaskEmbedding, RelativePartialMultiHeadSelfAttention (keras_xlnet/attention.py: the XLNet one,
with segments; keras_transformer_xl.rel_multi_head is Transformer-XL's causal variant and is
not what keras-xlnet uses), keras-transformer-xl Memory, keras-layer-normalization
LayerNormalization, keras-position-wise-feed-forward FeedForward, keras-embed-sim EmbeddingSim.
RelativeBias and SegmentBias only return their weights: test_xlnet_model checks the values
keras-xlnet's loader puts there against refimpl's loader.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl import dialects, ops, xlnet
from tolerances import assert_close

tf = pytest.importorskip("tensorflow", reason="TensorFlow (the [test] extra) runs the Keras anchors")
keras_xlnet = pytest.importorskip("keras_xlnet")
import keras_shims  # noqa: E402

keras_shims.apply()
# keras-xlnet's layers create GlorotNormal initializers that the checkpoint weights replace
pytestmark = pytest.mark.filterwarnings("ignore:The initializer GlorotNormal is unseeded:UserWarning")
from keras_embed_sim import EmbeddingSim  # noqa: E402
from keras_layer_normalization import LayerNormalization  # noqa: E402
from keras_position_wise_feed_forward import FeedForward  # noqa: E402
from keras_transformer import gelu as keras_gelu  # noqa: E402
from keras_transformer_xl import Memory  # noqa: E402

KERAS = dialects.get("keras")
GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden", "checkpoints")
KERAS_EXAMPLES = settings(max_examples=20)


@functools.cache
def _model() -> xlnet.XLNet:
    return xlnet.load(os.path.join(GOLDEN, "xlnet-tiny"))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _normal(rng, shape, std=0.3) -> np.ndarray:
    """float32 values (what the Keras layer gets); refimpl gets the same values widened."""
    return (rng.standard_normal(shape) * std).astype(np.float32)


seeds = st.integers(0, 2**32 - 1)


# --- positions and masks -------------------------------------------------------------------
@KERAS_EXAMPLES
@given(bsz=st.integers(1, 3), qlen=st.integers(1, 6), mlen=st.integers(0, 6),
       d_model=st.integers(1, 12), directional=st.booleans(),
       clamp_len=st.one_of(st.none(), st.integers(0, 8)))
def test_positional_embedding(bsz, qlen, mlen, d_model, directional, clamp_len):
    layer = keras_xlnet.PositionalEmbedding(output_dim=d_model, clamp_len=clamp_len,
                                            directional=directional)
    expected = layer([tf.zeros((bsz, qlen, d_model)), tf.zeros((bsz, mlen, d_model))]).numpy()
    for dtype in (np.float64, np.float32):
        actual = xlnet.relative_positional_encoding(
            qlen, mlen + qlen, d_model, clamp_len, "uni" if directional else "bi", False, bsz,
            KERAS.clamp, dtype)
        assert actual.dtype == dtype
        assert_close(actual, expected, "keras-op", f"Embed-Pos {dtype.__name__}")


@KERAS_EXAMPLES
@given(bsz=st.integers(1, 3), qlen=st.integers(1, 6), mlen=st.integers(0, 5),
       directional=st.booleans(), enabled=st.booleans())
def test_permutation_mask_at_inference(bsz, qlen, mlen, directional, enabled):
    """keras-xlnet's PermutationMask outside training: content may attend (1) memory and keys
    up to itself ("uni") or everything ("bi"); query the same without its own position."""
    layer = keras_xlnet.PermutationMask(enabled=enabled, directional=directional)
    content, query = layer([tf.zeros((bsz, qlen, 2)), tf.zeros((bsz, mlen, 2))], training=False)
    mask_h, mask_g = xlnet.attention_masks(bsz, qlen, mlen, None, None,
                                           "uni" if directional else "bi",
                                           KERAS.xlnet_padded_self_visible, KERAS.query_excludes_self)
    np.testing.assert_array_equal((~mask_h).astype(np.float32), content.numpy())
    np.testing.assert_array_equal((~mask_g).astype(np.float32), query.numpy())


@KERAS_EXAMPLES
@given(bsz=st.integers(1, 3), qlen=st.integers(1, 6), mlen=st.integers(0, 5),
       n_segments=st.integers(1, 4), seed=seeds)
def test_relative_segment_embedding(bsz, qlen, mlen, n_segments, seed):
    seg = _rng(seed).integers(0, n_segments, (bsz, qlen))
    layer = keras_xlnet.RelativeSegmentEmbedding(units=4)
    one_hot, _ = layer([tf.constant(seg, tf.float32), tf.zeros((bsz, mlen, 4))])
    for dtype in (np.float64, np.float32):
        actual = xlnet.segment_matrix(seg, mlen, dtype)
        assert actual.dtype == dtype
        np.testing.assert_array_equal(actual, one_hot.numpy())


@KERAS_EXAMPLES
@given(bsz=st.integers(1, 3), qlen=st.integers(1, 6), d_model=st.integers(1, 8), seed=seeds)
def test_mask_embedding(bsz, qlen, d_model, seed):
    rng = _rng(seed)
    word, mask_emb = _normal(rng, (bsz, qlen, d_model)), _normal(rng, (1, 1, d_model))
    inp_q = rng.integers(0, 2, (bsz, qlen))
    layer = keras_xlnet.MaskEmbedding(units=d_model)
    layer.build([(None, qlen, d_model), (None, qlen)])
    layer.set_weights([mask_emb])
    expected = layer([tf.constant(word), tf.constant(inp_q, tf.float32)]).numpy()
    actual = xlnet.mask_embedding(word.astype(np.float64), mask_emb.astype(np.float64),
                                  inp_q.astype(np.float64))
    assert_close(actual, expected, "keras-op", "Embed-Mask")


# --- attention -----------------------------------------------------------------------------
@settings(max_examples=25)
@given(bsz=st.integers(1, 2), qlen=st.integers(1, 5), mlen=st.integers(0, 4),
       n_head=st.integers(1, 3), d_head=st.integers(1, 4), uni_rows=st.booleans(),
       p_blocked=st.sampled_from([0.0, 0.3, 0.7]), seed=seeds)
def test_rel_partial_multihead_attention(bsz, qlen, mlen, n_head, d_head, uni_rows, p_blocked, seed):
    """keras_xlnet's RelativePartialMultiHeadSelfAttention vs refimpl's two_stream_rel_attn under
    the keras dialect: memory, random segments, a random permutation mask and padding.
    The content stream (query input = content) and the query stream (a separate query input)
    are both compared with the layer output (the output projection, before the residual)."""
    rng = _rng(seed)
    units, klen = n_head * d_head, mlen + qlen
    rlen = klen + 1 if uni_rows else klen + qlen  # both r lengths the model uses ("uni", "bi")
    kernel = _normal(rng, (units, 5 * units))
    biases = [_normal(rng, (units,)) for _ in range(3)]
    seg_embed = _normal(rng, (2, units))
    content, query = _normal(rng, (bsz, qlen, units), 1.0), _normal(rng, (bsz, qlen, units), 1.0)
    mems, rel = _normal(rng, (bsz, mlen, units), 1.0), _normal(rng, (bsz, rlen, units), 1.0)
    seg = rng.integers(0, 2, (bsz, qlen))
    allowed = (rng.random((bsz, qlen, klen)) >= p_blocked).astype(np.float32)
    real = rng.random((bsz, qlen)) >= p_blocked / 2  # keys of the segment: False = padding

    seg_one_hot = np.zeros((bsz, qlen, klen, 2), np.float32)  # test-side: [same, different]
    cat = np.concatenate([np.zeros((bsz, mlen), int), seg], axis=1)
    for b in range(bsz):
        for i in range(qlen):
            for j in range(klen):
                seg_one_hot[b, i, j, int(seg[b, i] != cat[b, j])] = 1
    layer = keras_xlnet.RelativePartialMultiHeadSelfAttention(units=units, num_head=n_head)
    layer.build([(None, qlen, units)] * 10)
    layer.set_weights([kernel])
    keras_out = {}
    for stream, first in (("content", content), ("query", query)):
        inputs = [first, content, mems, seg_one_hot, seg_embed, rel, *biases, allowed]
        keras_out[stream] = layer([tf.constant(x) for x in inputs],
                                  mask=[tf.constant(real)] + [None] * 9).numpy()

    f64 = lambda x: x.astype(np.float64)  # noqa: E731
    to_heads = lambda k: f64(k).reshape(units, n_head, d_head)  # noqa: E731
    w = {"rel_attn/q/kernel": to_heads(kernel[:, :units]),
         "rel_attn/k/kernel": to_heads(kernel[:, units:2 * units]),
         "rel_attn/v/kernel": to_heads(kernel[:, 2 * units:3 * units]),
         "rel_attn/r/kernel": to_heads(kernel[:, 3 * units:4 * units]),
         "rel_attn/o/kernel": f64(kernel[:, 4 * units:]).T.reshape(units, n_head, d_head),
         "rel_attn/LayerNorm/gamma": np.ones(units), "rel_attn/LayerNorm/beta": np.zeros(units)}
    blocked = ~(allowed.astype(bool) & np.concatenate([np.ones((bsz, mlen), bool), real], 1)[:, None])
    trace = {}
    xlnet.two_stream_rel_attn(
        f64(content), f64(query), f64(rel), f64(mems), w, *(f64(b).reshape(n_head, d_head) for b in biases[:2]),
        seg_mat=xlnet.segment_matrix(seg, mlen, np.float64), r_s_bias=f64(biases[2]).reshape(n_head, d_head),
        seg_embed=f64(seg_embed).reshape(2, n_head, d_head), attn_mask_h=blocked, attn_mask_g=blocked,
        target_mapping=None, xlnet_mask="keras", eps=KERAS.layer_norm_eps, trace=trace, layer=1)
    assert_close(trace["Attention-1"], keras_out["content"], "keras-op", "content stream")
    assert_close(trace["Attention-1/query"], keras_out["query"], "keras-op", "query stream")


# --- memory --------------------------------------------------------------------------------
calls = st.lists(st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(0, 9), seeds),
                 min_size=1, max_size=4)


@KERAS_EXAMPLES
@given(batch_size=st.integers(1, 3), memory_len=st.integers(0, 5), target_len=st.integers(1, 4),
       d_model=st.integers(1, 3), calls=calls)
def test_keras_memory(batch_size, memory_len, target_len, d_model, calls):
    """keras-transformer-xl's stateful Memory over consecutive calls (batch <= batch_size,
    length <= target_len, any Input-Memory-Length) vs refimpl's KerasMemory: rows exactly."""
    layer = Memory(batch_size=batch_size, memory_len=memory_len, target_len=target_len,
                   output_dim=d_model)
    ours = xlnet.KerasMemory(1, d_model, batch_size, memory_len, target_len, np.float32)
    for batch, length, memory_length, seed in calls:
        batch, length = min(batch, batch_size), min(length, target_len)
        x = _normal(_rng(seed), (batch, length, d_model), 1.0)
        expected = layer([tf.constant(x), tf.fill((batch, 1), float(memory_length))]).numpy()
        [actual] = ours.read(batch, length, memory_length)
        ours.update([x])
        np.testing.assert_array_equal(actual, expected)
        np.testing.assert_array_equal(ours.buffers[0], layer.memory.numpy())


# --- LayerNorm, feed-forward, LM head ------------------------------------------------------
@KERAS_EXAMPLES
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 16)), seed=seeds,
       scale=st.sampled_from([1e-3, 1.0, 30.0]))
def test_layer_normalization(shape, seed, scale):
    rng = _rng(seed)
    x, gamma, beta = _normal(rng, shape, scale), _normal(rng, shape[-1:], 1.0), _normal(rng, shape[-1:])
    layer = LayerNormalization()
    layer.build(shape)
    layer.set_weights([gamma, beta])
    assert np.isclose(KERAS.layer_norm_eps, layer.epsilon, rtol=1e-12, atol=0)  # K.epsilon() ** 2
    actual = ops.layer_norm(x.astype(np.float64), gamma.astype(np.float64), beta.astype(np.float64),
                            KERAS.layer_norm_eps)
    assert_close(actual, layer(tf.constant(x)).numpy(), "keras-op", "LayerNormalization")


@KERAS_EXAMPLES
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 12)),
       d_inner=st.integers(1, 16), act=st.sampled_from(["gelu", "relu"]), seed=seeds)
def test_feed_forward(shape, d_inner, act, seed):
    rng = _rng(seed)
    d_model = shape[-1]
    x = _normal(rng, shape, 1.0)
    weights = [_normal(rng, (d_model, d_inner)), _normal(rng, (d_inner,)),
               _normal(rng, (d_inner, d_model)), _normal(rng, (d_model,))]
    layer = FeedForward(units=d_inner, activation=keras_gelu if act == "gelu" else "relu")
    layer.build(shape)
    layer.set_weights(weights)
    w = dict(zip(["ff/layer_1/kernel", "ff/layer_1/bias", "ff/layer_2/kernel", "ff/layer_2/bias"],
                 (v.astype(np.float64) for v in weights)))
    w.update({"ff/LayerNorm/gamma": np.ones(d_model), "ff/LayerNorm/beta": np.zeros(d_model)})
    trace = {}
    xlnet.positionwise_ffn(x.astype(np.float64), w, ops.activation(act, KERAS.gelu),
                           KERAS.layer_norm_eps, trace, layer=1)
    assert_close(trace["FeedForward-1"], layer(tf.constant(x)).numpy(), "keras-op", "FeedForward")


@KERAS_EXAMPLES
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4)), seed=seeds)
def test_embedding_sim_is_lm_probs(shape, seed):
    """keras-xlnet's Softmax (EmbeddingSim on the tied embedding) = refimpl lm_probs."""
    m = _model()
    hidden = _normal(_rng(seed), shape + (m.config.d_model,), 1.0)
    layer = EmbeddingSim()
    table = m.transformer["word_embedding/lookup_table"]
    layer.build([hidden.shape, table.shape])
    layer.set_weights([m.lm_loss["bias"]])
    expected = layer([tf.constant(hidden), tf.constant(table)]).numpy()
    assert_close(xlnet.lm_probs(m, hidden.astype(np.float64)), expected, "keras-op", "Softmax")
    assert_close(xlnet.lm_head(m, hidden.astype(np.float64), "keras"), expected, "keras-op", "lm_head")
    # the logits (TF, transformers) are the probabilities' logarithm up to a per-row constant
    logits = xlnet.lm_head(m, hidden.astype(np.float64), "tf")
    np.testing.assert_array_equal(logits, xlnet.lm_logits(m, hidden.astype(np.float64)))
    assert_close(logits - logits.max(-1, keepdims=True), np.log(expected / expected.max(-1, keepdims=True)),
                 "keras-op", "log-probabilities")
