"""Extractive QA data and metrics: SQuAD-format JSON (CMRC2018, DRCD, SQuAD v1), sliding-window features
with token -> original-character offsets, n-best span decoding, and EM/F1 as the CMRC2018 evaluation.

Reading rules (also in docs/finetune.md, "NER and QA metrics"):

- The file is ``{"data": [{"paragraphs": [{"context": str, "qas": [{"id", "question", "answers":
  [{"text", "answer_start"}]}]}]}]}``; anything else at that level is an error naming the file.
- One example per question, in file order.  A malformed question is left out, counted under its reason
  with its location (its id, else its path such as ``data[0].paragraphs[2].qas[1]``): ``no question``,
  ``no context`` (each question of a paragraph without a context string), ``duplicate id``, ``bad
  answer`` (an answer without a non-empty ``text`` string), ``no answer`` (in a file whose other
  questions have answers), ``unanswerable`` (SQuAD 2.0 ``is_impossible``: not supported), and for the
  training split ``bad answer_start`` (not an integer) and ``answer not in context``.
- Training uses the first answer.  When its text is not at ``answer_start`` but occurs elsewhere in the
  context, the occurrence nearest to ``answer_start`` is used and counted as ``answer_start corrected``
  (CMRC2018's training set has a few such answers).  Dev/test answers are only texts (as in the
  official evaluation), so their positions are not checked.
- A file without any answer is allowed for the test split only (predict only).  An empty file or split
  is an error.  The caller decides whether the malformed questions may be left out
  (:func:`~ernie_style.downstream.common.check_malformed`: none of a dev/test file).

Features: ``[CLS] question [SEP] context-window [SEP]``, token types 0 then 1.  The question is cut to
``max_query_len`` tokens; the context is cut into windows of ``max_seq_len - len(question) - 3`` tokens
whose starts are ``doc_stride`` tokens apart (the step between windows, as in the BERT reference; capped at
the window size; the last window ends at the context's end).  A training window whose context does not
hold the whole answer has start = end = 0 (the ``[CLS]`` position).  Every context token keeps the span
of original characters it comes from (:meth:`data_tools.tokenizers.Tokenizer.encode_with_offsets`), so
a predicted span is cut out of the original context: ``context[start of first token : end of last token]``.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import numpy as np

from ernie_style.downstream.common import DataError, Malformed, read_lines
from ernie_style.downstream.windows import owner_windows, window_starts


@dataclass
class QaExample:
    qid: str
    question: str
    context: str
    answers: list  # gold answer texts ([] in a predict-only file)
    answer_start: int  # char offset of answers[0] in context (-1 when unknown/unused)


@dataclass
class QaFile:
    path: str
    examples: list  # [QaExample]
    has_answers: bool
    malformed: Malformed
    corrected: int  # training answers whose answer_start was moved to the nearest occurrence

    def report(self) -> str:
        msg = f"{self.path}: {len(self.examples)} questions"
        if self.corrected:
            msg += f"; answer_start corrected for {self.corrected}"
        if self.malformed.total:
            msg += f"; left out {self.malformed.summary('question')}"
        return msg


def _nearest(context: str, text: str, start) -> int:
    """answer_start if the text is there, else the nearest occurrence's start (earliest on ties), else -1."""
    valid = isinstance(start, int) and start >= 0  # (a negative start would slice from the end)
    if valid and context[start:start + len(text)] == text:
        return start
    hits = [m.start() for m in re.finditer(re.escape(text), context)]
    if not hits:
        return -1
    ref = start if valid else 0
    return min(hits, key=lambda h: (abs(h - ref), h))


def read_squad(path, *, train: bool = False, allow_unanswered: bool = False) -> QaFile:
    """Read a SQuAD-format file (rules in the module docstring).  `train`: answer positions are needed and
    checked.  `allow_unanswered`: a file without answers is accepted (the test split)."""
    path = os.fspath(path)
    # (BOM dropped, \r\n accepted; line numbers kept for JSON errors)
    raw = "\n".join(read_lines(path, "a SQuAD-format JSON file"))
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
    shape = 'SQuAD format {"data": [{"paragraphs": [{"context": ..., "qas": [...]}]}]}'
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"{path}: expected {shape}")

    malformed = Malformed(unit="question")
    candidates = []  # (example, where)
    seen_ids = set()
    for i, article in enumerate(doc["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            malformed.add("bad article", f"data[{i}]")
            continue
        for j, para in enumerate(paragraphs):
            qas = para.get("qas") if isinstance(para, dict) else None
            if not isinstance(qas, list):
                malformed.add("bad paragraph", f"data[{i}].paragraphs[{j}]")
                continue
            context = para.get("context")
            for k, qa in enumerate(qas):
                where = f"data[{i}].paragraphs[{j}].qas[{k}]"
                if not isinstance(qa, dict):
                    malformed.add("bad question", where)
                    continue
                qid = qa.get("id")
                qid = where = str(qid) if qid not in (None, "") else where
                if not isinstance(context, str) or not context.strip():
                    malformed.add("no context", where)
                    continue
                question = qa.get("question")
                if not isinstance(question, str) or not question.strip():
                    malformed.add("no question", where)
                    continue
                if qid in seen_ids:
                    malformed.add("duplicate id", where)
                    continue
                if qa.get("is_impossible"):
                    malformed.add("unanswerable", where)
                    continue
                answers = qa.get("answers") or []
                if not isinstance(answers, list) or not all(
                        isinstance(a, dict) and isinstance(a.get("text"), str) and a["text"].strip() for a in answers):
                    malformed.add("bad answer", where)
                    continue
                seen_ids.add(qid)
                ex = QaExample(qid, question, context, [a["text"] for a in answers], -1)
                candidates.append((ex, where, answers[0].get("answer_start") if answers else None))

    has_answers = any(ex.answers for ex, _, _ in candidates)
    if not has_answers and candidates and not allow_unanswered:
        raise DataError(f"{path}: no question has an answer (an unanswered file is allowed only as the test split)")
    examples, corrected = [], 0
    for ex, where, start in candidates:
        if has_answers and not ex.answers:
            malformed.add("no answer", where)
            continue
        if train:
            if isinstance(start, bool) or not isinstance(start, int):
                malformed.add("bad answer_start", where)
                continue
            found = _nearest(ex.context, ex.answers[0], start)
            if found < 0:
                malformed.add("answer not in context", where)
                continue
            corrected += found != start
            ex.answer_start = found
        examples.append(ex)
    if not examples:
        why = f" ({malformed.summary('question')})" if malformed.total else ""
        raise DataError(f"{path}: no questions{why}; expected {shape}")
    return QaFile(path, examples, has_answers, malformed, corrected)


# ----------------------------------------------------------------------------------------- features

@dataclass
class QaFeature:
    """One window of one question: ``[CLS] question [SEP] context-window [SEP]``."""

    input_ids: np.ndarray  # int64 [T]
    token_type_ids: np.ndarray  # int64 [T]
    start_position: int  # label position (0 = [CLS]: the answer is not in this window / no label)
    end_position: int
    char_start: np.ndarray  # int32 [T]: original-context span of each context token, -1 elsewhere
    char_end: np.ndarray  # int32 [T]
    max_context: np.ndarray  # bool [T]: this window is the one that predicts this context token
    example: int


def answer_token_span(starts: np.ndarray, ends: np.ndarray, a: int, b: int):
    """(first, last) token index overlapping the char span [a, b), or None when no token does."""
    hit = np.nonzero((ends > a) & (starts < b))[0]
    return (int(hit[0]), int(hit[-1])) if len(hit) else None


def encode_examples(examples, tokenizer, max_seq_len: int, max_query_len: int, doc_stride: int,
                    with_labels: bool):
    """(features, malformed, questions cut): the windows of every example in order; with labels, training
    questions whose answer covers no token (only spaces/control characters) are left out and counted; the
    number of questions longer than `max_query_len` tokens (cut to it)."""
    malformed = Malformed(unit="question")
    features, n_cut = [], 0
    for ex_idx, ex in enumerate(examples):
        q = tokenizer.encode(ex.question)
        n_cut += len(q) > max_query_len
        q = q[:max_query_len].astype(np.int64)
        ids, cs, ce = tokenizer.encode_with_offsets(ex.context)
        body = max_seq_len - len(q) - 3
        assert body >= 1, (max_seq_len, max_query_len)
        span = None
        if with_labels:
            a = ex.answer_start
            span = answer_token_span(cs, ce, a, a + len(ex.answers[0]))
            if span is None:
                malformed.add("answer covers no token", ex.qid)
                continue
        if len(ids) == 0 and with_labels:
            malformed.add("context has no token", ex.qid)
            continue
        starts = window_starts(len(ids), body, min(doc_stride, body))
        owner = owner_windows(np.arange(len(ids)), starts, body, len(ids))
        off = len(q) + 2  # position of the first context token
        for w, a in enumerate(starts):
            b = min(a + body, len(ids))
            n = b - a
            input_ids = np.concatenate([[tokenizer.cls_id], q, [tokenizer.sep_id], ids[a:b], [tokenizer.sep_id]])
            types = np.concatenate([np.zeros(off, np.int64), np.ones(n + 1, np.int64)])
            c_start = np.full(len(input_ids), -1, np.int32)
            c_end = np.full(len(input_ids), -1, np.int32)
            c_start[off:off + n] = cs[a:b]
            c_end[off:off + n] = ce[a:b]
            maxc = np.zeros(len(input_ids), bool)
            maxc[off:off + n] = owner[a:b] == w
            sp = ep = 0
            if span is not None and a <= span[0] and span[1] < b:
                sp, ep = off + span[0] - a, off + span[1] - a
            features.append(QaFeature(input_ids.astype(np.int64), types, sp, ep, c_start, c_end, maxc, ex_idx))
    return features, malformed, n_cut


def best_answers(features, start_logits, end_logits, examples, n_best: int = 20, max_answer_length: int = 30):
    """The predicted answer text of every example (in order).

    Per window, the `n_best` highest start and end logits over its context tokens give the candidate spans
    (start <= end, at most `max_answer_length` tokens, start token predicted by this window); the span with
    the largest start + end logit over all windows of the example wins and is cut out of the original
    context by character offsets.  An example without any candidate gets ""."""
    best = [(-np.inf, "") for _ in examples]
    for f, sl, el in zip(features, start_logits, end_logits):
        sl = np.asarray(sl, np.float64)[: len(f.input_ids)]
        el = np.asarray(el, np.float64)[: len(f.input_ids)]
        ctx = np.nonzero(f.char_start >= 0)[0]
        if len(ctx) == 0:
            continue
        s_cand = ctx[np.argsort(-sl[ctx], kind="stable")[:n_best]]
        s_cand = s_cand[f.max_context[s_cand]]
        e_cand = ctx[np.argsort(-el[ctx], kind="stable")[:n_best]]
        length = e_cand[None, :] - s_cand[:, None] + 1  # (S, E) tokens per candidate span
        scores = np.where((length >= 1) & (length <= max_answer_length), sl[s_cand][:, None] + el[e_cand][None, :],
                          -np.inf)
        if scores.size == 0 or not np.isfinite(scores).any():
            continue
        i, j = np.unravel_index(np.argmax(scores), scores.shape)  # the first maximum, in candidate order
        if scores[i, j] > best[f.example][0]:
            s, e = s_cand[i], e_cand[j]
            best[f.example] = (scores[i, j], examples[f.example].context[f.char_start[s]:f.char_end[e]])
    assert len(features) == len(start_logits) == len(end_logits)
    return [text for _, text in best]


# ------------------------------------------------------------------------------------------ metrics

# The official CMRC2018 script's punctuation list, one character each.  (Its list also holds the
# two-character string "……", which never equals a single character, so a lone "…" is kept.)
CMRC_PUNCT = frozenset("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")
# Stand-in for nltk.word_tokenize on the non-Chinese runs: numbers with inner "." or "," stay whole
# (3.14, 1,000), dotted words stay whole (www.example.com), other letter/digit runs are words, and every
# other non-space character is a segment of its own.
_WORD_RE = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+(?:\.[^\W_]+)+|[^\W_]+|\S")


def _is_cmrc_chinese(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fa5"


def cmrc_segments(text: str) -> list:
    """The segments F1 counts: lowercase, strip, drop CMRC punctuation; each Chinese character (U+4E00 to
    U+9FA5) is a segment; the text between them is split into words (see _WORD_RE)."""
    out, run = [], []
    for ch in str(text).lower().strip():
        if ch in CMRC_PUNCT:
            continue
        if _is_cmrc_chinese(ch):
            out.extend(_WORD_RE.findall("".join(run)))
            run = []
            out.append(ch)
        else:
            run.append(ch)
    out.extend(_WORD_RE.findall("".join(run)))
    return out


def cmrc_strip(text: str) -> str:
    """What EM compares: lowercase, strip, CMRC punctuation removed (inner spaces kept)."""
    return "".join(ch for ch in str(text).lower().strip() if ch not in CMRC_PUNCT)


def _longest_common_run(a: list, b: list) -> int:
    """Length of the longest common contiguous run of segments (substring, not subsequence)."""
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def cmrc_f1(golds, pred: str) -> float:
    """Max over the gold answers of the segment F1 (P = common run / predicted segments, R = common run /
    gold segments, 0 when nothing is in common)."""
    p_seg = cmrc_segments(pred)
    scores = [0.0]
    for g in golds:
        g_seg = cmrc_segments(g)
        common = _longest_common_run(g_seg, p_seg)
        if common:
            p, r = common / len(p_seg), common / len(g_seg)
            scores.append(2 * p * r / (p + r))
    return max(scores)


def cmrc_em(golds, pred: str) -> float:
    """1.0 if the prediction equals any gold answer after :func:`cmrc_strip`, else 0.0."""
    p = cmrc_strip(pred)
    return float(any(cmrc_strip(g) == p for g in golds))


def qa_scores(golds, preds) -> dict:
    """{"em", "f1"} averaged over the questions (fractions in [0, 1]; the official script prints x100)."""
    assert len(golds) == len(preds) and len(golds) > 0
    em = sum(cmrc_em(g, p) for g, p in zip(golds, preds)) / len(golds)
    f1 = sum(cmrc_f1(g, p) for g, p in zip(golds, preds)) / len(golds)
    return {"em": em, "f1": f1}
