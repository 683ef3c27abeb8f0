"""The tokenizer seam: which tokenizer turns text into the ids of a vocab (no paddle import).

A tokenizer *kind* is a recorded property of the data and of every model directory made from it:
``PREFIX.meta.json`` ``tokenizer`` and a checkpoint's ``tokenizer_config.json`` hold a :class:`TokenizerSpec`
(``{"do_lower_case": ..., "kind": ...}``; ``kind`` is written only when it is not the default, so files of
today's kind are byte-identical to those written before kinds existed, and a file without it is that kind).
Everything that needs a tokenizer gets it from :func:`load_tokenizer` -- preprocess, the dataset's special ids,
fine-tuning's encoders -- and export names the transformers class with :func:`hf_tokenizer_class`.

To add a kind (e.g. a word-level, RoFormerTokenizer-compatible one): write its class in one file -- constructed
as ``cls(vocab_file, do_lower_case=..., **options)``, with a class attribute ``kind``, the attributes
``vocab_size``, ``vocab_sha256``, ``pad_id``/``unk_id``/``cls_id``/``sep_id``/``mask_id``, ``special_ids`` and
``encode(text)``; for preprocess also what ``tokenizer.DocumentEncoder`` uses -- and add one line to
:data:`KINDS`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import NamedTuple, Optional

DEFAULT_KIND = "bert_wordpiece"  # BERT BasicTokenizer + WordPiece: every CJK character its own token


class Kind(NamedTuple):
    impl: str  # "module:Class"
    hf_class: str  # transformers' tokenizer_class for exported model directories


KINDS = {
    DEFAULT_KIND: Kind("data_tools.tokenizer:BertTokenizer", "BertTokenizer"),
}


@dataclass(frozen=True)
class TokenizerSpec:
    """How text was (or is to be) tokenized: the kind and lowercasing.  Stored in meta.json and
    tokenizer_config.json as :meth:`to_dict`."""

    do_lower_case: bool = True
    kind: str = DEFAULT_KIND

    def to_dict(self) -> dict:
        out = {"do_lower_case": self.do_lower_case}
        if self.kind != DEFAULT_KIND:
            out["kind"] = self.kind
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerSpec":
        """From meta.json's ``tokenizer`` or a tokenizer_config.json (absent keys: lowercasing, today's kind)."""
        return cls(do_lower_case=d.get("do_lower_case", True), kind=d.get("kind", DEFAULT_KIND))


def check_kind(kind: str, where: str = "tokenizer kind") -> str:
    """``kind`` when it is registered; else ValueError naming ``where`` and the known kinds."""
    if kind not in KINDS:
        raise ValueError(f"{where} {kind!r}: not a tokenizer this version knows (expected one of "
                         f"{', '.join(sorted(KINDS))})")
    return kind


def tokenizer_class(kind: str = DEFAULT_KIND):
    module, cls = KINDS[check_kind(kind)].impl.split(":")
    return getattr(importlib.import_module(module), cls)


def load_tokenizer(vocab_file, spec: Optional[TokenizerSpec] = None, **options):
    """The tokenizer of ``spec`` (default: lowercasing, today's kind) over ``vocab_file``; ``options`` go to
    its class (e.g. ``flavor=`` of the BERT tokenizer)."""
    spec = spec or TokenizerSpec()
    return tokenizer_class(spec.kind)(vocab_file, do_lower_case=spec.do_lower_case, **options)


def hf_tokenizer_class(kind: str = DEFAULT_KIND) -> str:
    """transformers' ``tokenizer_class`` for model directories of this kind."""
    return KINDS[check_kind(kind)].hf_class
