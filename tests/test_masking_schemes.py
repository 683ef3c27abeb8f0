"""data.masking: wwm_ngram | char | span, statistics on generated text, and the 80/10/10 shares.

Each masker gets generated layouts (random words of 1-4 tokens, [UNK] sprinkled into the text) and the sample's own
generator, as the dataset calls it; the statistics are over all of them.  Dynamic masking (another epoch, other
masks for the same text) is checked through the dataset.  Budget: ~15 s.
"""
import numpy as np
import pytest
from scipy.stats import chi2  # scipy: a dependency of scikit-learn (the test extra)

import _dataset_util as du
from ernie_style.config.pretrain import ConfigError, load_config
from ernie_style.data.dataset import PretrainingDataset, VocabIds
from ernie_style.data.masking import Layout, budget, make_masker
from ernie_style.data.spec import SampleSpec, Split

import _trainer_util as U

CLS, SEP, MASK, UNK = 2, 3, 4, 1  # ids in du.write_vocab
SCHEMES = ("wwm_ngram", "char", "span")
SPAN_LAW_P, SPAN_MAX = 0.2, 10


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return du.write_vocab(str(tmp_path_factory.mktemp("schemes") / "vocab.txt"), 300)


def _layouts(n, seed=0, words=(20, 90)):
    """n layouts ``[CLS] text [SEP]``; text = random words of 1-4 tokens, 1% [UNK]; returns (layout, word_id [N])
    where word_id numbers the words of the body (a special token is its own word, ending the one before)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        sizes = rng.integers(1, 5, size=int(rng.integers(*words)))
        body = rng.integers(len(du.SPECIALS), 305, size=int(sizes.sum()))
        body[rng.random(len(body)) < 0.01] = UNK
        flags = np.zeros(len(body), bool)
        flags[np.cumsum(sizes) - sizes] = True
        ids = np.concatenate([[CLS], body, [SEP]]).astype(np.int64)
        layout = Layout(ids, np.zeros(len(ids), np.int64), np.arange(1, len(ids) - 1), flags)
        special = body == UNK
        word_flags = flags | special
        word_flags[1:] |= special[:-1]
        out.append((layout, np.cumsum(word_flags)))
    return out


def _run(masker, layouts, seed=0):
    """[(original ids, masked ids, positions, labels)] with the sample's generator seeded by its index."""
    res = []
    for i, (layout, _) in enumerate(layouts):
        original = layout.input_ids.copy()
        lay = Layout(original.copy(), layout.token_type_ids, layout.body_pos, layout.body_flags.copy())
        pos, labels = masker(lay, np.random.default_rng([seed, i]))
        res.append((original, lay.input_ids, pos, labels))
    return res


def _spec(vocab, **kw):
    return SampleSpec(vocab, Split.parse("1,0,0"), max_seq_len=128, seed=7, **kw)


def _masked_runs(pos, word_id, body_pos):
    """Lengths in words of the runs of adjacent masked words."""
    masked_words = np.zeros(int(word_id.max()) + 2, bool)
    masked_words[word_id[np.isin(body_pos, pos)]] = True
    edges = np.diff(np.concatenate([[0], masked_words.astype(np.int8), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_rate_replacement_words_specials_and_determinism(vocab, scheme):
    masker = make_masker(_spec(vocab, masking=scheme), VocabIds(vocab))
    layouts = _layouts(1000)
    results = _run(masker, layouts)
    n_body = masked = to_mask = to_random = kept = 0
    for (original, ids, pos, labels), (layout, word_id) in zip(results, layouts):
        assert (np.diff(pos) > 0).all() and np.isin(pos, layout.body_pos).all(), "positions sorted, in the text"
        np.testing.assert_array_equal(labels, original[pos])
        assert not np.isin(labels, [UNK, CLS, SEP, MASK, 0]).any(), "a special token was masked"
        unmasked = np.setdiff1d(np.arange(len(ids)), pos)
        np.testing.assert_array_equal(ids[unmasked], original[unmasked])
        n_body += int((original[layout.body_pos] != UNK).sum())
        masked += len(pos)
        to_mask += int((ids[pos] == MASK).sum())
        kept += int((ids[pos] == labels).sum())
        to_random += int(((ids[pos] != MASK) & (ids[pos] != labels)).sum())
        assert not np.isin(ids[pos], [0, UNK, CLS, SEP]).any(), "a random replacement is special"
        if scheme != "char":  # whole words: a word is masked entirely or not at all
            tok_masked = np.isin(layout.body_pos, pos)
            word_masked = np.zeros(int(word_id.max()) + 1, bool)
            word_masked[word_id[tok_masked]] = True
            text = original[layout.body_pos] != UNK
            assert (tok_masked[text] == word_masked[word_id][text]).all(), f"{scheme}: a word was split"
    assert abs(masked / n_body - 0.15) <= 0.01, masked / n_body
    for got, share in ((to_mask, 0.8), (to_random, 0.1), (kept, 0.1)):
        assert abs(got / masked - share) <= 0.02, (got / masked, share)
    # deterministic for a given generator; another generator, other masks
    again = _run(masker, layouts)
    assert all(np.array_equal(a[2], b[2]) and np.array_equal(a[1], b[1]) for a, b in zip(results, again))
    other = _run(masker, layouts, seed=1)
    assert sum(not np.array_equal(a[2], b[2]) for a, b in zip(results, other)) > 0.9 * len(layouts)


def _span_law(p, m):
    law = p * (1 - p) ** np.arange(m)
    return law / law.sum()


def test_span_lengths_follow_the_clipped_geometric_law(vocab):
    """Spans never touch, so each run of masked words in the output is one span the masker reports.  Until the
    budget cuts one, every span is masked at the length drawn (a span cut to the free room is rare); the lengths
    drawn up to and including the first cut one are i.i.d. draws (Wald: stopping on the running total does not bias
    the counts), tested against SpanBERT's law (p = 0.2 restricted to 1..10 words) by chi-square -- which rejects
    the neighbouring laws."""
    masker = make_masker(_spec(vocab, masking="span"), VocabIds(vocab))
    rng = np.random.default_rng(5)
    draws, n_spans, clipped = [], 0, 0
    for i in range(1500):
        sizes = rng.integers(1, 5, size=int(rng.integers(60, 250)))  # words of 1-4 tokens
        body = rng.integers(len(du.SPECIALS), 305, size=int(sizes.sum()))
        flags = np.zeros(len(body), bool)
        flags[np.cumsum(sizes) - sizes] = True
        ids = np.concatenate([[CLS], body, [SEP]]).astype(np.int64)
        pos, _ = masker(Layout(ids, np.zeros_like(ids), np.arange(1, len(ids) - 1), flags), np.random.default_rng(i))
        _, n_words, drawn, cut = masker.choose_spans(sizes, budget(len(body), 0.15, None), np.random.default_rng(i))
        runs = _masked_runs(pos, np.repeat(np.arange(len(sizes)), sizes), np.arange(1, len(ids) - 1))
        assert sorted(runs.tolist()) == sorted(n_words.tolist()), "the output's runs are the reported spans"
        assert runs.max() <= SPAN_MAX
        k = int(np.argmax(cut)) if cut.any() else len(cut)
        assert cut[k:].all(), "the budget decides only the last spans"
        clipped += int((n_words[:k] != drawn[:k]).sum())
        n_spans += k
        draws.append(drawn[:k + 1])
    assert clipped < 0.01 * n_spans, (clipped, n_spans)
    observed = np.bincount(np.concatenate(draws), minlength=SPAN_MAX + 1)[1:]

    def p_value(law):
        expected = law * observed.sum()
        return chi2.sf(float(((observed - expected) ** 2 / expected).sum()), len(law) - 1)

    assert p_value(_span_law(SPAN_LAW_P, SPAN_MAX)) > 0.01, observed
    mean = (observed * np.arange(1, SPAN_MAX + 1)).sum() / observed.sum()
    assert abs(mean - 3.8) < 0.15, mean  # SpanBERT's mean span length
    # the test tells the law from its neighbours
    assert p_value(_span_law(0.22, SPAN_MAX)) < 1e-4
    assert p_value(_span_law(0.18, SPAN_MAX)) < 1e-4
    clipped_by_min = SPAN_LAW_P * (1 - SPAN_LAW_P) ** np.arange(SPAN_MAX)  # Megatron's min(l, 10): the tail at 10
    clipped_by_min[-1] += (1 - SPAN_LAW_P) ** SPAN_MAX
    assert p_value(clipped_by_min) < 1e-4


def test_the_replacement_shares_are_keys(vocab, tmp_path):
    masker = make_masker(_spec(vocab, masking="char", mask_token_prob=0.5, random_token_prob=0.2, keep_prob=0.3),
                         VocabIds(vocab))
    res = _run(masker, _layouts(800))
    masked = sum(len(r[2]) for r in res)
    to_mask = sum(int((r[1][r[2]] == MASK).sum()) for r in res)
    kept = sum(int((r[1][r[2]] == r[3]).sum()) for r in res)
    assert abs(to_mask / masked - 0.5) <= 0.02 and abs(kept / masked - 0.3) <= 0.02
    prefix, vocab_file = U.make_data(str(tmp_path / "data"), n_docs=20)
    base = U.tiny_overrides(prefix, vocab_file, str(tmp_path / "out"))
    config = f"{U.REPO}/configs/roformer_tiny_demo.yaml"
    for bad, needle in (
        ({"data.mask_token_prob": 0.7}, "data.mask_token_prob=0.7: expected mask_token_prob + random_token_prob + "
                                         "keep_prob = 1 (they are 0.7 + 0.1 + 0.1 = 0.9)"),
        ({"data.keep_prob": -0.1, "data.mask_token_prob": 1.0}, "data.keep_prob=-0.1: expected a number in [0, 1]"),
        ({"data.random_token_prob": ".nan"}, "data.random_token_prob=nan: expected a finite number"),
        ({"data.masking": "whole_word"}, "data.masking='whole_word': expected one of char, span, wwm_ngram"),
        ({"data.span_geometric_p": 0}, "data.span_geometric_p=0.0: expected a number in (0, 1]"),
        ({"data.span_max_words": 0}, "data.span_max_words=0: expected an integer >= 1"),
    ):
        with pytest.raises(ConfigError) as e:
            load_config(config, base + [f"{k}={v}" for k, v in bad.items()])
        assert needle in str(e.value), str(e.value)


def test_dynamic_masking_each_epoch_masks_the_same_text_anew(tmp_path):
    """Packed rows repeat exactly in every epoch: the same text, other masks (the sample's generator is seeded
    by its index, which counts across epochs); the same run reads the same masks again."""
    vocab = du.write_vocab(str(tmp_path / "vocab.txt"), 300)
    prefix = du.synthetic_prefix(str(tmp_path / "synth"), n_docs=60)
    for scheme in SCHEMES:
        spec = _spec(vocab, masking=scheme, binary_head=False, packing="full_sentences")
        ds = PretrainingDataset(prefix, spec, num_samples=400, cache_dir=str(tmp_path / "cache"))
        rows = [tuple(r) for r in np.asarray(ds.samples_mapping).tolist()]
        per_epoch = len(set(rows))
        assert 2 * per_epoch <= len(rows)
        first_seen = {r: i for i, r in reversed(list(enumerate(rows[:per_epoch])))}
        differ = 0
        for j in range(per_epoch, 2 * per_epoch):
            i = first_seen[rows[j]]
            a, b = ds[i], ds[j]
            ta, tb = a["input_ids"].copy(), b["input_ids"].copy()
            ta[a["masked_positions"]] = a["masked_labels"]
            tb[b["masked_positions"]] = b["masked_labels"]
            np.testing.assert_array_equal(ta, tb)  # the same text ...
            differ += not np.array_equal(a["masked_positions"], b["masked_positions"])  # ... masked anew
        assert differ > 0.9 * per_epoch, (scheme, differ, per_epoch)
        again = PretrainingDataset(prefix, spec, num_samples=400, cache_dir=str(tmp_path / "cache"))
        for i in (0, 7, per_epoch + 3):
            assert all(np.array_equal(ds[i][k], again[i][k]) for k in ds[i])
        reseeded = PretrainingDataset(prefix, spec.replace(seed=8), num_samples=400, cache_dir=str(tmp_path / "cache"))
        assert not all(np.array_equal(ds[i]["input_ids"], reseeded[i]["input_ids"]) for i in range(10))


def test_char_masking_needs_no_word_starts(tmp_path):
    vocab = du.write_vocab(str(tmp_path / "vocab.txt"), 300)
    prefix = du.synthetic_prefix(str(tmp_path / "synth"), n_docs=40)
    (tmp_path / "synth.wwm").unlink()
    with pytest.raises(FileNotFoundError, match="synth.wwm: missing word-start flags, needed for "
                                                "masking='wwm_ngram'.*or use masking=char"):
        PretrainingDataset(prefix, _spec(vocab), num_samples=10)
    ds = PretrainingDataset(prefix, _spec(vocab, masking="char"), num_samples=200)
    n_body = masked = 0
    for i in range(200):
        s = ds[i]
        ids = s["input_ids"].copy()
        ids[s["masked_positions"]] = s["masked_labels"]
        n_body += int((ids >= len(du.SPECIALS)).sum())
        masked += len(s["masked_positions"])
    assert abs(masked / n_body - 0.15) < 0.01
