"""Write the tiny vocabulary files beside the tiny checkpoints, as the official releases ship them.

    python tools/make_vocab.py [--out golden/checkpoints] [--check]

* bert-tiny/vocab.txt: 100 lines (bert_config.json's vocab_size), one token a line, written
  from the list below. [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4: the ids the golden
  example `refimpl run --model bert` uses (2 ... 3 ... 3) read as [CLS] ... [SEP] ... [SEP], with
  4 as [MASK]. (The official vocabularies put [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102,
  [MASK] 103 after 99 [unusedN] slots; a vocabulary of 100 has no room for that.) Lower-case
  entries, as an uncased release: ASCII punctuation, digits, letters, their ## continuations,
  a few words and suffixes, two CJK characters.
* xlnet-tiny/spiece.model (and a copy in xlnet-tiny-tied/): a unigram sentencepiece model of
  100 pieces (xlnet_config.json's n_token), trained with the options of zihangdai/xlnet's
  README (control symbols <cls>,<sep>,<pad>,<mask>,<eod>; user-defined symbols
  <eop>,.,(,),",-,–,£,€), so that the ids data_utils.py hard-codes hold: <unk> 0, <s> 1, </s> 2,
  <cls> 3, <sep> 4, <pad> 5, <mask> 6, <eod> 7, <eop> 8. The corpus is the short English text
  below, fed from memory (the model records no input path); one thread, no shuffling and a
  fixed random seed make the file byte-identical on every run (--check verifies that against
  VOCAB.json without writing).

The sha256 of every file, the command and the sentencepiece version go to VOCAB.json beside
the folders. Run from the repository root with the project's venv (needs sentencepiece).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys

COMMAND = "python tools/make_vocab.py"

BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_PUNCTUATION = list(".,'\"!?-():")
BERT_DIGITS = list("0123456789")
BERT_LETTERS = list("abcdefghijklmnopqrstuvwxyz")
BERT_WORDS = ["the", "all", "right", "with", "world", "is", "it", "in", "and", "of", "to", "was",
              "un", "##er", "##ing", "##ed", "##ly", "##aff", "##able", "##0", "##00", "世", "界"]
BERT_VOCAB = (BERT_SPECIAL + BERT_PUNCTUATION + BERT_DIGITS + BERT_LETTERS
              + ["##" + c for c in BERT_LETTERS] + BERT_WORDS)
BERT_VOCAB_SIZE = 100

XLNET_N_TOKEN = 100
XLNET_SPECIAL_IDS = {"<unk>": 0, "<s>": 1, "</s>": 2, "<cls>": 3, "<sep>": 4, "<pad>": 5,
                     "<mask>": 6, "<eod>": 7, "<eop>": 8}
SPM_SEED = 20190619  # the day XLNet was published; any fixed number does
# The training corpus: numbers with commas (so that a piece ending in "<digit>," exists and
# encode_pieces' digit-comma rule has something to do), the quote and dash characters the
# original's user-defined symbols name, and the note's sentence. The three lines holding only
# "with" make the tiny model cut "All's right with the world" into the note's 7 pieces
# ['▁All', "'", 's', '▁right', '▁with', '▁the', '▁world'] (without them: '▁wi', 'th').
CORPUS = """All's right with the world.
All's well with the world, said the child with the kite.
All the world is still in the morning, and all is right with it.
All is right with the world when all the world is with us.
In 1,000 years the world will still turn; in 2,000 it will not.
She was born in 1990, he in 2000, and their child in 2010.
The river runs 3,500 miles to the sea (or so the map says).
It costs £5 or €6, a fair price for the right book.
"Right," she said, "the world is with us."
Is it right? It is right! Write it down.
We read 12,000 words, then 40,000 more, then 7,500 again.
With you, with me, with all of us, with the world.
with
with
with
"""
CORPUS_REPEATS = 20
SPM_OPTIONS = dict(
    vocab_size=XLNET_N_TOKEN, model_type="unigram", character_coverage=1.0,
    control_symbols=["<cls>", "<sep>", "<pad>", "<mask>", "<eod>"],
    user_defined_symbols=["<eop>", ".", "(", ")", '"', "-", "–", "£", "€"],
    shuffle_input_sentence=False, input_sentence_size=0, num_threads=1, minloglevel=2,
)


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def bert_vocab_bytes() -> bytes:
    """vocab.txt: one token a line, newline-terminated, exactly BERT_VOCAB_SIZE lines."""
    if len(BERT_VOCAB) != BERT_VOCAB_SIZE or len(set(BERT_VOCAB)) != BERT_VOCAB_SIZE:
        raise SystemExit(f"BERT_VOCAB has {len(BERT_VOCAB)} entries ({len(set(BERT_VOCAB))} distinct), "
                         f"expected {BERT_VOCAB_SIZE} distinct tokens")
    return "".join(token + "\n" for token in BERT_VOCAB).encode("utf-8")


def spiece_model_bytes() -> bytes:
    """Train the unigram model from CORPUS in memory and return the serialized model."""
    import sentencepiece as spm
    spm.set_random_generator_seed(SPM_SEED)
    sentences = [line for line in CORPUS.splitlines() if line] * CORPUS_REPEATS
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=out, **SPM_OPTIONS)
    model = out.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=model)
    if sp.get_piece_size() != XLNET_N_TOKEN:
        raise SystemExit(f"spiece model has {sp.get_piece_size()} pieces, expected {XLNET_N_TOKEN}")
    wrong = {p: sp.piece_to_id(p) for p, i in XLNET_SPECIAL_IDS.items() if sp.piece_to_id(p) != i}
    if wrong:
        raise SystemExit(f"special pieces at the wrong ids {wrong}, expected {XLNET_SPECIAL_IDS}")
    return model


def files() -> dict[str, bytes]:
    """{path relative to the checkpoints folder: content}."""
    model = spiece_model_bytes()
    return {"bert-tiny/vocab.txt": bert_vocab_bytes(),
            "xlnet-tiny/spiece.model": model,
            "xlnet-tiny-tied/spiece.model": model}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join("golden", "checkpoints"))
    parser.add_argument("--check", action="store_true",
                        help="regenerate in memory and compare with the sha256 in VOCAB.json; write nothing")
    args = parser.parse_args(argv)
    import sentencepiece as spm
    content = files()
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in content.items()}
    manifest_path = os.path.join(args.out, "VOCAB.json")
    if args.check:
        with open(manifest_path) as f:
            recorded = json.load(f)["files"]
        differ = sorted(n for n in set(digests) | set(recorded) if digests.get(n) != recorded.get(n))
        on_disk = sorted(n for n in recorded
                         if not os.path.isfile(os.path.join(args.out, n))
                         or sha256(os.path.join(args.out, n)) != recorded[n])
        for name in differ:
            print(f"differs from VOCAB.json: {name}")
        for name in on_disk:
            print(f"file on disk differs from VOCAB.json: {name}")
        if not differ and not on_disk:
            print(f"ok: {len(digests)} files regenerate byte-identical to VOCAB.json")
        return 1 if differ or on_disk else 0
    for name, data in content.items():
        path = os.path.join(args.out, name)
        with open(path, "wb") as f:
            f.write(data)
        print(f"wrote {path} ({len(data)} bytes, sha256 {digests[name][:12]}...)")
    manifest = {
        "command": COMMAND,
        "sentencepiece": spm.__version__,
        "files": digests,
        "bert_vocab": {"size": BERT_VOCAB_SIZE,
                       "special_ids": {t: BERT_VOCAB.index(t) for t in BERT_SPECIAL}},
        "spiece": {"n_token": XLNET_N_TOKEN, "special_ids": XLNET_SPECIAL_IDS, "seed": SPM_SEED,
                   "corpus_lines": len([ln for ln in CORPUS.splitlines() if ln]),
                   "corpus_repeats": CORPUS_REPEATS, "options": SPM_OPTIONS},
    }
    with open(manifest_path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
