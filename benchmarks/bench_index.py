"""Time and peak memory of the sample index build: ours vs PaddleNLP's C++ helpers.

    python benchmarks/bench_index.py [--scale 1.0] [--runs 3] [--packing-samples 256000000] [--packing-only]

Builds a synthetic index of CLUECorpusSmall's shape in memory -- 15M documents, ~250M
sentences (~16.7 per document, geometric), ~20 tokens per sentence (uniform 2..38), so about
5B tokens -- times ``scale``, then runs, in this one process and on the same arrays:

* ``data_tools.build_samples_mapping`` (int64 rows, and uint32 rows = the default "auto" below 4.29B sentences),
* ``tool_helpers.helpers.build_mapping`` (PaddleNLP's Megatron-derived helpers; uint32 rows),

for one epoch, and for ``num_epochs=None`` with ``max_num_samples`` = 1.5 epochs (PaddleNLP
then builds two whole epochs, we build 1.5).  Prints the median wall time, the peak extra
resident memory of the call (VmHWM after the call minus VmRSS before it, with the high-water
mark reset through /proc/self/clear_refs) and ratios ours/PaddleNLP.

Then the packed indexes (``data.packing``): ``full_sentences`` and ``doc_sentences`` against today's ``pairs``
index for the same number of samples, ``--packing-samples`` (default 256M: the reference run's 1M steps x batch
256, several epochs of the corpus), uint32 rows, with the ratios packed/pairs.
"""
import argparse
import ctypes
import gc
import os
import statistics
import sys
import time

import numpy as np

from data_tools import build_samples_mapping


def synthetic_index(scale: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_docs = int(15_000_000 * scale)
    per_doc = rng.geometric(1 / 16.7, n_docs).astype(np.int64)
    doc_idx = np.empty(n_docs + 1, np.int64)
    doc_idx[0] = 0
    np.cumsum(per_doc, out=doc_idx[1:])
    del per_doc
    n_sent = int(doc_idx[-1])
    sizes = np.empty(n_sent, np.int32)
    chunk = 1 << 24
    for start in range(0, n_sent, chunk):
        stop = min(n_sent, start + chunk)
        sizes[start:stop] = rng.integers(2, 39, stop - start, dtype=np.int32)
    return doc_idx, sizes


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _release_freed_memory():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(fn):
    """(seconds, peak extra MB, result length) of one call."""
    _release_freed_memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        hwm_ok = True
    except OSError:
        hwm_ok = False
    before = _status_kb("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = (_status_kb("VmHWM") - before) / 1024 if hwm_ok else float("nan")
    n = len(out)
    del out
    _release_freed_memory()
    return dt, peak, n


def main():
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        # A fixed threshold: every large block is its own mmap, returned to the system when
        # freed, so one variant cannot reuse pages another left resident (that hides its peak).
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
        os.execv(sys.executable, [sys.executable] + sys.argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of CLUECorpusSmall's size (default 1.0)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--short-seq-prob", type=float, default=0.1)
    ap.add_argument("--packing-samples", type=int, default=256_000_000,
                    help="samples of the packed-vs-pairs comparison (default 256M)")
    ap.add_argument("--packing-only", action="store_true", help="only the packed-vs-pairs comparison")
    args = ap.parse_args()

    t0 = time.perf_counter()
    doc_idx, sizes = synthetic_index(args.scale)
    print(f"synthetic index (scale {args.scale}): {len(doc_idx) - 1:,} documents, {len(sizes):,} sentences, "
          f"{int(sizes.sum(dtype=np.int64)):,} tokens, inputs {(doc_idx.nbytes + sizes.nbytes) / 2**20:,.0f} MB, "
          f"built in {time.perf_counter() - t0:.1f} s")
    try:
        from tool_helpers import helpers as paddle_helpers
    except ImportError:
        paddle_helpers = None
        print("tool_helpers is not installed: PaddleNLP's helpers are not measured (pip install '.[bench]')")

    common = dict(max_seq_len=args.max_seq_len, short_seq_prob=args.short_seq_prob, seed=1234)
    bench_packing(doc_idx, sizes, common, args.packing_samples, args.runs)
    if args.packing_only:
        return
    max_len = args.max_seq_len - 3
    one_epoch = len(build_samples_mapping(doc_idx, sizes, num_epochs=1, max_num_samples=None, dtype=np.uint32,
                                          **common))
    scenarios = {
        "1 epoch": dict(num_epochs=1, max_num_samples=None),
        "1.5 epochs by max_num_samples": dict(num_epochs=None, max_num_samples=one_epoch * 3 // 2),
    }
    for title, sc in scenarios.items():
        calls = {
            "ours int64": lambda sc=sc: build_samples_mapping(doc_idx, sizes, **sc, dtype=np.int64, **common),
            "ours uint32": lambda sc=sc: build_samples_mapping(doc_idx, sizes, **sc, dtype=np.uint32, **common),
        }
        if paddle_helpers is not None:
            epochs = sc["num_epochs"] or np.iinfo(np.int32).max - 1  # what PaddleNLP passes without an epoch count
            max_samples = sc["max_num_samples"] or np.iinfo(np.int64).max - 1
            calls["PaddleNLP"] = lambda e=epochs, m=max_samples: paddle_helpers.build_mapping(
                doc_idx, sizes, e, m, max_len, args.short_seq_prob, 1234, False, 2)
        results = {name: [] for name in calls}
        for _ in range(args.runs):  # interleaved, so load changes hit every variant alike
            for name, fn in calls.items():
                results[name].append(measure(fn))
        print(f"\n{title}: median of {args.runs} runs")
        print(f"  {'variant':<12} {'samples':>12} {'time s':>8} {'peak extra MB':>14}")
        med = {}
        for name, rs in results.items():
            med[name] = (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
            print(f"  {name:<12} {rs[0][2]:>12,} {med[name][0]:>8.2f} {med[name][1]:>14,.0f}")
        if "PaddleNLP" in med:
            ref_t, ref_m = med["PaddleNLP"]
            for name in ("ours int64", "ours uint32"):
                t, m = med[name]
                mem = f"x{m / ref_m:.2f}" if ref_m > 0 else "n/a"
                print(f"  {name} / PaddleNLP: time x{t / ref_t:.2f}, peak memory {mem}")


def bench_packing(doc_idx, sizes, common, n_samples: int, runs: int):
    """full_sentences and doc_sentences vs pairs, ``n_samples`` samples each (epochs added as needed)."""
    calls = {packing: (lambda packing=packing: build_samples_mapping(
        doc_idx, sizes, num_epochs=None, max_num_samples=n_samples, dtype=np.uint32, packing=packing, **common))
        for packing in ("pairs", "full_sentences", "doc_sentences")}
    results = {name: [] for name in calls}
    for _ in range(runs):  # interleaved, so load changes hit every variant alike
        for name, fn in calls.items():
            results[name].append(measure(fn))
    print(f"\npacked index vs pairs, {n_samples:,} samples (uint32 rows): median of {runs} runs")
    print(f"  {'packing':<15} {'samples':>13} {'time s':>8} {'peak extra MB':>14}")
    med = {}
    for name, rs in results.items():
        med[name] = (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
        print(f"  {name:<15} {rs[0][2]:>13,} {med[name][0]:>8.2f} {med[name][1]:>14,.0f}")
    ref_t, ref_m = med["pairs"]
    for name in ("full_sentences", "doc_sentences"):
        t, m = med[name]
        mem = f"x{m / ref_m:.2f}" if ref_m > 0 else "n/a"
        print(f"  {name} / pairs: time x{t / ref_t:.2f}, peak memory {mem}")


if __name__ == "__main__":
    main()
