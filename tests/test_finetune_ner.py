"""NER: CoNLL reader rules and errors, first-sub-token labels, window stitching on long mixed inputs,
entity metrics against the seqeval package (BIO and BIOES).

Budget: ~5 s.
"""
import random
import warnings

import numpy as np
import pytest

import _text_util as U
from data_tools.tokenizer import BertTokenizer
from ernie_style.downstream import ner
from ernie_style.downstream.ner import DataError
from ernie_style.downstream.windows import window_starts

TYPES = ("PER", "LOC", "ORG")
# Mixed input "characters": CJK, Latin letters, multi-piece words, digits, a space, a control char.
MIXED = list("张三在北京大学读书李四去了上海复旦") + ["a", "B", "unaffable", "runners", "2024", "7", " ", "\x00",
                                                  "Ω", "，", "。", "iPhone"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = U.make_vocab(str(tmp_path_factory.mktemp("ner") / "vocab.txt"), "".join(MIXED))
    return BertTokenizer(path)


def _write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return str(p)


# ------------------------------------------------------------------------------------------ metrics

def _random_tags(rng, scheme, n):
    tags = ["O"] + [f"{p}-{t}" for p in ner.SCHEMES[scheme] for t in TYPES]
    return [rng.choice(tags) for _ in range(n)]


@pytest.mark.parametrize("scheme", ["bio", "bioes"])
def test_chunks_match_seqeval(scheme):
    from seqeval.metrics.sequence_labeling import get_entities

    rng = random.Random(7)
    for _ in range(3000):
        seq = _random_tags(rng, scheme, rng.randint(0, 14))
        ours = sorted((t, a, b - 1) for t, a, b in ner.chunks(seq))  # seqeval's ends are inclusive
        assert ours == sorted(get_entities(seq)), seq


@pytest.mark.parametrize("scheme", ["bio", "bioes"])
def test_entity_scores_match_seqeval(scheme):
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    rng = random.Random(11 if scheme == "bio" else 12)
    gold = [_random_tags(rng, scheme, rng.randint(1, 20)) for _ in range(400)]
    # predictions: mostly right, some tags replaced at random (stray I-/E-, type changes, ...)
    pred = [[t if rng.random() < 0.7 else _random_tags(rng, scheme, 1)[0] for t in g] for g in gold]
    ours = ner.entity_scores(gold, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = classification_report(gold, pred, output_dict=True)
        assert ours["precision"] == pytest.approx(precision_score(gold, pred), abs=1e-12)
        assert ours["recall"] == pytest.approx(recall_score(gold, pred), abs=1e-12)
        assert ours["f1"] == pytest.approx(f1_score(gold, pred), abs=1e-12)
    assert 0.3 < ours["f1"] < 0.9  # a non-trivial case
    assert set(ours["per_type"]) == set(TYPES)
    for t, m in ours["per_type"].items():
        assert m["f1"] == pytest.approx(report[t]["f1-score"], abs=1e-12), t
        assert m["precision"] == pytest.approx(report[t]["precision"], abs=1e-12), t
        assert m["support"] == report[t]["support"], t
    flat_g = [t for s in gold for t in s]
    flat_p = [t for s in pred for t in s]
    assert ours["accuracy"] == pytest.approx(np.mean([a == b for a, b in zip(flat_g, flat_p)]))


def test_entity_scores_hand_case():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["S-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-PER"], ["B-ORG", "E-ORG"]]
    # gold entities: PER[0,2) LOC[3,4) | ORG[0,1); predicted: PER[0,2) PER[3,4) | ORG[0,2): 1 correct of 3 and 3
    m = ner.entity_scores(gold, pred)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert m["per_type"]["PER"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["per_type"]["LOC"]["f1"] == 0.0 and m["per_type"]["ORG"]["f1"] == 0.0
    # a stray I- opens an entity; a type change inside one splits it (conlleval)
    assert ner.chunks(["O", "I-PER", "I-PER", "I-LOC", "B-LOC", "E-LOC", "E-LOC"]) == [
        ("PER", 1, 3), ("LOC", 3, 4), ("LOC", 4, 6), ("LOC", 6, 7)]


# ------------------------------------------------------------------------------------------- reader

def test_reader_formats(tmp_path):
    text = ("\ufeff中 B-LOC\r\n国\tI-LOC\r\n \tO\r\n  O\r\niPhone B-ORG \r\n\r\n"  # BOM, CRLF, tab, spaces
            "他 O\n\n\n \t \n")
    f = ner.read_conll(_write(tmp_path, "a.txt", text))
    assert [s.chars for s in f.sentences] == [["中", "国", " ", " ", "iPhone"], ["他"]]
    assert [s.tags for s in f.sentences] == [["B-LOC", "I-LOC", "O", "O", "B-ORG"], ["O"]]
    assert [s.line for s in f.sentences] == [1, 7]
    assert f.tagged and f.malformed.total == 0 and "2 sentences" in f.report()
    assert ner.detect_scheme(t for s in f.sentences for t in s.tags) == "bio"
    assert ner.label_list(f, "bio") == ["O", "B-LOC", "I-LOC", "B-ORG"]


def test_reader_malformed_lines_counted(tmp_path):
    lines = ["中 O", "国 O", "", "好", "的 O", "", "a b O", "", "x B-", "", "y X-PER", "", " O", "", "人 S-PER",
             "", "z", ""]
    f = ner.read_conll(_write(tmp_path, "b.txt", "\n".join(lines)))
    assert [s.chars for s in f.sentences] == [["中", "国"], ["人"]]
    assert f.malformed.counts == {"no tag": 2, "more than two fields": 1, "bad tag": 2, "no character": 1}
    assert f.malformed.first == {"no tag": [4, 17], "more than two fields": [7], "bad tag": [9, 11],
                                 "no character": [13]}
    assert f.skipped_sentences == 6
    summary = f.report()
    assert "6 sentences left out" in summary and "no tag x2 (line 4, 17)" in summary


def test_reader_errors(tmp_path):
    train = ner.read_conll(_write(tmp_path, "train.txt", "张 B-PER\n三 I-PER\n在 O\n"))
    label2id = {t: i for i, t in enumerate(ner.label_list(train, "bio"))}
    with pytest.raises(DataError, match=r"empty.txt: no sentences"):
        ner.read_conll(_write(tmp_path, "empty.txt", "\n\n"))
    with pytest.raises(DataError, match=r"bad.txt: no sentences \(2 malformed lines: no tag x2"):
        ner.read_conll(_write(tmp_path, "bad.txt", "中 O\n国\n\n人 O\n家\n"))
    with pytest.raises(DataError, match=r"latin1.txt: not UTF-8"):
        ner.read_conll(_write(tmp_path, "latin1.txt", "é O\n", "latin-1"))
    with pytest.raises(DataError, match=r"missing.txt: file not found"):
        ner.read_conll(str(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match=r"untagged.txt: no line has a tag"):
        ner.read_conll(_write(tmp_path, "untagged.txt", "中\n国\n"))
    test = ner.read_conll(_write(tmp_path, "untagged.txt", "中\n国\n\n人\n"), allow_untagged=True)
    assert not test.tagged and [s.chars for s in test.sentences] == [["中", "国"], ["人"]]
    assert test.sentences[0].tags is None
    ner.check_tags(test, label2id)  # nothing to check
    dev = ner.read_conll(_write(tmp_path, "dev.txt", "张 B-PER\n\n北 B-LOC\n京 I-LOC\n"))
    with pytest.raises(DataError, match=r"dev.txt:3: tag 'B-LOC' does not occur in the training file"):
        ner.check_tags(dev, label2id)
    bioes = ner.read_conll(_write(tmp_path, "bioes.txt", "张 O\n\n三 S-PER\n"))
    assert ner.detect_scheme(t for s in bioes.sentences for t in s.tags) == "bioes"
    with pytest.raises(DataError, match=r"bioes.txt:3: tag 'S-PER' is not in the BIO scheme"):
        ner.check_scheme(bioes, "bio")


# ------------------------------------------------------------------------------------------ encoding

def test_first_subtoken_gets_the_label(tok):
    sent = ner.Sentence(["unaffable", "中", " ", "runners"], ["B-ORG", "O", "O", "B-PER"], 1)
    label2id = {"O": 0, "B-ORG": 1, "B-PER": 2}
    (f,) = ner.encode_sentences([sent], ner.CharTokens(tok), label2id, 32, 15, tok.cls_id, tok.sep_id)
    pieces = tok.convert_ids_to_tokens(f.input_ids)
    assert pieces == ["[CLS]", "un", "##aff", "##able", "中", "run", "##ner", "##s", "[SEP]"]
    assert f.labels.tolist() == [-100, 1, -100, -100, 0, 2, -100, -100, -100]
    assert f.char_at.tolist() == [-1, 0, -1, -1, 1, 3, -1, -1, -1]  # the space has no token: no position


def _max_context_window(pos, starts, body, n):
    """Independent statement of the stitching rule: most context, earliest on ties."""
    best = None
    for w, a in enumerate(starts):
        b = min(a + body, n)
        if a <= pos < b:
            ctx = min(pos - a, b - 1 - pos)
            if best is None or ctx > best[0]:
                best = (ctx, w)
    return best[1]


@pytest.mark.parametrize("max_seq_len,stride", [(5, 1), (6, 2), (8, 3), (9, 7), (12, 10), (64, 20)])
def test_window_stitching_gives_every_char_one_prediction(tok, max_seq_len, stride):
    rng = random.Random(max_seq_len * 100 + stride)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    sentences = []
    for _ in range(20):
        n = rng.randint(1, 70)
        chars = [rng.choice(MIXED) for _ in range(n)]
        sentences.append(ner.Sentence(chars, [rng.choice(tags) for _ in chars], 1))
    label2id = {t: i for i, t in enumerate(tags)}
    char_tokens = ner.CharTokens(tok)
    feats = ner.encode_sentences(sentences, char_tokens, label2id, max_seq_len, stride, tok.cls_id, tok.sep_id)
    body = max_seq_len - 2
    by_example = {}
    for f in feats:
        assert len(f.input_ids) <= max_seq_len
        assert f.input_ids[0] == tok.cls_id and f.input_ids[-1] == tok.sep_id
        by_example.setdefault(f.example, []).append(f)
    assert sorted(by_example) == list(range(len(sentences)))  # every sentence has windows, in order
    assert [f.example for f in feats] == sorted(f.example for f in feats)

    # 1) a model that predicts the gold tag at every labelled position -> the stitched tags are the gold tags
    #    for every character with a token and "O" for characters without one
    pred = ner.stitch(feats, [np.where(f.labels >= 0, f.labels, 0) for f in feats], sentences, tags)
    assert [len(p) for p in pred] == [len(s.chars) for s in sentences]
    for s, p in zip(sentences, pred):
        for c, t, q in zip(s.chars, s.tags, p):
            assert q == (t if len(tok.encode(c)) else ner.NO_TOKEN_TAG), (c, t, q)

    # 2) a model that predicts the window index -> each character is predicted by its max-context window
    id2label = [str(w) for w in range(200)]
    win_pred, k = [], {}
    for f in feats:
        k[f.example] = k.get(f.example, -1) + 1
        win_pred.append(np.full(len(f.input_ids), k[f.example]))
    chosen = ner.stitch(feats, win_pred, sentences, id2label)
    for s, ch in zip(sentences, chosen):
        n_pieces = [len(char_tokens(c)) for c in s.chars]
        first = np.cumsum(n_pieces) - n_pieces
        starts = window_starts(sum(n_pieces), body, stride)
        for c in range(len(s.chars)):
            want = str(_max_context_window(first[c], starts, body, sum(n_pieces))) if n_pieces[c] else "O"
            assert ch[c] == want
