"""`refimpl run --text`: a sentence in, through the checkpoint's own vocabulary (issue 12).

Expected ids come from the tokenizers (tests/test_text.py checks those against the originals'
transcriptions and the ports); here: that the command feeds them to the model unchanged, and
that the segmented memory run agrees with one causal run over the whole sentence.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from refimpl import bert, golden, text, xlnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CKPT = os.path.join(ROOT, "golden", "checkpoints")
SENTENCE = "All's right with the world"


def refimpl(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "refimpl")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_run_text_feeds_the_tokenizers_ids(tmp_path):
    r = refimpl("run", "--model", "bert", "--text", "All's right", "--text-b", "with the world",
                "--out", tmp_path / "b.npz")
    assert r.returncode == 0, r.stderr
    encoded = text.tokenizer_for(os.path.join(CKPT, "bert-tiny")).encode("All's right", "with the world")
    assert f"pieces: {encoded['tokens']}" in r.stdout
    out = golden.read_npz(tmp_path / "b.npz")
    b = bert.load(os.path.join(CKPT, "bert-tiny"))
    np.testing.assert_array_equal(out["Embedding-Token"][0],
                                  b.embeddings["word_embeddings"][encoded["token_ids"]])


def test_run_text_in_segments_with_memory_equals_one_causal_run(tmp_path):
    r = refimpl("run", "--text", SENTENCE, "--target-len", "3", "--mem-len", "7", "--attn-type", "uni",
                "--out", tmp_path / "s.npz", "--plot-attention", tmp_path / "s.png")
    assert r.returncode == 0, r.stderr
    assert "pieces: ['▁All', \"'\", 's', '▁right', '▁with', '▁the', '▁world']" in r.stdout
    out = golden.read_npz(tmp_path / "s.npz")
    tok = text.tokenizer_for(os.path.join(CKPT, "xlnet-tiny"))
    ids = tok.convert_tokens_to_ids(tok.tokenize(SENTENCE))
    whole = xlnet.forward(xlnet.load(os.path.join(CKPT, "xlnet-tiny")), np.array([ids]), attn_type="uni").content[0]
    rows = np.concatenate([out[f"segment-{s}/content"][0] for s in range(3)])[:len(ids)]
    np.testing.assert_allclose(rows, whole, rtol=1e-10, atol=1e-12)
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_max_len_truncates_and_pads_as_the_tokenizer(tmp_path):
    """--max-len reaches the tokenizer's encode(max_len=): the pair is truncated (longer text
    first) and padded, BERT on the right, XLNet on the left; the padding is masked."""
    long_a = "All's right with the world and the world is right with all"
    for model, folder in (("bert", "bert-tiny"), ("xlnet", "xlnet-tiny")):
        for text_a, max_len in ((long_a, 9), ("All's right", 14)):  # truncated; padded
            r = refimpl("run", "--model", model, "--text", text_a, "--text-b", "with the world",
                        "--max-len", max_len, "--out", tmp_path / f"{model}.npz")
            assert r.returncode == 0, r.stderr
            encoded = text.tokenizer_for(os.path.join(CKPT, folder)).encode(
                text_a, "with the world", max_len=max_len)
            assert len(encoded["token_ids"]) == max_len
            assert (0 in encoded["attention_mask"]) == (text_a != long_a)
            assert f"pieces: {encoded['tokens']}" in r.stdout
            out = golden.read_npz(tmp_path / f"{model}.npz")
            if model == "bert":
                b = bert.load(os.path.join(CKPT, folder))
                np.testing.assert_array_equal(out["Embedding-Token"][0],
                                              b.embeddings["word_embeddings"][encoded["token_ids"]])
                expected = bert.forward(b, np.array([encoded["token_ids"]]),
                                        np.array([encoded["segment_ids"]]),
                                        np.array([encoded["attention_mask"]])).sequence
                np.testing.assert_array_equal(out["sequence"], expected)
            else:
                m = xlnet.load(os.path.join(CKPT, folder))
                expected = xlnet.forward(m, np.array([encoded["token_ids"]]),
                                         np.array([encoded["segment_ids"]]),
                                         np.array([encoded["attention_mask"]])).content
                np.testing.assert_array_equal(out["content"], expected)
    r = refimpl("run", "--model", "bert", "--text", long_a, "--text-b", "b", "--max-len", 2)
    assert r.returncode == 2 and "max_len=2 is too small" in r.stderr, r.stderr


def test_text_usage_errors():
    for args, message in ((["--max-len", "8"], "--max-len needs --text"),
                          (["--text", "a b c", "--target-len", "2", "--max-len", "8"], "--max-len needs --text"),
                          (["--text-b", "x"], "--text-b needs --text"),
                          (["--target-len", "3"], "--target-len needs --text"),
                          (["--text", "a", "--tokens", "1 2"], "give one of --text, --inputs, --tokens"),
                          (["--model", "bert", "--text", "a", "--target-len", "2"], "--model xlnet")):
        r = refimpl("run", *args)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
