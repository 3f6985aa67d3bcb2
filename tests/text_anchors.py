"""Anchors for refimpl.text: transcriptions of the original tokenizers, the installed ports, and
Hypothesis strategies for awkward Unicode text. Used by tests/test_text.py only.

ORIGINAL_* below are small faithful transcriptions of the original functions, kept as close to
the source as Python 3 allows (TF's gfile replaced by a vocab dict, six.PY2 branches removed),
so that refimpl.text is checked against the original's behaviour and not against itself:
  https://github.com/google-research/bert/blob/master/tokenization.py (FullTokenizer, HEAD)
  https://github.com/google-research/bert/blob/master/run_classifier.py (convert_single_example)
  https://github.com/zihangdai/xlnet/blob/master/prepro_utils.py (preprocess_text, encode_pieces)
  https://github.com/zihangdai/xlnet/blob/master/classifier_utils.py (convert_single_example)

The *_EXPLAINED functions are the originals with exactly the deviations of one port switched on,
each deviation a named flag that the README's "Text in" section lists. A port must agree with
its explained function on every drawn text: then every difference between that port and
refimpl is one of the listed deviations.
"""
from __future__ import annotations

import unicodedata

from hypothesis import strategies as st

# ================================================================================================
# Transcribed from google-research/bert tokenization.py (HEAD: Cc/Cf controls, 200 chars a word)
# https://github.com/google-research/bert/blob/master/tokenization.py
# The flags (all False / None = the original) switch on the deviations of the ports:
#   nfc                 transformers 5: unicodedata.normalize("NFC") after cleaning
#   control_all_c       transformers: _is_control tests cat.startswith("C") (drops Co, Cn, Cs)
#   (transformers also keeps its special tokens typed in the text whole: transformers_bert_explained)
#   strip_before_lower  keras-bert: NFD + drop Mn, then lower(), over the whole raw text before
#                       anything else (so a control character, removed later, still takes part
#                       in str.lower's final-sigma rule: "AΣ\x07B" -> "aςb", the original "aσb")
#   unk_per_char        keras-bert: an unmatched part becomes its first char as a piece
#                       (an id of [UNK]) and matching continues, instead of one [UNK] a word
#   max_chars           the per-word limit (original 200, transformers 100, keras-bert none)
# ================================================================================================


def original_whitespace_tokenize(text):
    text = text.strip()
    if not text:
        return []
    tokens = text.split()
    return tokens


def original_is_whitespace(char):
    if char == " " or char == "\t" or char == "\n" or char == "\r":
        return True
    cat = unicodedata.category(char)
    if cat == "Zs":
        return True
    return False


def original_is_control(char, control_all_c=False):
    if char == "\t" or char == "\n" or char == "\r":
        return False
    cat = unicodedata.category(char)
    if control_all_c:  # transformers
        return cat.startswith("C")
    if cat in ("Cc", "Cf"):
        return True
    return False


def original_is_punctuation(char):
    cp = ord(char)
    if ((cp >= 33 and cp <= 47) or (cp >= 58 and cp <= 64) or
            (cp >= 91 and cp <= 96) or (cp >= 123 and cp <= 126)):
        return True
    cat = unicodedata.category(char)
    if cat.startswith("P"):
        return True
    return False


class OriginalBasicTokenizer(object):
    def __init__(self, do_lower_case=True, nfc=False, control_all_c=False, strip_before_lower=False):
        self.do_lower_case = do_lower_case
        self.nfc, self.control_all_c = nfc, control_all_c
        self.strip_before_lower = strip_before_lower

    def tokenize(self, text):
        if self.strip_before_lower and self.do_lower_case:  # keras-bert
            text = self._run_strip_accents(text).lower()
        text = self._clean_text(text)
        text = self._tokenize_chinese_chars(text)
        if self.nfc:  # transformers 5
            text = unicodedata.normalize("NFC", text)
        orig_tokens = original_whitespace_tokenize(text)
        split_tokens = []
        for token in orig_tokens:
            if self.do_lower_case and not self.strip_before_lower:
                token = token.lower()
                token = self._run_strip_accents(token)
            split_tokens.extend(self._run_split_on_punc(token))
        output_tokens = original_whitespace_tokenize(" ".join(split_tokens))
        return output_tokens

    def _run_strip_accents(self, text):
        text = unicodedata.normalize("NFD", text)
        output = []
        for char in text:
            cat = unicodedata.category(char)
            if cat == "Mn":
                continue
            output.append(char)
        return "".join(output)

    def _run_split_on_punc(self, text):
        chars = list(text)
        i = 0
        start_new_word = True
        output = []
        while i < len(chars):
            char = chars[i]
            if original_is_punctuation(char):
                output.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(char)
            i += 1
        return ["".join(x) for x in output]

    def _tokenize_chinese_chars(self, text):
        output = []
        for char in text:
            cp = ord(char)
            if self._is_chinese_char(cp):
                output.append(" ")
                output.append(char)
                output.append(" ")
            else:
                output.append(char)
        return "".join(output)

    def _is_chinese_char(self, cp):
        if ((cp >= 0x4E00 and cp <= 0x9FFF) or
                (cp >= 0x3400 and cp <= 0x4DBF) or
                (cp >= 0x20000 and cp <= 0x2A6DF) or
                (cp >= 0x2A700 and cp <= 0x2B73F) or
                (cp >= 0x2B740 and cp <= 0x2B81F) or
                (cp >= 0x2B820 and cp <= 0x2CEAF) or
                (cp >= 0xF900 and cp <= 0xFAFF) or
                (cp >= 0x2F800 and cp <= 0x2FA1F)):
            return True
        return False

    def _clean_text(self, text):
        output = []
        for char in text:
            cp = ord(char)
            if cp == 0 or cp == 0xfffd or original_is_control(char, self.control_all_c):
                continue
            if original_is_whitespace(char):
                output.append(" ")
            else:
                output.append(char)
        return "".join(output)


class OriginalWordpieceTokenizer(object):
    def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=200, unk_per_char=False):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word
        self.unk_per_char = unk_per_char

    def tokenize(self, text):
        output_tokens = []
        for token in original_whitespace_tokenize(text):
            chars = list(token)
            if self.max_input_chars_per_word is not None and len(chars) > self.max_input_chars_per_word:
                output_tokens.append(self.unk_token)
                continue

            is_bad = False
            start = 0
            sub_tokens = []
            while start < len(chars):
                end = len(chars)
                cur_substr = None
                while start < end:
                    substr = "".join(chars[start:end])
                    if start > 0:
                        substr = "##" + substr
                    if substr in self.vocab:
                        cur_substr = substr
                        break
                    end -= 1
                if cur_substr is None:
                    if self.unk_per_char:  # keras-bert: one char as an (unknown) piece, go on
                        sub_tokens.append(("##" if start > 0 else "") + chars[start])
                        start += 1
                        continue
                    is_bad = True
                    break
                sub_tokens.append(cur_substr)
                start = end

            if is_bad:
                output_tokens.append(self.unk_token)
            else:
                output_tokens.extend(sub_tokens)
        return output_tokens


class OriginalFullTokenizer(object):
    """FullTokenizer with the vocab passed in (the original reads vocab_file with tf.gfile)."""

    def __init__(self, vocab, do_lower_case=True, max_input_chars_per_word=200, **deviations):
        self.vocab = vocab
        self.inv_vocab = {v: k for k, v in self.vocab.items()}
        unk_per_char = deviations.pop("unk_per_char", False)
        self.basic_tokenizer = OriginalBasicTokenizer(do_lower_case=do_lower_case, **deviations)
        self.wordpiece_tokenizer = OriginalWordpieceTokenizer(
            vocab=self.vocab, max_input_chars_per_word=max_input_chars_per_word,
            unk_per_char=unk_per_char)

    def tokenize(self, text):
        split_tokens = []
        for token in self.basic_tokenizer.tokenize(text):
            for sub_token in self.wordpiece_tokenizer.tokenize(token):
                split_tokens.append(sub_token)
        return split_tokens

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[t] for t in tokens]


def original_truncate_seq_pair(tokens_a, tokens_b, max_length):
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def original_bert_convert_single_example(text_a, text_b, max_seq_length, tokenizer):
    """run_classifier.py's convert_single_example without labels and logging."""
    tokens_a = tokenizer.tokenize(text_a)
    tokens_b = None
    if text_b:
        tokens_b = tokenizer.tokenize(text_b)
    if tokens_b:
        original_truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
    else:
        if len(tokens_a) > max_seq_length - 2:
            tokens_a = tokens_a[0:(max_seq_length - 2)]
    tokens = []
    segment_ids = []
    tokens.append("[CLS]")
    segment_ids.append(0)
    for token in tokens_a:
        tokens.append(token)
        segment_ids.append(0)
    tokens.append("[SEP]")
    segment_ids.append(0)
    if tokens_b:
        for token in tokens_b:
            tokens.append(token)
            segment_ids.append(1)
        tokens.append("[SEP]")
        segment_ids.append(1)
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    input_mask = [1] * len(input_ids)
    while len(input_ids) < max_seq_length:
        input_ids.append(0)
        input_mask.append(0)
        segment_ids.append(0)
    assert len(input_ids) == max_seq_length
    return input_ids, input_mask, segment_ids


# deviations of each BERT port, by name (the README lists them)
TRANSFORMERS_BERT_SPECIALS = ("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]")
TRANSFORMERS_BERT_DEVIATIONS = dict(nfc=True, control_all_c=True, max_input_chars_per_word=100)
KERAS_BERT_DEVIATIONS = dict(strip_before_lower=True, unk_per_char=True, max_input_chars_per_word=None)


# ================================================================================================
# Transcribed from zihangdai/xlnet prepro_utils.py and classifier_utils.py
# https://github.com/zihangdai/xlnet/blob/master/prepro_utils.py
# https://github.com/zihangdai/xlnet/blob/master/classifier_utils.py
# ================================================================================================
SPIECE_UNDERLINE = '▁'
SEP_ID, CLS_ID = 4, 3
SEG_ID_A, SEG_ID_B, SEG_ID_CLS, SEG_ID_SEP, SEG_ID_PAD = 0, 1, 2, 3, 4


def original_preprocess_text(inputs, lower=False, remove_space=True, keep_accents=False):
    if remove_space:
        outputs = ' '.join(inputs.strip().split())
    else:
        outputs = inputs
    outputs = outputs.replace("``", '"').replace("''", '"')

    if not keep_accents:
        outputs = unicodedata.normalize('NFKD', outputs)
        outputs = ''.join([c for c in outputs if not unicodedata.combining(c)])
    if lower:
        outputs = outputs.lower()

    return outputs


def original_encode_pieces(sp_model, text, return_unicode=True, sample=False):
    if not sample:
        pieces = sp_model.EncodeAsPieces(text)
    else:
        pieces = sp_model.SampleEncodeAsPieces(text, 64, 0.1)
    new_pieces = []
    for piece in pieces:
        if len(piece) > 1 and piece[-1] == ',' and piece[-2].isdigit():
            cur_pieces = sp_model.EncodeAsPieces(
                piece[:-1].replace(SPIECE_UNDERLINE, ''))
            if piece[0] != SPIECE_UNDERLINE and cur_pieces[0][0] == SPIECE_UNDERLINE:
                if len(cur_pieces[0]) == 1:
                    cur_pieces = cur_pieces[1:]
                else:
                    cur_pieces[0] = cur_pieces[0][1:]
            cur_pieces.append(piece[-1])
            new_pieces.extend(cur_pieces)
        else:
            new_pieces.append(piece)
    return new_pieces


def original_encode_ids(sp_model, text, sample=False):
    pieces = original_encode_pieces(sp_model, text, return_unicode=False, sample=sample)
    ids = [sp_model.PieceToId(piece) for piece in pieces]
    return ids


def original_xlnet_convert_single_example(text_a, text_b, max_seq_length, tokenize_fn):
    """classifier_utils.py's convert_single_example without labels and logging."""
    tokens_a = tokenize_fn(text_a)
    tokens_b = None
    if text_b:
        tokens_b = tokenize_fn(text_b)
    if tokens_b:
        original_truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
    else:
        if len(tokens_a) > max_seq_length - 2:
            tokens_a = tokens_a[:max_seq_length - 2]
    tokens = []
    segment_ids = []
    for token in tokens_a:
        tokens.append(token)
        segment_ids.append(SEG_ID_A)
    tokens.append(SEP_ID)
    segment_ids.append(SEG_ID_A)
    if tokens_b:
        for token in tokens_b:
            tokens.append(token)
            segment_ids.append(SEG_ID_B)
        tokens.append(SEP_ID)
        segment_ids.append(SEG_ID_B)
    tokens.append(CLS_ID)
    segment_ids.append(SEG_ID_CLS)
    input_ids = tokens
    input_mask = [0] * len(input_ids)
    if len(input_ids) < max_seq_length:
        delta_len = max_seq_length - len(input_ids)
        input_ids = [0] * delta_len + input_ids
        input_mask = [1] * delta_len + input_mask
        segment_ids = [SEG_ID_PAD] * delta_len + segment_ids
    assert len(input_ids) == max_seq_length
    return input_ids, input_mask, segment_ids


# transformers 5's XLNetTokenizer (tokenizers' Unigram, converted from spiece.model), explained:
# every control and user-defined piece of the model (<cls>, <sep>, ..., <eop>, ".", "(", ...)
# is an added token there: the text is cut around each one typed in it (control symbols
# included, which sentencepiece treats as plain text) and each part is encoded on its own, so a
# part after "." starts with a fresh "▁" ("U.S.A." -> ▁ U . ▁ S . ▁ A .); its normalizer strips
# every mark (categories Mn, Mc, Me) where preprocess_text drops combining characters (nonzero
# combining class); it splits words after sentencepiece's normalizer, which deletes \x0b and
# \x1c-\x1f, where preprocess_text first splits on Python's whitespace, which includes them
# (so "a\x0bb" is one word there, two here); it has no digit-comma rule. Its Unigram also
# breaks ties between equally scored segmentations differently (unigram_tie below).
TRANSFORMERS_XLNET_ADDED = ("<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>",
                            ".", "(", ")", '"', "-", "–", "£", "€")


def transformers_xlnet_explained(sp_model, text):
    """The original pipeline with transformers' deviations switched on (see above)."""
    pieces = []
    for part, added in _split_on_specials(text, TRANSFORMERS_XLNET_ADDED):
        if added:
            pieces.append(part)
            continue
        # no Python str.split: Rust's whitespace split after the normalizer (U+0085 is the one
        # whitespace character sentencepiece's normalizer keeps; Rust splits on it too)
        part = part.replace("``", '"').replace("''", '"').replace("\x85", " ")
        part = unicodedata.normalize('NFKD', part)
        part = ''.join(c for c in part if not unicodedata.category(c).startswith("M"))
        pieces.extend(sp_model.EncodeAsPieces(part))  # no digit-comma rule
    return pieces


def transformers_bert_explained(vocab, text, do_lower_case):
    """The original FullTokenizer with transformers' deviations: the text is first cut around
    every special token typed in it ([CLS] ... stay whole, anywhere), then NFC, C* controls,
    100 characters a word."""
    tokenizer = OriginalFullTokenizer(vocab, do_lower_case, **TRANSFORMERS_BERT_DEVIATIONS)
    pieces = []
    for part, special in _split_on_specials(text, TRANSFORMERS_BERT_SPECIALS):
        pieces.extend([part] if special else tokenizer.tokenize(part))
    return pieces


def _split_on_specials(text, specials):
    """[(part, is_special)]: text cut around every occurrence of a special token."""
    out, i, start = [], 0, 0
    while i < len(text):
        hit = next((s for s in specials if text.startswith(s, i)), None)
        if hit:
            if start < i:
                out.append((text[start:i], False))
            out.append((hit, True))
            i += len(hit)
            start = i
        else:
            i += 1
    if start < len(text):
        out.append((text[start:], False))
    return out


# ================================================================================================
# Hypothesis: awkward text
# ================================================================================================
WORDS = ["All's", "right", "with", "the", "world", "Unaffable", "unaffable", "naïve", "café",
         "Ελληνικά", "ΣΑΣ", "İstanbul", "straße", "ﬁne", "ＡＢＣ", "世界", "中文", "한국어", "ひらがな",
         "ที่นี่", "e\u0301", "\u0301", "a\u0308\u0301", "1,000", "2000,", "10,", "20,000,", "3.14",
         "``quoted''", "''", "``", "[CLS]", "[SEP]", "[UNK]", "[MASK]", "<sep>", "<cls>", "<eop>",
         "<eod>", "<unk>", "<pad>", "##s", "##", "don't", "U.S.A.", "e-mail", "£5", "€6", "–"]
SPECIAL_CHARS = list(" \t\n\r\x0b\x0c\u00a0\u2002\u3000\u2028\u0085\x00\x07\x1b\x7f\u200b\u200d"
                     "\ufeff\u00ad\ufffd\ue000\U000f0000\u0378\u05c4.,!?'\"-–—()[]{}:;/\\@#$%^&*_~`|<>"
                     "£€¥©®°§¶…‘’“”«»¿¡") + ["\U0001F600", "\u0300", "\u0327", "\u20dd", "\u0e34"]


def long_words():
    return st.text(alphabet="abcdefghijklmnop", min_size=95, max_size=210)


def texts(max_parts: int = 10):
    """Text built from words, separators, single awkward characters, any code point but lone
    surrogates (sentencepiece takes UTF-8), and sometimes a long word (the 100/200 limits)."""
    part = st.one_of(
        st.sampled_from(WORDS),
        st.sampled_from(SPECIAL_CHARS),
        st.characters(exclude_categories=("Cs",)),
        st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=4),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ,.'", max_size=12),
    )
    return st.one_of(
        st.lists(part, max_size=max_parts).map("".join),
        st.tuples(st.lists(part, max_size=3).map("".join), long_words(),
                  st.lists(part, max_size=3).map("".join)).map(" ".join),
        st.sampled_from(["", " ", "\t\n ", "\u3000", "\x00", "\u200b"]),
    )


def unigram_tie(sp_model, pieces_a, pieces_b) -> bool:
    """Whether two segmentations of the same text are a tie of the unigram model: equal
    concatenations (NFC, as unknown pieces' surfaces may differ in normal form), equal total
    score. tokenizers' Unigram and sentencepiece break such ties differently ('l' 'll' / 'll' 'l')."""
    def score(pieces):
        return sum(sp_model.GetScore(sp_model.PieceToId(p)) for p in pieces)
    same_text = unicodedata.normalize("NFC", "".join(pieces_a)) == unicodedata.normalize("NFC", "".join(pieces_b))
    return same_text and abs(score(pieces_a) - score(pieces_b)) < 1e-4
