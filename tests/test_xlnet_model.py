"""The whole XLNet forward pass against keras-xlnet, on both shipped checkpoints.

keras_xlnet.load_trained_model_from_checkpoint builds the model with batch_size, memory_len,
target_len and in_train_phase; its Memory layers keep state across predict calls. A sub-model
with every layer's output(s) (both nodes of the layers shared by the content and query stream)
runs over consecutive segments, and refimpl runs the same segments through
xlnet.stateful_forward with a KerasMemory of the same shape, dialect "keras". Every Keras output
is compared with the refimpl trace entry of the same name (see NAME_OF), in float32 and float64.
Inputs: random ids with keras-xlnet's pad id 5 at either end, random segments, random
Input-Memory-Length per call, random Input-Mask in the training-phase model.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl import dialects, xlnet
from tolerances import assert_close, max_abs_error

tf = pytest.importorskip("tensorflow", reason="TensorFlow (the [test] extra) runs the Keras anchors")
keras_xlnet = pytest.importorskip("keras_xlnet")
import keras_shims  # noqa: E402

keras_shims.apply()
# keras-xlnet's layers create GlorotNormal initializers that the checkpoint weights replace
pytestmark = pytest.mark.filterwarnings("ignore:The initializer GlorotNormal is unseeded:UserWarning")
from keras_transformer_xl import Memory  # noqa: E402
from tensorflow import keras  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden", "checkpoints")
PAD = keras_xlnet.Tokenizer.SYM_PAD  # the id build_xlnet masks (mask_index default)

# (checkpoint, in_train_phase, attention_type, memory_len, target_len); batch_size 2 throughout
CONFIGS = [
    ("xlnet-tiny", False, "bi", 0, 5),
    ("xlnet-tiny", False, "uni", 0, 5),
    ("xlnet-tiny", False, "bi", 7, 3),
    ("xlnet-tiny", False, "uni", 7, 3),
    ("xlnet-tiny", True, "bi", 7, 3),
    ("xlnet-tiny", True, "uni", 0, 4),
    ("xlnet-tiny-tied", False, "bi", 7, 3),
    ("xlnet-tiny-tied", False, "uni", 7, 3),
    ("xlnet-tiny-tied", True, "bi", 0, 4),
    ("xlnet-tiny-tied", True, "uni", 7, 3),
]
BATCH = 2


@functools.cache
def refimpl_model(name: str) -> xlnet.XLNet:
    return xlnet.load(os.path.join(GOLDEN, name))


class KerasRun:
    """A keras-xlnet model and a sub-model returning every layer output (layer, node, index)."""

    def __init__(self, name, train, attn, memory_len, target_len, batch_size=BATCH):
        path = os.path.join(GOLDEN, name)
        self.model = keras_xlnet.load_trained_model_from_checkpoint(
            os.path.join(path, "xlnet_config.json"), os.path.join(path, "xlnet_model.ckpt"),
            batch_size=batch_size, memory_len=memory_len, target_len=target_len,
            in_train_phase=train, attention_type=attn)
        self.keys, outputs = [], []
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            for node in range(len(layer._inbound_nodes)):
                out = layer.get_output_at(node)
                for index, tensor in enumerate(out if isinstance(out, list) else [out]):
                    self.keys.append((layer.name, node, index))
                    outputs.append(tensor)
        self.sub = keras.Model(self.model.inputs, outputs)
        self.memories = [layer for layer in self.model.layers if isinstance(layer, Memory)]
        self.name, self.train, self.attn = name, train, attn
        self.memory_len, self.target_len = memory_len, target_len
        self.batch_size = batch_size

    def reset(self):
        for layer in self.memories:
            layer.memory.assign(tf.zeros_like(layer.memory))

    def predict(self, ids, seg, memory_length, inp_q=None) -> dict:
        inputs = [ids, seg, np.full((len(ids), 1), memory_length)]
        if self.train:
            inputs.append(inp_q)
        values = self.sub.predict(inputs, verbose=0, batch_size=len(ids))
        return dict(zip(self.keys, values))


@functools.cache
def keras_run(*config) -> KerasRun:
    return KerasRun(*config)


def name_of(key: tuple) -> str | None:
    """The refimpl trace name of a Keras output (layer, node, index); None for the outputs that
    are weights (compared with the loaded weights instead) or carry no values (Masking)."""
    layer, node, index = key
    stream = "/query" if node == 1 else ""
    if layer == "Masking" or (layer == "Embed-Token" and index == 1):
        return None
    if layer.startswith(("Relative-Bias", "Segment-Bias")) or (layer.startswith("Embed-Segment") and index == 1):
        return None
    if layer == "Embed-Token-Masked":
        return "Embed-Token"
    if layer == "Permutation":
        return "Permutation" + ("/query" if index == 1 else "")
    return layer + stream


def keras_weights(m: xlnet.XLNet, key: tuple) -> np.ndarray | None:
    """What keras-xlnet's loader put in a weight-returning layer, from refimpl's loader."""
    layer, _, index = key
    number = int(layer.rsplit("-", 1)[1]) - 1 if layer[-1].isdigit() else 0
    if layer == "Embed-Token" and index == 1:
        return m.transformer["word_embedding/lookup_table"]
    if layer.startswith("Relative-Bias"):
        return m.layer_bias(("r_w_bias", "r_r_bias")[index], number).reshape(-1)
    if layer.startswith("Segment-Bias"):
        return m.layer_bias("r_s_bias", number).reshape(-1)
    if layer.startswith("Embed-Segment") and index == 1:
        return m.transformer["seg_embed"][number].reshape(2, -1)
    return None


def compare_segments(run: KerasRun, segments: list, dialect="keras", dtype=np.float32,
                     check: bool = True, pad_as_attention_mask: bool = False) -> dict[str, float]:
    """Run the segments through Keras and refimpl; {trace name: max abs error} over all
    segments. check=True asserts each within the "xlnet-keras-model" tolerance.
    pad_as_attention_mask passes attention_mask = (ids != 5), for dialects that do not mask
    keras-xlnet's pad id themselves (to measure the other differences)."""
    m = refimpl_model(run.name)
    run.reset()
    memory = xlnet.KerasMemory(m.config.n_layer, m.config.d_model, run.batch_size,
                               run.memory_len, run.target_len, dtype)
    errors: dict[str, float] = {}
    for s, (ids, seg, memory_length, inp_q) in enumerate(segments):
        expected = run.predict(ids, seg, memory_length, inp_q)
        trace = {}
        out = xlnet.stateful_forward(m, memory, ids, seg, memory_length,
                                     attention_mask=(ids != PAD) if pad_as_attention_mask else None,
                                     inp_q=inp_q if run.train else None, attn_type=run.attn,
                                     dialect=dialect, dtype=dtype, trace=trace)
        real = np.concatenate([np.ones((len(ids), trace["Memory-0"].shape[1])), ids != PAD], axis=1)
        for key, value in expected.items():
            weights = keras_weights(m, key)
            if weights is not None:
                np.testing.assert_array_equal(weights, value, err_msg=f"{key} weights")
                continue
            name = name_of(key)
            if name is None:
                continue
            if key[0] == "Permutation":  # Keras applies the padding mask inside its attention
                value = value * real[:, None, :]
            actual = xlnet.lm_probs(m, out.query) if name == "Softmax" else trace[name]
            assert actual.dtype == dtype, f"{name} dtype {actual.dtype}"
            if check:
                assert_close(actual, value, "xlnet-keras-model", f"segment {s} {name} ({dtype.__name__})")
            errors[name] = max(errors.get(name, 0.0), max_abs_error(actual, value))
    return errors


def _segment(rng, batch, length, max_memory_length, train):
    """One predict call's inputs: random ids (pad id 5 at either end of some rows), segments
    0/1, an Input-Memory-Length up to 2 beyond memory_len, an Input-Mask."""
    ids = rng.integers(0, 100, (batch, length))
    for b in range(batch):
        left, right = rng.integers(0, length, 2) * (rng.random(2) < 0.4)
        ids[b, :left] = PAD
        ids[b, length - right:] = PAD
    seg = rng.integers(0, 2, (batch, length))
    return ids, seg, int(rng.integers(0, max_memory_length + 3)), rng.integers(0, 2, (batch, length))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c)))
@settings(max_examples=12)
@given(seed=st.integers(0, 2**32 - 1))
def test_whole_model_matches_keras_xlnet(config, seed):
    """dialect "keras" reproduces keras-xlnet layer by layer over 3 consecutive predict calls
    (1 when memory_len is 0), in float32 and float64."""
    run = keras_run(*config)
    rng = np.random.default_rng(seed)
    n = 3 if run.memory_len else 1
    segments = [_segment(rng, BATCH, run.target_len, run.memory_len, run.train) for _ in range(n)]
    for dtype in (np.float32, np.float64):
        errors = compare_segments(run, segments, dtype=dtype)
        assert "FeedForward-Normal-3" + ("/query" if run.train else "") in errors


def test_pad_id_is_what_keras_xlnet_masks():
    """keras-xlnet builds Masking(mask_value=Tokenizer.SYM_PAD); the keras dialect masks that id."""
    run = keras_run(*CONFIGS[0])
    assert run.model.get_layer("Masking").mask_value == PAD == dialects.get("keras").xlnet_pad_id == 5


def test_batch_smaller_than_batch_size():
    """A batch of 1 in a model built for 2: Memory pads the batch with copies of sample 0, and
    a later batch of 2 reads those rows as sample 1's memory."""
    run = keras_run("xlnet-tiny", False, "uni", 7, 3)
    rng = np.random.default_rng(7)
    segments = [_segment(rng, batch, 3, 7, False) for batch in (1, 2, 2)]
    segments = [(ids, seg, 7, q) for ids, seg, _, q in segments]
    errors = compare_segments(run, segments)
    assert errors["Memory-2"] < 1e-4


def test_uni_position_zero_follows_keras_epsilon_arithmetic():
    """"uni" without memory: position 0 sees one key, and keras-xlnet divides
    exp(s - max over all keys) by (sum + 1e-7), so its attention sums to e / (e + 1e-7) < 1 when
    the masked keys' scores are higher. The keras dialect reproduces that (to float32 noise);
    the tf dialect's exact softmax does not, and the difference spreads to later positions."""
    run = keras_run("xlnet-tiny", False, "uni", 0, 5)
    rng = np.random.default_rng(0)
    ids, seg = rng.integers(PAD + 1, 100, (BATCH, 5)), rng.integers(0, 2, (BATCH, 5))
    run.reset()
    expected = run.predict(ids, seg, 0)[("FeedForward-Normal-3", 0, 0)]
    trace = {}
    keras_dialect = xlnet.forward(refimpl_model("xlnet-tiny"), ids, seg, attn_type="uni",
                                  dialect="keras", trace=trace)
    tf_dialect = xlnet.forward(refimpl_model("xlnet-tiny"), ids, seg, attn_type="uni", dialect="tf")
    assert (1 - trace["Attention-1/prob"][:, :, 0].sum(-1)).max() > 1e-7  # the epsilon shows
    assert_close(keras_dialect.content, expected, "xlnet-keras-model", "keras dialect")
    assert max_abs_error(tf_dialect.content[:, 0], expected[:, 0]) > 1e-4
