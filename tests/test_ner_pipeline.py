"""NER fine-tuning sees what the exported model sees in ``transformers.pipeline("token-classification")``:
a tiny model is fine-tuned on sentences full of digits, Latin words and full-width forms (characters the
tokenizer merges into one token), exported, and run in the pipeline; its output, read as per-character tags by
the rule docs/export.md gives (the code is taken from the page), equals ``predictions_test.jsonl`` on every
test sentence (BIO and BIOES).  Without training, the same rule over transformers' fast tokenizer equals our
stitching on texts with accents, combining marks, emoji and control characters.

Budget: ~20 s.
"""
import json
import os
import random
import re

import numpy as np
import pytest

from _finetune_util import MERGING_VOCAB, TASK_CJK as CJK, tiny_finetune

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Entities per type: CJK strings and strings the tokenizer merges (full-width, Latin, digits).
ENTITIES = {"PER": ["".join(CJK[k:k + 3]) for k in range(0, 12, 3)],
            "ORG": ["ＡＢＣ", "iPhone", "".join(CJK[12:16]), "ab7"],
            "DATE": ["２０２１年", "2021年", "２０年", "7月", "１２月"]}
# Filler: CJK, digits and Latin runs tagged O, a space and a control character (neither makes a token).
FILLER = CJK[40:] + ["x", "yz", "5", "３", "ok", " ", "\x00"]


def _sentences(rng, n, scheme):
    out = []
    for _ in range(n):
        chars, tags = [], []
        for _ in range(rng.randint(1, 4)):
            for _ in range(rng.randint(1, 4)):
                chars.extend(rng.choice(FILLER))
            if rng.random() < 0.8:
                typ = rng.choice(sorted(ENTITIES))
                ent = rng.choice(ENTITIES[typ])
                tags.extend(["O"] * (len(chars) - len(tags)))
                chars.extend(ent)
                if scheme == "bio":
                    tags.extend([f"B-{typ}"] + [f"I-{typ}"] * (len(ent) - 1))
                else:  # every entity here has 2+ characters: no S- tag in the files
                    tags.extend([f"B-{typ}"] + [f"I-{typ}"] * (len(ent) - 2) + [f"E-{typ}"])
        tags.extend(["O"] * (len(chars) - len(tags)))
        out.append((chars, tags))
    return out


def _write_conll(path, sentences):
    with open(path, "w", encoding="utf-8") as f:
        for chars, tags in sentences:
            f.write("".join(f"{c}\t{t}\n" for c, t in zip(chars, tags)) + "\n")
    return str(path)


def _doc_char_tags():
    """``char_tags`` as docs/export.md defines it (the code block that holds it, executed)."""
    text = open(os.path.join(REPO, "docs", "export.md"), encoding="utf-8").read()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "def char_tags" in b]
    scope = {}
    exec(block, scope)
    return scope["char_tags"]


@pytest.mark.parametrize("scheme", ["bio", "bioes"])
def test_pipeline_output_equals_predictions_on_every_sentence(tmp_path, capsys, scheme):
    import transformers

    from data_tools.tokenizer import BertTokenizer
    from ernie_style.downstream import ner
    from export import to_pytorch

    rng = random.Random(4)
    data = {k: _sentences(rng, n, scheme) for k, n in (("train", 300), ("dev", 40), ("test", 60))}
    paths = {k: _write_conll(tmp_path / f"{k}.txt", v) for k, v in data.items()}
    vocab = tmp_path / "task_vocab.txt"
    vocab.write_text("\n".join(MERGING_VOCAB) + "\n", encoding="utf-8")
    rc, out = tiny_finetune(tmp_path, os.path.join(REPO, "configs", "finetune", "ner.yaml"), paths["train"],
                            paths["dev"], paths["test"], **{
                                "data.vocab_file": str(vocab), "data.max_seq_len": 48, "train.epochs": 4,
                                "train.micro_batch_size": 16})
    assert rc == 0
    log = capsys.readouterr().out
    assert re.search(r"ner: test: \d+ of \d+ characters share a token with the one before .*, \d+ have no token", log)
    preds = [json.loads(line)["prediction"] for line in open(out / "predictions_test.jsonl", encoding="utf-8")]
    texts = ["".join(chars) for chars, _ in data["test"]]
    assert [len(p) for p in preds] == [len(t) for t in texts]  # one character per line: items are characters
    labels = json.loads((out / "best_model" / "config.json").read_text(encoding="utf-8"))["id2label"].values()
    if scheme == "bioes":  # "ＡＢＣ", "iPhone": a whole entity in one token, trained as S-ORG
        assert "S-ORG" in labels and not any(t == "S-ORG" for _, tags in data["train"] for t in tags)

    hf = tmp_path / "hf"
    assert to_pytorch.main([str(out / "best_model"), str(hf)]) == 0
    tagger = transformers.pipeline("token-classification", model=str(hf), aggregation_strategy="none",
                                   device="cpu")
    char_tags = _doc_char_tags()
    got = [char_tags(t, tagger(t), tagger.tokenizer) for t in texts]
    differ = [(t, g, p) for t, g, p in zip(texts, got, preds) if g != p]
    assert not differ, f"{len(differ)} of {len(texts)} sentences differ, e.g. {differ[0]}"

    # Not vacuous: the model learned (entities found), and many test sentences have tokens of several characters
    # predicted as (parts of) entities -- the sentences where per-character tokenization disagreed.
    tok = BertTokenizer(str(vocab))
    aligner = ner.Aligner(tok)
    merged_entity = 0
    for (chars, _), p in zip(data["test"], preds):
        al = aligner(ner.Sentence(chars, None, 1))
        merged_entity += any(len(items) > 1 and p[items[0]] != "O" for _, items in al.groups())
    assert merged_entity >= 10, merged_entity
    assert ner.entity_scores([tags for _, tags in data["test"]], preds)["f1"] > 0.8


def test_doc_rule_on_the_fast_tokenizer_equals_stitching_on_tricky_text(tmp_path):
    """Without training: give every token of a text a tag (a fixed function of its position), as a model would.
    Read as the pipeline reports it -- transformers' fast tokenizer, its offsets, O tokens left out -- through
    docs/export.md's ``char_tags``, and stitched our way over the text a character per line, the per-character
    tags are equal, on texts with accents, combining marks, emoji with variation selectors, control characters,
    full-width forms, long words and mixed scripts.  (Excluded: a lone surrogate, which the fast tokenizer
    refuses, and special tokens written literally, a documented difference.)"""
    import _text_util as T
    import transformers

    from data_tools.tokenizer import BertTokenizer
    from ernie_style.downstream import ner

    vocab = T.make_vocab(str(tmp_path / "vocab.txt"), "２０２１年iPhoneＡＢＣ")
    fast_class = getattr(transformers, "BertTokenizerFast", transformers.BertTokenizer)  # 5.x: one class, fast
    ours, fast = BertTokenizer(vocab), fast_class(vocab)
    assert fast.is_fast
    char_tags = _doc_char_tags()
    id2label = ["O", "B-A", "I-A", "S-A", "E-A", "B-B", "I-B"]
    texts = [t for t in T.TEST_STRINGS if t.strip() and "[MASK]" not in t and "\ud800" not in t] + [
        "张三２０２１年买了iPhone 和ＡＢＣ", "e\u0301\u0301x ☺\ufe0f☺\ufe0fa", "ab\x00cd 中\x00国 x\u200by"]
    n_merged = 0
    for text in texts:
        sent = ner.Sentence(list(text), None, 1)
        al = ner.Aligner(ours)(sent)
        enc = fast(text, add_special_tokens=False, return_offsets_mapping=True)
        assert enc["input_ids"] == al.ids.tolist(), text  # the same tokens, each starting at the same character
        assert ours.encode_with_offsets(text)[1].tolist() == [s for s, _ in enc["offset_mapping"]], text
        tag_of = [(7 * i + 3) % len(id2label) for i in range(len(al.ids))]  # token i's "predicted" label id
        entries = [{"entity": id2label[tag_of[i]], "start": s, "end": e}
                   for i, (s, e) in enumerate(enc["offset_mapping"]) if id2label[tag_of[i]] != "O"]
        (f,) = ner.encode_sentences([sent], [al], None, len(al.ids) + 3, 1, ours.cls_id, ours.sep_id)
        (stitched,) = ner.stitch([f], [np.array([0] + tag_of + [0])], [sent], [al], id2label)
        assert char_tags(text, entries, fast) == stitched, text
        n_merged += sum(len(items) > 1 for _, items in al.groups())
    assert n_merged > 20
