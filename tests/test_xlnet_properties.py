"""Structural properties of refimpl.xlnet that hold whatever the weights: NumPy only.

rel_shift's index identity, the bd term's distance (i + mlen) - j, memory consistency (uni with
mems = one pass over the concatenated segments), padding invariance, float32 vs float64,
query-stream scatter/gather, cache_mem and KerasMemory vs functional mems, and which dialect
fields change what. Expected values come from the definitions (index arithmetic, sinusoids
written out, a second forward pass over other inputs), never from the function under test.
"""
from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl import dialects, xlnet
from tolerances import assert_close

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden", "checkpoints")
CHECKPOINTS = ["xlnet-tiny", "xlnet-tiny-tied"]
TF, HF, KERAS = dialects.get("tf"), dialects.get("hf"), dialects.get("keras")
seeds = st.integers(0, 2**32 - 1)


@functools.cache
def model(name: str = "xlnet-tiny") -> xlnet.XLNet:
    return xlnet.load(os.path.join(GOLDEN, name))


def ids_without_pad(rng, shape):
    """Random token ids, never keras-xlnet's pad id 5 (so the keras dialect masks nothing)."""
    ids = rng.integers(0, 99, shape)
    return np.where(ids >= 5, ids + 1, ids)


# --- rel_shift and the bd term ---------------------------------------------------------------
@given(b=st.integers(1, 2), n=st.integers(1, 3), qlen=st.integers(1, 6), mlen=st.integers(0, 5),
       uni=st.booleans(), seed=seeds)
def test_rel_shift_index_identity(b, n, qlen, mlen, uni, seed):
    """out[i, j] = x[i, j + qlen - i], for every key ("bi", r = klen + qlen) or every visible
    key j <= i + mlen ("uni", r = klen + 1)."""
    klen = mlen + qlen
    r = klen + 1 if uni else klen + qlen
    x = np.random.default_rng(seed).standard_normal((b, n, qlen, r))
    out = xlnet.rel_shift(x, klen)
    assert out.shape == (b, n, qlen, klen)
    i, j = np.meshgrid(np.arange(qlen), np.arange(klen), indexing="ij")
    visible = j <= i + mlen if uni else np.ones_like(i, bool)
    source = np.where(visible, j + qlen - i, 0)
    expected = np.take_along_axis(x, np.broadcast_to(source, (b, n, qlen, klen)), axis=-1)
    np.testing.assert_array_equal(out[..., visible], expected[..., visible])


def sinusoid(distance: np.ndarray, d_model: int) -> np.ndarray:
    """[sin(dist / 10000^(2k/d)) | cos(...)] written out: (...) -> (..., d_model)."""
    inv_freq = 1.0 / 10000.0 ** (np.arange(0, d_model, 2) / d_model)
    angle = distance[..., None] * inv_freq
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=-1)


@given(b=st.sampled_from([2, 4]), qlen=st.integers(1, 5), mlen=st.integers(0, 4),
       attn_type=st.sampled_from(["bi", "uni"]), bi_data=st.booleans(), seed=seeds)
def test_bd_uses_distance_i_plus_mlen_minus_j(b, qlen, mlen, attn_type, bi_data, seed):
    """Layer 1's bd[b, n, i, j] = (q_i + r_r_bias) . (W_r^T enc((i + mlen) - j)), the distance
    negated for the second half of the batch with bi_data; for every key ("bi") or every
    visible key ("uni")."""
    m = model()
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 100, (b, qlen))
    mems = [rng.standard_normal((b, mlen, 32)) for _ in range(3)]
    trace = {}
    xlnet.forward(m, ids, mems=mems, attn_type=attn_type, bi_data=bi_data, trace=trace)
    w = {k: v.astype(np.float64) for k, v in m.layers[0].items()}  # the checkpoint holds float32
    table = m.transformer["word_embedding/lookup_table"].astype(np.float64)
    q = np.einsum("blD,Dnd->blnd", table[ids], w["rel_attn/q/kernel"])
    i, j = np.meshgrid(np.arange(qlen), np.arange(mlen + qlen), indexing="ij")
    distance = np.broadcast_to((i + mlen - j).astype(float), (b, qlen, mlen + qlen)).copy()
    if bi_data:
        distance[b // 2:] *= -1
    k_r = np.einsum("bijD,Dnd->bijnd", sinusoid(distance, 32), w["rel_attn/r/kernel"])
    expected = np.einsum("bind,bijnd->bnij", q + m.layer_bias("r_r_bias", 0).astype(np.float64), k_r)
    visible = (j <= i + mlen) if attn_type == "uni" else np.ones_like(i, bool)
    assert_close(trace["Attention-1/bd"][..., visible], expected[..., visible], "float64-identity", "bd")


# --- memory ----------------------------------------------------------------------------------
@given(name=st.sampled_from(CHECKPOINTS), b=st.integers(1, 2),
       lengths=st.lists(st.integers(1, 4), min_size=2, max_size=3), with_segments=st.booleans(),
       seed=seeds)
def test_uni_with_mems_equals_one_pass(name, b, lengths, with_segments, seed):
    """attn_type "uni", dialect "tf": running segments one after another with mems (mem_len >=
    everything before, no reuse cut) gives each segment's outputs of one pass over the
    concatenation. Earlier segments are segment 0, as memory counts as segment 0."""
    m = model(name)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 100, (b, sum(lengths)))
    seg = np.zeros_like(ids)
    seg[:, -lengths[-1]:] = rng.integers(0, 3, (b, lengths[-1]))
    seg = seg if with_segments else None
    whole = xlnet.forward(m, ids, seg, attn_type="uni").content
    mems, start = None, 0
    for length in lengths:
        part = slice(start, start + length)
        out = xlnet.forward(m, ids[:, part], None if seg is None else seg[:, part], mems=mems,
                            mem_len=sum(lengths), attn_type="uni")
        assert_close(out.content, whole[:, part], "float64-identity", f"positions {part}")
        mems, start = out.mems, start + length


@given(b=st.integers(1, 2), lengths=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       mem_len=st.integers(0, 6), reuse_len=st.one_of(st.none(), st.integers(0, 4)),
       dialect=st.sampled_from(["tf", "hf", "keras"]), seed=seeds)
def test_cache_mem_keeps_the_layer_inputs(b, lengths, mem_len, reuse_len, dialect, seed):
    """mems[0] = word embeddings of earlier segments: concat(prev, curr[:reuse_len])[-mem_len:];
    mems[k] = layer k's input (the trace's FeedForward-Normal-k); mem_len 0 gives None (tf,
    keras) or everything (hf)."""
    m = model()
    rng = np.random.default_rng(seed)
    table = m.transformer["word_embedding/lookup_table"].astype(np.float64)
    mems, kept = None, np.zeros((b, 0, 32))
    for length in lengths:
        ids = rng.integers(0, 100, (b, length))
        trace = {}
        out = xlnet.forward(m, ids, mems=mems, mem_len=mem_len, reuse_len=reuse_len,
                            dialect=dialect, trace=trace)
        cut = length if not reuse_len else min(reuse_len, length)
        kept = np.concatenate([kept, table[ids[:, :cut]]], axis=1)
        if mem_len == 0 and dialect != "hf":
            assert out.mems is None
            return
        kept = kept[:, -mem_len:] if mem_len else kept
        np.testing.assert_array_equal(out.mems[0], kept)
        for k in (1, 2):
            np.testing.assert_array_equal(out.mems[k][:, -min(cut, kept.shape[1]):],
                                          trace[f"FeedForward-Normal-{k}"][:, :cut][:, -kept.shape[1]:])
        mems = out.mems


@given(b=st.integers(1, 2), length=st.integers(1, 4), memory_len=st.integers(1, 6),
       n_segments=st.integers(1, 4), attn_type=st.sampled_from(["bi", "uni"]), seed=seeds)
def test_keras_memory_equals_functional_mems(b, length, memory_len, n_segments, attn_type, seed):
    """Full segments with Input-Memory-Length = what has been seen (up to memory_len): the
    stateful Memory gives the functional mems with mem_len = memory_len."""
    m = model()
    rng = np.random.default_rng(seed)
    memory = xlnet.KerasMemory(3, 32, b, memory_len, length, np.float64)
    mems = None
    for s in range(n_segments):
        ids, seg = ids_without_pad(rng, (b, length)), rng.integers(0, 2, (b, length))
        stateful = xlnet.stateful_forward(m, memory, ids, seg, min(memory_len, s * length),
                                          attn_type=attn_type, dtype=np.float64)
        functional = xlnet.forward(m, ids, seg, mems=mems, mem_len=memory_len,
                                   attn_type=attn_type, dialect="keras")
        np.testing.assert_array_equal(stateful.content, functional.content)
        mems = functional.mems


# --- padding, precision, query stream --------------------------------------------------------
@given(name=st.sampled_from(CHECKPOINTS), b=st.integers(1, 2), length=st.integers(1, 5),
       left=st.integers(0, 3), right=st.integers(0, 3), mlen=st.integers(0, 3),
       attn_type=st.sampled_from(["bi", "uni"]), dialect=st.sampled_from(["tf", "hf"]), seed=seeds)
def test_padding_leaves_real_positions_unchanged(name, b, length, left, right, mlen, attn_type,
                                                 dialect, seed):
    """Padding (attention_mask 0) at either end: the real positions' outputs equal a pass over
    the real tokens alone (relative positions only; masked keys get weight 0). With mems only
    right padding: left padding moves the real tokens away from the memory (the distance to
    memory key j is i + mlen - j), which changes their outputs, as in the original."""
    m = model(name)
    rng = np.random.default_rng(seed)
    mlen = mlen if left == 0 else 0
    ids, seg = rng.integers(0, 100, (b, length)), rng.integers(0, 2, (b, length))
    mems = [rng.standard_normal((b, mlen, 32)) for _ in range(3)]
    pad = lambda x, v: np.concatenate([np.full((b, left), v), x, np.full((b, right), v)], axis=1)  # noqa: E731
    mask = pad(np.ones((b, length), int), 0)
    real = slice(left, left + length)
    padded = xlnet.forward(m, pad(ids, 0), pad(seg, 1), attention_mask=mask, mems=mems,
                           mem_len=10, attn_type=attn_type, dialect=dialect)
    alone = xlnet.forward(m, ids, seg, mems=mems, mem_len=10, attn_type=attn_type, dialect=dialect)
    assert_close(padded.content[:, real], alone.content, "float64-identity", "content")


@given(name=st.sampled_from(CHECKPOINTS), dialect=st.sampled_from(["tf", "hf", "keras"]),
       b=st.sampled_from([2, 4]), length=st.integers(1, 5), mlen=st.integers(0, 3),
       attn_type=st.sampled_from(["bi", "uni"]), bi_data=st.booleans(),
       clamp_len=st.one_of(st.none(), st.integers(1, 4)), seed=seeds)
def test_float32_agrees_with_float64(name, dialect, b, length, mlen, attn_type, bi_data, clamp_len, seed):
    """float32 mode computes in float32 (every trace entry and output is float32) and agrees with
    float64 within float32 rounding; with padding, a permutation mask and a query stream."""
    m = model(name)
    rng = np.random.default_rng(seed)
    ids, seg = ids_without_pad(rng, (b, length)), rng.integers(0, 2, (b, length))
    mask = (rng.random((b, length)) < 0.8).astype(int)
    perm = (rng.random((b, length, length)) < 0.3).astype(int)
    targets = np.stack([rng.permutation(length)[:2] for _ in range(b)])
    mapping = np.eye(length)[targets]
    mems = [rng.standard_normal((b, mlen, 32)).astype(np.float32) for _ in range(3)]
    outs, traces = {}, {}
    for dtype in (np.float32, np.float64):
        traces[dtype] = {}
        outs[dtype] = xlnet.forward(m, ids, seg, attention_mask=mask, perm_mask=perm,
                                    target_mapping=mapping, mems=mems, mem_len=4,
                                    attn_type=attn_type, clamp_len=clamp_len, bi_data=bi_data,
                                    dialect=dialect, dtype=dtype, trace=traces[dtype])
    for name_, value in traces[np.float32].items():
        assert value.dtype == np.float32, f"{name_} is {value.dtype} in float32 mode"
        assert_close(value, traces[np.float64][name_], "xlnet-float32-intermediate", name_)
    for part in ("content", "query"):
        assert getattr(outs[np.float32], part).dtype == np.float32
        assert_close(getattr(outs[np.float32], part), getattr(outs[np.float64], part), "float32", part)
    assert all(x.dtype == np.float32 for x in outs[np.float32].mems)


@given(name=st.sampled_from(CHECKPOINTS), b=st.integers(1, 2), length=st.integers(1, 5),
       n_targets=st.integers(1, 5), attn_type=st.sampled_from(["bi", "uni"]),
       dialect=st.sampled_from(["tf", "hf"]), seed=seeds)
def test_target_mapping_gathers_the_query_stream(name, b, length, n_targets, attn_type, dialect, seed):
    """Query rows do not interact (keys and values come from the content stream), so the query
    stream at target m (starting from mask_emb) equals the all-positions query stream with
    inp_q = 1 at the target's position. The content stream is the same with or without a query
    stream. Not under keras' masking: its max runs over masked keys too, whose bd scores in "uni"
    are wrapped by rel_shift from the NEXT query row, so through the 1e-7 in the denominator a
    row depends slightly (~1e-5 here) on its neighbour's query."""
    m = model(name)
    rng = np.random.default_rng(seed)
    ids, seg = ids_without_pad(rng, (b, length)), rng.integers(0, 2, (b, length))
    perm = (rng.random((b, length, length)) < 0.3).astype(int)
    n_targets = min(n_targets, length)
    targets = np.stack([rng.permutation(length)[:n_targets] for _ in range(b)])  # distinct
    mapping = np.eye(length)[targets]
    if n_targets > 1:
        mapping[:, -1] = 0  # the last target row is padding (no target), as the original pads
    kwargs = dict(perm_mask=perm, attn_type=attn_type, dialect=dialect)
    by_targets = xlnet.forward(m, ids, seg, target_mapping=mapping, **kwargs)
    everywhere = xlnet.forward(m, ids, seg, inp_q=np.ones((b, length), int), **kwargs)
    plain = xlnet.forward(m, ids, seg, **kwargs)
    gathered = np.take_along_axis(everywhere.query, targets[:, :, None], axis=1)
    real = mapping.sum(-1) == 1
    assert_close(by_targets.query[real], gathered[real], "float64-identity", "query")
    assert_close(by_targets.content, plain.content, "float64-identity", "content")
    assert_close(everywhere.content, plain.content, "float64-identity", "content")


# --- dialects ----------------------------------------------------------------------------------
def _inputs(rng, b=2, length=5, pad_ids=False):
    ids = ids_without_pad(rng, (b, length))
    if pad_ids:
        ids[:, 0] = 5
    return ids, rng.integers(0, 2, (b, length))


@settings(max_examples=10)
@given(seed=seeds, attn_type=st.sampled_from(["bi", "uni"]))
def test_hf_is_tf_with_erf_gelu_and_kept_mems(seed, attn_type):
    """hf differs from tf only by exact-erf GELU and keeping all mems without mem_len: equal
    (bit for bit) once those two fields are set, different (GELU) before."""
    rng = np.random.default_rng(seed)
    ids, seg = _inputs(rng)
    kwargs = dict(attention_mask=(rng.random(ids.shape) < 0.8).astype(int), attn_type=attn_type,
                  inp_q=rng.integers(0, 2, ids.shape), mems=[rng.standard_normal((2, 2, 32))] * 3)
    like_hf = dataclasses.replace(TF, gelu="erf", xlnet_mems_without_mem_len="all")
    hf, tf_erf = (xlnet.forward(model(), ids, seg, dialect=d, **kwargs) for d in (HF, like_hf))
    tf = xlnet.forward(model(), ids, seg, dialect=TF, **kwargs)
    np.testing.assert_array_equal(hf.content, tf_erf.content)
    np.testing.assert_array_equal(hf.query, tf_erf.query)
    assert len(hf.mems) == 3 and tf.mems is None
    assert np.abs(hf.content - tf.content).max() > 1e-6


# (field, value to set on tf, inputs that make the field irrelevant, inputs that make it matter)
FIELD_CASES = {
    "xlnet_pad_id": (5, dict(), dict(pad_ids=True)),
    # "uni" has no negative distances: the clamps differ only in "bi" (and clamp_len None)
    "clamp": ("nonnegative", dict(attn_type="uni", clamp_len=2), dict(attn_type="bi", clamp_len=2)),
    "query_excludes_self": (True, dict(), dict(query=True)),
    "xlnet_padded_self_visible": (False, dict(), dict(padding=True)),
    "layer_norm_eps": (1.0, dict(), dict()),  # every input: a visible difference at eps 1
}


@pytest.mark.parametrize("field", sorted(FIELD_CASES))
@settings(max_examples=10)
@given(seed=seeds, attn_type=st.sampled_from(["bi", "uni"]))
def test_each_dialect_field_acts_only_where_documented(field, seed, attn_type):
    """Setting one of keras' fields on tf changes nothing on inputs the field does not concern
    (bit for bit), and changes the output on inputs it does; for xlnet_padded_self_visible only
    the padded positions change."""
    value, irrelevant, relevant = FIELD_CASES[field]
    changed = dataclasses.replace(TF, **{field: value})

    def run(dialect, pad_ids=False, clamp_len=None, query=False, padding=False, **kwargs):
        ids, seg = _inputs(np.random.default_rng(seed), pad_ids=pad_ids)
        mask = np.ones_like(ids)
        mask[:, -1] = 0 if padding else 1
        inp_q = np.ones_like(ids) if query else None
        kwargs.setdefault("attn_type", attn_type)
        return xlnet.forward(model(), ids, seg, attention_mask=mask, inp_q=inp_q,
                             clamp_len=clamp_len, dialect=dialect, **kwargs)
    if field != "layer_norm_eps":
        np.testing.assert_array_equal(run(TF, **irrelevant).content, run(changed, **irrelevant).content)
    before, after = run(TF, **relevant), run(changed, **relevant)
    stream = "query" if field == "query_excludes_self" else "content"
    difference = np.abs(getattr(before, stream) - getattr(after, stream)).max(axis=-1)
    if field == "xlnet_padded_self_visible":
        assert (difference[:, :-1] == 0).all() and (difference[:, -1] > 1e-6).all()
    else:
        assert difference.max() > 1e-6


@settings(max_examples=10)
@given(seed=seeds, length=st.integers(2, 5))
def test_keras_mask_differs_from_additive_only_by_its_epsilon_and_empty_rows(seed, length):
    """No key masked ("bi", no padding): keras' exp(s - max) / (sum + 1e-7) is softmax up to
    ~1e-7 relative. A fully masked query row (uni, position 0, query stream excluding itself, no
    memory): keras gives a zero attention vector, additive masking a uniform one."""
    rng = np.random.default_rng(seed)
    ids, seg = _inputs(rng, length=length)
    keras_mask = dataclasses.replace(TF, xlnet_mask="keras")
    a, k = (xlnet.forward(model(), ids, seg, dialect=d) for d in (TF, keras_mask))
    assert 0 < np.abs(a.content - k.content).max() < 1e-4
    trace_a, trace_k = {}, {}
    for d, trace in ((dataclasses.replace(TF, query_excludes_self=True), trace_a),
                     (dataclasses.replace(keras_mask, query_excludes_self=True), trace_k)):
        xlnet.forward(model(), ids, seg, inp_q=np.ones_like(ids), attn_type="uni", dialect=d, trace=trace)
    np.testing.assert_array_equal(trace_k["Attention-1/query/prob"][:, :, 0], 0)
    np.testing.assert_allclose(trace_a["Attention-1/query/prob"][:, :, 0], 1 / length, rtol=1e-12)


def test_keras_dialect_is_tf_with_its_xlnet_fields():
    """Nothing in the XLNet path depends on a dialect's name: tf with keras' XLNet fields is keras."""
    rng = np.random.default_rng(0)
    ids, seg = _inputs(rng, pad_ids=True)
    fields = ("gelu", "layer_norm_eps", "xlnet_mask", "clamp", "query_excludes_self",
              "xlnet_pad_id", "xlnet_padded_self_visible", "xlnet_mems_without_mem_len")
    like_keras = dataclasses.replace(TF, **{f: getattr(KERAS, f) for f in fields})
    kwargs = dict(inp_q=rng.integers(0, 2, ids.shape), attn_type="uni", clamp_len=3, mem_len=2)
    a, b = (xlnet.forward(model(), ids, seg, dialect=d, **kwargs) for d in (KERAS, like_keras))
    np.testing.assert_array_equal(a.content, b.content)
    np.testing.assert_array_equal(a.query, b.query)


# --- trace ---------------------------------------------------------------------------------------
def test_trace_names_and_shapes():
    m = model()
    b, length, mlen = 2, 4, 3
    trace = {}
    xlnet.forward(m, np.ones((b, length), int), np.zeros((b, length), int),
                  mems=[np.zeros((b, mlen, 32))] * 3, target_mapping=np.eye(length)[None, :2].repeat(b, 0),
                  trace=trace)
    klen = mlen + length
    expected = {"Embed-Token": (b, length, 32), "Embed-Mask": (b, 2, 32), "Embed-Pos": (b, klen + length, 32),
                "Permutation": (b, length, klen), "Permutation/query": (b, length, klen)}
    for k in range(1, 4):
        expected[f"Memory-{k - 1}"] = (b, mlen, 32)
        expected[f"Embed-Segment-{k}"] = (b, length, klen, 2)
        for stream, rows in (("", length), ("/query", 2)):
            for part in ("Attention", "Attention-Residual", "Attention-Normal", "FeedForward",
                         "FeedForward-Residual", "FeedForward-Normal"):
                expected[f"{part}-{k}{stream}"] = (b, rows, 32)
            for part in ("ac", "bd", "ef", "prob"):
                expected[f"Attention-{k}{stream}/{part}"] = (b, 4, length, klen)
    assert {name: value.shape for name, value in trace.items()} == expected
