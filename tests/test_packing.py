"""data.packing: the packed sample index (data_tools.helpers, C++) and the packed samples of the dataset.

full_sentences = RoBERTa's FULL-SENTENCES (whole sentences across documents, [SEP] between documents, filled to
max_seq_len); doc_sentences = DOC-SENTENCES (within one document).  Budget: ~10 s.
"""
import json
import os

import numpy as np
import paddle
import pytest

import _dataset_util as du
import _trainer_util as U
from ernie_style import run_pretrain
from export import to_pytorch
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


# --------------------------------------------------------------------------- the dataset's packed samples


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("packed")
    vocab = du.write_vocab(str(d / "vocab.txt"), 300)
    return du.synthetic_prefix(str(d / "synth"), n_docs=80, unk_rate=0.01), vocab


def _restored(sample):
    ids = sample["input_ids"].copy()
    ids[sample["masked_positions"]] = sample["masked_labels"]
    return ids


@pytest.mark.parametrize("packing", ["full_sentences", "doc_sentences"])
def test_packed_samples_are_the_corpus_text_with_sep_between_documents(corpus, packing, tmp_path):
    prefix, vocab = corpus
    data = MMapIndexedDataset(prefix)
    spec = SampleSpec(vocab, Split.parse("1,0,0"), max_seq_len=48, seed=3, binary_head=False, packing=packing)
    stats = get_samples_mapping(data, (0, data.n_docs), name="train", cache_dir=str(tmp_path), num_epochs=1,
                                max_num_samples=None, return_stats=True, **spec.index_params())[1]
    n = stats["samples_per_epoch"][0]
    ds = PretrainingDataset(prefix, spec, num_samples=n, cache_dir=str(tmp_path))
    rows = np.asarray(ds.samples_mapping, np.int64)
    text = []
    for i in np.lexsort((rows[:, 2], rows[:, 0])):  # corpus order
        s = ds[int(i)]
        ids = _restored(s)
        assert len(ids) <= 48 and ids[0] == CLS and ids[-1] == SEP and int(s["sop_label"]) == -100
        assert (s["token_type_ids"] == 0).all() and not np.isin(s["masked_labels"], [CLS, SEP]).any()
        first, end, skip = rows[i]
        body = ids[1:-1]
        inner = np.flatnonzero(body == SEP)
        sentences = np.arange(first, end)
        docs = np.unique(np.searchsorted(data.doc_idx, sentences[np.asarray(data.sizes[first:end]) > 0],
                                         side="right") - 1)
        assert len(inner) == len(docs) - 1, "one [SEP] between two documents"
        if packing == "doc_sentences":
            assert len(inner) == 0
        text.append(body[body != SEP])
    start, stop = int(data.offsets[0]), int(data.offsets[-1] + data.sizes[-1])
    np.testing.assert_array_equal(np.concatenate(text), np.asarray(data.tokens[start:stop], np.int64))


def test_packing_needs_an_mlm_only_run_and_a_known_name(corpus):
    prefix, vocab = corpus
    with pytest.raises(ValueError, match=r"binary_head=True: expected false with packing='full_sentences' "
                                         r"\(packed samples are MLM-only"):
        SampleSpec(vocab, Split.parse("1,0,0"), packing="full_sentences")
    with pytest.raises(ValueError, match="packing='full': expected one of pairs, full_sentences, doc_sentences"):
        SampleSpec(vocab, Split.parse("1,0,0"), binary_head=False, packing="full")


def test_the_roberta_recipe_scaled_down_trains_mlm_only_without_an_sop_head(tmp_path):
    """configs/roberta_mlm_full_sentences_base.yaml through the real trainer (one process): MLM-only, so the model
    has no SOP head, the log line keeps sop_loss: 0.000000, and the checkpoint exports to Hugging Face."""
    prefix, vocab = U.make_data(str(tmp_path / "data"))
    out = tmp_path / "out"
    over = U.tiny_overrides(prefix, vocab, str(out), **{"amp.enable": "false", "train.save_steps": 3,
                                                        "train.eval_steps": 3, "train.eval_iters": 1})
    config = os.path.join(U.REPO, "configs", "roberta_mlm_full_sentences_base.yaml")
    assert run_pretrain.main(["--config", config, *over]) == 0
    lines = [ln for ln in open(out / "train.log", encoding="utf-8") if ln.startswith(("global step", "eval at"))]
    assert len(lines) == 4 and all(", sop_loss: 0.000000," in ln for ln in lines), lines
    fields = U.log_fields(str(out / "train.log"))
    assert all(np.isfinite(f["lm_loss"]) and f["lm_loss"] > 0 for f in fields.values())
    ckpt = out / "checkpoints" / "latest"
    state = paddle.load(str(ckpt / "model_state.pdparams"))
    assert "cls.predictions.decoder_bias" in state and not [k for k in state if "seq_relationship" in k]
    saved = json.load(open(ckpt / "trainer_state.json"))
    assert saved["data_fingerprint"]["data.packing"] == "full_sentences"
    assert saved["data_fingerprint"]["data.binary_head"] is False
    assert to_pytorch.main([str(ckpt), str(tmp_path / "hf"), "--verify"]) == 0


def test_an_mlm_only_model_loads_weights_with_an_sop_head():
    """Continuing MLM-only from a WWM+SOP model: the SOP head is dropped (said in the report), the rest loads."""
    from ernie_style.arch.roformer.modeling import RoFormerConfig, RoFormerForPretraining
    from ernie_style.arch.roformer.paddlenlp import load_state_dict_checked

    cfg = RoFormerConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)
    paddle.seed(1)
    with_sop = RoFormerForPretraining(cfg)
    mlm_only = RoFormerForPretraining(cfg, sop_head=False)
    assert {k for k in with_sop.state_dict() if k not in mlm_only.state_dict()} == {
        "cls.seq_relationship.weight", "cls.seq_relationship.bias"}
    report = load_state_dict_checked(mlm_only, with_sop.state_dict())
    assert report.notes == ["dropped cls.seq_relationship.* (this model is MLM-only: no SOP head)"]
    np.testing.assert_array_equal(mlm_only.state_dict()["cls.predictions.decoder_bias"].numpy(),
                                  with_sop.state_dict()["cls.predictions.decoder_bias"].numpy())
    ids = paddle.to_tensor([[2, 7, 8, 3]])
    mlm, sop = mlm_only(ids)
    assert sop is None and mlm.shape == [1, 4, 50]
