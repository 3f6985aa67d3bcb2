"""refimpl.text against the originals and the ports, on Hypothesis-drawn awkward Unicode text.

The anchors (tests/text_anchors.py):
* the originals, transcribed: google-research/bert tokenization.py + run_classifier.py,
  zihangdai/xlnet prepro_utils.py + classifier_utils.py. refimpl must equal them on every text.
* transformers 5.23's slow BertTokenizer (BertTokenizerLegacy) and its XLNetTokenizer (no slow
  XLNet class exists in transformers 5: the tokenizers-backed one, converted from the same
  spiece.model), keras-bert 0.89's Tokenizer, keras-xlnet 0.20's Tokenizer, on the same vocab
  files. Each port must equal "the original with that port's listed deviations switched on"
  on every text: then every difference between refimpl and the port is a listed deviation.
  Each deviation is also pinned by an example of its own (test_*_deviation_*), so that a port
  changing its behaviour shows up here.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

import text_anchors as A
from refimpl import text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINTS = os.path.join(ROOT, "golden", "checkpoints")
BERT_DIR = os.path.join(CHECKPOINTS, "bert-tiny")
XLNET_DIR = os.path.join(CHECKPOINTS, "xlnet-tiny")
VOCAB = os.path.join(BERT_DIR, "vocab.txt")
SPM = os.path.join(XLNET_DIR, "spiece.model")
NOTE_SENTENCE = "All's right with the world"
# keras-xlnet's Tokenizer with the real XLNet-Base cased spiece.model, as the blog note shows it
NOTE_PIECES = ['▁All', "'", 's', '▁right', '▁with', '▁the', '▁world']


# --- anchors, built once -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vocab():
    """The vocabulary read independently of refimpl (line number = id)."""
    with open(VOCAB, encoding="utf-8") as f:
        return {line.strip(): i for i, line in enumerate(f)}


@pytest.fixture(scope="module")
def sp():
    spm = pytest.importorskip("sentencepiece", reason="the [text] extra (sentencepiece) is not installed")
    return spm.SentencePieceProcessor(model_file=SPM)


@pytest.fixture(scope="module")
def ours_bert():
    return {lower: text.BertTokenizer(VOCAB, do_lower_case=lower) for lower in (True, False)}


@pytest.fixture(scope="module")
def ours_xlnet():
    return text.XLNetTokenizer(SPM)


@pytest.fixture(scope="module")
def hf_bert():
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
    return {lower: BertTokenizerLegacy(VOCAB, do_lower_case=lower) for lower in (True, False)}


@pytest.fixture(scope="module")
def hf_xlnet(tmp_path_factory):
    from transformers import XLNetTokenizer
    folder = tmp_path_factory.mktemp("hf-xlnet")
    shutil.copy(SPM, folder / "spiece.model")
    return XLNetTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def keras_bert(vocab):
    from keras_bert import Tokenizer
    return {lower: Tokenizer(vocab, cased=not lower) for lower in (True, False)}


@pytest.fixture(scope="module")
def keras_xlnet():
    from keras_xlnet import Tokenizer
    return Tokenizer(SPM)


lowers = st.booleans()
max_lens = st.one_of(st.none(), st.integers(3, 24))


# --- the shipped vocabulary files ----------------------------------------------------------------
def test_vocab_files_fit_the_tiny_checkpoints(vocab, sp):
    with open(os.path.join(BERT_DIR, "bert_config.json")) as f:
        vocab_size = json.load(f)["vocab_size"]
    with open(VOCAB, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[-1] == "" and len(lines) - 1 == vocab_size == len(vocab)
    # the golden example `refimpl run --model bert` (2 ... 3 ... 3) reads [CLS] ... [SEP] ... [SEP]
    assert [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]
    for folder in ("xlnet-tiny", "xlnet-tiny-tied"):
        with open(os.path.join(CHECKPOINTS, folder, "xlnet_config.json")) as f:
            assert sp.get_piece_size() == json.load(f)["n_token"]
    # data_utils.py's hard-coded ids
    hard_coded = {"<unk>": 0, "<s>": 1, "</s>": 2, "<cls>": 3, "<sep>": 4, "<pad>": 5, "<mask>": 6,
                  "<eod>": 7, "<eop>": 8}
    assert {p: sp.piece_to_id(p) for p in hard_coded} == hard_coded


def test_vocab_json_records_the_files():
    with open(os.path.join(CHECKPOINTS, "VOCAB.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["command"] == "python tools/make_vocab.py"
    assert sorted(manifest["files"]) == ["bert-tiny/vocab.txt", "xlnet-tiny-tied/spiece.model",
                                         "xlnet-tiny/spiece.model"]
    for name, digest in manifest["files"].items():
        with open(os.path.join(CHECKPOINTS, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, name


def test_make_vocab_regenerates_byte_identical_files():
    """Training the sentencepiece model again (another process, one thread, fixed seed) gives
    the same bytes as the shipped files."""
    pytest.importorskip("sentencepiece")
    result = subprocess.run([sys.executable, os.path.join("tools", "make_vocab.py"), "--check"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "byte-identical" in result.stdout


# --- imports -------------------------------------------------------------------------------------
def test_import_needs_no_optional_package():
    code = ("import sys, refimpl.text\n"
            "print(sorted(m for m in ('sentencepiece', 'tensorflow', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_xlnet_without_sentencepiece_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # makes `import sentencepiece` fail
    with pytest.raises(ImportError, match=r"pip install 'refimpl\[text\]'"):
        text.XLNetTokenizer(SPM)
    assert text.BertTokenizer(VOCAB).tokenize("all right") == ["all", "right"]  # BERT is pure Python


# --- BERT: the original --------------------------------------------------------------------------
@given(t=A.texts(), lower=lowers)
def test_bert_tokenize_is_the_original(t, lower, ours_bert, vocab):
    original = A.OriginalFullTokenizer(vocab, do_lower_case=lower)
    assert ours_bert[lower].tokenize(t) == original.tokenize(t)


@given(a=A.texts(4), b=st.one_of(st.none(), A.texts(4)), max_len=st.integers(3, 24), lower=lowers)
def test_bert_encode_is_run_classifier(a, b, max_len, lower, ours_bert, vocab):
    original = A.OriginalFullTokenizer(vocab, do_lower_case=lower)
    ids, mask, segments = A.original_bert_convert_single_example(a, b, max_len, original)
    out = ours_bert[lower].encode(a, b, max_len)
    assert (out["token_ids"], out["attention_mask"], out["segment_ids"]) == (ids, mask, segments)
    assert ours_bert[lower].convert_tokens_to_ids(out["tokens"]) == ids


@given(a=A.texts(4), b=st.one_of(st.none(), A.texts(4)), lower=lowers)
def test_bert_encode_without_max_len_keeps_everything(a, b, lower, ours_bert, vocab):
    original = A.OriginalFullTokenizer(vocab, do_lower_case=lower)
    pieces_a, pieces_b = original.tokenize(a), original.tokenize(b) if b else []
    n = len(pieces_a) + len(pieces_b) + (3 if pieces_b else 2)
    assert ours_bert[lower].encode(a, b) == ours_bert[lower].encode(a, b, max_len=n)


def test_bert_encode_layout_by_hand(ours_bert):
    out = ours_bert[True].encode("All right", "the world!", max_len=10)
    # ids read off vocab.txt: [CLS] 2, all 78, right 79, [SEP] 3, the 77, world 81, ! 9
    assert out == {"token_ids": [2, 78, 79, 3, 77, 81, 9, 3, 0, 0],
                   "segment_ids": [0, 0, 0, 0, 1, 1, 1, 1, 0, 0],
                   "attention_mask": [1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
                   "tokens": ["[CLS]", "all", "right", "[SEP]", "the", "world", "!", "[SEP]", "[PAD]", "[PAD]"]}
    # a pair truncated to max_len 5 keeps one piece of each (ties pop text_b first)
    assert ours_bert[True].encode("all right", "the world", max_len=5)["tokens"] == \
        ["[CLS]", "all", "[SEP]", "the", "[SEP]"]
    # max_len 3 truncates text_b away entirely: no B part and no second [SEP], as the original
    assert ours_bert[True].encode("all", "the", max_len=3)["tokens"] == ["[CLS]", "[SEP]", "[PAD]"]
    # an empty text_b adds nothing
    assert ours_bert[True].encode("all", "") == ours_bert[True].encode("all")


# --- BERT: transformers ---------------------------------------------------------------------------
@given(t=A.texts(), lower=lowers)
def test_transformers_bert_differs_only_by_its_listed_deviations(t, lower, hf_bert, vocab):
    assert hf_bert[lower].tokenize(t) == A.transformers_bert_explained(vocab, t, lower)


@given(a=A.texts(4), b=A.texts(4), lower=lowers)
def test_transformers_bert_layout(a, b, lower, ours_bert, hf_bert):
    ours, hf = ours_bert[lower], hf_bert[lower]
    if ours.tokenize(a) != hf.tokenize(a) or ours.tokenize(b) != hf.tokenize(b) or not ours.tokenize(b):
        return  # the layout is compared where the pieces agree and text_b has some
    got = hf(a, b, return_token_type_ids=True)
    out = ours.encode(a, b)
    assert (out["token_ids"], out["segment_ids"], out["attention_mask"]) == \
        (got["input_ids"], got["token_type_ids"], got["attention_mask"])


def test_transformers_bert_deviation_word_length(ours_bert, hf_bert):
    word = "ab" * 75  # 150 characters: within the original's 200, over transformers' 100
    assert ours_bert[True].tokenize(word) == ["a"] + ["##b", "##a"] * 74 + ["##b"]
    assert hf_bert[True].tokenize(word) == ["[UNK]"]
    assert text.BertTokenizer(VOCAB, max_input_chars_per_word=100).tokenize(word) == ["[UNK]"]
    assert ours_bert[True].tokenize("a" * 201) == ["[UNK]"]


def test_transformers_bert_deviation_controls(ours_bert, hf_bert):
    # private use (Co) and unassigned (Cn): the original keeps them (a word it cannot match),
    # transformers drops them as control characters
    for char in ("\ue000", "\u0378"):
        assert ours_bert[True].tokenize(f"all{char} right") == ["[UNK]", "right"]
        assert hf_bert[True].tokenize(f"all{char} right") == ["all", "right"]
    # Cf is a control character for both
    assert ours_bert[True].tokenize("all\u200b right") == hf_bert[True].tokenize("all\u200b right") == ["all", "right"]


def test_transformers_bert_deviation_special_tokens(ours_bert, hf_bert):
    assert ours_bert[True].tokenize("[CLS] all") == ["[UNK]", "c", "##l", "##s", "[UNK]", "all"]
    assert hf_bert[True].tokenize("[CLS] all") == ["[CLS]", "all"]
    assert hf_bert[True].tokenize("x[MASK].") == ["x", "[MASK]", "."]


def test_transformers_bert_deviation_nfc(tmp_path):
    """Not observable with the tiny vocabulary (it has no accented entries): a vocabulary with
    "é" shows it. Cased, "e" + U+0301 is one word "é" in decomposed form for the original (no
    piece matches "##\u0301": [UNK]); transformers composes it first."""
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ne\né\n", encoding="utf-8")
    assert text.BertTokenizer(path, do_lower_case=False).tokenize("e\u0301") == ["[UNK]"]
    assert BertTokenizerLegacy(str(path), do_lower_case=False).tokenize("e\u0301") == ["é"]


def test_transformers_bert_deviation_empty_text_b(ours_bert, hf_bert):
    assert ours_bert[True].encode("all", "")["tokens"] == ["[CLS]", "all", "[SEP]"]
    assert hf_bert[True]("all", "")["input_ids"] == [2, 78, 3, 3]


# --- BERT: keras-bert -------------------------------------------------------------------------------
@given(t=A.texts(), lower=lowers)
def test_keras_bert_differs_only_by_its_listed_deviations(t, lower, keras_bert, vocab):
    explained = A.OriginalFullTokenizer(vocab, do_lower_case=lower, **A.KERAS_BERT_DEVIATIONS)
    assert keras_bert[lower]._tokenize(t) == explained.tokenize(t)


@given(a=A.texts(4), b=st.one_of(st.none(), A.texts(4)), max_len=max_lens, lower=lowers)
def test_keras_bert_encode_layout(a, b, max_len, lower, ours_bert, keras_bert):
    ours, kb = ours_bert[lower], keras_bert[lower]
    if ours.tokenize(a) != kb._tokenize(a) or (b is not None and (ours.tokenize(b) != kb._tokenize(b) or not ours.tokenize(b))):
        return  # compared where the pieces agree (keras-bert adds [SEP] for an empty text_b)
    ids, segments = kb.encode(a, b, max_len=max_len)
    out = ours.encode(a, b, max_len)
    if b is not None and 1 not in out["segment_ids"]:
        return  # text_b truncated away: keras-bert keeps its [SEP] (test_keras_bert_deviation_layout)
    assert (out["token_ids"], out["segment_ids"]) == (ids, segments)


def test_keras_bert_deviation_layout(ours_bert, keras_bert):
    # a text_b truncated away keeps its [SEP] in keras-bert; the original drops it (`if tokens_b`)
    assert ours_bert[True].encode("all", "the", max_len=3)["token_ids"] == [2, 3, 0]
    assert keras_bert[True].encode("all", "the", max_len=3) == ([2, 3, 3], [0, 0, 1])
    # an empty text_b (not None) adds a [SEP] in keras-bert; the original adds nothing
    assert ours_bert[True].encode("all", "")["token_ids"] == [2, 78, 3]
    assert keras_bert[True].encode("all", "") == ([2, 78, 3, 3], [0, 0, 0, 1])


def test_keras_bert_deviation_unknown_characters(ours_bert, keras_bert):
    # "€" is not punctuation (Sc) and not in the vocabulary: the original makes the word [UNK],
    # keras-bert keeps matching around it
    assert ours_bert[True].tokenize("all€ right") == ["[UNK]", "right"]
    assert keras_bert[True]._tokenize("all€ right") == ["all", "##€", "right"]
    assert keras_bert[True].encode("all€")[0] == [2, 78, 1, 3]  # "##€" becomes [UNK]'s id
    # no length limit
    assert keras_bert[True]._tokenize("a" * 201) == ["a"] + ["##a"] * 200


def test_keras_bert_deviation_lower_case_first(tmp_path):
    """keras-bert lower-cases the whole raw text before removing control characters: a control
    character after a capital sigma makes it final (ς) for str.lower; the original removes the
    control character first and lower-cases the word "AΣB" (σ). The tiny vocabulary has neither
    sigma: a vocabulary with both shows it."""
    from keras_bert import Tokenizer
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\na\n##σ\n##ς\n##b\n", encoding="utf-8")
    assert text.BertTokenizer(path).tokenize("AΣ\x07B") == ["a", "##σ", "##b"]
    assert Tokenizer(text.load_vocab(path))._tokenize("AΣ\x07B") == ["a", "##ς", "##b"]


# --- XLNet: the original ------------------------------------------------------------------------
@given(t=A.texts())
def test_xlnet_tokenize_is_the_original(t, ours_xlnet, sp):
    expected = A.original_encode_pieces(sp, A.original_preprocess_text(t))
    assert ours_xlnet.tokenize(t) == expected
    assert ours_xlnet.convert_tokens_to_ids(expected) == A.original_encode_ids(sp, A.original_preprocess_text(t))


@given(t=A.texts(), lower=lowers)
def test_xlnet_lower_is_the_original(t, lower, sp):
    ours = text.XLNetTokenizer(SPM, lower=lower)
    assert ours.tokenize(t) == A.original_encode_pieces(sp, A.original_preprocess_text(t, lower=lower))


@given(a=A.texts(4), b=st.one_of(st.none(), A.texts(4)), max_len=st.integers(3, 24))
def test_xlnet_encode_is_classifier_utils(a, b, max_len, ours_xlnet, sp):
    def tokenize_fn(t):  # run_classifier.py's tokenize_fn
        return A.original_encode_ids(sp, A.original_preprocess_text(t, lower=False))
    ids, input_mask, segments = A.original_xlnet_convert_single_example(a, b, max_len, tokenize_fn)
    out = ours_xlnet.encode(a, b, max_len)
    assert out["token_ids"] == ids and out["segment_ids"] == segments
    assert out["attention_mask"] == [1 - m for m in input_mask]  # the original's 1 = padding


def test_xlnet_encode_layout_by_hand(ours_xlnet):
    out = ours_xlnet.encode(NOTE_SENTENCE, "All's right", max_len=14)
    pieces = ours_xlnet.tokenize(NOTE_SENTENCE)
    assert out["tokens"] == pieces + ["<sep>"] + pieces[:4] + ["<sep>", "<cls>"]
    ids = ours_xlnet.convert_tokens_to_ids(pieces)
    # 7 + 4 pieces + 2 <sep> + <cls> = 14: no padding, A's <sep> segment 0, B's 1, <cls> 2
    assert out["token_ids"] == ids + [4] + ids[:4] + [4, 3]
    assert out["segment_ids"] == [0] * 8 + [1] * 5 + [2]
    padded = ours_xlnet.encode("All", max_len=6)
    assert padded["token_ids"][:3] == [0, 0, 0] and padded["token_ids"][-2:] == [4, 3]
    assert padded["segment_ids"] == [4, 4, 4, 0, 0, 2] and padded["attention_mask"] == [0, 0, 0, 1, 1, 1]
    assert text.XLNetTokenizer(SPM, pad_id=5).encode("All", max_len=6)["token_ids"][:3] == [5, 5, 5]


# --- XLNet: keras-xlnet --------------------------------------------------------------------------
@given(t=A.texts(), lower=lowers)
def test_keras_xlnet_is_the_keras_preset(t, lower, sp):
    from keras_xlnet import Tokenizer
    kx = Tokenizer(SPM, cased=not lower)
    ours = text.XLNetTokenizer.keras(SPM, lower=lower)
    assert ours.tokenize(t) == kx.tokenize(t)
    assert ours.convert_tokens_to_ids(ours.tokenize(t)) == kx.encode(t)


def test_keras_xlnet_deviations(ours_xlnet, keras_xlnet):
    # no quote mapping
    assert ours_xlnet.tokenize("``all''") == ['▁', '"', 'a', 'll', '"']
    assert keras_xlnet.tokenize("``all''") == ['▁', '``', 'a', 'll', "'", "'"]  # '``' unknown
    # accents kept (remove_accents=False): "é" is not in the tiny model
    assert ours_xlnet.tokenize("é") == ['▁', 'e']
    assert keras_xlnet.tokenize("é") == ['▁', 'é']
    # digit-comma: keras-xlnet's copy leaves an empty piece where the original drops the "▁"
    assert ours_xlnet.tokenize("10,") == ['▁1', '0', ',']
    assert keras_xlnet.tokenize("10,") == ['▁1', '', '0', ',']


def test_note_example_pieces(ours_xlnet, keras_xlnet):
    """The blog note's sentence: keras-xlnet with the real XLNet spiece.model gives NOTE_PIECES;
    the tiny model was trained so that it cuts the sentence the same way (the ids differ)."""
    assert keras_xlnet.tokenize(NOTE_SENTENCE) == NOTE_PIECES
    assert ours_xlnet.tokenize(NOTE_SENTENCE) == NOTE_PIECES


# --- XLNet: transformers --------------------------------------------------------------------------
@given(t=A.texts())
def test_transformers_xlnet_differs_only_by_its_listed_deviations(t, hf_xlnet, sp):
    got = hf_xlnet.tokenize(t)
    explained = A.transformers_xlnet_explained(sp, t)
    same_ids = hf_xlnet.convert_tokens_to_ids(got) == [sp.piece_to_id(p) for p in explained]
    assert same_ids or A.unigram_tie(sp, got, explained), (got, explained)


def test_transformers_xlnet_deviations(ours_xlnet, hf_xlnet):
    # added tokens: each user-defined piece starts a new word
    assert ours_xlnet.tokenize("U.S.") == ['▁', 'U', '.', 'S', '.']
    assert hf_xlnet.tokenize("U.S.") == ['▁', 'U', '.', '▁', 'S', '.']
    # control pieces typed in the text are text for sentencepiece, special for transformers
    assert ours_xlnet.tokenize("<cls>")[:2] == ['▁', '<']
    assert hf_xlnet.tokenize("<cls>") == ['<cls>']
    # no digit-comma rule
    assert ours_xlnet.tokenize("10,") == ['▁1', '0', ',']
    assert hf_xlnet.tokenize("10,") == ['▁1', '0,']
    # every mark stripped: U+0E34 (Thai, Mn with combining class 0) survives preprocess_text
    assert ours_xlnet.tokenize("a\u0e34") != hf_xlnet.tokenize("a\u0e34") == ['▁a']
    # a text_b without pieces (" ") still adds its <sep> (segment 1); the original adds nothing
    assert ours_xlnet.encode("All", " ")["tokens"] == ["▁All", "<sep>", "<cls>"]
    assert hf_xlnet("All", " ", return_token_type_ids=True)["token_type_ids"] == [0, 0, 1, 2]
    # pads: <pad> (5) with token type 0, where classifier_utils.py pads 0 with segment 4
    got = hf_xlnet("All", max_length=6, padding="max_length", return_token_type_ids=True)
    assert got["input_ids"][:3] == [5, 5, 5] and got["token_type_ids"][:3] == [0, 0, 0]


@given(a=A.texts(4), b=A.texts(4))
def test_transformers_xlnet_layout(a, b, ours_xlnet, hf_xlnet):
    if ours_xlnet.tokenize(a) != hf_xlnet.tokenize(a) or ours_xlnet.tokenize(b) != hf_xlnet.tokenize(b) \
            or not ours_xlnet.tokenize(b):
        return  # the layout is compared where the pieces agree and text_b has some
    got = hf_xlnet(a, b, return_token_type_ids=True)
    out = ours_xlnet.encode(a, b)
    assert (out["token_ids"], out["segment_ids"], out["attention_mask"]) == \
        (got["input_ids"], got["token_type_ids"], got["attention_mask"])


# --- tokenizer_for, segments_for_memory -----------------------------------------------------------
def test_tokenizer_for_finds_the_vocabulary_beside_the_checkpoint(tmp_path):
    bert = text.tokenizer_for(BERT_DIR)
    assert isinstance(bert, text.BertTokenizer) and bert.do_lower_case and bert.vocab_file == VOCAB
    assert text.tokenizer_for(os.path.join(BERT_DIR, "bert_model.ckpt")).vocab_file == VOCAB
    xl = text.tokenizer_for(XLNET_DIR)
    assert isinstance(xl, text.XLNetTokenizer) and xl.spiece_model == SPM and not xl.lower
    assert text.tokenizer_for(os.path.join(CHECKPOINTS, "xlnet-tiny-tied"), "xlnet").tokenize("All") == ["▁All"]
    cased = tmp_path / "cased_L-12_H-768_A-12"  # a cased release keeps its case
    cased.mkdir()
    shutil.copy(VOCAB, cased / "vocab.txt")
    shutil.copy(os.path.join(BERT_DIR, "bert_config.json"), cased)
    assert text.tokenizer_for(cased).do_lower_case is False
    assert text.tokenizer_for(cased, lower=True).do_lower_case is True


def test_tokenizer_for_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no vocab\.txt in .*official releases ship vocab\.txt"):
        text.tokenizer_for(tmp_path, "bert")
    with pytest.raises(FileNotFoundError, match=r"no spiece\.model in"):
        text.tokenizer_for(tmp_path, "xlnet")
    with pytest.raises(ValueError, match=r"cannot tell the model of .*found none"):
        text.tokenizer_for(tmp_path)
    with pytest.raises(ValueError, match=r"model must be 'bert' or 'xlnet', got 'gpt2'"):
        text.tokenizer_for(BERT_DIR, "gpt2")


def test_segments_for_memory_cuts_the_note_sentence():
    segments = text.segments_for_memory([39, 58, 18, 30, 21, 20, 24], target_len=3)
    assert segments == [
        {"token_ids": [39, 58, 18], "attention_mask": [1, 1, 1], "start": 0},
        {"token_ids": [30, 21, 20], "attention_mask": [1, 1, 1], "start": 3},
        {"token_ids": [24, 5, 5], "attention_mask": [1, 0, 0], "start": 6},
    ]
    assert text.segments_for_memory([1, 2], 2, pad_id=0) == [{"token_ids": [1, 2], "attention_mask": [1, 1], "start": 0}]
    with pytest.raises(ValueError, match="target_len must be a positive int, got 0"):
        text.segments_for_memory([1], 0)
    with pytest.raises(ValueError, match="token_ids is empty"):
        text.segments_for_memory([], 3)


@pytest.mark.parametrize("target_len", [1, 3, 7])
def test_memory_walkthrough_matches_one_causal_run(target_len, ours_xlnet):
    """The note's walkthrough: the sentence run segment by segment with the memory of the
    earlier segments (attn_type "uni") gives each real piece the output of one causal run over
    the whole sentence: the segments, their padding and `start` are right."""
    from refimpl import xlnet
    m = xlnet.load(XLNET_DIR)
    ids = ours_xlnet.convert_tokens_to_ids(ours_xlnet.tokenize(NOTE_SENTENCE))
    full = xlnet.forward(m, np.array([ids]), attn_type="uni").content[0]
    mems, rows = None, []
    for seg in text.segments_for_memory(ids, target_len):
        assert (mems is None and seg["start"] == 0) or mems[0].shape[1] == seg["start"]
        out = xlnet.forward(m, np.array([seg["token_ids"]]), attention_mask=np.array([seg["attention_mask"]]),
                            mems=mems, mem_len=len(ids), attn_type="uni")
        mems = out.mems
        rows.append(out.content[0][np.array(seg["attention_mask"]) == 1])
    np.testing.assert_allclose(np.concatenate(rows), full, rtol=1e-9, atol=1e-10)


# --- bad input -----------------------------------------------------------------------------------
def test_bert_bad_input(tmp_path, ours_bert):
    with pytest.raises(FileNotFoundError, match=r"no BERT vocabulary file at .*nope\.txt"):
        text.BertTokenizer(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="is a directory; expected the vocab.txt file"):
        text.BertTokenizer(tmp_path)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match=r"empty\.txt' is empty"):
        text.BertTokenizer(tmp_path / "empty.txt")
    (tmp_path / "no_cls.txt").write_text("[PAD]\n[UNK]\n[SEP]\na\n")
    with pytest.raises(ValueError, match=r"lacks \[CLS\]"):
        text.BertTokenizer(tmp_path / "no_cls.txt")
    tok = ours_bert[True]
    with pytest.raises(ValueError, match="text must be a str .*got int 42"):
        tok.tokenize(42)
    with pytest.raises(ValueError, match="text_a must be a str .*got NoneType"):
        tok.encode(None)
    with pytest.raises(ValueError, match="text_b must be a str .*got list"):
        tok.encode("a", ["b"])
    with pytest.raises(ValueError, match=r"max_len=1 is too small: .*\[CLS\] A \[SEP\] needs 2"):
        tok.encode("all", max_len=1)
    with pytest.raises(ValueError, match=r"max_len=2 is too small: .*\[CLS\] A \[SEP\] B \[SEP\] needs 3"):
        tok.encode("all", "right", max_len=2)
    with pytest.raises(ValueError, match="max_len must be an int or None, got float 8.0"):
        tok.encode("all", max_len=8.0)
    with pytest.raises(ValueError, match=r"tokens not in the vocabulary .*\['zebra'\]"):
        tok.convert_tokens_to_ids(["all", "zebra"])
    with pytest.raises(ValueError, match=r"ids \[100\] are not in the vocabulary \(ids 0..99\)"):
        tok.convert_ids_to_tokens([2, 100])
    with pytest.raises(ValueError, match="do_lower_case must be True or False, got 'yes'"):
        text.BertTokenizer(VOCAB, do_lower_case="yes")
    assert tok.tokenize(b"all right") == ["all", "right"]  # UTF-8 bytes, as the original


def test_xlnet_bad_input(tmp_path, ours_xlnet):
    with pytest.raises(FileNotFoundError, match=r"no sentencepiece model at .*nope\.model"):
        text.XLNetTokenizer(tmp_path / "nope.model")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"bad\.model' is not a sentencepiece model"):
        text.XLNetTokenizer(tmp_path / "bad.model")
    with pytest.raises(ValueError, match=r"digit_comma must be one of \('xlnet', 'keras', 'none'\), got 'x'"):
        text.XLNetTokenizer(SPM, digit_comma="x")
    with pytest.raises(ValueError, match=r"pad_id must be an id of the model \(0..99\), got 100"):
        text.XLNetTokenizer(SPM, pad_id=100)
    with pytest.raises(ValueError, match="text must be a str .*got float"):
        ours_xlnet.tokenize(1.5)
    with pytest.raises(ValueError, match=r"max_len=1 is too small: the layout A <sep> <cls> needs 2"):
        ours_xlnet.encode("All", max_len=1)
    with pytest.raises(ValueError, match=r"ids \[-1\] are not in the model"):
        ours_xlnet.convert_ids_to_tokens([-1])


def test_empty_and_whitespace_only_text(ours_bert, ours_xlnet):
    for t in ("", " ", "\t\n\u3000", "\x00\u200b"):
        assert ours_bert[True].tokenize(t) == []
        assert ours_bert[True].encode(t)["tokens"] == ["[CLS]", "[SEP]"]
        assert ours_bert[True].encode("all", t)["tokens"] == ["[CLS]", "all", "[SEP]"]
    for t in ("", " ", "\t\n\u3000"):  # preprocess_text's str.split() removes these
        assert ours_xlnet.tokenize(t) == []
        assert ours_xlnet.encode(t)["token_ids"] == [4, 3]
        assert ours_xlnet.encode("All", t)["tokens"] == ["▁All", "<sep>", "<cls>"]
    # NUL and U+200B are text to preprocess_text; sentencepiece keeps NUL as an unknown piece
    assert ours_xlnet.tokenize("\x00\u200b") == ["▁", "\x00"]
