"""NER: CoNLL reader rules and errors, the sentence's text tokenized whole (tokens covering several characters,
characters without a token, words per line), window stitching on long mixed inputs, entity metrics against the
seqeval package (BIO and BIOES).

Budget: ~5 s.
"""
import random
import warnings

import numpy as np
import pytest

import _text_util as U
from data_tools.tokenizer import BertTokenizer
from ernie_style.downstream import ner
from ernie_style.downstream.common import DataError
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
    with pytest.raises(DataError, match=r"empty.txt: the file holds only blank lines"):
        ner.read_conll(_write(tmp_path, "empty.txt", "\n\n"))
    with pytest.raises(DataError, match=r"bad.txt: no sentences \(2 malformed lines: no tag x2"):
        ner.read_conll(_write(tmp_path, "bad.txt", "中 O\n国\n\n人 O\n家\n"))
    with pytest.raises(DataError, match=r"latin1.txt:1: not UTF-8"):
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

@pytest.fixture(scope="module")
def merging_tok(tmp_path_factory):
    from _finetune_util import MERGING_VOCAB

    path = tmp_path_factory.mktemp("ner_merge") / "vocab.txt"
    path.write_text("\n".join(MERGING_VOCAB) + "\n", encoding="utf-8")
    return BertTokenizer(str(path))


def test_text_tokens_predict_the_characters_they_cover(merging_tok):
    """The sentence's text is tokenized whole: a token covering several characters (full-width digits, a Latin
    word written a character per line, full-width letters) predicts all of them and is trained on the first
    one's tag; a space or control character has no token (O); a word on one line is predicted by its first
    token, the others are ignored (-100)."""
    tok = merging_tok
    C = [chr(0x4E00 + k) for k in range(4)]
    items = [C[0], "２", "０", "２", "１", "年", "i", "P", "h", "o", "n", "e", " ", "Ａ", "Ｂ", "Ｃ", C[1], "\x00",
             C[2], "2021", C[3], "xyz"]
    tags = ["B-PER", "B-DATE", "I-DATE", "I-DATE", "I-DATE", "I-DATE", "B-PRO", "I-PRO", "I-PRO", "I-PRO", "I-PRO",
            "I-PRO", "O", "B-ORG", "I-ORG", "I-ORG", "O", "O", "O", "B-DATE", "O", "O"]
    sent = ner.Sentence(items, tags, 1)
    assert ner.sentence_text(sent) == "".join(items)
    al = ner.Aligner(tok)(sent)
    assert tok.convert_ids_to_tokens(al.ids) == [
        C[0], "２０", "##２", "##１", "年", "iphone", "ａｂｃ", C[1], C[2], "2021", C[3], "x", "##y", "##z"]
    assert al.groups() == [(0, [0]), (1, [1, 2]), (2, [3]), (3, [4]), (4, [5]), (5, [6, 7, 8, 9, 10, 11]),
                           (6, [13, 14, 15]), (7, [16]), (8, [18]), (9, [19]), (10, [20]), (11, [21])]
    assert al.item_token[[12, 17]].tolist() == [-1, -1]  # the space and the control character: no token
    label2id = {t: i for i, t in enumerate(["O"] + sorted(set(tags) - {"O"}))}
    (f,) = ner.encode_sentences([sent], [al], label2id, 32, 15, tok.cls_id, tok.sep_id)
    want = ["B-PER", "B-DATE", "I-DATE", "I-DATE", "I-DATE", "B-PRO", "B-ORG", "O", "O", "B-DATE", "O", "O"]
    assert f.labels.tolist() == [-100] + [label2id[t] for t in want] + [-100, -100, -100]  # ##y ##z: ignored
    assert f.token_at.tolist() == [-1] + list(range(12)) + [-1, -1, -1]
    # predicting the training labels gives back every gold tag, spaces and control characters "O"
    (pred,) = ner.stitch([f], [np.where(f.labels >= 0, f.labels, 0)], [sent], [al], list(label2id))
    assert pred == tags
    counts = ner.alignment_counts([sent], [al])
    assert counts == {"items": 22, "shared": 1 + 5 + 2, "no_token": 2, "across": 0}


def test_a_line_holding_a_word_is_one_unit(merging_tok):
    """Lines with several characters (words per line): each line is predicted by the first token overlapping
    it; a token overlapping several lines spreads over them; tokens after the first in a line predict nothing."""
    tok = merging_tok
    sent = ner.Sentence(["iPh", "one", "年", "２０２１", "年", "xyz"], ["B-PRO", "I-PRO", "O", "B-DATE", "I-DATE", "O"], 1)
    al = ner.Aligner(tok)(sent)
    assert tok.convert_ids_to_tokens(al.ids) == ["iphone", "年", "２０", "##２", "##１", "年", "x", "##y", "##z"]
    assert al.groups() == [(0, [0, 1]), (1, [2]), (2, [3]), (5, [4]), (6, [5])]
    (f,) = ner.encode_sentences([sent], [al], {"O": 0, "B-PRO": 1, "I-PRO": 2, "B-DATE": 3, "I-DATE": 4}, 32, 15,
                                tok.cls_id, tok.sep_id)
    assert f.labels.tolist() == [-100, 1, 0, 3, -100, -100, 4, 0, -100, -100, -100]
    (pred,) = ner.stitch([f], [np.where(f.labels >= 0, f.labels, 0)], [sent], [al],
                         ["O", "B-PRO", "I-PRO", "B-DATE", "I-DATE"])
    assert pred == sent.tags


@pytest.mark.parametrize("scheme", ["bio", "bioes"])
def test_token_tag_and_expand_tag_are_inverse(scheme):
    """For every tag sequence a token can hold without crossing an entity boundary (a piece of one entity, or
    all O), the token's tag spread back over its characters gives the sequence; across a boundary it cannot."""
    def entity(n, typ):
        if scheme == "bio":
            return [f"B-{typ}"] + [f"I-{typ}"] * (n - 1)
        return [f"S-{typ}"] if n == 1 else [f"B-{typ}"] + [f"I-{typ}"] * (n - 2) + [f"E-{typ}"]

    for n_ent in range(1, 6):
        ent = entity(n_ent, "LOC")
        for a in range(n_ent):
            for b in range(a + 1, n_ent + 1):  # every piece ent[a:b] of the entity
                piece = ent[a:b]
                tag = ner.token_tag(piece)
                assert ner.expand_tag(tag, len(piece)) == piece, (piece, tag)
                assert tag[0] in ner.SCHEMES[scheme] and tag[2:] == "LOC"
    for n in range(1, 4):
        assert ner.token_tag(["O"] * n) == "O" and ner.expand_tag("O", n) == ["O"] * n
    for crossing in (["O", "B-LOC"], entity(2, "LOC") + ["O"], [entity(1, "LOC")[0], entity(1, "PER")[0]]):
        assert ner.expand_tag(ner.token_tag(crossing), len(crossing)) != crossing
        assert ner.alignment_counts(*_one_token(crossing))["across"] == 1


def _one_token(tags):
    """([sentence], [alignment]) of one token covering every item (an alignment as the Aligner makes them)."""
    sent = ner.Sentence(["x"] * len(tags), list(tags), 1)
    return [sent], [ner.Alignment(np.array([9], np.int64), np.zeros(len(tags), np.int64))]


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
    chars = ["中", "a", "B", "2024", "7", "1", "2", " ", "\x00"] * 8  # "a" "B" -> "ab"
    sentences.append(ner.Sentence(chars, [rng.choice(tags) for _ in chars], 1))
    label2id = {t: i for i, t in enumerate(tags)}
    aligner = ner.Aligner(tok)
    alignments = [aligner(s) for s in sentences]
    feats = ner.encode_sentences(sentences, alignments, label2id, max_seq_len, stride, tok.cls_id, tok.sep_id)
    body = max_seq_len - 2
    by_example = {}
    for f in feats:
        assert len(f.input_ids) <= max_seq_len
        assert f.input_ids[0] == tok.cls_id and f.input_ids[-1] == tok.sep_id
        by_example.setdefault(f.example, []).append(f)
    assert sorted(by_example) == list(range(len(sentences)))  # every sentence has windows, in order
    assert [f.example for f in feats] == sorted(f.example for f in feats)
    for s, al in zip(sentences, alignments):  # the windows hold the tokens of the sentence's text
        assert al.ids.tolist() == tok.encode("".join(s.chars)).tolist()

    # 1) a model that predicts the training label at every labelled position -> the stitched tags are the gold
    #    tags, except "O" for characters without a token and the spread tag for tokens across an entity boundary
    pred = ner.stitch(feats, [np.where(f.labels >= 0, f.labels, 0) for f in feats], sentences, alignments, tags)
    assert [len(p) for p in pred] == [len(s.chars) for s in sentences]
    n_shared = 0
    for s, al, p in zip(sentences, alignments, pred):
        want = [ner.NO_TOKEN_TAG] * len(s.chars)
        for _, items in al.groups():
            gold = [s.tags[k] for k in items]
            for k, t in zip(items, ner.expand_tag(ner.token_tag(gold), len(gold))):
                want[k] = t
            n_shared += len(items) - 1
        assert p == want
        for c, q in zip(s.chars, p):
            if not tok.encode(c).size:
                assert q == ner.NO_TOKEN_TAG
    assert n_shared > 0  # some tokens cover several characters

    # 2) a model that predicts the window index -> each token is predicted by its max-context window, and its
    #    characters take that window's index
    id2label = [f"B-{w}" for w in range(200)]
    win_pred, k = [], {}
    for f in feats:
        k[f.example] = k.get(f.example, -1) + 1
        win_pred.append(np.full(len(f.input_ids), k[f.example]))
    chosen = ner.stitch(feats, win_pred, sentences, alignments, id2label)
    for s, al, ch in zip(sentences, alignments, chosen):
        n = len(al.ids)
        starts = window_starts(n, body, stride)
        for c in range(len(s.chars)):
            t = al.item_token[c]
            assert ch[c] == ("O" if t < 0 else f"{ch[c][0]}-{_max_context_window(t, starts, body, n)}")


# ------------------------------------------------------------------------------- the task, end to end

from _finetune_util import (SPECIALS, TASK_CJK as CJK, dev_predictions_by_world, tiny_finetune,  # noqa: E402
                            write_task_vocab)
# Entity strings of fixed characters per type (CJK[0:36]); filler from CJK[40:] plus Latin items, digits and
# spaces (a space has no token: it must come back as "O").
ENTITY_STRINGS = {"PER": ["".join(CJK[k:k + 3]) for k in range(0, 12, 3)],
                  "LOC": ["".join(CJK[k:k + 2]) for k in range(12, 24, 2)] + [CJK[36]],
                  "ORG": ["".join(CJK[k:k + 4]) for k in range(24, 36, 4)]}
FILLER = CJK[40:] + ["xy", "xye", "7", " "]


def _synthetic_sentences(rng, n, scheme, spaces=True):
    filler = FILLER if spaces else [c for c in FILLER if c != " "]
    out = []
    for _ in range(n):
        chars, tags = [], []
        for _ in range(rng.randint(1, 5)):
            for _ in range(rng.randint(1, 7)):
                chars.append(rng.choice(filler))
                tags.append("O")
            if rng.random() < 0.7:
                typ = rng.choice(sorted(ENTITY_STRINGS))
                ent = rng.choice(ENTITY_STRINGS[typ])
                if scheme == "bio":
                    t = [f"B-{typ}"] + [f"I-{typ}"] * (len(ent) - 1)
                else:
                    t = [f"S-{typ}"] if len(ent) == 1 else [f"B-{typ}"] + [f"I-{typ}"] * (len(ent) - 2) + [f"E-{typ}"]
                chars.extend(ent)
                tags.extend(t)
        out.append((chars, tags))
    return out


def _write_conll(path, sentences, tagged=True):
    with open(path, "w", encoding="utf-8") as f:
        for chars, tags in sentences:
            for c, t in zip(chars, tags):
                f.write((f"{c}\t{t}" if tagged else c) + "\n")
            f.write("\n")
    return str(path)


def _tiny_run(tmp_path, config, train, dev, test, **extra):
    return tiny_finetune(tmp_path, config, train, dev, test, **{
        "data.max_seq_len": 24, "data.doc_stride": 10, "train.epochs": 3, "train.micro_batch_size": 16, **extra})


def _read_jsonl(path):
    import json

    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("scheme", ["bio", "bioes"])
def test_ner_task_learns_and_predictions_line_up(tmp_path, scheme):
    """A tiny model learns to tag fixed entity strings in random filler (entity F1 far above chance, which is
    ~0), with windows (sentences up to ~45 items, 22 sub-tokens per window); predictions: one list per test
    sentence, in order, one tag per input line, spaces "O"; the test F1 in results.json is the F1 of the
    predictions file against the gold tags (ours and seqeval's)."""
    import json
    import os

    from seqeval.metrics import f1_score

    rng = random.Random(5 if scheme == "bio" else 6)
    train = _synthetic_sentences(rng, 320, scheme)
    dev = _synthetic_sentences(rng, 60, scheme)
    tagged = scheme == "bio"  # the BIOES run has an untagged test file: predictions only
    test = _synthetic_sentences(rng, 50, scheme, spaces=tagged)  # (untagged, a space line would end a sentence)
    paths = [_write_conll(tmp_path / f"{n}.txt", s, tagged or n != "test")
             for n, s in (("train", train), ("dev", dev), ("test", test))]
    config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "finetune",
                          "ner.yaml")
    rc, out = _tiny_run(tmp_path, config, *paths)
    assert rc == 0
    with open(out / "results.json", encoding="utf-8") as f:
        results = json.load(f)
    assert results["dev"]["f1"] > 0.9, results["dev"]
    assert set(results["dev"]["per_type"]) == {"PER", "LOC", "ORG"}
    preds = _read_jsonl(out / "predictions_test.jsonl")
    assert len(preds) == len(test)
    assert [len(p["prediction"]) for p in preds] == [len(chars) for chars, _ in test]
    assert [p["line"] for p in preds] == list(np.cumsum([0] + [len(c) + 1 for c, _ in test[:-1]]) + 1)
    for p, (chars, _) in zip(preds, test):
        assert all(t == "O" for t, c in zip(p["prediction"], chars) if c == " ")
    gold = [tags for _, tags in test]
    pred = [p["prediction"] for p in preds]
    if tagged:
        assert results["test"]["f1"] == pytest.approx(ner.entity_scores(gold, pred)["f1"], abs=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert results["test"]["f1"] == pytest.approx(f1_score(gold, pred), abs=1e-12)
    else:
        assert not results.get("test")  # no tags: no test metrics
        assert ner.entity_scores(gold, pred)["f1"] > 0.9
    dev_preds = _read_jsonl(out / "predictions_dev.jsonl")
    assert len(dev_preds) == len(dev)
    with open(out / "best_model" / "config.json", encoding="utf-8") as f:
        task_cfg = json.load(f)
    seen = {t for _, tags in train for t in tags}
    labels = ["O"] + [f"{p}-{t}" for t in ("LOC", "ORG", "PER") for p in ner.SCHEMES[scheme] if f"{p}-{t}" in seen]
    assert len(labels) == (7 if scheme == "bio" else 10)  # BIOES: LOC has B E S (no I: 1-2 chars), PER/ORG B I E
    assert task_cfg["task"] == "ner" and list(task_cfg["id2label"].values()) == labels
    import paddle

    state = paddle.load(str(out / "best_model" / "model_state.pdparams"))
    assert list(state["classifier.weight"].shape) == [32, len(labels)]
    assert list(state["classifier.bias"].shape) == [len(labels)]
    if tagged:  # the head is transformers' RoFormerForTokenClassification: export + logit parity (<= 1e-5)
        from export import to_pytorch

        assert to_pytorch.main([str(out / "best_model"), str(tmp_path / "hf"), "--verify"]) == 0


def test_ner_task_data_errors(tmp_path, capsys):
    """A dev tag not in the training file: one error line naming file and line, exit 2."""
    import os

    train = _write_conll(tmp_path / "train.txt", [(["一", "二"], ["B-PER", "I-PER"])])
    dev = _write_conll(tmp_path / "dev.txt", [(["一"], ["O"]), (["二", "三"], ["O", "B-LOC"])])
    config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "finetune",
                          "ner.yaml")
    rc, _ = _tiny_run(tmp_path, config, train, dev, "")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("error: ") and err[0].endswith(
        "dev.txt:4: tag 'B-LOC' does not occur in the training file (its tags: O, B-PER, I-PER)")


def test_ner_eval_independent_of_ranks_and_batching(tmp_path):
    """The dev predictions of a (random) model are the same whether the bucketed eval batches are dealt to 1, 2
    or 3 ranks (rows gathered by index, as the trainer does) and equal a direct window-by-window evaluation
    (one unpadded window at a time, argmax, stitched)."""
    import os

    import paddle

    rng = random.Random(9)
    paths = [_write_conll(tmp_path / f"{n}.txt", _synthetic_sentences(rng, k, "bio")) for n, k in
             (("train", 20), ("dev", 30))]
    vocab = write_task_vocab(tmp_path)
    config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "finetune",
                          "ner.yaml")
    task, model, by_world = dev_predictions_by_world(config, [
        "model.init=random", f"data.vocab_file={vocab}", f"data.train_file={paths[0]}", f"data.dev_file={paths[1]}",
        "data.test_file=", "data.max_seq_len=16", "data.doc_stride=5", "model.hidden_size=32",
        "model.num_hidden_layers=1", "model.num_attention_heads=2", "model.intermediate_size=64",
        "model.max_position_embeddings=64", "train.micro_batch_size=4", f"train.output_dir={tmp_path / 'o'}"])
    assert by_world[0] == by_world[1] == by_world[2]
    direct = []
    for w in task.windows["dev"]:
        with paddle.no_grad():
            logits = model(paddle.to_tensor(w.input_ids[None]))  # (1, T, C), no padding
        direct.append(logits.numpy()[0].argmax(-1))
    sentences = task.files["dev"].sentences
    assert [p["prediction"] for p in by_world[0]] == ner.stitch(task.windows["dev"], direct, sentences,
                                                                task.alignments["dev"], task.id2label)
    assert len(task.windows["dev"]) > len(sentences)  # windows were stitched


def test_ner_resume_with_other_windows_refused(tmp_path, capsys):
    """The windows decide the training features: resuming with another data.doc_stride is refused (exit 2)."""
    import os

    rng = random.Random(2)
    paths = [_write_conll(tmp_path / f"{n}.txt", _synthetic_sentences(rng, k, "bio")) for n, k in
             (("train", 40), ("dev", 10))]
    config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "finetune",
                          "ner.yaml")
    rc, out = _tiny_run(tmp_path, config, *paths, "", **{"train.epochs": 1})
    assert rc == 0 and (out / "checkpoints" / "latest").exists()
    capsys.readouterr()
    rc, _ = _tiny_run(tmp_path, config, *paths, "", **{"train.epochs": 1, "train.resume": "auto",
                                                       "data.doc_stride": 7})
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "data.doc_stride: 10 (checkpoint) vs 7 (now)" in err[0], err
