"""Build a BERT/ERNIE-style Chinese vocab.txt from a corpus.

    python -m data_tools.build_vocab --input FILE [FILE ...] --output vocab.txt
        [--max-size N] [--min-freq N] [--json-key text]
    python -m data_tools.build_vocab --extend BASE --input FILE [FILE ...] --output vocab.txt --add N
        (extends a released model's vocab: data_tools.vocab_extend)

Inputs are .txt (one document per line) or .jsonl (the `--json-key` field), optionally .gz.
The vocab, in this order:

1. the specials ``[PAD]`` (id 0) ``[UNK]`` ``[CLS]`` ``[SEP]`` ``[MASK]``;
2. base symbols: ASCII letters (lowercase), digits and punctuation, common full-width/CJK
   punctuation, and the ``##`` forms of letters and digits, so any Latin/digit word is
   tokenizable;
3. the corpus's CJK characters (BERT's ranges) seen at least `--min-freq` times, most frequent
   first, ties by code point; then their ``##`` forms in the same order;
4. WordPiece pieces for the non-CJK words, trained with the ``tokenizers`` library
   (WordPieceTrainer with BERT's normalizer and pre-tokenizer), in the trainer's id order.

With `--max-size`, CJK characters come before WordPiece pieces: when they do not all fit, the least
frequent fall out (and become ``[UNK]``).  The output is deterministic and written atomically.

``--level word`` (:func:`build_word_vocab`) builds a word-level vocab for ``--tokenizer roformer_word``: the
character-level vocab above, then the corpus's most frequent jieba words.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile

from data_tools import vocab_extend
from data_tools.corpus import iter_documents
from data_tools.io_utils import UserError, atomic_write_path, run_cli
from data_tools.tokenizer import CJK_RANGES, REQUIRED_SPECIALS, _is_punct
from data_tools.vocab import UNK_TOKEN, read_vocab
from data_tools.word_tokenizer import JiebaWords, lower_chars

_CJK_RE = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in CJK_RANGES) + "]")
FULLWIDTH_PUNCT = "，。！？；：、“”‘’（）【】《》「」『』〈〉〔〕…—–·～￥％＃＆＊＋－／＜＝＞＠＼＾＿｀｜"


def _base_symbols() -> list[str]:
    out = []
    for c in range(33, 127):
        ch = chr(c)
        if not ch.isupper():
            out.append(ch)
    out.extend(FULLWIDTH_PUNCT)
    out.extend("##" + ch for ch in "0123456789abcdefghijklmnopqrstuvwxyz")
    return out


def build_vocab(files, output, max_size=None, min_freq=1, json_key="text") -> dict:
    """Build the vocab (see the module docstring) into `output`; returns a summary dict."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    files = [os.fspath(f) for f in files]
    if not files:
        raise UserError("--input: at least one file is required")
    if min_freq < 1:
        raise UserError(f"--min-freq {min_freq}: expected an integer >= 1")
    specials = list(REQUIRED_SPECIALS)
    base = [s for s in dict.fromkeys(_base_symbols()) if s not in specials]
    fixed = len(specials) + len(base)
    if max_size is not None and max_size < fixed:
        raise UserError(f"--max-size {max_size}: expected at least {fixed} (specials and base symbols)")
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise UserError(f"--output {output}: directory {out_dir} does not exist")

    # Pass 1: CJK character counts and the alphabet of everything else.
    cjk_counts: collections.Counter = collections.Counter()
    other_chars: collections.Counter = collections.Counter()
    skipped: collections.Counter = collections.Counter()
    n_docs = n_chars = 0
    for doc in iter_documents(files, json_key, skipped):
        n_docs += 1
        n_chars += len(doc)
        cjk = _CJK_RE.findall(doc)
        if cjk:
            cjk_counts.update(cjk)
            doc = _CJK_RE.sub(" ", doc)
        other_chars.update(doc)
    if n_docs == 0:
        raise UserError(f"--input {' '.join(files)}: no documents found")

    # Pass 2: WordPiece pieces for the non-CJK text.
    tok = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # The trainer numbers "##x" forms in hash-map order, and merge ties are broken by those numbers;
    # registering every "##x" up front (sorted) makes the training deterministic.
    alphabet = sorted({n for c in other_chars for n in tok.normalizer.normalize_str(c) if n.strip()})
    fixed_ids = specials + ["##" + c for c in alphabet if not _is_punct(c, "transformers")]
    wp_budget = 30000 if max_size is None else max(max_size - fixed, 0)
    trainer = trainers.WordPieceTrainer(
        vocab_size=len(fixed_ids) + len(alphabet) + wp_budget,
        min_frequency=min_freq,
        special_tokens=fixed_ids,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train_from_iterator(
        (_CJK_RE.sub(" ", doc) for doc in iter_documents(files, json_key, collections.Counter())), trainer=trainer
    )

    cjk = sorted((c for c, n in cjk_counts.items() if n >= min_freq), key=lambda c: (-cjk_counts[c], ord(c)))
    if max_size is not None:
        cjk = cjk[: (max_size - fixed) // 2]
    seen = set(specials) | set(base) | set(cjk) | {"##" + c for c in cjk}
    pieces = []
    for piece, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]):
        if piece in seen or _CJK_RE.search(piece) or any(ch.isspace() for ch in piece) or not piece.strip("#"):
            continue
        seen.add(piece)
        pieces.append(piece)
    vocab = specials + base + cjk + ["##" + c for c in cjk] + pieces
    if max_size is not None:
        vocab = vocab[:max_size]
    n_pieces = len(vocab) - fixed - 2 * len(cjk)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(vocab) + "\n")
        read_vocab(tmp)  # the check every reader applies (no repeats, specials present) holds for what we write

    try:
        atomic_write_path(output, write)
    except OSError as e:
        raise UserError(f"--output {output}: cannot write ({e.strerror or e})") from None
    return {
        "output": os.fspath(output),
        "vocab_size": len(vocab),
        "specials": len(specials),
        "base_symbols": len(base),
        "cjk_chars": len(cjk),
        "wordpiece_pieces": n_pieces,
        "documents": n_docs,
        "characters": n_chars,
        "distinct_cjk_in_corpus": len(cjk_counts),
        "skipped": dict(sorted(skipped.items())),
    }


DEFAULT_MIN_WORD_FREQ = 2
DEFAULT_MAX_WORD_CHARS = 8
PIECE_SHARE = 10  # with --max-size, WordPiece pieces take at most 1/PIECE_SHARE of the room after the characters


def count_words(files, json_key: str = "text", max_word_chars: int = DEFAULT_MAX_WORD_CHARS) -> collections.Counter:
    """The corpus's jieba words of 2..max_word_chars characters, all CJK, cut as the roformer_word tokenizer
    cuts them (the words of ``rjieba.cut(text, False)`` on the lowercased text)."""
    words = JiebaWords()
    counts: collections.Counter = collections.Counter()
    for doc in iter_documents(files, json_key):
        counts.update(w for w in words.words(lower_chars(doc))
                      if 2 <= len(w) <= max_word_chars and len(_CJK_RE.findall(w)) == len(w))
    return counts


def build_word_vocab(files, output, max_size=None, min_freq=1, json_key="text",
                     min_word_freq=DEFAULT_MIN_WORD_FREQ, max_word_chars=DEFAULT_MAX_WORD_CHARS) -> dict:
    """A word-level vocab for the roformer_word tokenizer into ``output``; returns a summary dict.

    In id order: the character-level vocab of the same corpus (specials, base symbols, every CJK character seen
    at least ``min_freq`` times and its ``##`` form, WordPiece pieces for Latin and digits: what
    :func:`build_vocab` writes, so every character stays spellable), then the corpus's jieba words
    (:func:`count_words`) seen at least ``min_word_freq`` times, most frequent first, ties in code-point order.
    With ``max_size``: characters first (when they do not all fit, the least frequent fall out, as in
    :func:`build_vocab`), WordPiece pieces at most 1/PIECE_SHARE of the room left after them, words the rest."""
    if min_word_freq < 1:
        raise UserError(f"--min-word-freq {min_word_freq}: expected an integer >= 1")
    if max_word_chars < 2:
        raise UserError(f"--max-word-chars {max_word_chars}: expected an integer >= 2 (one-character words are "
                        "the characters)")
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise UserError(f"--output {output}: directory {out_dir} does not exist")
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        s = build_vocab(files, os.path.join(tmp, "chars.txt"), None, min_freq, json_key)
        chars = read_vocab(os.path.join(tmp, "chars.txt"))
    fixed, n_cjk = s["specials"] + s["base_symbols"], s["cjk_chars"]
    head, cjk, pieces = chars[:fixed], chars[fixed:fixed + n_cjk], chars[fixed + 2 * n_cjk:]
    if max_size is not None:
        if max_size < fixed:
            raise UserError(f"--max-size {max_size}: expected at least {fixed} (specials and base symbols)")
        cjk = cjk[: (max_size - fixed) // 2]
        pieces = pieces[: (max_size - fixed - 2 * len(cjk)) // PIECE_SHARE]
    base = head + cjk + ["##" + c for c in cjk] + pieces
    counts = count_words(files, json_key, max_word_chars)
    seen = set(base)
    words = sorted((w for w, n in counts.items() if n >= min_word_freq and w not in seen),
                   key=lambda w: (-counts[w], w))
    if max_size is not None:
        words = words[: max(max_size - len(base), 0)]
    vocab = base + words

    def write(tmp_path):
        with open(tmp_path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(vocab) + "\n")
        read_vocab(tmp_path)  # the check every reader applies (no repeats, specials present)

    try:
        atomic_write_path(output, write)
    except OSError as e:
        raise UserError(f"--output {output}: cannot write ({e.strerror or e})") from None
    return {**s, "output": os.fspath(output), "vocab_size": len(vocab), "cjk_chars": len(cjk),
            "wordpiece_pieces": len(pieces), "words": len(words), "distinct_words_in_corpus": len(counts)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_tools.build_vocab", description=__doc__.split("\n")[0])
    p.add_argument("--input", nargs="+", required=True, help=".txt/.jsonl files, optionally .gz")
    p.add_argument("--output", required=True, help="vocab.txt to write")
    p.add_argument("--max-size", type=int, default=None, help="at most this many tokens")
    p.add_argument("--min-freq", type=int, default=1, help="drop CJK chars/pieces seen fewer times")
    p.add_argument("--json-key", default="text", help="field holding the text in .jsonl inputs")
    p.add_argument("--level", choices=("char", "word"), default="char",
                   help="char (default): characters + WordPiece; word: jieba words on top (--tokenizer roformer_word)")
    p.add_argument("--min-word-freq", type=int, default=DEFAULT_MIN_WORD_FREQ,
                   help=f"--level word: drop words seen fewer times (default {DEFAULT_MIN_WORD_FREQ})")
    p.add_argument("--max-word-chars", type=int, default=DEFAULT_MAX_WORD_CHARS,
                   help=f"--level word: longest word kept, in characters (default {DEFAULT_MAX_WORD_CHARS})")
    p.add_argument("--extend", metavar="BASE", default=None,
                   help="extend this vocab.txt (or model directory's vocab): its tokens keep their ids")
    p.add_argument("--add", type=int, default=None, help="with --extend: add at most this many tokens")
    args = p.parse_args(argv)

    def body():
        if (args.extend is None) != (args.add is None):
            raise UserError("--extend BASE and --add N go together (extend BASE by at most N tokens)")
        if args.extend is not None:
            if args.max_size is not None:
                raise UserError("--max-size: not with --extend (the size is the base's plus --add)")
            if args.level != "char":
                raise UserError("--level: not with --extend (the base vocab's tokenizer kind decides what is added)")
            print(vocab_extend.describe(vocab_extend.extend_vocab(
                args.extend, args.input, args.output, args.add, args.min_freq, args.json_key)))
            return 0
        if args.level == "word":
            s = build_word_vocab(args.input, args.output, args.max_size, args.min_freq, args.json_key,
                                 args.min_word_freq, args.max_word_chars)
        else:
            s = build_vocab(args.input, args.output, args.max_size, args.min_freq, args.json_key)
        words = f", {s['words']} words" if "words" in s else ""
        print(
            f"wrote {s['output']}: {s['vocab_size']} tokens ({s['specials']} specials, {s['base_symbols']} base, "
            f"{s['cjk_chars']} CJK chars x2, {s['wordpiece_pieces']} WordPiece pieces{words}) "
            f"from {s['documents']} documents"
            + (f"; skipped {s['skipped']}" if s["skipped"] else "")
        )
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
