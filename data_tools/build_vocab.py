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
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import sys

from data_tools.io_utils import UserError, atomic_write_path, run_cli
from data_tools.tokenizer import CJK_RANGES, REQUIRED_SPECIALS, _is_punct
from data_tools.vocab import UNK_TOKEN, read_vocab

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


def _open_text(path: str):
    opener = gzip.open if path.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8", errors="replace", newline="\n")


def iter_documents(files, json_key: str = "text", skipped: collections.Counter | None = None):
    """Documents of .txt/.jsonl(.gz) files: one per line; unusable JSON lines are counted in `skipped`."""
    skipped = skipped if skipped is not None else collections.Counter()
    for path in files:
        is_json = path.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz"))
        try:
            f = _open_text(path)
        except FileNotFoundError:
            raise UserError(f"--input {path}: no such file") from None
        except OSError as e:
            raise UserError(f"--input {path}: cannot read ({e.strerror or e})") from None
        with f:
            try:
                for line in f:
                    line = line.rstrip("\n")
                    if is_json:
                        if not line.strip():
                            skipped["empty"] += 1
                            continue
                        try:
                            obj = json.loads(line)
                        except ValueError:
                            skipped["malformed_json"] += 1
                            continue
                        text = obj.get(json_key) if isinstance(obj, dict) else None
                        if not isinstance(text, str):
                            skipped["missing_key"] += 1
                            continue
                        line = text
                    if not line.strip():
                        skipped["empty"] += 1
                        continue
                    yield line
            except (OSError, EOFError) as e:  # e.g. a truncated .gz
                raise UserError(f"--input {path}: read failed ({e})") from None


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_tools.build_vocab", description=__doc__.split("\n")[0])
    p.add_argument("--input", nargs="+", required=True, help=".txt/.jsonl files, optionally .gz")
    p.add_argument("--output", required=True, help="vocab.txt to write")
    p.add_argument("--max-size", type=int, default=None, help="at most this many tokens")
    p.add_argument("--min-freq", type=int, default=1, help="drop CJK chars/pieces seen fewer times")
    p.add_argument("--json-key", default="text", help="field holding the text in .jsonl inputs")
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
            from data_tools import vocab_extend

            print(vocab_extend.describe(vocab_extend.extend_vocab(
                args.extend, args.input, args.output, args.add, args.min_freq, args.json_key)))
            return 0
        s = build_vocab(args.input, args.output, args.max_size, args.min_freq, args.json_key)
        print(
            f"wrote {s['output']}: {s['vocab_size']} tokens ({s['specials']} specials, {s['base_symbols']} base, "
            f"{s['cjk_chars']} CJK chars x2, {s['wordpiece_pieces']} WordPiece pieces) "
            f"from {s['documents']} documents"
            + (f"; skipped {s['skipped']}" if s["skipped"] else "")
        )
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
