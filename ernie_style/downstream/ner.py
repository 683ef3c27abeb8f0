"""NER data and metrics: CoNLL reader, BIO/BIOES tags, windowed encoding that gives every input
character exactly one prediction, and entity-level precision/recall/F1 with conlleval semantics.

Input (one ``char TAG`` per line, blank line between sentences)::

    中 B-LOC
    国 I-LOC
    人 O

Reading rules (also in docs/finetune.md, "NER and QA metrics"):

- Trailing spaces/tabs/``\\r`` and a leading UTF-8 byte-order mark are ignored; a line of only
  spaces/tabs ends a sentence.  A line is split at its last tab if it holds one, else at its last space:
  the part before is the character (a token, in fact: a multi-character item such as ``iPhone`` is
  allowed and kept whole), the part after is the tag.  So ``" \\tO"`` and ``"  O"`` are a space
  character tagged ``O``.
- Malformed lines are never dropped silently: each is counted under its reason with the first line
  numbers (:class:`Malformed`), and the sentence holding it is left out as a whole (a sentence with a
  character missing would shift every entity after it); the caller decides whether that many may be left
  out (:func:`~ernie_style.downstream.common.check_malformed`).  Reasons: ``no tag`` (a line without a
  separator in a tagged file), ``no character`` (the line starts with its separator), ``more than two
  fields``, ``bad tag`` (not ``O`` and not ``B-``/``I-``/``E-``/``S-`` + type), ``tag before the
  character`` (a bad tag after an entity tag: the columns are swapped).
- An entity that starts with ``I-``/``E-`` (after ``O``, an ``E-``/``S-``, or another type) is kept as
  written and read as starting an entity, as conlleval and seqeval do; such entities are counted in the
  report with their first lines.
- A file none of whose lines has a separator is untagged: allowed for the test split only (predict only).
- An empty file, or one with no sentence left, is an error; so is a dev/test tag that the training file
  does not have (:func:`check_tags` names file and line), and an ``E-``/``S-`` tag under the BIO scheme.

Encoding: the sentence's text (its items joined, :func:`sentence_text`) is tokenized as a whole, as the
exported tokenizer in a ``token-classification`` pipeline does, so the model is trained and evaluated on the
tokens it will see there.  Token spans map tokens to items (:class:`Aligner`): an item is predicted by the
first token overlapping it; a token overlapping several items (``２０``, ``iPhone`` a character per line)
predicts all of them, B- on the first and I- on the rest (:func:`expand_tag`), and is trained on the first
one's tag (:func:`token_tag`); further tokens inside one item (``unaffable`` on one line) are ignored (label
-100).  An item that yields no token on its own (a space, a control character) is predicted ``O``.
Sentences longer than ``max_seq_len - 2`` tokens are cut into overlapping windows whose starts are
``stride`` tokens apart (the last window ends at the last token); a token is predicted by the window in which
it has the most context (the larger of min(tokens before it, tokens after it) in the window; the earlier
window on ties), the rule the SQuAD reference uses for its windows.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ernie_style.constants import IGNORE_INDEX
from ernie_style.downstream.common import MAX_LINES_SHOWN, DataError, Malformed, read_lines
from ernie_style.downstream.windows import owner_windows, window_starts

NO_TOKEN_TAG = "O"
SCHEMES = {"bio": "BI", "bioes": "BIES"}


@dataclass
class Sentence:
    chars: list  # [n] str: one item per input line
    tags: list | None  # [n] str, None in an untagged (predict-only) file
    line: int  # 1-based line number of the first character; char k is on line `line + k`


@dataclass
class ConllFile:
    path: str
    sentences: list  # [Sentence]
    tagged: bool
    malformed: Malformed
    skipped_sentences: int  # sentences left out because they held a malformed line
    n_lines: int = 0  # non-blank lines (one per character)
    stray_starts: int = 0  # entities starting with I-/E- (read as starting an entity)
    stray_lines: list = field(default_factory=list)  # their first few line numbers

    def report(self) -> str:
        """One line for the log: what was read, what was left out by reason, entities without a B-."""
        msg = f"{self.path}: {len(self.sentences)} sentences, {sum(len(s.chars) for s in self.sentences)} chars"
        if self.stray_starts:
            more = ", ..." if self.stray_starts > len(self.stray_lines) else ""
            msg += (f"; {self.stray_starts} entities start with I-/E- (line {', '.join(map(str, self.stray_lines))}"
                    f"{more}), read as starting an entity as conlleval does")
        if self.malformed.total:
            n = self.skipped_sentences
            msg += f"; {n} sentence{'' if n == 1 else 's'} left out for {self.malformed.summary('line')}"
        return msg


def _valid_tag(tag: str) -> bool:
    return tag == "O" or (len(tag) > 2 and tag[0] in "BIES" and tag[1] == "-" and not any(c.isspace() for c in tag))


def _split_line(line: str):
    """(char, tag) or (None, reason) for one non-blank line; (char, None) when it has no separator."""
    sep = "\t" if "\t" in line else " "
    k = line.rfind(sep)
    if k < 0:
        return line, None
    char, tag = line[:k], line[k + 1:]
    if not tag:
        return None, "no tag"
    if not char or (sep in char and char.strip(" \t")):
        # "a b O": three fields.  An all-blank char (a space written as "  O" / " \tO") is allowed.
        return None, "more than two fields" if char else "no character"
    return char, tag


def _stray_starts(sentences) -> list:
    """Line numbers of the entities that start with I-/E- (after O, E-, S- or another type): the tags that
    :func:`chunks` reads as starting an entity although they do not say so."""
    out = []
    for s in sentences:
        prev, prev_type = "O", None
        for k, tag in enumerate(s.tags):
            cur, cur_type = _split_tag(tag)
            if cur in "IE" and (prev in "OES" or prev_type != cur_type):
                out.append(s.line + k)
            prev, prev_type = cur, cur_type
    return out


def read_conll(path, *, allow_untagged: bool = False) -> ConllFile:
    """Read a CoNLL file (rules in the module docstring).  Raises :class:`DataError` for an unreadable,
    empty or (unless `allow_untagged`) untagged file."""
    path = os.fspath(path)
    lines = read_lines(path, "'char TAG' lines, a blank line between sentences")  # (BOM dropped, \r\n accepted)
    tagged = any(("\t" in ln or " " in ln.strip(" \t")) for ln in lines if ln.strip(" \t"))
    malformed = Malformed()
    sentences, skipped = [], 0
    chars, tags, first, bad = [], [], 0, False

    def flush():
        nonlocal chars, tags, bad, skipped
        if chars or bad:
            if bad:
                skipped += 1
            else:
                sentences.append(Sentence(chars, tags if tagged else None, first))
        chars, tags, bad = [], [], False

    for no, line in enumerate(lines, 1):
        if not line.strip(" \t"):
            flush()
            continue
        if not chars and not bad:
            first = no
        if not tagged:
            chars.append(line.strip(" \t"))
            continue
        char, tag = _split_line(line.rstrip(" \t"))
        if char is None or tag is None:
            malformed.add(tag if char is None else "no tag", no)
            bad = True
        elif not _valid_tag(tag):
            swapped = _valid_tag(char) and char != "O"  # ("O" may be a letter; entity tags may not)
            malformed.add("tag before the character" if swapped else "bad tag", no)
            bad = True
        else:
            chars.append(char)
            tags.append(tag)
    flush()
    if not sentences:
        why = f" ({malformed.summary('line')})" if malformed.total else ""
        raise DataError(f"{path}: no sentences{why}; expected 'char TAG' lines, a blank line between sentences")
    if not tagged and not allow_untagged:
        raise DataError(f"{path}: no line has a tag; expected 'char TAG' lines (an untagged file is allowed "
                        "only as the test split)")
    stray = _stray_starts(sentences) if tagged else []
    return ConllFile(path, sentences, tagged, malformed, skipped, n_lines=sum(1 for ln in lines if ln.strip(" \t")),
                     stray_starts=len(stray), stray_lines=stray[:MAX_LINES_SHOWN])


def detect_scheme(tags) -> str:
    """"bioes" when any tag has an E- or S- prefix, else "bio"."""
    return "bioes" if any(t[:2] in ("E-", "S-") for t in tags) else "bio"


def label_list(train: ConllFile, scheme: str, token_tags=()) -> list:
    """The label set of the training file's tags and the `token_tags` its tokens take (:func:`token_tag`: under
    BIOES a token holding a whole entity is ``S-``): "O" first, then by entity type and prefix order."""
    assert train.tagged and scheme in SCHEMES
    seen = {t for s in train.sentences for t in s.tags} | set(token_tags)
    check_scheme(train, scheme)
    seen.add("O")
    order = SCHEMES[scheme]
    return ["O"] + sorted((t for t in seen if t != "O"), key=lambda t: (t[2:], order.index(t[0])))


def check_scheme(data: ConllFile, scheme: str) -> None:
    allowed = SCHEMES[scheme]
    for s in data.sentences:
        for k, t in enumerate(s.tags or ()):
            if t != "O" and t[0] not in allowed:
                raise DataError(f"{data.path}:{s.line + k}: tag {t!r} is not in the {scheme.upper()} scheme "
                                f"(prefixes {'/'.join(allowed)}); set task.tag_scheme=bioes or fix the file")


def check_tags(data: ConllFile, label2id: dict) -> None:
    """A dev/test tag the training file does not have is an error naming file and line."""
    for s in data.sentences:
        for k, t in enumerate(s.tags or ()):
            if t not in label2id:
                known = ", ".join(label2id)
                raise DataError(f"{data.path}:{s.line + k}: tag {t!r} does not occur in the training file "
                                f"(its tags: {known})")


# ----------------------------------------------------------------------------------------- encoding

def sentence_text(sent: Sentence) -> str:
    """The text a sentence stands for: its items joined without separators (a space is an item of its own)."""
    return "".join(sent.chars)


def expand_tag(tag: str, n: int) -> list:
    """The tags of the n (>= 1) items one token predicts, from the token's tag: the token is one piece of an
    entity, so ``B-X`` -> ``B-X I-X ...``; ``I-X`` -> ``I-X ...``; ``E-X`` -> ``... I-X E-X``;
    ``S-X`` -> ``B-X I-X ... E-X``; ``O`` -> ``O ...``."""
    assert n >= 1
    if n == 1 or tag == "O":
        return [tag] * n
    prefix, typ = tag[0], tag[1:]  # typ keeps its "-"
    first = "B" if prefix in "BS" else "I"
    last = "E" if prefix in "ES" else "I"
    return [first + typ] + ["I" + typ] * (n - 2) + [last + typ]


def token_tag(tags) -> str:
    """The training tag of a token from the gold tags of the items it predicts, in order: the first item's
    tag, except that under BIOES a token that also holds the entity's last item (an ``E-``/``S-`` of the same
    type last) ends it (``B``->``S``, ``I``->``E``).  ``expand_tag(token_tag(tags), len(tags)) == tags`` for
    every sequence a token can carry without crossing an entity boundary; under BIO this is just the first tag."""
    first = tags[0]
    if len(tags) == 1 or first == "O":
        return first
    typ = first[1:]
    ends = tags[-1][0] in "ES" and tags[-1][1:] == typ
    if first[0] in "BS":
        return ("S" if ends else "B") + typ
    return ("E" if ends else "I") + typ


@dataclass
class Alignment:
    """One sentence's text as tokens, and the token that predicts each item."""

    ids: np.ndarray  # int64 [N]: token ids of the sentence's text, without [CLS]/[SEP]
    item_token: np.ndarray  # int64 [n]: per item, the token predicting it (non-decreasing), -1 = none (tag O)

    def groups(self) -> list:
        """[(token, [items it predicts])] in text order, for the tokens that predict at least one item."""
        out = []
        for k, t in enumerate(self.item_token.tolist()):
            if t < 0:
                continue
            if out and out[-1][0] == t:
                out[-1][1].append(k)
            else:
                out.append((t, [k]))
        return out


class Aligner:
    """Tokenizes a sentence's text the way the exported tokenizer does and maps the tokens to the items.

    Item k is predicted by the first token whose character span overlaps it (for one character per line: the
    token holding that character), unless the item yields no token on its own -- a space, a control character,
    a combining mark that lowercasing strips -- or no token overlaps it: then it is ``O``.  A token overlapping
    several items (``２０``, ``iPhone`` written a character per line) predicts all of them (:func:`expand_tag`);
    several tokens in one item (``unaffable`` on one line) leave the item to the first, the others predict
    nothing (label -100)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._silent: dict = {}  # item -> True when it yields no token alone (a corpus has few distinct items)

    def _is_silent(self, item: str) -> bool:
        s = self._silent.get(item)
        if s is None:
            s = self._silent[item] = len(self.tokenizer.encode(item)) == 0
        return s

    def __call__(self, sent: Sentence) -> Alignment:
        ids, starts, ends = self.tokenizer.encode_with_offsets(sentence_text(sent))
        starts, ends = starts.astype(np.int64), ends.astype(np.int64)
        assert (np.diff(starts) >= 0).all() and (np.diff(ends) >= 0).all()  # spans come in text order
        lengths = np.array([len(c) for c in sent.chars], np.int64)
        item_end = np.cumsum(lengths)
        item_start = item_end - lengths
        tok = np.searchsorted(ends, item_start, side="right")  # [n] first token ending after the item starts
        has = tok < len(ids)
        has[has] = starts[tok[has]] < item_end[has]  # ... and starting before the item ends: they overlap
        has &= ~np.array([self._is_silent(c) for c in sent.chars], bool)
        return Alignment(ids.astype(np.int64), np.where(has, tok, -1))


def alignment_counts(sentences, alignments) -> dict:
    """What tokenizing the texts did to the items of a split: ``items``; ``shared`` (items predicted by the
    token of the item before them); ``no_token`` (items predicted ``O`` without a token); ``across`` (tokens
    whose items' gold tags no single tag gives back, i.e. that cross an entity boundary; tagged files only)."""
    out = {"items": 0, "shared": 0, "no_token": 0, "across": 0}
    for sent, al in zip(sentences, alignments):
        groups = al.groups()
        out["items"] += len(sent.chars)
        out["no_token"] += int((al.item_token < 0).sum())
        out["shared"] += sum(len(items) - 1 for _, items in groups)
        if sent.tags is not None:
            for _, items in groups:
                tags = [sent.tags[k] for k in items]
                out["across"] += expand_tag(token_tag(tags), len(tags)) != tags
    return out


def token_tags(sentence: Sentence, alignment: Alignment) -> list:
    """[(token, its training tag)] of one tagged sentence, for the tokens that predict items."""
    return [(t, token_tag([sentence.tags[k] for k in items])) for t, items in alignment.groups()]


@dataclass
class NerFeature:
    """One window of one sentence: ``[CLS] tokens [SEP]``."""

    input_ids: np.ndarray  # int64 [T], T <= max_seq_len
    labels: np.ndarray  # int64 [T]: tag id on each token that predicts items, IGNORE_INDEX elsewhere
    token_at: np.ndarray  # int32 [T]: the sentence's token at this position when this window predicts it, else -1
    example: int  # index of the sentence


def encode_sentences(sentences, alignments, label2id: dict | None, max_seq_len: int, stride: int, cls_id: int,
                     sep_id: int) -> list:
    """Windows (:class:`NerFeature`) of every sentence, in order.  `label2id` None = no labels."""
    body = max_seq_len - 2
    assert body >= 1 and 1 <= stride <= body, (max_seq_len, stride)
    features = []
    for ex, (sent, al) in enumerate(zip(sentences, alignments)):
        ids = al.ids
        heads = np.array([t for t, _ in al.groups()], np.int64)  # [H] positions of the tokens that predict items
        lab = np.full(len(ids), IGNORE_INDEX, np.int64)
        if label2id is not None and sent.tags is not None:
            for t, tag in token_tags(sent, al):
                lab[t] = label2id[tag]
        starts = window_starts(len(ids), body, stride)
        owner = np.full(len(ids), -1, np.int64)
        owner[heads] = owner_windows(heads, starts, body, len(ids))
        for w, a in enumerate(starts):
            b = min(a + body, len(ids))
            token_at = np.where(owner[a:b] == w, np.arange(a, b), -1)
            features.append(NerFeature(
                input_ids=np.concatenate([[cls_id], ids[a:b], [sep_id]]).astype(np.int64),
                labels=np.concatenate([[IGNORE_INDEX], lab[a:b], [IGNORE_INDEX]]).astype(np.int64),
                token_at=np.concatenate([[-1], token_at, [-1]]).astype(np.int32),
                example=ex,
            ))
    return features


def stitch(features, label_ids, sentences, alignments, id2label) -> list:
    """Per sentence, one tag per item from the per-window predictions.

    `label_ids[i]` is the predicted label id per position of features[i] (any int array of length >= T_i).
    Each token that predicts items is predicted by exactly one window (asserted) and gives its items
    :func:`expand_tag` of its tag; items without a token get :data:`NO_TOKEN_TAG`."""
    assert len(features) == len(label_ids)
    predicted = [{} for _ in sentences]  # per sentence: token -> tag
    for f, ids in zip(features, label_ids):
        for p in np.nonzero(f.token_at >= 0)[0]:
            t = int(f.token_at[p])
            assert t not in predicted[f.example], (f.example, t)
            predicted[f.example][t] = id2label[int(ids[p])]
    preds = []
    for sent, al, tags in zip(sentences, alignments, predicted):
        out = [NO_TOKEN_TAG] * len(sent.chars)
        groups = al.groups()
        assert len(groups) == len(tags)
        for t, items in groups:
            for k, tag in zip(items, expand_tag(tags[t], len(items))):
                out[k] = tag
        preds.append(out)
    return preds


# ------------------------------------------------------------------------------------------ metrics

def _split_tag(tag: str):
    if tag == "O":
        return "O", None
    assert _valid_tag(tag), tag
    return tag[0], tag[2:]


def chunks(tags) -> list:
    """Entities of one sentence as (type, start, end) with end exclusive, conlleval semantics.

    Before position i (previous tag p of type tp, current tag c of type tc), an open entity ends when
    p is E or S; or p is B/I and c is B, S or O; or p is not O and tp != tc.  An entity starts at i when
    c is B or S; or c is I/E and p is O, E or S; or c is not O and tp != tc.  So a stray I-/E- opens an
    entity, and a type change inside an entity splits it.  BIO is the special case without E and S."""
    out = []
    start, prev, prev_type = None, "O", None
    for i, tag in enumerate(list(tags) + ["O"]):
        cur, cur_type = _split_tag(tag)
        ends = prev in "ES" or (prev in "BI" and cur in "BSO") or (prev != "O" and prev_type != cur_type)
        if start is not None and ends:
            out.append((prev_type, start, i))
            start = None
        begins = cur in "BS" or (cur in "IE" and prev in "OES") or (cur != "O" and prev_type != cur_type)
        if begins:
            start = i
        prev, prev_type = cur, cur_type
    return out


def _prf(correct: int, n_pred: int, n_gold: int):
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def entity_scores(gold, pred) -> dict:
    """Entity-level scores over sentences (lists of tags, same lengths pairwise).

    An entity is correct when type, start and end all match.  precision = correct / predicted,
    recall = correct / gold, F1 = 2PR / (P + R) (0 when P + R = 0), micro over all entities;
    ``per_type`` gives the same per entity type (every type seen in gold or predictions, with
    ``support`` = gold count).  Also token ``accuracy`` as conlleval prints it."""
    assert len(gold) == len(pred)
    g_all, p_all = set(), set()
    n_tok = n_ok = 0
    for k, (g, p) in enumerate(zip(gold, pred)):
        assert len(g) == len(p), (k, len(g), len(p))
        g_all.update((k,) + c for c in chunks(g))
        p_all.update((k,) + c for c in chunks(p))
        n_tok += len(g)
        n_ok += sum(a == b for a, b in zip(g, p))
    correct = g_all & p_all
    precision, recall, f1 = _prf(len(correct), len(p_all), len(g_all))
    per_type = {}
    for t in sorted({c[1] for c in g_all | p_all}):
        n_c = sum(c[1] == t for c in correct)
        n_p = sum(c[1] == t for c in p_all)
        n_g = sum(c[1] == t for c in g_all)
        tp, tr, tf = _prf(n_c, n_p, n_g)
        per_type[t] = {"precision": tp, "recall": tr, "f1": tf, "support": n_g}
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": n_ok / n_tok if n_tok else 0.0,
            "per_type": per_type}
