"""The one reader of BERT-style ``vocab.txt`` files (no paddle import).

Format: UTF-8, one token per line, ``\\n`` line endings, id = line number (from 0).  Every component reads a
vocab through :func:`read_vocab` -- the tokenizer (so ``preprocess``), ``build_vocab`` (its output), the
config (``model.vocab_size`` from the file), the trainer's pre-launch check and export -- so they agree on
the count and refuse the same mistakes, each with the line number:

- a CRLF (or lone CR) line ending: the ``\\r`` would become part of every token, so no text token matches;
- a token given twice (transformers silently keeps the last id, which shifts every id after it) and, as its
  most harmful case, a second copy of a special token;
- an empty line between tokens (an empty token; usually a stray blank line that shifts the ids after it).

Empty lines at the end of the file are not tokens (a trailing blank line is a common editor artefact).
"""
from __future__ import annotations

import os
from typing import List, Sequence

from data_tools.io_utils import UserError, read_text

PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)


class VocabError(UserError, ValueError):
    """A vocab.txt that cannot be used (unreadable, not UTF-8, malformed, missing a required special token)."""


def read_vocab(path, required: Sequence[str] = SPECIAL_TOKENS) -> List[str]:
    """Tokens of ``path`` in id order.  Raises VocabError naming the file (and line) and the reason."""
    path = os.fspath(path)
    _, text = read_text(path, VocabError, not_found="vocab file not found",
                        cannot_read="cannot read vocab ({strerror})",
                        not_utf8="not UTF-8 text ({reason} at byte {start})")
    lines = text.split("\n")
    while lines and lines[-1] == "":
        lines.pop()  # the final newline, and blank lines at the end
    first = {}
    for i, tok in enumerate(lines):
        n = i + 1
        if "\r" in tok:
            raise VocabError(f"{path}: line {n}: CRLF (Windows) line ending; expected \\n only (convert the file, "
                             "e.g. sed -i 's/\\r$//' FILE)")
        if tok == "":
            raise VocabError(f"{path}: line {n}: empty line between tokens (it would be a token and shift every "
                             "id after it)")
        if tok in first:
            kind = "the special token" if tok in SPECIAL_TOKENS else "token"
            raise VocabError(f"{path}: line {n}: {kind} {tok!r} repeats line {first[tok]} (ids after it would "
                             "shift; every token must appear once)")
        first[tok] = n
    for special in required:
        if special not in first:
            hint = " (the file starts with a UTF-8 byte-order mark)" if text.startswith("\ufeff") else ""
            raise VocabError(f"{path}: required special token {special} is missing{hint}")
    return lines


def pad_id_of(vocab_file: str) -> int:
    """The id of ``[PAD]`` in ``vocab_file`` (what batches are padded with)."""
    return read_vocab(vocab_file).index(PAD_TOKEN)
