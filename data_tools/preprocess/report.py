"""``PREFIX.meta.json`` assembly (a ``data_tools.meta.DatasetMeta``) and the summary table printed at the end."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict

from data_tools import meta as dmeta
from data_tools import unk
from data_tools.io_utils import format_table, human_bytes

from . import dedup
from .messages import Accounting
from .settings import Resolved


@dataclass
class RunFacts:
    """How this invocation went (``meta.json["run"]``; the only part that differs between equal outputs)."""

    workers: int
    elapsed_s: float
    processing_s: float
    done_before: Accounting  # what earlier, interrupted runs had committed
    resumed: bool
    shards: int


def build_meta(job: Resolved, acct: Accounting, files: Dict[str, dmeta.FileInfo], staged_bin: str,
               run: RunFacts) -> dmeta.DatasetMeta:
    s = job.settings
    return dmeta.DatasetMeta(
        created_by="data_tools.preprocess",
        vocab=dmeta.VocabInfo(path=os.path.abspath(s.vocab), sha256=job.tok.vocab_sha256, size=int(job.tok.vocab_size)),
        tokenizer=dmeta.TokenizerSpec(do_lower_case=s.do_lower_case, kind=job.tok.kind),
        segmenter=dmeta.SegmenterInfo(
            name=job.seg.name, version=str(job.seg.version), dict_sha256=job.seg.dict_sha256,
            user_dict=s.user_dict_path, user_dict_sha256=job.user_dict_sha256,
        ),
        settings=s.output_settings(),
        dtype=job.dtype,
        wwm_encoding="uint8",
        inputs=[{"path": i["path"], "bytes": i["bytes"]} for i in job.inputs],
        counts=dmeta.Counts(docs_in=acct.docs_in, docs_out=acct.docs_out, sentences=acct.sentences,
                            tokens=acct.tokens, input_bytes=acct.input_bytes),
        skipped=dict(sorted(acct.skipped.items())),
        skipped_first=dict(sorted(acct.skipped_first.items())),
        repaired=dict(sorted(acct.repaired.items())),
        repaired_first=dict(sorted(acct.repaired_first.items())),
        files=files,
        unk=unk.report(job.tok, staged_bin, job.dtype, acct.tokens, list(s.inputs), s.json_key),
        duplicates=dedup.entry(acct, s.dedup),
        run={"workers": run.workers, "elapsed_s": round(run.elapsed_s, 3), "processing_s": round(run.processing_s, 3),
             "processed": {"input_bytes": acct.input_bytes - run.done_before.input_bytes,
                           "docs_in": acct.docs_in - run.done_before.docs_in,
                           "tokens": acct.tokens - run.done_before.tokens},
             "resumed": run.resumed,
             "shards": run.shards},
    )


def summary_table(meta: dict) -> str:
    c = meta["counts"]
    elapsed = meta["run"]["elapsed_s"]
    busy = meta["run"]["processing_s"]
    p = meta["run"]["processed"]
    rows = [
        ("docs in", f"{c['docs_in']:,}"),
        ("docs out", f"{c['docs_out']:,}"),
    ]
    for reason, n in meta["skipped"].items():
        rows.append((f"skipped: {reason}", f"{n:,}  (first: {', '.join(meta['skipped_first'][reason][:3])})"))
    for reason, n in meta["repaired"].items():
        rows.append((f"repaired: {reason}", f"{n:,}  (first: {', '.join(meta['repaired_first'][reason][:3])})"))
    rows += [
        ("sentences", f"{c['sentences']:,}"),
        ("tokens", f"{c['tokens']:,}"),
        ("[UNK] tokens", unk.describe(meta["unk"])),
        ("duplicate docs", dedup.describe(meta["duplicates"])),
        ("input", human_bytes(c["input_bytes"])),
        ("speed", f"{p['input_bytes'] / 1e6 / max(busy, 1e-9):.2f} MB/s, {p['docs_in'] / max(busy, 1e-9):,.0f} docs/s"
                  f", {p['tokens'] / max(busy, 1e-9):,.0f} tokens/s while processing"
                  f"{' (this run; the rest was resumed from shards)' if meta['run']['resumed'] else ''}"),
        ("elapsed", f"{elapsed:.1f} s, of which {busy:.1f} s processing ({meta['run']['workers']} workers)"),
    ]
    for ext, f in meta["files"].items():
        rows.append((f"output {ext}", f"{f['path']}  {human_bytes(f['bytes'])}"))
    return format_table(rows, title="preprocess summary")
