"""Attention in blocks of heads (ops.head_blocks) gives the same numbers, bit for bit, as the
whole-tensor attention that a traced forward runs; and the speed rewrites of issue 14 compute
what the original formulas compute.

Without a trace, bert.attention_layer and xlnet's `attend` run one sequence and a block of
heads at a time so that the block's scores stay in cache. A trace needs the whole
(b, n, i, j) tensors, so a traced forward takes the one-call path: comparing the two outputs
checks the blocking, at block sizes from one head to all heads.
"""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from refimpl import bert, ops, xlnet

GOLDEN = os.path.join(os.path.dirname(__file__), os.pardir, "golden", "checkpoints")
BLOCK_BYTES = [1, 64, 4096, 1 << 40]  # one head per block, a few, all heads


def test_head_blocks_cover_every_sequence_and_head_once_in_order():
    for batch, heads, per_head, limit in [(1, 12, 1 << 20, 1 << 20), (3, 12, 1000, 4000),
                                          (2, 5, 1, 1 << 20), (2, 7, 3000, 1000)]:
        blocks = list(ops.head_blocks(batch, heads, per_head, limit))
        cells = [(b, n) for seq, hs in blocks for b in range(batch)[seq] for n in range(heads)[hs]]
        assert cells == [(b, n) for b in range(batch) for n in range(heads)]
        sizes = {len(range(heads)[hs]) for _, hs in blocks}
        assert max(sizes) == max(1, min(heads, limit // per_head))


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_bert_blocked_attention_is_bit_identical(dtype, monkeypatch):
    model = bert.load(os.path.join(GOLDEN, "bert-tiny"))
    rng = np.random.default_rng(0)
    for batch, length, padded in [(1, 16, False), (3, 13, True)]:
        tokens = rng.integers(1, model.config.vocab_size, (batch, length))
        mask = np.ones((batch, length), np.int64)
        if padded:
            mask[1:, length // 2:] = 0
        for dialect in ("tf", "hf", "keras"):
            whole = bert.forward(model, tokens, attention_mask=mask, dialect=dialect, dtype=dtype,
                                 trace={})
            for limit in BLOCK_BYTES:
                monkeypatch.setattr(ops, "HEAD_BLOCK_BYTES", limit)
                blocked = bert.forward(model, tokens, attention_mask=mask, dialect=dialect,
                                       dtype=dtype)
                np.testing.assert_array_equal(blocked.sequence, whole.sequence,
                                              err_msg=f"{dialect} B={batch} block {limit} bytes")


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_xlnet_blocked_attention_is_bit_identical(dtype, monkeypatch):
    """bi and uni, with and without memory and segments, one and two streams (perm_mask,
    target_mapping), padding, in the three dialects' masks (additive, keras)."""
    model = xlnet.load(os.path.join(GOLDEN, "xlnet-tiny"))
    rng = np.random.default_rng(1)
    vocab = model.config.n_token
    for dialect, (batch, length), attn, mem, segments, two_stream in itertools.product(
            ("tf", "keras", "hf"), [(1, 9), (3, 7)], ("bi", "uni"), (0, 5), (False, True),
            (False, True)):
        tokens = rng.integers(5, vocab, (batch, length))
        seg = rng.integers(0, 2, (batch, length)) if segments else None
        mask = np.ones((batch, length))
        mask[1:, -2:] = 0
        kw = dict(attn_type=attn, dtype=dtype, dialect=dialect, attention_mask=mask)
        if mem:
            kw["mems"] = xlnet.forward(model, rng.integers(5, vocab, (batch, mem)),
                                       None if seg is None else rng.integers(0, 2, (batch, mem)),
                                       mem_len=mem, attn_type=attn, dtype=dtype,
                                       dialect=dialect).mems
            kw["mem_len"] = mem
        if two_stream:
            target = np.zeros((batch, 2, length))
            target[:, 0, 1] = target[:, 1, 3] = 1
            kw.update(perm_mask=rng.integers(0, 2, (batch, length, length)).astype(float),
                      target_mapping=target)
        whole = xlnet.forward(model, tokens, seg, trace={}, **kw)
        for limit in BLOCK_BYTES:
            monkeypatch.setattr(ops, "HEAD_BLOCK_BYTES", limit)
            blocked = xlnet.forward(model, tokens, seg, **kw)
            where = f"{dialect} B={batch} {attn} mem={mem} seg={segments} two={two_stream} {limit}"
            np.testing.assert_array_equal(blocked.content, whole.content, err_msg=where)
            if two_stream:
                np.testing.assert_array_equal(blocked.query, whole.query, err_msg=where)
            for got, want in zip(blocked.mems or [], whole.mems or []):  # within one forward, a
                np.testing.assert_array_equal(got, want, err_msg=where)  # layer's input kept


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_segment_selection_is_the_original_einsum(dtype):
    """rel_attn_core selects ef with np.where; the original contracts the one-hot seg_mat:
    einsum("bijs,bnis->bnij"). The same numbers, bit for bit."""
    rng = np.random.default_rng(2)
    seg_mat = xlnet.segment_matrix(rng.integers(0, 2, (2, 7)), 3, dtype)
    ef = rng.standard_normal((2, 4, 7, 2)).astype(dtype)
    selected = np.where(seg_mat[:, None, :, :, 1] == 1, ef[:, :, :, None, 1], ef[:, :, :, None, 0])
    np.testing.assert_array_equal(selected, np.einsum("bijs,bnis->bnij", seg_mat, ef))


def test_head_projections_are_the_original_einsums():
    """head_projection and the output projection are matmuls over the flattened (n d) axis;
    the original writes einsums. Equal in float64 to rounding (the order of the sums)."""
    rng = np.random.default_rng(3)
    h = rng.standard_normal((2, 5, 12))
    kernel = rng.standard_normal((12, 3, 4))
    np.testing.assert_allclose(xlnet.head_projection(h, kernel),
                               np.einsum("blD,Dnd->blnd", h, kernel), rtol=1e-13, atol=1e-13)


def test_scratch_reuses_only_inside_a_workspace():
    outside = ops.scratch("a", (2, 3), np.float32)
    assert outside is not ops.scratch("a", (2, 3), np.float32)
    with ops.workspace():
        a = ops.scratch("a", (2, 3), np.float32)
        assert ops.scratch("a", (2, 3), np.float32) is a
        assert ops.scratch("b", (2, 3), np.float32) is not a  # another quantity
        assert ops.scratch("a", (2, 4), np.float32) is not a  # another shape
        assert ops.scratch("a", (2, 3), np.float64) is not a  # another dtype
        with ops.workspace(active=False):
            assert ops.scratch("a", (2, 3), np.float32) is not a
    assert ops.scratch("a", (2, 3), np.float32) is not a


def test_what_a_forward_returns_is_its_own():
    """The workspace lives for one forward and nothing returned is in it: the outputs of two
    forwards share no memory, and the first one's stay as they were."""
    b = bert.load(os.path.join(GOLDEN, "bert-tiny"))
    rng = np.random.default_rng(4)
    first = bert.forward(b, rng.integers(1, b.config.vocab_size, (2, 11)))
    kept = [first.sequence.copy(), first.pooled.copy()]
    second = bert.forward(b, rng.integers(1, b.config.vocab_size, (2, 11)))
    assert not np.shares_memory(first.sequence, second.sequence)
    np.testing.assert_array_equal(first.sequence, kept[0])
    np.testing.assert_array_equal(first.pooled, kept[1])

    m = xlnet.load(os.path.join(GOLDEN, "xlnet-tiny"))
    target = np.zeros((2, 2, 9))
    target[:, 0, 2] = target[:, 1, 5] = 1
    kw = dict(mem_len=4, perm_mask=rng.integers(0, 2, (2, 9, 9)).astype(float),
              target_mapping=target, attn_type="uni")
    out = xlnet.forward(m, rng.integers(5, m.config.n_token, (2, 9)), **kw)
    kept = [out.content.copy(), out.query.copy(), [x.copy() for x in out.mems]]
    nxt = xlnet.forward(m, rng.integers(5, m.config.n_token, (2, 9)), mems=out.mems, **kw)
    for a, c in [(out.content, nxt.content), (out.query, nxt.query)] + list(zip(out.mems, nxt.mems)):
        assert not np.shares_memory(a, c)
    np.testing.assert_array_equal(out.content, kept[0])
    np.testing.assert_array_equal(out.query, kept[1])
    for mem, was in zip(out.mems, kept[2]):
        np.testing.assert_array_equal(mem, was)
