"""The run: lock the prefix, resolve the settings, plan the shards, let the workers do them, commit each in input
order, concatenate, publish with the meta.  The main process only coordinates: it reads no input text and
encodes nothing, and does not load the tokenizer's tables or the segmenter's dictionary, which the workers build
for themselves (it writes the shard journal, concatenates the shards and counts ``[UNK]`` at the end)."""
from __future__ import annotations

import glob
import os
import sys
import time
from typing import Optional

import numpy as np

from data_tools import indexed_dataset as ixd
from data_tools import locking
from data_tools import meta as dmeta
from data_tools.io_utils import UserError, check_output_prefix, describe_os_error, remove_quietly

from . import dedup
from .report import RunFacts, build_meta
from .settings import Settings, resolve
from .shards import JOURNAL, MANIFEST, SHARD_EXTS, ShardStore, shard_size
from .worker import Executor


def cleanup_stale_temps(prefix: str) -> None:
    for ext in (".bin", ".idx", ".wwm", ".sizes", ".docs", ".meta.json"):
        remove_quietly(glob.glob(glob.escape(prefix + ext) + ".tmp.*"))


class _Progress:
    """tqdm over input bytes read (by all workers), with a docs/s postfix."""

    def __init__(self, total: Optional[int], initial: int, quiet: bool):
        self.bar = None
        self.initial = initial
        self.t0 = time.time()
        self.last = 0.0
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc="preprocess",
                            file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def show(self, nbytes: int, docs: int) -> None:
        """``nbytes`` and ``docs`` read by this run so far."""
        if self.bar is None:
            return
        self.bar.update(self.initial + nbytes - self.bar.n)
        now = time.time()
        if now - self.last > 0.5:
            self.last = now
            self.bar.set_postfix_str(f"{docs / max(now - self.t0, 1e-9):,.0f} docs/s", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def preprocess(settings: Settings) -> dmeta.DatasetMeta:
    """Run the whole pipeline; returns the meta that was written to ``PREFIX.meta.json``.

    Holds the exclusive lock ``PREFIX.lock`` throughout: a second preprocess or merge of the same prefix is
    refused (naming this process) instead of deleting this run's temporary files and shards."""
    prefix = settings.output_prefix
    check_output_prefix(prefix)  # a missing or read-only directory: one line, before the lock file
    with locking.exclusive(prefix + ".lock", what=f"--output-prefix {prefix}", remove=True):
        return _preprocess_locked(settings)


def _preprocess_locked(settings: Settings) -> dmeta.DatasetMeta:
    t0 = time.time()
    job = resolve(settings)
    prefix = settings.output_prefix
    cleanup_stale_temps(prefix)  # ours to remove: we hold the prefix's lock, so no other run is writing them
    sizes = [i["bytes"] for i in job.inputs]
    store = ShardStore(prefix, job.fingerprint(), list(settings.inputs), sizes)
    resumed = store.open()
    done = store.total()  # what earlier, interrupted runs already committed
    total = None if any(p.endswith(".gz") for p in settings.inputs) else sum(sizes)
    tasks = store.tasks(shard_size(settings.shard_bytes, job.inputs), settings.doc_separator == "blank",
                        settings.max_doc_bytes)
    executor = Executor(job, settings.workers)  # fork before tqdm starts its monitor thread
    progress = _Progress(total, done.input_bytes, settings.quiet)
    # the output is staged while the workers run: each committed shard is appended at once (the main process is
    # idle otherwise), so only the last shard, the index and the checksums are left for the end
    output = ixd.MMapIndexedDatasetBuilder(prefix, np.dtype(job.dtype), with_wwm=True)
    ok = False
    t_run = time.time()
    seen = dedup.SeenKeys()  # the keys of the documents before the next shard, in input order

    def append(prefix: str, acct=None) -> None:
        """Append a shard to the output (its duplicates left out with --dedup); ``acct``: count them in it first
        (a shard committed by an earlier run has its counts in the journal already)."""
        shard = ixd.MMapIndexedDataset(prefix)
        pairs = dedup.read_hashes(prefix)
        keep = seen.first_occurrences(pairs[:, 0])
        if acct is not None:
            dedup.account(acct, keep, pairs[:, 1], shard, drop=settings.dedup)
        output.add_prefix(shard, keep if settings.dedup else None)

    try:
        for i in range(len(store.shards)):
            append(store.shard_prefix(i))
        for task, result in zip(tasks, executor.results(tasks, lambda: progress.show(*executor.counter.get()))):
            append(task.prefix, result.accounting)  # before commit: the journal records the shard's duplicates
            store.commit(task, result)
        ok = True
        t_run = time.time() - t_run
    except OSError as e:
        raise UserError(f"{describe_os_error(e, 'writing ' + prefix)}; nothing final was written"
                        f" (committed shards kept in {store.dir}: rerun to resume)") from None
    finally:
        executor.close(ok)
        progress.close()
        if not ok:
            output.abort()
            # an unfinished shard's files (a failed worker in this process, or the pool's, cut short)
            cleanup_uncommitted(store)
    acct = store.total()
    acct.check()
    if acct.docs_out == 0:
        output.abort()
        store.remove()
        raise UserError(f"no document kept out of {acct.docs_in} read (skipped: {acct.skipped or 'none'}); "
                        f"nothing written to {prefix}")
    facts = RunFacts(settings.workers, 0.0, t_run, done, resumed, len(store.shards))

    def meta_for(files: dict) -> dmeta.DatasetMeta:
        facts.elapsed_s = time.time() - t0
        return build_meta(job, acct, files, output.staged[".bin"], facts)

    # stage the output, then publish it with its meta (data_tools.meta.publish): a failure leaves the previous
    # output or nothing that looks complete, and the shards for a rerun
    try:
        try:
            output.stage()
        except BaseException:
            output.abort()
            raise
        meta = dmeta.publish(output, prefix, meta_for)
    except OSError as e:
        raise UserError(f"{describe_os_error(e, 'writing ' + prefix)}; no new output was published"
                        f" (committed shards kept in {store.dir}: rerun to finish)") from None
    store.remove()
    return meta


def cleanup_uncommitted(store: ShardStore) -> None:
    """Remove shard files the journal does not list (a worker's complete but uncommitted shard, temp files)."""
    listed = {os.path.basename(store.shard_prefix(i)) + ext for i in range(len(store.shards)) for ext in SHARD_EXTS}
    if os.path.isdir(store.dir):
        remove_quietly([os.path.join(store.dir, n) for n in os.listdir(store.dir)
                        if n not in (MANIFEST, JOURNAL) and n not in listed])
