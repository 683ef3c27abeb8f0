"""data.packing: the packed sample index (data_tools.helpers, C++) and the packed samples of the dataset.

full_sentences = RoBERTa's FULL-SENTENCES (whole sentences across documents, [SEP] between documents, filled to
max_seq_len); doc_sentences = DOC-SENTENCES (within one document).  Budget: ~10 s.
"""
import numpy as np
import pytest

import _dataset_util as du
from data_tools.helpers import build_samples_mapping, get_samples_mapping, packed_window
from data_tools.indexed_dataset import MMapIndexedDataset
from ernie_style.data.dataset import PretrainingDataset
from ernie_style.data.spec import SampleSpec, Split
from test_helpers import MT19937_64, splitmix64, synthetic

CLS, SEP, MASK = 2, 3, 4  # ids in du.write_vocab


def _with_long_and_empty(seed=0, n_docs=300):
    """synthetic() plus sentences longer than a 128 window (one several windows long), empty sentences and an
    empty document."""
    doc_idx, sizes = synthetic(n_docs, seed=seed, max_tokens=90)
    sizes[doc_idx[5]] = 300
    sizes[doc_idx[20] - 1] = 129
    sizes[doc_idx[30]:doc_idx[30] + 2] = 0
    doc_idx = np.insert(doc_idx, 10, doc_idx[10])  # an empty document
    return doc_idx, sizes


def _tokens(rows, sizes, window):
    """Per row: the corpus positions of its tokens, as the dataset takes them ((sentence, offset) pairs)."""
    out = []
    for first, end, skip in np.asarray(rows, np.int64).tolist():
        pos = [(s, o) for s in range(first, end) for o in range(int(sizes[s]))][skip:skip + window]
        out.append(pos)
    return out


def _doc_of(doc_idx, sentences):
    return np.searchsorted(doc_idx, sentences, side="right") - 1


@pytest.mark.parametrize("packing", ["full_sentences", "doc_sentences"])
def test_one_epoch_holds_every_token_once_and_fills_the_window(packing):
    doc_idx, sizes = _with_long_and_empty()
    sub = doc_idx[3:290]  # a document range, as splits pass it
    window = packed_window(128)
    rows, stats = build_samples_mapping(sub, sizes, num_epochs=1, max_num_samples=None, max_seq_len=128,
                                        short_seq_prob=0.1, seed=3, packing=packing, return_stats=True)
    assert rows.dtype == np.uint32 and rows.shape[1] == 3 and stats["num_samples"] == len(rows)
    assert stats["long_sentences"] == 2 and stats["empty_docs"] == 1 and stats["docs"] == 286
    order = np.lexsort((rows[:, 2], rows[:, 0]))  # corpus order
    samples = _tokens(rows[order], sizes, window)
    stream = [(s, o) for s in range(int(sub[0]), int(sub[-1])) for o in range(int(sizes[s]))]
    assert [p for sample in samples for p in sample] == stream, "a token dropped or repeated"
    for sample, (first, end, skip) in zip(samples, rows[order].tolist()):
        docs = _doc_of(doc_idx, [s for s, _ in sample])
        inner_seps = int((np.diff(docs) != 0).sum())
        assert 0 < len(sample) + inner_seps <= window
        if packing == "doc_sentences":
            assert inner_seps == 0, "doc_sentences crossed a document boundary"
        assert skip == 0 or sizes[first] > window, "only a long sentence is split"
        assert skip % window == 0
    # filled: the sentence after a sample (when it is not a continuation) would not have fitted
    for (first, end, skip), nxt, sample in zip(rows[order].tolist(), rows[order][1:].tolist(), samples):
        if nxt[2] or packing == "doc_sentences" and _doc_of(doc_idx, nxt[0]) != _doc_of(doc_idx, sample[-1][0]):
            continue
        used = len(sample) + int((np.diff(_doc_of(doc_idx, [s for s, _ in sample])) != 0).sum())
        sep = int(_doc_of(doc_idx, nxt[0]) != _doc_of(doc_idx, sample[-1][0]))
        assert used + sep + min(int(sizes[nxt[0]]), window) > window, "a sample stopped before it was full"
    assert (rows[:, 2] > 0).sum() == 2 + 1  # the 300-token sentence: 2 more pieces, the 129-token one: 1 more


def _ref_shuffle(rows, seed, epoch):
    gen = MT19937_64(splitmix64(splitmix64(seed) ^ (2 * epoch + 1)))
    rows = [list(r) for r in rows]
    for i in range(len(rows) - 1, 0, -1):
        j = gen() % (i + 1)
        rows[i], rows[j] = rows[j], rows[i]
    return rows


def test_epochs_are_the_same_rows_each_shuffled_by_its_own_generator():
    doc_idx, sizes = _with_long_and_empty(seed=4, n_docs=120)
    kw = dict(max_seq_len=64, short_seq_prob=0.0, seed=9, packing="full_sentences")
    one = build_samples_mapping(doc_idx, sizes, num_epochs=1, max_num_samples=None, **kw)
    base = sorted(map(tuple, one.tolist()))
    n = len(one)
    r, stats = build_samples_mapping(doc_idx, sizes, num_epochs=None, max_num_samples=3 * n + 7, return_stats=True,
                                     **kw)
    assert stats["epochs"] == 4 and stats["last_epoch_partial"] and len(r) == 3 * n + 7
    # the C++ walk emits corpus order; the reference shuffles that order with the epoch's generator
    corpus_order = [list(x) for x in sorted(base, key=lambda t: (t[0], t[2]))]
    for e in range(4):
        expected = _ref_shuffle(corpus_order, 9, e)[:len(r) - e * n]
        np.testing.assert_array_equal(r[e * n:(e + 1) * n], np.array(expected, np.uint32).reshape(-1, 3))
    # growing max_num_samples keeps the first rows; less than one epoch is the start of the whole epoch
    np.testing.assert_array_equal(build_samples_mapping(doc_idx, sizes, num_epochs=None, max_num_samples=n + 3,
                                                        **kw), r[:n + 3])
    np.testing.assert_array_equal(build_samples_mapping(doc_idx, sizes, num_epochs=None, max_num_samples=n // 2,
                                                        **kw), r[:n // 2])
    np.testing.assert_array_equal(build_samples_mapping(doc_idx, sizes, num_epochs=2, max_num_samples=None, **kw),
                                  r[:2 * n])
    with pytest.raises(ValueError, match="all 2 documents are empty"):
        build_samples_mapping(np.array([0, 1, 1]), np.array([0], np.int32), num_epochs=1, max_num_samples=None, **kw)
    with pytest.raises(ValueError, match="packing='full': expected one of pairs, full_sentences, doc_sentences"):
        build_samples_mapping(doc_idx, sizes, num_epochs=1, max_num_samples=None, **dict(kw, packing="full"))
