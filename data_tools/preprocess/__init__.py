"""Raw corpus -> ``PREFIX.{bin,idx,wwm,meta.json}``: streaming, parallel, deterministic, resumable.

    python -m data_tools.preprocess --input corpus.txt [more.jsonl.gz ...] --vocab vocab.txt \\
        --output-prefix out/corpus [--workers 2] [--segmenter jieba|rjieba|none]

    from data_tools.preprocess import Settings, preprocess
    meta = preprocess(Settings(inputs=["corpus.txt"], vocab="vocab.txt", output_prefix="out/corpus", workers=2))

Inputs
    ``*.jsonl`` / ``*.jsonl.gz``: one JSON object per line, the text under ``--json-key`` (default ``text``).
    Anything else (``*.txt``, ``*.txt.gz``): with ``--doc-separator line`` (default) one document per
    line; with ``--doc-separator blank`` documents are separated by blank lines and each line is a
    sentence or paragraph.  ``.gz`` files are decompressed on the fly.

What happens to every document (``docs_out + sum(skipped) == docs_in`` is checked before meta is written)
    kept          encoded by the tokenizer's ``document_encoder`` (sentence split, tokens, word-start flags).
    repaired      still kept, but counted: ``invalid_utf8`` (undecodable bytes replaced by U+FFFD, which
                  the BERT tokenizer then drops), ``control_chars`` (NUL / C0 control bytes, dropped by
                  the tokenizer).
    skipped       counted by reason with the first input locations (``file:line``):
                  ``empty`` (blank line / whitespace only), ``malformed_json``, ``missing_key``,
                  ``non_string_value``, ``no_tokens`` (nothing left after tokenization),
                  ``too_short`` (fewer than ``--min-doc-chars`` non-whitespace characters, default 10),
                  ``non_chinese`` (CJK characters below ``--min-cjk-ratio`` of the non-whitespace
                  characters, default 0.1: English/code boilerplate in a Chinese corpus; 0 keeps all),
                  ``giant_document`` (a document over ``--max-doc-mb``, default 64 MB; read in bounded
                  chunks and discarded, never held in memory).
                  ``duplicate`` (with ``--dedup`` only: the same text, whitespace aside, as an earlier kept
                  document; it is kept at its first occurrence in input order, for any ``--workers`` and
                  across a resume).  Without ``--dedup`` duplicates are kept and counted: meta.json
                  ``duplicates``, the summary and ``inspect``; a warning above 1% (see ``dedup``).
    Documents between 1 MB and ``--max-doc-mb`` are cut into ~1 MB pieces at sentence ends (at a
    character boundary when a piece has no sentence end), encoded one after the other and written as
    one document, so a 30 MB line costs tens of MB of memory, not gigabytes.

Parallelism
    The input is planned as shards of at most ``--shard-size-mb`` input bytes (default 64; inputs under 16 GB
    get ~1/256 of their size, at least 1 MB, so that every worker has work), cut at document boundaries that
    depend only on the input.  Each worker takes the next shard, reads its byte ranges of the input files
    itself, encodes them and writes the shard's own ``.bin/.idx/.wwm``; the main process sends ~100-byte
    task messages, commits finished shards in input order and concatenates them at the end.
    A ``.gz`` file cannot be entered in the middle: each one is read whole by one worker, as one shard (or
    part of one) - several .gz files are decoded in parallel, one big .gz file by one worker (decompress it or
    split it to spread it), and it is also the resume unit.

Determinism and resume
    Shards are committed under ``PREFIX.shards/``: ``manifest.json`` holds a fingerprint of everything that
    determines the output (``Resolved.fingerprint``: inputs, vocab, tokenizer and segmenter settings), and
    ``committed.jsonl`` gets one line per committed shard (its input ranges, where the input stands after it,
    its counts and checksums).
    Rerunning the same command after a crash or ``kill -9`` continues after the last committed shard; a rerun
    with different settings is refused.  At the end the shards are concatenated (streaming, atomically) into
    ``PREFIX.*`` and the shard directory removed, so the output is byte-identical for any worker count and
    with or without interruptions.

Modules: ``reading`` (inputs, segments, decoding), ``worker`` (a shard's encoding and writing, the pool),
``dedup`` (duplicate documents: keys, the first-occurrence decision),
``messages`` (``ShardTask``/``ShardDone``/``Accounting``), ``shards`` (plan, manifest, resume), ``run`` (the
loop), ``report`` (meta.json, summary table), ``settings`` (``Settings``/``Resolved``), ``cli``.
"""
from .cli import build_parser, main
from .messages import MAX_LOCATIONS, Accounting, Segment, ShardDone, ShardTask
from .reading import iter_pieces, split_pieces
from .report import summary_table
from .run import cleanup_stale_temps, preprocess
from .settings import Resolved, Settings, resolve
from .shards import MANIFEST_FORMAT, ShardStore

_cleanup_stale_temps = cleanup_stale_temps  # (merge's name for it)

__all__ = ["Settings", "Resolved", "resolve", "preprocess", "main", "build_parser", "summary_table",
           "ShardStore", "ShardTask", "ShardDone", "Segment", "Accounting", "MAX_LOCATIONS", "MANIFEST_FORMAT",
           "iter_pieces", "split_pieces", "cleanup_stale_temps"]
