"""Text in: the tokenizers of the original repositories, and their input layouts.

* `BertTokenizer`: google-research/bert tokenization.py's FullTokenizer (BasicTokenizer, then
  WordpieceTokenizer), pure Python, function by function after the original; `encode` lays the
  pieces out as run_classifier.py's convert_single_example does.
  https://github.com/google-research/bert/blob/master/tokenization.py
* `XLNetTokenizer`: zihangdai/xlnet prepro_utils.py (preprocess_text, encode_pieces) on the
  `sentencepiece` package (the optional `[text]` extra, imported only when an XLNetTokenizer is
  made); `encode` lays the pieces out as classifier_utils.py's convert_single_example does:
  A <sep> B <sep> <cls>, LEFT padding.
  https://github.com/zihangdai/xlnet/blob/master/prepro_utils.py
* `tokenizer_for(checkpoint_dir)`: the tokenizer of a checkpoint folder (vocab.txt or
  spiece.model beside the checkpoint, as the official releases ship them).
* `segments_for_memory(ids, target_len)`: a sentence cut into segments of target_len, for the
  XLNet memory walkthrough (keras-xlnet's memory_len / target_len example).

Both `encode`s return refimpl's convention: `attention_mask` 1 = real token, 0 = padding (the
original XLNet's input_mask is 1 - attention_mask). Where the anchors (transformers,
keras-bert, keras-xlnet) differ from the originals, refimpl follows the original; the
differences are listed in the README's "Text in" section, and the ones that are conventions
rather than slips are options here (`max_input_chars_per_word`, `XLNetTokenizer.keras`).

Imports nothing beyond the standard library at import time.
"""
from __future__ import annotations

import collections
import numbers
import os
import unicodedata

# --- shared --------------------------------------------------------------------------------------


def convert_to_unicode(text, what: str = "text") -> str:
    """str as is, bytes decoded as UTF-8 (invalid bytes dropped), as the originals do; anything
    else is a ValueError naming its type."""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8", "ignore")
    raise ValueError(f"{what} must be a str (or UTF-8 bytes), got {type(text).__name__} {text!r:.60}")


def _check_max_len(max_len, n_special: int, layout: str) -> int | None:
    if max_len is None:
        return None
    if isinstance(max_len, bool) or not isinstance(max_len, numbers.Integral):
        raise ValueError(f"max_len must be an int or None, got {type(max_len).__name__} {max_len!r}")
    max_len = int(max_len)
    if max_len < n_special:
        raise ValueError(f"max_len={max_len} is too small: the layout {layout} needs {n_special} "
                         f"positions for its special tokens, so max_len must be >= {n_special}")
    return max_len


def _truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
    """Truncates a sequence pair in place to max_length, one token at a time from the longer
    (from text_b when they are equally long). run_classifier.py / classifier_utils.py."""
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


# --- BERT: google-research/bert tokenization.py ---------------------------------------------------

BERT_MAX_INPUT_CHARS_PER_WORD = 200  # the original's; transformers uses 100

# validate_case_matches_checkpoint's lists: the releases that are cased (do_lower_case=False)
BERT_CASED_MODELS = ("cased_L-12_H-768_A-12", "cased_L-24_H-1024_A-16", "multi_cased_L-12_H-768_A-12")


def _truncated_pieces(tokenizer, text_a, text_b, max_len, layouts: tuple[str, str]):
    """The pieces of text_a and text_b (None when text_b is None or has no pieces), truncated
    to fit max_len with their 2 (one text) or 3 (two texts) special tokens, as
    convert_single_example does in both originals: -> (tokens_a, tokens_b, max_len).
    layouts: the one-text and two-text layouts, named in the error for a too small max_len."""
    tokens_a = tokenizer.tokenize(convert_to_unicode(text_a, "text_a"))
    tokens_b = None
    if text_b is not None and convert_to_unicode(text_b, "text_b"):
        tokens_b = tokenizer.tokenize(text_b)
    max_len = _check_max_len(max_len, 3 if tokens_b else 2, layouts[1] if tokens_b else layouts[0])
    if max_len is not None:
        if tokens_b:
            _truncate_seq_pair(tokens_a, tokens_b, max_len - 3)
        elif len(tokens_a) > max_len - 2:
            tokens_a = tokens_a[:max_len - 2]
    return tokens_a, tokens_b, max_len


def load_vocab(vocab_file) -> "collections.OrderedDict[str, int]":
    """vocab.txt (one token a line) -> {token: line number}. Each line is stripped of surrounding
    whitespace; a token listed twice keeps its last line number (as the original's dict does)."""
    path = os.fspath(vocab_file)
    if os.path.isdir(path):
        raise FileNotFoundError(f"BERT vocabulary {path!r} is a directory; expected the vocab.txt file "
                                "(or use text.tokenizer_for(checkpoint_dir))")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no BERT vocabulary file at {path!r} (expected vocab.txt: one token "
                                "a line, as the official BERT releases ship it)")
    vocab = collections.OrderedDict()
    with open(path, "rb") as reader:
        for index, line in enumerate(reader):
            vocab[convert_to_unicode(line).strip()] = index
    if not vocab:
        raise ValueError(f"BERT vocabulary {path!r} is empty; expected one token a line")
    return vocab


def whitespace_tokenize(text: str) -> list[str]:
    """Runs basic whitespace cleaning and splitting on a piece of text."""
    text = text.strip()
    if not text:
        return []
    return text.split()


def _is_whitespace(char: str) -> bool:
    """Space, tab, newline, carriage return, or Unicode category Zs."""
    if char in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    """Categories Cc and Cf, except tab, newline and carriage return (whitespace). Since the
    original's 2019 emoji fix; transformers still tests every C* category (Co private use and
    Cn unassigned characters too, which it therefore drops and the original keeps)."""
    if char in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    """All non-letter/number ASCII, or Unicode category P*."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp: int) -> bool:
    """Whether code point cp is in a CJK Unified Ideographs block (not Hangul, Hiragana, Katakana)."""
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _clean_text(text: str) -> str:
    """Removes NUL, U+FFFD and control characters; turns every whitespace character into a space."""
    output = []
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            continue
        output.append(" " if _is_whitespace(char) else char)
    return "".join(output)


def _tokenize_chinese_chars(text: str) -> str:
    """Adds whitespace around any CJK character."""
    return "".join(f" {char} " if _is_chinese_char(ord(char)) else char for char in text)


def _run_strip_accents(text: str) -> str:
    """NFD, then drops nonspacing marks (category Mn)."""
    text = unicodedata.normalize("NFD", text)
    return "".join(char for char in text if unicodedata.category(char) != "Mn")


def _run_split_on_punc(text: str) -> list[str]:
    """Splits a word before and after every punctuation character."""
    output: list[list[str]] = []
    start_new_word = True
    for char in text:
        if _is_punctuation(char):
            output.append([char])
            start_new_word = True
        else:
            if start_new_word:
                output.append([])
            start_new_word = False
            output[-1].append(char)
    return ["".join(x) for x in output]


def basic_tokenize(text: str, do_lower_case: bool = True) -> list[str]:
    """BasicTokenizer.tokenize: clean, space out CJK characters, split on whitespace, lower-case
    each word (`str.lower` of the whole word) and strip its accents (only when lower-casing),
    split on punctuation."""
    text = _clean_text(convert_to_unicode(text))
    text = _tokenize_chinese_chars(text)
    split_tokens = []
    for token in whitespace_tokenize(text):
        if do_lower_case:
            token = token.lower()
            token = _run_strip_accents(token)
        split_tokens.extend(_run_split_on_punc(token))
    return whitespace_tokenize(" ".join(split_tokens))


def wordpiece_tokenize(text: str, vocab, unk_token: str = "[UNK]",
                       max_input_chars_per_word: int = BERT_MAX_INPUT_CHARS_PER_WORD) -> list[str]:
    """WordpieceTokenizer.tokenize: greedy longest-match-first over each whitespace-separated
    word; continuation pieces carry "##"; a word longer than max_input_chars_per_word, or with
    a part no piece matches, becomes one unk_token."""
    output_tokens = []
    for token in whitespace_tokenize(convert_to_unicode(text)):
        chars = list(token)
        if len(chars) > max_input_chars_per_word:
            output_tokens.append(unk_token)
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
                if substr in vocab:
                    cur_substr = substr
                    break
                end -= 1
            if cur_substr is None:
                is_bad = True
                break
            sub_tokens.append(cur_substr)
            start = end
        if is_bad:
            output_tokens.append(unk_token)
        else:
            output_tokens.extend(sub_tokens)
    return output_tokens


class BertTokenizer:
    """google-research/bert's FullTokenizer, and run_classifier.py's input layout.

    vocab_file: vocab.txt. do_lower_case: True for the uncased releases (lower-case, then strip
    accents), False for the cased ones. max_input_chars_per_word: the original's 200; 100
    reproduces transformers' BertTokenizer on long words.

    tokenize(text) -> pieces; encode(text_a, text_b=None, max_len=None) -> dict of lists
    (token_ids, segment_ids, attention_mask)."""

    cls_token, sep_token, unk_token, pad_id = "[CLS]", "[SEP]", "[UNK]", 0

    def __init__(self, vocab_file, do_lower_case: bool = True,
                 max_input_chars_per_word: int = BERT_MAX_INPUT_CHARS_PER_WORD):
        if not isinstance(do_lower_case, bool):
            raise ValueError(f"do_lower_case must be True or False, got {do_lower_case!r}")
        if isinstance(max_input_chars_per_word, bool) or not isinstance(max_input_chars_per_word, int) \
                or max_input_chars_per_word < 1:
            raise ValueError(f"max_input_chars_per_word must be a positive int, got {max_input_chars_per_word!r}")
        self.vocab_file = os.fspath(vocab_file)
        self.vocab = load_vocab(vocab_file)
        missing = [t for t in (self.unk_token, self.cls_token, self.sep_token) if t not in self.vocab]
        if missing:
            raise ValueError(f"BERT vocabulary {self.vocab_file!r} lacks {', '.join(missing)}; "
                             "expected [UNK], [CLS] and [SEP] among its tokens")
        self.inv_vocab = {v: k for k, v in self.vocab.items()}
        self.do_lower_case = do_lower_case
        self.max_input_chars_per_word = max_input_chars_per_word

    def __repr__(self) -> str:
        return (f"BertTokenizer({self.vocab_file!r}, do_lower_case={self.do_lower_case}, "
                f"vocab_size={len(self.vocab)})")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def tokenize(self, text) -> list[str]:
        """FullTokenizer.tokenize: basic_tokenize, then wordpiece_tokenize each word."""
        split_tokens = []
        for token in basic_tokenize(convert_to_unicode(text), self.do_lower_case):
            split_tokens.extend(wordpiece_tokenize(token, self.vocab, self.unk_token,
                                                   self.max_input_chars_per_word))
        return split_tokens

    def convert_tokens_to_ids(self, tokens) -> list[int]:
        """Pieces -> ids; a token not in the vocabulary is a ValueError (the original: KeyError)."""
        unknown = [t for t in tokens if t not in self.vocab]
        if unknown:
            raise ValueError(f"tokens not in the vocabulary {self.vocab_file!r}: {unknown[:5]}")
        return [self.vocab[t] for t in tokens]

    def convert_ids_to_tokens(self, ids) -> list[str]:
        """Ids -> pieces; an id outside [0, vocab size) is a ValueError."""
        bad = [i for i in ids if int(i) not in self.inv_vocab]
        if bad:
            raise ValueError(f"ids {bad[:5]} are not in the vocabulary (ids 0..{len(self.vocab) - 1})")
        return [self.inv_vocab[int(i)] for i in ids]

    ids_to_tokens = convert_ids_to_tokens

    def encode(self, text_a, text_b=None, max_len: int | None = None) -> dict[str, list]:
        """run_classifier.py's convert_single_example: [CLS] A [SEP] (B [SEP]), segment ids 0 for
        [CLS], A and its [SEP], 1 for B and its [SEP]. An empty text_b, or one whose pieces are
        all truncated away, adds no B part and no second [SEP] (as the original's `if tokens_b`).

        max_len: None keeps every piece and pads nothing; an int truncates (the longer text one
        piece at a time, text_b on ties) and pads on the RIGHT with id 0, segment 0, mask 0.

        -> {"token_ids", "segment_ids", "attention_mask": lists of int, "tokens": the piece of
        each position (pads included), for labels}."""
        tokens_a, tokens_b, max_len = _truncated_pieces(self, text_a, text_b, max_len,
                                                        ("[CLS] A [SEP]", "[CLS] A [SEP] B [SEP]"))
        tokens = [self.cls_token] + tokens_a + [self.sep_token]
        segment_ids = [0] * len(tokens)
        if tokens_b:
            tokens += tokens_b + [self.sep_token]
            segment_ids += [1] * (len(tokens_b) + 1)
        token_ids = self.convert_tokens_to_ids(tokens)
        attention_mask = [1] * len(token_ids)
        pad = 0 if max_len is None else max_len - len(token_ids)
        return {"token_ids": token_ids + [self.pad_id] * pad, "segment_ids": segment_ids + [0] * pad,
                "attention_mask": attention_mask + [0] * pad,
                "tokens": tokens + [self.inv_vocab.get(self.pad_id, "[PAD]")] * pad}


# --- XLNet: zihangdai/xlnet prepro_utils.py, data_utils.py, classifier_utils.py ------------------

SPIECE_UNDERLINE = "▁"
# data_utils.py's special_symbols (hard-coded ids of the official spiece.model)
XLNET_SPECIAL_IDS = {"<unk>": 0, "<s>": 1, "</s>": 2, "<cls>": 3, "<sep>": 4, "<pad>": 5,
                     "<mask>": 6, "<eod>": 7, "<eop>": 8}
UNK_ID, CLS_ID, SEP_ID, PAD_ID = 0, 3, 4, 5
# classifier_utils.py (SEG_ID_SEP is defined there but unused: each <sep> takes its text's id)
SEG_ID_A, SEG_ID_B, SEG_ID_CLS, SEG_ID_SEP, SEG_ID_PAD = 0, 1, 2, 3, 4
DIGIT_COMMA_RULES = ("xlnet", "keras", "none")


def preprocess_text(inputs: str, lower: bool = False, remove_space: bool = True,
                    keep_accents: bool = False, map_quotes: bool = True) -> str:
    """prepro_utils.py's preprocess_text: collapse whitespace runs to one space and strip the
    ends, map `` and '' to ", NFKD then drop combining characters (nonzero combining class),
    lower-case. map_quotes=False skips the quote mapping (keras-xlnet)."""
    outputs = " ".join(inputs.strip().split()) if remove_space else inputs
    if map_quotes:
        outputs = outputs.replace("``", '"').replace("''", '"')
    if not keep_accents:
        outputs = unicodedata.normalize("NFKD", outputs)
        outputs = "".join(c for c in outputs if not unicodedata.combining(c))
    if lower:
        outputs = outputs.lower()
    return outputs


def encode_pieces(sp_model, text: str, digit_comma: str = "xlnet") -> list[str]:
    """prepro_utils.py's encode_pieces: sentencepiece pieces, except that a piece ending in
    "<digit>," is re-encoded without its comma (and without "▁"), its leading "▁" dropped when
    the piece had none, and "," appended as a piece of its own: "▁2000," -> "▁2000", ",".

    digit_comma: "xlnet" (the original), "keras" (keras-xlnet's copy: a re-encoded first piece
    that is just "▁" becomes an empty piece instead of being dropped), "none" (no rule)."""
    if digit_comma not in DIGIT_COMMA_RULES:
        raise ValueError(f"digit_comma must be one of {DIGIT_COMMA_RULES}, got {digit_comma!r}")
    pieces = sp_model.EncodeAsPieces(text)
    if digit_comma == "none":
        return list(pieces)
    new_pieces = []
    for piece in pieces:
        if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
            cur_pieces = sp_model.EncodeAsPieces(piece[:-1].replace(SPIECE_UNDERLINE, ""))
            if piece[0] != SPIECE_UNDERLINE and cur_pieces[0][0] == SPIECE_UNDERLINE:
                if len(cur_pieces[0]) == 1 and digit_comma == "xlnet":
                    cur_pieces = cur_pieces[1:]
                else:
                    cur_pieces[0] = cur_pieces[0][1:]
            cur_pieces.append(piece[-1])
            new_pieces.extend(cur_pieces)
        else:
            new_pieces.append(piece)
    return new_pieces


def _load_sentencepiece(spiece_model):
    try:
        import sentencepiece as spm
    except ImportError as e:
        raise ImportError("refimpl.text.XLNetTokenizer needs the sentencepiece package, an optional "
                          "dependency: pip install 'refimpl[text]'") from e
    path = os.fspath(spiece_model)
    if os.path.isdir(path):
        raise FileNotFoundError(f"sentencepiece model {path!r} is a directory; expected the spiece.model "
                                "file (or use text.tokenizer_for(checkpoint_dir))")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no sentencepiece model at {path!r} (expected spiece.model, as the "
                                "official XLNet releases ship it)")
    sp = spm.SentencePieceProcessor()
    try:
        sp.Load(path)
    except (RuntimeError, OSError) as e:
        raise ValueError(f"{path!r} is not a sentencepiece model ({e})") from None
    return sp


class XLNetTokenizer:
    """zihangdai/xlnet's preprocess_text + encode_pieces on sentencepiece, and
    classifier_utils.py's input layout.

    spiece_model: spiece.model. lower: the uncased models' preprocessing (the official XLNet
    models are cased: False). remove_space, keep_accents, map_quotes: preprocess_text's steps.
    digit_comma: encode_pieces' rule ("xlnet", "keras", "none"). pad_id: the id padding takes
    (0 in classifier_utils.py; keras-xlnet pads and masks its SYM_PAD = 5).
    `XLNetTokenizer.keras(path)` makes keras-xlnet's Tokenizer with its defaults.

    tokenize(text) -> pieces; encode(text_a, text_b=None, max_len=None) -> dict of lists."""

    def __init__(self, spiece_model, lower: bool = False, remove_space: bool = True,
                 keep_accents: bool = False, map_quotes: bool = True, digit_comma: str = "xlnet",
                 pad_id: int = 0):
        for name, value in (("lower", lower), ("remove_space", remove_space),
                            ("keep_accents", keep_accents), ("map_quotes", map_quotes)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        if digit_comma not in DIGIT_COMMA_RULES:
            raise ValueError(f"digit_comma must be one of {DIGIT_COMMA_RULES}, got {digit_comma!r}")
        self.spiece_model = os.fspath(spiece_model)
        self.sp = _load_sentencepiece(spiece_model)
        if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not 0 <= pad_id < self.vocab_size:
            raise ValueError(f"pad_id must be an id of the model (0..{self.vocab_size - 1}), got {pad_id!r}")
        wrong = {p: self.sp.PieceToId(p) for p, i in XLNET_SPECIAL_IDS.items()
                 if p in ("<cls>", "<sep>") and self.sp.PieceToId(p) != i}
        if wrong:
            raise ValueError(f"{self.spiece_model!r} has {wrong}; XLNet hard-codes <cls> = {CLS_ID} and "
                             f"<sep> = {SEP_ID} (data_utils.py)")
        self.lower, self.remove_space, self.keep_accents = lower, remove_space, keep_accents
        self.map_quotes, self.digit_comma, self.pad_id = map_quotes, digit_comma, pad_id

    @classmethod
    def keras(cls, spiece_model, lower: bool = False) -> "XLNetTokenizer":
        """keras-xlnet 0.20's Tokenizer(spm_path) (remove_spaces=True, remove_accents=False,
        cased=not lower): no quote mapping, accents kept, its digit-comma copy; pads with 5."""
        return cls(spiece_model, lower=lower, keep_accents=True, map_quotes=False,
                   digit_comma="keras", pad_id=PAD_ID)

    def __repr__(self) -> str:
        return (f"XLNetTokenizer({self.spiece_model!r}, lower={self.lower}, keep_accents={self.keep_accents}, "
                f"map_quotes={self.map_quotes}, digit_comma={self.digit_comma!r}, pad_id={self.pad_id})")

    @property
    def vocab_size(self) -> int:
        return self.sp.GetPieceSize()

    def tokenize(self, text) -> list[str]:
        """encode_pieces(preprocess_text(text)): the pieces run_classifier.py's tokenize_fn ids."""
        text = preprocess_text(convert_to_unicode(text), self.lower, self.remove_space,
                               self.keep_accents, self.map_quotes)
        return encode_pieces(self.sp, text, self.digit_comma)

    def convert_tokens_to_ids(self, pieces) -> list[int]:
        """sp.PieceToId per piece (encode_ids): a piece not in the model is <unk> = 0."""
        return [self.sp.PieceToId(p) for p in pieces]

    def convert_ids_to_tokens(self, ids) -> list[str]:
        bad = [i for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ValueError(f"ids {bad[:5]} are not in the model (ids 0..{self.vocab_size - 1})")
        return [self.sp.IdToPiece(int(i)) for i in ids]

    ids_to_tokens = convert_ids_to_tokens

    def encode(self, text_a, text_b=None, max_len: int | None = None) -> dict[str, list]:
        """classifier_utils.py's convert_single_example: A <sep> (B <sep>) <cls>, segment ids
        A = 0 (its <sep> too), B = 1 (its <sep> too), <cls> = 2. An empty text_b, or one whose
        pieces are all truncated away, adds no B part (as the original's `if tokens_b`).

        max_len: None pads nothing; an int truncates as BERT does (the longer text first,
        text_b on ties) and pads on the LEFT with pad_id, segment id 4 (SEG_ID_PAD),
        attention_mask 0 (the original's input_mask 1 = padding is 1 - attention_mask).

        -> {"token_ids", "segment_ids", "attention_mask": lists of int, "tokens": the piece of
        each position (pads: the piece of pad_id), for labels}."""
        tokens_a, tokens_b, max_len = _truncated_pieces(self, text_a, text_b, max_len,
                                                        ("A <sep> <cls>", "A <sep> B <sep> <cls>"))
        token_ids = self.convert_tokens_to_ids(tokens_a) + [SEP_ID]
        segment_ids = [SEG_ID_A] * len(token_ids)
        tokens = tokens_a + ["<sep>"]
        if tokens_b:
            token_ids += self.convert_tokens_to_ids(tokens_b) + [SEP_ID]
            segment_ids += [SEG_ID_B] * (len(tokens_b) + 1)
            tokens += tokens_b + ["<sep>"]
        token_ids.append(CLS_ID)
        segment_ids.append(SEG_ID_CLS)
        tokens.append("<cls>")
        pad = 0 if max_len is None else max_len - len(token_ids)
        return {"token_ids": [self.pad_id] * pad + token_ids,
                "segment_ids": [SEG_ID_PAD] * pad + segment_ids,
                "attention_mask": [0] * pad + [1] * len(token_ids),
                "tokens": [self.sp.IdToPiece(self.pad_id)] * pad + tokens}


# --- helpers for the command line ------------------------------------------------------------------

VOCAB_FILES = {"bert": "vocab.txt", "xlnet": "spiece.model"}
CONFIG_FILES = {"bert": "bert_config.json", "xlnet": "xlnet_config.json"}


def _checkpoint_folder(checkpoint) -> str:
    path = os.fspath(checkpoint)
    return path if os.path.isdir(path) else os.path.dirname(path) or "."


def tokenizer_for(checkpoint, model: str | None = None, lower: bool | None = None):
    """The tokenizer of a checkpoint: vocab.txt (BERT) or spiece.model (XLNet) in the folder of
    `checkpoint` (a folder, or a checkpoint prefix such as .../bert_model.ckpt).

    model: "bert" or "xlnet"; None infers it from bert_config.json / xlnet_config.json there.
    lower: None uses the official releases' casing: BERT lower-cases unless the folder is one
    of the cased releases (validate_case_matches_checkpoint's list); XLNet is cased."""
    folder = _checkpoint_folder(checkpoint)
    if model is None:
        found = [m for m, name in CONFIG_FILES.items() if os.path.isfile(os.path.join(folder, name))]
        if len(found) != 1:
            raise ValueError(f"cannot tell the model of {folder!r}: expected exactly one of "
                             f"{', '.join(CONFIG_FILES.values())} there, found {found or 'none'}; "
                             "pass model='bert' or model='xlnet'")
        model = found[0]
    if model not in VOCAB_FILES:
        raise ValueError(f"model must be 'bert' or 'xlnet', got {model!r}")
    path = os.path.join(folder, VOCAB_FILES[model])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {VOCAB_FILES[model]} in {folder!r}: {model} text input needs the "
                                f"vocabulary file of the checkpoint beside it (the official releases ship "
                                f"{VOCAB_FILES[model]} next to the checkpoint)")
    if model == "bert":
        if lower is None:
            lower = os.path.basename(os.path.abspath(folder)) not in BERT_CASED_MODELS
        return BertTokenizer(path, do_lower_case=lower)
    return XLNetTokenizer(path, lower=bool(lower))


def segments_for_memory(token_ids, target_len: int, pad_id: int = PAD_ID) -> list[dict]:
    """A sentence cut into consecutive segments of target_len ids, for running XLNet segment by
    segment with the memory of the previous ones (keras-xlnet's memory_len/target_len example:
    7 pieces, target_len 3 -> [0:3], [3:6], [6:7] + 2 pads).

    -> one dict per segment: token_ids and attention_mask (lists of target_len ints; the last
    segment padded on the RIGHT with pad_id, mask 0; keras-xlnet pads with its SYM_PAD = 5 and
    masks that id), start (the position of the segment's first id = the memory length a
    keras-xlnet model is given for it)."""
    ids = [int(i) for i in token_ids]
    if isinstance(target_len, bool) or not isinstance(target_len, numbers.Integral) or target_len < 1:
        raise ValueError(f"target_len must be a positive int, got {target_len!r}")
    if not ids:
        raise ValueError("token_ids is empty: nothing to cut into segments")
    segments = []
    target_len = int(target_len)
    for start in range(0, len(ids), target_len):
        chunk = ids[start:start + target_len]
        pad = target_len - len(chunk)
        segments.append({"token_ids": chunk + [pad_id] * pad,
                         "attention_mask": [1] * len(chunk) + [0] * pad, "start": start})
    return segments
