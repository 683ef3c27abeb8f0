"""The command line: flags -> ``Settings`` -> ``run.preprocess``, the summary table, one-line errors."""
from __future__ import annotations

import argparse
import sys

from data_tools import unk
from data_tools.io_utils import run_cli
from data_tools.tokenizers import DEFAULT_KIND, KINDS

from . import dedup
from . import settings as S
from .report import summary_table
from .run import preprocess
from .settings import Settings


def build_parser() -> argparse.ArgumentParser:
    # the package's docstring is --help (the package imports this module)
    from data_tools import preprocess as package

    p = argparse.ArgumentParser(prog="python -m data_tools.preprocess",
                                description=package.__doc__.split("\n\n")[0])
    p.add_argument("--input", nargs="+", required=True, metavar="FILE", help=".txt/.jsonl, optionally .gz")
    p.add_argument("--vocab", required=True, help="BERT/ERNIE vocab.txt")
    p.add_argument("--output-prefix", required=True, help="writes PREFIX.bin/.idx/.wwm/.meta.json")
    p.add_argument("--json-key", default="text", help="text field of .jsonl records (default: text)")
    p.add_argument("--doc-separator", choices=("line", "blank"), default="line",
                   help=".txt layout: one document per line (line) or blank-line separated documents (blank)")
    p.add_argument("--segmenter", choices=("jieba", "rjieba", "none"), default=None,
                   help="whole-word boundaries (default: the tokenizer kind's: jieba for the character-level kind; "
                        "the word-level kind cuts its own words with rjieba)")
    p.add_argument("--user-dict", default=None, help="extra segmenter words, jieba user-dict format")
    p.add_argument("--workers", type=int, default=1, help="encoder processes (output identical for any value)")
    p.add_argument("--min-doc-chars", type=int, default=S.DEFAULT_MIN_DOC_CHARS,
                   help=f"skip documents with fewer non-whitespace characters (default {S.DEFAULT_MIN_DOC_CHARS})")
    p.add_argument("--min-cjk-ratio", type=float, default=S.DEFAULT_MIN_CJK_RATIO,
                   help=f"skip documents whose CJK share of characters is below this (default "
                        f"{S.DEFAULT_MIN_CJK_RATIO}; 0 keeps all)")
    p.add_argument("--max-sentence-tokens", type=int, default=S.DEFAULT_MAX_SENTENCE_TOKENS,
                   help=f"longer sentences are cut, never dropped (default {S.DEFAULT_MAX_SENTENCE_TOKENS})")
    p.add_argument("--max-doc-mb", type=float, default=S.DEFAULT_MAX_DOC_MB,
                   help=f"skip (and count) documents larger than this (default {S.DEFAULT_MAX_DOC_MB:g})")
    p.add_argument("--shard-size-mb", type=float, default=S.DEFAULT_SHARD_MB,
                   help=f"input MB per shard at most, the unit of work and of resume (default "
                        f"{S.DEFAULT_SHARD_MB:g}; smaller inputs get ~1/256 of their size, at least 1 MB)")
    p.add_argument("--no-lower-case", action="store_true", help="keep case (for cased vocabularies)")
    p.add_argument("--tokenizer", choices=sorted(KINDS), default=DEFAULT_KIND,
                   help=f"tokenizer kind, recorded in meta.json (default: {DEFAULT_KIND})")
    p.add_argument("--dedup", action="store_true",
                   help="drop exact duplicate documents, each kept at its first occurrence (they are counted "
                        "either way)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_args(args)

    def body() -> int:
        try:
            meta = preprocess(settings)
        except KeyboardInterrupt:
            print(f"interrupted: committed shards kept in {settings.output_prefix}.shards; "
                  f"rerun the same command to resume", file=sys.stderr)
            return 130
        if not settings.quiet:
            print(summary_table(meta.to_dict()))
        if unk.warning(meta.unk):
            print(unk.warning(meta.unk), file=sys.stderr)
        if dedup.warning(meta.duplicates):
            print(dedup.warning(meta.duplicates), file=sys.stderr)
        return 0

    return run_cli(body)
