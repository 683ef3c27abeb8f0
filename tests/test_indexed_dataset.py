"""MMIDIDX writer/reader: exact format, PaddleNLP's reader as the reference, streaming and atomicity."""
import os
import struct

import numpy as np
import pytest

from data_tools.indexed_dataset import (
    MAGIC,
    MMapIndexedDataset,
    MMapIndexedDatasetBuilder,
    best_dtype,
    concat_datasets,
)


def _random_docs(rng, n_docs, vocab=20000):
    docs = []
    for _ in range(n_docs):
        lengths = rng.integers(1, 40, size=rng.integers(1, 6)).astype(np.int32)
        ids = rng.integers(0, vocab, size=int(lengths.sum()))
        wwm = rng.integers(0, 2, size=ids.size).astype(np.uint8)
        docs.append((ids, lengths, wwm))
    return docs


def _write(prefix, docs, dtype=np.uint16):
    builder = MMapIndexedDatasetBuilder(prefix, dtype)
    for ids, lengths, wwm in docs:
        builder.add_document(ids, lengths, wwm)
    builder.finalize()


def test_header_layout_by_hand(tmp_path):
    prefix = str(tmp_path / "d")
    _write(prefix, [(np.array([5, 6, 7]), [2, 1], np.array([1, 0, 1], np.uint8))])
    raw = open(prefix + ".idx", "rb").read()
    assert raw[:9] == MAGIC
    version, code, n, ndoc = struct.unpack("<QBQQ", raw[9:34])
    assert (version, code, n, ndoc) == (1, 8, 2, 2)
    sizes = np.frombuffer(raw, np.int32, 2, 34)
    pointers = np.frombuffer(raw, np.int64, 2, 34 + 8)
    doc_idx = np.frombuffer(raw, np.int64, 2, 34 + 8 + 16)
    assert sizes.tolist() == [2, 1] and pointers.tolist() == [0, 4] and doc_idx.tolist() == [0, 2]
    assert np.fromfile(prefix + ".bin", np.uint16).tolist() == [5, 6, 7]
    assert np.fromfile(prefix + ".wwm", np.uint8).tolist() == [1, 0, 1]


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_paddlenlp_reader_reads_ours(tmp_path, dtype):
    from paddlenlp.data.indexed_dataset import MMapIndexedDataset as PaddleNLPReader

    rng = np.random.default_rng(0)
    docs = _random_docs(rng, 60, vocab=60000 if dtype == np.uint16 else 100000)
    prefix = str(tmp_path / "d")
    _write(prefix, docs, dtype)
    ref = PaddleNLPReader(prefix)
    ours = MMapIndexedDataset(prefix)
    assert len(ref) == len(ours) == sum(len(d[1]) for d in docs)
    assert np.array_equal(ref.doc_idx, ours.doc_idx)
    flat = np.concatenate([d[0] for d in docs])
    got = np.concatenate([ref[i] for i in range(len(ref))])
    assert np.array_equal(got, flat)
    assert np.array_equal(np.asarray(ours.wwm), np.concatenate([d[2] for d in docs]))
    ids, wwm, sizes = ours.document(7)
    assert np.array_equal(ids, docs[7][0]) and np.array_equal(wwm, docs[7][2]) and np.array_equal(sizes, docs[7][1])


def test_concat_is_streaming_equivalent(tmp_path):
    rng = np.random.default_rng(1)
    a, b = _random_docs(rng, 10), _random_docs(rng, 7)
    _write(str(tmp_path / "a"), a)
    _write(str(tmp_path / "b"), b)
    _write(str(tmp_path / "ab_direct"), a + b)
    concat_datasets([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "ab"))
    for ext in (".bin", ".idx", ".wwm"):
        assert open(str(tmp_path / "ab") + ext, "rb").read() == open(str(tmp_path / "ab_direct") + ext, "rb").read()


def test_abort_and_unfinished_builder_leave_nothing(tmp_path):
    prefix = str(tmp_path / "d")
    builder = MMapIndexedDatasetBuilder(prefix, np.uint16)
    builder.add_document(np.arange(4), [4], np.ones(4, np.uint8))
    assert not os.path.exists(prefix + ".idx") and not os.path.exists(prefix + ".bin")
    builder.abort()
    assert os.listdir(tmp_path) == []


def test_damaged_files_are_refused_with_the_file_named(tmp_path):
    prefix = str(tmp_path / "d")
    _write(prefix, _random_docs(np.random.default_rng(2), 5))
    with open(prefix + ".bin", "r+b") as f:
        f.truncate(10)
    with pytest.raises(ValueError, match=r"d\.bin"):
        MMapIndexedDataset(prefix)
    with open(prefix + ".idx", "r+b") as f:
        f.truncate(40)
    with pytest.raises(ValueError, match=r"d\.idx.*truncated"):
        MMapIndexedDataset(prefix)
    with pytest.raises(FileNotFoundError, match="nope.idx"):
        MMapIndexedDataset(str(tmp_path / "nope"))


def test_pickles_only_the_prefix(tmp_path):
    import pickle

    prefix = str(tmp_path / "d")
    _write(prefix, _random_docs(np.random.default_rng(3), 5))
    ds = MMapIndexedDataset(prefix)
    blob = pickle.dumps(ds)
    assert len(blob) < 200
    again = pickle.loads(blob)
    assert np.array_equal(again[3], ds[3])


def test_best_dtype():
    assert best_dtype(21128) == np.uint16 and best_dtype(65499) == np.uint16
    assert best_dtype(65500) == np.int32 and best_dtype(250000) == np.int32
