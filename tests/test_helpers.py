"""Sample index (data_tools.helpers): against a plain-Python reference, PaddleNLP's C++ helpers,
and properties; plus the .npy cache with several processes racing to build it."""
import hashlib
import json
import multiprocessing as mp
import os
import time

import numpy as np
import pytest

import data_tools
from data_tools import helpers
from data_tools.helpers import build_samples_mapping, get_samples_mapping
from data_tools.indexed_dataset import MMapIndexedDataset, MMapIndexedDatasetBuilder

M64 = (1 << 64) - 1


# --------------------------------------------------------------------------- reference

class MT19937_64:
    """std::mt19937_64 straight from its definition in the C++ standard."""

    def __init__(self, seed):
        self.mt = [seed & M64]
        for i in range(1, 312):
            prev = self.mt[-1]
            self.mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & M64)
        self.i = 312

    def __call__(self):
        if self.i == 312:
            mt = self.mt
            for k in range(312):
                x = (mt[k] & 0xFFFFFFFF80000000) | (mt[(k + 1) % 312] & 0x7FFFFFFF)
                mt[k] = mt[(k + 156) % 312] ^ (x >> 1) ^ (0xB5026F5AA96619E9 if x & 1 else 0)
            self.i = 0
        y = self.mt[self.i]
        self.i += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & M64


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def ref_epoch(doc_idx, sizes, max_len, prob, seed, epoch, min_sent):
    gen = MT19937_64(splitmix64(splitmix64(seed) ^ (2 * epoch)))

    def target():
        if prob <= 0:
            return max_len
        if (gen() >> 11) * 2.0 ** -53 >= prob:
            return max_len
        return 2 + gen() % (max_len - 1)

    rows = []
    for d in range(len(doc_idx) - 1):
        first, last = int(doc_idx[d]), int(doc_idx[d + 1])
        if last - first < min_sent:
            continue
        start, tokens, t = first, 0, target()
        for s in range(first, last):
            tokens += int(sizes[s])
            left = last - s - 1
            if left == 0 or (tokens >= t and s + 1 - start >= min_sent and left >= max(2, min_sent)):
                rows.append([start, s + 1, t])
                if left == 0:
                    break
                start, tokens, t = s + 1, 0, target()
    gen = MT19937_64(splitmix64(splitmix64(seed) ^ (2 * epoch + 1)))
    for i in range(len(rows) - 1, 0, -1):
        j = gen() % (i + 1)
        rows[i], rows[j] = rows[j], rows[i]
    return rows


def ref_mapping(doc_idx, sizes, *, num_epochs, max_num_samples, max_seq_len, short_seq_prob, seed,
                min_num_sent, binary_head=True):
    max_len = max_seq_len - (3 if binary_head else 2)
    rows, epoch = [], 0
    while (num_epochs is None or epoch < num_epochs) and (max_num_samples is None or len(rows) < max_num_samples):
        rows += ref_epoch(doc_idx, sizes, max_len, short_seq_prob, seed, epoch, min_num_sent)
        epoch += 1
    if max_num_samples is not None:
        rows = rows[:max_num_samples]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def synthetic(n_docs, seed=0, max_sents=8, max_tokens=100, single_frac=0.15):
    rng = np.random.default_rng(seed)
    n = rng.integers(1, max_sents + 1, n_docs)
    n[rng.random(n_docs) < single_frac] = 1
    doc_idx = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    sizes = rng.integers(3, max_tokens, int(doc_idx[-1])).astype(np.int32)
    return doc_idx, sizes


def check_rows(rows, doc_idx, sizes, max_len, min_sent):
    """Every row is a span inside one document, with >= min_sent sentences and a valid target."""
    assert rows.dtype == np.uint32 and rows.ndim == 2 and rows.shape[1] == 3  # "auto": indices fit
    d = np.searchsorted(doc_idx, rows[:, 0], side="right") - 1
    assert (d >= 0).all() and (d < len(doc_idx) - 1).all()
    assert (rows[:, 1] <= doc_idx[d + 1]).all(), "a sample crosses a document boundary"
    assert (rows[:, 1] - rows[:, 0] >= min_sent).all()
    assert ((rows[:, 2] >= 2) & (rows[:, 2] <= max_len)).all()


def test_reference_generator_is_mt19937_64():
    gen = MT19937_64(5489)
    for _ in range(9999):
        gen()
    assert gen() == 9981545732273789042  # required by the C++ standard, [rand.predef]


@pytest.mark.parametrize(
    "kw",
    [
        dict(num_epochs=1, max_num_samples=None, short_seq_prob=0.0, min_num_sent=2),
        dict(num_epochs=3, max_num_samples=None, short_seq_prob=0.1, min_num_sent=2),
        dict(num_epochs=None, max_num_samples=1500, short_seq_prob=0.3, min_num_sent=1),
        dict(num_epochs=2, max_num_samples=500, short_seq_prob=1.0, min_num_sent=3),
        dict(num_epochs=None, max_num_samples=700, short_seq_prob=0.1, min_num_sent=None, binary_head=False),
    ],
)
def test_matches_python_reference(kw):
    doc_idx, sizes = synthetic(300)
    sub = doc_idx[40:251]  # a contiguous document range, as splits pass it
    kw = dict(kw, max_seq_len=128, seed=1234)
    rows, stats = build_samples_mapping(sub, sizes, return_stats=True, **kw)
    min_sent = kw["min_num_sent"] or (2 if kw.get("binary_head", True) else 1)
    ref = ref_mapping(sub, sizes, **dict(kw, min_num_sent=min_sent))
    np.testing.assert_array_equal(rows, ref)
    check_rows(rows, sub, sizes, 128 - (3 if kw.get("binary_head", True) else 2), min_sent)
    assert stats["num_samples"] == len(rows)
    assert stats["docs"] == 210


@pytest.mark.parametrize("min_sent", [1, 2])
def test_same_samples_as_paddlenlp_helpers(min_sent):
    """Without short sequences the cut is deterministic: the set of samples equals PaddleNLP's
    (tool_helpers.build_mapping, Megatron's algorithm), except that PaddleNLP drops documents
    holding a sentence over 512 tokens and we keep them."""
    from tool_helpers import helpers as tool_helpers  # the test extra of setup.py installs it: no skip
    doc_idx, sizes = synthetic(400, seed=3)
    sizes[int(doc_idx[7]) + 1] = 700  # document 7 (has >= 2 sentences?) gets a very long sentence
    ours = build_samples_mapping(doc_idx, sizes, num_epochs=1, max_num_samples=None, max_seq_len=128,
                                 short_seq_prob=0.0, seed=5, min_num_sent=min_sent)
    theirs = tool_helpers.build_mapping(doc_idx, sizes, 1, np.iinfo(np.int64).max - 1, 125, 0.0, 5, False, min_sent)
    ours_set = set(map(tuple, ours.tolist()))
    theirs_set = set(map(tuple, theirs.astype(np.int64).tolist()))
    assert theirs_set <= ours_set
    extra = ours_set - theirs_set
    long_docs = {int(np.searchsorted(doc_idx, a, side="right") - 1) for a, _, _ in extra}
    assert doc_idx[8] - doc_idx[7] >= 2 and long_docs == {7}
    assert len(theirs_set) > 300


def test_determinism_and_seed():
    doc_idx, sizes = synthetic(200)
    kw = dict(num_epochs=2, max_num_samples=None, max_seq_len=128, short_seq_prob=0.1)
    a = build_samples_mapping(doc_idx, sizes, seed=7, **kw)
    np.testing.assert_array_equal(a, build_samples_mapping(doc_idx, sizes, seed=7, **kw))
    b = build_samples_mapping(doc_idx, sizes, seed=8, **kw)
    assert not np.array_equal(a, b)
    # the same multiset of spans per epoch when there are no random targets: only the order changes
    kw0 = dict(kw, short_seq_prob=0.0, num_epochs=1)
    a0, b0 = (build_samples_mapping(doc_idx, sizes, seed=s, **kw0) for s in (7, 8))
    assert sorted(map(tuple, a0.tolist())) == sorted(map(tuple, b0.tolist()))
    assert not np.array_equal(a0, b0)


def test_prefix_stable_when_max_num_samples_grows():
    doc_idx, sizes = synthetic(150)
    kw = dict(num_epochs=None, max_seq_len=128, short_seq_prob=0.2, seed=11)
    small = build_samples_mapping(doc_idx, sizes, max_num_samples=100, **kw)
    mid = build_samples_mapping(doc_idx, sizes, max_num_samples=333, **kw)
    big = build_samples_mapping(doc_idx, sizes, max_num_samples=2000, **kw)
    assert len(small) == 100 and len(mid) == 333 and len(big) == 2000
    np.testing.assert_array_equal(big[:333], mid)
    np.testing.assert_array_equal(big[:100], small)
    kw.pop("num_epochs")
    two = build_samples_mapping(doc_idx, sizes, num_epochs=2, max_num_samples=None, **kw)
    three = build_samples_mapping(doc_idx, sizes, num_epochs=3, max_num_samples=None, **kw)
    np.testing.assert_array_equal(three[:len(two)], two)
    # a bigger partial epoch (taken through an inverted index permutation in C++) equals the
    # start of the whole epoch (shuffled in place)
    doc_idx, sizes = synthetic(30000, seed=5)
    whole = build_samples_mapping(doc_idx, sizes, num_epochs=2, max_num_samples=None, **kw)
    for k in (len(whole) // 2 + 1, len(whole) // 2 + 12345, len(whole) - 1):
        np.testing.assert_array_equal(build_samples_mapping(doc_idx, sizes, max_num_samples=k, **dict(kw, num_epochs=None)),
                                      whole[:k])


def test_num_epochs_handling():
    doc_idx, sizes = synthetic(120)
    kw = dict(max_seq_len=128, short_seq_prob=0.1, seed=3)
    one, s1 = build_samples_mapping(doc_idx, sizes, num_epochs=1, max_num_samples=None, return_stats=True, **kw)
    per = s1["samples_per_epoch"][0]
    assert len(one) == per and s1["epochs"] == 1 and not s1["last_epoch_partial"]
    # every sentence of every used document is in exactly one sample of an epoch
    covered = np.zeros(len(sizes), np.int64)
    for a, b, _ in one:
        covered[a:b] += 1
    n = np.diff(doc_idx)
    used = np.repeat(n >= 2, n)
    assert (covered[used] == 1).all() and (covered[~used] == 0).all()
    # num_epochs caps the output even when max_num_samples asks for more
    r, s = build_samples_mapping(doc_idx, sizes, num_epochs=2, max_num_samples=10 ** 9, return_stats=True, **kw)
    assert s["epochs"] == 2 and len(r) == sum(s["samples_per_epoch"]) and not s["last_epoch_partial"]
    # num_epochs=None adds epochs until max_num_samples; the last one is cut
    r, s = build_samples_mapping(doc_idx, sizes, num_epochs=None, max_num_samples=3 * per + 5,
                                 return_stats=True, **kw)
    assert len(r) == 3 * per + 5 and s["epochs"] == 4 and s["last_epoch_partial"]
    # epochs differ in order (and in short targets)
    assert not np.array_equal(r[:per], r[per:2 * per])


def test_target_lengths_and_short_fraction():
    doc_idx, sizes = synthetic(3000, seed=1, max_tokens=60)
    max_len = 125
    for prob in (0.0, 0.1, 0.5):
        rows = build_samples_mapping(doc_idx, sizes, num_epochs=1, max_num_samples=None, max_seq_len=128,
                                     short_seq_prob=prob, seed=2)
        check_rows(rows, doc_idx, sizes, max_len, 2)
        short = rows[:, 2] < max_len
        # binomial: 5 standard deviations
        assert abs(short.mean() - prob) <= 5 * np.sqrt(prob * (1 - prob) / len(rows)) + 1 / max_len
        if prob:
            assert rows[short, 2].min() == 2 or rows[short, 2].min() < 10
    # without the binary head only 2 special tokens are reserved
    rows = build_samples_mapping(doc_idx, sizes, num_epochs=1, max_num_samples=None, max_seq_len=128,
                                 short_seq_prob=0.0, seed=2, binary_head=False)
    assert (rows[:, 2] == 126).all()


def test_long_documents_split_and_long_sentences_kept():
    # doc 0: 30 sentences of 50 tokens (1500 tokens); doc 1: [900, 10, 10]; doc 2: one 2000-token sentence
    sizes = np.array([50] * 30 + [900, 10, 10] + [2000], np.int32)
    doc_idx = np.array([0, 30, 33, 34], np.int64)
    rows, st = build_samples_mapping(doc_idx, sizes, num_epochs=1, max_num_samples=None, max_seq_len=512,
                                     short_seq_prob=0.0, seed=0, return_stats=True)
    rows = rows[np.argsort(rows[:, 0])]
    spans = [(a, b) for a, b, _ in rows.tolist()]
    # 509 tokens per sample -> cut after 11 sentences (550 >= 509), three samples, none dropped
    assert spans == [(0, 11), (11, 22), (22, 30), (30, 33)]
    assert st["long_docs"] == 2 and st["long_sentences"] == 2 and st["single_sentence_docs"] == 1
    assert st["docs_skipped_short"] == 1 and st["docs_used"] == 2
    # MLM-only (min_num_sent=1): a long sentence starting a sample is a sample of its own (the dataset
    # truncates it), and the single-sentence documents are used
    rows1, st1 = build_samples_mapping(doc_idx, sizes, num_epochs=1, max_num_samples=None, max_seq_len=512,
                                       short_seq_prob=0.0, seed=0, min_num_sent=1, return_stats=True)
    spans1 = sorted((a, b) for a, b, _ in rows1.tolist())
    assert spans1 == [(0, 11), (11, 22), (22, 30), (30, 31), (31, 33), (33, 34)] and st1["docs_used"] == 3


def _call_in_child(conn, doc_idx, sizes, kw):
    try:
        build_samples_mapping(doc_idx, sizes, **kw)
        conn.send("returned")
    except ValueError as e:
        conn.send(f"ValueError: {e}")


@pytest.mark.parametrize(
    "doc_idx,min_sent,needle",
    [
        (np.arange(21, dtype=np.int64), 2, "20 have fewer than min_num_sent=2"),  # all single-sentence
        (np.zeros(6, dtype=np.int64), 1, "5 empty"),                              # all empty
        (np.array([0], np.int64), 2, "document range is empty"),                 # no documents
    ],
)
def test_no_qualifying_document_is_an_error_not_a_hang(doc_idx, min_sent, needle):
    sizes = np.full(20, 30, np.int32)
    kw = dict(num_epochs=None, max_num_samples=10 ** 6, max_seq_len=128, short_seq_prob=0.1, seed=1,
              min_num_sent=min_sent)
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_call_in_child, args=(child, doc_idx, sizes, kw))
    proc.start()
    got = parent.recv() if parent.poll(20) else "hang"
    proc.join(5)
    if proc.is_alive():
        proc.kill()
    assert got.startswith("ValueError") and needle in got, got
    assert "no document qualifies" in got


@pytest.mark.parametrize(
    "change,needle",
    [
        (dict(doc_idx=np.array([0, 5, 3, 8], np.int64)), "non-decreasing"),
        (dict(doc_idx=np.array([0, 5, 30], np.int64)), "within [0, 20]"),
        (dict(sizes=np.r_[np.full(19, 3), -1].astype(np.int32)), "non-negative"),
        (dict(max_seq_len=4), "max_seq_len=4"),
        (dict(short_seq_prob=1.5), "short_seq_prob=1.5"),
        (dict(num_epochs=None, max_num_samples=None), "give at least one"),
        (dict(num_epochs=0), "num_epochs=0"),
        (dict(min_num_sent=0), "min_num_sent=0"),
        (dict(seed=-1), "seed=-1"),
        (dict(doc_idx=np.zeros((2, 2), np.int64)), "doc_idx"),
        (dict(num_epochs=None, max_num_samples=10 ** 15), "GiB"),
        (dict(dtype=np.float32), "dtype="),  # refused up front, not after hours
    ],
)
def test_bad_arguments(change, needle):
    kw = dict(doc_idx=np.array([0, 5, 12, 20], np.int64), sizes=np.full(20, 30, np.int32), num_epochs=1,
              max_num_samples=None, max_seq_len=128, short_seq_prob=0.1, seed=1)
    kw.update(change)
    with pytest.raises(ValueError, match=None) as err:
        build_samples_mapping(kw.pop("doc_idx"), kw.pop("sizes"), **kw)
    assert needle in str(err.value)


def test_uint32_output_and_memmap_input(tmp_path):
    doc_idx, sizes = synthetic(100)
    kw = dict(num_epochs=2, max_num_samples=None, max_seq_len=64, short_seq_prob=0.1, seed=9)
    a = build_samples_mapping(doc_idx, sizes, dtype=np.int64, **kw)
    b = build_samples_mapping(doc_idx, sizes, dtype=np.uint32, **kw)
    assert a.dtype == np.int64 and b.dtype == np.uint32
    np.testing.assert_array_equal(build_samples_mapping(doc_idx, sizes, **kw), b)  # "auto" picks uint32
    np.testing.assert_array_equal(a, b.astype(np.int64))
    part = build_samples_mapping(doc_idx, sizes, **dict(kw, max_num_samples=len(a) - 7), dtype=np.uint32)
    np.testing.assert_array_equal(part, b[:len(a) - 7])
    prefix = str(tmp_path / "d")
    _write_dataset(prefix, doc_idx, sizes)
    ds = MMapIndexedDataset(prefix)
    np.testing.assert_array_equal(build_samples_mapping(ds.doc_idx, ds.sizes, **kw), a)
    assert data_tools.build_samples_mapping is build_samples_mapping


# --------------------------------------------------------------------------- cache

def _write_dataset(prefix, doc_idx, sizes):
    builder = MMapIndexedDatasetBuilder(prefix, np.uint16, with_wwm=False)
    for d in range(len(doc_idx) - 1):
        lengths = sizes[doc_idx[d]:doc_idx[d + 1]]
        builder.add_document(np.arange(int(lengths.sum())) % 1000, lengths)
    builder.finalize()


CACHE_KW = dict(name="train", num_epochs=None, max_num_samples=800, max_seq_len=128, short_seq_prob=0.1, seed=4)


def test_cache_roundtrip_keys_and_damage(tmp_path):
    doc_idx, sizes = synthetic(200)
    prefix = str(tmp_path / "corpus")
    _write_dataset(prefix, doc_idx, sizes)
    expect = build_samples_mapping(doc_idx[10:151], sizes, **{k: v for k, v in CACHE_KW.items() if k != "name"})
    rows, st = get_samples_mapping(prefix, (10, 150), return_stats=True, **CACHE_KW)
    assert not st["cache_hit"] and os.path.dirname(st["cache_path"]) == str(tmp_path)
    np.testing.assert_array_equal(rows, expect)
    rows2, st2 = get_samples_mapping(MMapIndexedDataset(prefix), (10, 150), return_stats=True, **CACHE_KW)
    assert st2["cache_hit"] and st2["cache_path"] == st["cache_path"]
    np.testing.assert_array_equal(rows2, expect)
    assert st2["docs"] == 140 and st2["samples_per_epoch"] == st["samples_per_epoch"]
    # numpy scalars and the spelled-out default give the same key
    _, st2b = get_samples_mapping(prefix, (np.int64(10), 150), return_stats=True,
                                  **dict(CACHE_KW, seed=np.int64(4), min_num_sent=2))
    assert st2b["cache_hit"] and st2b["cache_path"] == st["cache_path"]
    # any parameter or the range changes the key
    _, s3 = get_samples_mapping(prefix, (10, 150), return_stats=True, **dict(CACHE_KW, seed=5))
    _, s4 = get_samples_mapping(prefix, (10, 151), return_stats=True, **CACHE_KW)
    assert len({st["cache_path"], s3["cache_path"], s4["cache_path"]}) == 3 and not s3["cache_hit"]
    # cache_dir elsewhere
    _, s5 = get_samples_mapping(prefix, (10, 150), cache_dir=str(tmp_path / "c"), return_stats=True, **CACHE_KW)
    assert os.path.dirname(s5["cache_path"]) == str(tmp_path / "c") and not s5["cache_hit"]
    # damaged cache files are rebuilt: truncated .npy, garbage .json, wrong rows
    npy = st["cache_path"]
    for damage in ("truncate", "json", "rows"):
        if damage == "truncate":
            with open(npy, "r+b") as f:
                f.truncate(os.path.getsize(npy) - 24)
        elif damage == "json":
            with open(npy[:-4] + ".json", "w") as f:
                f.write("{not json")
        else:
            bad = np.array(expect)
            bad[-1] = [5, 2, 0]
            np.save(npy, bad)
        r, s = get_samples_mapping(prefix, (10, 150), return_stats=True, **CACHE_KW)
        assert not s["cache_hit"], damage
        np.testing.assert_array_equal(r, expect)
    assert not [p for p in os.listdir(tmp_path) if ".tmp." in p]
    # an unusable cache location is a clear error naming it
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OSError, match="cannot write the sample index cache"):
        get_samples_mapping(prefix, (10, 150), cache_dir=str(tmp_path / "a_file" / "sub"), **CACHE_KW)


def test_cache_key_follows_index_content(tmp_path):
    doc_idx, sizes = synthetic(100)
    prefix = str(tmp_path / "corpus")
    _write_dataset(prefix, doc_idx, sizes)
    _, s1 = get_samples_mapping(prefix, (0, 100), return_stats=True, **CACHE_KW)
    # same shape, same file sizes, different sentence lengths: a new key, never the stale mapping
    sizes2 = sizes.copy()
    sizes2[:2] = sizes[1::-1] + 1
    sizes2[2:4] = sizes[3:1:-1]
    sizes2[4] -= 2
    _write_dataset(prefix, doc_idx, sizes2)
    rows, s2 = get_samples_mapping(prefix, (0, 100), return_stats=True, **CACHE_KW)
    assert s2["cache_path"] != s1["cache_path"] and not s2["cache_hit"]
    np.testing.assert_array_equal(rows, build_samples_mapping(doc_idx, sizes2, **{k: v for k, v in CACHE_KW.items()
                                                                                    if k != "name"}))


def test_meta_checksum_shortcut(tmp_path):
    from data_tools import meta as dmeta
    from data_tools.tokenizers import TokenizerSpec

    doc_idx, sizes = synthetic(20)
    prefix = str(tmp_path / "corpus")
    _write_dataset(prefix, doc_idx, sizes)
    with open(prefix + ".idx", "rb") as f:
        real = hashlib.sha256(f.read()).hexdigest()
    assert helpers.idx_content_hash(prefix) == real
    size = os.path.getsize(prefix + ".idx")
    recorded = "ab" * 32

    def write_meta(idx_bytes):  # through the one meta.json writer (data_tools.meta)
        m = dmeta.DatasetMeta(
            created_by="test", vocab=dmeta.VocabInfo("v.txt", "ef" * 32, 21128),
            tokenizer=TokenizerSpec(True), segmenter=dmeta.SegmenterInfo("none", "", ""), settings={},
            dtype="uint16", wwm_encoding="uint8", inputs=[], counts=dmeta.Counts(), skipped={}, skipped_first={},
            repaired={}, repaired_first={}, run={},
            files={".idx": dmeta.FileInfo(prefix + ".idx", idx_bytes, recorded),
                   ".bin": dmeta.FileInfo(prefix + ".bin", 10, "cd" * 32)})
        with open(prefix + ".meta.json", "w") as f:
            json.dump(m.to_dict(), f)

    write_meta(size)
    assert helpers.idx_content_hash(prefix) == recorded
    write_meta(size + 8)  # meta describes another index: hash the file
    assert helpers.idx_content_hash(prefix) == real
    with open(prefix + ".meta.json", "w") as f:  # not our format (no "format" key): the file is hashed
        json.dump({"files": {".idx": {"path": prefix + ".idx", "bytes": size, "sha256": recorded}}}, f)
    assert helpers.idx_content_hash(prefix) == real


def _race(prefix, marker, barrier, conn):
    real_build = helpers.build_samples_mapping

    def slow_counted_build(*args, **kwargs):
        with open(marker, "a") as f:  # one line per actual build
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)  # the others reach the lock meanwhile and must wait on it
        return real_build(*args, **kwargs)

    helpers.build_samples_mapping = slow_counted_build
    barrier.wait()
    rows, st = get_samples_mapping(prefix, (0, 300), return_stats=True, **CACHE_KW)
    conn.send((st["cache_hit"], hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest(), rows.shape))


def test_concurrent_processes_build_once(tmp_path):
    doc_idx, sizes = synthetic(300)
    prefix = str(tmp_path / "corpus")
    _write_dataset(prefix, doc_idx, sizes)
    marker = str(tmp_path / "builds.log")
    ctx = mp.get_context("fork")
    n = 4
    barrier = ctx.Barrier(n)
    pipes = [ctx.Pipe() for _ in range(n)]
    procs = [ctx.Process(target=_race, args=(prefix, marker, barrier, c)) for _, c in pipes]
    for p in procs:
        p.start()
    results = [parent.recv() if parent.poll(60) else None for parent, _ in pipes]
    for p in procs:
        p.join(10)
    assert None not in results
    with open(marker) as f:
        assert len(f.read().split()) == 1, "the mapping must be built exactly once"
    assert sorted(hit for hit, _, _ in results) == [False] + [True] * (n - 1)
    assert len({(h, s) for _, h, s in results}) == 1
    expect = build_samples_mapping(doc_idx, sizes, **{k: v for k, v in CACHE_KW.items() if k != "name"})
    assert results[0][1] == hashlib.sha256(expect.tobytes()).hexdigest()


def _progress_of_another_thread_during(call) -> int:
    """Iterations another Python thread completes while ``call()`` runs in this one.

    With the interpreter's forced GIL switches pushed out of reach (switch interval 1000 s) and the counter
    handing the GIL back after every iteration, the counter can run only while this thread has released the
    GIL: 0 iterations means ``call`` held it throughout.  Nothing here is timed."""
    import sys
    import threading

    count, stop = [0], threading.Event()

    def counter():
        while not stop.is_set():
            count[0] += 1
            time.sleep(0)  # releases the GIL at once

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    thread = threading.Thread(target=counter)
    thread.start()
    try:
        while count[0] == 0:  # the counter is running
            time.sleep(0)
        before = count[0]
        call()
        return count[0] - before
    finally:
        stop.set()
        sys.setswitchinterval(old)
        thread.join()


def test_gil_released_during_build():
    """Another Python thread keeps running while the index is built (the heavy loop releases the GIL)."""
    rng = np.random.default_rng(0)
    per_doc = rng.integers(1, 30, 400_000)
    doc_idx = np.concatenate([[0], np.cumsum(per_doc)]).astype(np.int64)
    sizes = rng.integers(2, 40, int(doc_idx[-1]), dtype=np.int32)
    # the method can fail: a C loop that keeps the GIL lets the other thread make no progress at all
    assert _progress_of_another_thread_during(lambda: sum(range(3_000_000))) == 0
    assert _progress_of_another_thread_during(lambda: build_samples_mapping(
        doc_idx, sizes, num_epochs=4, max_num_samples=None, max_seq_len=512, short_seq_prob=0.1, seed=0)) > 0


# --------------------------------------------------------------------------- blending

def blending_reference(weights, num_samples):
    """Megatron's greedy interleave as plain Python (ernie_style's implementation before the C++ one)."""
    w = [float(x) for x in weights]
    picked = [0] * len(w)
    choice, rank = [], []
    for t in range(num_samples):
        tt = t if t > 1 else 1.0
        best, best_err = 0, w[0] * tt - picked[0]
        for d in range(len(w)):
            err = w[d] * tt - picked[d]
            if err > best_err:
                best, best_err = d, err
        choice.append(best)
        rank.append(picked[best])
        picked[best] += 1
    return np.array(choice, np.int64), np.array(rank, np.int64)


def test_blending_indices_equal_python_reference():
    rng = np.random.default_rng(0)
    cases = [([1.0], 10), ([0.5, 0.5], 1001), ([1 / 3] * 3, 3000), ([0.0, 1.0, 0.0], 50), ([0.2, 0.3], 0),
             ([0.7, 0.2, 0.1], 1), ([0.7, 0.2, 0.1], 2)]
    for k in (2, 3, 5, 17, 300):
        for _ in range(3):
            w = rng.random(k) ** 3  # skewed, some nearly zero
            if k > 3:
                w[rng.integers(0, k)] = 0.0
            cases.append(((w / w.sum()).tolist(), 100_000 // k))
    for weights, n in cases:
        d, s = helpers.build_blending_indices(weights, n)
        assert d.dtype == (np.uint8 if len(weights) < 256 else np.int16) and s.dtype == np.int64
        ref_d, ref_s = blending_reference(weights, n)
        np.testing.assert_array_equal(d, ref_d, err_msg=str(weights))
        np.testing.assert_array_equal(s, ref_s, err_msg=str(weights))


@pytest.mark.parametrize("weights, n, needle", [
    ([], 5, "non-empty 1-D"),
    ([0.5, -0.5], 5, r"weights\[1\]=-0.5.*finite number >= 0"),
    ([float("nan")], 5, r"weights\[0\]=nan"),
    ([float("inf")], 5, r"weights\[0\]=inf"),
    (np.ones(40000), 5, "40000 datasets, at most 32767"),
    ([1.0], -1, "num_samples=-1"),
])
def test_blending_bad_arguments(weights, n, needle):
    with pytest.raises(ValueError, match=needle):
        helpers.build_blending_indices(weights, n)
