"""Extending a released model's vocabulary (no paddle import).

    python -m data_tools.build_vocab --extend BASE --input FILE [FILE ...] --output vocab.txt --add N

``BASE`` is the model's ``vocab.txt``, or its model directory (then its ``tokenizer_config.json`` says the
tokenizer kind).  The new vocab is the base with every token at its id, then up to ``N`` tokens the corpus
needs and the base lacks:

1. what to add: the characters of the corpus that the base's tokenizer maps to ``[UNK]`` (in the form the
   tokenizer looks up: lowercased and accent-stripped when the base lowercases), most frequent first, ties by
   code point; a character that is neither CJK nor punctuation also gets its ``##`` form (it occurs inside
   words); then, for a word-level base (any kind but ``bert_wordpiece``), the corpus's most frequent jieba words
   of 2+ characters the base lacks;
2. where: the ``[unusedN]`` slots first (in id order; the slot's id now means the new token), then appended.

The one definition of "extends" (:func:`extension_of`) is shared with the trainer's pre-launch check: every token
of the old vocab keeps its id, except ``[unusedN]`` slots, which may hold new tokens.  The output is written
atomically; the summary gives the ``[UNK]`` share of the corpus under the base and under the new vocab.
"""
from __future__ import annotations

import collections
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from data_tools.io_utils import UserError, atomic_write_path, read_json_dict
from data_tools.tokenizers import DEFAULT_KIND, TokenizerSpec, load_tokenizer
from data_tools.vocab import read_vocab

UNUSED_RE = re.compile(r"^\[unused\d+\]$")
TOKENIZER_CONFIG = "tokenizer_config.json"  # (ernie_style.constants names it too; data_tools sits below it)


@dataclass(frozen=True)
class Extension:
    """How a new vocab extends an old one: ``old_size -> new_size``; ``new_ids`` are the rows a model must get
    (the refilled ``[unused]`` slots, then every id from ``old_size``)."""

    old_size: int
    new_size: int
    refilled: List[int]  # ids of [unusedN] slots that now hold a new token

    @property
    def new_ids(self) -> List[int]:
        return list(self.refilled) + list(range(self.old_size, self.new_size))

    def describe(self) -> str:
        """``21128 -> 22400 tokens, 1272 new rows`` (the rows a model gets for the new tokens)."""
        refilled = f" ({len(self.refilled)} of them [unused] slots)" if self.refilled else ""
        return f"{self.old_size} -> {self.new_size} tokens, {len(self.new_ids)} new rows{refilled}"


def extension_of(old: Sequence[str], new: Sequence[str]) -> Optional[Extension]:
    """The :class:`Extension` when ``new`` extends ``old`` (every old token at its id, or an ``[unusedN]`` slot
    refilled; at least one new token), else None."""
    if len(new) < len(old):
        return None
    refilled = []
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            if not UNUSED_RE.match(a):
                return None
            refilled.append(i)
    if not refilled and len(new) == len(old):
        return None  # the same vocab: nothing extended
    return Extension(len(old), len(new), refilled)


def first_difference(old: Sequence[str], new: Sequence[str]) -> str:
    """Why ``new`` does not extend ``old``, in words (the first id whose token changed, or the sizes)."""
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b and not UNUSED_RE.match(a):
            return f"id {i} is {a!r} in the old vocab and {b!r} in the new one"
    if len(new) < len(old):
        return f"the new vocab has {len(new)} tokens, fewer than the old one's {len(old)}"
    return "the vocabs are the same"


def piece_ids(tokenizer, tokens: Sequence[str]) -> List[List[int]]:
    """Per token, the ids the OLD vocab's ``tokenizer`` splits its text into (``##`` stripped), ``[UNK]`` left out
    (an empty list: nothing of it was known).  A new row starts from the mean of these rows (see
    ernie_style.training.vocab_extension)."""
    out = []
    for tok in tokens:
        text = tok[2:] if tok.startswith("##") and len(tok) > 2 else tok
        ids = [int(i) for i in tokenizer.encode(text) if int(i) != tokenizer.unk_id]
        out.append(ids)
    return out


# ------------------------------------------------------------------------------------------ building


def _lookup_form(ch: str, lower: bool) -> str:
    """The form of ``ch`` the BERT tokenizer looks up: lowercased and accent-stripped when it lowercases."""
    if not lower:
        return ch
    return "".join(c for c in unicodedata.normalize("NFD", ch.lower()) if unicodedata.category(c) != "Mn")


def _base_of(base: str):
    """(vocab file, TokenizerSpec) of ``--extend BASE``: a vocab.txt, or a model directory holding one."""
    if os.path.isdir(base):
        vocab = os.path.join(base, "vocab.txt")
        if not os.path.isfile(vocab):
            raise UserError(f"--extend {base}: a directory without vocab.txt (expected a vocab.txt or a model "
                            "directory)")
        cfg = read_json_dict(os.path.join(base, TOKENIZER_CONFIG)) or {}
        return vocab, TokenizerSpec.from_dict(cfg)
    if not os.path.isfile(base):
        raise UserError(f"--extend {base}: no such file (expected the base model's vocab.txt or its directory)")
    return base, TokenizerSpec()


def unk_share(tokenizer, docs) -> tuple:
    """(``[UNK]`` tokens, all tokens) of ``tokenizer`` over ``docs``."""
    n_unk = n_all = 0
    for doc in docs:
        ids = tokenizer.encode(doc)
        n_unk += int(np.count_nonzero(ids == tokenizer.unk_id))
        n_all += int(ids.size)
    return n_unk, n_all


def extend_vocab(base: str, files, output, add: int, min_freq: int = 1, json_key: str = "text") -> Dict:
    """Write the extension of ``base`` (see the module doc) to ``output``; returns a summary dict."""
    from data_tools.build_vocab import iter_documents  # the one corpus reader of vocab building
    from data_tools.tokenizer import _is_punct, is_cjk

    files = [os.fspath(f) for f in files]
    if not files:
        raise UserError("--input: at least one file is required")
    if add < 1:
        raise UserError(f"--add {add}: expected an integer >= 1 (how many tokens to add at most)")
    if min_freq < 1:
        raise UserError(f"--min-freq {min_freq}: expected an integer >= 1")
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise UserError(f"--output {output}: directory {out_dir} does not exist")
    vocab_file, spec = _base_of(base)
    try:
        old_tok = load_tokenizer(vocab_file, spec)
    except ValueError as e:  # a VocabError names the file; an unknown kind names itself
        raise UserError(f"--extend {base}: {e}") from None
    old = list(old_tok.ids_to_tokens)
    known = set(old)

    chars: collections.Counter = collections.Counter()
    skipped: collections.Counter = collections.Counter()
    n_docs = 0
    for doc in iter_documents(files, json_key, skipped):
        n_docs += 1
        chars.update(doc)
    if n_docs == 0:
        raise UserError(f"--input {' '.join(files)}: no documents found")

    # 1. characters the base maps to [UNK], in the form it looks up
    forms: collections.Counter = collections.Counter()
    for ch, n in chars.items():
        if ch.isspace() or list(old_tok.encode(ch)) != [old_tok.unk_id]:
            continue
        form = _lookup_form(ch, spec.do_lower_case)
        if len(form) == 1 and form not in known:
            forms[form] += n
    ranked = sorted((c for c, n in forms.items() if n >= min_freq), key=lambda c: (-forms[c], ord(c)))
    new_tokens: List[str] = []
    for c in ranked:
        new_tokens.append(c)
        if not is_cjk(ord(c)) and not _is_punct(c, "transformers"):
            new_tokens.append("##" + c)
    new_tokens = [t for t in dict.fromkeys(new_tokens) if t not in known]
    n_chars = len(new_tokens)
    # 2. words, for a word-level base
    if spec.kind != DEFAULT_KIND:
        new_tokens += _missing_words(files, json_key, known | set(new_tokens), min_freq)
    n_candidates = len(new_tokens)
    new_tokens = new_tokens[:add]
    n_chars = min(n_chars, len(new_tokens))

    slots = [i for i, t in enumerate(old) if UNUSED_RE.match(t)]
    vocab = list(old)
    for i, tok in zip(slots, new_tokens):
        vocab[i] = tok
    vocab += new_tokens[len(slots):]
    ext = extension_of(old, vocab)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(vocab) + "\n")
        assert extension_of(old, read_vocab(tmp)) == ext  # read_vocab: the check every reader applies

    if ext is None:
        raise UserError(f"--extend {base}: the corpus has no character{' or word' if spec.kind != DEFAULT_KIND else ''}"
                        f" the base vocab lacks (seen at least --min-freq {min_freq} times); nothing to add")
    try:
        atomic_write_path(output, write)
    except OSError as e:
        raise UserError(f"--output {output}: cannot write ({e.strerror or e})") from None
    new_tok = load_tokenizer(output, spec)
    before = unk_share(old_tok, iter_documents(files, json_key))
    after = unk_share(new_tok, iter_documents(files, json_key))
    return {
        "output": os.fspath(output),
        "base": vocab_file,
        "kind": spec.kind,
        "old_size": ext.old_size,
        "vocab_size": ext.new_size,
        "added": len(ext.new_ids),
        "unused_filled": len(ext.refilled),
        "characters_added": n_chars,
        "words_added": len(new_tokens) - n_chars,
        "candidates": n_candidates,
        "documents": n_docs,
        "unk_before": {"tokens": before[0], "of": before[1]},
        "unk_after": {"tokens": after[0], "of": after[1]},
        "skipped": dict(sorted(skipped.items())),
    }


def _missing_words(files, json_key: str, known: set, min_freq: int) -> List[str]:
    """The corpus's jieba words of 2+ characters not in ``known``, most frequent first (ties: text order)."""
    from data_tools.build_vocab import iter_documents
    from data_tools.segment import make_segmenter

    seg = make_segmenter("jieba")
    words: collections.Counter = collections.Counter()
    for doc in iter_documents(files, json_key):
        words.update(w for w in seg.words(doc) if len(w) > 1 and not any(c.isspace() for c in w))
    return sorted((w for w, n in words.items() if n >= min_freq and w not in known), key=lambda w: (-words[w], w))


def describe(s: Dict) -> str:
    """The summary line ``build_vocab --extend`` prints."""
    def share(u):
        return f"{100 * u['tokens'] / max(u['of'], 1):.2f}% ({u['tokens']:,} of {u['of']:,} tokens)"

    what = f"{s['characters_added']} characters" + (f", {s['words_added']} words" if s["kind"] != DEFAULT_KIND else "")
    more = "" if s["added"] >= s["candidates"] else f" (the {s['added']} most frequent of {s['candidates']} missing)"
    return (f"wrote {s['output']}: {s['old_size']} -> {s['vocab_size']} tokens, {s['added']} added ({what}; "
            f"{s['unused_filled']} into [unused] slots){more}; the other tokens of {s['base']} keep their ids\n"
            f"[UNK] share of the corpus: {share(s['unk_before'])} -> {share(s['unk_after'])}"
            + (f"\nskipped {s['skipped']}" if s["skipped"] else ""))
