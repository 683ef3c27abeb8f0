"""Look inside a preprocessed dataset: ``python -m data_tools.inspect PREFIX [--doc N] [--vocab FILE]``.

Prints the stats recorded in ``PREFIX.meta.json`` and measured from the index (documents,
sentences, tokens, length percentiles, word-start share), and with ``--doc N`` document N
decoded one sentence per line with its whole words separated by `` | `` (``中国 | 人民 | 银行``).
The vocab defaults to the one named in meta.json.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List

import numpy as np

from data_tools import indexed_dataset as ixd, unk
from data_tools.preprocess import dedup
from data_tools.io_utils import UserError, format_table, human_bytes, run_cli
from data_tools.meta import DatasetMeta, read_meta
from data_tools.vocab import VocabError, read_vocab


def load_vocab(path: str, from_meta: bool = False) -> List[str]:
    if not os.path.isfile(path):
        if from_meta:
            raise UserError(f"vocab {path} (named in meta.json): no such file; pass --vocab FILE")
        raise UserError(f"--vocab {path}: no such file")

    try:
        return read_vocab(path, required=())
    except VocabError as e:
        raise UserError(str(e)) from None


def _is_cjk(token: str) -> bool:
    return len(token) == 1 and (0x3400 <= ord(token) <= 0x9FFF or 0x20000 <= ord(token) <= 0x2FFFF
                                or 0xF900 <= ord(token) <= 0xFAFF)


def decode_words(ids: np.ndarray, wwm: np.ndarray, vocab: List[str]) -> str:
    """Tokens back to text, `` | `` before every token that starts a whole word (except the first)."""
    words: List[List[str]] = []
    for tid, start in zip(ids.tolist(), wwm.tolist()):
        tok = vocab[tid] if 0 <= tid < len(vocab) else f"[id {tid}]"
        if start or not words:
            words.append([])
        words[-1].append(tok)
    out = []
    for pieces in words:
        text = ""
        for i, tok in enumerate(pieces):
            if tok.startswith("##"):
                text += tok[2:]
            elif i and not (_is_cjk(tok) and _is_cjk(pieces[i - 1])):
                text += " " + tok  # two WordPiece words inside one segmenter word (e.g. "ai 芯片")
            else:
                text += tok
        out.append(text)
    return " | ".join(out)


def stats(prefix: str, meta: DatasetMeta, ds: ixd.MMapIndexedDataset) -> str:
    c = meta.counts
    n_docs, n_sent, n_tok = ds.n_docs, len(ds), ds.n_tokens
    rows = [
        ("created by", meta.created_by),
        ("vocab", f"{meta.vocab.path} ({meta.vocab.size} tokens, sha256 {meta.vocab.sha256[:12]}…)"),
        ("lowercase", str(meta.tokenizer.do_lower_case)),
        ("segmenter", f"{meta.segmenter.name} {meta.segmenter.version}"),
        ("dtype", meta.dtype),
        ("docs in / out", f"{c.docs_in:,} / {c.docs_out:,}"),
    ]
    for reason, n in meta.skipped.items():
        first = ", ".join(meta.skipped_first.get(reason, [])[:3])
        rows.append((f"skipped: {reason}", f"{n:,}  (first: {first})"))
    for reason, n in meta.repaired.items():
        rows.append((f"repaired: {reason}", f"{n:,}"))
    rows += [("documents", f"{n_docs:,}"), ("sentences", f"{n_sent:,}"), ("tokens", f"{n_tok:,}")]
    if meta.unk is not None:  # measured from the .bin; meta.json names the id and the unknown characters
        n_unk = unk.count_id(ixd.bin_path(prefix), ds.dtype, meta.unk["id"])
        entry = dict(meta.unk, tokens=n_unk, share=n_unk / n_tok if n_tok else 0.0)
        rows.append(("[UNK] tokens", unk.describe(entry)))
        if unk.warning(entry):
            chars = ", ".join(f"{c!r} x{n:,}" for c, n in entry["top_unknown_chars"])
            rows.append(("WARNING", f"[UNK] above {100 * unk.WARN_SHARE:g}% (the vocab does not fit the corpus); "
                                    f"most frequent unknown characters: {chars}"))
    else:
        rows.append(("[UNK] tokens", "not recorded (meta.json from before [UNK] counting)"))
    if meta.duplicates is not None:
        rows.append(("duplicate docs", dedup.describe(meta.duplicates)))
        if dedup.warning(meta.duplicates):
            rows.append(("WARNING", f"duplicates above {100 * dedup.WARN_SHARE:g}% of the documents (preprocess again "
                                    "with --dedup to drop them)"))
    if n_sent:
        sizes = np.asarray(ds.sizes)
        doc_sent = np.diff(np.asarray(ds.doc_idx))
        p = np.percentile(sizes, [50, 90, 99]).astype(int)
        rows += [
            ("tokens / sentence", f"mean {sizes.mean():.1f}, p50 {p[0]}, p90 {p[1]}, p99 {p[2]}, max {sizes.max()}"),
            ("sentences / doc", f"mean {doc_sent.mean():.1f}, max {doc_sent.max()}, "
                                f"single-sentence docs {int((doc_sent == 1).sum()):,}"),
        ]
        if ds.wwm is not None:
            rows.append(("word starts", f"{float(np.asarray(ds.wwm).mean()) * 100:.1f}% of tokens"))
    for ext in (".bin", ".idx", ".wwm"):
        if os.path.exists(prefix + ext):
            rows.append((f"file {ext}", human_bytes(os.path.getsize(prefix + ext))))
    mismatch = (n_docs, n_sent, n_tok) != (c.docs_out, c.sentences, c.tokens)
    if mismatch:
        rows.append(("WARNING", "index counts differ from meta.json counts"))
    return format_table(rows, title=f"dataset {prefix}")


def show_document(ds: ixd.MMapIndexedDataset, d: int, vocab: List[str]) -> str:
    if not 0 <= d < ds.n_docs:
        raise UserError(f"--doc {d}: out of range (the dataset has documents 0..{ds.n_docs - 1})")
    if ds.wwm is None:
        raise UserError(f"{ixd.wwm_path(ds.prefix)}: missing, cannot show word boundaries")
    first, last = int(ds.doc_idx[d]), int(ds.doc_idx[d + 1])
    lines = [f"document {d}: {last - first} sentences"]
    for s in range(first, last):
        lines.append(decode_words(np.asarray(ds[s]), np.asarray(ds.get_wwm(s)), vocab))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_tools.inspect", description=__doc__.split("\n\n")[0])
    p.add_argument("prefix", help="dataset prefix (PREFIX.idx/.bin/.wwm/.meta.json)")
    p.add_argument("--doc", type=int, default=None, help="show document N decoded with word boundaries")
    p.add_argument("--vocab", default=None, help="vocab.txt (default: the one recorded in meta.json)")
    args = p.parse_args(argv)

    def body() -> int:
        meta = read_meta(args.prefix)
        try:
            ds = ixd.MMapIndexedDataset(args.prefix)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(str(e)) from None
        print(stats(args.prefix, meta, ds))
        if args.doc is not None:
            vocab = load_vocab(args.vocab or meta.vocab.path, from_meta=args.vocab is None)
            print()
            print(show_document(ds, args.doc, vocab))
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
