"""The tokenizer seam: which tokenizer turns text into the ids of a vocab (no paddle import).

A tokenizer *kind* is a recorded property of the data and of every model directory made from it:
``PREFIX.meta.json`` ``tokenizer`` and a checkpoint's ``tokenizer_config.json`` hold a :class:`TokenizerSpec`
(``{"do_lower_case": ..., "kind": ...}``; ``kind`` is written only when it is not the default, so files of
today's kind are byte-identical to those written before kinds existed, and a file without it is that kind).
Everything that needs a tokenizer gets it from :func:`load_tokenizer` -- preprocess (its segmenter and document
encoder too), the dataset's special ids, fine-tuning's encoders (offsets for QA and NER) -- and export writes the
kind's transformers files from :func:`tokenizer_class`; every caller uses only :class:`Tokenizer`'s members.

The kinds: ``bert_wordpiece`` (:class:`data_tools.tokenizer.BertTokenizer`, every CJK character its own token,
ids of transformers' ``BertTokenizer``) and ``roformer_word`` (:class:`data_tools.word_tokenizer.
RoFormerWordTokenizer`, jieba words plus characters, ids of transformers' ``RoFormerTokenizer``).  To add one:
write its class in one file, implementing :class:`Tokenizer`, and add one line to :data:`KINDS`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Optional, Protocol, Sequence, runtime_checkable

DEFAULT_KIND = "bert_wordpiece"  # BERT BasicTokenizer + WordPiece: every CJK character its own token


@runtime_checkable
class Tokenizer(Protocol):
    """What every tokenizer kind provides; the only members its callers use.  Constructed as
    ``cls(vocab_file, do_lower_case=..., **options)``."""

    kind: ClassVar[str]  # its name in KINDS
    hf_class: ClassVar[str]  # transformers' tokenizer_class of exported model directories
    hf_model_card: ClassVar[str]  # what a user of an exported directory must know ("": nothing), for its README.md

    vocab_file: str
    do_lower_case: bool
    vocab_size: int
    vocab_sha256: str
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    special_ids: Sequence[int]  # every "[...]" token: never a random replacement in masking

    def encode(self, text: str):
        """int32 ids of ``text`` (plain text), without [CLS]/[SEP] (fine-tuning, the [UNK] report)."""

    def encode_with_offsets(self, text: str):
        """(ids, starts, ends): the ids of encode and each token's code-point span of ``text`` (QA, NER)."""

    def tokenize(self, text: str) -> list:
        """The tokens of encode, as strings."""

    def convert_ids_to_tokens(self, ids) -> list:
        """The token strings of ``ids``."""

    def decode(self, ids) -> str:
        """Tokens joined by spaces, ``##`` continuations merged."""

    @classmethod
    def segmenter(cls, name: Optional[str] = None, user_dict: Optional[str] = None):
        """The whole-word segmenter preprocess records and hands to document_encoder (``name`` None: the kind's
        default); ValueError when this kind cannot use the one asked for."""

    def document_encoder(self, segmenter, max_sentence_tokens: int = 510):
        """An object whose ``encode(text)`` gives a document's ``data_tools.tokenizer.EncodedDocument`` (ids,
        whole-word flags, sentence lengths, counts) and ``encode_many(texts)`` those of a list of documents,
        concatenated, as one ``data_tools.tokenizer.EncodedBatch`` (``data_tools.tokenizer.encode_each`` makes it
        from ``encode`` when the kind has no faster way): what preprocess writes."""

    @classmethod
    def hf_tokenizer_config(cls, do_lower_case: bool) -> dict:
        """The tokenizer fields of an exported ``tokenizer_config.json`` (tokenizer_class first)."""


class Kind(NamedTuple):
    impl: str  # "module:Class" of a Tokenizer


KINDS = {
    DEFAULT_KIND: Kind("data_tools.tokenizer:BertTokenizer"),
    "roformer_word": Kind("data_tools.word_tokenizer:RoFormerWordTokenizer"),
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
        """From meta.json's ``tokenizer``, one of our tokenizer_config.json, or a Hugging Face directory's
        tokenizer_config.json / config.json (absent keys: lowercasing, today's kind)."""
        return cls(do_lower_case=d.get("do_lower_case", True), kind=kind_stated(d) or DEFAULT_KIND)


def kind_stated(d: dict) -> Optional[str]:
    """The kind a tokenizer_config.json (or a Hugging Face config.json) states: its ``kind`` (ours), else the kind
    whose transformers class its ``tokenizer_class`` names (a Hugging Face directory: ours exported, or anyone's);
    None when it states neither, or names a class no kind exports."""
    if "kind" in d:
        return d["kind"]
    hf_class = d.get("tokenizer_class")
    return kind_of_hf_class(hf_class) if isinstance(hf_class, str) else None


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
    return tokenizer_class(kind).hf_class


def hf_tokenizer_config(kind: str, do_lower_case: bool) -> dict:
    """The tokenizer fields of an exported ``tokenizer_config.json`` for this kind (``tokenizer_class`` first)."""
    return tokenizer_class(kind).hf_tokenizer_config(do_lower_case)


def kind_of_hf_class(hf_class) -> Optional[str]:
    """The kind whose exported directories name ``hf_class`` (transformers' slow or fast class name), or None."""
    for kind in KINDS:
        if hf_class in (hf_tokenizer_class(kind), hf_tokenizer_class(kind) + "Fast"):
            return kind
    return None


def hf_model_card(kind: str = DEFAULT_KIND) -> str:
    """The model card text (README.md) an exported directory of this kind needs; "" when it needs none."""
    return tokenizer_class(kind).hf_model_card
