"""NER fine-tuning sees what the exported model sees in ``transformers.pipeline("token-classification")``:
a tiny model is fine-tuned on sentences full of digits, Latin words and full-width forms (characters the
tokenizer merges into one token), exported, and run in the pipeline; its output, read as per-character tags by
the rule docs/export.md gives (the code is taken from the page), equals ``predictions_test.jsonl`` on every
test sentence.

Budget: ~25 s.
"""
import json
import os
import random
import re

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
def test_pipeline_output_equals_predictions_on_every_sentence(tmp_path, scheme):
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
