"""``Settings``: one preprocessing run as the user asked for it (the CLI builds it from flags, a library caller
directly), and ``Resolved``: the same after validation, with the tokenizer, the segmenter and the input facts.

``Settings.output_settings()`` is ``meta.json["settings"]``; ``Resolved.fingerprint()`` extends it with what else
decides the output (inputs, vocab, tokenizer, segmenter, dtype) and is what a resume must match.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from data_tools import indexed_dataset as ixd
from data_tools.io_utils import UserError, check_output_prefix, sha256_file
from data_tools.tokenizers import DEFAULT_KIND, TokenizerSpec, load_tokenizer
from data_tools.vocab import VocabError

DEFAULT_MIN_DOC_CHARS = 10
DEFAULT_MIN_CJK_RATIO = 0.1
DEFAULT_MAX_DOC_MB = 64.0
DEFAULT_SHARD_MB = 64.0
DEFAULT_MAX_SENTENCE_TOKENS = 510


@dataclass(frozen=True)
class Settings:
    """A preprocessing run.  Field names are the CLI flags (``--max-doc-mb`` = ``max_doc_mb``)."""

    inputs: Tuple[str, ...]
    vocab: str
    output_prefix: str
    json_key: str = "text"
    doc_separator: str = "line"  # "line" | "blank"
    segmenter: Optional[str] = None  # "jieba" | "rjieba" | "none"; None: the tokenizer's (BERT: jieba)
    user_dict: Optional[str] = None
    workers: int = 1
    min_doc_chars: int = DEFAULT_MIN_DOC_CHARS
    min_cjk_ratio: float = DEFAULT_MIN_CJK_RATIO
    max_sentence_tokens: int = DEFAULT_MAX_SENTENCE_TOKENS
    max_doc_mb: float = DEFAULT_MAX_DOC_MB
    shard_size_mb: float = DEFAULT_SHARD_MB
    do_lower_case: bool = True
    quiet: bool = False
    tokenizer: str = DEFAULT_KIND  # a kind of data_tools.tokenizers.KINDS
    dedup: bool = False  # drop exact duplicate documents (counted either way: data_tools.preprocess.dedup)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        for name in ("min_cjk_ratio", "max_doc_mb", "shard_size_mb"):  # 64 and 64.0 must fingerprint alike
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def from_args(cls, args) -> "Settings":
        return cls(inputs=tuple(args.input), vocab=args.vocab, output_prefix=args.output_prefix,
                   json_key=args.json_key, doc_separator=args.doc_separator, segmenter=args.segmenter,
                   user_dict=args.user_dict, workers=args.workers, min_doc_chars=args.min_doc_chars,
                   min_cjk_ratio=args.min_cjk_ratio, max_sentence_tokens=args.max_sentence_tokens,
                   max_doc_mb=args.max_doc_mb, shard_size_mb=args.shard_size_mb,
                   do_lower_case=not args.no_lower_case, quiet=args.quiet, tokenizer=args.tokenizer,
                   dedup=args.dedup)

    @property
    def max_doc_bytes(self) -> int:
        return int(self.max_doc_mb * (1 << 20))

    @property
    def shard_bytes(self) -> int:
        return int(self.shard_size_mb * (1 << 20))

    @property
    def user_dict_path(self) -> Optional[str]:
        return os.path.abspath(self.user_dict) if self.user_dict else None

    def output_settings(self) -> Dict:
        """The knobs that shape the kept documents: ``meta.json["settings"]`` (key order is the file's)."""
        return {"max_sentence_tokens": self.max_sentence_tokens, "min_doc_chars": self.min_doc_chars,
                "min_cjk_ratio": self.min_cjk_ratio, "max_doc_mb": self.max_doc_mb,
                "doc_separator": self.doc_separator, "json_key": self.json_key,
                # only when set: the settings (and resume fingerprints) of runs without it stay as they were
                **({"dedup": True} if self.dedup else {})}

    def check(self) -> None:
        """Everything that can be checked without loading anything; one ``UserError`` naming the flag."""
        if self.doc_separator not in ("line", "blank"):
            raise UserError(f"--doc-separator {self.doc_separator}: expected line or blank")
        for path in self.inputs:
            if not os.path.exists(path):
                raise UserError(f"--input {path}: no such file")
            if os.path.isdir(path):
                raise UserError(f"--input {path}: is a directory, expected a file")
            if not os.path.isfile(path):  # a FIFO or device: no size, no seeking for a resume
                raise UserError(f"--input {path}: not a regular file")
            try:
                with open(path, "rb") as f:
                    f.read(1)
            except OSError as e:
                raise UserError(f"--input {path}: cannot read ({e.strerror or e})") from None
        for name in ("max_sentence_tokens", "workers"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected a positive integer")
        if self.min_doc_chars < 0:
            raise UserError(f"--min-doc-chars {self.min_doc_chars}: expected >= 0")
        if not 0 <= self.min_cjk_ratio <= 1:
            raise UserError(f"--min-cjk-ratio {self.min_cjk_ratio}: expected a fraction in [0, 1]")
        if self.shard_size_mb <= 0 or self.max_doc_mb <= 0:
            raise UserError("--shard-size-mb and --max-doc-mb: expected positive sizes")
        if not os.path.isfile(self.vocab):
            raise UserError(f"--vocab {self.vocab}: no such file")
        if self.user_dict and not os.path.isfile(self.user_dict):
            raise UserError(f"--user-dict {self.user_dict}: no such file")


@dataclass(frozen=True)
class Resolved:
    """Validated ``Settings`` with what they resolve to.  Built once in the main process and inherited by the
    forked workers.  The tokenizer's character tables and the segmenter's dictionary are built on first use, so
    only the processes that encode (the workers) build them, and the main process stays a light coordinator."""

    settings: Settings
    inputs: List[dict]  # {"path": absolute, "bytes", "mtime_ns"} per input
    tok: object  # a data_tools.tokenizers.Tokenizer (load_tokenizer's)
    seg: object  # the tokenizer's whole-word segmenter (Tokenizer.segmenter)
    dtype: str  # token id dtype of .bin ("uint16" | "int32")
    user_dict_sha256: Optional[str]

    def fingerprint(self) -> Dict:
        """Everything that determines the output bytes; a resume with a different one is refused."""
        return {
            "inputs": self.inputs,
            "vocab_sha256": self.tok.vocab_sha256,
            "do_lower_case": self.settings.do_lower_case,
            "segmenter": [self.seg.name, str(self.seg.version), self.seg.dict_sha256],
            "user_dict_sha256": self.user_dict_sha256,
            **self.settings.output_settings(),
            "dtype": self.dtype,
            # today's kind is left out, so fingerprints of runs from before kinds existed still match
            **({"tokenizer": self.tok.kind} if self.tok.kind != DEFAULT_KIND else {}),
        }


def resolve(settings: Settings) -> Resolved:
    """Check ``settings`` and load the tokenizer and segmenter (``UserError`` on any problem)."""
    settings.check()
    inputs = []
    for path in settings.inputs:
        st = os.stat(path)
        inputs.append({"path": os.path.abspath(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    try:
        tok = load_tokenizer(settings.vocab, TokenizerSpec(settings.do_lower_case, settings.tokenizer))
    except VocabError as e:
        raise UserError(f"--vocab: {e}") from None  # the message names the file
    except ValueError as e:  # a tokenizer kind this version does not know (library callers; the CLI has choices)
        raise UserError(f"--tokenizer: {e}") from None
    try:
        seg = tok.segmenter(settings.segmenter, settings.user_dict_path)
    except (ValueError, ImportError) as e:
        raise UserError(f"--segmenter {settings.segmenter or '(default)'}: {e}") from None
    check_output_prefix(settings.output_prefix)
    return Resolved(settings, inputs, tok, seg, np.dtype(ixd.best_dtype(tok.vocab_size)).name,
                    sha256_file(settings.user_dict) if settings.user_dict else None)
