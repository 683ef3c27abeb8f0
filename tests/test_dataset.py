"""ernie_style.data.dataset: WWM + SOP samples, splits, blending, collation.  Budget: < 60 s."""
import pickle

import numpy as np
import pytest

import _dataset_util as du
from data_tools.indexed_dataset import MMapIndexedDataset
from ernie_style.data.spec import BlendSource, SampleSpec, Split
from ernie_style.data.dataset import (
    BlendedDataset,
    Collator,
    PretrainingDataset,
    _truncated_lengths,
    blending_indices,
    build_datasets,
)

CLS, SEP, MASK, PAD, UNK = 2, 3, 4, 0, 1  # ids in du.write_vocab


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    vocab = du.write_vocab(str(d / "vocab.txt"), 300)
    prefix = du.synthetic_prefix(str(d / "synth"), n_docs=300, unk_rate=0.01)
    return prefix, vocab


_DATASET_ARGS = ("split", "num_samples", "cache_dir", "blend_member")


def _spec(vocab, splits="1,0,0", **kw):
    return SampleSpec(vocab, Split.parse(splits), **kw)


def _ds(prefix, vocab, **kw):
    """A PretrainingDataset; ``kw`` holds its arguments and SampleSpec fields (``splits`` as text)."""
    args = dict(split="train", num_samples=400)
    spec = dict(max_seq_len=128, seed=7)
    for k, v in kw.items():
        (args if k in _DATASET_ARGS else spec)[k] = v
    return PretrainingDataset(prefix, _spec(vocab, **spec), **args)


def _blend(*pairs):
    return [BlendSource(p, float(w)) for p, w in pairs]


def _vocab_ids(vocab):
    """(ids of every "[...]" token, [CLS], [SEP], [MASK]) read straight from vocab.txt."""
    with open(vocab, encoding="utf-8") as f:
        toks = [line.rstrip("\n") for line in f]
    specials = np.array([i for i, t in enumerate(toks) if len(t) > 2 and t[0] == "[" and t[-1] == "]"])
    return specials, toks.index("[CLS]"), toks.index("[SEP]"), toks.index("[MASK]")


# ----------------------------------------------------------------------------- pure helpers


def test_split_boundaries_match_paddlenlp():
    from paddlenlp.data.causal_dataset import get_train_valid_test_split_ as reference

    for s in ["949,50,1", "98,2,0", "1,1,1", "7,2,1", "1", "3,1", "0.8,0.1,0.1", " 5 ,.5,5."]:
        for n in [0, 1, 2, 3, 7, 10, 99, 100, 601, 12345]:
            assert Split.parse(s).boundaries(n) == reference(s.replace(" ", ""), n), (s, n)


@pytest.mark.parametrize("bad", ["", "a,b", "0,0,0", "-1,2,1", "1,2,3,4", "7/2/1", "1e3", ".", "1,,1", "inf"])
def test_bad_splits_are_clear_errors(bad):
    with pytest.raises(ValueError, match="split="):
        Split.parse(bad)


def test_samples_equal_the_recorded_ones(synth):
    """The samples of six spec variants hash to what the dataset gave before the layout/masker split
    (tests/golden/samples_sha256.json, recorded with the code of 2026-12-02 before ernie_style/data/masking.py)."""
    import hashlib
    import json
    import os

    def digest(ds, n):
        h = hashlib.sha256()
        for i in range(n):
            sample = ds[i]
            for k in sorted(sample):
                h.update(k.encode())
                h.update(np.ascontiguousarray(np.asarray(sample[k], np.int64)).tobytes())
        return h.hexdigest()

    cases = {"default": {}, "max_ngrams_1": {"max_ngrams": 1}, "favor_longer": {"favor_longer_ngram": True,
                                                                                   "max_ngrams": 4},
             "cap_5": {"max_predictions_per_seq": 5}, "no_sop": {"binary_head": False},
             "prob_03_len_64": {"masked_lm_prob": 0.3, "max_seq_len": 64, "short_seq_prob": 0.3}}
    with open(os.path.join(os.path.dirname(__file__), "golden", "samples_sha256.json")) as f:
        golden = json.load(f)
    prefix, vocab = synth
    for name, kw in cases.items():
        spec = _spec(vocab, "8,1,1", **dict(dict(max_seq_len=128, seed=7), **kw))
        got = [digest(PretrainingDataset(prefix, spec, split="train", num_samples=300), 300),
               digest(PretrainingDataset(prefix, spec, split="valid", num_samples=50), 50)]
        assert got == golden[name], name


def test_sample_index_cache_names_are_the_recorded_ones(synth, tmp_path):
    """The index cache key (from SampleSpec.index_params) is the one the dataset used before the spec existed:
    existing caches stay valid.  Names recorded with the code of 2026-12-02 before ernie_style/data/spec.py."""
    import os

    prefix, vocab = synth
    for kw in ({}, {"max_seq_len": 64, "short_seq_prob": 0.3, "binary_head": False}):
        spec = _spec(vocab, "8,1,1", **dict(dict(max_seq_len=128, seed=7), **kw))
        for split, n in (("train", 300), ("valid", 40)):
            PretrainingDataset(prefix, spec, split=split, num_samples=n, cache_dir=str(tmp_path))
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".npy")) == [
        "synth_train_samples_2c21da9532a2a392.npy", "synth_train_samples_665d50dea7a56a10.npy",
        "synth_valid_samples_0916645b033bf743.npy", "synth_valid_samples_696500ec5449edbc.npy"]


def test_truncation_lengths_match_literal_simulation():
    for la in range(1, 25):
        for lb in range(1, 25):
            for target in range(2, 50):
                assert _truncated_lengths([la, lb], target) == list(du.simulate_truncation(la, lb, target))
    assert _truncated_lengths([30], 10) == [10]


def test_blending_matches_megatron_helper():
    from tool_helpers import helpers

    for weights in ([0.5, 0.5], [0.7, 0.2, 0.1], [0.001, 0.999], [1 / 3, 1 / 3, 1 / 3]):
        n = 5000
        ref_d = np.zeros(n, np.uint8)
        ref_s = np.zeros(n, np.int64)
        helpers.build_blending_indices(ref_d, ref_s, np.array(weights, np.float64), len(weights), n, False)
        d, s = blending_indices(weights, n)
        np.testing.assert_array_equal(d, ref_d)
        np.testing.assert_array_equal(s, ref_s)
        shares = np.bincount(d, minlength=len(weights)) / n
        np.testing.assert_allclose(shares, weights, atol=2 / n)


# ----------------------------------------------------------------------------- samples


def test_structure_truncation_and_token_types(synth):
    prefix, vocab = synth
    ds = _ds(prefix, vocab)
    data = MMapIndexedDataset(prefix)
    n_pairs = 0
    for i in range(len(ds)):
        s = ds[i]
        first, end, target = (int(v) for v in ds.samples_mapping[i])
        ids, segs = du.split_sample(s, CLS, SEP)
        assert s["input_ids"].dtype == np.int64 and s["masked_positions"].dtype == np.int64
        assert len(ids) <= 128
        span_total = int(data.sizes[first:end].sum())
        body = sum(e - b for b, e in segs)
        assert body == min(span_total, target), (i, body, span_total, target)  # truncation keeps the target
        tt = s["token_type_ids"]
        if len(segs) == 2:
            n_pairs += 1
            assert int(s["sop_label"]) in (0, 1)
            a_end = segs[0][1]
            assert (tt[: a_end + 1] == 0).all() and (tt[a_end + 1:] == 1).all()
            assert all(e > b for b, e in segs)
        else:
            assert int(s["sop_label"]) == -100 and (tt == 0).all()
            assert end - first == 1  # one segment only when the span has one sentence
        # the tokens are the corpus tokens of the span, in order inside each segment
        span = np.asarray(data.tokens[data.offsets[first]:data.offsets[first] + span_total], np.int64)
        for b, e in segs:
            assert len(du.find_segment(span, ids[b:e])) >= 1
    assert n_pairs > len(ds) // 2


def test_single_sentence_docs_and_no_binary_head(synth):
    prefix, vocab = synth
    data = MMapIndexedDataset(prefix)
    ds = _ds(prefix, vocab)
    single = [i for i in range(len(ds)) if ds.samples_mapping[i][1] - ds.samples_mapping[i][0] == 1]
    assert single, "single-sentence documents must be used"
    docs_of_one = {int(data.doc_idx[d]) for d in range(data.n_docs) if data.doc_idx[d + 1] - data.doc_idx[d] == 1}
    assert docs_of_one & {int(ds.samples_mapping[i][0]) for i in single}
    for i in single:
        assert int(ds[i]["sop_label"]) == -100
    flat = _ds(prefix, vocab, binary_head=False)
    for i in range(100):
        s = flat[i]
        assert int(s["sop_label"]) == -100 and (s["token_type_ids"] == 0).all()
        assert (s["input_ids"] == SEP).sum() == 1 and s["input_ids"][-1] == SEP


def _check_masking(ds, data, n, vocab):
    """Counts for the statistics; asserts integrity, specials and positions on every sample."""
    special_ids, CLS, SEP, MASK = _vocab_ids(vocab)
    stats = dict(body=0, masked=0, mask=0, random=0, same=0, sop=[], words=0, ambiguous=0)
    for i in range(n):
        s = ds[i]
        pos, labels, out = s["masked_positions"], s["masked_labels"], s["input_ids"]
        assert (np.diff(pos) > 0).all(), "masked_positions sorted and unique"
        ids, segs = du.split_sample(s, CLS, SEP)
        assert not np.isin(labels, special_ids).any(), "a special token was masked"
        assert not np.isin(ids[pos], [CLS, SEP]).any()
        replaced = out[pos]
        is_mask = replaced == MASK
        is_same = replaced == labels
        is_random = ~is_mask & ~is_same
        assert not np.isin(replaced[is_random], special_ids).any(), "random replacement is a special id"
        stats["mask"] += int(is_mask.sum())
        stats["same"] += int(is_same.sum())
        stats["random"] += int(is_random.sum())
        stats["masked"] += len(pos)
        body_ids = np.concatenate([ids[b:e] for b, e in segs])
        n_body = int((~np.isin(body_ids, special_ids)).sum())
        stats["body"] += n_body
        assert len(pos) <= max(1, round(n_body * ds.masked_lm_prob))
        if len(segs) == 2:
            stats["sop"].append(int(s["sop_label"]))
        # whole-word integrity against the corpus flags
        first, end, _ = (int(v) for v in ds.samples_mapping[i])
        start = int(data.offsets[first])
        sizes = np.asarray(data.sizes[first:end], np.int64)
        span = np.asarray(data.tokens[start:start + sizes.sum()], np.int64)
        span_flags = np.array(data.wwm[start:start + sizes.sum()], bool)
        span_flags[np.cumsum(sizes) - sizes] = True
        masked = np.zeros(len(ids), bool)
        masked[pos] = True
        for b, e in segs:
            where = du.find_segment(span, ids[b:e])
            if len(where) != 1:
                stats["ambiguous"] += 1
                continue
            flags = span_flags[where[0]:where[0] + e - b].copy()
            flags[0] = True
            seg_special = np.isin(ids[b:e], special_ids)
            flags[1:] |= seg_special[:-1]
            word_id = np.cumsum(flags)
            seg_masked = masked[b:e]
            for w in np.unique(word_id[seg_masked]):
                in_word = (word_id == w) & ~seg_special
                stats["words"] += 1
                assert seg_masked[in_word].all(), f"sample {i}: word masked partially"
    return stats


def _assert_statistics(stats):
    assert stats["ambiguous"] < 0.01 * stats["words"] + 5
    rate = stats["masked"] / stats["body"]
    assert abs(rate - 0.15) <= 0.01, rate
    for key, share in (("mask", 0.8), ("random", 0.1), ("same", 0.1)):
        assert abs(stats[key] / stats["masked"] - share) <= 0.02, (key, stats[key] / stats["masked"])
    sop = np.array(stats["sop"])
    assert len(sop) > 1000 and abs(sop.mean() - 0.5) <= 0.02, (len(sop), sop.mean())


def test_masking_statistics_synthetic(synth):
    prefix, vocab = synth
    ds = _ds(prefix, vocab, num_samples=3000, max_seq_len=64)
    stats = _check_masking(ds, MMapIndexedDataset(prefix), len(ds), vocab)
    _assert_statistics(stats)


def test_masking_statistics_sample_corpus(sample_data):
    ds = _ds(sample_data.prefix, sample_data.vocab, num_samples=4000, max_seq_len=128, seed=11)
    stats = _check_masking(ds, MMapIndexedDataset(sample_data.prefix), len(ds), sample_data.vocab)
    _assert_statistics(stats)
    assert stats["words"] > 10000


def test_longer_ngrams_are_masked(synth):
    """max_ngrams=1 masks single words; the default also masks runs of adjacent words."""
    prefix, vocab = synth

    def runs(ds):
        longest = 0
        for i in range(200):
            pos = ds[i]["masked_positions"]
            breaks = np.concatenate([[-1], np.flatnonzero(np.diff(pos) != 1), [len(pos) - 1]])
            longest = max(longest, int(np.diff(breaks).max()))
        return longest

    assert runs(_ds(prefix, vocab, max_ngrams=3)) > runs(_ds(prefix, vocab, max_ngrams=1))

    def mean_span(ds):  # masked tokens per run of adjacent masked positions
        spans = tokens = 0
        for i in range(300):
            pos = ds[i]["masked_positions"]
            spans += 1 + int((np.diff(pos) != 1).sum())
            tokens += len(pos)
        return tokens / spans

    assert mean_span(_ds(prefix, vocab, favor_longer_ngram=True)) > 1.1 * mean_span(_ds(prefix, vocab))


def _original_ids(sample):
    ids = sample["input_ids"].copy()
    ids[sample["masked_positions"]] = sample["masked_labels"]
    return ids


def test_sop_label_means_corpus_order_and_the_cut_is_a_sentence_boundary(sample_data):
    """Label 0: the first segment precedes the second in the corpus; label 1: swapped.  The A/B
    cut falls between two sentences.  On the sample corpus built by data_tools (jieba WWM)."""
    prefix, vocab = sample_data.prefix, sample_data.vocab
    _, cls_id, sep_id, _ = _vocab_ids(vocab)
    data = MMapIndexedDataset(prefix)
    long_samples = _ds(prefix, vocab, num_samples=1000, max_seq_len=512, seed=5)
    short_samples = _ds(prefix, vocab, num_samples=500, max_seq_len=64, seed=5)
    exact = {0: 0, 1: 0}
    located = 0
    for ds, i in [(ds, i) for ds in (long_samples, short_samples) for i in range(len(ds))]:
        s = ds[i]
        label = int(s["sop_label"])
        if label == -100:
            continue
        first, end, target = (int(v) for v in ds.samples_mapping[i])
        sizes = np.asarray(data.sizes[first:end], np.int64)
        start = int(data.offsets[first])
        span = np.asarray(data.tokens[start:start + sizes.sum()], np.int64)
        inner_boundaries = np.cumsum(sizes)[:-1]  # token offsets where sentence 2.. of the span start
        ids, ((b0, e0), (b1, e1)) = du.split_sample(s, cls_id, sep_id)
        a, b = (ids[b0:e0], ids[b1:e1]) if label == 0 else (ids[b1:e1], ids[b0:e0])  # a: earlier in corpus
        if len(span) <= target:  # not truncated: A + B is the span exactly, cut between sentences
            np.testing.assert_array_equal(np.concatenate([a, b]), span, err_msg=f"sample {i}, label {label}")
            assert len(a) in inner_boundaries, (i, len(a))
            exact[label] += 1
            continue
        # truncated: each segment is a contiguous piece of its side of the cut
        where_a, where_b = du.find_segment(span, a), du.find_segment(span, b)
        if len(where_a) == 1 and len(where_b) == 1:
            a_end, b_start = where_a[0] + len(a), where_b[0]
            assert a_end <= b_start, (i, label)
            assert ((inner_boundaries >= a_end) & (inner_boundaries <= b_start)).any(), i
            located += 1
    assert exact[0] > 100 and exact[1] > 100, exact
    assert located > 100, located


def test_truncation_trims_the_longer_segment_from_both_ends(synth, tmp_path):
    """Two-sentence documents (so A and B are known): the longer segment loses the tokens (the
    shorter only once both are equal), each trimmed segment is a contiguous piece of its sentence,
    and over many samples both the front and the back are cut, about equally often."""
    _, vocab = synth
    prefix = du.synthetic_prefix(str(tmp_path / "pairs"), n_docs=300, seed=3, sentences_per_doc=2)
    data = MMapIndexedDataset(prefix)
    ds = _ds(prefix, vocab, num_samples=1500, max_seq_len=64)
    cut_front = cut_back = fronts = backs = truncated = 0
    for i in range(len(ds)):
        s = ds[i]
        first, end, target = (int(v) for v in ds.samples_mapping[i])
        assert end - first == 2 and int(s["sop_label"]) in (0, 1)
        ids, segs = du.split_sample(s, CLS, SEP)
        sentences = [np.asarray(data[k], np.int64) for k in (first, first + 1)]
        if int(s["sop_label"]) == 1:
            sentences.reverse()  # now in the order of the sample's segments
        before = [len(x) for x in sentences]
        after = [e - b for b, e in segs]
        if sum(before) <= target:
            assert after == before
            continue
        truncated += 1
        assert sum(after) == target
        longer = int(before[1] >= before[0])  # B on ties, as Megatron
        lost = [x - y for x, y in zip(before, after)]
        if abs(before[0] - before[1]) >= sum(lost):
            assert lost[1 - longer] == 0 and lost[longer] == sum(lost), (i, before, after)
        else:  # the longer came down to the shorter's length, then both lost alternately
            assert abs(after[0] - after[1]) <= 1, (i, before, after)
        for (b, e), sentence, n_lost in zip(segs, sentences, lost):
            where = du.find_segment(sentence, ids[b:e])
            assert len(where) >= 1, f"sample {i}: a segment is not a contiguous piece of its sentence"
            if n_lost == 0 or len(where) != 1:
                continue
            front = int(where[0])
            cut_front += front
            cut_back += n_lost - front
            fronts += front > 0
            backs += n_lost - front > 0
    assert truncated > 500, truncated
    assert fronts > 200 and backs > 200, (fronts, backs)
    assert abs(cut_front / (cut_front + cut_back) - 0.5) < 0.05, (cut_front, cut_back)


def test_ngram_lengths_are_drawn_with_p_inverse_to_n(synth):
    prefix, vocab = synth
    rng = np.random.default_rng(0)
    draws = 200_000

    def shares(ds, avail):
        n = ds.masker._ngram_lengths(np.full(draws, avail), rng)
        assert n.min() >= 1 and n.max() <= avail
        return np.bincount(n, minlength=avail + 1)[1:] / draws

    ds = _ds(prefix, vocab)  # max_ngrams=3
    np.testing.assert_allclose(shares(ds, 3), [6 / 11, 3 / 11, 2 / 11], atol=0.005)
    # near the end of a sample only the n-grams that fit are drawn, with the same 1/n ratios
    np.testing.assert_allclose(shares(ds, 2), [2 / 3, 1 / 3], atol=0.005)
    np.testing.assert_array_equal(shares(ds, 1), [1.0])
    np.testing.assert_allclose(shares(_ds(prefix, vocab, max_ngrams=4), 4), np.array([12, 6, 4, 3]) / 25, atol=0.005)
    np.testing.assert_allclose(shares(_ds(prefix, vocab, favor_longer_ngram=True), 3), [2 / 11, 3 / 11, 6 / 11],
                               atol=0.005)


def test_num_to_predict_cap_and_floor(synth):
    """num_to_predict = min(max_predictions, max(1, round(n_body * masked_lm_prob)))."""
    prefix, vocab = synth
    special_ids = _vocab_ids(vocab)[0]

    def n_body(s):
        return int((~np.isin(_original_ids(s), special_ids)).sum())

    capped = _ds(prefix, vocab, max_predictions_per_seq=5)
    binding = at_cap = 0
    for i in range(len(capped)):
        s = capped[i]
        budget = max(1, round(n_body(s) * capped.masked_lm_prob))
        k = len(s["masked_positions"])
        assert k <= min(5, budget), (i, k, budget)
        if budget > 5:
            binding += 1
            at_cap += k == 5
    assert binding > 200 and at_cap > 0.9 * binding, (binding, at_cap)
    uncapped = _ds(prefix, vocab)
    assert max(len(uncapped[i]["masked_positions"]) for i in range(100)) > 5

    # floor: round(n_body * 0.005) == 0 for every sample here, yet one token is masked
    tiny = _ds(prefix, vocab, masked_lm_prob=0.005, max_seq_len=64)
    counts = []
    for i in range(len(tiny)):
        s = tiny[i]
        assert round(n_body(s) * 0.005) == 0
        counts.append(len(s["masked_positions"]))
    counts = np.array(counts)
    # only a one-token word fits a budget of 1 (words are masked whole); nearly every sample has one
    assert counts.max() == 1 and counts.mean() > 0.95, counts.mean()


# ----------------------------------------------------------------------------- determinism


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def test_determinism_two_objects_and_pickle(synth):
    prefix, vocab = synth
    ds1, ds2 = _ds(prefix, vocab), _ds(prefix, vocab)
    for i in [0, 5, 399, 17, 5]:
        _same(ds1[i], ds2[i])
    blob = pickle.dumps(ds1)
    assert len(blob) < 2000, "the dataset must pickle only its arguments"
    ds3 = pickle.loads(blob)
    for i in [3, 200]:
        _same(ds1[i], ds3[i])
    other = _ds(prefix, vocab, seed=8)
    assert any(not np.array_equal(ds1[i]["input_ids"], other[i]["input_ids"]) for i in range(10))


_LOADER_SCRIPT = """
import pickle, sys
import numpy as np
import paddle
from ernie_style.data.dataset import Collator

ds = pickle.load(open(sys.argv[1], "rb"))
out = {}
for workers in (2, 0):  # workers first: fork before this process has any paddle threads
    loader = paddle.io.DataLoader(ds, batch_size=8, shuffle=False, num_workers=workers,
                                  collate_fn=Collator(0), use_buffer_reader=False)
    for j, batch in enumerate(loader):
        for k, v in batch.items():
            out[f"{workers}/{j}/{k}"] = np.asarray(v)
np.savez(sys.argv[2], **out)
"""


def test_dataloader_workers_do_not_change_samples(synth, tmp_path):
    """paddle.io.DataLoader with 2 workers vs in-process gives the same batches.

    Run in a fresh interpreter: paddle's host allocator holds a lock from its reader threads, and a
    DataLoader forking while an earlier loader's thread holds it deadlocks the worker (paddle 3.3.1, CPU;
    reproduced with consecutive loaders in one process).  A fresh process forks before any such thread.
    """
    import subprocess
    import sys

    prefix, vocab = synth
    ds = _ds(prefix, vocab, num_samples=48)
    (tmp_path / "ds.pkl").write_bytes(pickle.dumps(ds))
    script = tmp_path / "loader.py"
    script.write_text(_LOADER_SCRIPT)
    out = tmp_path / "batches.npz"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "ds.pkl"), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(out)
    keys = ("input_ids", "token_type_ids", "attention_mask", "masked_positions", "masked_labels", "sop_labels")
    collate = Collator(PAD)
    for j in range(6):
        direct = collate([ds[i] for i in range(8 * j, 8 * j + 8)])
        for k in keys:
            np.testing.assert_array_equal(got[f"2/{j}/{k}"], got[f"0/{j}/{k}"], err_msg=k)
            np.testing.assert_array_equal(got[f"2/{j}/{k}"], direct[k], err_msg=k)
    assert "2/6/input_ids" not in got


# ----------------------------------------------------------------------------- splits and blending


def test_splits_partition_documents(synth):
    prefix, vocab = synth
    data = MMapIndexedDataset(prefix)
    bounds = Split.parse("8,1,1").boundaries(data.n_docs)
    spec = _spec(vocab, "8,1,1", max_seq_len=64)
    train, valid, test = build_datasets(_blend((prefix, 1)), spec, num_samples=(200, 50, 30))
    assert train.doc_range == (bounds[0], bounds[1]) and valid.doc_range == (bounds[1], bounds[2])
    assert test.doc_range == (bounds[2], bounds[3]) and bounds[3] == data.n_docs
    for ds in (train, valid, test):
        lo, hi = (int(data.doc_idx[d]) for d in ds.doc_range)
        m = ds.samples_mapping
        assert (m[:, 0] >= lo).all() and (m[:, 1] <= hi).all(), ds.split
        assert len(ds) == {"train": 200, "valid": 50, "test": 30}[ds.split]
    assert build_datasets(_blend((prefix, 1)), spec, num_samples=(20, 0, 0))[1:] == (None, None)


def test_empty_and_tiny_split_messages(synth):
    prefix, vocab = synth
    with pytest.raises(ValueError, match=r"split 'test'.*300/0/0 of 300 documents.*no documents"):
        _ds(prefix, vocab, split="test", splits="1000,1,0")
    with pytest.warns(UserWarning, match=r"split 'valid'.*only 3 documents"):
        _ds(prefix, vocab, split="valid", splits="97,1,0", num_samples=10)


def test_blended_dataset_ratios_and_determinism(synth, tmp_path):
    prefix, vocab = synth
    other = du.synthetic_prefix(str(tmp_path / "other"), n_docs=100, seed=5)
    train, valid, _ = build_datasets(_blend((prefix, 3.0), (other, 1.0)), _spec(vocab, "9,1,0", max_seq_len=64),
                                     num_samples=(400, 40, 0))
    assert isinstance(train, BlendedDataset) and len(train) == 400 and len(valid) == 40
    shares = np.bincount(train.dataset_index, minlength=2) / len(train)
    np.testing.assert_allclose(shares, [0.75, 0.25], atol=0.005)
    # member d's k-th pick is that member's sample k
    for idx in [0, 1, 2, 3, 199, 399]:
        d, k = int(train.dataset_index[idx]), int(train.dataset_sample_index[idx])
        _same(train[idx], train.datasets[d][k])
    again = pickle.loads(pickle.dumps(train))
    for idx in [10, 311]:
        _same(train[idx], again[idx])
    with pytest.raises(ValueError, match="weights"):
        BlendedDataset([train.datasets[0]], [1.0, 2.0], 10)


def test_blend_members_draw_from_their_own_random_streams(synth):
    """Two members reading the same data used to repeat each other's masks and swaps; now each
    member has its own stream, and a lone dataset keeps its samples."""
    prefix, vocab = synth
    spec = _spec(vocab, max_seq_len=64, seed=7)
    blend = build_datasets(_blend((prefix, 1.0), (prefix, 1.0)), spec, num_samples=(100, 0, 0))[0]
    m0, m1 = blend.datasets
    assert (m0._args["blend_member"], m1._args["blend_member"]) == (0, 1)
    lone = build_datasets(_blend((prefix, 0.3)), spec, num_samples=(60, 0, 0))[0]
    assert isinstance(lone, PretrainingDataset) and lone._args["blend_member"] is None
    direct = PretrainingDataset(prefix, spec, split="train", num_samples=60)

    def differ(x, y):
        return sum(not np.array_equal(x[i]["input_ids"], y[i]["input_ids"]) for i in range(50))

    np.testing.assert_array_equal(m0.samples_mapping, m1.samples_mapping)  # same sentences...
    assert differ(m0, m1) > 40 and differ(m0, lone) > 40  # ...different draws
    for i in range(50):
        _same(lone[i], direct[i])


def test_blend_index_is_built_lazily_once_per_process_not_pickled(synth, tmp_path, monkeypatch):
    import ernie_style.data.dataset as dataset_module

    prefix, vocab = synth
    other = du.synthetic_prefix(str(tmp_path / "other"), n_docs=100, seed=5)
    train = build_datasets(_blend((prefix, 3.0), (other, 1.0)), _spec(vocab, max_seq_len=64),
                           num_samples=(300, 0, 0))[0]
    blob = pickle.dumps(train)
    assert len(blob) < 5000, "the blend must pickle its members' arguments, not its index"
    built = []
    real = dataset_module.blending_indices
    monkeypatch.setattr(dataset_module, "blending_indices", lambda w, n: built.append(n) or real(w, n))
    dataset_module._shared_blending_indices.cache_clear()
    workers = [pickle.loads(blob) for _ in range(3)]  # what spawned DataLoader workers do
    assert built == []
    for k, w in enumerate(workers):
        _same(w[k], train[k])
        np.testing.assert_array_equal(w.dataset_sample_index, train.dataset_sample_index)
    assert built == [300]  # one build shared by every copy in this process
    assert not train.dataset_index.flags.writeable


# ----------------------------------------------------------------------------- collation


def test_collator_flattening_vs_numpy_reference(synth):
    prefix, vocab = synth
    ds = _ds(prefix, vocab)
    samples = [ds[i] for i in range(13)]
    batch = Collator(PAD)(samples)
    lengths = [len(s["input_ids"]) for s in samples]
    seq = batch["input_ids"].shape[1]
    assert seq % 8 == 0 and max(lengths) <= seq < max(lengths) + 8
    assert all(batch[k].dtype == np.int64 for k in ("input_ids", "token_type_ids", "attention_mask",
                                                    "masked_positions", "masked_labels", "sop_labels"))
    np.testing.assert_array_equal(batch["attention_mask"].sum(1), lengths)
    assert batch["num_tokens"] == sum(lengths)
    assert batch["padding_fraction"] == pytest.approx(1 - sum(lengths) / (13 * seq))
    # reference: row/col pairs through np.ravel_multi_index, then gather from the flat batch
    rows = np.concatenate([np.full(len(s["masked_positions"]), r) for r, s in enumerate(samples)])
    cols = np.concatenate([s["masked_positions"] for s in samples])
    np.testing.assert_array_equal(batch["masked_positions"], np.ravel_multi_index((rows, cols), (13, seq)))
    np.testing.assert_array_equal(batch["input_ids"].reshape(-1)[batch["masked_positions"]],
                                  np.concatenate([s["input_ids"][s["masked_positions"]] for s in samples]))
    np.testing.assert_array_equal(batch["masked_labels"], np.concatenate([s["masked_labels"] for s in samples]))
    np.testing.assert_array_equal(batch["sop_labels"], [int(s["sop_label"]) for s in samples])
    for r, s in enumerate(samples):
        assert (batch["input_ids"][r, lengths[r]:] == PAD).all()
        np.testing.assert_array_equal(batch["token_type_ids"][r, :lengths[r]], s["token_type_ids"])
    full = Collator(PAD, pad_to_max_length=True, max_seq_len=128)(samples)
    assert full["input_ids"].shape == (13, 128)
    np.testing.assert_array_equal(full["input_ids"].reshape(-1)[full["masked_positions"]],
                                  batch["input_ids"].reshape(-1)[batch["masked_positions"]])


def test_vocab_mismatch_is_a_clear_error(sample_data, tmp_path):
    other = du.write_vocab(str(tmp_path / "other_vocab.txt"), 300)
    with pytest.raises(ValueError, match=r"meta\.json.*token ids would be misread"):
        _ds(sample_data.prefix, other, num_samples=10)
    with pytest.raises(ValueError, match="split='dev'"):
        _ds(sample_data.prefix, sample_data.vocab, split="dev", num_samples=10)
