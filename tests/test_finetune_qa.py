"""QA: token offsets (vs the Rust fast tokenizer) and exact answer recovery on mixed CJK/Latin/digit/space
texts, windows and labels, n-best with max_answer_length, CMRC2018 EM/F1 on hand-made cases, reader rules
and errors.

Budget: ~5 s.
"""
import json
import os
import random

import numpy as np
import pytest

import _text_util as U
from data_tools.tokenizer import BertTokenizer
from ernie_style.downstream import qa
from ernie_style.downstream.common import DataError

MIXED = [
    "中国人民银行成立于1948年12月1日，总部在北京。",
    "iPhone 15 Pro于2023年9月发布，售价7999元起；New York的Apple Store排起长队。",
    "RoFormer使用rotary position embedding (RoPE)，在CLUE上的F1是85.3%。",
    "  前导空格  和   多个   空格\t制表符\n换行 ok ",
    "unaffable runners running: 3.14159, 1,000,000 and 2024-01-01 12:30",
    "ＡＢＣ１２３全角字符（测试）“引号”与『书名』…… done.",
    "Mixed中文English混合123数字abc",
]


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return U.make_vocab(str(tmp_path_factory.mktemp("qa") / "vocab.txt"), "".join(MIXED) + "问题是什么哪年")


@pytest.fixture(scope="module")
def tok(vocab):
    return BertTokenizer(vocab)


# ------------------------------------------------------------------------------------------ offsets

@pytest.mark.parametrize("lower", [True, False])
def test_offsets_match_fast_tokenizer(vocab, lower):
    """Ids and [start, end) spans equal transformers' Rust BertTokenizerFast (an independent implementation)
    on texts without combining marks (where spans are exact by design)."""
    from transformers import BertTokenizerFast

    ours = BertTokenizer(vocab, do_lower_case=lower)
    fast = BertTokenizerFast(vocab, do_lower_case=lower)
    rng = random.Random(3)
    pool = "".join(MIXED) + "abcXYZ 0123456789 \u3000\u00a0\x00\u200b."
    texts = MIXED + ["".join(rng.choice(pool) for _ in range(rng.randint(1, 60))) for _ in range(300)]
    compared = 0
    for t in texts:
        ids, starts, ends = ours.encode_with_offsets(t)
        assert ids.tolist() == ours.encode(t).tolist()
        ref = fast(t, add_special_tokens=False, return_offsets_mapping=True)
        if lower:  # cased: the fast tokenizer's accent handling differs on full-width forms; compare spans only
            assert ids.tolist() == ref["input_ids"], t
        if ids.tolist() == ref["input_ids"]:
            assert list(zip(starts.tolist(), ends.tolist())) == [tuple(o) for o in ref["offset_mapping"]], t
            compared += 1
    assert compared >= 250


def test_wordpiece_continuations_get_their_own_span(tok):
    text = "Unaffable runners, 中国"
    ids, s, e = tok.encode_with_offsets(text)
    assert tok.convert_ids_to_tokens(ids) == ["un", "##aff", "##able", "run", "##ner", "##s", ",", "中", "国"]
    assert [text[a:b] for a, b in zip(s, e)] == ["Un", "aff", "able", "run", "ner", "s", ",", "中", "国"]


# --------------------------------------------------------------------------------- answer recovery

def _examples_with_token_aligned_answers(tok, rng, n_per_context=12):
    out = []
    for c, context in enumerate(MIXED):
        ids, s, e = tok.encode_with_offsets(context)
        for k in range(n_per_context):
            i = rng.randrange(len(ids))
            j = min(len(ids) - 1, i + rng.randrange(6))
            answer = context[s[i]:e[j]]
            out.append(qa.QaExample(f"q{c}_{k}", "问题是什么", context, [answer], int(s[i])))
    return out


@pytest.mark.parametrize("max_seq_len,doc_stride", [(16, 3), (20, 100), (24, 5), (128, 64)])
def test_answers_recovered_exactly_through_windows(tok, max_seq_len, doc_stride):
    """A model that is right in every window (high start logit on the answer's first token, high end logit
    on its last token, wherever they are in the window) -> best_answers returns the answer text character
    for character (spaces, full-width forms, Latin case kept) whenever the window that predicts the first
    token also holds the last one (the max-context rule), for answers inside and across window borders."""
    rng = random.Random(max_seq_len)
    examples = _examples_with_token_aligned_answers(tok, rng)
    feats, bad, _ = qa.encode_examples(examples, tok, max_seq_len, 4, doc_stride, with_labels=True)
    assert bad.total == 0
    assert [f.example for f in feats] == sorted(f.example for f in feats)
    for f in feats:
        assert len(f.input_ids) <= max_seq_len
        assert f.input_ids[0] == tok.cls_id and f.input_ids[-1] == tok.sep_id
        assert (f.token_type_ids[f.char_start >= 0] == 1).all()
    start_logits, end_logits, recoverable = [], [], set()
    for ex_idx, ex in enumerate(examples):
        mine = [f for f in feats if f.example == ex_idx]
        n = len(tok.encode(ex.context))
        assert sum(int(f.max_context.sum()) for f in mine) == n  # each context token: exactly one window
        a, b = ex.answer_start, ex.answer_start + len(ex.answers[0])
        for f in mine:
            s_pos = np.nonzero(f.char_start == a)[0]
            e_pos = np.nonzero(f.char_end == b)[0]
            whole = len(s_pos) == 1 and len(e_pos) == 1
            # the label: the answer's tokens when the window holds all of them, else [CLS]
            assert (f.start_position, f.end_position) == ((s_pos[0], e_pos[0]) if whole else (0, 0))
            sl = np.zeros(len(f.input_ids))
            el = np.zeros(len(f.input_ids))
            sl[s_pos], el[e_pos] = 10.0, 10.0
            start_logits.append(sl)
            end_logits.append(el)
            if whole and f.max_context[s_pos[0]]:
                recoverable.add(ex_idx)
    assert len(recoverable) >= 0.7 * len(examples)
    got = qa.best_answers(feats, start_logits, end_logits, examples, n_best=5, max_answer_length=10)
    for k in recoverable:
        assert got[k] == examples[k].answers[0]


def test_answer_labels_in_a_hand_case(tok):
    context = "New York 的 Apple Store"
    ex = qa.QaExample("q", "哪", context, ["York 的 Apple"], 4)
    (f,), _, _ = qa.encode_examples([ex], tok, 64, 8, 32, with_labels=True)
    pieces = tok.convert_ids_to_tokens(f.input_ids)
    assert pieces[3:6] == ["new", "y", "##o"]  # this vocab spells most Latin words letter by letter
    assert pieces[f.start_position] == "y" and pieces[f.end_position] == "##e"
    assert context[f.char_start[f.start_position]:f.char_end[f.end_position]] == "York 的 Apple"
    assert f.token_type_ids.tolist() == [0, 0, 0] + [1] * (len(pieces) - 3)


def test_max_answer_length_and_n_best(tok):
    context = "甲乙丙丁戊己庚辛"
    ex = qa.QaExample("q", "哪", context, ["乙"], 1)
    (f,), _, _ = qa.encode_examples([ex], tok, 64, 8, 32, with_labels=False)
    off = 3  # [CLS] 哪 [SEP]
    sl = np.zeros(len(f.input_ids))
    el = np.zeros(len(f.input_ids))
    sl[off + 0], el[off + 7] = 9.0, 9.0  # best span 甲..辛 (8 tokens)
    sl[off + 2], el[off + 3] = 5.0, 5.0  # next best 丙丁
    assert qa.best_answers([f], [sl], [el], [ex], max_answer_length=8) == ["甲乙丙丁戊己庚辛"]
    assert qa.best_answers([f], [sl], [el], [ex], max_answer_length=7) == ["甲乙丙丁戊己庚辛"[0:4]]  # 甲 + 丁 (4 tokens)
    assert qa.best_answers([f], [sl], [el], [ex], max_answer_length=2) == ["丙丁"]
    # an end before every start gives no candidate in n_best=1 -> ""
    sl2 = np.zeros(len(f.input_ids))
    el2 = np.zeros(len(f.input_ids))
    sl2[off + 5], el2[off + 1] = 9.0, 9.0
    assert qa.best_answers([f], [sl2], [el2], [ex], n_best=1) == [""]


# ------------------------------------------------------------------------------------------- metrics

CMRC_CASES = [
    # (golds, prediction, EM, F1), worked out by hand from the official cmrc2018_evaluate.py rules
    # 1. "。" is in the punctuation list: removed for EM, and not a segment for F1 -> both 1.
    (["北京大学"], "北京大学。", 1.0, 1.0),
    # 2. gold segments [1948, 年, 12, 月, 1, 日] (digit runs are words), prediction [1948, 年]:
    #    common run 2, P = 2/2, R = 2/6 -> F1 = 2 * 1 * (1/3) / (4/3) = 0.5.
    (["1948年12月1日"], "1948年", 0.0, 0.5),
    # 3. English words stay whole and are lowercased: gold [hello, world, 你, 好], prediction [hello, wor]:
    #    common run 1 (hello), P = 1/2, R = 1/4 -> F1 = 2 * (1/8) / (3/4) = 1/3.
    (["Hello World 你好"], "hello wor", 0.0, 1 / 3),
    # 4. max over the gold answers: the second one matches exactly.
    (["上海", "上海市"], "上海市", 1.0, 1.0),
    # 5. ASCII "." is not in the list: EM "abc" != "abc."; F1 prediction [abc, .] vs [abc]:
    #    P = 1/2, R = 1 -> 2/3.
    (["abc"], "abc.", 0.0, 2 / 3),
    # 6. "-" is in the list and removed before segmenting, so "e-mail" is the one word "email".
    (["e-mail"], "email", 1.0, 1.0),
    # 7. a single "…" is kept (the list holds only the two-char "……"): prediction [等, 等, …]:
    #    P = 2/3, R = 1 -> F1 = 2 * (2/3) / (5/3) = 0.8.
    (["等等"], "等等…", 0.0, 0.8),
    # 8. longest common *contiguous* run: [甲, 乙, 丙, 丁] vs [甲, 丙, 丁] -> 2 (丙丁), not 3:
    #    P = 2/3, R = 2/4 -> F1 = 2 * (1/3) / (7/6) = 4/7.
    (["甲乙丙丁"], "甲丙丁", 0.0, 4 / 7),
    # 9. lowercase + strip of outer whitespace (incl. the ideographic space) before comparing.
    (["\u3000 ABC "], "abc", 1.0, 1.0),
    # 10. inner spaces: kept for EM ("新 华 社" != "新华社"), but they are not segments for F1.
    (["新 华 社"], "新华社", 0.0, 1.0),
    # 11. empty prediction: nothing in common.
    (["北京"], "", 0.0, 0.0),
    # 12. numbers with inner "." / "," stay whole: [3.14, 1,000] vs [3.14] -> P = 1, R = 1/2 -> 2/3.
    (["3.14 1,000"], "3.14", 0.0, 2 / 3),
    # 13. full-width "（）" and "《》" are in the list; ASCII "()" are not:
    #     EM: "书名" vs "(书名)" differ; F1 prediction [(, 书, 名, )] vs [书, 名]: P = 2/4, R = 1 -> 2/3.
    (["《书名》"], "(书名)", 0.0, 2 / 3),
]


@pytest.mark.parametrize("golds,pred,em,f1", CMRC_CASES)
def test_cmrc_em_f1_hand_cases(golds, pred, em, f1):
    assert qa.cmrc_em(golds, pred) == em
    assert qa.cmrc_f1(golds, pred) == pytest.approx(f1, abs=1e-12)


def test_cmrc_scores_average():
    golds = [c[0] for c in CMRC_CASES]
    preds = [c[1] for c in CMRC_CASES]
    s = qa.qa_scores(golds, preds)
    assert s["em"] == pytest.approx(sum(c[2] for c in CMRC_CASES) / len(CMRC_CASES))
    assert s["f1"] == pytest.approx(sum(c[3] for c in CMRC_CASES) / len(CMRC_CASES))


def test_cmrc_segments():
    assert qa.cmrc_segments("iPhone 15 Pro于2023年发布，www.example.com") == [
        "iphone", "15", "pro", "于", "2023", "年", "发", "布", "www.example.com"]


# -------------------------------------------------------------------------------------------- reader

def _squad(paragraphs):
    return {"version": "v1", "data": [{"title": "t", "paragraphs": paragraphs}]}


def _write_json(tmp_path, name, obj):
    p = tmp_path / name
    p.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return str(p)


def test_reader_examples_and_malformed(tmp_path):
    ctx = "北京是中国的首都，上海是中国最大的城市。"
    doc = _squad([
        {"context": ctx, "qas": [
            {"id": "a", "question": "首都是哪?", "answers": [{"text": "北京", "answer_start": 0}]},
            {"id": "b", "question": "最大城市?", "answers": [{"text": "上海", "answer_start": -11}]},  # corrected
            {"id": "c", "question": "", "answers": [{"text": "北京", "answer_start": 0}]},
            {"id": "a", "question": "重复?", "answers": [{"text": "北京", "answer_start": 0}]},
            {"id": "d", "question": "没有?", "answers": [{"text": "广州", "answer_start": 0}]},
            {"id": "e", "question": "坏位置?", "answers": [{"text": "北京", "answer_start": "0"}]},
            {"id": "f", "question": "没答案?", "answers": []},
            {"id": "g", "question": "空答案?", "answers": [{"text": " ", "answer_start": 0}]},
            {"id": "h", "question": "不可答?", "is_impossible": True, "answers": []},
            {"question": "无编号?", "answers": [{"text": "中国", "answer_start": 3}]},
        ]},
        {"qas": [{"id": "x", "question": "无上下文?", "answers": [{"text": "a", "answer_start": 0}]}]},
        "not a paragraph",
    ])
    path = _write_json(tmp_path, "train.json", doc)
    f = qa.read_squad(path, train=True)
    assert [e.qid for e in f.examples] == ["a", "b", "data[0].paragraphs[0].qas[9]"]
    assert [e.answer_start for e in f.examples] == [0, 9, 3]
    assert f.corrected == 1
    assert f.malformed.counts == {"no question": 1, "duplicate id": 1, "bad answer": 1, "unanswerable": 1,
                                  "no context": 1, "bad paragraph": 1, "no answer": 1,
                                  "answer not in context": 1, "bad answer_start": 1}
    assert f.malformed.first["no context"] == ["x"] and f.malformed.first["bad paragraph"] == ["data[0].paragraphs[2]"]
    assert "answer_start corrected for 1" in f.report() and "9 malformed questions" in f.report()
    # dev: answer positions are not needed, so "d" and "e" are kept (only their texts are used)
    dev = qa.read_squad(path)
    assert [e.qid for e in dev.examples] == ["a", "b", "d", "e", "data[0].paragraphs[0].qas[9]"]
    assert dev.examples[2].answers == ["广州"]


def test_reader_errors(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"data": [\n  {"paragraphs": [}\n]}', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.json:2: not valid JSON"):
        qa.read_squad(str(p))
    with pytest.raises(DataError, match=r"list.json: expected SQuAD format"):
        qa.read_squad(_write_json(tmp_path, "list.json", [{"context": "x"}]))
    with pytest.raises(DataError, match=r"empty.json: no questions; expected SQuAD format"):
        qa.read_squad(_write_json(tmp_path, "empty.json", {"data": []}))
    with pytest.raises(DataError, match=r"bad.json: no questions \(1 malformed question: no question x1"):
        qa.read_squad(_write_json(tmp_path, "bad.json", _squad([{"context": "c", "qas": [{"id": "1"}]}])))
    unanswered = _write_json(tmp_path, "test.json", _squad([{"context": "北京", "qas": [{"id": "1", "question": "哪"}]}]))
    with pytest.raises(DataError, match=r"test.json: no question has an answer"):
        qa.read_squad(unanswered, train=True)
    t = qa.read_squad(unanswered, allow_unanswered=True)
    assert not t.has_answers and t.examples[0].answers == []
    with pytest.raises(DataError, match=r"missing.json: file not found"):
        qa.read_squad(str(tmp_path / "missing.json"))


def test_answer_without_tokens_is_counted(tok):
    ex = qa.QaExample("s", "哪", "北京  上海", ["  "], 2)  # the answer is two spaces: no token
    feats, bad, _ = qa.encode_examples([ex], tok, 32, 8, 16, with_labels=True)
    assert feats == [] and bad.counts == {"answer covers no token": 1} and bad.first["answer covers no token"] == ["s"]


# ------------------------------------------------------------------------------- the task, end to end

from _finetune_util import (SPECIALS, TASK_CJK as CJK, dev_predictions_by_world, tiny_finetune,  # noqa: E402
                            write_task_vocab)
CUE_OPEN, CUE_CLOSE = CJK[0], CJK[1]  # the answer is the text between these two cue characters
ANSWER_ITEMS = CJK[10:40] + ["xy", "7", " "] * 10  # half of the inner items are Latin, digits or spaces
FILLER = CJK[40:] + ["xy", "xye", "7", " "] * 5


def _synthetic_questions(rng, n, prefix):
    """SQuAD-format paragraphs: filler, CUE_OPEN, the answer (1-4 items, mixed CJK/Latin/digits/spaces inside),
    CUE_CLOSE, filler; contexts up to ~70 tokens (several windows of 27)."""
    paragraphs, answers = [], []
    for k in range(n):
        left = "".join(rng.choice(FILLER) for _ in range(rng.randint(0, 30)))
        answer = rng.choice(CJK[10:40]) + "".join(rng.choice(ANSWER_ITEMS) for _ in range(rng.randint(0, 2)))
        answer = answer + (rng.choice(CJK[10:40]) if rng.random() < 0.5 else "")
        right = "".join(rng.choice(FILLER) for _ in range(rng.randint(0, 30)))
        context = left + CUE_OPEN + answer + CUE_CLOSE + right
        question = "".join(rng.choice(CJK[40:]) for _ in range(2))
        qid = f"{prefix}{k}"
        paragraphs.append({"context": context, "qas": [
            {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": len(left) + 1}]}]})
        answers.append(answer)
    return {"version": "synthetic", "data": [{"title": prefix, "paragraphs": paragraphs}]}, answers


def _finetune(tmp_path, config, train, dev, test, **extra):
    return tiny_finetune(tmp_path, config, train, dev, test, **{
        "data.max_seq_len": 32, "data.max_query_len": 4, "data.doc_stride": 10, "task.max_answer_length": 8,
        "task.n_best": 5, "train.epochs": 4, "train.micro_batch_size": 32, **extra})


def _read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


QA_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "finetune", "qa.yaml")


def test_qa_task_learns_and_predictions_line_up(tmp_path):
    """A tiny model learns to find the answer between two cue characters in contexts longer than a window
    (EM/F1 far above chance, which is ~0); predictions: one answer per question, in input order, the original
    text (Latin, digits, inner spaces) cut out of the context; an unanswered test file gets predictions only."""
    rng = random.Random(21)
    train, _ = _synthetic_questions(rng, 500, "tr")
    dev, dev_answers = _synthetic_questions(rng, 80, "dv")
    test, test_answers = _synthetic_questions(rng, 60, "ts")
    for para in test["data"][0]["paragraphs"]:
        del para["qas"][0]["answers"]
    paths = [_write_json(tmp_path, f"{n}.json", d) for n, d in (("train", train), ("dev", dev), ("test", test))]
    rc, out = _finetune(tmp_path, QA_CONFIG, *paths)
    assert rc == 0
    with open(out / "results.json", encoding="utf-8") as f:
        results = json.load(f)
    assert results["dev"]["f1"] > 0.8 and results["dev"]["em"] > 0.6, results["dev"]
    assert not results.get("test")  # unanswered test file: no metrics
    dev_preds = _read_jsonl(out / "predictions_dev.jsonl")
    assert [p["id"] for p in dev_preds] == [f"dv{k}" for k in range(80)]
    assert qa.qa_scores([[a] for a in dev_answers], [p["prediction"] for p in dev_preds]) == pytest.approx(
        {k: results["dev"][k] for k in ("em", "f1")})
    test_preds = _read_jsonl(out / "predictions_test.jsonl")
    assert [p["id"] for p in test_preds] == [f"ts{k}" for k in range(60)]
    exact = [p["prediction"] == a for p, a in zip(test_preds, test_answers)]
    assert np.mean(exact) > 0.6
    assert any(" " in a or "xy" in a for a, ok in zip(test_answers, exact) if ok)  # mixed answers come back whole
    with open(out / "best_model" / "config.json", encoding="utf-8") as f:
        task_cfg = json.load(f)
    assert task_cfg["task"] == "qa" and "id2label" not in task_cfg
    import paddle

    state = paddle.load(str(out / "best_model" / "model_state.pdparams"))
    assert list(state["qa_outputs.weight"].shape) == [32, 2] and list(state["qa_outputs.bias"].shape) == [2]
    # the head is transformers' RoFormerForQuestionAnswering: export + start/end logit parity (<= 1e-5)
    from export import to_pytorch

    assert to_pytorch.main([str(out / "best_model"), str(tmp_path / "hf"), "--verify"]) == 0


def test_qa_task_config_and_data_errors(tmp_path, capsys):
    """Bad inputs: one error line, exit 2."""
    train, _ = _synthetic_questions(random.Random(1), 4, "tr")
    good = _write_json(tmp_path, "train.json", train)
    broken = tmp_path / "dev.json"
    broken.write_text('{"data": [}', encoding="utf-8")
    rc, _ = _finetune(tmp_path, QA_CONFIG, good, str(broken), "")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "dev.json:1: not valid JSON" in err[0]
    rc, _ = _finetune(tmp_path, QA_CONFIG, good, good, "", **{"data.max_query_len": 29})
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["error: data.max_query_len=29: expected at most data.max_seq_len - 4 = 28 ([CLS] "
                               "question [SEP] context [SEP] needs room for the context)"]


def test_docs_state_the_punctuation_list():
    """docs/finetune.md lists exactly the characters the metric strips (so the stated rules cannot drift)."""
    import re

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "finetune.md")
    text = open(path, encoding="utf-8").read().split("## NER and QA metrics", 1)[1]
    ascii_part, cjk_part = re.search(r"\*\*Punctuation\*\* = exactly these characters: ``(.*?)`` and `(.*?)`", text).groups()
    assert set(ascii_part.split()) | set(cjk_part) == qa.CMRC_PUNCT
    assert len(ascii_part.split()) + len(cjk_part) == len(qa.CMRC_PUNCT)


def test_qa_eval_independent_of_ranks_and_batching(tmp_path):
    """The dev answers of a (random) model are the same whether the bucketed eval batches are dealt to 1, 2 or 3
    ranks (rows gathered by index, as the trainer does) and equal a direct evaluation (one unpadded window at a
    time, best_answers over those logits)."""
    import paddle

    rng = random.Random(4)
    train, _ = _synthetic_questions(rng, 10, "tr")
    dev, _ = _synthetic_questions(rng, 30, "dv")
    paths = [_write_json(tmp_path, f"{n}.json", d) for n, d in (("train", train), ("dev", dev))]
    vocab = write_task_vocab(tmp_path)
    task, model, by_world = dev_predictions_by_world(QA_CONFIG, [
        "model.init=random", f"data.vocab_file={vocab}", f"data.train_file={paths[0]}", f"data.dev_file={paths[1]}",
        "data.test_file=", "data.max_seq_len=32", "data.max_query_len=4", "data.doc_stride=10",
        "task.max_answer_length=6", "task.n_best=4", "model.hidden_size=32", "model.num_hidden_layers=1",
        "model.num_attention_heads=2", "model.intermediate_size=64", "model.max_position_embeddings=64",
        "train.micro_batch_size=4", f"train.output_dir={tmp_path / 'o'}"])
    assert by_world[0] == by_world[1] == by_world[2]
    assert [p["id"] for p in by_world[0]] == [f"dv{k}" for k in range(30)]
    starts, ends = [], []
    for w in task.windows["dev"]:
        ids = paddle.to_tensor(w.input_ids[None])
        with paddle.no_grad():
            s, e = model(ids, paddle.to_tensor(w.token_type_ids[None]))  # (1, T) each, no padding
        starts.append(s.numpy()[0])
        ends.append(e.numpy()[0])
    direct = qa.best_answers(task.windows["dev"], starts, ends, task.files["dev"].examples, 4, 6)
    assert [p["prediction"] for p in by_world[0]] == direct
    assert len(task.windows["dev"]) > 30  # several windows per question
