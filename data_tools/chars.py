"""Character classes of BERT's BasicTokenizer, shared by every tokenizer kind and the vocabulary tools."""
from __future__ import annotations

import unicodedata

# BERT's "CJK Unified Ideographs" ranges (tokenization_bert._is_chinese_char).
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
# Extra characters PaddleNLP's _is_symbol treats as symbols.
_PADDLE_SYMBOLS = (0x00AD, 0x00B2, 0x00BA, 0x3007, 0x00B5, 0x00D8, 0x014B, 0x01B1)


def is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def _is_punct(ch: str, flavor: str) -> bool:
    """BERT's punctuation (ASCII symbol runs and Unicode P*); ``flavor="paddlenlp"`` adds its symbols."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    cat = unicodedata.category(ch)
    if cat.startswith("P"):
        return True
    return flavor == "paddlenlp" and (cat.startswith("S") or cp in _PADDLE_SYMBOLS)
