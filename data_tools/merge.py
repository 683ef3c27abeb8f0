"""Concatenate preprocessed datasets into one: ``python -m data_tools.merge --inputs P1 P2 ... --output-prefix P``.

Only datasets that tokenised alike may be merged: same vocab (sha256), id dtype, lowercasing,
segmenter (name, version, dictionary and user dictionary).  Anything else is refused with one
line naming the first mismatching input.  Data is streamed through
``indexed_dataset.concat_datasets`` into staged files that ``data_tools.meta.publish`` makes visible
together with the merged ``P.meta.json`` (a failure leaves the previous output or nothing that looks complete).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import List

from data_tools import indexed_dataset as ixd
from data_tools import locking, unk
from data_tools.io_utils import UserError, check_output_prefix, describe_os_error, run_cli
from data_tools.meta import Counts, DatasetMeta, meta_path, publish, read_meta
from data_tools.preprocess import MAX_LOCATIONS, _cleanup_stale_temps

# (label, getter) of every setting that must agree between merged datasets
_MUST_MATCH = [
    ("vocab sha256", lambda m: m.vocab.sha256),
    ("tokenizer", lambda m: m.tokenizer.kind),
    ("dtype", lambda m: m.dtype),
    ("lowercasing", lambda m: m.tokenizer.do_lower_case),
    ("segmenter", lambda m: (m.segmenter.name, m.segmenter.version, m.segmenter.dict_sha256)),
    ("user dictionary", lambda m: m.segmenter.user_dict_sha256),
    ("wwm encoding", lambda m: m.wwm_encoding),
]


def _check_files(prefix: str, meta: DatasetMeta) -> None:
    for ext, f in meta.files.items():
        path = prefix + ext
        if not os.path.exists(path):
            raise UserError(f"{path}: missing (listed in {meta_path(prefix)})")
        if os.path.getsize(path) != f.bytes:
            raise UserError(f"{path}: {os.path.getsize(path)} bytes, meta.json says {f.bytes} (damaged?)")


def merge(inputs: List[str], output_prefix: str) -> DatasetMeta:
    """Merge under the exclusive lock ``OUTPUT_PREFIX.lock`` (shared with preprocess): a concurrent run on the
    same prefix is refused; temporary files a killed run left behind are removed first."""
    check_output_prefix(output_prefix)  # a missing or read-only directory: one line, before the lock file
    with locking.exclusive(output_prefix + ".lock", what=f"--output-prefix {output_prefix}", remove=True):
        _cleanup_stale_temps(output_prefix)
        return _merge_locked(inputs, output_prefix)


def _merge_locked(inputs: List[str], output_prefix: str) -> DatasetMeta:
    t0 = time.time()
    if len(inputs) < 1:
        raise UserError("--inputs: expected at least one prefix")
    if os.path.abspath(output_prefix) in {os.path.abspath(p) for p in inputs}:
        raise UserError(f"--output-prefix {output_prefix}: must differ from every input")
    seen = {}
    for p in inputs:
        if os.path.abspath(p) in seen:
            raise UserError(f"--inputs: {p} is given twice (as {seen[os.path.abspath(p)]} before); its documents "
                            "would be in the merged data twice")
        seen[os.path.abspath(p)] = p
    metas = [read_meta(p) for p in inputs]
    by_content = {}
    for p, m in zip(inputs, metas):
        _check_files(p, m)
        digest = m.file_sha256(".bin")
        if digest and digest in by_content:
            raise UserError(f"--inputs: {p} has the same content as {by_content[digest]} (the sha256 of .bin in "
                            "their meta.json); its documents would be in the merged data twice")
        by_content.setdefault(digest, p)
    for label, get in _MUST_MATCH:
        ref = get(metas[0])
        for p, m in zip(inputs[1:], metas[1:]):
            if get(m) != ref:
                raise UserError(f"{p}: {label} {get(m)!r} differs from {inputs[0]}'s {ref!r}; "
                                f"only datasets preprocessed alike can be merged")
    check_output_prefix(output_prefix)
    counts = Counts.total([m.counts for m in metas])
    skipped, skipped_first, repaired, repaired_first = {}, {}, {}, {}
    for m in metas:
        for counts_d, first_d, key in ((skipped, skipped_first, "skipped"), (repaired, repaired_first, "repaired")):
            for reason, n in getattr(m, key).items():
                counts_d[reason] = counts_d.get(reason, 0) + n
                first = first_d.setdefault(reason, [])
                first.extend(getattr(m, key + "_first").get(reason, [])[: MAX_LOCATIONS - len(first)])
    assert counts.docs_out + sum(skipped.values()) == counts.docs_in, "merged accounting broken"
    first = metas[0]

    def build_meta(files) -> DatasetMeta:
        return DatasetMeta(
            created_by="data_tools.merge",
            vocab=first.vocab,
            tokenizer=first.tokenizer,
            segmenter=first.segmenter,
            settings=first.settings,
            dtype=first.dtype,
            wwm_encoding=first.wwm_encoding,
            inputs=[i for m in metas for i in m.inputs],
            merged_from=[{"prefix": os.path.abspath(p), "counts": dataclasses.asdict(m.counts)}
                         for p, m in zip(inputs, metas)],
            counts=counts,
            skipped=dict(sorted(skipped.items())),
            skipped_first=dict(sorted(skipped_first.items())),
            repaired=dict(sorted(repaired.items())),
            repaired_first=dict(sorted(repaired_first.items())),
            files=files,
            unk=(unk.merged([m.unk for m in metas], counts.tokens) if all(m.unk is not None for m in metas)
                 else None),
            run={"elapsed_s": round(time.time() - t0, 3)},
        )

    # staged data + meta published together: a failure leaves the previous output or nothing that looks complete
    try:
        builder = ixd.concat_datasets(inputs, output_prefix, with_wwm=True, publish=False)
        return publish(builder, output_prefix, build_meta)
    except OSError as e:
        raise UserError(describe_os_error(e, f"writing {output_prefix}") + "; no new output was published") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_tools.merge", description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", nargs="+", required=True, metavar="PREFIX", help="preprocessed dataset prefixes")
    p.add_argument("--output-prefix", required=True, help="writes PREFIX.bin/.idx/.wwm/.meta.json")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    def body() -> int:
        meta = merge(args.inputs, args.output_prefix)
        if not args.quiet:
            c = meta.counts
            print(f"merged {len(args.inputs)} datasets into {args.output_prefix}: {c.docs_out:,} docs, "
                  f"{c.sentences:,} sentences, {c.tokens:,} tokens")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
