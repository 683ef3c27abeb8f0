"""Small synthetic ``data_tools`` datasets and plain reference code for the dataset tests."""

import numpy as np

from _trainer_util import SPECIALS, write_corpus, write_vocab  # noqa: F401 (the dataset tests use du.write_vocab)


def synthetic_prefix(path_prefix: str, *, n_docs: int = 200, vocab_size: int = 305, seed: int = 0,
                     single_sentence_every: int = 7, unk_rate: float = 0.0,
                     sentences_per_doc: int = 0) -> str:
    """Documents of 1-8 sentences of random words (1-4 tokens each) with word-start flags.

    Every ``single_sentence_every``-th document has one sentence; ``unk_rate`` sprinkles
    [UNK] (id 1) into the text to check specials inside the corpus are never masked.
    ``sentences_per_doc > 0`` gives every document exactly that many sentences instead.
    """
    rng = np.random.default_rng(seed)

    def n_sentences(d):
        if sentences_per_doc:
            return sentences_per_doc
        return 1 if d % single_sentence_every == 0 else int(rng.integers(2, 9))

    def tokens(n):
        tok = rng.integers(len(SPECIALS), vocab_size, size=n)
        if unk_rate:
            tok[rng.random(n) < unk_rate] = 1
        return tok

    return write_corpus(path_prefix, rng, n_docs, n_sentences, tokens, words=(3, 30), word_len=(1, 5))


def simulate_truncation(la: int, lb: int, target: int):
    """Megatron's truncate_segments (and fine-tuning's longest-first rule), literally: trim the longer (B on ties)
    one token at a time."""
    while la + lb > target:
        if la > lb:
            la -= 1
        else:
            lb -= 1
    return la, lb


def find_segment(span: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Offsets where ``seg`` occurs contiguously inside ``span``."""
    if len(seg) > len(span):
        return np.zeros(0, np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(span, len(seg))
    return np.flatnonzero((windows == seg).all(axis=1))


def split_sample(sample, cls_id: int, sep_id: int):
    """[(start, end)] positions of the text segments of ``[CLS] A [SEP] (B [SEP])``."""
    ids = sample["input_ids"].copy()
    ids[sample["masked_positions"]] = sample["masked_labels"]
    assert ids[0] == cls_id and ids[-1] == sep_id
    seps = np.flatnonzero(sample["token_type_ids"][1:] != sample["token_type_ids"][:-1])
    if len(seps) == 0:
        return ids, [(1, len(ids) - 1)]
    first_sep = int(seps[0])  # last position with token type 0
    assert ids[first_sep] == sep_id
    return ids, [(1, first_sep), (first_sep + 1, len(ids) - 1)]
