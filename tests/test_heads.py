"""The fine-tuning heads (refimpl.xlnet.heads, bert.classifier_logits / squad_logits) against
their anchors, on the fine-tuned tiny checkpoints of golden/checkpoints/ (tools/make_checkpoints.py).

* transformers (PyTorch, float32): BertForSequenceClassification, BertForQuestionAnswering,
  XLNetForSequenceClassification (summary "last", "first", "mean"; it has no "attn"),
  XLNetForQuestionAnswering (the beam over start and end), XLNetForMultipleChoice; refimpl runs
  the whole model in dialect "hf" (float64). By design transformers differs from the original
  in (a) the SQuAD beam: it returns softmax probabilities under the names *_top_log_probs and
  flattens the end beam end-major (dialect fields squad_top_probs / squad_end_top_order), and
  (b) its summary applies summary_activation even without the projection (the original's tanh
  belongs to the projection): the regression anchor is built with summary_activation="linear".
* The original TF code: the head functions of zihangdai/xlnet modeling.py and
  function_builder.py transcribed below in tf.compat.v1 graph mode (float64), each variable
  read by its name from the checkpoint with TensorFlow's own reader. They take the same content
  stream as refimpl's heads, so only the head math is compared (the encoder is anchored in
  test_transformers_anchor.py and test_xlnet_model.py). Used for what transformers lacks: the
  "attn" summary, use_summ_proj=False, the log-probabilities and start-major order of the SQuAD
  beam, the training-time end logits and the regression / RACE heads in dialect "tf".
"""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from refimpl import bert, checkpoint, xlnet
from refimpl.xlnet import weights as xlnet_weights
from hf_state import bert_state, xlnet_state
from tolerances import assert_close, max_abs_error

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden", "checkpoints")
MEASURED: dict = {}  # (head, dialect, anchor) -> max abs error, printed by test_zz_report


def path(name: str) -> str:
    return os.path.join(GOLDEN, name)


@functools.cache
def xlnet_model(name: str) -> xlnet.XLNet:
    return xlnet.load(path(name))


@functools.cache
def bert_model(name: str) -> bert.Bert:
    return bert.load(path(name))


def xlnet_inputs(seed: int, bsz: int = 3, seq_len: int = 8):
    """ids, XLNet segment ids (A 0, B 1, <cls> 2) and a left-padded attention_mask (1 = real),
    as classifier_utils.py lays them out; at least 5 real tokens per row."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 100, (bsz, seq_len))
    segments = np.zeros((bsz, seq_len), np.int64)
    mask = np.ones((bsz, seq_len), np.int64)
    for b in range(bsz):
        pad = rng.integers(0, seq_len - 4)
        mask[b, :pad] = 0
        segments[b, pad + rng.integers(1, seq_len - pad - 1):] = 1
        segments[b, -1] = 2
    return ids, segments, mask


def note(key, actual, expected):
    MEASURED[key] = max(MEASURED.get(key, 0.0), max_abs_error(actual, expected))


# --- loading ----------------------------------------------------------------------------------
def test_fine_tuned_checkpoints_list_heads_and_skip_optimizer_state():
    expected = {"xlnet-tiny-classifier": ("summary", "summary_attn", "classification_yelp5"),
                "xlnet-tiny-regression": ("regression_sts-b",),
                "xlnet-tiny-squad": ("squad",), "xlnet-tiny-race": ("summary", "race")}
    for name, heads in expected.items():
        m = xlnet_model(name)
        assert m.heads == heads, name
        assert m.lm_loss is None and "mask_emb/mask_emb" not in m.transformer
        assert all(n in ("global_step", "beta1_power", "beta2_power")
                   or n.endswith(("/Adam", "/Adam_1", "/adam_m", "/adam_v")) for n in m.skipped)
        assert not any(n.startswith(("model/classification_", "model/regression_", "start_logits",
                                     "model/sequnece_summary/summary/")) and
                       not n.endswith(("Adam", "Adam_1", "adam_m", "adam_v")) for n in m.skipped)
    assert "beta1_power" in xlnet_model("xlnet-tiny-classifier").skipped  # tf.train.AdamOptimizer
    assert "start_logits/dense/kernel/adam_m" in xlnet_model("xlnet-tiny-squad").skipped
    assert xlnet_model("xlnet-tiny").heads == ("lm_loss",)
    for name, heads in (("bert-tiny-classifier", ("classifier",)), ("bert-tiny-squad", ("squad",)),
                        ("bert-tiny", ("mlm", "nsp"))):
        b = bert_model(name)
        assert b.heads == heads
        assert all(n == "global_step" or n.endswith(("/adam_m", "/adam_v")) for n in b.skipped)
    assert bert_model("bert-tiny-classifier").head_weights["output_weights"].shape == (3, 32)


def test_head_names_find_tasks_and_partial_heads_fail(monkeypatch):
    c = xlnet_model("xlnet-tiny").config
    parts = xlnet_weights.head_names(c, {"model/classification_mnli_matched/logit/kernel": (32, 3),
                                         "model/regression_sts-b/logit/bias": (1,)})
    assert parts["classification_mnli_matched"] == {
        "model/classification_mnli_matched/logit/kernel": (32, 3),
        "model/classification_mnli_matched/logit/bias": (3,)}
    assert parts["regression_sts-b"]["model/regression_sts-b/logit/kernel"] == (32, 1)
    real = checkpoint.load_checkpoint

    def without(name):
        def patched(p, verify=True, **options):
            values = dict(real(p, verify, **options))
            del values[name]
            return values
        return patched
    for name, missing in (("end_logits/LayerNorm/beta", "missing squad variables: end_logits/LayerNorm/beta"),
                          ("model/sequnece_summary/abs_attn/q/kernel", "missing summary_attn variables")):
        monkeypatch.setattr(checkpoint, "load_checkpoint", without(name))
        source = "xlnet-tiny-squad" if name.startswith("end") else "xlnet-tiny-classifier"
        with pytest.raises(ValueError, match=missing):
            xlnet.load(path(source))


# --- input errors -----------------------------------------------------------------------------
def test_errors_name_the_bad_value():
    cls_m, squad_m, race_m = (xlnet_model(n) for n in ("xlnet-tiny-classifier", "xlnet-tiny-squad",
                                                       "xlnet-tiny-race"))
    content = np.zeros((2, 6, 32))
    with pytest.raises(ValueError, match=r"unknown classification task 'imdb'.*tasks: yelp5"):
        xlnet.classification_logits(cls_m, content, "imdb")
    with pytest.raises(ValueError, match=r"has no squad head weights; it holds: summary, summary_attn"):
        xlnet.squad_outputs(cls_m, content, np.zeros((2, 6)))
    with pytest.raises(ValueError, match=r"content has shape \(2, 6, 31\).*d_model = 32"):
        xlnet.classification_logits(cls_m, np.zeros((2, 6, 31)))
    with pytest.raises(ValueError, match=r"p_mask has shape \(2, 5\), expected \(batch, length\) = \(2, 6\)"):
        xlnet.squad_outputs(squad_m, content, np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"start_n_top 7: expected an integer with 1 <= start_n_top <= length 6"):
        xlnet.squad_outputs(squad_m, content, np.zeros((2, 6)), start_n_top=7)
    with pytest.raises(ValueError, match=r"cls_index \[0, 6\] out of range"):
        xlnet.squad_outputs(squad_m, content, np.zeros((2, 6)), cls_index=np.array([0, 6]))
    with pytest.raises(ValueError, match=r"summary_type 'max': expected one of last, first, mean, attn"):
        xlnet.sequence_summary(cls_m, content, "max")
    with pytest.raises(ValueError, match=r"use_summ_proj=True, but .* has no model/sequnece_summary/summary"):
        xlnet.regression(xlnet_model("xlnet-tiny-regression"), content, use_summ_proj=True)
    with pytest.raises(ValueError, match=r"n_choice 4: expected a positive integer dividing the 2 sequences"):
        xlnet.race_logits(race_m, content)
    with pytest.raises(ValueError, match=r"unknown head 'ner'"):
        xlnet.run_head(cls_m, content, "ner")
    with pytest.raises(ValueError, match=r"has no classifier head \(output_weights, output_bias\); it holds: squad"):
        bert.classifier_logits(bert_model("bert-tiny-squad"), np.zeros((2, 32)))
    with pytest.raises(ValueError, match=r"hidden_size 32, got shape \(2, 6, 30\)"):
        bert.squad_logits(bert_model("bert-tiny-squad"), np.zeros((2, 6, 30)))


# --- clamp_len = -1 ---------------------------------------------------------------------------
def test_clamp_len_minus_one_is_no_clamping():
    m = xlnet_model("xlnet-tiny")
    ids = np.random.default_rng(0).integers(0, 100, (2, 6))
    none = xlnet.forward(m, ids, clamp_len=None).content
    np.testing.assert_array_equal(xlnet.forward(m, ids, clamp_len=-1).content, none)
    assert np.abs(xlnet.forward(m, ids, clamp_len=2).content - none).max() > 1e-6
    with pytest.raises(ValueError, match=r"clamp_len -2: expected None or an integer >= 0"):
        xlnet.forward(m, ids, clamp_len=-2)


# --- the original TF code, transcribed ---------------------------------------------------------
tf = pytest.importorskip("tensorflow", reason="the original TF code runs on TensorFlow (the [test] extra)")
tf1 = tf.compat.v1


class Original:
    """The head functions of zihangdai/xlnet, transcribed from
    https://github.com/zihangdai/xlnet/blob/master/modeling.py (summarize_sequence,
    multihead_attn, abs_attn_core, post_attention, head_projection, classification_loss,
    regression_loss) and
    https://github.com/zihangdai/xlnet/blob/master/function_builder.py (get_qa_outputs,
    get_race_loss), time-major as there. Adaptations, each marked "# adapted": the graph runs in
    float64 (the one-hot and mask dtypes follow); tf.layers.dense and tf.contrib.layers.layer_norm
    (gone from TF 2) are written out with the same variable names (dense: <name>/kernel,
    <name>/bias, tensordot over the last axis; layer_norm: LayerNorm/{gamma,beta}, moments over
    the last axis, epsilon 1e-12); every variable is read from the checkpoint by its full name
    with TensorFlow's reader (so the names refimpl maps are checked too); dropout is omitted
    (inference); FLAGS become arguments; the loss parts are left out."""

    def __init__(self, ckpt: str):
        self.reader = tf.train.load_checkpoint(ckpt)
        self.used: list[str] = []

    def get_variable(self, name, shape):  # adapted: the value comes from the checkpoint
        scope = tf1.get_variable_scope().name
        full = f"{scope}/{name}" if scope else name
        value = self.reader.get_tensor(full).astype(np.float64)
        assert list(value.shape) == [int(s) for s in shape], (full, value.shape, shape)
        self.used.append(full)
        return tf1.get_variable(name, initializer=tf.constant(value))

    def dense(self, x, units, name, activation=None, use_bias=True):  # adapted: tf.layers.dense
        with tf1.variable_scope(name):
            kernel = self.get_variable("kernel", [x.shape[-1], units])
            y = tf.tensordot(x, kernel, [[x.shape.ndims - 1], [0]])
            if use_bias:
                y = y + self.get_variable("bias", [units])
        return activation(y) if activation is not None else y

    def layer_norm(self, x, scope="LayerNorm"):  # adapted: tf.contrib.layers.layer_norm
        with tf1.variable_scope(scope):
            beta = self.get_variable("beta", [x.shape[-1]])
            gamma = self.get_variable("gamma", [x.shape[-1]])
            mean, variance = tf.nn.moments(x, [x.shape.ndims - 1], keepdims=True)
            return tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-12)

    # --- modeling.py ---
    def head_projection(self, h, d_model, n_head, d_head, name):
        proj_weight = self.get_variable('{}/kernel'.format(name), [d_model, n_head, d_head])
        head = tf.einsum('ibh,hnd->ibnd', h, proj_weight)
        return head

    def post_attention(self, h, attn_vec, d_model, n_head, d_head, residual=True):
        proj_o = self.get_variable('o/kernel', [d_model, n_head, d_head])
        attn_out = tf.einsum('ibnd,hnd->ibh', attn_vec, proj_o)
        if residual:
            output = self.layer_norm(attn_out + h, scope='LayerNorm')
        else:
            output = self.layer_norm(attn_out, scope='LayerNorm')
        return output

    @staticmethod
    def abs_attn_core(q_head, k_head, v_head, attn_mask, scale):
        attn_score = tf.einsum('ibnd,jbnd->ijbn', q_head, k_head)
        attn_score *= scale
        if attn_mask is not None:
            attn_score = attn_score - 1e30 * attn_mask
        attn_prob = tf.nn.softmax(attn_score, 1)
        attn_vec = tf.einsum('ijbn,jbnd->ibnd', attn_prob, v_head)
        return attn_vec

    def multihead_attn(self, q, k, v, attn_mask, d_model, n_head, d_head, residual=True,
                       scope='abs_attn'):
        scale = 1 / (d_head ** 0.5)
        with tf1.variable_scope(scope):
            q_head = self.head_projection(q, d_model, n_head, d_head, 'q')
            k_head = self.head_projection(k, d_model, n_head, d_head, 'k')
            v_head = self.head_projection(v, d_model, n_head, d_head, 'v')
            attn_vec = self.abs_attn_core(q_head, k_head, v_head, attn_mask, scale)
            output = self.post_attention(v, attn_vec, d_model, n_head, d_head, residual)
        return output

    def summarize_sequence(self, summary_type, hidden, d_model, n_head, d_head, input_mask,
                           scope=None, use_proj=True):
        with tf1.variable_scope(scope, 'sequnece_summary'):
            if summary_type == 'last':
                summary = hidden[-1]
            elif summary_type == 'first':
                summary = hidden[0]
            elif summary_type == 'mean':
                summary = tf.reduce_mean(hidden, axis=0)
            elif summary_type == 'attn':
                bsz = tf.shape(hidden)[1]
                summary_bias = self.get_variable('summary_bias', [d_model])
                summary_bias = tf.tile(summary_bias[None, None], [1, bsz, 1])
                if input_mask is not None:
                    input_mask = input_mask[None, :, :, None]
                summary = self.multihead_attn(summary_bias, hidden, hidden, input_mask,
                                              d_model, n_head, d_head, residual=False)
                summary = summary[0]
            else:
                raise ValueError('Unsupported summary type {}'.format(summary_type))
            if use_proj:
                summary = self.dense(summary, d_model, activation=tf.tanh, name='summary')
        return summary

    def classification_logits(self, hidden, n_class, scope):
        with tf1.variable_scope(scope):
            return self.dense(hidden, n_class, name='logit')

    def regression_logits(self, hidden, scope):
        with tf1.variable_scope(scope):
            logits = self.dense(hidden, 1, name='logit')
            return tf.squeeze(logits, axis=-1)

    # --- xlnet.py XLNetModel.get_pooled_out + function_builder.py ---
    def get_pooled_out(self, output, config, input_mask, summary_type, use_summ_proj=True):
        with tf1.variable_scope("model", reuse=tf1.AUTO_REUSE):
            return self.summarize_sequence(summary_type, output, config.d_model, config.n_head,
                                           config.d_head, input_mask, use_proj=use_summ_proj)

    def get_race_logits(self, summary, bsz_per_core, n_choice):
        with tf1.variable_scope("logits"):
            logits = self.dense(summary, 1, name="dense")  # tf.layers.dense's default name
            logits = tf.reshape(logits, [bsz_per_core, n_choice])  # adapted: 4 in run_race.py
        return logits

    def get_qa_outputs(self, output, config, p_mask, cls_index, start_n_top, end_n_top,
                       is_training, start_positions=None):
        seq_len = tf.shape(output)[0]
        return_dict = {}
        with tf1.variable_scope("start_logits"):
            start_logits = self.dense(output, 1, name="dense")
            start_logits = tf.transpose(tf.squeeze(start_logits, -1), [1, 0])
            start_logits_masked = start_logits * (1 - p_mask) - 1e30 * p_mask
            start_log_probs = tf.nn.log_softmax(start_logits_masked, -1)
        with tf1.variable_scope("end_logits"):
            if is_training:
                start_index = tf.one_hot(start_positions, depth=seq_len, axis=-1,
                                         dtype=tf.float64)  # adapted: float64
                start_features = tf.einsum("lbh,bl->bh", output, start_index)
                start_features = tf.tile(start_features[None], [seq_len, 1, 1])
                end_logits = self.dense(tf.concat([output, start_features], axis=-1),
                                        config.d_model, activation=tf.tanh, name="dense_0")
                end_logits = self.layer_norm(end_logits)
                end_logits = self.dense(end_logits, 1, name="dense_1")
                end_logits = tf.transpose(tf.squeeze(end_logits, -1), [1, 0])
                end_logits_masked = end_logits * (1 - p_mask) - 1e30 * p_mask
                end_log_probs = tf.nn.log_softmax(end_logits_masked, -1)
            else:
                start_top_log_probs, start_top_index = tf.nn.top_k(start_log_probs, k=start_n_top)
                start_index = tf.one_hot(start_top_index, depth=seq_len, axis=-1,
                                         dtype=tf.float64)  # adapted: float64
                start_features = tf.einsum("lbh,bkl->bkh", output, start_index)
                end_input = tf.tile(output[:, :, None], [1, 1, start_n_top, 1])
                start_features = tf.tile(start_features[None], [seq_len, 1, 1, 1])
                end_input = tf.concat([end_input, start_features], axis=-1)
                end_logits = self.dense(end_input, config.d_model, activation=tf.tanh,
                                        name="dense_0")
                end_logits = self.layer_norm(end_logits)
                end_logits = self.dense(end_logits, 1, name="dense_1")
                end_logits = tf.reshape(end_logits, [seq_len, -1, start_n_top])
                end_logits = tf.transpose(end_logits, [1, 2, 0])
                end_logits_masked = end_logits * (1 - p_mask[:, None]) - 1e30 * p_mask[:, None]
                end_log_probs = tf.nn.log_softmax(end_logits_masked, -1)
                end_top_log_probs, end_top_index = tf.nn.top_k(end_log_probs, k=end_n_top)
                end_top_log_probs = tf.reshape(end_top_log_probs, [-1, start_n_top * end_n_top])
                end_top_index = tf.reshape(end_top_index, [-1, start_n_top * end_n_top])
        if is_training:
            return_dict["start_log_probs"] = start_log_probs
            return_dict["end_log_probs"] = end_log_probs
        else:
            return_dict["start_top_log_probs"] = start_top_log_probs
            return_dict["start_top_index"] = start_top_index
            return_dict["end_top_log_probs"] = end_top_log_probs
            return_dict["end_top_index"] = end_top_index
        with tf1.variable_scope("answer_class"):
            cls_index = tf.one_hot(cls_index, seq_len, axis=-1, dtype=tf.float64)  # adapted
            cls_feature = tf.einsum("lbh,bl->bh", output, cls_index)
            start_p = tf.nn.softmax(start_logits_masked, axis=-1, name="softmax_start")
            start_feature = tf.einsum("lbh,bl->bh", output, start_p)
            ans_feature = tf.concat([start_feature, cls_feature], -1)
            ans_feature = self.dense(ans_feature, config.d_model, activation=tf.tanh,
                                     name="dense_0")
            cls_logits = self.dense(ans_feature, 1, name="dense_1", use_bias=False)
            cls_logits = tf.squeeze(cls_logits, -1)
            return_dict["cls_logits"] = cls_logits
        return return_dict


def run_original(name: str, build):
    """Build `build(original)` in a fresh graph for checkpoint `name`; its values and the
    variable names it read."""
    graph = tf.Graph()
    with graph.as_default():
        original = Original(os.path.join(path(name), "xlnet_model.ckpt"))
        tensors = build(original)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            return sess.run(tensors), original.used


def time_major(x):
    return tf.constant(np.ascontiguousarray(np.swapaxes(x, 0, 1)))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("summary_type", ["attn", "last", "first", "mean"])
def test_classification_matches_original(seed, summary_type):
    m = xlnet_model("xlnet-tiny-classifier")
    ids, segments, mask = xlnet_inputs(seed)
    content = xlnet.forward(m, ids, segments, mask).content
    input_mask = (1 - mask).astype(np.float64)  # the original's input_mask: 1 = padding

    def build(o):
        summary = o.get_pooled_out(time_major(content), m.config, tf.constant(input_mask.T),
                                   summary_type)
        with tf1.variable_scope("model", reuse=tf1.AUTO_REUSE):
            return o.classification_logits(summary, 5, "classification_yelp5")
    expected, used = run_original("xlnet-tiny-classifier", build)
    # "mean": the original averages every position, padding included: refimpl without the mask
    ours = xlnet.classification_logits(m, content, "yelp5", summary_type,
                                       attention_mask=None if summary_type == "mean" else mask)
    assert_close(ours, expected, "float64-identity", f"classification {summary_type}")
    note(("classification " + summary_type, "tf", "original TF"), ours, expected)
    assert set(used) <= set(m.head_weights)
    if summary_type == "attn":  # the padding mask acts: without it the logits change
        unmasked = xlnet.classification_logits(m, content, "yelp5", "attn")
        assert np.abs(unmasked - expected).max() > 1e-6


def test_mean_with_attention_mask_averages_real_tokens():
    m = xlnet_model("xlnet-tiny-classifier")
    ids, segments, mask = xlnet_inputs(3)
    content = xlnet.forward(m, ids, segments, mask).content
    ours = xlnet.sequence_summary(m, content, "mean", use_summ_proj=False, attention_mask=mask)
    for b in range(len(ids)):
        np.testing.assert_allclose(ours[b], content[b, mask[b] == 1].mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_and_race_match_original(seed):
    m = xlnet_model("xlnet-tiny-regression")
    ids, segments, mask = xlnet_inputs(seed)
    content = xlnet.forward(m, ids, segments, mask).content

    def build(o):
        summary = o.get_pooled_out(time_major(content), m.config, None, "last", use_summ_proj=False)
        with tf1.variable_scope("model", reuse=tf1.AUTO_REUSE):
            return o.regression_logits(summary, "regression_sts-b")
    expected, _ = run_original("xlnet-tiny-regression", build)
    ours = xlnet.regression(m, content, "sts-b")
    assert_close(ours, expected, "float64-identity", "regression")
    note(("regression", "tf", "original TF"), ours, expected)

    race = xlnet_model("xlnet-tiny-race")
    ids, segments, mask = xlnet_inputs(seed, bsz=6)  # 2 examples x 3 choices
    content = xlnet.forward(race, ids, segments, mask).content

    def build_race(o):
        summary = o.get_pooled_out(time_major(content), race.config, None, "last")
        return o.get_race_logits(summary, 2, 3)
    expected, used = run_original("xlnet-tiny-race", build_race)
    ours = xlnet.race_logits(race, content, n_choice=3)
    assert_close(ours, expected, "float64-identity", "race")
    np.testing.assert_array_equal(xlnet.race_logits(race, content.reshape(2, 3, 8, 32)), ours)
    note(("race", "tf", "original TF"), ours, expected)
    assert set(used) == set(race.head_weights)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_squad_matches_original(seed):
    m = xlnet_model("xlnet-tiny-squad")
    ids, segments, mask = xlnet_inputs(seed)
    content = xlnet.forward(m, ids, segments, mask).content
    rng = np.random.default_rng(seed + 100)
    p_mask = 1 - mask
    p_mask[:, -1] = 1  # <cls>
    cls_index = np.full(len(ids), ids.shape[1] - 1)
    start_positions = rng.integers(4, 7, len(ids))
    for training in (False, True):
        def build(o):
            return o.get_qa_outputs(time_major(content), m.config, tf.constant(p_mask.astype(np.float64)),
                                    tf.constant(cls_index), 3, 2, training,
                                    tf.constant(start_positions))
        expected, used = run_original("xlnet-tiny-squad", build)
        ours = xlnet.squad_outputs(m, content, p_mask, None, start_n_top=3, end_n_top=2,
                                   start_positions=start_positions if training else None)
        assert list(ours) == list(expected)
        for key in expected:
            if key.endswith("index"):
                np.testing.assert_array_equal(ours[key], expected[key], err_msg=key)
            else:
                assert_close(ours[key], expected[key], "float64-identity", key)
                note((f"squad {key}", "tf", "original TF"), ours[key], expected[key])
        assert set(used) == set(m.head_weights)


# --- same_length -------------------------------------------------------------------------------
def original_masks(qlen, mlen, input_mask, perm_mask, same_length):
    """The mask part of transformer_xl (attn_type "uni") and _create_mask, transcribed from
    https://github.com/zihangdai/xlnet/blob/master/modeling.py, time-major, float32; adapted:
    tf.matrix_band_part is tf.linalg.band_part in TF 2."""
    graph = tf.Graph()
    with graph.as_default():
        tf_float = tf.float32

        def _create_mask(qlen, mlen, dtype=tf.float32, same_length=False):
            attn_mask = tf.ones([qlen, qlen], dtype=dtype)
            mask_u = tf.linalg.band_part(attn_mask, 0, -1)
            mask_dia = tf.linalg.band_part(attn_mask, 0, 0)
            attn_mask_pad = tf.zeros([qlen, mlen], dtype=dtype)
            ret = tf.concat([attn_mask_pad, mask_u - mask_dia], 1)
            if same_length:
                mask_l = tf.linalg.band_part(attn_mask, -1, 0)
                ret = tf.concat([ret[:, :qlen] + mask_l - mask_dia, ret[:, qlen:]], 1)
            return ret

        bsz = input_mask.shape[1]
        attn_mask = _create_mask(qlen, mlen, tf_float, same_length)
        attn_mask = attn_mask[:, :, None, None]
        data_mask = tf.constant(input_mask, tf_float)[None] + tf.constant(perm_mask, tf_float)
        mems_mask = tf.zeros([tf.shape(data_mask)[0], mlen, bsz], dtype=tf_float)
        data_mask = tf.concat([mems_mask, data_mask], 1)
        attn_mask += data_mask[:, :, :, None]
        attn_mask = tf.cast(attn_mask > 0, dtype=tf_float)
        non_tgt_mask = -tf.eye(qlen, dtype=tf_float)
        non_tgt_mask = tf.concat([tf.zeros([qlen, mlen], dtype=tf_float), non_tgt_mask], axis=-1)
        non_tgt_mask = tf.cast((attn_mask + non_tgt_mask[:, :, None, None]) > 0, dtype=tf_float)
        with tf1.Session(graph=graph) as sess:
            return sess.run([non_tgt_mask, attn_mask])


@pytest.mark.parametrize("qlen, mlen", [(5, 0), (5, 3), (3, 6), (4, 4)])
def test_same_length_masks_match_original(qlen, mlen):
    rng = np.random.default_rng(qlen * 10 + mlen)
    bsz = 2
    input_mask = (rng.random((qlen, bsz)) < 0.2).astype(np.float32)  # time-major, 1 = padding
    perm_mask = (rng.random((qlen, qlen, bsz)) < 0.2).astype(np.float32)
    for same_length in (False, True):
        content, query = original_masks(qlen, mlen, input_mask, perm_mask, same_length)
        ours_h, ours_g = xlnet.attention_masks(bsz, qlen, mlen, input_mask.T == 1,
                                               perm_mask.transpose(2, 0, 1) == 1, "uni", True, False,
                                               same_length=same_length)
        np.testing.assert_array_equal(ours_h, content[..., 0].transpose(2, 0, 1) == 1)
        np.testing.assert_array_equal(ours_g, query[..., 0].transpose(2, 0, 1) == 1)
    # without data masks every query sees mlen + 1 keys; "bi" ignores same_length (as the original)
    h, _ = xlnet.attention_masks(1, qlen, mlen, None, None, "uni", True, False, same_length=True)
    assert ((~h).sum(-1) == np.minimum(mlen + 1, mlen + np.arange(1, qlen + 1))).all()
    for flag in (False, True):
        h, g = xlnet.attention_masks(1, qlen, mlen, None, None, "bi", True, False, same_length=flag)
        assert not h.any() and not g.any()


# --- transformers ------------------------------------------------------------------------------
torch = pytest.importorskip("torch", reason="transformers needs PyTorch (the [test] extra)")
transformers = pytest.importorskip("transformers", reason="transformers (the [test] extra)")
torch.set_num_threads(1)


def _t(x):
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def hf_xlnet(cls, m: xlnet.XLNet, heads: dict, **config):
    c = m.config
    hf_config = transformers.XLNetConfig(
        vocab_size=c.n_token, d_model=c.d_model, n_layer=c.n_layer, n_head=c.n_head,
        d_inner=c.d_inner, ff_activation=c.ff_activation, untie_r=c.untie_r, dropout=0.0,
        layer_norm_eps=1e-12, **config)
    model = cls(hf_config).eval()
    missing, unexpected = model.load_state_dict(
        {k: _t(v) for k, v in {**xlnet_state(m), **heads}.items()}, strict=False)
    assert not unexpected and set(missing) <= {"transformer.mask_emb"}, (missing, unexpected)
    return model


def summary_state(m):
    w = m.head_weights
    return {"sequence_summary.summary.weight": w["model/sequnece_summary/summary/kernel"].T,
            "sequence_summary.summary.bias": w["model/sequnece_summary/summary/bias"]}


def hf_run(model, ids, segments, mask, **kwargs):
    with torch.no_grad():
        return model(torch.from_numpy(ids), token_type_ids=torch.from_numpy(segments),
                     attention_mask=torch.from_numpy(mask).float(), **kwargs)


@pytest.mark.parametrize("summary_type", ["last", "first", "mean"])
def test_classification_matches_transformers(summary_type):
    m = xlnet_model("xlnet-tiny-classifier")
    w = m.head_weights
    model = hf_xlnet(transformers.XLNetForSequenceClassification, m,
                     {**summary_state(m),
                      "logits_proj.weight": w["model/classification_yelp5/logit/kernel"].T,
                      "logits_proj.bias": w["model/classification_yelp5/logit/bias"]},
                     num_labels=5, summary_type=summary_type, summary_use_proj=True,
                     summary_activation="tanh")
    for seed in (0, 1):
        ids, segments, mask = xlnet_inputs(seed)
        content = xlnet.forward(m, ids, segments, mask, dialect="hf").content
        ours = xlnet.classification_logits(m, content, "yelp5", summary_type)
        theirs = hf_run(model, ids, segments, mask).logits.numpy()
        assert_close(ours, theirs, "hf-model", f"classification {summary_type}")
        note((f"classification {summary_type}", "hf", "transformers"), ours, theirs)


def test_regression_matches_transformers():
    m = xlnet_model("xlnet-tiny-regression")
    w = m.head_weights
    # summary_activation "linear": transformers would apply its tanh even without the projection
    model = hf_xlnet(transformers.XLNetForSequenceClassification, m,
                     {"logits_proj.weight": w["model/regression_sts-b/logit/kernel"].T,
                      "logits_proj.bias": w["model/regression_sts-b/logit/bias"]},
                     num_labels=1, summary_type="last", summary_use_proj=False,
                     summary_activation="linear")
    ids, segments, mask = xlnet_inputs(5)
    ours = xlnet.regression(m, xlnet.forward(m, ids, segments, mask, dialect="hf").content)
    theirs = hf_run(model, ids, segments, mask).logits.numpy()[:, 0]
    assert_close(ours, theirs, "hf-model", "regression")
    note(("regression", "hf", "transformers"), ours, theirs)


def test_race_matches_transformers_multiple_choice():
    m = xlnet_model("xlnet-tiny-race")
    w = m.head_weights
    model = hf_xlnet(transformers.XLNetForMultipleChoice, m,
                     {**summary_state(m), "logits_proj.weight": w["logits/dense/kernel"].T,
                      "logits_proj.bias": w["logits/dense/bias"]},
                     summary_type="last", summary_use_proj=True, summary_activation="tanh")
    ids, segments, mask = xlnet_inputs(7, bsz=8)  # 2 examples x 4 choices
    content = xlnet.forward(m, ids, segments, mask, dialect="hf").content
    ours = xlnet.race_logits(m, content.reshape(2, 4, 8, 32))
    theirs = hf_run(model, ids.reshape(2, 4, 8), segments.reshape(2, 4, 8), mask.reshape(2, 4, 8)).logits.numpy()
    assert_close(ours, theirs, "hf-model", "race")
    note(("race", "hf", "transformers"), ours, theirs)


def squad_state(m):
    w = m.head_weights
    state = {"start_logits.dense.weight": w["start_logits/dense/kernel"].T,
             "start_logits.dense.bias": w["start_logits/dense/bias"],
             "end_logits.LayerNorm.weight": w["end_logits/LayerNorm/gamma"],
             "end_logits.LayerNorm.bias": w["end_logits/LayerNorm/beta"],
             "answer_class.dense_1.weight": w["answer_class/dense_1/kernel"].T}
    for name in ("end_logits/dense_0", "end_logits/dense_1", "answer_class/dense_0"):
        state[name.replace("/", ".") + ".weight"] = w[name + "/kernel"].T
        state[name.replace("/", ".") + ".bias"] = w[name + "/bias"]
    return state


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_squad_matches_transformers(seed):
    m = xlnet_model("xlnet-tiny-squad")
    model = hf_xlnet(transformers.XLNetForQuestionAnswering, m, squad_state(m),
                     start_n_top=3, end_n_top=2)
    ids, segments, mask = xlnet_inputs(seed)
    p_mask = 1 - mask
    p_mask[:, -1] = 1
    cls_index = np.full(len(ids), ids.shape[1] - 1)
    content = xlnet.forward(m, ids, segments, mask, dialect="hf").content
    theirs = hf_run(model, ids, segments, mask, p_mask=torch.from_numpy(p_mask).float(),
                    cls_index=torch.from_numpy(cls_index))
    ours = xlnet.squad_outputs(m, content, p_mask, cls_index, start_n_top=3, end_n_top=2,
                               dialect="hf")
    for key in ours:
        value = getattr(theirs, key).numpy()
        if key.endswith("index"):
            np.testing.assert_array_equal(ours[key], value, err_msg=key)
        else:
            assert_close(ours[key], value, "hf-model", key)
            note((f"squad {key}", "hf", "transformers"), ours[key], value)
    # dialect "tf" is the same beam as log-probabilities, flattened start-major
    tf_out = xlnet.squad_outputs(m, content, p_mask, cls_index, start_n_top=3, end_n_top=2)
    np.testing.assert_allclose(np.exp(tf_out["start_top_log_probs"]), ours["start_top_log_probs"], rtol=1e-12)
    as_tf = lambda x: x.reshape(len(ids), 2, 3).transpose(0, 2, 1).reshape(len(ids), 6)  # noqa: E731
    np.testing.assert_array_equal(as_tf(ours["end_top_index"]), tf_out["end_top_index"])
    np.testing.assert_allclose(np.exp(tf_out["end_top_log_probs"]), as_tf(ours["end_top_log_probs"]), rtol=1e-12)

    # training: the end conditioned on given starts (transformers' end_logits module, unmasked
    # log_softmax taken here)
    start_positions = np.random.default_rng(seed).integers(4, 7, len(ids))
    train = xlnet.squad_outputs(m, content, p_mask, start_positions=start_positions, dialect="hf")
    hidden = torch.from_numpy(content.astype(np.float32))
    with torch.no_grad():
        start = model.start_logits(hidden, p_mask=torch.from_numpy(p_mask).float())
        end = model.end_logits(hidden, start_positions=torch.from_numpy(start_positions),
                               p_mask=torch.from_numpy(p_mask).float())
    for key, logits in (("start_log_probs", start), ("end_log_probs", end)):
        value = torch.log_softmax(logits, -1).numpy()
        assert_close(train[key], value, "hf-model", key)
        note((f"squad {key} (training)", "hf", "transformers"), train[key][p_mask == 0], value[p_mask == 0])


def hf_bert(cls, b: bert.Bert, heads: dict, pooler: bool, **config):
    c = b.config
    hf_config = transformers.BertConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
        hidden_act=c.hidden_act, max_position_embeddings=c.max_position_embeddings,
        type_vocab_size=c.type_vocab_size, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12, **config)
    model = cls._from_config(hf_config, attn_implementation="eager").eval()
    missing, unexpected = model.load_state_dict(
        {k: _t(v) for k, v in {**bert_state(b, pooler), **heads}.items()}, strict=False)
    assert not unexpected and not missing, (missing, unexpected)
    return model


def bert_inputs(seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 100, (3, 10))
    mask = np.ones_like(ids)
    mask[0, 7:] = 0
    return ids, rng.integers(0, 2, ids.shape), mask


def test_bert_classifier_matches_transformers():
    b = bert_model("bert-tiny-classifier")
    w = b.head_weights
    model = hf_bert(transformers.BertForSequenceClassification, b,
                    {"classifier.weight": w["output_weights"], "classifier.bias": w["output_bias"]},
                    pooler=True, num_labels=3)
    for seed in (0, 1):
        ids, segments, mask = bert_inputs(seed)
        out = bert.forward(b, ids, segments, mask, dialect="hf")
        ours = bert.run_head(b, out, "classifier")["logits"]
        with torch.no_grad():
            theirs = model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                           token_type_ids=torch.from_numpy(segments)).logits.numpy()
        assert_close(ours, theirs, "hf-model", "bert classifier")
        note(("bert classifier", "hf", "transformers"), ours, theirs)


def test_bert_squad_matches_transformers():
    b = bert_model("bert-tiny-squad")
    w = b.head_weights
    model = hf_bert(transformers.BertForQuestionAnswering, b,
                    {"qa_outputs.weight": w["cls/squad/output_weights"],
                     "qa_outputs.bias": w["cls/squad/output_bias"]}, pooler=False)
    ids, segments, mask = bert_inputs(2)
    out = bert.forward(b, ids, segments, mask, dialect="hf")
    ours = bert.run_head(b, out, "squad")
    assert list(ours) == ["start_logits", "end_logits"]
    with torch.no_grad():
        theirs = model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                       token_type_ids=torch.from_numpy(segments))
    for key in ours:
        assert_close(ours[key], getattr(theirs, key).numpy(), "hf-model", f"bert {key}")
        note((f"bert squad {key}", "hf", "transformers"), ours[key], getattr(theirs, key).numpy())


@pytest.mark.parametrize("mlen", [0, 3])
def test_same_length_matches_transformers(mlen):
    m = xlnet_model("xlnet-tiny")
    c = m.config
    config = transformers.XLNetConfig(
        vocab_size=c.n_token, d_model=c.d_model, n_layer=c.n_layer, n_head=c.n_head,
        d_inner=c.d_inner, ff_activation=c.ff_activation, untie_r=c.untie_r, dropout=0.0,
        layer_norm_eps=1e-12, attn_type="uni", same_length=True, mem_len=mlen or None,
        use_mems_eval=True)
    model = transformers.XLNetModel(config).eval()
    state = {k[len("transformer."):]: _t(v) for k, v in xlnet_state(m).items()}
    state["mask_emb"] = _t(m.transformer["mask_emb/mask_emb"])
    model.load_state_dict(state)
    rng = np.random.default_rng(mlen)
    previous, ids = rng.integers(0, 100, (2, 4)), rng.integers(0, 100, (2, 6))
    segments = rng.integers(0, 2, ids.shape)
    options = dict(attn_type="uni", same_length=True, dialect="hf")
    mems_ours = mems_theirs = None
    if mlen:
        mems_ours = xlnet.forward(m, previous, mem_len=mlen, **options).mems
        with torch.no_grad():
            mems_theirs = model(torch.from_numpy(previous), use_mems=True).mems
    ours = xlnet.forward(m, ids, segments, mems=mems_ours, mem_len=mlen or None, **options).content
    with torch.no_grad():
        theirs = model(torch.from_numpy(ids), token_type_ids=torch.from_numpy(segments),
                       mems=mems_theirs, use_mems=True).last_hidden_state.numpy()
    assert_close(ours, theirs, "hf-model", "same_length")
    note((f"same_length content (mlen {mlen})", "hf", "transformers"), ours, theirs)
    without = xlnet.forward(m, ids, segments, mems=mems_ours, attn_type="uni", dialect="hf").content
    assert np.abs(without - theirs).max() > 1e-4  # same_length acts on these inputs


# --- one call per head, float32 ------------------------------------------------------------------
def test_run_head_names_and_float32():
    ids, segments, mask = xlnet_inputs(9, bsz=6)
    cases = [("xlnet-tiny-classifier", "classification_yelp5", {"attention_mask": mask}, ["logits"]),
             ("xlnet-tiny-classifier", "summary", {"attention_mask": mask}, ["summary"]),
             ("xlnet-tiny-regression", "regression", {}, ["logits"]),
             ("xlnet-tiny-race", "race", {"n_choice": 3}, ["logits"]),
             ("xlnet-tiny-squad", "squad", {"p_mask": 1 - mask, "start_n_top": 2, "end_n_top": 2},
              ["start_top_log_probs", "start_top_index", "end_top_log_probs", "end_top_index", "cls_logits"])]
    for name, head, inputs, keys in cases:
        m = xlnet_model(name)
        out64, out32 = (xlnet.run_head(m, xlnet.forward(m, ids, segments, mask, dtype=dtype), head, **inputs)
                        for dtype in (np.float64, np.float32))
        assert list(out64) == keys and list(out32) == keys, (name, head)
        for key in keys:
            if out64[key].dtype.kind == "f":
                assert out32[key].dtype == np.float32, (name, key)
                assert_close(out32[key], out64[key], "float32", f"{name} {key}")
    squad = xlnet_model("xlnet-tiny-squad")
    content = xlnet.forward(squad, ids, segments, mask).content
    by_mask = xlnet.run_head(squad, content, "squad", attention_mask=mask)  # p_mask = padding
    for key, value in xlnet.squad_outputs(squad, content, 1 - mask).items():
        np.testing.assert_array_equal(by_mask[key], value)
    m = xlnet_model("xlnet-tiny-classifier")
    content = xlnet.forward(m, ids, segments, mask).content
    np.testing.assert_array_equal(xlnet.run_head(m, content, "classification", attention_mask=mask)["logits"],
                                  xlnet.classification_logits(m, content, "yelp5", "attn", True, mask))


def test_zz_report():
    """Prints the measured max abs errors (pytest -s); the closing note of issue 11."""
    for (head, dialect, anchor), error in sorted(MEASURED.items()):
        print(f"{head:40s} {dialect:3s} vs {anchor:12s} {error:.2e}")
