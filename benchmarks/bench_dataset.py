"""Samples/s of PretrainingDataset (WWM + SOP) vs a straightforward per-token Python version.

Builds a synthetic corpus of long documents (so samples fill max_seq_len), then times
``ds[i]`` over the same sample index for both implementations in the same run and prints
the medians and their ratio.  The baseline is the Megatron/ernie-1.0 shape: Python lists,
truncation one token at a time, candidate word lists, n-gram lists, a per-token 80/10/10.

    python benchmarks/bench_dataset.py [--max-seq-len 512] [--samples 2000] [--runs 5]

Then the other masking schemes (``data.masking`` char, span) and the packed layout (``data.packing``
full_sentences, MLM-only) against the default (wwm_ngram on sentence pairs), same corpus, same run.
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from data_tools.indexed_dataset import MMapIndexedDatasetBuilder
from ernie_style.data.dataset import PretrainingDataset
from ernie_style.data.spec import SampleSpec, Split

N_SPECIAL = 5  # [PAD] [UNK] [CLS] [SEP] [MASK]


def make_corpus(workdir: str, vocab_size: int = 21128, n_docs: int = 400, seed: int = 0):
    vocab = os.path.join(workdir, "vocab.txt")
    with open(vocab, "w", encoding="utf-8") as f:
        for tok in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]:
            f.write(tok + "\n")
        for k in range(vocab_size - N_SPECIAL):
            f.write(f"t{k}\n")
    rng = np.random.default_rng(seed)
    prefix = os.path.join(workdir, "bench")
    builder = MMapIndexedDatasetBuilder(prefix, np.uint16)
    for _ in range(n_docs):
        lengths, ids, flags = [], [], []
        for _ in range(int(rng.integers(5, 40))):
            word_lens = rng.choice([1, 2, 2, 2, 3, 4], size=int(rng.integers(8, 30)))
            n = int(word_lens.sum())
            fl = np.zeros(n, np.uint8)
            fl[np.cumsum(word_lens) - word_lens] = 1
            ids.append(rng.integers(N_SPECIAL, vocab_size, size=n))
            flags.append(fl)
            lengths.append(n)
        builder.add_document(np.concatenate(ids), lengths, np.concatenate(flags))
    builder.finalize()
    return prefix, vocab


class PerTokenBaseline:
    """The same sample recipe written plainly, one token at a time, with Python lists."""

    def __init__(self, ds: PretrainingDataset):
        self.ds = ds
        sp = ds.specials
        self.cls, self.sep, self.mask = sp.cls_id, sp.sep_id, sp.mask_id
        self.special = set(np.flatnonzero(sp.is_special).tolist())
        self.vocab_ids = sp.non_special_ids.tolist()
        self.max_ngrams = ds.spec.max_ngrams

    def __getitem__(self, idx: int):
        ds = self.ds
        first, end, target = (int(v) for v in ds.samples_mapping[idx])
        rng = np.random.default_rng([ds.seed, 99, idx])
        sents = []
        for s in range(first, end):
            start = int(ds.data.offsets[s])
            size = int(ds.data.sizes[s])
            toks = ds.data.tokens[start:start + size].tolist()
            flags = ds.data.wwm[start:start + size].tolist()
            flags[0] = 1
            sents.append(list(zip(toks, flags)))
        if len(sents) >= 2:
            k = int(rng.integers(1, len(sents)))
            a = [t for s in sents[:k] for t in s]
            b = [t for s in sents[k:] for t in s]
            swapped = rng.random() < 0.5
            if swapped:
                a, b = b, a
        else:
            a, b, swapped = [t for s in sents for t in s], [], None
        while len(a) + len(b) > target:
            seg = a if len(a) > len(b) else b
            if rng.random() < 0.5:
                del seg[0]
            else:
                seg.pop()
        if a:
            a[0] = (a[0][0], 1)
        if b:
            b[0] = (b[0][0], 1)
        tokens = [self.cls] + [t for t, _ in a] + [self.sep]
        starts = [0] + [f for _, f in a] + [0]
        types = [0] * len(tokens)
        if b:
            tokens += [t for t, _ in b] + [self.sep]
            starts += [f for _, f in b] + [0]
            types += [1] * (len(b) + 1)
        cand = []
        for i, tok in enumerate(tokens):
            if tok in self.special:
                continue
            if cand and not starts[i] and tokens[i - 1] not in self.special:
                cand[-1].append(i)
            else:
                cand.append([i])
        n_body = sum(len(w) for w in cand)
        num_to_predict = max(1, int(round(n_body * ds.masked_lm_prob)))
        pvals = 1.0 / np.arange(1, self.max_ngrams + 1)
        ngram_sets = [[cand[i:i + n] for n in range(1, self.max_ngrams + 1) if i + n <= len(cand)]
                      for i in range(len(cand))]
        order = rng.permutation(len(ngram_sets))
        covered, masked = set(), []
        for j in order:
            if len(masked) >= num_to_predict:
                break
            options = ngram_sets[j]
            p = pvals[:len(options)] / pvals[:len(options)].sum()
            n = int(rng.choice(len(options), p=p))
            index_set = [i for w in options[n] for i in w]
            while len(masked) + len(index_set) > num_to_predict and n > 0:
                n -= 1
                index_set = [i for w in options[n] for i in w]
            if len(masked) + len(index_set) > num_to_predict:
                continue
            if any(i in covered for i in index_set):
                continue
            for i in index_set:
                covered.add(i)
                masked.append((i, tokens[i]))
        output = list(tokens)
        for i, _ in masked:
            u = rng.random()
            if u < 0.8:
                output[i] = self.mask
            elif u < 0.9:
                output[i] = self.vocab_ids[int(rng.integers(len(self.vocab_ids)))]
        masked.sort()
        return {
            "input_ids": np.array(output, np.int64),
            "token_type_ids": np.array(types, np.int64),
            "masked_positions": np.array([i for i, _ in masked], np.int64),
            "masked_labels": np.array([t for _, t in masked], np.int64),
            "sop_label": np.int64(-100 if swapped is None else int(swapped)),
        }


def time_run(ds, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        ds[i]
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--baseline-samples", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        prefix, vocab = make_corpus(work)
        spec = SampleSpec(vocab, Split.parse("1,0,0"), max_seq_len=args.max_seq_len)
        ds = PretrainingDataset(prefix, spec, num_samples=args.samples, cache_dir=work)
        base = PerTokenBaseline(ds)
        lengths = [len(ds[i]["input_ids"]) for i in range(200)]
        masked = [len(ds[i]["masked_positions"]) for i in range(200)]
        ours, ref = [], []
        for _ in range(args.runs):
            ours.append(time_run(ds, args.samples))
            ref.append(time_run(base, min(args.baseline_samples, args.samples)))
        ours_m, ref_m = statistics.median(ours), statistics.median(ref)
        print(f"max_seq_len {args.max_seq_len}: mean sample length {np.mean(lengths):.1f} tokens, "
              f"{np.mean(masked):.1f} masked")
        print(f"ours      : {ours_m:9.1f} samples/s  (median of {args.runs} runs of {args.samples}; "
              f"min {min(ours):.1f}, max {max(ours):.1f})")
        print(f"per-token : {ref_m:9.1f} samples/s  (median of {args.runs} runs of "
              f"{min(args.baseline_samples, args.samples)})")
        print(f"ratio     : {ours_m / ref_m:9.2f}x")
        variants = {
            "wwm_ngram, pairs (default)": {},
            "char, pairs": {"masking": "char"},
            "span, pairs": {"masking": "span"},
            "wwm_ngram, full_sentences": {"packing": "full_sentences", "binary_head": False},
        }
        datasets = {name: PretrainingDataset(prefix, spec.replace(**kw), num_samples=args.samples, cache_dir=work)
                    for name, kw in variants.items()}
        times = {name: [] for name in variants}
        for _ in range(args.runs):  # interleaved, so load changes hit every variant alike
            for name, d in datasets.items():
                times[name].append(time_run(d, args.samples))
        print(f"\nmasking schemes and packing (median of {args.runs} runs of {args.samples}):")
        ref = statistics.median(times["wwm_ngram, pairs (default)"])
        for name, t in times.items():
            print(f"  {name:<28} {statistics.median(t):9.1f} samples/s   x{statistics.median(t) / ref:.2f}")
        print(f"load average at the end: {os.getloadavg()[0]:.2f} (figures taken on a shared machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
