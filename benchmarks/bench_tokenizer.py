"""Tokenizer and document-encoder throughput (MB/s of UTF-8 input, one core).

    python benchmarks/bench_tokenizer.py [CORPUS] [--vocab vocab.txt] [--repeat 5]

CORPUS is one document per line (default: the embedded sample corpus); without --vocab a vocab is
built from it with data_tools.build_vocab.  Prints the median of --repeat runs for:

- ours (data_tools BertTokenizer.encode) vs HF ``tokenizers`` BertWordPieceTokenizer (Rust) vs
  transformers' slow BertTokenizer (Python, measured on a slice);
- DocumentEncoder with segmenter none / rjieba / jieba vs the segmenters alone
  (jieba.lcut and rjieba.cut): the word-boundary overhead on top of segmentation;
- the word-level kind (roformer_word, a word vocab from build_vocab --level word): ours vs transformers'
  RoFormerTokenizer itself (the issue asks >= 10x); our jieba segmenter alone (C++ JiebaDag.cut, a list of str
  like rjieba's) vs rjieba.cut(text, False) alone; and the document encoder (which cuts with ours) vs
  rjieba.cut(text, False) alone on the same text (>= 80%: preprocessing stays segmenter-bound).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one core for the Rust tokenizer too
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _median_mbps(fn, docs, nbytes, repeat, clock=time.perf_counter):
    times = []
    for _ in range(repeat):
        t0 = clock()
        for d in docs:
            fn(d)
        times.append(clock() - t0)
    return nbytes / 1e6 / statistics.median(times)


def main(argv=None) -> int:
    from data_tools.build_vocab import build_vocab
    from data_tools.segment import make_segmenter
    from data_tools.tokenizer import BertTokenizer, DocumentEncoder

    here = os.path.dirname(os.path.abspath(__file__))
    default_corpus = os.path.join(here, "..", "data_tools", "sample_data", "sample_corpus.txt")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("corpus", nargs="?", default=default_corpus)
    p.add_argument("--vocab")
    p.add_argument("--word-vocab", help="word-level vocab (default: built with build_vocab --level word)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--slow-docs", type=int, default=100, help="documents for transformers' slow tokenizer")
    args = p.parse_args(argv)

    with open(args.corpus, encoding="utf-8") as f:
        docs = [line.rstrip("\n") for line in f if line.strip()]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    tmp = tempfile.TemporaryDirectory()
    vocab = args.vocab or os.path.join(tmp.name, "vocab.txt")
    if not args.vocab:
        build_vocab([args.corpus], vocab)
    print(f"corpus {args.corpus}: {len(docs)} docs, {nbytes / 1e6:.2f} MB; vocab {vocab}; median of {args.repeat}")
    print("(figures taken on a shared machine: compare the ratios, not the absolute MB/s)")

    tok = BertTokenizer(vocab)
    rows = []
    ours = _median_mbps(tok.encode, docs, nbytes, args.repeat)
    rows.append(("ours BertTokenizer.encode", ours, 1.0))
    try:
        from tokenizers import BertWordPieceTokenizer

        hf_fast = BertWordPieceTokenizer(vocab, lowercase=True)
        fast = _median_mbps(lambda d: hf_fast.encode(d, add_special_tokens=False), docs, nbytes, args.repeat)
        rows.append(("HF tokenizers BertWordPieceTokenizer", fast, fast / ours))
    except ImportError:
        pass
    from transformers import BertTokenizer as SlowBertTokenizer

    slow_tok = SlowBertTokenizer(vocab)
    sub = docs[: args.slow_docs]
    sub_bytes = sum(len(d.encode("utf-8")) for d in sub)
    slow = _median_mbps(lambda d: slow_tok.convert_tokens_to_ids(slow_tok.tokenize(d)), sub, sub_bytes, 1)
    rows.append((f"transformers slow BertTokenizer ({len(sub)} docs)", slow, slow / ours))
    print(f"\n{'tokenizer':48s} {'MB/s':>8s} {'x ours':>8s}")
    for name, mbps, ratio in rows:
        print(f"{name:48s} {mbps:8.2f} {ratio:8.3f}")

    print(f"\n{'document encoder':48s} {'MB/s':>8s} {'vs segmenter alone':>20s}")
    enc_none = DocumentEncoder(tok, make_segmenter("none"))
    print(f"{'DocumentEncoder none':48s} {_median_mbps(enc_none.encode, docs, nbytes, args.repeat):8.2f}")
    for name in ("rjieba", "jieba"):
        try:
            seg = make_segmenter(name)
        except ValueError as e:
            print(f"{name}: unavailable ({e})")
            continue
        repeat = args.repeat if name == "rjieba" else max(1, args.repeat // 2)
        enc = DocumentEncoder(tok, seg)
        # interleaved, so that both see the same machine load
        pairs = [(_median_mbps(seg.words, docs, nbytes, 1), _median_mbps(enc.encode, docs, nbytes, 1))
                 for _ in range(repeat)]
        alone = statistics.median(a for a, _ in pairs)
        full = statistics.median(f for _, f in pairs)
        ref = "jieba.lcut" if name == "jieba" else "rjieba.cut"
        print(f"{ref + ' alone':48s} {alone:8.2f}")
        print(f"{'DocumentEncoder ' + name:48s} {full:8.2f} {full / alone:19.1%}")
    _bench_word_level(args, docs, nbytes, tmp.name)
    return 0


def _bench_word_level(args, docs, nbytes, tmp):
    import rjieba
    from transformers import RoFormerTokenizer

    from data_tools.build_vocab import build_word_vocab
    from data_tools.tokenizers import TokenizerSpec, load_tokenizer

    vocab = args.word_vocab or os.path.join(tmp, "word_vocab.txt")
    if not args.word_vocab:
        build_word_vocab([args.corpus], vocab)
    tok = load_tokenizer(vocab, TokenizerSpec(True, "roformer_word"))
    ref = RoFormerTokenizer(vocab)
    sub = docs[: args.slow_docs]
    sub_bytes = sum(len(d.encode("utf-8")) for d in sub)
    assert all(tok.encode(d).tolist() == ref.convert_tokens_to_ids(ref.tokenize(d)) for d in sub), "ids differ"
    # interleaved, so that both see the same machine load; CPU time of this (single-threaded) process, which a
    # shared machine disturbs far less than wall time
    cpu = time.process_time
    pairs = [(_median_mbps(lambda d: ref.convert_tokens_to_ids(ref.tokenize(d)), sub, sub_bytes, 1, cpu),
              _median_mbps(tok.encode, sub, sub_bytes, 1, cpu)) for _ in range(args.repeat)]
    slow = statistics.median(a for a, _ in pairs)
    ours = statistics.median(b for _, b in pairs)
    print(f"\n{'word level (' + f'{tok.vocab_size} tokens; CPU time)':48s} {'MB/s':>8s} "
          f"{'x RoFormerTokenizer':>20s}")
    print(f"{f'transformers RoFormerTokenizer ({len(sub)} docs)':48s} {slow:8.2f} {1.0:20.1f}")
    print(f"{f'ours roformer_word encode ({len(sub)} docs)':48s} {ours:8.2f} {ours / slow:20.1f}")
    seg = tok.segmenter()
    enc = tok.document_encoder(seg)
    cut = seg.dag.cut  # loaded before timing (once per process)
    triples = [(_median_mbps(lambda d: rjieba.cut(d.lower(), False), docs, nbytes, 1, cpu),
                _median_mbps(lambda d: cut(d.lower()), docs, nbytes, 1, cpu),
                _median_mbps(enc.encode, docs, nbytes, 1, cpu)) for _ in range(args.repeat)]
    alone, ours_cut, full = (statistics.median(t[k] for t in triples) for k in range(3))
    print(f"{'rjieba.cut(text.lower(), False) alone':48s} {alone:8.2f}")
    print(f"{'ours JiebaDag.cut(text.lower()) alone':48s} {ours_cut:8.2f} {ours_cut / alone:19.1%} of rjieba alone")
    print(f"{'ours roformer_word document encoder':48s} {full:8.2f} {full / alone:19.1%} of rjieba alone")


if __name__ == "__main__":
    sys.exit(main())
